"""The adaptive rate and pool, answer by answer, without a server or a loop: what a 429 cuts
and by how much, what a capacity 429 leaves alone, how a futile cut is found and undone, how
the rate grows back, and how the pool follows. (In a closed loop with simulated servers:
test_adaptive_loop.py.)"""

from __future__ import annotations

import asyncio
from itertools import pairwise

import anyio
import pytest
from virtual_clock import run_virtual

from batchrunner.limits.adaptive import Adaptive
from batchrunner.limits.gates import Gates
from batchrunner.limits.pacing import RatePacer
from batchrunner.limits.trial import NoiseFloor, Trial
from batchrunner.vocabulary import Failure, Success

LATENCY = 0.05


class RecordingPacer(RatePacer):
    """A pacer that only records the rates it is told."""

    def __init__(self, rps: float | None) -> None:
        super().__init__(rps)
        self.rates: list[float | None] = []

    def set_rate(self, rps: float | None) -> None:
        self.rates.append(rps)


def feed(ad: Adaptive, rate: float, start: float, seconds: float, every: int = 0) -> float:
    """Answers at ``rate`` a second from ``start`` for ``seconds``, every ``every``-th one a
    429 saying "rate limited" (0: none); ticks each whole second. The time after it."""
    n = round(rate * seconds)
    for k in range(n):
        now = start + k / rate
        if int(now) != int(now - 1 / rate):
            ad.tick(now)
        ad.answered(LATENCY, bool(every) and k % every == every - 1, now)
    return start + n / rate


def follow(ad: Adaptive, limit: int, start: float, seconds: float) -> list[float]:
    """Answers at the adaptive rate from ``start`` for ``seconds``, from a server that
    accepts ``limit`` in each whole second; ticks each whole second. The rates seen."""
    now, accepted, rates = start, 0, []
    while now < start + seconds:
        assert ad.rate is not None
        rates.append(ad.rate)
        step = 1 / ad.rate
        if int(now) != int(now - step):
            ad.tick(now)
            accepted = 0
        ad.answered(LATENCY, accepted >= limit, now)
        accepted += 1
        now += step
    return rates


# -- cuts --------------------------------------------------------------------------------


def test_a_429_cuts_to_just_under_what_the_server_accepted() -> None:
    """A limit far below --rps is found in one step: after a 429 the rate goes to 98 % of
    the answers the server accepted over the last two seconds."""
    pacer = RecordingPacer(100)
    ad = Adaptive(100, None, pacer)
    now = feed(ad, 30, start=1.0, seconds=3.0)  # 30 accepted a second
    ad.answered(LATENCY, True, now)
    assert ad.rate == pytest.approx(30 * 0.98, rel=0.02)
    assert pacer.rates == [ad.rate]


def test_a_burst_of_429s_cuts_once_and_a_later_one_again() -> None:
    pacer = RecordingPacer(100)
    ad = Adaptive(100, None, pacer)
    ad.answered(LATENCY, True, now=10.0)  # nothing known yet: a plain cut
    first = ad.rate
    assert first == pytest.approx(85)
    for now in (10.1, 10.4, 10.9):  # the same burst, to requests sent before the cut
        ad.answered(0.5, True, now=now)
    assert ad.rate == first and pacer.rates == [first]
    now = feed(ad, 80, start=11.0, seconds=2.0)  # no 429 since: the cut helped
    ad.answered(LATENCY, True, now)  # a new burst: cut again
    assert ad.rate is not None and ad.rate < first
    rates = [r for r in [100.0, *pacer.rates] if r is not None]
    cuts = [b for a, b in pairwise(rates) if b < a]
    assert cuts == [first, ad.rate]


