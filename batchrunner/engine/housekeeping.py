"""What runs beside the workers, once a second or so: the files synced to disk, the adaptive
limits moved and the gauges the CLI shows brought up to date."""

from __future__ import annotations

from collections import deque

import anyio

from batchrunner.engine.accounting import Accounting
from batchrunner.engine.control import RunControl
from batchrunner.engine.events import Events
from batchrunner.engine.stats import RunStats
from batchrunner.engine.workers import ItemSender
from batchrunner.errors import OutputWriteError
from batchrunner.ledger.opened import Ledger
from batchrunner.limits.gates import Gates

__all__ = ["sync_files", "tick"]

#: The adaptive limits move, and the progress gauges change, once per this many seconds.
#: Shorter reacts sooner and reads rates from fewer answers.
_TICK = 1.0
#: The progress display's rates are over the last this many ticks: more is steadier and
#: shows a change later.
_RATE_TICKS = 5


async def sync_files(ledger: Ledger, interval: float, control: RunControl) -> None:
    """fsync the files every ``interval`` seconds; a failure ends the run."""
    while True:
        await anyio.sleep(interval)
        try:
            await anyio.to_thread.run_sync(ledger.sync)
        except OutputWriteError as exc:
            control.fail(exc)
            return


async def tick(
    gates: Gates, sender: ItemSender, accounting: Accounting, stats: RunStats, events: Events
) -> None:
    """Let the adaptive limits move and the pool grow; publish them, the rates and the cost."""
    samples: deque[tuple[float, int, int]] = deque(maxlen=_RATE_TICKS + 1)
    samples.append((anyio.current_time(), stats.done, stats.sent))
    while True:
        await anyio.sleep(_TICK)
        now = anyio.current_time()
        gates.tick(now)
        sender.grow(gates.pool)
        _report_cut(gates, stats, events)
        stats.pool, stats.current_rps = gates.pool, gates.rate
        stats.share_429 = gates.share_429
        samples.append((now, stats.done, stats.sent))
        then, done, sent = samples[0]
        stats.done_per_s = (stats.done - done) / (now - then)
        stats.sent_per_s = (stats.sent - sent) / (now - then)
        accounting.publish(stats)
        stats.cost_projected = accounting.projected(stats.done, stats.to_do)


def _report_cut(gates: Gates, stats: RunStats, events: Events) -> None:
    """A rate (or, with no rate cap, a pool) below the one published a tick ago was cut by
    429s since: the only thing that lowers them (growth and a latency-sized pool are not
    reported)."""
    why = f"429s: {gates.share_429:.0%} of recent answers"
    old_rate, rate = stats.current_rps, gates.rate
    if old_rate is not None and rate is not None and rate < old_rate:
        events.rate_cut("rps", old_rate, rate, why)
    elif rate is None and gates.pool < stats.pool:
        events.rate_cut("pool", stats.pool, gates.pool, why)
