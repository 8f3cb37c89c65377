"""Server-side rate limits, as real gateways enforce them.

A request limit comes in the three shapes gateways use (``--limit-algo``): a sliding
1-second window, a fixed 1-second window (the count starts again at each whole second of the
server's clock) and a token bucket holding one second's worth (a burst of ``limit``, refilled
at ``limit`` a second). Each admits ``limit`` a second in the long run; they differ in
the bursts they let through and in when a refused client may send again.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal, Protocol

__all__ = [
    "LIMIT_ALGOS",
    "FixedWindow",
    "LimitAlgo",
    "RequestBucket",
    "RequestLimit",
    "RequestWindow",
    "TokenWindow",
    "request_limit",
]

#: The request limiters a mock server can be told to use.
LimitAlgo = Literal["sliding", "fixed", "bucket"]
LIMIT_ALGOS: tuple[LimitAlgo, ...] = ("sliding", "fixed", "bucket")


class RequestLimit(Protocol):
    def admit(self, now: float) -> bool:
        """Record and allow an arrival at ``now``, or refuse it (False)."""
        ...


def request_limit(algo: LimitAlgo, limit: float) -> RequestLimit:
    """The limiter ``algo`` names, admitting ``limit`` requests a second."""
    kinds: dict[str, type[RequestWindow | FixedWindow | RequestBucket]] = {
        "sliding": RequestWindow,
        "fixed": FixedWindow,
        "bucket": RequestBucket,
    }
    return kinds[algo](limit)


class RequestWindow:
    """At most ``limit`` admitted requests in any sliding 1-second window.

    Refused requests are not recorded, so a client hammering the server through
    429s does not push its own window further out.
    """

    __slots__ = ("_limit", "_times")

    def __init__(self, limit: float) -> None:
        self._limit = limit
        self._times: deque[float] = deque()

    def admit(self, now: float) -> bool:
        """Record and allow an arrival at ``now``, or refuse it (False)."""
        times = self._times
        while times and times[0] <= now - 1.0:
            times.popleft()
        if len(times) + 1 > self._limit:
            return False
        times.append(now)
        return True


class FixedWindow:
    """At most ``limit`` admitted requests in each whole second ``[k, k + 1)`` of the clock:
    the count starts again at every boundary, so two full windows may meet there."""

    __slots__ = ("_count", "_limit", "_window")

    def __init__(self, limit: float) -> None:
        self._limit = limit
        self._window = -math.inf
        self._count = 0

    def admit(self, now: float) -> bool:
        window = math.floor(now)
        if window != self._window:
            self._window, self._count = window, 0
        if self._count + 1 > self._limit:
            return False
        self._count += 1
        return True


class RequestBucket:
    """A token bucket: holds up to ``limit`` requests (one second's burst), starts full and
    refills at ``limit`` a second; each admitted request takes one."""

    __slots__ = ("_last", "_level", "_limit")

    def __init__(self, limit: float) -> None:
        self._limit = limit
        self._level = float(limit)
        self._last: float | None = None

    def admit(self, now: float) -> bool:
        if self._last is not None:
            self._level = min(self._limit, self._level + (now - self._last) * self._limit)
        self._last = now
        if self._level < 1.0:
            return False
        self._level -= 1.0
        return True


class TokenWindow:
    """At most ``limit`` prompt+completion tokens in any sliding 60-second window."""

    __slots__ = ("_entries", "_limit", "_sum")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: deque[tuple[float, int]] = deque()
        self._sum = 0

    def admit(self, now: float, tokens: int) -> bool:
        """Charge ``tokens`` at ``now`` if they fit in the window, else refuse (False).

        A request is refused when it would take the window over the limit, so a
        single request bigger than the whole limit never succeeds (as upstream).
        """
        entries = self._entries
        while entries and entries[0][0] <= now - 60.0:
            self._sum -= entries.popleft()[1]
        if self._sum + tokens > self._limit:
            return False
        entries.append((now, tokens))
        self._sum += tokens
        return True
