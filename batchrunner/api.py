"""The library's entry points: run one :class:`RunConfig` to its end, blocking or awaited.

:func:`prepared` is what both they and the command line do before a run: the files checked
(input first, so that a missing input is not reported as a missing key), the key looked
for, and the embedded mock server started when the config asks for it.

May import: ``config``, ``errors``, ``runfiles``, ``vocabulary``, ``engine``, ``batch``, ``mock``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from batchrunner.batch.jobs import check_no_live_jobs
from batchrunner.config import RunConfig
from batchrunner.engine.run import Engine
from batchrunner.engine.stats import RunStats
from batchrunner.errors import BatchRunnerError, ConfigError
from batchrunner.mock.process import running_mock

if TYPE_CHECKING:
    from batchrunner.batch.run import BatchRun

__all__ = ["Progress", "arun", "check_files", "prepared", "run"]

#: Called with the live counters while a run goes (every ``every`` seconds) and at its end.
Progress = Callable[[RunStats], None]

#: The key sent to the embedded mock server, which checks none.
MOCK_KEY = "mock-key"
_NO_KEY = (
    "MISTRAL_API_KEY is not set: export it (a mock server started by hand takes any value), "
    "or use the embedded mock server (`mock`)"
)


def run(config: RunConfig) -> RunStats:
    """Run ``config`` to its end and return its counters (blocking): online, or as Batch
    API jobs with ``via="batch"``.

    Inside a running event loop (a notebook cell, an async function) use :func:`arun`.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return anyio.run(arun, config, backend="asyncio")
    raise RuntimeError(
        "batchrunner.run() blocks, and this thread already runs an event loop (a notebook "
        "cell does): use `stats = await batchrunner.arun(config)` instead"
    )


async def arun(
    config: RunConfig, *, progress: Progress | None = None, every: float = 0.5
) -> RunStats:
    """Run ``config`` to its end in the running loop; ``progress`` sees the counters while
    it goes. Raises the :mod:`batchrunner.errors`, before anything is sent when it can."""
    cm = prepared(config)
    ready, warnings = await anyio.to_thread.run_sync(cm.__enter__)
    try:
        runner = _runner(ready)
        runner.stats.warnings.extend(warnings)
        stats = await _watched(runner, progress, every)
    finally:
        await anyio.to_thread.run_sync(cm.__exit__, None, None, None)
    if progress is not None:
        progress(stats)
    return stats


def _runner(config: RunConfig) -> Engine | BatchRun:
    """What runs ``config``: the engine, or with ``via="batch"`` the batch run."""
    if config.via == "batch":
        # Imported here: the SDK it drives costs every other run ~0.4 s to load.
        from batchrunner.batch.run import BatchRun

        return BatchRun(config)
    return Engine(config)


async def _watched(engine: Engine | BatchRun, progress: Progress | None, every: float) -> RunStats:
    if progress is None:
        return await engine.run()
    error: BatchRunnerError | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(_tell, engine.stats, progress, every)
        try:
            stats = await engine.run()
        except BatchRunnerError as exc:
            error = exc  # raised below, outside the task group that would wrap it
        finally:
            tg.cancel_scope.cancel()
    if error is not None:
        raise error
    return stats


async def _tell(stats: RunStats, progress: Progress, every: float) -> None:
    while True:
        await anyio.sleep(every)
        progress(stats)


@contextmanager
def prepared(config: RunConfig) -> Iterator[tuple[RunConfig, list[str]]]:
    """(the config to run, warnings): the files checked, no batch job of the run still out
    when it is to be sent online, the key found, and with ``config.mock`` the embedded mock
    server running on 127.0.0.1 until the block ends."""
    check_files(config)
    if config.via == "online" and not config.restart:
        check_no_live_jobs(config.output_path)  # their ids may still come home
    if not config.mock:
        if config.api_key is None:
            raise ConfigError(_NO_KEY, setting="api_key")
        yield config, []
        return
    with running_mock(dict(config.mock_server)) as url:
        yield dataclasses.replace(config, server_url=url, api_key=MOCK_KEY), []


def check_files(config: RunConfig) -> None:
    """The input is a readable regular file, and the outputs go into existing folders
    (never created silently: a typo in ``-o`` would otherwise scatter folders)."""
    _check_input(config.input_path)
    for name in ("output_path", "dead_letter_path"):
        _check_output(name, getattr(config, name))


def _check_input(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"input file {path} does not exist", path=path) from None
    except OSError as exc:
        raise ConfigError(f"input file {path} cannot be read: {exc.strerror}", path=path) from None
    if stat.S_ISDIR(mode):
        found = sorted(p.name for p in path.glob("*.jsonl"))[:3]
        hint = f"; it holds {', '.join(found)}" if found else "; it holds no .jsonl file"
        raise ConfigError(f"input {path} is a folder, not a JSONL file{hint}", path=path)
    if not stat.S_ISREG(mode):
        raise ConfigError(
            f"input {path} is a pipe or a device, not a file: a run reads its input more "
            "than once, and again to resume; save it to a file first",
            path=path,
        )
    if not os.access(path, os.R_OK):
        raise ConfigError(f"input file {path} cannot be read: permission denied", path=path)


def _check_output(name: str, path: Path) -> None:
    folder = path.parent
    if path.is_dir():
        raise ConfigError(
            f"{name} must be a file, not the folder {path}", setting=name, expected="a file"
        )
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(
            f"{name} must be in an existing folder: {folder} {what} (create it first)",
            path=path,
            setting=name,
            expected="in an existing folder",
        )
