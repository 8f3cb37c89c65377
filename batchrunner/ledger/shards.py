"""The files of a sharded run: each shard's results, dead-letter file and manifest, found
from the paths (or glob patterns) a user gives, or by their default names beside the input.

A shard's manifest says which shard it holds (``K/N``) and where its dead-letter file is;
files copied from other machines are found beside their results by the same name.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchrunner.config import Shard, default_paths, manifest_path
from batchrunner.errors import LedgerError
from batchrunner.ledger.manifest import read_manifest

__all__ = ["ShardFiles", "find_shards", "shard_pattern"]


@dataclass(frozen=True, slots=True)
class ShardFiles:
    """One shard's files, as its manifest describes them."""

    shard: Shard
    results: Path
    dead: Path
    manifest: dict[str, Any]


def shard_pattern(input_path: Path) -> Path:
    """The glob of every shard's default results file beside ``input_path``."""
    results, _ = default_paths(input_path, Shard(0, 1))
    return results.with_name(results.name.replace(".shard-0-of-1.", ".shard-*-of-*."))


def find_shards(input_path: Path, given: Sequence[str]) -> list[ShardFiles]:
    """The shard files named by ``given`` (paths or glob patterns; none: the default names
    beside the input), in shard order. Raises :class:`LedgerError` when there are none,
    when they are shards of different counts, or when one shard comes twice."""
    patterns = list(given) or [str(shard_pattern(input_path))]
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        paths += [Path(m) for m in matches]
    if not paths:
        raise LedgerError(f"no shard results found: nothing matches {', '.join(patterns)}")
    found = [_shard_files(p) for p in dict.fromkeys(paths)]
    counts = sorted({f.shard.count for f in found})
    if len(counts) > 1:
        raise LedgerError(f"the shard files are shards of different counts: {counts}")
    by_index: dict[int, ShardFiles] = {}
    for f in found:
        other = by_index.setdefault(f.shard.index, f)
        if other is not f:
            message = f"shard {f.shard} comes twice: {other.results} and {f.results}"
            raise LedgerError(message, path=f.results)
    return [by_index[k] for k in sorted(by_index)]


def _shard_files(results: Path) -> ShardFiles:
    if not results.is_file():
        raise LedgerError(f"shard results file {results} does not exist", path=results)
    manifest = read_manifest(manifest_path(results))
    if manifest is None:
        raise LedgerError(
            f"no run manifest beside {results}: is it the results file of a `shard` run?",
            path=results,
        )
    shard = Shard.parse(str(manifest.get("shard") or ""))
    if shard is None:
        message = f"{results} holds a run without `shard`: there is nothing to merge"
        raise LedgerError(message, path=results)
    return ShardFiles(shard, results, _dead_of(results, manifest), manifest)


def _dead_of(results: Path, manifest: dict[str, Any]) -> Path:
    """The shard's dead-letter file: beside its results under the name the manifest gives
    (files gathered from several machines), else where the manifest says."""
    recorded = manifest.get("dead_letter")
    if not isinstance(recorded, str):
        where = manifest_path(results)
        raise LedgerError(f"{where} names no dead-letter file", path=where)
    beside = results.with_name(Path(recorded).name)
    return beside if beside.exists() else Path(recorded)
