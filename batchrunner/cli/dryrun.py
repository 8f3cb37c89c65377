"""``run --dry-run``: what the run would send, shown as a table (or JSON); nothing is sent."""

from __future__ import annotations

from collections import Counter

import orjson
from rich.console import Console
from rich.table import Table

from batchrunner.api import check_files
from batchrunner.cli.exits import ExitCode
from batchrunner.cli.progress import counts
from batchrunner.config import RunConfig
from batchrunner.dryrun import DryRun, dry_run

__all__ = ["show_dry_run"]


def show_dry_run(config: RunConfig, *, as_json: bool) -> ExitCode:
    """Print the dry run of ``config``: 0 when every line would be sent, 1 when some would
    be dead-lettered as they are."""
    check_files(config)
    plan = dry_run(config)
    if as_json:
        data = plan.as_dict() | {"settings": _settings(config)}
        print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    else:
        Console(soft_wrap=True, highlight=False).print(_table(plan, config))
    return ExitCode.DEAD_LETTERED if plan.bad else ExitCode.OK


def _settings(c: RunConfig) -> dict[str, object]:
    return {
        "input": str(c.input_path),
        "output": str(c.output_path),
        "dead_letter": str(c.dead_letter_path),
        "endpoint": c.endpoint,
        "model": c.model,
        "server_url": "embedded mock server" if c.mock else c.server_url,
        "client": c.client,
        "rps": c.rps,
        "tpm": c.tpm,
        "concurrency": c.concurrency,
        "max_attempts": c.max_attempts,
        "timeout": c.timeout,
        "max_tokens_total": c.max_tokens_total,
        "max_cost": c.max_cost,
    }


def _table(plan: DryRun, config: RunConfig) -> Table:
    t = Table(title="batchrunner dry run: nothing sent", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    bad = counts(plan.bad)
    dead = f"{sum(plan.bad.values()):,} would be dead-lettered{': ' + bad if bad else ''}"
    t.add_row("lines", f"{plan.lines:,} ({plan.requests:,} requests, {dead})")
    for line, type_, message in plan.examples:
        t.add_row(f"  line {line}", f"{type_}: {message}")
    t.add_row("endpoints", _counts(plan.endpoints))
    t.add_row("models", _counts(plan.models))
    t.add_row("tokens", _tokens(plan))
    t.add_row("cost, worst case", _cost(plan))
    t.add_row("time", _time(plan))
    for key, value in _settings(config).items():
        if value is not None:
            t.add_row(f"  {key}", str(value))
    return t


def _counts(counts: Counter[str]) -> str:
    return ", ".join(f"{k or '—'}: {v:,}" for k, v in counts.most_common()) or "—"


def _tokens(plan: DryRun) -> str:
    text = f"{plan.prompt_tokens:,} prompt + {plan.completion_tokens:,} completion at most"
    if plan.without_max_tokens:
        text += (
            f" ({plan.without_max_tokens:,} requests have no max_tokens: counted at a typical "
            "answer, with no upper bound)"
        )
    return text


def _cost(plan: DryRun) -> str:
    text = f"${plan.cost:,.4f} (approximate list prices)"
    if plan.unpriced:
        text += f"; no price for {', '.join(sorted(plan.unpriced))}: left out"
    return text


def _time(plan: DryRun) -> str:
    seconds = plan.seconds
    if seconds is None:
        return "no --rps or --tpm: as fast as the server answers"
    parts = []
    if plan.seconds_at_rps is not None:
        parts.append(f"{plan.seconds_at_rps:,.0f} s at --rps")
    if plan.seconds_at_tpm is not None:
        parts.append(f"{plan.seconds_at_tpm:,.0f} s at --tpm")
    return f"at least {_duration(seconds)} ({', '.join(parts)})"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
