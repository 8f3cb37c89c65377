"""The files of one run, by name: where the dead letters go by default, the companions each
file keeps beside it (manifest, lock, torn-tail copy, batch jobs), and whether two names are
one file.

Imports only :mod:`batchrunner.errors`: :mod:`batchrunner.config` builds on it, and every
part that reads or writes a run's files asks it where they are.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from batchrunner.errors import ConfigError

__all__ = [
    "MANIFEST_SUFFIX",
    "check_apart",
    "check_distinct",
    "dead_letter_beside",
    "jobs_dir",
    "lock_path",
    "manifest_path",
    "recorded_dead_letter",
    "run_files",
    "same_file",
    "torn_path",
]


def dead_letter_beside(results: Path) -> Path:
    """``<results stem>.dead.jsonl`` beside ``results``, the stem without ``.results.jsonl``
    or ``.jsonl``: ``in.results.jsonl`` -> ``in.dead.jsonl``, ``B/res.jsonl`` ->
    ``B/res.dead.jsonl``."""
    name = results.name
    stem = name.removesuffix(".results.jsonl")
    stem = stem.removesuffix(".jsonl") if stem == name else stem
    return results.with_name(f"{stem}.dead.jsonl")


#: A run manifest is its results file's name plus this.
MANIFEST_SUFFIX = ".manifest.json"


def manifest_path(results: Path) -> Path:
    """The small run manifest kept beside a results file."""
    return results.with_name(results.name + MANIFEST_SUFFIX)


def jobs_dir(results: Path) -> Path:
    """The folder beside a results file that records the run's Batch API jobs."""
    return results.with_name(results.name + ".jobs")


def recorded_dead_letter(results: Path) -> Path | None:
    """The dead-letter file the manifest beside ``results`` names, if one does: a run
    resumed without a dead-letter path keeps it, wherever today's default would be. An
    unreadable manifest names none here; opening the run reports it."""
    try:
        data = orjson.loads(manifest_path(results).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    dead = data.get("dead_letter") if isinstance(data, dict) else None
    return Path(dead) if isinstance(dead, str) else None


def lock_path(path: Path) -> Path:
    """The lock file a run holds beside each file it writes (one writer at a time)."""
    return path.with_name(path.name + ".lock")


def torn_path(path: Path) -> Path:
    """Where the bytes of a torn last line cut off ``path`` are kept."""
    return path.with_name(path.name + ".torn")


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: by identity when both exist (another
    spelling, a symlink, a hard link), else by their paths with every symlink resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


#: How many of :func:`run_files` are settings' files (the rest are their companions).
_SETTING_FILES = 3


def run_files(input_path: Path, output: Path, dead: Path) -> list[tuple[str, Path]]:
    """Every file a run reads or writes, each with what it is: a setting's name, or whose
    companion it is (``output_path's manifest``)."""
    return [
        ("input_path", input_path),
        ("output_path", output),
        ("dead_letter_path", dead),
        ("output_path's manifest", manifest_path(output)),
        ("output_path's batch jobs", jobs_dir(output)),
        ("output_path's lock", lock_path(output)),
        ("dead_letter_path's lock", lock_path(dead)),
        ("output_path's torn-tail copy", torn_path(output)),
        ("dead_letter_path's torn-tail copy", torn_path(dead)),
    ]


def check_distinct(files: list[tuple[str, Path]]) -> None:
    """Refuse :func:`run_files` in which one file has two names, whatever the spelling: a
    dead-letter file that is the input feeds itself for ever, results that are the input
    are read as done."""
    named, companions = files[:_SETTING_FILES], files[_SETTING_FILES:]
    for i, (setting, path) in enumerate(named):
        check_apart(setting, path, named[:i] + companions)


def check_apart(setting: str, path: Path, files: list[tuple[str, Path]]) -> None:
    """Refuse ``path`` as ``setting`` when it is one of ``files`` (a :class:`ConfigError`
    shaped as a refused setting, ``{setting} must be a file other than {what}``)."""
    for other, other_path in files:
        if same_file(path, other_path):
            expected = f"a file other than {other}"
            both = f"{path} and {other_path} are the same file"
            message = f"{setting} must be {expected} ({path if path == other_path else both})"
            raise ConfigError(message, setting=setting, expected=expected, found=str(path))