def test_most_answers_after_a_cut_still_429s_cut_deeper_at_once() -> None:
    """A limit far lower than the first cut: the next answers, to requests sent after the
    cut, say so, and the rate goes to what the server accepted since, without waiting for
    the next round trip."""
    ad = Adaptive(100, None, RecordingPacer(100))
    now = feed(ad, 100, start=1.0, seconds=0.2)  # 20 accepted, then the server refuses
    ad.answered(LATENCY, True, now)
    first = ad.rate
    assert first == pytest.approx(85)  # too early to read a rate: a plain cut
    for k in range(1, 21):  # nineteen 429s in twenty answers
        ad.answered(LATENCY, k != 5, now + 0.06 + k / 200)
    assert ad.rate == pytest.approx(21 * 0.98)  # what it accepted in the last second


def test_a_capacity_429_cuts_nothing() -> None:
    pacer = RecordingPacer(100)
    ad = Adaptive(100, None, pacer)
    for k in range(200):  # every fourth answer says the server is out of capacity
        ad.answered(LATENCY, False, 1.0 + k / 100, busy=k % 4 == 0)
    assert ad.rate == 100 and pacer.rates == []
    assert ad.share_429 == pytest.approx(0.25)  # but the progress display shows them


def test_the_share_shown_counts_both_kinds_of_429() -> None:
    ad = Adaptive(10, None, RecordingPacer(10))
    assert ad.share_429 == 0.0
    for k in range(4):
        ad.answered(0.1, rate_limited=k == 0, now=1.0, busy=k == 1)
    assert ad.share_429 == pytest.approx(0.5)


# -- futile cuts -----------------------------------------------------------------------------


def test_a_cut_that_does_not_lower_the_share_of_429s_is_undone() -> None:
    """One answer in five is a 429 whatever the rate (random 429s with a "rate limited"
    body): the cut is put on trial, found futile and undone, and the share becomes the
    floor: 429s up to it cut nothing any more."""
    pacer = RecordingPacer(100)
    ad = Adaptive(100, None, pacer)
    now = feed(ad, 100, start=1.0, seconds=2.0, every=5)
    assert ad.rate == 100 and pacer.rates[0] < 100  # cut, then undone
    assert ad.noise_floor == pytest.approx(0.2, abs=0.06)
    before = len(pacer.rates)
    now = feed(ad, 100, start=now, seconds=20.0, every=5)
    assert ad.rate == 100 and len(pacer.rates) == before  # no more cuts
    # More 429s than the floor explains: the rate is to blame again, and is cut.
    feed(ad, 100, start=now, seconds=1.0, every=2)
    assert ad.rate is not None and ad.rate < 100


def test_a_cut_that_stops_the_429s_is_kept() -> None:
    pacer = RecordingPacer(100)
    ad = Adaptive(100, None, pacer)
    now = feed(ad, 100, start=1.0, seconds=2.0)
    ad.answered(LATENCY, True, now)
    cut = ad.rate
    assert cut is not None and cut < 100
    feed(ad, cut, start=now + 0.01, seconds=5.0)  # the 429s stopped
    assert ad.noise_floor == 0.0
    assert ad.rate is not None and cut <= ad.rate < 100  # kept; growing back from there


def test_trial_verdicts() -> None:
    def judged(share: float, counted: int, after: float, seen: int, refused: int) -> str | None:
        trial = Trial(100.0, 100.0, share, counted, after, at=0.0)
        for k in range(seen):
            trial.record(sent=2.0, refused=k < refused)
        return trial.verdict(now=3.0)

    assert judged(0.2, 100, 78.0, seen=40, refused=8) == "futile"  # the same share
    assert judged(0.2, 100, 78.0, seen=40, refused=0) == "helped"  # none: a limit
    assert judged(0.6, 100, 39.0, seen=40, refused=1) == "helped"
    assert judged(0.6, 100, 60.0, seen=40, refused=13) == "helped"  # fewer, as a limit's
    # A limit lower than the answers before the cut showed: more 429s, not the same share.
    assert judged(0.02, 100, 97.0, seen=150, refused=30) == "unclear"
    assert judged(0.4, 100, 60.0, seen=100, refused=20) == "unclear"  # fewer, not as a limit
    assert judged(0.2, 100, 78.0, seen=10, refused=2) is None  # too few answers yet
    early = Trial(100.0, 100.0, 0.2, 100, 78.0, at=0.0)
    early.record(sent=0.5, refused=True)  # sent before the cut settled: not evidence
    assert early.seen == 0


