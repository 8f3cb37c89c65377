"""What ``batchrunner run`` prints when a run ends, at each level of ``-q``.

Level 0: the summary table on stdout, its last line what to do next (``batchrunner dlq
summary PATH`` after dead letters). Level 1 (``-q``): one line on stdout that says the
same. Level 2 (``-qq``, ``--silent``): nothing. ``--json`` (or ``--summary-json -``): the
summary as one JSON object on stdout and nothing else there. Warnings, a stop's reason and
how to resume go to stderr below level 2.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from batchrunner.cli.exits import ExitCode, flags_for, stop_code
from batchrunner.cli.options import STDOUT, CliOnly
from batchrunner.cli.progress import summary_table
from batchrunner.config import RunConfig
from batchrunner.engine.stats import RunStats
from batchrunner.errors import WriteError

__all__ = ["exit_code", "next_step", "report", "summary_data", "verdict"]


def report(stats: RunStats, config: RunConfig, own: CliOnly) -> ExitCode:
    """Print what ``own`` asks for; the exit code of the run."""
    err = Console(file=sys.stderr, soft_wrap=True, highlight=False)
    if own.level < 2:
        for warning in stats.warnings:
            err.print(f"[yellow]warning:[/] {warning}")
    if own.summary_json is not None and own.summary_json != STDOUT:
        _write_summary(summary_data(stats, config), own.summary_json)
    if own.json_to_stdout:
        sys.stdout.write(_json(summary_data(stats, config)).decode() + "\n")
    elif own.level == 0:
        out = Console(soft_wrap=True, highlight=False)
        out.print(summary_table(stats, config))
        if (step := next_step(stats, config)) is not None:
            out.print(step, markup=False)
    elif own.level == 1:
        print(verdict(stats, config))
    code = exit_code(stats)
    if own.level < 2 and code not in (ExitCode.OK, ExitCode.DEAD_LETTERED):
        _tell_stop(stats, config, err)
    return code


def exit_code(stats: RunStats) -> ExitCode:
    if stats.stop_message is None and stats.stop_reason != "interrupted":
        return ExitCode.DEAD_LETTERED if stats.total_dead else ExitCode.OK
    return stop_code(stats.stop_reason)


def _tell_stop(stats: RunStats, config: RunConfig, err: Console) -> None:
    if stats.stop_message is not None:
        err.print(f"{flags_for(stats.stop_message)}.", markup=False)
    if stats.stop_reason == "interrupted":
        err.print(f"interrupted: {stats.done:,} done this run, {stats.pending:,} pending.")
    err.print(f"resume with: {config.command}", markup=False)


def next_step(stats: RunStats, config: RunConfig) -> str | None:
    """What to do after dead letters: look at them."""
    if not stats.total_dead:
        return None
    return f"next: batchrunner dlq summary {shlex.quote(str(config.dead_letter_path))}"


def verdict(stats: RunStats, config: RunConfig) -> str:
    """The run in one line (``-q``)."""
    text = (
        f"{stats.total_ok:,} results → {config.output_path}, "
        f"{stats.total_dead:,} dead-lettered → {config.dead_letter_path}"
    )
    if stats.pending:
        text += f", {stats.pending:,} pending"
    step = next_step(stats, config)
    return f"{text}; {step}" if step is not None else text


def summary_data(stats: RunStats, config: RunConfig) -> dict[str, Any]:
    """The summary as JSON: the counters (a stop message with settings spelled as flags),
    where the files are, the exit code."""
    files = {"output": str(config.output_path), "dead_letter": str(config.dead_letter_path)}
    data = stats.as_dict() | files | {"exit_code": int(exit_code(stats))}
    if stats.stop_message is not None:
        data["stop_message"] = flags_for(stats.stop_message)
    return data


def _json(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2)


def _write_summary(data: dict[str, Any], path: Path) -> None:
    try:
        path.write_bytes(_json(data))
    except OSError as exc:
        message = f"cannot write the summary to {path}: {exc.strerror}"
        raise WriteError(message, path=path, cause=exc) from None
