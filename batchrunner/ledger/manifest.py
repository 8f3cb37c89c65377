"""The run manifest: what a set of output files was produced from.

Kept beside the results as ``<results>.manifest.json``. Resuming onto files made from a
different input file, endpoint, model or dead-letter file, or for another ``--shard``, is
refused; the same input whose content changed is allowed (appending lines is common) and
reported.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

import orjson

from batchrunner.config import RunConfig, manifest_path
from batchrunner.errors import LedgerError, OutputWriteError
from batchrunner.input.lines import IMPLICIT_ID_PREFIX
from batchrunner.input.scan import InputScan
from batchrunner.ledger.records import utc_iso
from batchrunner.runfiles import jobs_dir, same_file

__all__ = [
    "InputChange",
    "check_manifest",
    "implicit_id_prefix",
    "move_aside",
    "previous_input_size",
    "read_manifest",
    "write_manifest",
    "write_merge_manifest",
]

_VERSION = 1
#: How this run names lines without custom_id; a manifest without it is from before ids
#: were "#N" and its run keeps bare line numbers.
_IMPLICIT = "implicit_id_prefix"

#: How the input differs from when the files were last written: ``new`` (no manifest),
#: ``same``, ``grown`` (lines appended only) or ``edited`` (allowed by the config).
InputChange = Literal["new", "same", "grown", "edited"]


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LedgerError(f"cannot read {path}: {exc.strerror or exc}", path=path) from None
    except orjson.JSONDecodeError as exc:
        raise LedgerError(
            f"{path} is not valid JSON ({exc.msg}); remove it or use `restart`", path=path
        ) from None
    return data if isinstance(data, dict) else None


def implicit_id_prefix(manifest: dict[str, Any] | None) -> str:
    """What the run whose manifest this is calls a line without custom_id, before its line
    number: ``#`` for a new run; nothing for a run begun before that rule, whose results
    were written under bare numbers and must still match their lines on resume."""
    if manifest is None:
        return IMPLICIT_ID_PREFIX
    value = manifest.get(_IMPLICIT)
    return value if isinstance(value, str) else ""


def _describe(config: RunConfig, scan: InputScan, prefix: str = "") -> dict[str, Any]:
    return {
        "version": _VERSION,
        "input": str(config.input_path.resolve()),
        "input_fingerprint": scan.fingerprint,
        "input_size": scan.size,
        "endpoint": config.endpoint,
        "model": config.model,
        "output": str(config.output_path.resolve()),
        "dead_letter": str(config.dead_letter_path.resolve()),
        "client": config.client,
        "server_url": config.server_url,
        "command": config.command,
        _IMPLICIT: prefix,
        "shard": config.shard,
    }


def previous_input_size(config: RunConfig) -> int | None:
    """The input's size when the files were last written, to test for appended lines."""
    old = read_manifest(manifest_path(config.output_path))
    size = old.get("input_size") if old else None
    return size if isinstance(size, int) else None


def check_manifest(config: RunConfig, scan: InputScan) -> tuple[InputChange, dict[str, Any] | None]:
    """Refuse files that belong to another run (another input, endpoint, model or
    dead-letter file), or to an input edited since (unless allowed).

    Returns how the input changed since the files were written, and the old manifest.
    """
    old = read_manifest(manifest_path(config.output_path))
    if old is None:
        return "new", None
    _check_same_run(config, old)
    _check_shard(config, old.get("shard"))
    old_fp = old.get("input_fingerprint")
    if old_fp == scan.fingerprint:
        return "same", old
    if scan.prefix_fingerprint is not None and scan.prefix_fingerprint == old_fp:
        return "grown", old
    if not config.allow_changed_input:
        raise LedgerError(
            f"{config.input_path} was edited since {config.output_path} was written; "
            "pass `allow_changed_input` to continue (done ids are not re-sent, changed ones "
            "are counted) or `restart` to start over (old files are kept)",
            path=config.input_path,
        )
    return "edited", old


def _check_same_run(config: RunConfig, old: dict[str, Any]) -> None:
    """The settings that decide what each request is, and which files hold the outcomes,
    are those the files were written with. A run given no model keeps the one recorded
    (lines that name their model never used it); a run given one where none was recorded
    adds it (lines that needed one could not be sent)."""
    changes = [
        ("input file", old.get("input"), str(config.input_path.resolve())),
        ("endpoint", old.get("endpoint"), config.endpoint),
    ]
    if isinstance(old.get("model"), str) and config.model is not None:
        changes.append(("model", old["model"], config.model))
    dead = old.get("dead_letter")
    if isinstance(dead, str) and not same_file(Path(dead), config.dead_letter_path):
        changes.append(("dead-letter file", dead, str(config.dead_letter_path)))
    for what, before, now in changes:
        if before != now:
            raise LedgerError(
                f"{config.output_path} was produced with {what} {before} and this run uses "
                f"{now}; pass `restart` to start over (old files are kept) "
                "or choose another `output_path`",
                path=config.output_path,
            )


def _check_shard(config: RunConfig, old: object) -> None:
    """Files of one shard hold only its lines: another shard, or none, must not resume them."""
    if old == config.shard:
        return
    held = f"shard {old}" if old is not None else "the whole input (no `shard`)"
    wanted = f"shard {config.shard}" if config.shard is not None else "the whole input"
    raise LedgerError(
        f"{config.output_path} holds {held} and this run is for {wanted}; "
        "give each shard its own `output_path`/`dead_letter_path` (the default names do)",
        path=config.output_path,
    )


def write_manifest(config: RunConfig, scan: InputScan, old: dict[str, Any] | None) -> None:
    """Record what the files are produced from; ``started_at``, the implicit id prefix and
    a model that this run was not given survive from the ``old`` manifest."""
    now = utc_iso()
    prefix = implicit_id_prefix(old)
    data = _describe(config, scan, prefix) | {"started_at": _kept(old, "started_at") or now}
    data["model"] = config.model or _kept(old, "model")
    data["updated_at"] = now
    _replace(manifest_path(config.output_path), data)


def _kept(old: dict[str, Any] | None, key: str) -> str | None:
    value = old.get(key) if old else None
    return value if isinstance(value, str) else None


def write_merge_manifest(
    config: RunConfig, scan: InputScan, prefix: str, merged_from: list[str]
) -> None:
    """The manifest of ``batchrunner merge``'s files: a run's description (so ``status``,
    ``dlq`` and a later run without ``--shard`` read them as any run's, implicit ids spelt
    with the shards' ``prefix``), plus the shard results files they were merged from."""
    now = utc_iso()
    data = _describe(config, scan, prefix) | {"started_at": now, "updated_at": now}
    _replace(manifest_path(config.output_path), data | {"merged_from": merged_from})


def _replace(path: Path, data: dict[str, Any]) -> None:
    """Write ``path`` whole or not at all."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputWriteError(str(path), exc) from exc


def move_aside(config: RunConfig) -> list[Path]:
    """``restart``: rename the old files (and the batch jobs record) with a timestamp;
    never delete them."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    moved = []
    results = config.output_path
    for path in (results, config.dead_letter_path, manifest_path(results), jobs_dir(results)):
        if path.exists():
            target = path.with_name(f"{path.name}.{stamp}.bak")
            n = 1
            while target.exists():  # two restarts within one second
                n += 1
                target = path.with_name(f"{path.name}.{stamp}-{n}.bak")
            path.rename(target)
            moved.append(target)
    return moved