def test_the_noise_floor_sinks_as_the_429s_thin_out() -> None:
    floor = NoiseFloor()
    assert not floor.explains(100, 1)  # none found: every 429 is the rate's
    floor.raise_to(0.2)
    assert floor.explains(200, 40) and floor.explains(200, 50)
    assert not floor.explains(200, 100)
    for _ in range(30):
        floor.follow(200, 4)  # 2 % now
    assert floor.share < 0.03
    assert not floor.explains(200, 40)


# -- growth ------------------------------------------------------------------------------------


def test_rate_grows_back_additively_up_to_the_cap() -> None:
    pacer = RecordingPacer(40)
    ad = Adaptive(40, None, pacer)
    now = feed(ad, 40, start=1.0, seconds=3.0)
    ad.answered(LATENCY, True, now)
    low = ad.rate
    assert low is not None and low < 40
    now = feed(ad, low, start=now + 0.01, seconds=4.0)  # the trial: the cut helped
    rates = [ad.rate]
    while len(rates) < 200 and rates[-1] != 40:
        now += 1.0
        ad.tick(now)
        rates.append(ad.rate)
    grown = [r for r in rates if r is not None]
    steps = [b - a for a, b in pairwise(grown[:-1])]  # the last step may be short
    assert steps and all(0 < s <= 0.025 * 40 + 1e-9 for s in steps)
    # Additive: a constant step near the limit just found (1 % of the rate it was cut to),
    # then a constant, larger step (2.5 % of the cap) once the 429s are long gone.
    assert len({round(s, 9) for s in steps}) <= 2
    assert steps[0] == pytest.approx(max(0.2, low * 0.01))
    assert grown[-1] == 40  # reached the cap ...
    for _ in range(5):
        now += 1.0
        ad.tick(now)
    assert ad.rate == 40 and max(r for r in pacer.rates if r is not None) == 40  # ... stays


