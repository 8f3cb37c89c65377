"""The dead-letter file told true on its own: superseded entries dropped at the end of a run.

While a run goes on, a new outcome supersedes an old entry without touching it (a result
for a dead id; a later entry for the same id or input line), so a kill at any moment
leaves files that :class:`~batchrunner.ledger.state.LedgerState` reads right. At the end of
a run the file is rewritten with only the entries still in force, by the same rule, so that
jq or pandas reading it alone see only what is still dead: a new file beside it, synced,
renamed over it, and the folder synced. A crash before the rename leaves the old file, which
is still read right.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from batchrunner.errors import OutputWriteError
from batchrunner.ledger.records import read_records
from batchrunner.ledger.state import LedgerState, scan_readonly

__all__ = ["drop_superseded"]


def drop_superseded(results_path: Path, dead_path: Path, state: LedgerState | None = None) -> int:
    """Rewrite ``dead_path`` without the entries the files supersede; returns how many
    were dropped (0: the file was left as it was). Lines that are not dead-letter entries
    are kept as they are. Raises :class:`OutputWriteError`, the old file intact.

    ``state``: the files' state as scanned, when neither file changed since (a run that
    wrote nothing): it answers as a new scan would, and saves reading them again."""
    try:
        if dead_path.stat().st_size == 0:
            return 0
    except FileNotFoundError:
        return 0
    if state is None:
        state = scan_readonly(results_path, dead_path, with_fp=False, done_ids=False)
    dropped = state.superseded()
    if not dropped:  # the usual case: no copy, and the offsets are not even sorted
        return 0
    tmp = dead_path.with_name(dead_path.name + ".rewrite")
    try:
        _write_kept(dead_path, tmp, state.kept())
        os.replace(tmp, dead_path)
        _sync_folder(dead_path.parent)
    except OSError as exc:
        raise OutputWriteError(str(dead_path), exc) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return dropped


def _write_kept(dead_path: Path, tmp: Path, kept: Iterator[int]) -> None:
    """Copy the lines that start at ``kept`` (in file order) to ``tmp``, synced, with the
    file's mode: the rule was applied by the scan, so no line is parsed again."""
    mode = dead_path.stat().st_mode & 0o7777
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    next_kept = next(kept, -1)
    with os.fdopen(fd, "wb") as out:
        for offset, _, raw in read_records(dead_path):
            if offset == next_kept:
                out.write(raw if raw.endswith(b"\n") else raw + b"\n")
                next_kept = next(kept, -1)
        out.flush()
        os.fsync(out.fileno())


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
