"""Request pacing on top of aiolimiter, without its start-up burst.

``AsyncLimiter(rps, 1)`` starts empty and so lets ``2 * rps`` requests through in the first
second. A bucket of capacity just under 2 leaking ``rps`` per second admits at most
``rps + 1`` requests in any one-second window (integer ``rps``), from the very first, while
the slack above 1 absorbs the event loop's late wake-ups so the long-run rate stays at the cap.
"""

from __future__ import annotations

from aiolimiter import AsyncLimiter

__all__ = ["RatePacer"]

_CAPACITY = 1.99


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

    __slots__ = ("_limiter", "rps")

    def __init__(self, rps: float | None) -> None:
        # Build inside the running loop: aiolimiter binds to the loop that first uses it.
        self.rps = rps
        self._limiter = None if rps is None else _Limiter(_CAPACITY, _CAPACITY / rps)

    async def acquire(self) -> None:
        if self._limiter is not None:
            await self._limiter.acquire()

    def set_rate(self, rps: float) -> None:
        """Change the pace from now on (a pacer built with ``None`` stays unpaced)."""
        if self._limiter is not None and rps > 0:
            self.rps = rps
            self._limiter.set_rate(rps)
