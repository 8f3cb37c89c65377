"""Reading a dead-letter file: what is still dead, grouped, filtered and re-queued.

An entry counts only while it is still dead, decided exactly as the ledger decides on
resume: for a custom_id the last entry wins and any result for that id supersedes it; an
input line that could not be sent is keyed by its line number (last wins) and is
superseded by a result for that line (the line was fixed and sent). Nothing here prints;
``batchrunner dlq`` renders what these functions return.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchrunner.errors import DlqError, DlqWriteError, LedgerError
from batchrunner.ledger.manifest import read_manifest
from batchrunner.ledger.records import KIND_INPUT, KIND_REQUEST
from batchrunner.ledger.state import iter_jsonl, result_lines, scan_readonly

__all__ = [
    "DeadLetter",
    "DlqError",
    "DlqWriteError",
    "RunFiles",
    "find_run",
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
            raise DlqError(f"results file {results} {what}")
        manifest = _quiet_manifest(results.with_name(results.name + ".manifest.json"))
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
            dead_letter.parent.glob("*.manifest.json"), key=lambda p: p.stat().st_mtime
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


def live_entries(
    dead_letter: Path, results: Path | None = None, warnings: list[str] | None = None
) -> list[DeadLetter]:
    """The entries of ``dead_letter`` still dead, in input-line order.

    Streams both files; memory holds the results' ids and the live entries only. Lines
    that are not dead-letter entries are skipped and described in ``warnings``.
    """
    warn = warnings if warnings is not None else []
    if not dead_letter.is_file():
        what = "is not a file" if dead_letter.exists() else "does not exist"
        raise DlqError(f"dead-letter file {dead_letter} {what}")
    done = _result_ids(results, warn) if results is not None else {}
    by_id: dict[str, DeadLetter] = {}
    by_line: dict[int, DeadLetter] = {}
    try:
        for n, obj in iter_jsonl(dead_letter):
            entry = _entry(obj) if obj is not None else None
            if entry is None or not _keep(entry, done, by_id, by_line):
                warn.append(f"{dead_letter}:{n}: not a dead-letter entry; ignored")
    except OSError as exc:
        raise DlqError(f"cannot read {dead_letter}: {exc.strerror or exc}") from None
    if results is not None and by_line:
        for line in result_lines(results, set(by_line)):  # fixed in the input and sent since
            del by_line[line]
    return sorted([*by_id.values(), *by_line.values()], key=_order)


def _keep(
    entry: DeadLetter,
    done: Collection[str],
    by_id: dict[str, DeadLetter],
    by_line: dict[int, DeadLetter],
) -> bool:
    """File ``entry`` under its key (last wins); ``False`` when it has no key."""
    if entry.kind == KIND_INPUT:
        if entry.line is None:
            return False
        by_line[entry.line] = entry
    elif entry.custom_id is None:
        return False
    else:
        if entry.line is not None:  # the line was fixed and sent since: its input entry goes
            by_line.pop(entry.line, None)
        if entry.custom_id not in done:  # a result supersedes every entry for its id
            by_id[entry.custom_id] = entry
    return True


def _result_ids(results: Path, warnings: list[str]) -> dict[str, str | None]:
    # The ledger's results scan (fast path: no full parse of our own lines); the
    # dead-letter side is read here, so it gets an empty file.
    try:
        state = scan_readonly(results, Path(os.devnull), with_fp=False)
    except OSError as exc:
        raise DlqError(f"cannot read {results}: {exc.strerror or exc}") from None
    warnings.extend(state.warnings)
    return state.results


def _entry(obj: dict[str, Any]) -> DeadLetter:
    error = _dict(obj.get("error"))
    meta = _dict(obj.get("batchrunner"))
    status, cid, line = error.get("status_code"), obj.get("custom_id"), obj.get("line")
    attempts, ts, kind = obj.get("attempts", 0), obj.get("ts"), meta.get("kind")
    return DeadLetter(
        custom_id=cid if isinstance(cid, str) else None,
        line=line if _is_int(line) else None,
        status_code=status if _is_int(status) else None,
        type=str(error.get("type") or "unknown"),
        message=str(error.get("message") or ""),
        attempts=attempts if isinstance(attempts, int) else 0,
        ts=ts if isinstance(ts, str) else None,
        request=obj.get("request"),
        kind=kind if isinstance(kind, str) else KIND_REQUEST,
        record=obj,
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _order(entry: DeadLetter) -> tuple[bool, int, str]:
    return entry.line is None, entry.line or 0, entry.custom_id or ""


# -- filtering ---------------------------------------------------------------------


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


# -- summary ------------------------------------------------------------------------

# Order matters: quoted strings first (their insides are not looked at again), then
# uuids and long hex runs, then words holding digits.
