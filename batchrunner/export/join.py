"""Each input line with its outcome, in input order, decided by the ledger's one rule
(:meth:`~batchrunner.ledger.state.LedgerState.decide`), streaming: the results file is
indexed by id (:class:`OffsetIndex`), then the input is read line by line and each
outcome read back from where it starts. Memory holds ids and offsets, never the results.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from batchrunner.config import Shard
from batchrunner.export.index import OffsetIndex
from batchrunner.input.lines import BadLine, Done, Item, read_input
from batchrunner.input.shard import in_shard
from batchrunner.ledger.records import loads_object, read_records, result_id
from batchrunner.ledger.state import DeadEntry, Decision, LedgerState, scan_readonly

__all__ = ["Joined", "RunFiles", "joined"]

Status = Literal["ok", "dead", "pending"]


@dataclass(frozen=True, slots=True)
class RunFiles:
    """A run's files and how it read its input (from its manifest, or given)."""

    input: Path
    results: Path
    dead_letter: Path
    endpoint: str
    model: str | None
    implicit_prefix: str
    #: The shard whose files these are (``run --shard``): the other shards' lines are not
    #: theirs to answer for, and are passed over as the run's admission passes them over.
    shard: Shard | None = None


@dataclass(frozen=True, slots=True)
class Joined:
    """One input line: what it asked (``body``: the request as sent; ``request``: the line
    as written, for a line that could not be sent), and its outcome: the result record
    (``ok``), the dead-letter record (``dead``), or neither (``pending``)."""

    line: int
    custom_id: str | None
    endpoint: str
    body: dict[str, Any] | None
    request: Any
    status: Status
    record: dict[str, Any] | None


def joined(run: RunFiles) -> Iterator[Joined]:
    """Every non-blank input line of ``run`` (of its shard's, for one shard's files), in
    order, with its outcome."""
    state = scan_readonly(run.results, run.dead_letter, with_fp=False)
    index = _index(run.results)
    with _open(run.results) as results, _open(run.dead_letter) as dead:
        entries = read_input(
            run.input, run.endpoint, run.model, state.claim, True, run.implicit_prefix
        )
        for entry in entries:
            if not in_shard(entry.custom_id, entry.line, run.shard):
                continue
            yield _join(entry, _decision(state, entry), run, results, dead, index)


def _decision(state: LedgerState, entry: Item | BadLine | Done) -> Decision:
    """What the files say of the line, by the ledger's rule (an Item is still to send)."""
    return None if isinstance(entry, Item) else state.decide(entry)


def _join(
    entry: Item | BadLine | Done,
    decision: Decision,
    run: RunFiles,
    results: IO[bytes] | None,
    dead: IO[bytes] | None,
    index: OffsetIndex,
) -> Joined:
    item = entry if isinstance(entry, Item) else entry.item if isinstance(entry, Done) else None
    endpoint = (item.endpoint if item else None) or run.endpoint
    request = entry.request if isinstance(entry, BadLine) else item.request if item else None
    body = item.body if item else None
    if decision == "done":
        record = _result(results, index, run.results, entry.custom_id)
        status: Status = "ok"
    elif isinstance(decision, DeadEntry):
        record = _record_at(dead, decision.offset)
        status = "dead"
    else:
        record, status = None, "pending"
    return Joined(entry.line, entry.custom_id, endpoint, body, request, status, record)


def _index(results: Path) -> OffsetIndex:
    index = OffsetIndex()
    for offset, _, raw in read_records(results):
        cid = result_id(raw)
        if cid is not None:
            index.put(cid, offset)
    return index


def _result(
    f: IO[bytes] | None, index: OffsetIndex, path: Path, custom_id: str | None
) -> dict[str, Any] | None:
    """The result record of ``custom_id``: at its indexed offset, or (when two ids shared a
    hash) found by reading the file through."""
    if f is None or custom_id is None:
        return None
    offset = index.get(custom_id)
    record = _record_at(f, offset) if offset is not None else None
    if record is not None and record.get("custom_id") == custom_id:
        return record
    found = None
    for _, _, raw in read_records(path):
        obj = loads_object(raw)
        if obj is not None and obj.get("custom_id") == custom_id:
            found = obj
    return found


def _record_at(f: IO[bytes] | None, offset: int) -> dict[str, Any] | None:
    if f is None:
        return None
    f.seek(offset)
    return loads_object(f.readline())


@contextmanager
def _open(path: Path) -> Iterator[IO[bytes] | None]:
    """``path`` opened for reading, or None when it does not exist (no outcomes yet)."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        yield None
        return
    with f:
        yield f
