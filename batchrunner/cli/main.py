"""The ``batchrunner`` command: parse options into a :class:`RunConfig`, run, report.

Library errors become one-line messages here and nowhere else. Exit codes: 0 every line
has a result; 1 some lines were dead-lettered; 2 usage or configuration error; 3 the run
stopped on an error (a write failure, a refused key, an unknown model); 4 paused because
the account's quota is spent; 5 stopped at --max-tokens-total/--max-cost; 130
interrupted. All but 2 leave the run resumable.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console

from batchrunner.cli.jobfile import load_job
from batchrunner.cli.progress import summary_table
from batchrunner.cli.signals import run_with_signals
from batchrunner.config import DEFAULT_SERVER_URL, ENDPOINTS, RunConfig, default_paths
from batchrunner.engine.stats import RunStats
from batchrunner.errors import BatchRunnerError, ConfigError, OutputWriteError
from batchrunner.ledger.status import run_status
from batchrunner.mock.cli import mock_server
from batchrunner.mock.process import running_mock

__all__ = ["main"]

EXIT_OK, EXIT_DEAD, EXIT_USAGE, EXIT_ERROR, EXIT_PAUSED, EXIT_BUDGET = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130
_STOP_CODES = {"quota": EXIT_PAUSED, "budget": EXIT_BUDGET}
_MOCK_KEY = "mock-key"


class UsageFailure(click.ClickException):
    exit_code = EXIT_USAGE


class RunFailure(click.ClickException):
    exit_code = EXIT_ERROR


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="batchrunner")
def cli() -> None:
    """Push a JSONL file of requests through the Mistral API, losing nothing."""


@cli.command()
@click.argument("input_", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Results JSONL.")
@click.option("--dead-letter", type=click.Path(path_type=Path), help="Dead-letter JSONL.")
@click.option("--endpoint", type=click.Choice(list(ENDPOINTS)), help="API endpoint.")
@click.option("--model", help="Model for lines whose body names none.")
@click.option("--rps", type=float, help="Requests per second (default: no cap).")
@click.option("--concurrency", type=int, help="Requests in flight at most [adaptive].")
@click.option("--tpm", type=int, help="Tokens per minute (prompt + completion) at most.")
@click.option("--ordered", is_flag=True, default=None, help="Write results in input order.")
@click.option(
    "--reorder-buffer", type=int, help="With --ordered: results held back at most [1000]."
)
@click.option("--max-tokens-total", type=int, help="Stop before this many tokens are spent.")
@click.option("--max-cost", type=float, help="Stop before this many USD are spent.")
@click.option("--max-attempts", type=int, help="Attempts per item, first included [8].")
@click.option("--timeout", type=float, help="Seconds per request [120].")
@click.option("--backoff-base", type=float, help="First backoff ceiling, seconds [0.5].")
@click.option("--backoff-max", type=float, help="Largest backoff ceiling, seconds [30].")
@click.option("--max-retry-after", type=float, help="Longest Retry-After honoured [300].")
@click.option("--drain-timeout", type=float, help="Seconds to finish in-flight on Ctrl-C [10].")
@click.option("--server-url", envvar="MISTRAL_SERVER_URL", help="API base URL.")
@click.option("--client", type=click.Choice(["http", "sdk"]), help="http (default) or sdk.")
@click.option("--mock/--no-mock", default=None, help="Run against the embedded mock server.")
@click.option("--restart", is_flag=True, default=None, help="Move old output aside and start over.")
@click.option(
    "--allow-changed-input",
    is_flag=True,
    default=None,
    help="Resume although the input was edited.",
)
@click.option(
    "--retry-dead", is_flag=True, default=None, help="Send this run's dead-lettered ids again."
)
@click.option(
    "--status", "retry_statuses", type=int, multiple=True, help="With --retry-dead: only these."
)
@click.option("--breaker", type=int, help="Fatal failures in a row that stop the run [10].")
@click.option(
    "--preflight/--no-preflight",
    default=None,
    help="Check key and model with GET /v1/models first [on].",
)
@click.option("--quiet", "-q", is_flag=True, default=None, help="No progress display.")
@click.option("--summary-json", type=click.Path(path_type=Path), help="Write the summary here.")
def run(input_: Path, **flags: Any) -> None:
    """Send every request in INPUT (a .jsonl file or a jobs/NAME.toml job file).

    Re-running the same command resumes: what already has an outcome is not sent again.
    The API key is read from MISTRAL_API_KEY only.
    """
    settings, mock_settings = _settings(input_, flags)
    settings["command"] = resume_command()
    mock = bool(settings.pop("mock", False))
    quiet = bool(settings.pop("quiet", False))
    summary_json = settings.pop("summary_json", None)
    summary_path = Path(summary_json) if summary_json is not None else None
    if mock:
        try:
            with running_mock(mock_settings) as url:
                settings |= {"server_url": url, "api_key": _MOCK_KEY}
                stats, config = _run(settings, quiet)
        except ConfigError as exc:
            raise UsageFailure(str(exc)) from None
    else:
        settings["api_key"] = _api_key()
        stats, config = _run(settings, quiet)
    _report(stats, config, quiet, summary_path, input_)


def _settings(input_: Path, flags: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    # Unset options are None (flags included), so that an explicit --no-mock beats a job file.
    given = {k: v for k, v in flags.items() if v is not None and v != ()}
    if "retry_statuses" in given:
        given["retry_statuses"] = tuple(given["retry_statuses"])
    if input_.suffix == ".toml":
        try:
            job, mock = load_job(input_)
        except ConfigError as exc:
            raise UsageFailure(str(exc)) from None
        return job | given, mock
    return {"input": str(input_)} | given, {}


def resume_command() -> str:
    """This very command line, minus ``--restart``: what re-running resumes with."""
    args = [a for a in sys.argv[1:] if a != "--restart"]
    return shlex.join(["batchrunner", *args])


def _api_key() -> str:
    key = os.environ.get("MISTRAL_API_KEY", "").strip()
    if not key:
        raise UsageFailure(
            "MISTRAL_API_KEY is not set: export it, or add --mock to use the local mock server"
        )
    return key


def _config(settings: dict[str, Any]) -> RunConfig:
    input_path = Path(settings.pop("input"))
    if not input_path.is_file():
        raise UsageFailure(f"input file {input_path} does not exist")
    out, dead = default_paths(input_path)
    output = Path(settings.pop("output", out))
    dead_letter = Path(settings.pop("dead_letter", dead))
    settings.setdefault("server_url", DEFAULT_SERVER_URL)
    try:
        return RunConfig(
            input_path=input_path, output_path=output, dead_letter_path=dead_letter, **settings
        )
    except TypeError as exc:
        raise UsageFailure(f"bad setting: {exc}") from None
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from None


def _run(settings: dict[str, Any], quiet: bool) -> tuple[RunStats, RunConfig]:
    config = _config(settings)
    # A file size limit must fail the write (EFBIG), not kill the process mid-line.
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        return run_with_signals(config, quiet=quiet), config
    except OutputWriteError as exc:
        raise RunFailure(str(exc)) from None
    except BatchRunnerError as exc:
        raise UsageFailure(str(exc)) from None


def _report(
    stats: RunStats, config: RunConfig, quiet: bool, summary_path: Path | None, input_: Path
) -> None:
    err = Console(file=sys.stderr, soft_wrap=True)
    for warning in stats.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    if not quiet:
        Console().print(summary_table(stats, config))
    if summary_path is not None:
        try:
            summary_path.write_bytes(orjson.dumps(stats.as_dict(), option=orjson.OPT_INDENT_2))
        except OSError as exc:
            raise RunFailure(
                f"cannot write the summary to {summary_path}: {exc.strerror}"
            ) from None
    if stats.stop_message is not None and stats.stop_reason != "interrupted":
        err.print(f"{stats.stop_message}.", markup=False, highlight=False)
        err.print(f"resume with: {config.command}", markup=False, highlight=False)
        sys.exit(_STOP_CODES.get(stats.stop_reason or "", EXIT_ERROR))
    if stats.stop_reason == "interrupted":
        if stats.stop_message is not None:
            err.print(f"{stats.stop_message}.", markup=False, highlight=False)
        err.print(f"interrupted: {stats.done:,} done this run, {stats.pending:,} pending.")
        err.print(f"resume with: {config.command}", markup=False, highlight=False)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_DEAD if stats.total_dead else EXIT_OK)


@cli.command()
@click.argument("target", metavar="RESULTS|JOB.toml", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def status(target: Path, as_json: bool) -> None:
    """Where a run stands (done, dead-lettered, pending), without sending anything."""
    results = target
    if target.suffix == ".toml":
        settings, _ = _settings(target, {})
        results = Path(settings.get("output") or default_paths(Path(settings["input"]))[0])
    try:
        st = run_status(results)
    except BatchRunnerError as exc:
        raise UsageFailure(str(exc)) from None
    if as_json:
        click.echo(orjson.dumps(st.as_dict(), option=orjson.OPT_INDENT_2).decode())
        return
    by = ", ".join(f"{k}: {v}" for k, v in sorted(st.dead_by_status.items()))
    click.echo(f"input          {st.input} ({st.input_lines:,} non-blank lines)")
    click.echo(f"done           {st.done:,}")
    click.echo(f"dead-lettered  {st.dead:,}" + (f" ({by})" if by else ""))
    click.echo(f"pending        {st.pending:,}")
    click.echo(f"last write     {st.last_write or 'never'}")
    if st.pending and st.resume_command:
        click.echo(f"resume with    {st.resume_command}")
    for warning in st.warnings:
        click.echo(f"warning: {warning}", err=True)


from batchrunner.cli.dlq import dlq  # noqa: E402  (a group of its own module; registered here)

cli.add_command(dlq)
cli.add_command(mock_server)


def main() -> None:
    cli(prog_name="batchrunner")
