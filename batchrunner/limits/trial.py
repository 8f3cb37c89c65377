"""Does cutting the rate help? Telling the 429s our rate causes from those it does not.

A rate limit refuses what passes it: send less than it accepts and its 429s stop. 429s that
come at random (a server short of capacity, whatever its body says) keep their share
whatever the rate, and cutting only loses rate. So each cut is put on trial: once answers
to requests sent after it are in (a second after it, when a window the limit counted
before the cut has passed), their share of 429s is set against what each explanation
predicts — a limit that goes on accepting what it accepted before the cut (the share
falls to ``1 - accepted / new rate``, often to none), or 429s that do not care (the share
stays). Near the first, the cut helped; the same as before, give or take chance, it was
futile. Anything else keeps the cut but proves nothing: a share that rose is no random 429s
at one share, as far as this trial can tell — the limit is lower than the answers before the
cut showed (a bucket spending what it had saved), or the share before was read from too few
answers — and a share that fell, but not as a limit's would, may be either. The next cut
says which; if it finds the 429s random, it and the ones before it are undone.

A futile cut is undone, and the share of 429s it found becomes the noise floor: as long as
429s come at no more than that share, they cut nothing. The floor sinks as they thin out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["SETTLE", "NoiseFloor", "Trial", "Verdict"]

#: What a trial found: the cut ``helped`` (the 429s fell as a limit's would), was ``futile``
#: (they kept their share), or is ``unclear`` (anything else: kept, and tried again).
Verdict = Literal["helped", "futile", "unclear"]

# Each constant trades a quick verdict against a sure one.

#: Answers to requests sent this long after a cut are its evidence: one window of the
#: server's limit, which may still hold the sends from before the cut. Shorter judges on
#: answers a fixed window refuses whatever the new rate; longer keeps a futile cut longer.
SETTLE = 1.0
#: At least this many answers, and enough to expect this many 429s at the share before the
#: cut if the cut changed nothing. More answers give a surer verdict, later.
_JUDGE_MIN = 40
_JUDGE_EXPECT = 3.0
#: A cut read from fewer answers before it than this is blind (the first answers of a run):
#: the answers while it settles stand in for them, and a limit is what makes the share
#: fall from there. More waits longer for a share worth comparing with.
_BLIND = 10
#: The cut helped if the share after it is within this part of the way from what a limit
#: predicts to the share before. Wider takes more chance lulls in random 429s for a limit.
_HELPED = 1 / 3
#: Standard deviations the share after a cut may stray from the share before and still be
#: "the same". Wider takes more limits that a cut did not reach for random 429s.
_SAME_SIGMAS = 1.5
#: A verdict on what is there after this long, however few the answers: a slow run must
#: not keep a cut (and its pause in growth) on trial for ever.
_TRIAL_MAX = 3.0
#: 429s within the floor's share plus this margin, and this many standard deviations of
#: the share over the answers counted, are the floor's. Wider lets a real limit found on
#: top of random 429s pass unheeded longer; narrower takes chance bunches for a limit.
_MARGIN = 0.03
_SIGMAS = 2.5
#: Per tick (about a second), the floor's view of the share follows the last answers by
#: this much; the floor sinks to it, never rises by it (only a futile cut raises it).
_FOLLOW = 0.2


@dataclass(slots=True)
class Trial:
    """One cut on trial: from ``offered`` requests a second with ``share`` of ``counted``
    answers 429s, down to ``after``, at ``at``. ``before`` is the rate to go back to if it
    was futile (``None``: unpaced)."""

    before: float | None
    offered: float
    share: float
    counted: int
    after: float
    at: float
    seen: int = 0  # answers to requests sent once the cut settled ...
    refused: int = 0  # ... and the 429s among them
    settling: int = 0  # answers to requests sent while it settled ...
    settling_refused: int = 0  # ... and the 429s among them

    def record(self, sent: float, refused: bool) -> None:
        """An answer to a request sent at ``sent``: evidence once the cut has settled."""
        if sent >= self.at + SETTLE:
            self.seen += 1
            self.refused += refused
        elif sent >= self.at:
            self.settling += 1
            self.settling_refused += refused

    def recut(self, offered: float, share: float, counted: int, after: float, now: float) -> None:
        """A deeper cut before the verdict: judge that one, from where it started."""
        self.offered, self.share, self.counted = offered, share, counted
        self.after, self.at = after, now
        self.seen = self.refused = self.settling = self.settling_refused = 0

    def verdict(self, now: float) -> Verdict | None:
        """What the answers since the cut say of it; ``None``: too early to say."""
        before, counted, limit_says = self._baseline()
        needed = max(_JUDGE_MIN, _JUDGE_EXPECT / max(before, 1e-3))
        if self.seen < needed and now - self.at < _TRIAL_MAX + SETTLE:
            return None
        if not self.seen:
            return "helped"
        share = self.refused / self.seen
        if share <= limit_says + _HELPED * (before - limit_says):
            return "helped"
        pooled = self.pooled
        spread = math.sqrt(pooled * (1.0 - pooled) * (1 / self.seen + 1 / counted))
        return "futile" if abs(share - before) <= _SAME_SIGMAS * spread else "unclear"

    def _baseline(self) -> tuple[float, int, float]:
        """(share of 429s before, answers it was read from, the share a limit predicts
        after the cut). A blind cut's "before" is the answers while it settled, and a limit
        is what makes the share fall from there."""
        if self.counted < _BLIND <= self.settling:
            return self.settling_refused / self.settling, self.settling, 0.0
        accepted = self.offered * (1.0 - self.share)
        return self.share, max(self.counted, 1), max(0.0, 1.0 - accepted / self.after)

    @property
    def pooled(self) -> float:
        """The share of 429s before and after the cut together: if the cut changed nothing,
        the best reading of it."""
        before, counted, _ = self._baseline()
        return (self.refused + before * counted) / (self.seen + counted)


class NoiseFloor:
    """The share of 429s that cutting the rate was found not to lower."""

    __slots__ = ("_level", "share")

    def __init__(self) -> None:
        self.share = self._level = 0.0

    def explains(self, seen: int, refused: int) -> bool:
        """Whether ``refused`` 429s among ``seen`` answers are within the floor."""
        if not self.share or not seen:
            return False
        spread = math.sqrt(self.share * (1.0 - self.share) / seen)
        return refused / seen <= self.share + _MARGIN + _SIGMAS * spread

    def raise_to(self, share: float) -> None:
        """A futile cut found ``share`` 429s at the lower rate."""
        self.share = self._level = max(self.share, share)

    def follow(self, seen: int, refused: int) -> None:
        """About every second, with the last answers: the floor sinks as 429s thin out."""
        if self.share and seen >= _JUDGE_MIN:
            self._level += _FOLLOW * (refused / seen - self._level)
            self.share = min(self.share, self._level)
