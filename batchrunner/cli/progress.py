"""What a person sees: a live progress display while a run goes, a summary after it."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from types import TracebackType
from typing import TextIO

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from batchrunner.config import RunConfig
from batchrunner.engine.stats import RunStats

__all__ = ["ProgressView", "summary_table"]

_PLAIN_EVERY = 5.0


class _RunProgress(Progress):
    """The bar on one line and the counters on the next, so neither is cut on a narrow
    terminal."""

    detail = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        yield Text(self.detail, style="dim", overflow="fold")


class ProgressView:
    """A rich bar on a terminal, a plain line every few seconds elsewhere, or nothing."""

    def __init__(self, stats: RunStats, *, quiet: bool, stream: TextIO = sys.stderr) -> None:
        self._stats, self._quiet, self._stream = stats, quiet, stream
        self._tty = stream.isatty()
        self._last_plain = time.monotonic()
        self._progress: _RunProgress | None = None
        self._task = TaskID(0)

    def __enter__(self) -> ProgressView:
        if not self._quiet and self._tty:
            self._progress = _RunProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(file=self._stream),
                refresh_per_second=4,
            )
            self._progress.start()
            self._task = self._progress.add_task("batchrunner", total=None)
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.update()
        if self._progress is not None:
            self._progress.stop()

    def update(self) -> None:
        s = self._stats
        if self._progress is not None:
            total = max(s.total_lines - s.blank - s.skipped_done, s.done) or None
            self._progress.detail = _detail(s)
            self._progress.update(self._task, completed=s.done, total=total)
        elif not self._quiet and time.monotonic() - self._last_plain >= _PLAIN_EVERY:
            self._last_plain = time.monotonic()
            print(f"progress: {s.done} done, {_detail(s)}", file=self._stream, flush=True)


def _detail(s: RunStats) -> str:
    text = (
        f"ok {s.ok} · dead {s.dead} · retrying {s.retrying_now} · in flight {s.in_flight}/{s.pool}"
        f" · {s.rate:.1f} req/s · 429s {s.share_429:.0%}"
        f" · tokens {s.prompt_tokens + s.completion_tokens:,}"
    )
    if s.cost:
        projected = f" → {_usd(s.cost_projected)}" if s.cost_projected else ""
        text += f" · {_usd(s.cost)}{projected}"
    return text


def _usd(amount: float) -> str:
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.4f}"


def _this_run(n: int, stats: RunStats) -> str:
    return f" ({n:,} this run)" if stats.skipped_done else ""


def summary_table(stats: RunStats, config: RunConfig) -> Table:
    """One screen: outcomes, status codes, speed, tokens and where the files are."""
    t = Table(title="batchrunner summary", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    rows: list[tuple[str, str]] = [
        ("results", f"{stats.total_ok:,} → {config.output_path}{_this_run(stats.ok, stats)}"),
        (
            "dead-lettered",
            f"{stats.total_dead:,} → {config.dead_letter_path}{_this_run(stats.dead, stats)}",
        ),
    ]
    if stats.dead_by_status:
        by = ", ".join(f"{k}: {v}" for k, v in sorted(stats.dead_by_status.items()))
        rows.append(("  by status/type", by))
    if stats.skipped_done:
        rows.append(("skipped (done before)", f"{stats.skipped_done:,}"))
    if stats.changed_done:
        rows.append(("changed since done", f"{stats.changed_done:,} (not re-sent)"))
    if stats.pending:
        rows.append(("pending", f"{stats.pending:,}"))
    causes = ", ".join(f"{k}: {v}" for k, v in sorted(stats.retry_causes.items()))
    rows += [
        (
            "requests sent",
            f"{stats.sent:,} ({stats.retries:,} retries{': ' + causes if causes else ''})",
        ),
        ("elapsed", f"{stats.elapsed:.1f} s at {stats.rate:.1f} req/s"),
        ("tokens", f"{stats.prompt_tokens:,} prompt + {stats.completion_tokens:,} completion"),
    ]
    if stats.cost:
        prices = "batch prices" if config.via == "batch" else "list prices"
        rows.append(("cost", f"{_usd(stats.cost)} (approximate {prices}; see README)"))
    for k, v in rows:
        t.add_row(k, v)
    return t
