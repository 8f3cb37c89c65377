"""The workers: each pulls the next item from the input, sends it, writes its outcome.

A fixed pool of long-lived workers (as many as requests may be in flight) costs far less
CPU per request than a task per item. An item that must wait out a backoff is handed to a
task of its own, so that the worker — and its concurrency slot — go on with the next item.

An attempt passes the gates in this order: a concurrency slot, its tokens (``--tpm``), its
turn at the rate pacer — so that it leaves the moment the pacer says, and the pacer's spacing
is what the server sees. A wait that a graceful stop cuts short sends nothing. Gates that are
open are passed without a cancel scope or a trip through the event loop.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from batchrunner.clients import Client
from batchrunner.clients.classify import redacted
from batchrunner.engine.breaker import Parked
from batchrunner.errors import OutputWriteError
from batchrunner.input.lines import Item
from batchrunner.limits.slots import Slots
from batchrunner.limits.tpm import Reservation
from batchrunner.vocabulary import Failure, Success

if TYPE_CHECKING:
    from batchrunner.engine.run import Engine

__all__ = ["ItemSender"]


class ItemSender:
    __slots__ = ("_client", "_engine", "_items", "_tg", "_window", "workers")

    def __init__(
        self,
        engine: Engine,
        client: Client,
        items: Iterator[Item | None],
        window: anyio.Semaphore,
        tg: anyio.abc.TaskGroup,
    ) -> None:
        self._engine, self._client, self._items = engine, client, items
        self._window, self._tg = window, tg
        self.workers = 0

    def grow(self, target: int) -> None:
        """Start workers up to ``target``; extra ones retire by themselves."""
        while self.workers < target and not self._engine.stopping:
            self.workers += 1
            self._tg.start_soon(self._worker)

    async def _worker(self) -> None:
        eng = self._engine
        try:
            while not eng.stopping and self.workers <= eng.adaptive.pool:
                if not await self._take_window():
                    return
                try:
                    item = next(self._items, _END)
                except OutputWriteError:
                    self._window.release()
                    return  # kept by the engine, which is aborting
                if item is _END or item is None:
                    self._window.release()
                    if item is _END:
                        eng.stats.input_exhausted = True
                        return
                    await anyio.lowlevel.checkpoint()
                    continue
                assert isinstance(item, Item)
                seq = eng.outcomes.take_seq()
                estimate = eng.estimate_tokens(item)
                if self._admitted(item, seq, estimate):
                    await self._attempts(item, seq, estimate, 0, None)
        finally:
            self.workers -= 1

    async def _take_window(self) -> bool:
        try:
            self._window.acquire_nowait()
        except anyio.WouldBlock:
            await self._window.acquire()
        if self._engine.stopping:
            self._window.release()
            return False
        return True

    def _admitted(self, item: Item, seq: int, estimate: tuple[int, int]) -> bool:
        """Whether the item may be sent at all (size against --tpm, the budget)."""
        eng = self._engine
        too_large = eng.too_large(sum(estimate))
        if too_large is not None:
            with contextlib.suppress(OutputWriteError):  # kept by the engine, aborting
                eng.outcomes.dead_letter([Parked(item, too_large, 0)])
            eng.item_finished(seq, None)
            return False
        if not eng.admit_spending(item, estimate):
            eng.item_finished(seq, None)
            return False
        return True

    async def _attempts(
        self, item: Item, seq: int, estimate: tuple[int, int], attempt: int, delay: float | None
    ) -> None:
        """Attempts from ``attempt + 1`` on (after sleeping ``delay``); finishes the item
        unless it hands the rest to a backoff task. One coroutine frame for all of it: every
        frame here is walked again on each of the HTTP stack's own suspensions."""
        eng, stats = self._engine, self._engine.stats
        line: bytes | None = None
        deferred = False
        try:
            if delay is not None:
                try:
                    with eng.waiting():
                        await anyio.sleep(delay)
                finally:
                    stats.retrying_now -= 1
            while not eng.stopping:
                attempt += 1
                reply, latency = await self._send_once(item, sum(estimate))
                if reply is None:
                    return  # stopped while waiting: the item stays pending
                if isinstance(reply, Success):
                    line = eng.succeeded(item, reply, attempt, latency)
                    return
                wait = eng.policy.delay(reply, attempt, eng.rng)
                if wait is None:
                    eng.outcomes.failed(item, eng.policy.final(reply, attempt), attempt)
                    return
                stats.note_retry(reply)
                self._tg.start_soon(self._attempts, item, seq, estimate, attempt, wait)
                deferred = True
                return
        except OutputWriteError:
            pass  # the engine keeps it and is aborting the run
        finally:
            if not deferred:
                eng.release_spending(item, estimate)
                eng.item_finished(seq, line)

    async def _send_once(self, item: Item, tokens: int) -> tuple[Success | Failure | None, float]:
        eng, stats, adaptive = self._engine, self._engine.stats, self._engine.adaptive
        try:
            adaptive.limiter.acquire_nowait()  # no coroutine, no scope when a slot is free
        except anyio.WouldBlock:
            if not await _acquire(eng, adaptive.limiter):
                return None, 0.0
        reserved: Reservation | None = None
        reply: Success | Failure | None = None
        try:
            if eng.token_budget is not None:
                with eng.waiting() as scope:
                    reserved = await eng.token_budget.reserve(tokens)
                if scope.cancelled_caught:
                    return None, 0.0
            if not eng.pacer.unpaced:
                with eng.waiting() as scope:
                    await eng.pacer.acquire()
                if scope.cancelled_caught:
                    return None, 0.0
            if eng.stopping:
                return None, 0.0  # a wait that ended as the stop began must not send
            stats.sent += 1
            stats.in_flight += 1
            start = time.monotonic()
            try:
                reply = await self._client.send(item.endpoint or eng.config.endpoint, item.body)
            finally:
                stats.in_flight -= 1
            end = time.monotonic()
            if isinstance(reply, Failure):  # once, here: every later use of it is clean
                reply = redacted(reply, eng.config.api_key)
            adaptive.answered(end - start, _rate_limited(reply), end)
            return reply, end - start
        finally:
            adaptive.limiter.release()
            if eng.token_budget is not None and reserved is not None:
                eng.token_budget.settle(reserved, _tokens_used(reply))


_END = object()


async def _acquire(eng: Engine, limiter: Slots) -> bool:
    """Wait for a concurrency slot; False if the run began to stop meanwhile."""
    with eng.waiting() as scope:
        await limiter.acquire()
    return not scope.cancelled_caught


def _tokens_used(reply: Success | Failure | None) -> int:
    if isinstance(reply, Success):
        return reply.prompt_tokens + reply.completion_tokens
    return 0


def _rate_limited(reply: Success | Failure) -> bool:
    return isinstance(reply, Failure) and reply.type == "rate_limited"
