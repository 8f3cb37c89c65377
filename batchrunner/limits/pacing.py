"""Request pacing: a small leaky bucket of our own, without a start-up burst, whose rate the
adaptive limit moves while the run goes (and may start, or stop: ``None`` is unpaced).

The bucket starts empty, holds just under 2 and leaks ``rps`` per second: it admits at most
``rps + 1`` requests in any one-second window (integer ``rps``), from the very first, while
the slack above 1 absorbs the event loop's late wake-ups so the long-run rate stays at the cap.

An account limited to ``rps`` per second refuses the ``rps + 1``-th request of a second, so
a sliding-window guard on top keeps any ``1 s + margin`` to at most ``floor(rps)`` sends: the
margin covers the requests' different trips to the server.

Why not aiolimiter here: its ``AsyncLimiter`` fixes the rate at construction, and moving it
means writing its private state. A new limiter per change would forget the bucket's level
and let a burst through. The bucket is the few lines below; aiolimiter still meters the
tokens per minute (``tpm.py``), where the rate is fixed.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque

__all__ = ["RatePacer"]

#: Just under 2: one request always fits an empty bucket, a second one only after a 1 %
#: leak. Lower (1.0) and every late wake-up of the loop is lost rate for good; higher (2+)
#: and two requests may leave at once after every pause.
_CAPACITY = 1.99
#: The guard's window: one second, plus 8 ms for the requests' different trips to the
#: server. Wider costs that share of the rate; narrower lets a slow trip and a fast one
#: land in the same second of the server's count.
_WINDOW = 1.0 + 0.008
#: Waits shorter than this are none: float rounding must not schedule a wake-up at the very
#: instant that just fired.
_EPSILON = 1e-9


class RatePacer:
    """Admits one request at a time at ``rps`` per second; ``None`` admits at once.

    Reads the running loop's clock (a test's virtual clock included), so build and use it in
    one loop.
    """

    __slots__ = ("_last", "_level", "_lock", "_recent", "_wake", "rps")

    def __init__(self, rps: float | None) -> None:
        self.rps = rps
        self._level = 0.0  # requests in the bucket, as of loop time ``_last``
        self._last = 0.0
        self._recent: deque[float] = deque(maxlen=_per_window(rps or 1))
        # One task at a time through the bucket and the guard: tasks that each slept their
        # share of a wait would all wake, and send, together.
        self._lock = asyncio.Lock()
        self._wake: asyncio.Future[None] | None = None  # the sleeper, woken by set_rate

    async def acquire(self) -> None:
        """Wait for this request's turn. Cancelling the wait takes nothing from the bucket."""
        if self.rps is None:
            return
        async with self._lock:
            loop = asyncio.get_running_loop()
            while self.rps is not None and (wait := self._wait(loop.time())) > _EPSILON:
                await self._sleep(loop, wait)
            if self.rps is not None:  # else it went unpaced meanwhile: nothing to count
                self._level += 1.0
                self._recent.append(loop.time())

    def set_rate(self, rps: float | None) -> None:
        """Change the pace from now on, keeping the bucket's level; ``None`` stops pacing,
        and a rate after ``None`` starts from an empty bucket. A request waiting for its
        turn is told at once."""
        if rps is not None and rps <= 0:
            return
        now = asyncio.get_running_loop().time()
        if self.rps is None:
            self._level, self._last = 0.0, now
        elif self._level:  # drain at the old rate up to now
            self._leak(now)
        self.rps = rps
        if rps is not None and _per_window(rps) != self._recent.maxlen:
            self._recent = deque(self._recent, maxlen=_per_window(rps))
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _wait(self, now: float) -> float:
        """Seconds until one more request fits both the bucket and the window (0: now)."""
        assert self.rps is not None
        self._leak(now)
        bucket = (self._level + 1.0 - _CAPACITY) / self.rps
        recent = self._recent
        window = recent[0] + _WINDOW - now if len(recent) == recent.maxlen else 0.0
        return max(bucket, window, 0.0)

    def _leak(self, now: float) -> None:
        assert self.rps is not None
        self._level = max(self._level - (now - self._last) * self.rps, 0.0)
        self._last = now

    async def _sleep(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        """Sleep ``seconds``, or less if :meth:`set_rate` changes the pace meanwhile."""
        wake = self._wake = loop.create_future()
        timer = loop.call_later(seconds, _wake_up, wake)
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None


def _wake_up(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _per_window(rps: float) -> int:
    """Sends allowed in one window: ``rps`` when whole (what an account allows), else the
    next whole number, so the guard never lowers a fractional rate."""
    return max(1, math.ceil(rps - 1e-9))
