"""The gates one attempt passes before it is sent, behind one enter/leave pair.

In order: a concurrency slot, its tokens (``--tpm``), its turn at the rate pacer — so that it
leaves the moment the pacer says, and the pacer's spacing is what the server sees. Whoever
sends knows only :meth:`Gates.enter_nowait`, :meth:`Gates.enter` and :meth:`Gates.leave`,
as aiometer's meters share one interface; which gates a run has is decided here.

When only the slot is there (no pace — none given, or none yet — and no ``--tpm``) and one is
free, :meth:`enter_nowait` passes without a coroutine, a cancel scope or a trip through the
event loop: at thousands of requests a second that is most of what the gates cost.
"""

from __future__ import annotations

import anyio

from batchrunner.limits.adaptive import Adaptive
from batchrunner.limits.pacing import RatePacer
from batchrunner.limits.slots import Slots
from batchrunner.limits.tpm import Reservation, TokenBudget
from batchrunner.vocabulary import Failure, Success

__all__ = ["Gates", "Reservation"]


class Gates:
    """A run's gates, and the adaptive limit that moves them as answers come back.

    Build it inside the running loop, once per run. ``enter`` hands back what the attempt
    holds (its token reservation, or ``None``); give it back to ``leave`` with the answer.
    """

    __slots__ = ("_adaptive", "_pacer", "_slots", "_tokens")

    def __init__(self, adaptive: Adaptive, pacer: RatePacer, tokens: TokenBudget | None) -> None:
        self._adaptive, self._pacer, self._tokens = adaptive, pacer, tokens
        self._slots: Slots = adaptive.limiter

    @classmethod
    def build(cls, rps: float | None, concurrency: int | None, tpm: int | None) -> Gates:
        """The gates ``--rps``, ``--concurrency`` and ``--tpm`` ask for."""
        pacer = RatePacer(rps)
        return cls(Adaptive(rps, concurrency, pacer), pacer, TokenBudget(tpm) if tpm else None)

    def enter_nowait(self) -> None:
        """Pass at once, or raise ``anyio.WouldBlock`` holding nothing. Only a free slot
        with no pace and no token budget passes: those two always take their turn. (The
        adaptive limit may start pacing a run that had none: asked each time.)"""
        if self._tokens is not None or self._pacer.rps is not None:
            raise anyio.WouldBlock
        self._slots.acquire_nowait()

    async def enter(self, tokens: int) -> Reservation | None:
        """Wait through every gate; ``tokens`` is the attempt's estimate. Cancelled, it
        gives back whatever it took."""
        await self._slots.acquire()
        held: Reservation | None = None
        try:
            if self._tokens is not None:
                held = await self._tokens.reserve(tokens)
            await self._pacer.acquire()
        except BaseException:
            self._slots.release()
            if held is not None and self._tokens is not None:
                self._tokens.settle(held, 0)
            raise
        return held

    def leave(
        self, held: Reservation | None, reply: Success | Failure | None, latency: float, now: float
    ) -> None:
        """The attempt is over: its answer (``None``: it had none) moves the adaptive limit,
        its slot is free, its reservation corrected to the tokens it really used."""
        if reply is not None:
            kind = reply.type if isinstance(reply, Failure) else None
            busy = kind == "capacity_exceeded"  # the server is full: not our rate's doing
            self._adaptive.answered(latency, kind == "rate_limited", now, busy=busy)
        self._slots.release()
        if held is not None and self._tokens is not None:
            used = (
                reply.prompt_tokens + reply.completion_tokens if isinstance(reply, Success) else 0
            )
            self._tokens.settle(held, used)

    def tick(self, now: float) -> None:
        """About every second: let the adaptive limit move the pace and the pool."""
        self._adaptive.tick(now)

    @property
    def pool(self) -> int:
        """Requests that may be in flight now."""
        return self._adaptive.pool

    @property
    def rate(self) -> float | None:
        """The pace now (``None``: no cap)."""
        return self._adaptive.rate

    @property
    def share_429(self) -> float:
        """Share of recent answers that were 429s (rate limits and capacity alike)."""
        return self._adaptive.share_429
