"""Following the server: AIMD on the request rate, and a pool sized to the latency.

A 429 that says "rate limited" cuts the rate — to just under what the server accepted over
the last second, so a limit far below ``--rps`` is found in one step — at most once per
round trip, so one burst of 429s counts once; if most answers after a cut are still 429s,
the cut was too shallow and goes deeper at once. Each second without such a 429 adds a
small step back, up to ``--rps``. A run against a server whose real limit is below
``--rps`` so settles near that limit with few 429s instead of a retry storm.

Not every 429 is the rate's doing: each cut is on trial (:mod:`~batchrunner.limits.trial`)
and one that did not lower the share of 429s is undone; that share becomes a floor below
which 429s cut nothing. A 429 whose body says the server is out of capacity never cuts (the
gates tell it apart: it is not ``rate_limited``).

Without ``--rps`` the requests leave unpaced, as fast as the pool lets them, until the first
429 that says "rate limited": from then on the rate is paced, starting from what the server
accepted, and moves as above (it grows without a cap). Without ``--concurrency`` the pool
is sized by Little's law — enough requests in flight to keep the rate busy at the observed
latency — and grows by one a second while the requests are unpaced.
"""

from __future__ import annotations

import math
from collections import deque

from batchrunner.config import MAX_POOL
from batchrunner.limits.pacing import RatePacer
from batchrunner.limits.slots import Slots
from batchrunner.limits.trial import SETTLE, NoiseFloor, Trial

__all__ = ["Adaptive"]

# Each constant trades following the server closely against holding steady.

#: A 429 with nothing better known cuts the rate to this share. Deeper finds a far lower
#: limit in fewer steps but gives away more rate on one stray 429.
_CUT = 0.85
#: After a 429, the rate goes at most to this share of what the server accepted lately
#: (over the last _KEEP seconds, or since the start when that is shorter but at least
#: _MIN_SPAN).
#: Nearer 1 keeps more rate but sits on the limit itself, where 429s keep coming.
_ACCEPTED_SHARE = 0.98
#: The least a cut takes off (3 %), even when the server accepted more than that lately:
#: the 429 still says "too fast". Also the least an urgent cut must gain to be worth it.
_GENTLE_CUT = 0.97
#: The shortest span whose accepted answers say anything of the limit. Shorter reads a
#: rate from a handful of answers; longer leaves a 429 early in a run to the plain _CUT.
_MIN_SPAN = 0.25
#: Answers to requests sent since a cut, and the share of them 429s, that say the cut was
#: far too shallow (cut again at once, within the second). Fewer answers or a lower share
#: react sooner to a limit far lower, and more often to a chance run of random 429s.
_URGENT_MIN = 20
_URGENT_SHARE = 0.6
#: A cut read from fewer answers than _URGENT_MIN takes at most this share off: a few
#: answers (the tail of a run, a slow one) say little of what the server accepts.
_DEEPEST_BLIND_CUT = 0.5
#: For this long after a 429 the rate grows by _PROBE_SHARE of the rate it was cut to, a
#: second, instead of _RECOVER_SHARE of the cap: additive either way, gentle near the limit
#: just found. Longer means fewer 429s probing that limit, slower recovery once it lifts.
_NEAR_LIMIT_FOR = 15.0
#: Near a limit just found: 1 % of its rate per second (at least 0.2/s). A larger probe
#: finds lost rate sooner and meets the limit again sooner (each meeting costs 429s).
_PROBE_SHARE = 0.01
_MIN_PROBE = 0.2
#: Once the 429s are long gone: 2.5 % of --rps per second (at least 0.5/s), so back at the
#: cap within 40 s (without --rps, 2.5 % of the rate). Faster wins rate back sooner and
#: overshoots a limit still there harder.
_RECOVER_SHARE = 0.025
_MIN_RECOVER = 0.5
#: The rate never falls below 2 % of --rps, nor 0.1/s: a streak of 429s cannot stall the
#: run. A lower floor follows a tiny limit better; a higher one keeps hitting it.
_FLOOR_SHARE = 0.02
_MIN_RATE = 0.1
#: Unpaced (no --rps, no 429 yet): the first pool, and the most it grows to by one a
#: second. A larger start reaches full speed sooner and hits a small server harder before
#: its first 429.
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
#: The answers the noise floor is held against, and what a cut reads as accepted lately:
#: the last two seconds' (more answers, a steadier share and rate; both react a little
#: later to a change).
_KEEP = 2.0


