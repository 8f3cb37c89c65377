"""The workers: each pulls the next item from the input, sends it, writes its outcome.

A fixed pool of long-lived workers (as many as requests may be in flight) costs far less
CPU per request than a task per item. An item that must wait out a backoff is handed to a
task of its own, so that the worker — and its concurrency slot — go on with the next item.

Every attempt passes the gates (:mod:`batchrunner.limits.gates`), which decide when it may
leave; a retry goes back through them like a first attempt. A wait that a graceful stop
cuts short sends nothing. The workers act on what their collaborators decide — a too-large
item, a budget reached, a quota spent, a tripped breaker — and keep a failed write in the
run control, which ends the run. An unexpected error while handling one item (a bug)
dead-letters that item as ``internal_error`` with the error's text; the run goes on.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import anyio
import anyio.abc

from batchrunner.clients import Client
from batchrunner.clients.classify import internal_error
from batchrunner.config import RunConfig
from batchrunner.engine.accounting import Accounting, Estimate
from batchrunner.engine.control import RunControl, Stop
from batchrunner.engine.events import Events
from batchrunner.engine.outcomes import Outcomes
from batchrunner.engine.retry import RetryPolicy
from batchrunner.engine.stats import RunStats
from batchrunner.errors import OutputWriteError
from batchrunner.input.lines import Item
from batchrunner.limits.gates import Gates, Reservation
from batchrunner.vocabulary import Failure, Success

__all__ = ["ItemSender", "read_ahead"]

_END = object()

#: Items read ahead of the senders without ``--ordered`` (where the reorder buffer is the
#: window): 8 per request in flight (128 when the pool sizes itself), at least 1024. More
#: keeps the workers fed through long runs of done lines and items waiting out a backoff,
#: which hold their place; each one costs a parsed request body in memory.
_READ_AHEAD_PER_SLOT, _READ_AHEAD_MIN, _POOL_GUESS = 8, 1024, 128


def read_ahead(config: RunConfig) -> int:
    """How many items may be read and not yet finished: the workers' window."""
    if config.ordered:
        return config.reorder_buffer
    return max(_READ_AHEAD_MIN, _READ_AHEAD_PER_SLOT * (config.concurrency or _POOL_GUESS))


