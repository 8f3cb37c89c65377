"""Concurrency slots: a resizable counting semaphore, FIFO, that costs next to nothing when
a slot is free.

anyio's ``CapacityLimiter`` tracks which task holds each token, which costs a
``current_task()`` lookup on every acquire and release — a few percent of the runner's CPU
at thousands of requests a second. Slots here are plain counts; the adaptive pool resizes
them while the run goes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import anyio

__all__ = ["Slots"]


class Slots:
    __slots__ = ("_total", "_used", "_waiters")

    def __init__(self, total: int) -> None:
        self._total, self._used = total, 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def total_tokens(self) -> int:
        return self._total

    @total_tokens.setter
    def total_tokens(self, total: int) -> None:
        self._total = total
        self._wake()

    @property
    def borrowed_tokens(self) -> int:
        return self._used

    def acquire_nowait(self) -> None:
        """Take a slot or raise ``anyio.WouldBlock``; waiting tasks go first."""
        if self._used >= self._total or self._waiters:
            raise anyio.WouldBlock
        self._used += 1

    async def acquire(self) -> None:
        try:
            self.acquire_nowait()
            return
        except anyio.WouldBlock:
            pass
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # handed a slot just as we were cancelled: give it back
            else:
                # A release in the same loop step may have dropped it already.
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    def release(self) -> None:
        self._used -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._used < self._total:
            fut = self._waiters.popleft()
            if not fut.done():
                self._used += 1
                fut.set_result(None)
