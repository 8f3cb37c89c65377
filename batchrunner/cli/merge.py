"""``batchrunner merge``: join the files of a sharded run into one results file and one
dead-letter file, and say whether the input is complete (:mod:`batchrunner.ledger.merge`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from batchrunner.cli.exits import ExitCode
from batchrunner.config import default_paths
from batchrunner.ledger.merge import merge_shards
from batchrunner.ledger.shards import find_shards
from batchrunner.runfiles import dead_letter_beside

__all__ = ["merge"]


_EPILOG = """\b
Examples:
  batchrunner merge prompts.jsonl                 # the shards' default names beside it
  batchrunner merge prompts.jsonl 'out/prompts.shard-*-of-8.results.jsonl' -o all.jsonl
  batchrunner merge prompts.jsonl --json | jq '.by_shard[] | select(.state != "complete")'

\b
Exit codes:
  0    complete: every line of INPUT has exactly one outcome in the merged files
  2    usage: no shard files, shards of different counts, a target that is not free
  3    a merged file could not be written
  6    incomplete: a shard missing or unfinished, an outcome doubled or not in INPUT"""


@click.command(epilog=_EPILOG)
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.argument("shard_results", metavar="[SHARD_RESULTS]...", nargs=-1)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Merged results [<stem>.results.jsonl beside INPUT].",
)
@click.option(
    "--dead-letter",
    type=click.Path(path_type=Path),
    help="Merged dead-letter file [<stem>.dead.jsonl beside the merged results].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the detail as JSON for scripts.")
def merge(
    input_path: Path,
    shard_results: tuple[str, ...],
    output: Path | None,
    dead_letter: Path | None,
    as_json: bool,
) -> None:
    """Join the shards' results and dead-letter files of INPUT into one pair, and check it:
    every line of INPUT exactly once, nothing from outside it, no shard missing.

    SHARD_RESULTS are the shards' results files or glob patterns (quoted); by default the
    names `run --shard` gives them beside INPUT (<stem>.shard-K-of-N.results.jsonl). Exit 0
    only when the merge is complete; otherwise one line says what is missing (6).
    """
    if not input_path.is_file():
        raise click.UsageError(f"input file {input_path} does not exist")
    out = output or default_paths(input_path)[0]
    dead = dead_letter or dead_letter_beside(out)
    report = merge_shards(input_path, find_shards(input_path, shard_results), out, dead)
    if as_json:
        click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        for warning in report.warnings:
            click.echo(f"warning: {warning}", err=True)
        click.echo(report.verdict(), err=not report.complete)
    sys.exit(ExitCode.OK if report.complete else ExitCode.INCOMPLETE)
