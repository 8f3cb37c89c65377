"""The ``batchrunner`` command: parse options into a :class:`RunConfig`, run, report.

The options come from :mod:`batchrunner.cli.options`; library errors and the way a run
ended become one-line messages and exit codes in :mod:`batchrunner.cli.exits`, nowhere else.
"""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from batchrunner.cli.batch import echo_jobs, jobs_as_json, recorded_jobs
from batchrunner.cli.demo import demo
from batchrunner.cli.dlq import dlq
from batchrunner.cli.exits import Group
from batchrunner.cli.export import export
from batchrunner.cli.files import check_results_file
from batchrunner.cli.merge import merge
from batchrunner.cli.progress import counts
from batchrunner.cli.run import job_settings, resolved_shard, run
from batchrunner.config import default_paths, manifest_path
from batchrunner.ledger.manifest import read_manifest
from batchrunner.ledger.status import run_status
from batchrunner.mock.cli import mock_server

__all__ = ["main"]


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="batchrunner")
def cli() -> None:
    """Push a JSONL file of requests through the Mistral API, losing nothing."""


@cli.command(
    epilog="\b\nExamples:\n  batchrunner status samples/prompts.results.jsonl\n"
    "  batchrunner status jobs/quickstart.toml --json | jq .pending"
)
@click.argument("target", metavar="RESULTS|JOB.toml", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--refresh", is_flag=True, help="Ask the API how the run's batch jobs stand now.")
def status(target: Path, as_json: bool, refresh: bool) -> None:
    """Where a run stands (done, dead-lettered, pending), without sending anything."""
    results = target
    if target.suffix == ".toml":
        settings = job_settings(target)
        shard = resolved_shard(settings.get("shard"))
        results = Path(settings.get("output") or default_paths(Path(settings["input"]), shard)[0])
    check_results_file(results)
    st = run_status(results)
    jobs = recorded_jobs(results, read_manifest(manifest_path(results)) or {}, refresh=refresh)
    if as_json:
        document = st.as_dict() | {"batch_jobs": jobs_as_json(jobs)}
        click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return
    by = counts(st.dead_by_status)
    lines = f"{st.input_lines:,} non-blank lines" + (f" in shard {st.shard}" if st.shard else "")
    click.echo(f"input          {st.input} ({lines})")
    click.echo(f"done           {st.done:,}")
    click.echo(f"dead-lettered  {st.dead:,}" + (f" ({by})" if by else ""))
    click.echo(f"pending        {st.pending:,}")
    click.echo(f"last write     {st.last_write or 'never'}")
    echo_jobs(jobs)
    if st.pending and st.resume_command:
        click.echo(f"resume with    {st.resume_command}")
    for warning in st.warnings:
        click.echo(f"warning: {warning}", err=True)


cli.add_command(run)
cli.add_command(demo)
cli.add_command(export)
cli.add_command(dlq)
cli.add_command(merge)
cli.add_command(mock_server)


def main() -> None:
    cli(prog_name="batchrunner")
