"""A tokens-per-minute budget on top of aiolimiter.

Each request reserves its estimated tokens before it is sent; when its answer comes back,
the reservation is corrected to the real ``usage``, so estimate errors never accumulate.

Two parts, as for the request rate: an aiolimiter bucket that holds ~1/50 of the budget and
leaks the rest evenly (no start-up burst of a whole minute's budget), and an exact
sliding-window guard — what an account counts — so that no 60-second window of sends holds
more than ``tpm`` tokens, whatever the size of the requests. Reservations are taken one at a
time, so a large request's pieces are not interleaved with others'.
"""

from __future__ import annotations

import asyncio
from collections import deque

from aiolimiter import AsyncLimiter

__all__ = ["Reservation", "TokenBudget"]

#: The bucket holds this share of a minute's budget. Larger lets bigger requests through
#: in one piece and a bigger burst at the start; smaller spaces them more evenly.
_BURST_SHARE = 1 / 50
#: The account's minute, plus 50 ms for the requests' different trips to the server. Wider
#: costs that share of the budget; narrower risks a window the server counts as over.
_WINDOW = 60.0 + 0.05


class Reservation:
    """The tokens one attempt holds in the window: its estimate, then what it really used."""

    __slots__ = ("at", "tokens")

    def __init__(self, at: float, tokens: int) -> None:
        self.at, self.tokens = at, tokens


class TokenBudget:
    __slots__ = ("_balance", "_chunk", "_limiter", "_lock", "_sent", "_window_sum", "tpm")

    def __init__(self, tpm: int) -> None:
        self.tpm = tpm
        self._chunk = max(1.0, tpm * _BURST_SHARE)
        per_second = (tpm - self._chunk) / 60 if tpm > self._chunk else tpm / 60
        self._limiter = AsyncLimiter(self._chunk, self._chunk / per_second)
        self._lock = asyncio.Lock()
        #: Tokens reserved minus tokens used: > 0 a credit for later, < 0 a debt.
        self._balance = 0.0
        self._sent: deque[Reservation] = deque()
        self._window_sum = 0

    async def reserve(self, tokens: int) -> Reservation:
        """Wait until ``tokens`` fit the bucket and the window; hand the result to
        :meth:`settle` when the answer comes."""
        async with self._lock:
            amount = tokens - self._balance
            self._balance = max(self._balance - tokens, 0.0)
            while amount > 0:
                step = min(amount, self._chunk)
                await self._limiter.acquire(step)
                amount -= step
            loop = asyncio.get_running_loop()
            while (wait := self._wait_for(tokens, loop.time())) > 0:
                await asyncio.sleep(wait)
            reservation = Reservation(loop.time(), tokens)
            self._sent.append(reservation)
            self._window_sum += tokens
            return reservation

    def _wait_for(self, tokens: int, now: float) -> float:
        """Seconds until ``tokens`` more fit in the last minute's sends (0: now)."""
        sent = self._sent
        while sent and sent[0].at <= now - _WINDOW:
            self._window_sum -= sent.popleft().tokens
        excess = self._window_sum + tokens - self.tpm
        for r in sent:
            if excess <= 0:
                break
            excess -= r.tokens
            if excess <= 0:
                return r.at + _WINDOW - now
        return 0.0 if excess <= 0 else _WINDOW

    def settle(self, reservation: Reservation, used: int) -> None:
        """The answer said ``used`` tokens (0 for a failed attempt)."""
        self._balance += reservation.tokens - used
        if self._sent and reservation.at > self._sent[0].at - 1e-9:
            self._window_sum += used - reservation.tokens
        reservation.tokens = used
