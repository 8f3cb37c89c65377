"""What is already decided, derived from the results and dead-letter files.

This is the one place that decides whether an id or an input line is done, dead or still
to send; a resumed run (``engine.admission``), ``status`` and ``dlq`` all ask it. The rule:

- an id with a line in the results file is **done**, whatever order the files were
  written in: a dead item re-sent successfully needs no rewrite of the dead-letter file,
  and a crash half-way leaves a consistent state;
- otherwise an id with ``request`` entries in the dead-letter file is **dead**; its last
  entry is the one in force;
- an input line that could not be sent is keyed by its line number (``input`` entries,
  last wins). It is **dead** unless a result names that line (the line was fixed and sent:
  its result stands, even if the line is broken again since) or a ``request`` entry written
  after it names that line (fixed, sent and refused: that entry counts, under its id);
- everything else is still to send.

Nothing here holds the results themselves in memory, only ids and their request
fingerprints.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from batchrunner.input.lines import BadLine, Done
from batchrunner.ledger.appendfile import AppendFile, repair_torn_tail
from batchrunner.ledger.records import (
    KIND_INPUT,
    DeadFields,
    loads_object,
    read_dead,
    read_result,
)
from batchrunner.runfiles import torn_path
from batchrunner.vocabulary import failure_key

__all__ = [
    "DeadEntry",
    "Decision",
    "Ledger",
    "LedgerState",
    "read_records",
    "scan",
    "scan_readonly",
]


@dataclass(frozen=True, slots=True)
class DeadEntry:
    """The dead-letter entry in force for an id or an input line."""

    fp: str | None
    status_code: int | None
    type: str
    #: Where the entry starts in the dead-letter file.
    offset: int = 0

    @property
    def key(self) -> str:
        """The key it is counted under (:func:`batchrunner.vocabulary.failure_key`)."""
        return failure_key(self.status_code, self.type)


#: What the files say of an input line: ``"done"``, the :class:`DeadEntry` in force, or
#: ``None`` (still to send).
Decision = DeadEntry | Literal["done"] | None


class LedgerState:
    """The ids and input lines already decided, as found in the files at start."""

    __slots__ = ("_again", "_dead", "_lines", "_result_lines", "_results", "_retry", "warnings")

    def __init__(self) -> None:
        self._results: dict[str, str | None] = {}
        self._dead: dict[str, DeadEntry] = {}
        # Input entries in force by input line, results aside (a result may name the line).
        self._lines: dict[int, DeadEntry] = {}
        self._result_lines: set[int] = set()
        self._retry: Collection[int] | None = None
        self._again: Collection[str] = ()
        self.warnings: list[str] = []

    def retry_dead(self, statuses: Collection[int]) -> None:
        """``--retry-dead``: from now on, dead ids with one of ``statuses`` (any, if empty)
        are to send again."""
        self._retry = statuses

    def send_again(self, types: Collection[str]) -> None:
        """A run: from now on, dead ids whose entry has one of ``types`` are to send again
        (:data:`batchrunner.vocabulary.TRANSIENT`: what failed for no fault of its own)."""
        self._again = types

    def decided(self, custom_id: str) -> bool:
        """Whether ``custom_id`` is done or dead (and so not to send)."""
        return custom_id in self._results or self.dead_entry(custom_id) is not None

    def dead_entry(self, custom_id: str) -> DeadEntry | None:
        """The entry in force for a dead id; ``None`` when it is done or not dead."""
        entry = self._dead.get(custom_id)
        if entry is None or custom_id in self._results or self._retried(entry):
            return None
        return entry

    def _retried(self, entry: DeadEntry) -> bool:
        if entry.type in self._again:
            return True
        return self._retry is not None and (not self._retry or entry.status_code in self._retry)

    def sent_fp(self, custom_id: str) -> str | None:
        """The fingerprint of the request that earned ``custom_id``'s outcome, if kept."""
        if custom_id in self._results:
            return self._results[custom_id]
        entry = self.dead_entry(custom_id)
        return entry.fp if entry else None

    def decide(self, entry: Done | BadLine) -> Decision:
        """What the files say of an input line that is not sent as it is."""
        if isinstance(entry, Done):
            return self.dead_entry(entry.custom_id) or "done"
        if entry.line in self._result_lines:
            return "done"
        return self._lines.get(entry.line)

    def in_force(self, offset: int, fields: DeadFields) -> bool:
        """Whether the dead-letter entry at ``offset`` is the one in force for its key."""
        if fields.kind == KIND_INPUT:
            assert fields.line is not None
            entry = self._lines.get(fields.line)
            superseded = fields.line in self._result_lines
        else:
            assert fields.custom_id is not None
            entry = self._dead.get(fields.custom_id)
            superseded = fields.custom_id in self._results
        return not superseded and entry is not None and entry.offset == offset

    def _add_dead(self, offset: int, fields: DeadFields, with_fp: bool) -> None:
        """File one dead-letter entry (in file order: a later one replaces an earlier)."""
        fp = fields.fp if with_fp else None
        entry = DeadEntry(fp, fields.status_code, fields.type, offset)
        if fields.kind == KIND_INPUT:
            assert fields.line is not None
            self._lines[fields.line] = entry
            return
        assert fields.custom_id is not None
        self._dead[fields.custom_id] = entry
        if fields.line is not None:  # the line was fixed and sent since its input entry
            self._lines.pop(fields.line, None)

    def _add_result(self, custom_id: str, line: int | None, fp: str | None) -> None:
        self._results[custom_id] = fp
        if line is not None:
            self._result_lines.add(line)


def read_records(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(offset, line number, raw line) of each non-blank line of ``path``; a missing file
    has none."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    offset = 0
    with f:
        for n, raw in enumerate(f, start=1):
            if raw.strip():
                yield offset, n, raw
            offset += len(raw)


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


def scan_readonly(results_path: Path | None, dead_path: Path, with_fp: bool = True) -> LedgerState:
    """Read both files once without changing them (a torn last line is reported as invalid).

    Without ``with_fp`` the request fingerprints are not kept (``None``): a lighter scan for
    when the input is known not to have changed. Without ``results_path`` no id is done.
    """
    state = LedgerState()
    for offset, n, raw in read_records(dead_path):
        obj = loads_object(raw)
        fields = read_dead(obj) if obj is not None else None
        if fields is None:
            state.warnings.append(f"{dead_path}:{n}: not a dead-letter line; ignored")
            continue
        state._add_dead(offset, fields, with_fp)
    if results_path is not None:
        _scan_results(results_path, state, with_fp)
    return state


def _scan_results(path: Path, state: LedgerState, with_fp: bool) -> None:
    for _, n, raw in read_records(path):
        found = read_result(raw)
        if found is None:
            state.warnings.append(f"{path}:{n}: not a result line; ignored")
            continue
        cid, line, fp = found
        state._add_result(cid, line, fp if with_fp else None)


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
