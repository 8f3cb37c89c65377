"""What runs beside the workers, once a second or so: the files synced to disk, the adaptive
limits moved and the gauges the CLI shows brought up to date."""

from __future__ import annotations

import anyio

from batchrunner.engine.accounting import Accounting
from batchrunner.engine.control import RunControl
from batchrunner.engine.stats import RunStats
from batchrunner.engine.workers import ItemSender
from batchrunner.errors import OutputWriteError
from batchrunner.ledger.state import Ledger
from batchrunner.limits.gates import Gates

__all__ = ["sync_files", "tick"]

#: The adaptive limits move, and the progress gauges change, once per this many seconds.
#: Shorter reacts sooner and reads rates from fewer answers.
_TICK = 1.0


async def sync_files(ledger: Ledger, interval: float, control: RunControl) -> None:
    """fsync the files every ``interval`` seconds; a failure ends the run."""
    while True:
        await anyio.sleep(interval)
        try:
            await anyio.to_thread.run_sync(ledger.sync)
        except OutputWriteError as exc:
            control.fail(exc)
            return


async def tick(gates: Gates, sender: ItemSender, accounting: Accounting, stats: RunStats) -> None:
    """Let the adaptive limits move and the pool grow; publish them and the cost."""
    while True:
        await anyio.sleep(_TICK)
        gates.tick(anyio.current_time())
        sender.grow(gates.pool)
        stats.pool, stats.current_rps = gates.pool, gates.rate
        stats.share_429 = gates.rate_limited_share
        stats.cost = accounting.spent()
        remaining = stats.total_lines - stats.blank - stats.skipped_done
        stats.cost_projected = accounting.projected(stats.done, max(remaining, stats.done))