def test_no_growth_while_429s_keep_coming() -> None:
    ad = Adaptive(50, None, RecordingPacer(50))
    rates = follow(ad, limit=20, start=1.0, seconds=20.0)
    assert max(rates[len(rates) // 4 :]) <= 20.5  # found, and never left
    assert ad.noise_floor == 0.0


# -- the pool ------------------------------------------------------------------------------


def settle_latency(ad: Adaptive, latency: float, now: float) -> None:
    for _ in range(60):
        ad.answered(latency, False, now=now)
    assert ad.latency == pytest.approx(latency, rel=0.01)


def test_auto_pool_follows_rate_times_latency() -> None:
    ad = Adaptive(50, None, RecordingPacer(50))
    settle_latency(ad, 0.4, now=1.0)
    ad.tick(1.0)
    short = ad.pool
    assert 50 * 0.4 <= short <= 2 * 50 * 0.4 + 4  # Little's law with some headroom
    assert ad.limiter.total_tokens == short
    settle_latency(ad, 1.6, now=2.0)
    ad.tick(2.0)
    long = ad.pool
    assert 50 * 1.6 <= long <= 2 * 50 * 1.6 + 4
    assert long > 3 * short - 8  # four times the latency: about four times the pool
    assert ad.limiter.total_tokens == long
    ad.answered(1.6, True, now=3.0)  # a cut rate needs fewer in flight
    ad.tick(3.5)
    assert ad.rate is not None and ad.rate < 50
    assert ad.rate * 1.6 <= ad.pool < long
    assert ad.limiter.total_tokens == ad.pool


def test_given_concurrency_fixes_the_pool() -> None:
    ad = Adaptive(50, 7, RecordingPacer(50))
    assert ad.pool == 7 and ad.limiter.total_tokens == 7
    settle_latency(ad, 2.0, now=1.0)
    ad.answered(2.0, True, now=2.0)
    assert ad.rate is not None and ad.rate < 50  # the rate still follows the server
    for k in range(5):
        ad.tick(3.0 + k)
    assert ad.pool == 7 and ad.limiter.total_tokens == 7


def test_without_a_rate_cap_the_pool_grows_until_a_rate_limit_429() -> None:
    pacer = RecordingPacer(None)
    ad = Adaptive(None, None, pacer)
    start = ad.pool
    assert start >= 2 and ad.limiter.total_tokens == start
    for k in range(3):
        ad.tick(1.0 + k)
    assert ad.pool == start + 3 and ad.rate is None  # unpaced, one more a second
    for k in range(2000):
        ad.tick(10.0 + k)
    assert start < ad.pool == ad.limiter.total_tokens < 1000  # grows, but not without end
    assert pacer.rates == []


def test_without_a_rate_cap_a_rate_limit_429_starts_pacing_from_what_was_accepted() -> None:
    """Before: the 429s only cut the pool, and half of all requests were 429s."""
    pacer = RecordingPacer(None)
    ad = Adaptive(None, None, pacer)
    now = feed(ad, 40, start=1.0, seconds=3.0)  # the server accepts 40 a second
    ad.answered(LATENCY, True, now)
    assert ad.rate == pytest.approx(40 * 0.98, rel=0.02)
    assert pacer.rates == [ad.rate]
    ad.tick(now + 0.5)
    assert ad.pool < 40  # sized to the rate now: 40/s x 50 ms
    now = feed(ad, ad.rate, start=now + 0.01, seconds=20.0)
    assert ad.rate is not None and ad.rate > 40  # and grows, with no cap


def test_without_a_rate_cap_a_futile_cut_goes_back_to_unpaced() -> None:
    pacer = RecordingPacer(None)
    ad = Adaptive(None, None, pacer)
    feed(ad, 200, start=1.0, seconds=3.0, every=5)
    assert ad.rate is None and pacer.rates[-1] is None and pacer.rates[0] is not None


def test_without_a_rate_cap_a_given_concurrency_stays() -> None:
    ad = Adaptive(None, 5, RecordingPacer(None))
    ad.answered(0.1, True, now=10.0)
    ad.tick(12.0)
    assert ad.pool == 5 and ad.limiter.total_tokens == 5


# -- through the gates ---------------------------------------------------------------------


def test_the_gates_tell_a_capacity_429_from_a_rate_limit() -> None:
    async def main() -> tuple[float | None, float | None]:
        gates = Gates.build(100, None, None)
        busy = Failure(type="capacity_exceeded", status_code=429, message="full")
        limited = Failure(type="rate_limited", status_code=429, message="slow down")
        ok = Success({}, 1, 1)
        now = asyncio.get_running_loop().time()
        for k in range(100):
            held = await gates.enter(0)
            gates.leave(held, busy if k % 3 == 0 else ok, LATENCY, now + 1 + k / 100)
        after_busy = gates.rate
        held = await gates.enter(0)
        gates.leave(held, limited, LATENCY, now + 2.5)
        return after_busy, gates.rate

    after_busy, after_limited = run_virtual(main)
    assert after_busy == 100
    assert after_limited is not None and after_limited < 100


def test_an_unpaced_run_takes_its_turn_once_the_pace_starts() -> None:
    async def main() -> None:
        gates = Gates.build(None, None, None)
        gates.enter_nowait()  # unpaced: a free slot passes at once
        now = asyncio.get_running_loop().time()
        for k in range(60):
            gates.leave(None, Success({}, 1, 1), LATENCY, now + k / 40)
            gates.enter_nowait()
        gates.leave(None, Failure(type="rate_limited", status_code=429, message=""), 0, now + 2)
        assert gates.rate is not None
        with pytest.raises(anyio.WouldBlock):
            gates.enter_nowait()  # paced now: every request waits its turn

    run_virtual(main)
