"""What is already decided, derived from the results and dead-letter files.

This is the one place that decides whether an id or an input line is done, dead or still
to send; a resumed run (``engine.admission``), ``status`` and ``dlq`` all ask it. The rule:

- an id with a line in the results file is **done**, whatever order the files were
  written in: a dead item re-sent successfully needs no rewrite of the dead-letter file to
  be read right, and a crash half-way leaves a consistent state (the rewrite at the end of
  a run, :mod:`batchrunner.ledger.rewrite`, drops what this rule says is superseded);
- otherwise an id with ``request`` entries in the dead-letter file is **dead**; its last
  entry is the one in force (a run sends it again when its retries ran out:
  :meth:`LedgerState.send_again`);
- an input line that could not be sent is keyed by its line number (``input`` entries,
  last wins). It is **dead** unless a result names that line (the line was fixed and sent:
  its result stands, even if the line is broken again since) or a ``request`` entry written
  after it names that line (fixed, sent and refused: that entry counts, under its id);
- everything else is still to send.

Memory holds neither the results nor the ids themselves: per id a 128-bit hash and, when
asked for, its request fingerprint, in flat tables (:mod:`batchrunner.ledger.table`), about
23 bytes a done id (31 with fingerprints), and a byte for its claim while the input is read;
per input line named by a result, one byte. A dead-letter entry is remembered by where it
starts in the file, so ``dlq`` can read the ones in force again instead of holding them,
and the end-of-run rewrite knows which to keep without reading any twice.

Both files and the input are read a block of lines at a time, each block's ids hashed and
looked up by one call (:meth:`claim`): ten million lines are mostly those calls' loops.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from itertools import chain, repeat
from operator import add, and_, lshift
from pathlib import Path
from typing import Literal

from batchrunner.errors import LedgerError
from batchrunner.input.lines import DUPLICATE, NEW, BadLine, Done
from batchrunner.ledger.appendfile import repair_torn_tail
from batchrunner.ledger.records import (
    KIND_INPUT,
    DeadFields,
    dead_fields,
    read_records,
)
from batchrunner.ledger.resultscan import read_results_aside
from batchrunner.ledger.table import (
    MISSING,
    TAKEN,
    KeyTable,
    NumberSet,
    estimate_lines,
    key,
    keys,
    positions,
    sorted_ints,
)
from batchrunner.runfiles import torn_path
from batchrunner.vocabulary import failure_key

__all__ = ["DeadEntry", "Decision", "LedgerState", "scan", "scan_readonly"]

# An entry's info word: where it starts in the dead-letter file (40 bits: files up to 1 TiB),
# its (status, type) as an index into a list of the kinds seen (23 bits), and a flag: for an
# id, "a result supersedes it" (set only when the done ids are not kept: else they say it);
# for an input line, "a later request entry names the line".
_OFFSET_BITS = 40
_OFFSET = (1 << _OFFSET_BITS) - 1
_KINDS = 1 << 23
_FLAG = 1 << 63
_RESULT, _DEAD = 0, 1


@dataclass(frozen=True, slots=True)
class DeadEntry:
    """The dead-letter entry in force for an id or an input line."""

    fp: str | None
    status_code: int | None
    type: str
    #: Where the entry starts in the dead-letter file.
    offset: int

    @property
    def key(self) -> str:
        """The key it is counted under (:func:`batchrunner.vocabulary.failure_key`)."""
        return failure_key(self.status_code, self.type)


#: What the files say of an input line: ``"done"``, the :class:`DeadEntry` in force, or
#: ``None`` (still to send).
Decision = DeadEntry | Literal["done"] | None


class LedgerState:
    """The ids and input lines already decided, as found in the files at start.

    A read of the input asks :meth:`claim` for each id and :meth:`decide` for each line
    not sent as it is; ``dlq`` asks :meth:`in_force` for each dead-letter entry.
    """

    __slots__ = (
        "_again",
        "_bad_lines",
        "_dead",
        "_fp",
        "_kind_of",
        "_kinds",
        "_lines",
        "_odd",
        "_result_lines",
        "_results",
        "_retry",
        "dead_records",
        "warnings",
    )

    def __init__(
        self, with_fp: bool, done_ids: bool = True, results: int = 0, dead: int = 0
    ) -> None:
        """``results`` and ``dead``: about how many lines the files have (to size tables)."""
        self._fp = with_fp
        self._results = KeyTable(int(with_fp), results) if done_ids else None
        self._dead = KeyTable(1 + with_fp, dead)
        self._lines = KeyTable(2)  # the entry's info, and its line
        self._result_lines = NumberSet()
        self._bad_lines = NumberSet()  # the lines of the input entries: few, or none
        self._kinds: list[tuple[int | None, str]] = []
        self._kind_of: dict[tuple[int | None, str], int] = {}
        self._retry: Collection[int] | None = None
        self._again: Collection[str] = ()
        self.warnings: list[str] = []
        #: The dead-letter file's lines (blank ones aside), and where those that are not
        #: entries start.
        self.dead_records = 0
        self._odd: list[int] = []

    def retry_dead(self, statuses: Collection[int]) -> None:
        """``--retry-dead``: from now on, dead ids with one of ``statuses`` (any, if empty)
        are to send again."""
        self._retry = statuses

    def send_again(self, types: Collection[str]) -> None:
        """A run: from now on, dead ids whose entry has one of ``types`` are to send again
        (:data:`batchrunner.vocabulary.TRANSIENT`: what failed for no fault of its own)."""
        self._again = types

    def claim(self, custom_ids: list[str]) -> list[int]:
        """``read_input``'s claim, for one read of the input, of each id of a block of lines
        in turn: a handle of the id's outcome the first time a decided id is named,
        :data:`DUPLICATE` after, :data:`NEW` for an id to send."""
        his, los = keys(list(map(str.encode, custom_ids)))
        if self._results is None:
            found = [MISSING] * len(his)
        else:
            found = self._results.find_all(his, los, mark=True)
        # A result's handle for every slot found, by map: the few others are set one by one
        claims = list(map(add, map(lshift, found, repeat(1)), repeat(_RESULT + 1)))
        for i in positions(found, TAKEN):
            claims[i] = DUPLICATE
        dead = len(self._dead)
        for i in positions(found, MISSING):  # no result: dead, or new
            claims[i] = self._claim_dead(his[i], los[i]) if dead else NEW
        return claims

    def _claim_dead(self, hi: int, lo: int) -> int:
        dead = self._dead
        off = dead.find(hi, lo)
        if off < 0 or self._retried(dead.get(off)):
            return NEW
        (off,) = dead.find_all([hi], [lo], mark=True)
        return (off << 1 | _DEAD) + 1 if off >= 0 else DUPLICATE

    @staticmethod
    def dead_among(claims: list[int]) -> int:
        """How many of ``claims`` (all handles of decided ids) stand for a dead-letter entry
        rather than a result: a line :meth:`decide` would not call done."""
        results: int = sum(map(and_, claims, repeat(1)))  # a result's handle is odd
        return len(claims) - results

    def dead_entries(self, claims: list[int]) -> Iterator[DeadEntry]:
        """The entries in force of the dead ids among ``claims`` (handles of decided ids)."""
        for claim in claims:
            if not claim & 1:  # a result's handle is odd
                yield self._entry(self._dead, (claim - 1) >> 1)

    def _retried(self, info: int) -> bool:
        status, type_ = self._kind(info)
        if type_ in self._again:
            return True
        retry = self._retry
        return retry is not None and (not retry or status in retry)

    def decide(self, entry: Done | BadLine) -> Decision:
        """What the files say of an input line that is not sent as it is."""
        if isinstance(entry, Done):
            handle = entry.outcome - 1
            return "done" if handle & 1 == _RESULT else self._entry(self._dead, handle >> 1)
        if self._named_by_result(entry.line):
            return "done"
        off = self._lines.find(*_line_key(entry.line))
        if off < 0 or self._lines.get(off) & _FLAG:
            return None
        return self._entry(self._lines, off)

    def sent_fp(self, done: Done) -> str | None:
        """The fingerprint of the request that earned a done line's outcome, if kept."""
        handle = done.outcome - 1
        if not self._fp:
            return None
        if handle & 1 == _RESULT:
            assert self._results is not None
            word = self._results.get(handle >> 1)
        else:
            word = self._dead.get(handle >> 1, 1)
        return f"{word:016x}" if word else None

    def in_force(self, offset: int, fields: DeadFields) -> bool:
        """Whether the dead-letter entry at ``offset`` is the one in force for its key."""
        if fields.kind == KIND_INPUT:
            assert fields.line is not None
            if self._named_by_result(fields.line):
                return False
            table, (hi, lo) = self._lines, _line_key(fields.line)
        else:
            assert fields.custom_id is not None
            table, (hi, lo) = self._dead, key(fields.custom_id.encode())
        off = table.find(hi, lo)
        if off < 0 or table.get(off) & _OFFSET != offset:
            return False
        if table is self._dead and self._results is not None:
            return self._results.find(hi, lo) < 0  # the results were kept: they decide
        return not table.get(off) & _FLAG

    @property
    def results_found(self) -> int:
        """How many ids the results file held at the scan (0 when the done ids are not kept)."""
        return len(self._results) if self._results is not None else 0

    def dead_found(self, after_line: int) -> tuple[int, int]:
        """Of the entries the scan found that are still in force: the dead ids not to send
        again, and the dead input lines after ``after_line`` (entries written since the scan
        are not counted)."""
        ids = sum(not self._retried(info) for info in self._live_ids())
        lines = sum(line > after_line for _, line in self._live_lines())
        return ids, lines

    def superseded(self) -> int:
        """How many entries of the dead-letter file a later outcome supersedes (counted
        from the tables, holding nothing)."""
        live = sum(1 for _ in self._live_ids()) + sum(1 for _ in self._live_lines())
        return self.dead_records - len(self._odd) - live

    def kept(self) -> Iterator[int]:
        """Where each line of the dead-letter file to keep starts, in file order: the entries
        in force (:meth:`in_force`, for all of them at once) and the lines that are not
        entries."""
        ids = (info & _OFFSET for info in self._live_ids())
        lines = (info & _OFFSET for info, _ in self._live_lines())
        return sorted_ints(chain(ids, lines, self._odd))

    def _live_ids(self) -> Iterator[int]:
        for (his, los), (infos, *_) in self._dead.entries():
            if self._results is not None:  # the results were kept: they decide
                found = self._results.find_all(his, los)
                infos = [info for info, off in zip(infos, found, strict=True) if off == MISSING]
            yield from (info for info in infos if not info & _FLAG)

    def _live_lines(self) -> Iterator[tuple[int, int]]:
        for _, (infos, lines) in self._lines.entries():
            for info, line in zip(infos, lines, strict=True):
                if not info & _FLAG and not self._named_by_result(line):
                    yield info, line

    def _entry(self, table: KeyTable, off: int) -> DeadEntry:
        info = table.get(off)
        status, type_ = self._kind(info)
        word = table.get(off, 1) if self._fp and table is self._dead else 0
        return DeadEntry(f"{word:016x}" if word else None, status, type_, info & _OFFSET)

    def _kind(self, info: int) -> tuple[int | None, str]:
        return self._kinds[(info & ~_FLAG) >> _OFFSET_BITS]

    def _named_by_result(self, line: int) -> bool:
        return line > 0 and line in self._result_lines  # 0: a result that names no line

    # -- filling it from the files, dead-letter file first ----------------------------

    def _add_dead(self, offset: int, fields: DeadFields) -> None:
        """One dead-letter entry, in file order: a later one for a key replaces an earlier."""
        info = offset | self._kind_index(fields.status_code, fields.type) << _OFFSET_BITS
        if offset > _OFFSET:
            raise LedgerError("a dead-letter file over 1 TiB is not supported")
        if fields.kind == KIND_INPUT:
            assert fields.line is not None
            off = self._lines.insert(*_line_key(fields.line))
            self._lines.put(off, info)
            self._lines.put(off, max(fields.line, 0), 1)  # one below 1 names no line
            self._bad_lines.add_all([fields.line])
            return
        assert fields.custom_id is not None
        off = self._dead.insert(*key(fields.custom_id.encode()))
        self._dead.put(off, info)
        if self._fp:
            self._dead.put(off, _fp_word(fields.fp), 1)
        if fields.line is not None and fields.line in self._bad_lines:  # fixed and sent since
            _flag(self._lines, *_line_key(fields.line))

    def _kind_index(self, status: int | None, type_: str) -> int:
        index = self._kind_of.get((status, type_))
        if index is None:
            index = self._kind_of[(status, type_)] = len(self._kinds)
            if index == _KINDS:
                raise LedgerError(f"more than {_KINDS:,} kinds of error in a dead-letter file")
            self._kinds.append((status, type_))
        return index

    def _add_results(self, path: Path) -> None:
        """Every result of ``path`` (after the dead-letter file: it supersedes entries)."""
        results, keep_fp = self._results, self._fp
        # Without the done ids kept, a dead entry's flag says whether a result supersedes it.
        dead = self._dead if results is None and len(self._dead) else None
        for got in read_results_aside(path, keep_fp):
            self.warnings.extend(f"{path}:{n}: not a result line; ignored" for n in got.not_results)
            his, los = keys(got.ids)
            if results is not None:
                offs = results.insert_all(his, los)
                if keep_fp:
                    for off, fp in zip(offs, got.fps, strict=True):
                        results.put(off, _fp_word(fp))
            if dead is not None:
                for off in dead.find_all(his, los):
                    if off >= 0:
                        dead.put(off, dead.get(off) | _FLAG)
            self._result_lines.add_all(got.lines)


