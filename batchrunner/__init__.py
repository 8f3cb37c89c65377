"""batchrunner: push a large JSONL of requests through the Mistral API, losing nothing.

A small library under the ``batchrunner`` command::

    from batchrunner import RunConfig, run

    stats = run(RunConfig(input_path="prompts.jsonl", model="mistral-small-latest", rps=5))
    print(stats.ok, stats.dead)

The key is read from ``MISTRAL_API_KEY`` unless ``api_key`` is given; ``mock=True`` runs
against the embedded mock server instead. In a running event loop (a notebook cell) use
``stats = await arun(config)``. For a list of prompts rather than a file::

    results = await arun_list(["Hi", "Bonjour"], model="mistral-small-latest", mock=True)
    [r.text for r in results]
"""

from __future__ import annotations

from batchrunner.api import Progress, arun, run
from batchrunner.config import DEFAULT_SERVER_URL, ENDPOINTS, RunConfig, default_paths
from batchrunner.dryrun import DryRun, dry_run
from batchrunner.engine.run import Engine
from batchrunner.engine.stats import RunStats
from batchrunner.errors import BatchRunnerError, ConfigError, LedgerError, OutputWriteError
from batchrunner.notebook import Result, arun_list, run_list

__all__ = [
    "DEFAULT_SERVER_URL",
    "ENDPOINTS",
    "BatchRunnerError",
    "ConfigError",
    "DryRun",
    "Engine",
    "LedgerError",
    "OutputWriteError",
    "Progress",
    "Result",
    "RunConfig",
    "RunStats",
    "arun",
    "arun_list",
    "default_paths",
    "dry_run",
    "run",
    "run_list",
]
