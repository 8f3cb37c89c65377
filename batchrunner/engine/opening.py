"""Before the first request: the files checked as ours and locked, the input scanned, the
files opened, the server asked. Every error of a doomed run surfaces here, before anything
is sent; and after the last outcome, the files closed and let go."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from batchrunner.config import RunConfig
from batchrunner.engine.preflight import check_server, first_item
from batchrunner.errors import OutputWriteError
from batchrunner.input.scan import scan_input
from batchrunner.ledger.claim import check_ours
from batchrunner.ledger.lock import RunLock
from batchrunner.ledger.manifest import (
    check_manifest,
    move_aside,
    previous_input_size,
    write_manifest,
)
from batchrunner.ledger.opened import Ledger
from batchrunner.ledger.rewrite import drop_superseded
from batchrunner.limits.tokens import load_exact_tokenizer

__all__ = ["Opened", "open_run"]


@dataclass(slots=True)
class Opened:
    """An opened run: its ledger and the lock on its files (:meth:`close` both), and what
    the opening found."""

    ledger: Ledger
    lock: RunLock
    #: Only an edited input can hold a done id whose body changed: only then compare them.
    check_bodies: bool
    total_lines: int
    warnings: list[str] = field(default_factory=list)

    def close(self, settled: bool) -> list[str]:
        """Close the files and let go of them. A ``settled`` run (completed, or stopped
        gracefully) first drops the superseded entries of its dead-letter file; returns
        a warning if that could not be done (the file stays right as it is)."""
        warnings = []
        try:
            self.ledger.close()
            if settled:
                warnings.extend(_drop_superseded(self.ledger))
        finally:
            self.lock.release()
        return warnings


def _drop_superseded(ledger: Ledger) -> list[str]:
    dead = ledger.dead.path
    try:
        # A run that wrote nothing (a resume with nothing to send) has the state to hand.
        state = ledger.state if ledger.unchanged else None
        drop_superseded(ledger.results.path, dead, state)
    except OutputWriteError as exc:
        return [f"{exc}; {dead} still holds entries that later outcomes supersede"]
    return []


async def open_run(cfg: RunConfig) -> Opened:
    """Check, lock and open ``cfg``'s files; raises the :mod:`batchrunner.errors` that say
    why a run cannot start, having sent nothing and changed no file."""
    check_ours(cfg.output_path, "results")
    check_ours(cfg.dead_letter_path, "dead-letter")
    lock = RunLock(cfg.output_path, cfg.dead_letter_path)
    try:
        return await _open_locked(cfg, lock)
    except BaseException:
        lock.release()
        raise


async def _open_locked(cfg: RunConfig, lock: RunLock) -> Opened:
    warnings = [f"moved aside: {p}" for p in move_aside(cfg)] if cfg.restart else []
    scan = await anyio.to_thread.run_sync(scan_input, cfg.input_path, previous_input_size(cfg))
    change, old = check_manifest(cfg, scan)
    first = await anyio.to_thread.run_sync(first_item, cfg)
    if cfg.tpm or cfg.max_tokens_total or cfg.max_cost:
        # Loading the exact tokenizer takes ~1 s: not on the first request's path.
        await anyio.to_thread.run_sync(load_exact_tokenizer)
    if cfg.preflight:
        await check_server(cfg, first)
    if change in ("grown", "edited"):
        warnings.append(f"{cfg.input_path} was {change} since the last run")
    check_bodies = change == "edited"
    try:
        ledger = await anyio.to_thread.run_sync(
            Ledger, cfg.output_path, cfg.dead_letter_path, check_bodies
        )
    except OSError as exc:  # read-only, a directory, ...: one line, not a traceback
        raise OutputWriteError(str(exc.filename or cfg.output_path), exc) from None
    warnings.extend(ledger.state.warnings)
    try:
        write_manifest(cfg, scan, old)
    except BaseException:
        ledger.close()
        raise
    return Opened(ledger, lock, check_bodies, scan.lines, warnings)
