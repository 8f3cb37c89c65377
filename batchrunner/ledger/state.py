"""What is already done, derived from the results and dead-letter files.

The files are the truth: an id with a line in the results file is done; an id whose last
dead-letter entry is not superseded by a result is dead; an input line that could not be
parsed is recorded by its line number. Nothing here holds the results themselves in
memory, only ids and their request fingerprints.

A result always supersedes a dead-letter entry for the same id, whatever order they were
written in, so a dead item that is re-sent and succeeds needs no rewrite of the
dead-letter file, and a crash half-way through leaves a consistent state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from batchrunner.ledger.appendfile import AppendFile, repair_torn_tail
from batchrunner.ledger.records import KIND_INPUT

_ID_PREFIX = b'{"custom_id":"'
_ID_START = len(_ID_PREFIX)

__all__ = [
    "DeadEntry",
    "Ledger",
    "LedgerState",
    "iter_jsonl",
    "result_lines",
    "scan",
    "scan_readonly",
]


@dataclass(frozen=True, slots=True)
class DeadEntry:
    fp: str | None
    status_code: int | None
    type: str


@dataclass(slots=True)
class LedgerState:
    """Ids already decided, as found in the files at start."""

    results: dict[str, str | None] = field(default_factory=dict)
    dead: dict[str, DeadEntry] = field(default_factory=dict)
    dead_lines: set[int] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)

    def effective_dead(self) -> dict[str, DeadEntry]:
        """Dead ids that no later success superseded."""
        return {k: v for k, v in self.dead.items() if k not in self.results}

    def dead_by_status(self) -> Counter[int | None]:
        return Counter(e.status_code for e in self.effective_dead().values())


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of ``path``; a missing file has none."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    with f:
        yield from enumerate(f, start=1)


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, object) for each non-blank line of ``path``; ``None`` for a line that
    is not a JSON object. A missing file yields nothing."""
    for n, raw in _lines(path):
        if raw.strip():
            yield n, _loads(raw)


def scan(results_path: Path, dead_path: Path, with_fp: bool = True) -> LedgerState:
    """Read both files once, repairing a torn last line first."""
    warnings = []
    for path in (results_path, dead_path):
        cut = repair_torn_tail(path)
        if cut:
            warnings.append(f"repaired {path}: removed a torn last line ({cut} bytes)")
    state = scan_readonly(results_path, dead_path, with_fp)
    state.warnings[:0] = warnings
    return state


def scan_readonly(results_path: Path, dead_path: Path, with_fp: bool = True) -> LedgerState:
    """Read both files once without changing them (a torn last line is reported as invalid).

    Without ``with_fp`` the results' request fingerprints are not kept (``None``): a lighter
    scan for when the input is known not to have changed.
    """
    state = LedgerState()
    _scan_results(results_path, state, with_fp)
    for n, obj in iter_jsonl(dead_path):
        if obj is None:
            state.warnings.append(f"{dead_path}:{n}: not a dead-letter line; ignored")
            continue
        _add_dead(state, obj)
    return state


def _scan_results(path: Path, state: LedgerState, with_fp: bool) -> None:
    results = state.results
    for n, raw in _lines(path):
        cid = None if with_fp else _leading_id(raw)
        if cid is not None:
            results[cid] = None
            continue
        obj = _loads(raw)
        cid = obj.get("custom_id") if obj else None
        if isinstance(cid, str):
            results[cid] = _meta(obj).get("fp") if with_fp else None
        elif raw.strip():
            state.warnings.append(f"{path}:{n}: not a result line; ignored")


def result_lines(path: Path, wanted: set[int]) -> set[int]:
    """Which of the input lines ``wanted`` have a result in ``path``: an input line that was
    dead-lettered as unusable, then fixed and sent, is no longer dead."""
    found: set[int] = set()
    if not wanted:
        return found
    for _, raw in _lines(path):
        line = _meta(_loads(raw)).get("line")
        if isinstance(line, int) and line in wanted:
            found.add(line)
    return found


def _leading_id(raw: bytes) -> str | None:
    """The id of a line we wrote (``{"custom_id":"...",`` first, a whole line), without
    parsing the rest; ``None`` when the line is not that plain, and then it is parsed."""
    if not raw.startswith(_ID_PREFIX) or not raw.endswith(b"}\n"):
        return None
    end = raw.find(b'"', _ID_START)
    if end < 0 or raw.find(b"\\", _ID_START, end) >= 0 or raw[end + 1 : end + 2] != b",":
        return None
    try:
        return raw[_ID_START:end].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _loads(raw: bytes) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _meta(obj: dict[str, Any] | None) -> dict[str, Any]:
    meta = obj.get("batchrunner") if obj else None
    return meta if isinstance(meta, dict) else {}


def _add_dead(state: LedgerState, obj: dict[str, Any]) -> None:
    meta = _meta(obj)
    line = obj.get("line")
    if meta.get("kind") == KIND_INPUT:
        if isinstance(line, int):
            state.dead_lines.add(line)
        return
    cid = obj.get("custom_id")
    if not isinstance(cid, str):
        return
    error = obj.get("error")
    error = error if isinstance(error, dict) else {}
    status = error.get("status_code")
    state.dead[cid] = DeadEntry(
        meta.get("fp"), status if isinstance(status, int) else None, str(error.get("type"))
    )


class Ledger:
    """The open results and dead-letter files of one run, plus what they already hold."""

    __slots__ = ("dead", "results", "state")

    def __init__(self, results_path: Path, dead_path: Path, with_fp: bool = True) -> None:
        self.state = scan(results_path, dead_path, with_fp)
        self.results = AppendFile(results_path)
        try:
            self.dead = AppendFile(dead_path)
        except BaseException:
            self.results.close()
            raise

    def sync(self) -> None:
        self.results.sync()
        self.dead.sync()

    def close(self) -> None:
        try:
            self.results.close()
        finally:
            self.dead.close()
