"""``batchrunner status``: where a run stands, from its files alone, sending nothing.

The files of one shard (``run --shard K/N``, recorded in the manifest) answer for that
shard's lines only; merged files, like a run without ``--shard``, for every line.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchrunner.config import ENDPOINTS, Shard, manifest_path
from batchrunner.errors import LedgerError
from batchrunner.input.lines import DoneLines, Item, read_input
from batchrunner.input.shard import in_shard
from batchrunner.ledger.manifest import implicit_id_prefix, read_manifest
from batchrunner.ledger.records import utc_iso
from batchrunner.ledger.state import DeadEntry, LedgerState, scan_readonly

__all__ = ["RunStatus", "run_status"]


@dataclass(frozen=True, slots=True)
class RunStatus:
    input: str
    input_lines: int
    done: int
    dead: int
    dead_by_status: dict[str, int]
    pending: int
    last_write: str | None
    resume_command: str | None
    warnings: list[str] = field(default_factory=list)
    #: ``K/N`` for the files of one shard (``input_lines`` then counts its lines only).
    shard: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "input_lines": self.input_lines,
            "done": self.done,
            "dead_lettered": self.dead,
            "dead_by_status": self.dead_by_status,
            "pending": self.pending,
            "last_write": self.last_write,
            "resume_command": self.resume_command,
            "warnings": self.warnings,
            "shard": self.shard,
        }


def run_status(results_path: Path) -> RunStatus:
    """Count what the files say against the input the manifest names, deciding each line
    the way a resumed run would."""
    manifest_file = manifest_path(results_path)
    manifest = read_manifest(manifest_file)
    if manifest is None:
        message = f"no run manifest at {manifest_file}: is {results_path} a results file?"
        raise LedgerError(message, path=manifest_file)
    input_path, dead_path, endpoint, model = _run_of(manifest, manifest_file)
    try:
        state = scan_readonly(results_path, dead_path, with_fp=False)
    except OSError as exc:
        message = f"cannot read the run's files: {exc.strerror or exc}"
        raise LedgerError(message, path=exc.filename) from None
    if not input_path.is_file():
        raise LedgerError(f"the run's input {input_path} no longer exists", path=input_path)
    shard = manifest_shard(manifest)
    prefix = implicit_id_prefix(manifest)
    counts, by_key = _count(state, input_path, endpoint, model, prefix=prefix, shard=shard)
    command = manifest.get("command")
    return RunStatus(
        input=str(input_path),
        input_lines=counts["lines"],
        done=counts["done"],
        dead=counts["dead"],
        dead_by_status=dict(by_key),
        pending=counts["pending"],
        last_write=_last_write(results_path, dead_path),
        resume_command=command if isinstance(command, str) else None,
        warnings=state.warnings,
        shard=None if shard is None else str(shard),
    )


def manifest_shard(manifest: dict[str, Any]) -> Shard | None:
    """The shard whose files a manifest describes; ``None``: the whole input."""
    value = manifest.get("shard")
    return Shard.parse(value) if isinstance(value, str) else None


def _count(
    state: LedgerState,
    input_path: Path,
    endpoint: str,
    model: str | None,
    *,
    prefix: str,
    shard: Shard | None,
) -> tuple[Counter[str], Counter[str]]:
    """Counts of lines (the shard's), done, dead and pending, and of the dead by failure key."""
    counts: Counter[str] = Counter()
    by_key: Counter[str] = Counter()
    for entry in read_input(input_path, endpoint, model, state.claim, implicit_prefix=prefix):
        if isinstance(entry, DoneLines) and shard is None:  # most lines: a block at a time
            dead = list(state.dead_entries(entry.outcomes))
            counts.update(lines=len(entry.outcomes), done=len(entry.outcomes) - len(dead))
            _count_dead(dead, counts, by_key)
            continue
        for line in entry.each() if isinstance(entry, DoneLines) else (entry,):
            if in_shard(line.custom_id, line.line, shard):
                counts["lines"] += 1
                decision = None if isinstance(line, Item) else state.decide(line)
                if decision is None:
                    counts["pending"] += 1
                elif decision == "done":
                    counts["done"] += 1
                else:
                    _count_dead([decision], counts, by_key)
    return counts, by_key


def _count_dead(entries: list[DeadEntry], counts: Counter[str], by_key: Counter[str]) -> None:
    counts["dead"] += len(entries)
    by_key.update(entry.key for entry in entries)


def _run_of(manifest: dict[str, Any], path: Path) -> tuple[Path, Path, str, str | None]:
    """(input, dead-letter file, endpoint, model) from a manifest, or a one-line error."""
    input_, dead, endpoint, model = (
        manifest.get(k) for k in ("input", "dead_letter", "endpoint", "model")
    )
    if not (isinstance(input_, str) and isinstance(dead, str) and endpoint in ENDPOINTS):
        message = f"{path} is not a batchrunner run manifest (missing or odd fields)"
        raise LedgerError(message, path=path)
    assert isinstance(endpoint, str)
    return Path(input_), Path(dead), endpoint, model if isinstance(model, str) else None


def _last_write(*paths: Path) -> str | None:
    times = [os.stat(p).st_mtime for p in paths if p.exists()]
    if not times:
        return None
    return utc_iso(max(times))
