"""Reading a dead-letter file: the entries still dead, and filtering them.

An entry counts only while it is the one in force for its key, as the ledger decides it
for a resumed run and ``status`` (:class:`batchrunner.ledger.state.LedgerState`): the last
entry for an id, unless the id has a result; the last entry for an input line that could
not be sent, unless a result or a later request entry names that line. Nothing here
prints; ``batchrunner dlq`` renders what these functions return.

The files are streamed, never held: a first pass builds the ledger's compact state (where
the entry in force for each key starts), later passes read those entries again.
"""

from __future__ import annotations

from array import array
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from batchrunner.config import MANIFEST_SUFFIX, manifest_path
from batchrunner.errors import DlqError, DlqWriteError, LedgerError
from batchrunner.input.lines import exact
from batchrunner.ledger.manifest import read_manifest
from batchrunner.ledger.records import DeadFields, loads_object, read_dead, read_records
from batchrunner.ledger.state import LedgerState, scan_readonly
from batchrunner.ledger.table import sorted_ints

__all__ = [
    "DeadLetter",
    "DlqError",
    "DlqWriteError",
    "LiveEntries",
    "RunFiles",
    "find_run",
    "json_text",
    "live_entries",
    "select",
]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-letter entry that is still dead; ``record`` is the line as written."""

    custom_id: str | None
    line: int | None
    status_code: int | None
    type: str
    message: str
    attempts: int
    ts: str | None
    request: Any
    kind: str
    record: dict[str, Any] = field(repr=False, compare=False)
    #: The line as written (without its newline): what ``dlq show --json`` prints, since a
    #: line another tool wrote may hold more nesting than orjson writes back.
    text: str = field(default="", repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class RunFiles:
    """The run a dead-letter file belongs to, as far as it can be found.

    ``source`` says how the results file was found: ``option``, ``manifest``, ``beside``
    or ``none`` (then every entry counts as dead).
    """

    results: Path | None
    manifest: dict[str, Any] | None
    source: str


def find_run(dead_letter: Path, results: Path | None = None) -> RunFiles:
    """The results file (and manifest) to judge ``dead_letter`` against.

    In order: ``results`` when given; the output of a ``*.manifest.json`` beside the file
    whose dead_letter is this file; ``<stem>.results.jsonl`` beside ``<stem>.dead.jsonl``.
    """
    if results is not None:
        if not results.is_file():
            what = "is not a file" if results.exists() else "does not exist"
            raise DlqError(f"results file {results} {what}", path=results)
        manifest = _quiet_manifest(manifest_path(results))
        return RunFiles(results, manifest, "option")
    manifest = _manifest_for(dead_letter)
    if manifest is not None:
        return RunFiles(Path(manifest["output"]), manifest, "manifest")
    stem = dead_letter.name.removesuffix(".dead.jsonl")
    beside = dead_letter.with_name(f"{stem}.results.jsonl")
    if stem != dead_letter.name and beside.is_file():
        return RunFiles(beside, None, "beside")
    return RunFiles(None, None, "none")


def _manifest_for(dead_letter: Path) -> dict[str, Any] | None:
    target = dead_letter.resolve()
    try:
        candidates = sorted(
            dead_letter.parent.glob(f"*{MANIFEST_SUFFIX}"), key=lambda p: p.stat().st_mtime
        )
    except OSError:
        return None
    for path in reversed(candidates):  # the most recently written run first
        data = _quiet_manifest(path)
        dead, out = (data.get("dead_letter"), data.get("output")) if data else (None, None)
        if isinstance(dead, str) and isinstance(out, str) and Path(dead).resolve() == target:
            return data
    return None


def _quiet_manifest(path: Path) -> dict[str, Any] | None:
    # A broken or unreadable manifest may belong to another run: it just does not match.
    try:
        return read_manifest(path)
    except (LedgerError, OSError):
        return None


# Sorting packs (input line, rank in the file) into one word: 32 bits each.
_RANK = (1 << 32) - 1
_NO_LINE = _RANK  # entries without a line come last


def live_entries(
    dead_letter: Path, results: Path | None = None, warnings: list[str] | None = None
) -> LiveEntries:
    """The entries of ``dead_letter`` still dead (judged against ``results``).

    Lines that are not dead-letter entries are skipped and described in ``warnings``.
    """
    if not dead_letter.is_file():
        what = "is not a file" if dead_letter.exists() else "does not exist"
        raise DlqError(f"dead-letter file {dead_letter} {what}", path=dead_letter)
    try:
        state = scan_readonly(results, dead_letter, with_fp=False, done_ids=False)
    except OSError as exc:
        unread = exc.filename or dead_letter
        raise DlqError(f"cannot read {unread}: {exc.strerror or exc}", path=unread) from None
    if warnings is not None:
        warnings.extend(state.warnings)
    return LiveEntries(dead_letter, state)


class LiveEntries:
    """The entries of a dead-letter file still dead, read from the file when asked for.

    Iterating gives them in input-line order: one pass finds them and sorts where they
    are (16 bytes each, 24 while sorting), then each is read again. :meth:`in_file_order`
    is one pass.
    """

    __slots__ = ("_order", "_path", "_state")

    def __init__(self, path: Path, state: LedgerState) -> None:
        self._path, self._state = path, state
        self._order: tuple[array[int], array[int]] | None = None

    def in_file_order(self) -> Iterator[DeadLetter]:
        """The entries as the file holds them: one pass, no sorting."""
        for offset, raw in self._records():
            entry = self._live(offset, raw)
            if entry is not None:
                yield entry

    def __len__(self) -> int:
        return len(self._sorted()[0])

    def __iter__(self) -> Iterator[DeadLetter]:
        offsets, order = self._sorted()
        try:
            with self._path.open("rb") as f:
                for packed in order:
                    offset = offsets[packed & _RANK]
                    f.seek(offset)  # the entries are mostly in order: seeks stay in the buffer
                    entry = self._live(offset, f.readline())
                    if entry is not None:
                        yield entry
        except OSError as exc:
            raise _unreadable(self._path, exc) from None

    def _sorted(self) -> tuple[array[int], array[int]]:
        """Where each entry in force starts, and their ranks sorted by input line."""
        if self._order is None:
            offsets: array[int] = array("Q")
            self._order = offsets, array("Q", sorted_ints(self._ranks(offsets)))
        return self._order

    def _ranks(self, offsets: array[int]) -> Iterator[int]:
        """(input line, rank) of each entry in force, packed; appends where it starts."""
        for offset, raw in self._records():
            found = self._in_force(offset, raw)
            if found is not None:
                line = found[1].line
                rank = len(offsets)
                offsets.append(offset)
                yield (_NO_LINE if line is None else min(max(line, 0), _NO_LINE)) << 32 | rank

    def _records(self) -> Iterator[tuple[int, bytes]]:
        try:
            for offset, _, raw in read_records(self._path):
                yield offset, raw
        except OSError as exc:
            raise _unreadable(self._path, exc) from None

    def _live(self, offset: int, raw: bytes) -> DeadLetter | None:
        found = self._in_force(offset, raw)
        return _entry(*found, raw) if found is not None else None

    def _in_force(self, offset: int, raw: bytes) -> tuple[dict[str, Any], DeadFields] | None:
        obj = loads_object(raw)
        fields = read_dead(obj) if obj is not None else None
        if obj is None or fields is None or not self._state.in_force(offset, fields):
            return None
        return obj, fields


def _unreadable(path: Path, exc: OSError) -> DlqError:
    return DlqError(f"cannot read {path}: {exc.strerror or exc}", path=path)


def _entry(obj: dict[str, Any], fields: DeadFields, raw: bytes) -> DeadLetter:
    # The request as the file holds it: an integer past 64 bits keeps its digits, as the
    # input reader keeps them, so a re-queued line sends what the first run sent.
    obj = exact(obj, raw)
    error = _dict(obj.get("error"))
    attempts, ts = obj.get("attempts", 0), obj.get("ts")
    return DeadLetter(
        custom_id=fields.custom_id,
        line=fields.line,
        status_code=fields.status_code,
        type=fields.type,
        message=str(error.get("message") or ""),
        attempts=attempts if isinstance(attempts, int) else 0,
        ts=ts if isinstance(ts, str) else None,
        request=obj.get("request"),
        kind=fields.kind,
        record=obj,
        text=raw.decode("utf-8").strip(),  # it parsed, so it is UTF-8
    )


def json_text(value: Any) -> str | None:
    """``value`` as compact JSON; ``None`` when it is nested deeper than orjson writes
    (254 levels), as a line another tool wrote may be."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def select(
    entries: Iterable[DeadLetter],
    statuses: Collection[int] = (),
    type_: str | None = None,
    grep: str | None = None,
) -> Iterator[DeadLetter]:
    """Entries with one of ``statuses`` (any if empty), of type ``type_`` exactly, whose
    message or request text contains ``grep`` (case-insensitive)."""
    needle = grep.casefold() if grep else None
    for e in entries:
        if statuses and e.status_code not in statuses:
            continue
        if type_ is not None and e.type != type_:
            continue
        if needle is not None and not _contains(e, needle):
            continue
        yield e


def _contains(entry: DeadLetter, needle: str) -> bool:
    if needle in entry.message.casefold():
        return True
    return any(needle in text.casefold() for text in _strings(entry.request))


def _strings(value: Any) -> Iterator[str]:
    """Every string inside ``value`` (iterative: a request may be nested deep)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
