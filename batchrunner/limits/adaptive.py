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

from batchrunner.config import MAX_POOL
from batchrunner.limits.pacing import RatePacer
from batchrunner.limits.slots import Slots

__all__ = ["Adaptive"]

# Each constant trades following the server closely against holding steady.

#: A 429 with nothing better known cuts the rate to this share. Deeper finds a far lower
#: limit in fewer steps but gives away more rate on one stray 429.
_CUT = 0.85
#: After a 429, the rate goes at most to this share of what the server accepted lately
#: (over the last second, or since the start when that is shorter but at least _MIN_SPAN).
#: Nearer 1 keeps more rate but sits on the limit itself, where 429s keep coming.
_ACCEPTED_SHARE = 0.95
#: The least a cut takes off (3 %), even when the server accepted more than that lately:
#: the 429 still says "too fast". Also the least an urgent cut must gain to be worth it.
_GENTLE_CUT = 0.97
#: The shortest span whose accepted answers say anything of the limit. Shorter reads a
#: rate from a handful of answers; longer leaves a 429 early in a run to the plain _CUT.
_MIN_SPAN = 0.25
#: Answers since a cut before "most are still 429s" may cut again within the second.
#: Fewer reacts sooner to a limit far lower, on answers to requests sent before the cut.
_URGENT_MIN = 5
#: For this long after a 429 the rate grows by _PROBE_SHARE of the rate it was cut to, a
#: second, instead of _RECOVER_SHARE of the cap: additive either way, gentle near the limit
#: just found. Longer means fewer 429s probing that limit, slower recovery once it lifts.
_NEAR_LIMIT_FOR = 15.0
#: Near a limit just found: 1 % of its rate per second (at least 0.2/s). A larger probe
#: finds lost rate sooner and meets the limit again sooner.
_PROBE_SHARE = 0.01
_MIN_PROBE = 0.2
#: Once the 429s are long gone: 2.5 % of --rps per second (at least 0.5/s), so back at the
#: cap within 40 s. Faster wins rate back sooner and overshoots a limit still there harder.
_RECOVER_SHARE = 0.025
_MIN_RECOVER = 0.5
#: The rate never falls below 2 % of --rps, nor 0.1/s: a streak of 429s cannot stall the
#: run. A lower floor follows a tiny limit better; a higher one keeps hitting it.
_FLOOR_SHARE = 0.02
_MIN_RATE = 0.1
#: No rate cap: a 429 cuts the pool to this share (the pool is then what AIMD moves).
#: Deeper sheds load faster and leaves more of the server idle after one stray 429.
_POOL_CUT = 0.7
#: No rate cap: the first pool, and the most it grows to by one a second. A larger start
#: reaches full speed sooner and hits a small server harder before its first 429.
_UNCAPPED_START = 32
_UNCAPPED_MAX = 256
#: Weight of each answer in the latency average that sizes the pool. Higher follows a
#: change in latency sooner and makes the pool size jitter.
_LATENCY_ALPHA = 0.2
#: A guess at the latency before any answer, in seconds: it sizes the first pool. Higher
#: puts more in flight at the start; lower starves the first second of a slow server.
_FIRST_LATENCY = 1.0
#: The pool holds rate x latency x _HEADROOM (+2): room for latency spikes. More slack
#: costs requests in flight (the pacer, not the pool, keeps them from leaving together).
_HEADROOM = 1.5
#: Per tick (about a second), the 429 share forgets this much of the past: ~10 s memory.
#: Only the progress display reads it; longer smooths it, shorter shows a burst sooner.
_SHARE_DECAY = 0.9
#: The span the rest is counted over: what was accepted "lately", one burst of 429s (or one
#: round trip, if longer), the least time between two growth steps. A rate is per second:
#: a shorter span reads it from fewer answers, a longer one reacts a step later.
_SPAN = 1.0


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
        self.latency = _FIRST_LATENCY  # seconds; a guess until answers come in
        self.pool = concurrency or self._sized_pool()
        self._pacer = pacer
        self._limiter = Slots(self.pool)
        self._last_cut = self._last_429 = self._last_grow = -math.inf
        self._recent = self._recent_429 = 0.0
        self._accepted: deque[float] = deque()  # when the last second's non-429 answers came
        self._first: float | None = None
        self._probe = _MIN_PROBE  # rate step per second near a limit; set by each cut
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
                while accepted[0] < now - _SPAN:
                    accepted.popleft()
            return
        self._recent_429 += 1
        self._last_429 = now
        self._rejected_since_cut += 1
        if now - self._last_cut < max(_SPAN, self.latency):
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
        while self._accepted and self._accepted[0] < now - _SPAN:
            self._accepted.popleft()
        target = max(self.rate * _CUT, len(self._accepted) * _ACCEPTED_SHARE)
        if target < self.rate * _GENTLE_CUT:
            self._last_cut = now
            self._answers_since_cut = self._rejected_since_cut = 0
            self._set_rate(target)

    def _set_rate(self, rate: float) -> None:
        assert self.cap is not None
        self.rate = max(rate, self.cap * _FLOOR_SHARE, _MIN_RATE)
        self._probe = max(_MIN_PROBE, self.rate * _PROBE_SHARE)
        self._pacer.set_rate(self.rate)

    def _cut_rate(self, rate: float, now: float) -> float:
        """Just under what the server accepted lately, when that is known; else a plain cut."""
        assert self._first is not None
        span = min(_SPAN, now - self._first)
        while self._accepted and self._accepted[0] < now - span:
            self._accepted.popleft()
        if span < _MIN_SPAN or not self._accepted:  # none at all says nothing of the limit
            return rate * _CUT
        return min(rate * _GENTLE_CUT, len(self._accepted) / span * _ACCEPTED_SHARE)

    def tick(self, now: float) -> None:
        """Called about every second: grow back while no 429 comes; resize the pool."""
        self._recent *= _SHARE_DECAY
        self._recent_429 *= _SHARE_DECAY
        if now - self._last_429 >= _SPAN and now - self._last_grow >= _SPAN:
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
        return max(_MIN_RECOVER, self.cap * _RECOVER_SHARE)

    def _sized_pool(self) -> int:
        if self.rate is None:
            return _UNCAPPED_START
        # +2, and never under 2: one slow answer must not hold up the sends behind it.
        return max(2, min(MAX_POOL, math.ceil(self.rate * self.latency * _HEADROOM) + 2))

    def _resize(self, pool: int) -> None:
        if pool != self.pool:
            self.pool = pool
            self._limiter.total_tokens = pool
