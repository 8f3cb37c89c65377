"""Reading the input: a stream of lines in, requests (or reasons a line is bad, or runs
of lines an earlier run decided) out.

:func:`read_input` reads a block of lines at a time through :mod:`batchrunner.input.parse`,
adding what needs memory of earlier lines (duplicate ids) and asking the caller's claim which
ids an earlier run decided. Line numbers are physical and 1-based, blank lines included, so a
user can jump to them in an editor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any, Literal, overload

import orjson

from batchrunner.input.idset import IdSet
from batchrunner.input.parse import (
    BOM,
    IMPLICIT_ID_PREFIX,
    BadLine,
    Item,
    Origin,
    build_item,
    exact,
    fingerprint,
    parse_head,
    parse_line,
)

__all__ = [
    "DUPLICATE",
    "IMPLICIT_ID_PREFIX",
    "NEW",
    "BadLine",
    "Claim",
    "Done",
    "DoneLines",
    "Item",
    "exact",
    "fingerprint",
    "parse_line",
    "read_input",
]

#: What a :data:`Claim` answers for an id no earlier run decided: send it ...
NEW = 0
#: ... and for an id an earlier line of this read already named.
DUPLICATE = -1
#: ``claim(custom_ids)``, for the ids of a block of lines in turn: :data:`NEW`, :data:`DUPLICATE`,
#: or a positive number that stands for what an earlier run made of the id (the caller's own
#: handle, given back on the :class:`Done` or :class:`DoneLines`).
Claim = Callable[[list[str]], list[int]]


@dataclass(slots=True)  # not frozen: one is made per line on resume, and frozen costs 2x
class Done:
    """A line whose id an earlier run already decided (see ``read_input(claim=...)``)."""

    custom_id: str
    line: int
    #: What ``claim`` answered for the id.
    outcome: int
    #: The line's request, when asked for (``compare_done``) and it still makes one.
    item: Item | None = None


@dataclass(frozen=True, slots=True)
class DoneLines:
    """Lines in a row whose ids an earlier run already decided (as :class:`Done`, without
    the request): what a resume reads most, given a block at a time."""

    custom_ids: list[str]
    #: The line of the first id; the others follow it.
    line: int
    #: What ``claim`` answered for each id.
    outcomes: list[int]

    @property
    def last(self) -> int:
        """The line of the last id."""
        return self.line + len(self.custom_ids) - 1

    def each(self) -> Iterator[Done]:
        """Each line as a :class:`Done`."""
        for i, (custom_id, outcome) in enumerate(zip(self.custom_ids, self.outcomes, strict=True)):
            yield Done(custom_id, self.line + i, outcome)


#: Bytes of input read at once: a few thousand lines, whose ids are claimed in one call.
_BLOCK = 1 << 18


@overload
def read_input(
    path: Path,
    endpoint: str,
    model: str | None,
    claim: None = None,
    compare_done: bool = False,
    implicit_prefix: str = IMPLICIT_ID_PREFIX,
) -> Iterator[Item | BadLine]: ...


@overload
def read_input(
    path: Path,
    endpoint: str,
    model: str | None,
    claim: Claim,
    compare_done: Literal[True],
    implicit_prefix: str = IMPLICIT_ID_PREFIX,
) -> Iterator[Item | BadLine | Done]: ...


@overload
def read_input(
    path: Path,
    endpoint: str,
    model: str | None,
    claim: Claim,
    compare_done: bool = False,
    implicit_prefix: str = IMPLICIT_ID_PREFIX,
) -> Iterator[Item | BadLine | Done | DoneLines]: ...


def read_input(
    path: Path,
    endpoint: str,
    model: str | None,
    claim: Claim | None = None,
    compare_done: bool = False,
    implicit_prefix: str = IMPLICIT_ID_PREFIX,
) -> Iterator[Item | BadLine | Done | DoneLines]:
    """Stream ``path`` line by line; a repeated custom_id makes the later line a :class:`BadLine`.

    The first line to name an id claims it, whether or not that line can be sent. With
    ``claim``, ids an earlier run decided are yielded as a cheap :class:`DoneLines` (or
    :class:`Done`) without building their requests (resuming a million done ids costs one
    JSON parse each); ``claim`` also answers :data:`DUPLICATE` for the ids it knows. With
    ``compare_done`` too, each such line is a :class:`Done` that carries the line's request,
    so that it can be compared with what was sent (an edited input). The other ids are kept
    in memory as hashes only (:class:`IdSet`). ``implicit_prefix`` names a line without
    custom_id (see :data:`IMPLICIT_ID_PREFIX`).
    """
    reader = _Reader(endpoint, model, claim, compare_done, implicit_prefix)
    line_no = 0
    with path.open("rb") as f:
        while block := f.readlines(_BLOCK):
            yield from reader.block(block, line_no)
            line_no += len(block)


class _Reader:
    """:func:`read_input`'s state across blocks: the ids claimed so far."""

    __slots__ = ("_claim", "_compare", "_endpoint", "_model", "_prefix", "_seen")

    def __init__(
        self,
        endpoint: str,
        model: str | None,
        claim: Claim | None,
        compare_done: bool,
        implicit_prefix: str,
    ) -> None:
        self._endpoint, self._model, self._claim = endpoint, model, claim
        self._compare, self._prefix = compare_done, implicit_prefix
        self._seen = _Claims()

    def block(self, raws: list[bytes], before: int) -> Iterator[Item | BadLine | Done | DoneLines]:
        """The entries of lines ``before + 1`` on."""
        bom = not before and raws[0].startswith(BOM)
        heads = None if bom else _given_ids(raws)
        if heads is None or self._claim is None or self._compare:
            for line_no, raw in enumerate(raws, start=before + 1):
                yield from self._line(raw, line_no)
            return
        objs, ids = heads
        outcomes = self._claim(ids)
        run = 0  # lines in a row already decided, from i - run
        for i, outcome in enumerate(outcomes):
            if outcome > 0:
                run += 1
                continue
            if run:
                yield _done_lines(ids, outcomes, before, i - run, i)
                run = 0
            stripped = raws[i].strip()
            yield self._undecided(objs[i], ids[i], stripped, before + i + 1, "given", outcome)
        if run:
            yield _done_lines(ids, outcomes, before, len(ids) - run, len(ids))

    def _line(self, raw: bytes, line_no: int) -> Iterator[Item | BadLine | Done]:
        head = parse_head(raw, line_no, self._prefix)
        if head is None or isinstance(head, BadLine):
            if head is not None:
                yield head
            return
        obj, custom_id, stripped, origin = head
        if origin != "given":  # most lines give theirs: no call for them
            self._seen.note(custom_id, origin)
        outcome = NEW if self._claim is None else self._claim([custom_id])[0]
        if outcome > 0 and not self._compare:
            yield Done(custom_id, line_no, outcome)
        else:
            yield self._undecided(obj, custom_id, stripped, line_no, origin, outcome)

    def _undecided(
        self,
        obj: dict[str, Any],
        custom_id: str,
        stripped: bytes,
        line_no: int,
        origin: Origin,
        outcome: int,
    ) -> Item | BadLine | Done:
        """A line to send, a duplicate, or (compared) one decided before."""
        obj = exact(obj, stripped)
        if outcome == NEW and not self._seen.add(custom_id):
            outcome = DUPLICATE
        if outcome == DUPLICATE:
            taken = self._seen.reason(custom_id, origin, self._prefix)
            return BadLine(line_no, custom_id, obj, "duplicate_custom_id", taken, stripped)
        item = build_item(obj, custom_id, stripped, line_no, self._endpoint, self._model)
        if outcome == NEW:
            return item
        # decided before: its result or entry stands, even if the line is bad now
        return Done(custom_id, line_no, outcome, item if isinstance(item, Item) else None)