class ItemSender:
    """The pool of workers of one run; :meth:`grow` starts them in ``tg``."""

    __slots__ = (
        "_accounting",
        "_api_key",
        "_client",
        "_control",
        "_endpoint",
        "_events",
        "_exhausted",
        "_gates",
        "_items",
        "_now",
        "_outcomes",
        "_policy",
        "_rng",
        "_stats",
        "_tg",
        "_window",
        "workers",
    )

    def __init__(
        self,
        *,
        items: Iterator[Item | None],
        window: anyio.Semaphore,
        tg: anyio.abc.TaskGroup,
        client: Client,
        endpoint: str,
        api_key: str | None,
        gates: Gates,
        accounting: Accounting,
        outcomes: Outcomes,
        policy: RetryPolicy,
        rng: random.Random,
        control: RunControl,
        stats: RunStats,
        events: Events,
    ) -> None:
        self._items, self._window, self._tg = items, window, tg
        self._events = events
        self._client, self._endpoint, self._api_key = client, endpoint, api_key
        self._gates, self._accounting, self._outcomes = gates, accounting, outcomes
        self._policy, self._rng = policy, rng
        self._control, self._stats = control, stats
        self._now = asyncio.get_running_loop().time  # the clock the gates run on
        self._exhausted = False
        self.workers = 0

    def grow(self, target: int) -> None:
        """Start workers up to ``target``; extra ones retire by themselves."""
        while self.workers < target and not self._control.stopping and not self._exhausted:
            self.workers += 1
            self._tg.start_soon(self._worker)

    async def _worker(self) -> None:
        control, gates = self._control, self._gates
        try:
            while not control.stopping and self.workers <= gates.pool:
                item = await self._next_item()
                if item is None:
                    return
                seq = self._outcomes.take_seq()
                estimate = await self._admitted(item, seq)
                if estimate is not None:
                    await self._attempts(item, seq, estimate, 0, None)
        finally:
            self.workers -= 1

    async def _next_item(self) -> Item | None:
        """The next item to send, holding a read-ahead slot; ``None`` once the input is
        over or the run stops."""
        window = self._window
        while True:
            try:
                window.acquire_nowait()
            except anyio.WouldBlock:
                await window.acquire()
            if self._control.stopping:
                window.release()
                return None
            try:
                item = next(self._items, _END)
            except OutputWriteError as exc:  # a bad line's dead-letter entry
                window.release()
                self._control.fail(exc)
                return None
            if isinstance(item, Item):
                return item
            window.release()
            if item is _END:
                self._exhausted = True
                return None
            await anyio.lowlevel.checkpoint()  # lines that need no sending: let others run

    async def _admitted(self, item: Item, seq: int) -> Estimate | None:
        """The item's estimate if it may be sent; else it is dead-lettered (too large, or
        an error deciding) or left pending (the budget is reached, which stops the run; or
        a stop came while it waited for the budget)."""
        decision: Estimate | Failure | Stop | None = None
        try:
            if self._accounting.may_wait:  # a budget: the wait is one a stop cuts short
                with self._control.waiting():
                    decision = await self._accounting.admit(item)
            else:  # no scope on the common path
                decision = await self._accounting.admit(item)
        except Exception as exc:  # a bug deciding one item: that item, not the run
            self._broken(item, 0, exc)
            self._finish(seq, None)
            return None
        if isinstance(decision, tuple):
            return decision
        try:
            if isinstance(decision, Failure):
                self._outcomes.refused(item, decision)
            elif decision is not None:
                self._control.halt(decision)
        except OutputWriteError as exc:
            self._control.fail(exc)
        self._finish(seq, None)
        return None

    async def _attempts(
        self, item: Item, seq: int, estimate: Estimate, attempt: int, delay: float | None
    ) -> None:
        """Attempts from ``attempt + 1`` on (after sleeping ``delay``); finishes the item
        unless it hands the rest to a backoff task. One coroutine frame for all of it: every
        frame here is walked again on each of the HTTP stack's own suspensions."""
        control, stats = self._control, self._stats
        line: bytes | None = None
        deferred = False
        try:
            if delay is not None:
                try:
                    with control.waiting():
                        await anyio.sleep(delay)
                finally:
                    stats.retrying_now -= 1
            while not control.stopping:
                attempt += 1
                reply, latency = await self._send_once(item, estimate)
                if reply is None:
                    return  # stopped while waiting: the item stays pending
                if isinstance(reply, Success):
                    self._accounting.answered(item, reply)
                    line = self._outcomes.succeeded(item, reply, attempt, latency)
                    return
                deferred = self._failed(item, seq, estimate, attempt, reply)
                return
        except OutputWriteError as exc:
            control.fail(exc)
        except Exception as exc:  # a bug in one item's handling: that item, not the run
            self._broken(item, attempt, exc)
        finally:
            if not deferred:
                self._accounting.release(item, estimate)
                self._finish(seq, line)

    def _failed(
        self, item: Item, seq: int, estimate: Estimate, attempt: int, failure: Failure
    ) -> bool:
        """After a failed attempt: True if a backoff task takes the item over; else its
        final failure is written (or stops the run)."""
        wait = self._policy.delay(failure, attempt, self._rng)
        if wait is None:
            stop = self._outcomes.failed(item, self._policy.final(failure, attempt), attempt)
            if stop is not None:
                self._control.halt(stop)
            return False
        self._stats.note_retry(failure)
        self._events.retry(item.custom_id, attempt, failure, wait)
        self._tg.start_soon(self._attempts, item, seq, estimate, attempt, wait)
        return True

    def _broken(self, item: Item, attempts: int, exc: Exception) -> None:
        """Dead-letter ``item`` with the unexpected error its handling raised."""
        try:
            self._outcomes.failed(item, internal_error(exc, self._api_key), attempts)
        except OutputWriteError as err:
            self._control.fail(err)

    async def _send_once(
        self, item: Item, estimate: Estimate
    ) -> tuple[Success | Failure | None, float]:
        """One attempt through the gates; ``(None, 0)`` if a stop cut the wait short."""
        gates, stats = self._gates, self._stats
        try:
            gates.enter_nowait()  # no coroutine, no scope when a slot is free
            held: Reservation | None = None
        except anyio.WouldBlock:
            entered, held = await self._enter(sum(estimate))
            if not entered:
                return None, 0.0
        reply: Success | Failure | None = None
        stats.sent += 1
        stats.in_flight += 1
        start = end = self._now()
        try:
            reply = await self._client.send(item.endpoint or self._endpoint, item.body)
            end = self._now()
        finally:
            stats.in_flight -= 1
            gates.leave(held, reply, end - start, end)
        return reply, end - start

    async def _enter(self, tokens: int) -> tuple[bool, Reservation | None]:
        """Wait through the gates; ``(False, None)`` if a graceful stop cut the wait short."""
        with self._control.waiting() as scope:
            held = await self._gates.enter(tokens)
        if scope.cancelled_caught:
            return False, None
        if self._control.stopping:  # the wait ended as the stop began: send nothing
            self._gates.leave(held, None, 0.0, 0.0)
            return False, None
        return True, held

    def _finish(self, seq: int, line: bytes | None) -> None:
        try:
            self._outcomes.finished(seq, line)
        except OutputWriteError as exc:
            self._control.fail(exc)
