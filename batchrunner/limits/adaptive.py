"""Following the server: AIMD on the request rate, and a pool sized to the latency.

A 429 cuts the rate by a factor (at most once per round trip, so one burst of 429s counts
once) — and at least to just under what the server accepted over the last second, so a
limit far below ``--rps`` is found in one step, not eight; each second without a 429 adds a
small step back, up to ``--rps``. A run against a
server whose real limit is below ``--rps`` so settles near that limit with few 429s instead
of a retry storm. Without ``--concurrency`` the pool is sized by Little's law — enough
requests in flight to keep the rate busy at the observed latency — and, with no rate cap
at all, the pool itself is what AIMD moves.
"""

from __future__ import annotations

import math
from collections import deque

from batchrunner.limits.pacing import RatePacer
from batchrunner.limits.slots import Slots

__all__ = ["Adaptive"]

_CUT = 0.85
#: After a 429, the rate goes at most to this share of what the server accepted lately
#: (over the last second, or since the start when that is shorter but at least _MIN_SPAN).
_ACCEPTED_SHARE = 0.95
_GENTLE_CUT = 0.97
_MIN_SPAN = 0.25
#: Answers since a cut before "most are still 429s" may cut again within the second.
_URGENT_MIN = 5
#: For this long after a 429 the rate grows by 1 % of the rate it was cut to, a second,
#: instead of 2.5 % of the cap: additive either way, gentle near the limit just found.
_NEAR_LIMIT_FOR = 15.0
_POOL_CUT = 0.7
_MAX_POOL = 1024
_UNCAPPED_START = 32
_UNCAPPED_MAX = 256
_LATENCY_ALPHA = 0.2
_HEADROOM = 1.5


class Adaptive:
    """Owns the pool size and the pace; the sender reports each answer to it."""

    __slots__ = (
        "_accepted",
        "_answers_since_cut",
        "_first",
        "_last_429",
        "_last_cut",
        "_last_grow",
        "_limiter",
        "_pacer",
        "_probe",
        "_recent",
        "_recent_429",
        "_rejected_since_cut",
        "auto_pool",
        "cap",
        "latency",
        "pool",
        "rate",
    )

    def __init__(self, rps: float | None, concurrency: int | None, pacer: RatePacer) -> None:
        self.cap, self.rate = rps, rps
        self.auto_pool = concurrency is None
        self.latency = 1.0  # seconds; a guess until answers come in
        self.pool = concurrency or self._sized_pool()
        self._pacer = pacer
        self._limiter = Slots(self.pool)
        self._last_cut = self._last_429 = self._last_grow = -math.inf
        self._recent = self._recent_429 = 0.0
        self._accepted: deque[float] = deque()  # when the last second's non-429 answers came
        self._first: float | None = None
        self._probe = 0.5  # rate step per second just after a cut: 1 % of the rate found
        self._answers_since_cut = self._rejected_since_cut = 0

    @property
    def limiter(self) -> Slots:
        return self._limiter

    @property
    def rate_limited_share(self) -> float:
        """Share of recent answers that were 429s (decays over ~10 s)."""
        return self._recent_429 / self._recent if self._recent else 0.0

    def answered(self, latency: float, rate_limited: bool, now: float) -> None:
        self._recent += 1
        self._answers_since_cut += 1
        if self._first is None:
            self._first = now
        if not rate_limited:
            self.latency += _LATENCY_ALPHA * (latency - self.latency)
            if self.rate is not None:  # only a rate cut asks what was accepted
                accepted = self._accepted
                accepted.append(now)
                while accepted[0] < now - 1.0:
                    accepted.popleft()
            return
        self._recent_429 += 1
        self._last_429 = now
        self._rejected_since_cut += 1
        if now - self._last_cut < max(1.0, self.latency):
            # The same burst of 429s: cut once — unless most answers since the cut, to
            # requests sent after it, are still 429s: the server's limit is far lower.
            if now - latency < self._last_cut or not self._still_refused():
                return
            self._urgent_cut(now)
            return
        self._last_cut = now
        self._answers_since_cut = self._rejected_since_cut = 0
        if self.rate is not None and self.cap is not None:
            self._set_rate(self._cut_rate(self.rate, now))
        elif self.auto_pool:
            self._resize(max(1, int(self.pool * _POOL_CUT)))

    def _still_refused(self) -> bool:
        seen = self._answers_since_cut
        return seen >= _URGENT_MIN and self._rejected_since_cut >= seen / 2

    def _urgent_cut(self, now: float) -> None:
        """Down towards what the server accepted in the last second, a step at a time."""
        if self.rate is None:
            return
        while self._accepted and self._accepted[0] < now - 1.0:
            self._accepted.popleft()
        target = max(self.rate * _CUT, len(self._accepted) * _ACCEPTED_SHARE)
        if target < self.rate * _GENTLE_CUT:
            self._last_cut = now
            self._answers_since_cut = self._rejected_since_cut = 0
            self._set_rate(target)

    def _set_rate(self, rate: float) -> None:
        assert self.cap is not None
        self.rate = max(rate, self.cap * 0.02, 0.1)
        self._probe = max(0.2, self.rate * 0.01)
        self._pacer.set_rate(self.rate)

    def _cut_rate(self, rate: float, now: float) -> float:
        """Just under what the server accepted lately, when that is known; else a plain cut."""
        assert self._first is not None
        span = min(1.0, now - self._first)
        while self._accepted and self._accepted[0] < now - span:
            self._accepted.popleft()
        if span < _MIN_SPAN or not self._accepted:  # none at all says nothing of the limit
            return rate * _CUT
        return min(rate * _GENTLE_CUT, len(self._accepted) / span * _ACCEPTED_SHARE)

    def tick(self, now: float) -> None:
        """Called about every second: grow back while no 429 comes; resize the pool."""
        self._recent *= 0.9
        self._recent_429 *= 0.9
        if now - self._last_429 >= 1.0 and now - self._last_grow >= 1.0:
            self._last_grow = now
            if self.rate is not None and self.cap is not None and self.rate < self.cap:
                self.rate = min(self.cap, self.rate + self._step(now))
                self._pacer.set_rate(self.rate)
            elif self.rate is None and self.auto_pool and self.pool < _UNCAPPED_MAX:
                self._resize(self.pool + 1)
        if self.auto_pool and self.rate is not None:
            self._resize(self._sized_pool())

    def _step(self, now: float) -> float:
        """Probe gently near a limit found lately; come back quickly once it is long gone."""
        assert self.cap is not None and self.rate is not None
        if now - self._last_429 < _NEAR_LIMIT_FOR:
            return self._probe
        return max(0.5, self.cap * 0.025)

    def _sized_pool(self) -> int:
        if self.rate is None:
            return _UNCAPPED_START
        return max(2, min(_MAX_POOL, math.ceil(self.rate * self.latency * _HEADROOM) + 2))

    def _resize(self, pool: int) -> None:
        if pool != self.pool:
            self.pool = pool
            self._limiter.total_tokens = pool
