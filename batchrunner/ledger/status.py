"""``batchrunner status``: where a run stands, from its files alone, sending nothing."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchrunner.config import ENDPOINTS
from batchrunner.errors import LedgerError
from batchrunner.input.lines import BadLine, Done, read_input
from batchrunner.ledger.manifest import implicit_id_prefix, read_manifest
from batchrunner.ledger.state import scan_readonly
from batchrunner.vocabulary import failure_key

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
        }


def run_status(results_path: Path) -> RunStatus:
    """Count what the files say against the input the manifest names, deciding each line
    the way a resumed run would."""
    manifest_path = results_path.with_name(results_path.name + ".manifest.json")
    manifest = read_manifest(manifest_path)
    if manifest is None:
        raise LedgerError(f"no run manifest at {manifest_path}: is {results_path} a results file?")
    input_path, dead_path, endpoint, model = _run_of(manifest, manifest_path)
    try:
        state = scan_readonly(results_path, dead_path)
    except OSError as exc:
        raise LedgerError(f"cannot read the run's files: {exc.strerror or exc}") from None
    if not input_path.is_file():
        raise LedgerError(f"the run's input {input_path} no longer exists")
    counts: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    results, live_dead = state.results, state.effective_dead()
    prefix = implicit_id_prefix(manifest)
    for entry in read_input(
        input_path, endpoint, model, lambda c: c in results or c in live_dead, False, prefix
    ):
        counts["lines"] += 1
        if isinstance(entry, BadLine):
            if entry.line in state.dead_lines:
                counts["dead"] += 1
                by_status[entry.type] += 1
            else:
                counts["pending"] += 1
        elif isinstance(entry, Done) and entry.custom_id in results:
            counts["done"] += 1
        elif isinstance(entry, Done):
            counts["dead"] += 1
            e = live_dead[entry.custom_id]
            by_status[failure_key(e.status_code, e.type)] += 1
        else:
            counts["pending"] += 1
    command = manifest.get("command")
    return RunStatus(
        input=str(input_path),
        input_lines=counts["lines"],
        done=counts["done"],
        dead=counts["dead"],
        dead_by_status=dict(by_status),
        pending=counts["pending"],
        last_write=_last_write(results_path, dead_path),
        resume_command=command if isinstance(command, str) else None,
        warnings=state.warnings,
    )


def _run_of(manifest: dict[str, Any], path: Path) -> tuple[Path, Path, str, str | None]:
    """(input, dead-letter file, endpoint, model) from a manifest, or a one-line error."""
    input_, dead, endpoint, model = (
        manifest.get(k) for k in ("input", "dead_letter", "endpoint", "model")
    )
    if not (isinstance(input_, str) and isinstance(dead, str) and endpoint in ENDPOINTS):
        raise LedgerError(f"{path} is not a batchrunner run manifest (missing or odd fields)")
    assert isinstance(endpoint, str)
    return Path(input_), Path(dead), endpoint, model if isinstance(model, str) else None


def _last_write(*paths: Path) -> str | None:
    times = [os.stat(p).st_mtime for p in paths if p.exists()]
    if not times:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(max(times)))
