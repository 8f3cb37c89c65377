"""Whether an existing file may be written as a run's results or dead letters.

A run reads what its output files hold as decided, repairs their last line and appends
to them, so a file that is not one of ours (a note, another run's input) must not become
one: its ids would be taken as done and its last line cut as "torn". A file is ours when
it is empty or its first line has the shape of a result or a dead-letter entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from batchrunner.errors import LedgerError
from batchrunner.ledger.records import is_dead_entry, is_result, loads_object

__all__ = ["Kind", "check_ours"]

#: Which of a run's output files: its results or its dead letters.
Kind = Literal["results", "dead-letter"]

_FLAG: dict[Kind, str] = {"results": "-o", "dead-letter": "--dead-letter"}
# Both line shapes start so (custom_id first): all an unfinished first line can show.
_PREFIX = b'{"custom_id":'
# A first line longer than this is judged by how it starts, not parsed whole.
_FIRST_LINE_MAX = 1 << 24


def check_ours(path: Path, kind: Kind) -> None:
    """Refuse ``path`` as the run's ``kind`` file when it exists, is not empty and its
    first line is not a ``kind`` line; reads one line, changes nothing."""
    first = _first_line(path)
    if first is None or _looks_ours(first, kind):
        return
    raise LedgerError(
        f"{path} is not a batchrunner {kind} file (its first line is not a "
        f"{'result' if kind == 'results' else 'dead-letter entry'}); nothing was written "
        f"to it: choose another {_FLAG[kind]}",
        path=path,
    )


def _first_line(path: Path) -> bytes | None:
    """The first non-blank line (ending in a newline unless the file or the limit ends
    it); ``None`` for a missing, empty or blank file, or one that is not a file."""
    if not path.is_file():
        return None
    try:
        with path.open("rb") as f:
            while line := f.readline(_FIRST_LINE_MAX):
                if line.strip():
                    return line
    except OSError as exc:
        raise LedgerError(f"cannot read {path}: {exc.strerror or exc}", path=path) from None
    return None


def _looks_ours(line: bytes, kind: Kind) -> bool:
    obj = loads_object(line)
    if obj is not None:
        return is_result(obj) if kind == "results" else is_dead_entry(obj)
    if line.endswith(b"\n"):
        return False  # a whole line that is not an object
    head = line.lstrip()[: len(_PREFIX)]  # a torn write, or a very long line
    return _PREFIX.startswith(head) if len(head) < len(_PREFIX) else head == _PREFIX
