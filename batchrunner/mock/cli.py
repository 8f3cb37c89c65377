"""The mock server's one command line: ``batchrunner mock-server`` and
``python -m batchrunner.mock`` are this command.

It prints ``mock server listening on http://HOST:PORT`` as its first stdout line and serves
until SIGINT or SIGTERM (exit 0). A bad option exits 2, and a server that cannot start (a
port in use, a host that does not resolve, a log it cannot open) exits 1; either way with
one line on stderr, never a traceback or a usage block, because parents (``run --mock``,
tests) show that line as it is.
"""

from __future__ import annotations

import math
from typing import Any

import click

from batchrunner.mock.config import MockConfig, parse_error_rates
from batchrunner.mock.jobfaults import parse_job_faults
from batchrunner.mock.limits import LIMIT_ALGOS
from batchrunner.mock.serve import serve_forever

__all__ = ["JOB_KEYS", "mock_server"]

_DEFAULTS = MockConfig()
#: The port when none is given: a fixed one a person can point a client at (0 picks any).
DEFAULT_PORT = 8000


class _OneLineUsage(click.ClickException):
    exit_code = 2


class _Command(click.Command):
    """A command whose usage errors are one line: ``Error: Invalid value for '--port': ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _OneLineUsage(exc.format_message()) from None


class _Finite(click.FloatRange):
    """A float range that also refuses nan and inf (which no range check catches)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def _job_faults(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_job_faults(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    return value


def _rates(ctx: click.Context, param: click.Parameter, value: str) -> dict[str, float]:
    try:
        return parse_error_rates(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


_NOT_NEGATIVE = _Finite(min=0)


@click.command(
    "mock-server",
    cls=_Command,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="\b\nExamples:\n  batchrunner mock-server --port 8000 --error-rate 429=0.1,500=0.05\n"
    "  MISTRAL_API_KEY=any batchrunner run in.jsonl --server-url http://127.0.0.1:8000",
)
@click.option("--host", default=_DEFAULTS.host, show_default=True)
@click.option(
    "--port",
    default=DEFAULT_PORT,
    type=click.IntRange(0, 65535),
    show_default=True,
    help="0 picks a free port.",
)
@click.option("--latency-ms", default=_DEFAULTS.latency_ms, type=_NOT_NEGATIVE, show_default=True)
@click.option("--jitter-ms", default=_DEFAULTS.jitter_ms, type=_NOT_NEGATIVE, show_default=True)
@click.option(
    "--error-rate",
    default="",
    callback=_rates,
    metavar="429=0.1,500=0.05,...",
    help="Random faults: HTTP statuses, timeout, reset, garbage, capacity (a 429 that says"
    " the server is out of capacity; a plain 429 says the rate limit is exceeded).",
)
@click.option(
    "--limit-rps", type=_Finite(min=0, min_open=True), help="Answer 429 above this many/s."
)
@click.option(
    "--limit-algo",
    type=click.Choice(LIMIT_ALGOS),
    default=_DEFAULTS.limit_algo,
    show_default=True,
    help="How --limit-rps counts: a sliding 1 s window, a fixed 1 s window, or a token"
    " bucket holding one second's burst.",
)
@click.option(
    "--limit-tpm", type=click.IntRange(min=1), help="Answer 429 above this many tokens/minute."
)
@click.option("--seed", default=_DEFAULTS.seed, type=int, show_default=True)
@click.option(
    "--retry-after-ms",
    default=_DEFAULTS.retry_after_ms,
    type=click.IntRange(min=0),
    show_default=True,
)
@click.option("--require-key", envvar="MOCK_REQUIRE_KEY", help="Only accept this bearer key.")
@click.option(
    "--hang-s",
    default=_DEFAULTS.hang_s,
    type=_NOT_NEGATIVE,
    show_default=True,
    help="How long a timeout fault holds the request.",
)
@click.option(
    "--embedding-dim",
    default=_DEFAULTS.embedding_dim,
    type=click.IntRange(min=1),
    show_default=True,
)
@click.option(
    "--batch-seconds-per-1000",
    default=_DEFAULTS.batch_seconds_per_1000,
    type=_NOT_NEGATIVE,
    show_default=True,
    help="Batch jobs: seconds to answer 1,000 lines (0: at once).",
)
@click.option(
    "--batch-queue-s",
    default=_DEFAULTS.batch_queue_s,
    type=_NOT_NEGATIVE,
    show_default=True,
    help="Batch jobs: seconds a job stays QUEUED.",
)
@click.option(
    "--batch-cancel-s",
    default=_DEFAULTS.batch_cancel_s,
    type=_NOT_NEGATIVE,
    show_default=True,
    help="Batch jobs: seconds a cancelled job stays CANCELLATION_REQUESTED.",
)
@click.option(
    "--batch-hour-s",
    default=_DEFAULTS.batch_hour_s,
    type=_Finite(min=0, min_open=True),
    show_default=True,
    help="Batch jobs: seconds in one of a job's timeout_hours.",
)
@click.option(
    "--batch-faults",
    default=_DEFAULTS.batch_faults,
    callback=_job_faults,
    metavar="fail_after:50%,...",
    help="Batch jobs: a fault script for every job (as a job's metadata 'mock').",
)
@click.option("--log", type=click.Path(dir_okay=False), help="Log every request as JSONL.")
def mock_server(error_rate: dict[str, float], log: str | None, **opts: Any) -> None:
    """A local HTTP server that speaks the Mistral API, with injectable faults."""
    config = MockConfig(error_rates=error_rate, log_path=log, **opts)
    try:
        serve_forever(config)
    except OSError as exc:
        where = f"{config.host}:{config.port}"
        raise click.ClickException(f"cannot start the mock server on {where}: {exc}") from None


#: What a job file's ``[mock_server]`` table may set: every option but those ``run --mock``
#: decides itself (where it listens, and the key it sends).
JOB_KEYS: frozenset[str] = frozenset(
    p.name for p in mock_server.params if p.name not in ("host", "port", "require_key")
)
