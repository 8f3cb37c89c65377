"""batchrunner: push a large JSONL of requests through the Mistral API, losing nothing.

A small library under the ``batchrunner`` command::

    from pathlib import Path
    from batchrunner import RunConfig, default_paths, run

    out, dead = default_paths(Path("prompts.jsonl"))
    stats = run(RunConfig(input_path=Path("prompts.jsonl"), output_path=out,
                          dead_letter_path=dead, model="mistral-small-latest", rps=5))
    print(stats.ok, stats.dead)

Inside a running event loop (a notebook), use ``await Engine(config).run()`` (for
``via="batch"``, ``await batchrunner.batch.run.BatchRun(config).run()``).
"""

from __future__ import annotations

import anyio

from batchrunner.batch.jobs import check_no_live_jobs
from batchrunner.config import DEFAULT_SERVER_URL, ENDPOINTS, RunConfig, default_paths
from batchrunner.engine.run import Engine
from batchrunner.engine.stats import RunStats
from batchrunner.errors import BatchRunnerError, ConfigError, LedgerError, OutputWriteError

__all__ = [
    "DEFAULT_SERVER_URL",
    "ENDPOINTS",
    "BatchRunnerError",
    "ConfigError",
    "Engine",
    "LedgerError",
    "OutputWriteError",
    "RunConfig",
    "RunStats",
    "default_paths",
    "run",
]


def run(config: RunConfig) -> RunStats:
    """Run ``config`` to completion and return its counters (blocking): online, or as
    Batch API jobs with ``via="batch"``."""
    if config.via == "batch":
        # Imported here: the SDK it needs costs every other command ~0.4 s to load.
        from batchrunner.batch.run import BatchRun

        return anyio.run(BatchRun(config).run, backend="asyncio")
    if not config.restart:
        check_no_live_jobs(config.output_path)  # their ids may still come home
    return anyio.run(Engine(config).run, backend="asyncio")
