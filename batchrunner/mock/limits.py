"""Server-side rate limits, as a real Mistral account enforces them."""

from __future__ import annotations

from collections import deque


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
