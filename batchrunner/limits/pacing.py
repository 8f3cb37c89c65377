"""Request pacing on top of aiolimiter, without its start-up burst.

``AsyncLimiter(rps, 1)`` starts empty and so lets ``2 * rps`` requests through in the first
second. A bucket of capacity just under 2 leaking ``rps`` per second admits at most
``rps + 1`` requests in any one-second window (integer ``rps``), from the very first, while
the slack above 1 absorbs the event loop's late wake-ups so the long-run rate stays at the cap.

An account limited to ``rps`` per second refuses the ``rps + 1``-th request of a second, so
a sliding-window guard on top keeps any ``1 s + margin`` to at most ``floor(rps)`` sends: the
margin covers the requests' different trips to the server.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque

from aiolimiter import AsyncLimiter

__all__ = ["RatePacer"]

_CAPACITY = 1.99
_WINDOW = 1.0 + 0.008


class _Limiter(AsyncLimiter):
    """An AsyncLimiter whose leak rate can change while it runs (adaptive rate).

    aiolimiter fixes the rate at construction; a new limiter per change would forget the
    bucket's level and let a burst through, so the level is kept and only the rate moves.
    """

    def set_rate(self, rate_per_sec: float) -> None:
        self._leak()  # drain at the old rate up to now
        self.time_period = self.max_rate / rate_per_sec
        self._rate_per_sec = rate_per_sec
        self._wake_next()


class RatePacer:
    """Admits one request at a time at ``rps`` per second; ``None`` admits at once."""

    __slots__ = ("_limiter", "_lock", "_recent", "rps")

    def __init__(self, rps: float | None) -> None:
        # Build inside the running loop: aiolimiter binds to the loop that first uses it.
        self.rps = rps
        self._limiter = None if rps is None else _Limiter(_CAPACITY, _CAPACITY / rps)
        self._recent: deque[float] = deque(maxlen=_per_window(rps or 1))
        # One task at a time through the bucket and the guard: tasks that each held a token
        # while sleeping in the guard would all wake, and send, together.
        self._lock = asyncio.Lock()

    @property
    def unpaced(self) -> bool:
        return self._limiter is None

    async def acquire(self) -> None:
        if self._limiter is None:
            return
        async with self._lock:
            await self._limiter.acquire()
            loop = asyncio.get_running_loop()
            recent = self._recent
            while len(recent) == recent.maxlen and (wait := recent[0] + _WINDOW - loop.time()) > 0:
                await asyncio.sleep(wait)
            recent.append(loop.time())

    def set_rate(self, rps: float) -> None:
        """Change the pace from now on (a pacer built with ``None`` stays unpaced)."""
        if self._limiter is not None and rps > 0:
            self.rps = rps
            self._limiter.set_rate(rps)
            if _per_window(rps) != self._recent.maxlen:
                self._recent = deque(self._recent, maxlen=_per_window(rps))


def _per_window(rps: float) -> int:
    """Sends allowed in one window: ``rps`` when whole (what an account allows), else the
    next whole number, so the guard never lowers a fractional rate."""
    return max(1, math.ceil(rps - 1e-9))
