"""The ``batchrunner`` command: parse options into a :class:`RunConfig`, run, report.

The options come from :mod:`batchrunner.cli.options`; library errors and the way a run
ended become one-line messages and exit codes in :mod:`batchrunner.cli.exits`, nowhere else.
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

from batchrunner.batch.jobs import check_no_live_jobs
from batchrunner.cli.batch import echo_jobs, jobs_as_json, recorded_jobs, run_batch_with_signals
from batchrunner.cli.dlq import dlq
from batchrunner.cli.exits import ExitCode, Group, stop_code
from batchrunner.cli.jobfile import load_job
from batchrunner.cli.options import CliOnly, given, run_options, split
from batchrunner.cli.progress import summary_table
from batchrunner.cli.signals import run_with_signals
from batchrunner.config import RunConfig, default_paths, manifest_path
from batchrunner.engine.stats import RunStats
from batchrunner.errors import ConfigError, WriteError
from batchrunner.ledger.manifest import read_manifest
from batchrunner.ledger.status import run_status
from batchrunner.mock.cli import mock_server
from batchrunner.mock.process import running_mock

__all__ = ["main"]

_MOCK_KEY = "mock-key"


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="batchrunner")
def cli() -> None:
    """Push a JSONL file of requests through the Mistral API, losing nothing."""


@cli.command()
@run_options
def run(**flags: Any) -> None:
    """Send every request in INPUT (a .jsonl file or a jobs/NAME.toml job file).

    Re-running the same command resumes: what already has an outcome is not sent again.
    The API key is read from MISTRAL_API_KEY only.
    """
    settings, mock_settings = _settings(given(flags))
    library, own = split(settings)
    library["command"] = resume_command()
    if own.mock:
        with running_mock(mock_settings) as url:
            stats, config = _run(library | {"server_url": url, "api_key": _MOCK_KEY}, own)
    else:
        stats, config = _run(library | {"api_key": _api_key()}, own)
    _report(stats, config, own)


def _settings(flags: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run settings, mock-server settings) by key: a job file's when INPUT is one, with
    the flags given (see :func:`given`) over them, so an explicit --no-mock beats a job."""
    input_ = Path(flags.pop("input"))
    if input_.suffix == ".toml":
        job, mock = load_job(input_)
        return job | flags, mock
    return {"input": input_} | flags, {}


def resume_command() -> str:
    """This very command line, minus ``--restart`` and ``--cancel``: what re-running
    resumes with."""
    args = [a for a in sys.argv[1:] if a not in ("--restart", "--cancel")]
    return shlex.join(["batchrunner", *args])


def _api_key() -> str:
    key = os.environ.get("MISTRAL_API_KEY", "").strip()
    if not key:
        raise ConfigError(
            "MISTRAL_API_KEY is not set: export it, or add --mock to use the local mock server"
        )
    return key


def _config(settings: dict[str, Any]) -> RunConfig:
    input_path: Path = settings["input_path"]
    if not input_path.is_file():
        raise ConfigError(f"input file {input_path} does not exist", path=input_path)
    out, dead = default_paths(input_path)
    settings.setdefault("output_path", out)
    settings.setdefault("dead_letter_path", dead)
    return RunConfig(**settings)


def _run(settings: dict[str, Any], own: CliOnly) -> tuple[RunStats, RunConfig]:
    config = _config(settings)
    # A file size limit must fail the write (EFBIG), not kill the process mid-line.
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if config.via == "batch":
        return run_batch_with_signals(config, quiet=own.quiet), config
    if not config.restart:
        check_no_live_jobs(config.output_path)  # their ids may still come home
    return run_with_signals(config, quiet=own.quiet), config


def _report(stats: RunStats, config: RunConfig, own: CliOnly) -> None:
    err = Console(file=sys.stderr, soft_wrap=True)
    for warning in stats.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    if not own.quiet:
        Console().print(summary_table(stats, config))
    if own.summary_json is not None:
        _write_summary(stats, own.summary_json)
    interrupted = stats.stop_reason == "interrupted"
    if stats.stop_message is None and not interrupted:
        sys.exit(ExitCode.DEAD_LETTERED if stats.total_dead else ExitCode.OK)
    if stats.stop_message is not None:
        err.print(f"{stats.stop_message}.", markup=False, highlight=False)
    if interrupted:
        err.print(f"interrupted: {stats.done:,} done this run, {stats.pending:,} pending.")
    err.print(f"resume with: {config.command}", markup=False, highlight=False)
    sys.exit(stop_code(stats.stop_reason))


def _write_summary(stats: RunStats, path: Path) -> None:
    try:
        path.write_bytes(orjson.dumps(stats.as_dict(), option=orjson.OPT_INDENT_2))
    except OSError as exc:
        message = f"cannot write the summary to {path}: {exc.strerror}"
        raise WriteError(message, path=path, cause=exc) from None


@cli.command()
@click.argument("target", metavar="RESULTS|JOB.toml", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--refresh", is_flag=True, help="Ask the API how the run's batch jobs stand now.")
def status(target: Path, as_json: bool, refresh: bool) -> None:
    """Where a run stands (done, dead-lettered, pending, its batch jobs), sending nothing."""
    results = target
    if target.suffix == ".toml":
        settings, _ = _settings({"input": target})
        results = Path(settings.get("output") or default_paths(Path(settings["input"]))[0])
    st = run_status(results)
    jobs = recorded_jobs(results, read_manifest(manifest_path(results)) or {}, refresh=refresh)
    if as_json:
        document = st.as_dict() | {"batch_jobs": jobs_as_json(jobs)}
        click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return
    by = ", ".join(f"{k}: {v}" for k, v in sorted(st.dead_by_status.items()))
    click.echo(f"input          {st.input} ({st.input_lines:,} non-blank lines)")
    click.echo(f"done           {st.done:,}")
    click.echo(f"dead-lettered  {st.dead:,}" + (f" ({by})" if by else ""))
    click.echo(f"pending        {st.pending:,}")
    click.echo(f"last write     {st.last_write or 'never'}")
    echo_jobs(jobs)
    if st.pending and st.resume_command:
        click.echo(f"resume with    {st.resume_command}")
    for warning in st.warnings:
        click.echo(f"warning: {warning}", err=True)


cli.add_command(dlq)
cli.add_command(mock_server)


def main() -> None:
    cli(prog_name="batchrunner")
