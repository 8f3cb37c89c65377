"""``batchrunner run``: options (or a job file) into a :class:`RunConfig`, the run, a report."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from batchrunner.api import prepared
from batchrunner.cli.batch import run_batch_with_signals
from batchrunner.cli.dryrun import show_dry_run
from batchrunner.cli.exits import EXIT_CODES_HELP
from batchrunner.cli.jobfile import load_job
from batchrunner.cli.logjson import open_log
from batchrunner.cli.options import STDOUT, CliOnly, given, in_job_terms, run_options, split
from batchrunner.cli.report import report
from batchrunner.cli.signals import run_with_signals
from batchrunner.config import RunConfig, Shard
from batchrunner.engine.events import NO_EVENTS, Events
from batchrunner.engine.stats import RunStats
from batchrunner.errors import ConfigError
from batchrunner.input.shard import resolve_shard

__all__ = ["job_settings", "resolved_shard", "resume_command", "run"]

_EPILOG = f"""\b
Examples:
  batchrunner run prompts.jsonl --model mistral-small-latest --rps 5
  batchrunner run jobs/quickstart.toml            # a job file: the same settings in TOML
  batchrunner run prompts.jsonl --dry-run         # counts, tokens, worst-case cost; sends nothing
  batchrunner run prompts.jsonl -q --json | jq .dead_lettered_total

{EXIT_CODES_HELP}"""


@click.command(epilog=_EPILOG, short_help="Send every request in INPUT; re-run to resume.")
@run_options
def run(**flags: Any) -> None:
    """Send every request in INPUT (a .jsonl file or a jobs/NAME.toml job file).

    Re-running the same command resumes: what already has an outcome is not sent again.
    The API key is read from MISTRAL_API_KEY only.
    """
    flags = given(flags)
    settings, mock_server, job = _settings(flags)
    library, own = split(settings)
    library["command"] = resume_command()
    library["mock_server"] = mock_server
    with _job_terms(job, set(settings) - set(flags)):
        shard = resolved_shard(library.get("shard"))
        library["shard"] = None if shard is None else str(shard)
        config = RunConfig(**library)
        _check_summary_path(own.summary_json, config)
        if own.dry_run:
            sys.exit(show_dry_run(config, as_json=own.json_to_stdout))
        with prepared(config) as (ready, warnings):
            # A file size limit must fail the write (EFBIG), not kill the process mid-line.
            if hasattr(signal, "SIGXFSZ"):
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            stats = _send(ready, own)
    stats.warnings[:0] = warnings
    sys.exit(report(stats, ready, own))


def resolved_shard(value: str | None) -> Shard | None:
    """``--shard`` as a shard (``auto/N`` from the environment), or ``None``."""
    return None if value is None else resolve_shard(value, os.environ)


def _check_summary_path(path: Path | None, config: RunConfig) -> None:
    """``--summary-json`` is written when the run ends: a path it could not be written to, or
    one of the run's own files it would overwrite, is refused before anything is sent."""
    if path is None or path == STDOUT:
        return
    config.check_apart("summary_json", path)
    where = "a file in an existing folder (create the folder first)"
    if path.is_dir() or not path.parent.is_dir():
        found = path if path.is_dir() else path.parent
        raise ConfigError(
            f"summary_json must be {where}: {found}", setting="summary_json", expected=where
        )


def _send(config: RunConfig, own: CliOnly) -> RunStats:
    """The run (online, or as batch jobs), its events written to ``--log-json`` when given."""
    quiet, every = own.level > 0, own.progress_interval
    if own.log_json is None:
        return _sent(config, quiet, every, NO_EVENTS)
    with open_log(own.log_json, config) as log:
        stats = _sent(config, quiet, every, Events(log))
    if log.problem is not None:
        stats.warnings.append(log.problem)
    return stats


def _sent(config: RunConfig, quiet: bool, every: float, events: Events) -> RunStats:
    if config.via == "batch":
        return run_batch_with_signals(config, quiet=quiet, events=events)
    return run_with_signals(config, quiet=quiet, events=events, interval=every)


def _settings(flags: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], Path | None]:
    """(the settings by key, the mock server's, the job file if INPUT is one): a job file's
    settings with the flags given over them, so that an explicit --no-mock beats a job's
    mock = true."""
    input_ = Path(flags.pop("input"))
    _refuse_dashes(input_, flags)
    if input_.suffix != ".toml":
        return {"input": input_} | flags, {}, None
    job, mock = load_job(input_)
    return job | flags, mock, input_


def job_settings(job: Path) -> dict[str, Any]:
    """A job file's run settings by key (what ``status`` needs to find its results)."""
    return load_job(job)[0]


def _refuse_dashes(input_: Path, flags: dict[str, Any]) -> None:
    """``-`` is standard output for the summary; the run's own files must be files."""
    if input_ == STDOUT:
        raise ConfigError(
            "INPUT cannot be - (stdin): a run reads its input more than once, and again to "
            "resume; save it to a file first (cat > in.jsonl) and run that",
            setting="input_path",
        )
    for key, flag in (("output", "-o/--output"), ("dead_letter", "--dead-letter")):
        if flags.get(key) == STDOUT:
            raise ConfigError(
                f"{flag} cannot be - (stdout): outcomes are appended to a file that a resume "
                "reads back; give a file (--json prints the summary on stdout)",
                setting=key,
            )


@contextmanager
def _job_terms(job: Path | None, from_job: set[str]) -> Iterator[None]:
    """Errors about a setting the job file gave name its key in that file."""
    try:
        yield
    except ConfigError as exc:
        if job is None:
            raise
        raise in_job_terms(exc, job, from_job) from None


def resume_command() -> str:
    """This very command line, minus ``--restart`` and ``--cancel``: what re-running
    resumes with."""
    args = [a for a in sys.argv[1:] if a not in ("--restart", "--cancel")]
    return shlex.join(["batchrunner", *args])