class Adaptive:
    """Owns the pool size and the pace; the sender reports each answer to it."""

    __slots__ = (
        "_floor",
        "_last_cut",
        "_last_grow",
        "_last_signal",
        "_limiter",
        "_log",
        "_log_refused",
        "_pacer",
        "_probe",
        "_recent",
        "_recent_429",
        "_refused_since_cut",
        "_seen_since_cut",
        "_trial",
        "_undo",
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
        # _last_signal: the last 429 that the rate was to blame for (not the noise floor's)
        self._last_cut = self._last_signal = self._last_grow = -math.inf
        self._recent = self._recent_429 = 0.0
        # (answered, sent, a 429?) for the last _KEEP s of answers
        self._log: deque[tuple[float, float, bool]] = deque()
        self._log_refused = 0
        self._probe = _MIN_PROBE  # rate step per second near a limit; set by each cut
        self._seen_since_cut = self._refused_since_cut = 0  # answers to requests sent since
        self._trial: Trial | None = None
        # The rate before a run of cuts judged unclear (a list: None is a rate, unpaced): where a
        # futile cut after them goes back to.
        self._undo: list[float | None] = []
        self._floor = NoiseFloor()

    @property
    def limiter(self) -> Slots:
        return self._limiter

    @property
    def share_429(self) -> float:
        """Share of recent answers that were 429s of either kind (decays over ~10 s)."""
        return self._recent_429 / self._recent if self._recent else 0.0

    @property
    def noise_floor(self) -> float:
        """The share of 429s that cutting the rate did not lower (0: none found)."""
        return self._floor.share

    def answered(
        self, latency: float, rate_limited: bool, now: float, *, busy: bool = False
    ) -> None:
        """An answer after ``latency`` s: ``rate_limited`` a 429 saying "too fast", ``busy``
        one saying the server is out of capacity (it moves nothing but the share shown)."""
        self._recent += 1
        self._recent_429 += rate_limited or busy
        sent = now - latency
        self._note(now, sent, rate_limited)
        if sent >= self._last_cut:
            self._seen_since_cut += 1
            self._refused_since_cut += rate_limited
        if self._trial is not None:
            self._trial.record(sent, rate_limited)
            self._judge(now)
        if rate_limited:
            self._refused(now)
        else:
            self.latency += _LATENCY_ALPHA * (latency - self.latency)

    def _note(self, now: float, sent: float, refused: bool) -> None:
        log = self._log
        log.append((now, sent, refused))
        self._log_refused += refused
        while log[0][0] < now - _KEEP:
            self._log_refused -= log.popleft()[2]

    def _refused(self, now: float) -> None:
        if self._trial is not None or now - self._last_cut < max(_SPAN, self.latency):
            # The same burst, or a cut not yet judged: cut again only if most answers to
            # requests sent since the cut are still 429s (the limit is far lower).
            if self._still_refused():
                self._last_signal = now
                self._urgent_cut(now)
            return
        if self._floor.explains(len(self._log), self._log_refused):
            return  # no more 429s than when cutting was found not to help
        self._last_signal = now
        # What the server does at the rate now: answers to requests sent once the last cut
        # had settled (before, the rate was another, or a bucket spent what it had saved).
        seen, refused, span = self._window(now, _KEEP, since=self._last_cut + SETTLE)
        if not seen:
            seen, refused, span = self._window(now, _KEEP, since=self._last_cut)
        offered = self.rate if self.rate is not None else seen / span
        target = self._cut_rate(offered, (seen - refused) / span, span)
        if seen < _URGENT_MIN:
            target = max(target, offered * _DEEPEST_BLIND_CUT)
        self._trial = Trial(self._before(), offered, refused / seen, seen, target, now)
        self._cut_to(target, now)

    def _before(self) -> float | None:
        """The rate a futile cut from here goes back to."""
        return self._undo[0] if self._undo else self.rate

    def _still_refused(self) -> bool:
        seen = self._seen_since_cut
        return seen >= _URGENT_MIN and self._refused_since_cut >= seen * _URGENT_SHARE

    def _urgent_cut(self, now: float) -> None:
        """Down to what the server accepted since the cut (at least what it accepted in the
        last second): the last cut was far too shallow."""
        seen, refused = self._seen_since_cut, self._refused_since_cut
        offered = self.rate if self.rate is not None else seen / max(now - self._last_cut, 1e-3)
        in_window, refused_in_window, _ = self._window(now, _SPAN)
        accepted = in_window - refused_in_window
        target = max(offered * (1.0 - refused / seen), accepted * _ACCEPTED_SHARE)
        if target >= offered * _GENTLE_CUT:
            return
        if self._trial is None:
            self._trial = Trial(self._before(), offered, refused / seen, seen, target, now)
        else:
            self._trial.recut(offered, refused / seen, seen, target, now)
        self._cut_to(target, now)

    def _cut_rate(self, offered: float, accepted: float, span: float) -> float:
        """Just under the rate the server accepted over ``span``, when that says anything;
        else a plain cut."""
        if span < _MIN_SPAN or not accepted:  # none at all says nothing of the limit
            return offered * _CUT
        return min(offered * _GENTLE_CUT, accepted * _ACCEPTED_SHARE)

    def _cut_to(self, rate: float, now: float) -> None:
        self._last_cut = now
        self._seen_since_cut = self._refused_since_cut = 0
        self._set_rate(rate)
        self._probe = max(_MIN_PROBE, self.rate * _PROBE_SHARE) if self.rate else _MIN_PROBE

    def _judge(self, now: float) -> None:
        """Close the trial once it has a verdict; a futile cut is undone (and the shallow
        ones just before it)."""
        assert self._trial is not None
        verdict = self._trial.verdict(now)
        if verdict is None:
            return
        trial, self._trial = self._trial, None
        self._undo = [trial.before] if verdict == "unclear" else []
        if verdict != "futile":
            return
        self._floor.raise_to(trial.pooled)
        self._last_signal = -math.inf  # no limit was found: grow back at the recovery pace
        if trial.before is None:
            self.rate = None
            self._pacer.set_rate(None)
        else:
            self._set_rate(max(trial.before, self.rate or 0.0))

    def _set_rate(self, rate: float) -> None:
        least = _MIN_RATE if self.cap is None else max(self.cap * _FLOOR_SHARE, _MIN_RATE)
        self.rate = max(rate, least)
        self._pacer.set_rate(self.rate)

    def _window(self, now: float, span: float, since: float = -math.inf) -> tuple[int, int, float]:
        """(answers, 429s among them, the seconds they came in) over the last ``span``
        seconds, of requests sent at ``since`` or later."""
        seen = refused = 0
        first = now
        for answered, sent, was_refused in reversed(self._log):
            if answered < now - span or sent < since:
                break
            seen += 1
            refused += was_refused
            first = answered
        return seen, refused, max(now - first, 1e-3)

    def tick(self, now: float) -> None:
        """Called about every second: judge a cut, grow back while no 429 is the rate's
        doing, resize the pool."""
        self._recent *= _SHARE_DECAY
        self._recent_429 *= _SHARE_DECAY
        seen, refused, _ = self._window(now, _KEEP)
        self._floor.follow(seen, refused)
        if self._trial is not None:
            self._judge(now)
        if self._trial is None and min(now - self._last_signal, now - self._last_grow) >= _SPAN:
            self._last_grow = now
            self._grow(now)
        if self.auto_pool and self.rate is not None:
            self._resize(self._sized_pool())

    def _grow(self, now: float) -> None:
        rate, cap = self.rate, self.cap
        if rate is not None and (cap is None or rate < cap):
            self.rate = min(cap or math.inf, rate + self._step(now))
            self._pacer.set_rate(self.rate)
        elif rate is None and self.auto_pool and self.pool < _UNCAPPED_MAX:
            self._resize(self.pool + 1)

    def _step(self, now: float) -> float:
        """Probe gently near a limit found lately; come back quickly once it is long gone."""
        assert self.rate is not None
        if now - self._last_signal < _NEAR_LIMIT_FOR:
            return self._probe
        return max(_MIN_RECOVER, (self.cap or self.rate) * _RECOVER_SHARE)

    def _sized_pool(self) -> int:
        if self.rate is None:
            return _UNCAPPED_START
        # +2, and never under 2: one slow answer must not hold up the sends behind it.
        return max(2, min(MAX_POOL, math.ceil(self.rate * self.latency * _HEADROOM) + 2))

    def _resize(self, pool: int) -> None:
        if pool != self.pool:
            self.pool = pool
            self._limiter.total_tokens = pool
