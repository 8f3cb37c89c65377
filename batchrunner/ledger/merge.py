"""``batchrunner merge``: the shards' files joined into one results file and one dead-letter
file, and checked against the input.

Streaming, in three passes: the input, each line decided by its own shard's files with the
ledger's one rule (:class:`~batchrunner.ledger.state.LedgerState`, as ``status`` decides),
which counts each shard's lines, done, dead and pending; then each shard's results, then its
dead-letter entries still in force, copied line by line. An outcome is copied only when it
belongs to the shard whose files hold it, names an id of the input, and was not copied
already; anything else is left out and counted (a few named): misplaced, not in the input,
doubled. Memory holds the shards' ledger states and two sets of 16-byte id hashes
(:class:`~batchrunner.input.idset.IdSet`), never a line's content.

The merged files are written beside their targets and renamed over them at the end, then
given a manifest like a run's, so ``status``, ``dlq`` and a later run read them alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

from batchrunner.config import ENDPOINTS, RunConfig, Shard, manifest_path
from batchrunner.errors import LedgerError, OutputWriteError
from batchrunner.input.idset import IdSet
from batchrunner.input.lines import BadLine, Done, Item, read_input
from batchrunner.input.scan import scan_input
from batchrunner.input.shard import shard_of
from batchrunner.ledger.lock import RunLock
from batchrunner.ledger.manifest import implicit_id_prefix, read_manifest, write_merge_manifest
from batchrunner.ledger.mergereport import MergeReport
from batchrunner.ledger.records import (
    KIND_INPUT,
    dead_fields,
    read_records,
    read_result,
)
from batchrunner.ledger.shards import ShardFiles
from batchrunner.ledger.state import Decision, LedgerState, scan_readonly
from batchrunner.runfiles import same_file

__all__ = ["MergeReport", "merge_shards"]

#: The merged files' write buffer: millions of short lines go out in few system calls;
#: larger saves calls no one would notice, for memory held through the whole merge.
_BUFFER = 1 << 20


def merge_shards(
    input_path: Path, shards: list[ShardFiles], output: Path, dead_letter: Path
) -> MergeReport:
    """Merge ``shards`` (of one input) into ``output`` and ``dead_letter``; the report says
    whether every line of the input has exactly one outcome. Raises :class:`LedgerError`
    when the targets are not free to write, :class:`OutputWriteError` when writing fails."""
    if not shards:
        raise LedgerError("no shard files to merge")
    _check_targets(input_path, shards, output, dead_letter)
    # One writer per file, as for a run: no run may write the targets while they are
    # replaced, nor a shard's files between the pass that decides and the pass that copies.
    lock = RunLock(output, dead_letter, *(p for f in shards for p in (f.results, f.dead)))
    try:
        _check_free(output, dead_letter)
        return _merge_locked(input_path, shards, output, dead_letter)
    finally:
        lock.release()


def _merge_locked(
    input_path: Path, shards: list[ShardFiles], output: Path, dead_letter: Path
) -> MergeReport:
    config = _merged_config(input_path, shards[0].manifest, output, dead_letter)
    scan = scan_input(input_path)
    report = MergeReport.empty(config, shards)
    for f in shards:
        if f.manifest.get("input_fingerprint") != scan.fingerprint:
            report.warnings.append(f"{f.results} was produced from another version of the input")
    states = {f.shard.index: scan_readonly(f.results, f.dead, with_fp=False) for f in shards}
    for state in states.values():
        report.warnings += state.warnings
    prefix = implicit_id_prefix(shards[0].manifest)
    ids = _decide_input(config, prefix, states, report)
    keep = _Keep(report, ids, scan.lines)
    with _replacing(output) as out, _replacing(dead_letter) as dead:
        for f in shards:
            report.results_written += _copy_results(f, keep, out.write)
        for f in shards:
            report.dead_written += _copy_dead(f, states[f.shard.index], keep, dead.write)
    write_merge_manifest(config, scan, prefix, [str(f.results) for f in shards])
    return report


def _merged_config(
    input_path: Path, manifest: dict[str, Any], output: Path, dead_letter: Path
) -> RunConfig:
    """What the merged files are, described as a run without ``--shard`` would be."""
    endpoint, model = manifest.get("endpoint"), manifest.get("model")
    if endpoint not in ENDPOINTS:
        raise LedgerError(f"the shards' manifest names no known endpoint ({endpoint!r})")
    return RunConfig(
        input_path=input_path,
        output_path=output,
        dead_letter_path=dead_letter,
        endpoint=str(endpoint),
        model=model if isinstance(model, str) else None,
    )


def _decide_input(
    config: RunConfig, prefix: str, states: dict[int, LedgerState], report: MergeReport
) -> IdSet:
    """Decide every input line by its shard's files (implicit ids spelt with ``prefix``);
    returns the input's ids."""
    ids = IdSet()
    count = report.count
    inp, endpoint, model = config.input_path, config.endpoint, config.model
    for entry in read_input(inp, endpoint, model, implicit_prefix=prefix):
        if entry.custom_id is not None:
            ids.add(entry.custom_id)
        home = shard_of(entry.custom_id, entry.line, count)
        report.by_shard[home].count(_decision(entry, states.get(home)))
    return ids


