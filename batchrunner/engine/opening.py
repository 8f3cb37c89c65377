"""Before the first request: the input scanned, the files checked and opened, the server
asked. Every error of a doomed run surfaces here, before anything is sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio

from batchrunner.config import RunConfig
from batchrunner.engine.preflight import check_server, first_item
from batchrunner.errors import OutputWriteError
from batchrunner.input.scan import scan_input
from batchrunner.ledger.manifest import (
    check_manifest,
    move_aside,
    previous_input_size,
    write_manifest,
)
from batchrunner.ledger.state import Ledger
from batchrunner.limits.tokens import load_exact_tokenizer

__all__ = ["Opened", "open_run"]


@dataclass(slots=True)
class Opened:
    """An opened run: its ledger (close it), and what the opening found."""

    ledger: Ledger
    #: Only an edited input can hold a done id whose body changed: only then compare them.
    check_bodies: bool
    total_lines: int
    warnings: list[str] = field(default_factory=list)


async def open_run(cfg: RunConfig) -> Opened:
    """Check and open ``cfg``'s files; raises the :mod:`batchrunner.errors` that say why a
    run cannot start."""
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
        write_manifest(cfg, scan, _started_at(old))
    except BaseException:
        ledger.close()
        raise
    return Opened(ledger, check_bodies, scan.lines, warnings)


def _started_at(manifest: dict[str, Any] | None) -> str | None:
    value = manifest.get("started_at") if manifest else None
    return value if isinstance(value, str) else None
