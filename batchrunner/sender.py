"""All the attempts of one item, and its single outcome.

An attempt passes the gates in this order: a concurrency slot, its tokens (``--tpm``), its
turn at the rate pacer — so that it leaves the moment the pacer says, and the pacer's spacing
is what the server sees. A wait that a graceful stop cuts short sends nothing. Between
attempts the item sleeps holding no slot.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio

from .breaker import Parked
from .classify import Failure
from .clients import Client, Success
from .lines import Item

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["ItemSender"]


class ItemSender:
    __slots__ = ("_client", "_engine")

    def __init__(self, engine: Engine, client: Client) -> None:
        self._engine, self._client = engine, client

    async def item(self, item: Item, seq: int) -> None:
        """Task body for one item; ``seq`` is its place in ``--ordered`` output."""
        line = None
        try:
            line = await self._attempts(item)
        finally:
            self._engine.item_finished(seq, line)

    async def _attempts(self, item: Item) -> bytes | None:
        """The result line, or None when the item was dead-lettered or left pending."""
        eng = self._engine
        estimate = eng.estimate_tokens(item)
        too_large = eng.too_large(sum(estimate))
        if too_large is not None:
            eng.outcomes.dead_letter([Parked(item, too_large, 0)])
            return None
        if not eng.admit_spending(item, estimate):
            return None
        try:
            return await self._until_done(item, sum(estimate))
        finally:
            eng.release_spending(item, estimate)

    async def _until_done(self, item: Item, tokens: int) -> bytes | None:
        eng, stats = self._engine, self._engine.stats
        attempt = 0
        while not eng.stopping:
            attempt += 1
            reply, latency = await self._send_once(item, tokens)
            if reply is None:
                return None  # stopped while waiting: the item stays pending
            if isinstance(reply, Success):
                return eng.succeeded(item, reply, attempt, latency)
            delay = eng.policy.delay(reply, attempt, eng.rng)
            if delay is None:
                eng.outcomes.failed(item, eng.policy.final(reply, attempt), attempt)
                return None
            stats.note_retry(reply)
            try:
                with eng.waiting():
                    await anyio.sleep(delay)
            finally:
                stats.retrying_now -= 1
        return None

    async def _send_once(self, item: Item, tokens: int) -> tuple[Success | Failure | None, float]:
        eng, stats, adaptive = self._engine, self._engine.stats, self._engine.adaptive
        with eng.waiting() as scope:
            await adaptive.limiter.acquire()
        if scope.cancelled_caught:
            return None, 0.0
        reserved = 0
        reply: Success | Failure | None = None
        try:
            if eng.token_budget is not None:
                with eng.waiting() as scope:
                    reserved = await eng.token_budget.reserve(tokens)
                if scope.cancelled_caught:
                    return None, 0.0
            with eng.waiting() as scope:
                await eng.pacer.acquire()
            if scope.cancelled_caught or eng.stopping:
                return None, 0.0  # a wait that ended as the stop began must not send
            stats.sent += 1
            stats.in_flight += 1
            start = time.monotonic()
            try:
                reply = await self._client.send(eng.config.endpoint, item.body)
            finally:
                stats.in_flight -= 1
            latency = time.monotonic() - start
            adaptive.answered(latency, _rate_limited(reply), time.monotonic())
            return reply, latency
        finally:
            adaptive.limiter.release()
            if eng.token_budget is not None and reserved:
                eng.token_budget.settle(reserved, _tokens_used(reply))


def _tokens_used(reply: Success | Failure | None) -> int:
    if isinstance(reply, Success):
        return reply.prompt_tokens + reply.completion_tokens
    return 0


def _rate_limited(reply: Success | Failure) -> bool:
    return isinstance(reply, Failure) and reply.type == "rate_limited"