def _decision(entry: Item | BadLine | Done, state: LedgerState | None) -> Decision:
    """What the line's own shard's files say of it (``None`` for a missing shard: pending),
    asked as a resumed run of that shard asks: its id first, then its line."""
    if state is None:
        return None
    duplicate = isinstance(entry, BadLine) and entry.type == "duplicate_custom_id"
    if entry.custom_id is not None and not duplicate:
        (outcome,) = state.claim([entry.custom_id])
        if outcome > 0:
            return state.decide(Done(entry.custom_id, entry.line, outcome))
    return None if isinstance(entry, Item) else state.decide(entry)


class _Keep:
    """Which outcomes go into the merged files: each once, from its own shard's files, and
    only of the input's ids (or lines)."""

    __slots__ = ("_copied", "_ids", "_lines", "_report")

    def __init__(self, report: MergeReport, ids: IdSet, lines: int) -> None:
        self._report, self._ids, self._lines = report, ids, lines
        self._copied = IdSet()

    def outcome(self, shard: Shard, custom_id: str, line: int) -> bool:
        """An outcome keyed by its id (a result, a refused request)."""
        report = self._report
        # Not in the input first: such an id has no home shard, whatever its hash says.
        if custom_id not in self._ids:
            report.foreign.add(repr(custom_id))
            return False
        if not self._at_home(shard, custom_id, line):
            return False
        if not self._copied.add(custom_id):
            report.doubled.add(repr(custom_id))
            return False
        return True

    def input_entry(self, shard: Shard, custom_id: str | None, line: int) -> bool:
        """A dead input line, keyed by its line number."""
        if line > self._lines:
            self._report.foreign.add(f"line {line}")
            return False
        return self._at_home(shard, custom_id, line)

    def _at_home(self, shard: Shard, custom_id: str | None, line: int) -> bool:
        home = shard_of(custom_id, line, shard.count)
        if home != shard.index:
            what = repr(custom_id) if custom_id is not None else f"line {line}"
            self._report.misplaced.add(f"{what} in shard {shard}'s files belongs to shard {home}")
        return home == shard.index


def _copy_results(f: ShardFiles, keep: _Keep, write: Callable[[bytes], object]) -> int:
    written = 0
    for _, _, raw in read_records(f.results):
        found = read_result(raw)
        if found is None:
            continue  # not a result (a torn last line): the scan warned of it
        custom_id, line = found
        if keep.outcome(f.shard, custom_id, line or 0):
            write(_whole(raw))
            written += 1
    return written


def _copy_dead(
    f: ShardFiles, state: LedgerState, keep: _Keep, write: Callable[[bytes], object]
) -> int:
    written = 0
    for offset, _, raw in read_records(f.dead):
        fields = dead_fields(raw)
        if fields is None or not state.in_force(offset, fields):
            continue
        if fields.kind == KIND_INPUT:
            assert fields.line is not None
            kept = keep.input_entry(f.shard, fields.custom_id, fields.line)
        else:
            assert fields.custom_id is not None
            kept = keep.outcome(f.shard, fields.custom_id, fields.line or 0)
        if kept:
            write(_whole(raw))
            written += 1
    return written


def _whole(raw: bytes) -> bytes:
    """A line as copied: ending in a newline (a whole last line may lack one)."""
    return raw if raw.endswith(b"\n") else raw + b"\n"


@contextmanager
def _replacing(path: Path) -> Iterator[IO[bytes]]:
    """A file written beside ``path`` and renamed over it once whole (synced first)."""
    tmp = path.with_name(path.name + ".merging")
    try:
        with ExitStack() as stack:
            f = stack.enter_context(tmp.open("wb", buffering=_BUFFER))
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputWriteError(str(path), exc) from exc
    finally:
        tmp.unlink(missing_ok=True)


def _check_targets(
    input_path: Path, shards: list[ShardFiles], output: Path, dead_letter: Path
) -> None:
    """Refuse targets that are one of the files merged, or each other."""
    theirs = [input_path] + [
        p for f in shards for p in (f.results, f.dead, manifest_path(f.results))
    ]
    for target in (output, dead_letter):
        if any(same_file(target, p) for p in theirs):
            message = f"{target} is one of the files being merged: choose another"
            raise LedgerError(message, path=target)
    if same_file(output, dead_letter):
        raise LedgerError("the merged results and dead-letter files must be two files")


def _check_free(output: Path, dead_letter: Path) -> None:
    """Refuse targets that hold something other than an earlier merge (asked under the
    lock: a run may have begun writing them a moment before)."""
    manifest = read_manifest(manifest_path(output))
    merged = manifest is not None and "merged_from" in manifest
    for target in (output, dead_letter):
        if target.exists() and target.stat().st_size and not merged:
            raise LedgerError(
                f"{target} exists and is not the output of a merge: "
                "choose another `output_path`/`dead_letter_path`, or move it away",
                path=target,
            )
