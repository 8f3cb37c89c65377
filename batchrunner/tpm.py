"""A tokens-per-minute budget on top of aiolimiter.

Each request reserves its estimated tokens before it is sent; when its answer comes back,
the difference from the real ``usage`` is carried to the next reservations (a credit or a
debt), so estimate errors never accumulate. The bucket holds only ~1/50 of the budget and
leaks the rest evenly, so no 60-second window ever admits more than ``tpm`` tokens — no
start-up burst of a whole minute's budget.
"""

from __future__ import annotations

from aiolimiter import AsyncLimiter

__all__ = ["TokenBudget"]

_BURST_SHARE = 1 / 50


class TokenBudget:
    __slots__ = ("_balance", "_chunk", "_limiter", "tpm")

    def __init__(self, tpm: int) -> None:
        self.tpm = tpm
        self._chunk = max(1.0, tpm * _BURST_SHARE)
        per_second = (tpm - self._chunk) / 60 if tpm > self._chunk else tpm / 60
        self._limiter = AsyncLimiter(self._chunk, self._chunk / per_second)
        #: Tokens reserved minus tokens used: > 0 a credit for later, < 0 a debt.
        self._balance = 0.0

    def fits(self, tokens: int) -> bool:
        """Whether one request of ``tokens`` can ever be admitted."""
        return tokens <= self.tpm

    async def reserve(self, tokens: int) -> int:
        """Wait until ``tokens`` (less any credit, plus any debt) fit; returns ``tokens``,
        the amount to :meth:`settle` later."""
        amount = tokens - self._balance
        self._balance = max(self._balance - tokens, 0.0)
        while amount > 0:
            step = min(amount, self._chunk)
            await self._limiter.acquire(step)
            amount -= step
        return tokens

    def settle(self, reserved: int, used: int) -> None:
        """The answer said ``used`` tokens (0 for a failed attempt)."""
        self._balance += reserved - used
