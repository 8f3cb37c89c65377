"""What a file given to a command is, from its first line: a command handed the wrong one of
a run's files says which file it got and which it wants, rather than counting nonsense."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Literal

import orjson

from batchrunner.config import MANIFEST_SUFFIX, default_paths, manifest_path
from batchrunner.errors import DlqError, LedgerError
from batchrunner.ledger.records import is_dead_entry, is_result
from batchrunner.runfiles import dead_letter_beside, recorded_dead_letter

__all__ = [
    "FileKind",
    "check_dead_letter_file",
    "check_results_file",
    "kind_of",
]

FileKind = Literal["results", "dead_letter", "input", "manifest", "job", "other", "empty"]

#: A first line longer than this is read no further: enough for any line's leading keys.
_HEAD = 1 << 16


def kind_of(path: Path) -> FileKind:
    """Which kind of file ``path`` looks like, by its name and its first non-blank line."""
    if path.name.endswith(MANIFEST_SUFFIX):
        return "manifest"
    if path.suffix == ".toml":
        return "job"
    try:
        with path.open("rb") as f:
            first = next((line for line in f if line.strip()), b"")
    except OSError:
        return "other"
    if not first:
        return "empty"
    try:
        obj = orjson.loads(first[:_HEAD])
    except orjson.JSONDecodeError:
        return "other"
    if not isinstance(obj, dict):
        return "other"
    if is_result(obj):
        return "results"
    if is_dead_entry(obj):
        return "dead_letter"
    return "input"


def check_results_file(path: Path) -> None:
    """``status`` takes a results file (or a job): say what else it was given, and where the
    results file is."""
    if manifest_path(path).exists() or not path.exists():
        return
    kind = kind_of(path)
    if kind == "input":
        results = default_paths(path)[0]
        where = f"its results are in {results}" if results.exists() else "run it first"
        raise LedgerError(
            f"{path} is an input file (its lines are requests), not a results file: {where}",
            path=path,
        )
    if kind == "dead_letter":
        raise LedgerError(
            f"{path} is a dead-letter file, not a results file: "
            f"batchrunner dlq summary {shlex.quote(str(path))} shows it",
            path=path,
        )


def check_dead_letter_file(path: Path) -> None:
    """``dlq`` takes a dead-letter file: say what else it was given, and where the run's
    dead-letter file is."""
    kind = kind_of(path)
    if kind not in ("results", "input"):
        return
    if kind == "results":
        dead = _dead_letter_of(path)
        what = "a results file"
    else:
        dead = default_paths(path)[1]
        what = "an input file (its lines are requests)"
    where = f"the run's dead letters are in {dead}" if dead.exists() else "it has none yet"
    raise DlqError(f"{path} is {what}, not a dead-letter file: {where}", path=path)


def _dead_letter_of(results: Path) -> Path:
    """The dead-letter file of the run whose results file this is: its manifest says, else
    the default name beside it."""
    return recorded_dead_letter(results) or dead_letter_beside(results)