def _line_key(line: int) -> tuple[int, int]:
    return key(b"%d" % line)


def _flag(table: KeyTable, hi: int, lo: int) -> None:
    off = table.find(hi, lo)
    if off >= 0:
        table.put(off, table.get(off) | _FLAG)


def _fp_word(fp: str | bytes | None) -> int:
    """A request fingerprint (16 hex digits) as one word; 0 for none or a foreign one."""
    try:
        word = int(fp, 16) if fp is not None and len(fp) == 16 else 0
    except ValueError:
        return 0
    return word if word > 0 else 0


def scan(results_path: Path, dead_path: Path, with_fp: bool = True) -> LedgerState:
    """Read both files once, repairing a torn last line first."""
    warnings = []
    for path in (results_path, dead_path):
        cut = repair_torn_tail(path)
        if cut:
            kept = torn_path(path)
            warnings.append(f"repaired {path}: cut a torn last line ({cut} bytes, kept in {kept})")
    state = scan_readonly(results_path, dead_path, with_fp)
    state.warnings[:0] = warnings
    return state


def scan_readonly(
    results_path: Path | None, dead_path: Path, with_fp: bool = True, done_ids: bool = True
) -> LedgerState:
    """Read both files once without changing them (a torn last line is reported as invalid).

    Without ``with_fp`` the request fingerprints are not kept: a lighter scan for when the
    input is known not to have changed. Without ``done_ids`` the done ids are not kept
    either: enough for :meth:`LedgerState.in_force`. Without ``results_path`` no id is done.
    """
    expected = estimate_lines(results_path) if results_path and done_ids else 0
    state = LedgerState(with_fp, done_ids, expected, estimate_lines(dead_path))
    for offset, n, raw in read_records(dead_path):
        state.dead_records += 1
        fields = dead_fields(raw)
        if fields is None:
            state.warnings.append(f"{dead_path}:{n}: not a dead-letter line; ignored")
            state._odd.append(offset)
            continue
        state._add_dead(offset, fields)
    if results_path is not None:
        state._add_results(results_path)
    return state
