"""``batchrunner export``: a run's results joined back to its input, one row per input line,
in input order, as JSONL, CSV or Parquet; streamed, so any size of run fits."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, cast

import click

from batchrunner.cli.files import check_results_file
from batchrunner.cli.run import job_settings
from batchrunner.config import default_paths
from batchrunner.errors import ConfigError, WriteError
from batchrunner.export.join import RunFiles, joined
from batchrunner.export.rows import row, run_files
from batchrunner.export.writers import Format, parquet_module, write_rows

__all__ = ["export"]

_STDOUT = Path("-")
_BY_SUFFIX: dict[str, Format] = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl"}


@click.command(
    short_help="Join a run's results to its input: one row per line (JSONL, CSV, Parquet).",
    epilog="\b\nExamples:\n"
    "  batchrunner export samples/prompts.results.jsonl --format csv > joined.csv\n"
    "  batchrunner export jobs/quickstart.toml -o joined.parquet\n"
    "  batchrunner export out.jsonl --input in.jsonl | jq -r .answer",
)
@click.argument("target", metavar="RESULTS|JOB.toml", type=click.Path(path_type=Path))
@click.option(
    "--input",
    "input_path",
    type=click.Path(path_type=Path),
    help="The run's input [the one its manifest names].",
)
@click.option(
    "--dead-letter",
    type=click.Path(path_type=Path),
    help="The run's dead-letter file [the one its manifest names].",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "parquet"]),
    help="[from -o's suffix, else jsonl]",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=_STDOUT,
    show_default=True,
    help="Where to write (-: stdout).",
)
def export(
    target: Path,
    input_path: Path | None,
    dead_letter: Path | None,
    fmt: Format | None,
    output: Path,
) -> None:
    """Write one row per input line, in input order: custom_id, line, status (ok, dead,
    pending), endpoint, the prompt (or messages, or embeddings input), the answer's text or
    embedding, finish reason, tokens, and the error of a dead line.

    RESULTS is a run's results file (its manifest names the input), or the run's job file.
    Parquet needs the parquet extra: pip install 'batchrunner[parquet]'.
    """
    fmt = fmt or _BY_SUFFIX.get(output.suffix, "jsonl")
    if fmt == "parquet":
        if output == _STDOUT:
            raise ConfigError("--format parquet writes a binary file: give -o FILE.parquet")
        parquet_module()  # says how to install pyarrow before anything is read
    run = _run_of(target, input_path, dead_letter)
    _check_target(output, run)
    rows = (row(j) for j in joined(run))
    if output == _STDOUT:
        n = write_rows(rows, cast(IO[bytes], sys.stdout.buffer), fmt)
        sys.stdout.flush()
    else:
        n = _write_file(output, rows, fmt)
    click.echo(
        f"exported {n:,} rows ({fmt}) to {'stdout' if output == _STDOUT else output}", err=True
    )


def _run_of(target: Path, input_path: Path | None, dead_letter: Path | None) -> RunFiles:
    results = target
    if target.suffix == ".toml":
        settings = job_settings(target)
        results = Path(settings.get("output") or default_paths(settings["input"])[0])
    if not results.is_file():
        what = "is not a file" if results.exists() else "does not exist"
        raise ConfigError(f"results file {results} {what}", path=results)
    check_results_file(results)
    run = run_files(results, input_path, dead_letter)
    if not run.input.is_file():
        raise ConfigError(
            f"the run's input {run.input} does not exist: give --input", path=run.input
        )
    return run


def _check_target(output: Path, run: RunFiles) -> None:
    """Never write over one of the files being read."""
    if output == _STDOUT:
        return
    for path in (run.input, run.results, run.dead_letter):
        with contextlib.suppress(OSError):
            if output.resolve() == path.resolve():
                raise ConfigError(f"-o {output} is one of the run's files; choose another")


def _write_file(path: Path, rows: Iterable[dict[str, Any]], fmt: Format) -> int:
    """Write to a file beside ``path``, then rename: a failed export leaves no half file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as f:
            n = write_rows(rows, f, fmt)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise WriteError(
            f"cannot write {path}: {exc.strerror or exc}", path=path, cause=exc
        ) from None
    return n
