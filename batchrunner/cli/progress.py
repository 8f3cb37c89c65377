"""What a person sees: a live progress display while a run goes, a summary after it; and
the periodic progress event of ``--log-json``, which shares the plain line's clock and ETA."""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Iterable, Mapping
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
from batchrunner.engine.events import NO_EVENTS, Events
from batchrunner.engine.stats import RunStats
from batchrunner.ledger.records import utc_iso

__all__ = ["Eta", "ProgressView", "counts", "summary_table"]

#: The ETA reads the completion rate over this many seconds: longer is steadier, shorter
#: follows a rate cut (or its recovery) sooner.
_ETA_WINDOW = 60.0


class _RunProgress(Progress):
    """The bar on one line and the counters on the next, so neither is cut on a narrow
    terminal."""

    detail = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        yield Text(self.detail, style="dim", overflow="fold")


class Eta:
    """Seconds left at the rate items were completed over the last minute."""

    __slots__ = ("_samples",)

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, now: float, done: int, to_do: int) -> float | None:
        """Note ``done`` at ``now``; the ETA, or ``None`` while nothing is completed."""
        samples = self._samples
        if not samples or now - samples[-1][0] >= 1.0:
            samples.append((now, done))
        while len(samples) > 2 and now - samples[1][0] >= _ETA_WINDOW:
            samples.popleft()
        first_t, first_done = samples[0]
        if done >= to_do:
            return 0.0
        if now <= first_t or done <= first_done:
            return None
        return (to_do - done) * (now - first_t) / (done - first_done)


class ProgressView:
    """A rich bar on a terminal, a plain line every ``interval`` seconds elsewhere, or
    nothing; a progress event every ``interval`` seconds either way."""

    def __init__(
        self,
        stats: RunStats,
        *,
        quiet: bool,
        stream: TextIO = sys.stderr,
        interval: float = 5.0,
        events: Events = NO_EVENTS,
    ) -> None:
        self._stats, self._quiet, self._stream = stats, quiet, stream
        self._interval, self._events, self._eta = interval, events, Eta()
        self._tty = stream.isatty()
        self._last_plain = self._last_event = time.monotonic()
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
        self.update(final=True)
        if self._progress is not None:
            self._progress.stop()

    def update(self, final: bool = False) -> None:
        """Refresh the display; ``final``: the run is over (its run_end event is out: no
        progress event follows it)."""
        s, now = self._stats, time.monotonic()
        eta = self._eta.update(now, s.done, s.to_do)
        if self._progress is not None:
            self._progress.detail = _detail(s)
            self._progress.update(self._task, completed=s.done, total=s.to_do or None)
        elif not self._quiet and now - self._last_plain >= self._interval:
            self._last_plain = now
            print(_plain_line(s, eta), file=self._stream, flush=True)
        if self._events.on and not final and now - self._last_event >= self._interval:
            self._last_event = now
            self._events.progress(s, eta)


def _plain_line(s: RunStats, eta: float | None) -> str:
    """``2026-01-02T03:04:05Z progress: 1,234/10,000 (12.3%) · ETA 5m 12s · ok ...``."""
    total = s.to_do
    share = f"{s.done / total:.1%}" if total else "100%"
    head = f"{utc_iso()} progress: {s.done:,}/{total:,} ({share}) · ETA {_duration(eta)}"
    return f"{head} · {_detail(s)}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _detail(s: RunStats) -> str:
    text = (
        f"ok {s.ok} · dead {s.dead} · retrying {s.retrying_now} · in flight {s.in_flight}/{s.pool}"
        f" · {s.done_per_s:.1f} done/s · {s.sent_per_s:.1f} sent/s · 429s {s.share_429:.0%}"
        f" · tokens {s.prompt_tokens + s.completion_tokens:,}"
    )
    if s.cost:
        projected = f" → {_usd(s.cost_projected)}" if s.cost_projected else ""
        text += f" · {_usd(s.cost)}{projected}"
    return text


def counts(by_key: Mapping[str, int]) -> str:
    """``400: 2, timeout: 1``: counts by failure key, in one order wherever they are shown."""
    return ", ".join(f"{k}: {v}" for k, v in sorted(by_key.items()))


def _usd(amount: float) -> str:
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.4f}"


def _this_run(n: int, stats: RunStats) -> str:
    return f" ({n:,} this run)" if stats.decided_before else ""


def _budget_rows(stats: RunStats) -> list[tuple[str, str]]:
    """What the run spent of its budget, over every invocation (the results file's too)."""
    rows = []
    if stats.budget_usd is not None:
        spent, budget = stats.budget_usd
        rows.append(("budget", f"{_usd(spent)} of {_usd(budget)} spent (all runs)"))
    if stats.budget_tokens is not None:
        used, allowed = stats.budget_tokens
        rows.append(("token budget", f"{used:,} of {allowed:,} tokens spent (all runs)"))
    return rows


def summary_table(stats: RunStats, config: RunConfig) -> Table:
    """One screen: outcomes, status codes, speed, tokens and where the files are."""
    t = Table(title="batchrunner summary", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    for k, v in _outcome_rows(stats, config) + _traffic_rows(stats, config.via):
        t.add_row(k, v)
    return t


def _outcome_rows(stats: RunStats, config: RunConfig) -> list[tuple[str, str]]:
    """Where every line ended: results, dead-lettered (and why), skipped, pending."""
    rows: list[tuple[str, str]] = [
        ("results", f"{stats.total_ok:,} → {config.output_path}{_this_run(stats.ok, stats)}"),
        (
            "dead-lettered",
            f"{stats.total_dead:,} → {config.dead_letter_path}{_this_run(stats.dead, stats)}",
        ),
    ]
    if stats.dead_by_status:
        rows.append(("  by status/type", counts(stats.dead_by_status)))
    if stats.other_shards:
        rows.append(("other shards' lines", f"{stats.other_shards:,} (passed over)"))
    if stats.skipped_done:
        rows.append(("skipped (done before)", f"{stats.skipped_done:,}"))
    if unread := stats.unread_done + stats.unread_dead:
        rows.append(("not read (done before)", f"{unread:,}"))
    if stats.changed_done:
        rows.append(("changed since done", f"{stats.changed_done:,} (not re-sent)"))
    if stats.pending:
        rows.append(("pending", f"{stats.pending:,}"))
    return rows


def _traffic_rows(stats: RunStats, via: str) -> list[tuple[str, str]]:
    """What it took: requests and retries, time, tokens and cost."""
    causes = counts(stats.retry_causes)
    rows = [
        (
            "requests sent",
            f"{stats.sent:,} ({stats.retries:,} retries{': ' + causes if causes else ''})",
        ),
        (
            "elapsed",
            f"{stats.elapsed:.1f} s: {stats.done_rate:.1f} done/s, {stats.rate:.1f} requests/s",
        ),
        ("tokens", f"{stats.prompt_tokens:,} prompt + {stats.completion_tokens:,} completion"),
    ]
    if stats.cost:
        prices = "batch prices" if via == "batch" else "list prices"
        rows.append(("cost", f"{_usd(stats.cost)} (approximate {prices}; see README)"))
    rows += _budget_rows(stats)
    return rows