def _given_ids(raws: list[bytes]) -> tuple[list[Any], list[str]] | None:
    """Every line's object and ``custom_id`` when each line of the block is an object that
    gives a non-empty string one (nearly always: a block is then read without a Python step
    per line); else ``None``, and the block is read line by line."""
    try:
        objs = list(map(orjson.loads, raws))
        ids: list[Any] = list(map(dict.get, objs, repeat("custom_id")))
    except (orjson.JSONDecodeError, TypeError):  # a bad or blank line, or not an object
        return None
    if set(map(type, ids)) != {str} or not all(ids):
        return None
    return objs, ids


def _done_lines(ids: list[str], outcomes: list[int], before: int, i: int, j: int) -> DoneLines:
    """Lines ``i`` to ``j`` (0-based, ``j`` excluded) of a block."""
    return DoneLines(ids[i:j], before + i + 1, outcomes[i:j])


class _Claims:
    """The ids still to send that were claimed so far (an earlier run's ids are the
    ledger's to know), and why a second claim is refused, in words that say where the clash
    comes from when the id was a number or a line number."""

    __slots__ = ("_numbers", "_seen")

    def __init__(self) -> None:
        self._seen = IdSet()
        self._numbers = IdSet()  # ids given as numbers: rare, so this stays small

    def note(self, custom_id: str, origin: Origin) -> None:
        if origin == "number":
            self._numbers.add(custom_id)

    def add(self, custom_id: str) -> bool:
        """Whether ``custom_id`` is claimed here for the first time."""
        return self._seen.add(custom_id)

    def reason(self, custom_id: str, origin: Origin, implicit_prefix: str) -> str:
        """Why a second line naming ``custom_id`` is refused."""
        tail = "; only its first line is sent"
        if origin == "line":
            return (
                f"this line has no custom_id and its implicit id {custom_id!r} is an earlier "
                "line's custom_id: give this line a custom_id"
            )
        if origin == "number" or custom_id in self._numbers:
            return (
                f"duplicate custom_id {custom_id!r}: the number {custom_id} and the string "
                f'"{custom_id}" are the same id{tail}'
            )
        if _looks_implicit(custom_id, implicit_prefix):
            return (
                f"duplicate custom_id {custom_id!r}: an earlier line has it, or it is the "
                f"implicit id of line {custom_id.removeprefix(implicit_prefix)} (which has no "
                f"custom_id){tail}"
            )
        return f"duplicate custom_id {custom_id!r}{tail}"


def _looks_implicit(custom_id: str, implicit_prefix: str) -> bool:
    number = custom_id.removeprefix(implicit_prefix)
    return custom_id.startswith(implicit_prefix) and number.isdigit()
