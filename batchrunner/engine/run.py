"""One run: the collaborators wired together, the workers pumped until the input is done or
the run stops, the counters handed back.

Long-lived workers (:mod:`~batchrunner.engine.workers`) pull the items through a bounded
read-ahead window, pass the gates (:mod:`batchrunner.limits.gates`) and write each item's
one outcome (:mod:`~batchrunner.engine.outcomes`); run control
(:mod:`~batchrunner.engine.control`) stops them; accounting
(:mod:`~batchrunner.engine.accounting`) says what may be sent and what it cost.
"""

from __future__ import annotations

import random
import time

import anyio
import anyio.abc

from batchrunner.clients import Client, make_client
from batchrunner.config import MAX_POOL, RunConfig
from batchrunner.engine.accounting import Accounting
from batchrunner.engine.admission import admit, count_unread
from batchrunner.engine.breaker import CircuitBreaker
from batchrunner.engine.control import RunControl
from batchrunner.engine.events import NO_EVENTS, Events
from batchrunner.engine.housekeeping import sync_files, tick
from batchrunner.engine.opening import Opened, open_run
from batchrunner.engine.outcomes import Outcomes
from batchrunner.engine.retry import RetryPolicy
from batchrunner.engine.stats import RunStats
from batchrunner.engine.workers import ItemSender, read_ahead
from batchrunner.errors import ConfigError, OutputWriteError
from batchrunner.limits.gates import Gates
from batchrunner.limits.pricing import CostMeter, price_table
from batchrunner.limits.spending import Spending
from batchrunner.vocabulary import StopReason

__all__ = ["Engine"]


class Engine:
    """One run. Create it, hand ``stats`` to whoever renders progress, ``await run()``.

    ``stop()`` asks for a graceful stop (no new attempts, in-flight ones finish for up to
    ``drain_timeout``); ``abort()`` cancels in-flight requests at once. Either way every
    outcome already received is on disk.
    """

    def __init__(
        self,
        config: RunConfig,
        client: Client | None = None,
        seed: int | None = None,
        events: Events = NO_EVENTS,
    ):
        self.config, self.stats, self._client = config, RunStats(), client
        self._events = events
        self._control = RunControl(config.drain_timeout, events)
        self._rng = random.Random(seed)
        self._policy = RetryPolicy(
            config.max_attempts, config.backoff_base, config.backoff_max, config.max_retry_after
        )
        try:
            prices = price_table(config.prices)
        except ValueError as exc:  # its message names the prices entry at fault
            raise ConfigError(str(exc), setting="prices", found=config.prices) from None
        spending = Spending(config.max_tokens_total, config.max_cost, prices)
        self._accounting = Accounting(config.endpoint, config.tpm, spending, CostMeter(prices))
        self._opened: Opened | None = None

    @property
    def stopping(self) -> bool:
        return self._control.stopping

    def stop(self, reason: StopReason = "interrupted") -> None:
        """Stop admitting; let in-flight requests finish within the drain timeout."""
        self._control.stop(reason)

    def abort(self, reason: StopReason = "interrupted") -> None:
        """Cancel everything in flight now; those items stay pending."""
        self._control.abort(reason)

    async def open(self) -> None:
        """Check, lock and open the files (``run`` does it if you don't): errors surface
        here, before anything is sent; the files stay locked until ``run`` ends. A stop
        meanwhile cuts it short, opening nothing."""
        if self._opened is not None:
            return
        with self._control.waiting():  # a stop cuts the opening (and its preflight) short
            self._opened = await open_run(self.config)
            await self._accounting.count_earlier(self.config.output_path, self.config.model)
        if self._opened is not None:
            self.stats.total_lines = self._opened.total_lines
            self.stats.warnings.extend(self._opened.warnings)

    async def run(self) -> RunStats:
        """Run to completion or until stopped. Raises the :mod:`batchrunner.errors`:
        :class:`OutputWriteError` when an outcome cannot be written, the others when the
        files cannot be used."""
        await self.open()
        cfg, stats, control = self.config, self.stats, self._control
        if self._opened is None:  # stopped while opening: nothing was opened or sent
            stats.finished, stats.stop_reason = time.monotonic(), control.reason
            return stats
        client = self._client or make_client(
            cfg.client, cfg.server_url, cfg.api_key, cfg.timeout, cfg.concurrency or MAX_POOL
        )
        settled = False
        self._events.run_start(cfg, stats.total_lines)
        try:
            with control.waiting():  # a stop cuts the warm-up short, too
                await client.warm_up()
            if not control.stopping:
                settled = await self._pump(self._opened, client)
        finally:
            stats.finished = time.monotonic()
            with anyio.CancelScope(shield=True):  # before the dead-letter file is rewritten
                state = self._opened.ledger.state
                await anyio.to_thread.run_sync(count_unread, cfg, state, stats)
            self._accounting.publish(stats)
            stats.stop_reason, stats.stop_message = control.reason, control.message
            if (warning := self._accounting.unpriced_warning()) is not None:
                stats.warnings.append(warning)
            self._events.run_end(stats)
            with anyio.CancelScope(shield=True):
                try:
                    if self._client is None:
                        await client.aclose()
                finally:
                    settled = settled and control.error is None
                    closing = await anyio.to_thread.run_sync(self._opened.close, settled)
                    stats.warnings.extend(closing)
        if control.error is not None:
            raise control.error
        return stats

    async def _pump(self, opened: Opened, client: Client) -> bool:
        """Send until the input is done or the run stops; whether it settled (completed,
        or stopped with every request in flight finished) rather than being aborted."""
        cfg, stats, control = self.config, self.stats, self._control
        gates = Gates.build(cfg.rps, cfg.concurrency, cfg.tpm)  # in the loop: it binds to it
        window = anyio.Semaphore(read_ahead(cfg))
        breaker = CircuitBreaker(cfg.breaker)
        ledger = opened.ledger
        events = self._events
        outcomes = Outcomes(
            ledger.results, ledger.dead, stats, breaker,
            release=window.release, ordered=cfg.ordered, events=events,
        )  # fmt: skip
        items = admit(cfg, ledger.state, stats, outcomes.write_dead, opened.check_bodies, events)
        stats.pool, stats.current_rps = gates.pool, gates.rate
        async with anyio.create_task_group() as outer:
            outer.start_soon(sync_files, ledger, cfg.fsync_interval, control)
            with control.items(outer) as items_scope:
                async with anyio.create_task_group() as tg:
                    sender = ItemSender(
                        items=items, window=window, tg=tg, client=client,
                        endpoint=cfg.endpoint, api_key=cfg.api_key, gates=gates,
                        accounting=self._accounting, outcomes=outcomes, policy=self._policy,
                        rng=self._rng, control=control, stats=stats, events=events,
                    )  # fmt: skip
                    sender.grow(gates.pool)
                    outer.start_soon(tick, gates, sender, self._accounting, stats, events)
            settled = not items_scope.cancel_called
            try:
                outcomes.close(completed=settled)
            except OutputWriteError as exc:
                control.fail(exc)
            outer.cancel_scope.cancel()
        return settled
