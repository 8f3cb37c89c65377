"""The files of one run, by name: where they go by default, the companions each keeps
beside it (manifest, lock, torn-tail copy), and whether two names are one file.

Imports nothing of the package: :mod:`batchrunner.config` builds on it, and every part
that reads or writes a run's files asks it where they are.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

__all__ = [
    "dead_letter_beside",
    "default_paths",
    "lock_path",
    "manifest_path",
    "recorded_dead_letter",
    "same_file",
    "torn_path",
]


def default_paths(
    input_path: str | os.PathLike[str], output_path: str | os.PathLike[str] | None = None
) -> tuple[Path, Path]:
    """The results and dead-letter paths used when none are given: the results beside the
    input, the dead letters beside the results (a run's files belong together)."""
    input_path = Path(input_path)
    stem = input_path.name.removesuffix(".jsonl")
    results = Path(output_path or input_path.with_name(f"{stem}.results.jsonl"))
    return results, dead_letter_beside(results)


def dead_letter_beside(results: Path) -> Path:
    """``<results stem>.dead.jsonl`` beside ``results``, the stem without ``.results.jsonl``
    or ``.jsonl``: ``in.results.jsonl`` -> ``in.dead.jsonl``, ``B/res.jsonl`` ->
    ``B/res.dead.jsonl``."""
    name = results.name
    stem = name.removesuffix(".results.jsonl")
    stem = stem.removesuffix(".jsonl") if stem == name else stem
    return results.with_name(f"{stem}.dead.jsonl")


def manifest_path(results: Path) -> Path:
    """The small run manifest kept beside a results file."""
    return results.with_name(results.name + ".manifest.json")


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
