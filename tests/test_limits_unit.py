"""The limits, without a server: the token budget (on a virtual clock), the reorder buffer,
the adaptive rate and pool, and the spending budget."""

from __future__ import annotations

import asyncio
import bisect
from itertools import pairwise
from typing import TypeVar

import pytest
from aiolimiter import AsyncLimiter
from hypothesis import given
from hypothesis import strategies as st
from virtual_clock import run_virtual

from batchrunner.ledger.ordered import OrderedWriter
from batchrunner.limits.adaptive import Adaptive
from batchrunner.limits.pacing import RatePacer
from batchrunner.limits.pricing import price_table
from batchrunner.limits.spending import Spending
from batchrunner.limits.tpm import Reservation, TokenBudget

T = TypeVar("T")

# -- TokenBudget ------------------------------------------------------------------------

SIMULATED = 180.0  # three minutes: the first one included
WINDOW = 60.0

#: (virtual time relative to the start, tokens really used) of every admitted request
Admissions = list[tuple[float, int]]


async def drive_budget(
    tpm: int, used: int, estimate: int, workers: int, latency: float = 0.5
) -> Admissions:
    """``workers`` tasks send requests back to back for :data:`SIMULATED` virtual seconds:
    each reserves ``estimate``, is "sent" when ``reserve`` returns, and settles ``used``
    after ``latency``."""
    loop = asyncio.get_running_loop()
    budget = TokenBudget(tpm)
    t0 = loop.time()
    admitted: Admissions = []

    async def worker() -> None:
        while True:
            reserved = await budget.reserve(estimate)
            assert reserved.tokens == estimate
            t = loop.time() - t0
            if t >= SIMULATED:
                return
            admitted.append((t, used))
            await asyncio.sleep(latency)
            budget.settle(reserved, used)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return sorted(admitted)


def max_in_window(admitted: Admissions, width: float = WINDOW) -> int:
    """Most tokens in any closed window [t, t + width]; the busiest starts at an admission."""
    times = [t for t, _ in admitted]
    prefix = [0]
    for _, tokens in admitted:
        prefix.append(prefix[-1] + tokens)
    return max(
        (prefix[bisect.bisect_right(times, t + width)] - prefix[i] for i, t in enumerate(times)),
        default=0,
    )


def tokens_until(admitted: Admissions, end: float) -> int:
    return sum(tokens for t, tokens in admitted if t <= end)


def test_window_check_catches_a_start_up_burst() -> None:
    """The check below can fail: a bare ``AsyncLimiter(tpm, 60)`` lets a whole minute's
    budget through at once, then keeps leaking, so its first minute holds ~2 x tpm."""
    tpm = 6000

    async def main() -> Admissions:
        loop = asyncio.get_running_loop()
        limiter = AsyncLimiter(tpm, WINDOW)
        t0 = loop.time()
        admitted: Admissions = []
        while (t := loop.time() - t0) < 2 * WINDOW:
            await limiter.acquire(50)
            admitted.append((loop.time() - t0, 50))
        assert t >= 2 * WINDOW
        return admitted

    admitted = run_virtual(main)
    assert tokens_until(admitted, 1.0) >= tpm - 50
    assert max_in_window(admitted) > 1.9 * tpm


@pytest.mark.parametrize(
    ("tpm", "size", "workers"),
    [
        (60_000, 50, 20),  # many small requests
        (6_000, 120, 8),  # each request exactly the burst share (tpm / 50)
        (12_000, 30, 64),  # far more workers than the rate needs
        (20_000, 1_000, 16),  # requests much bigger than the burst share
        (6_000, 360, 10),
        (6_000, 360, 1),
    ],
)
def test_no_60s_window_admits_more_than_tpm(tpm: int, size: int, workers: int) -> None:
    admitted = run_virtual(lambda: drive_budget(tpm, size, size, workers))
    assert max_in_window(admitted) <= tpm
    assert tokens_until(admitted, WINDOW) <= tpm  # the first minute: no start-up burst
    # The first second holds the small burst share and one second's leak, not a minute's.
    assert tokens_until(admitted, 1.0) <= tpm / 50 + tpm / 60 + size
    # ... and the budget is used: long-run usage at least 95% of tpm.
    total = sum(tokens for _, tokens in admitted)
    assert total >= 0.95 * tpm * SIMULATED / WINDOW


def test_overestimates_are_credited_back() -> None:
    """Reserving twice what is used: the credit goes to later reservations, so the real
    usage still reaches the budget (without it, only half would be used)."""
    tpm, used = 60_000, 25
    admitted = run_virtual(lambda: drive_budget(tpm, used, 2 * used, workers=60))
    total = sum(tokens for _, tokens in admitted)
    assert total >= 0.95 * tpm * SIMULATED / WINDOW
    assert max_in_window(admitted) <= tpm


def test_underestimates_are_charged_to_later_reservations() -> None:
    """Reserving half of what is used: the debt is paid before the next sends, so the real
    usage stays at the budget (without it, it would be twice the budget). A window may
    hold at most what the requests in flight under-reserved."""
    tpm, used, workers = 60_000, 50, 30
    admitted = run_virtual(lambda: drive_budget(tpm, used, used // 2, workers))
    total = sum(tokens for _, tokens in admitted)
    in_flight_debt = workers * (used - used // 2)
    assert max_in_window(admitted) <= tpm + in_flight_debt
    assert total <= tpm * SIMULATED / WINDOW + in_flight_debt
    assert total >= 0.95 * tpm * SIMULATED / WINDOW


async def _waited(budget: TokenBudget, tokens: int) -> tuple[float, Reservation]:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    reservation = await budget.reserve(tokens)
    assert reservation.tokens == tokens
    return loop.time() - t0, reservation


def test_settle_carries_credit_and_debt_to_the_next_reservation() -> None:
    tpm = 6_000  # burst share 120 tokens, then 98 tokens per second

    async def main() -> list[float]:
        budget = TokenBudget(tpm)
        waits = []
        wait, r = await _waited(budget, 120)  # the burst share: at once
        waits.append(wait)
        budget.settle(r, 0)  # a failed attempt used nothing: all of it back
        wait, r = await _waited(budget, 120)  # paid by the credit: at once
        waits.append(wait)
        budget.settle(r, 120)
        wait, r = await _waited(budget, 120)  # nothing carried: 120 / 98 s
        waits.append(wait)
        budget.settle(r, 60)  # used half: 60 credited
        wait, r = await _waited(budget, 120)  # only 60 to wait for: 60 / 98 s
        waits.append(wait)
        budget.settle(r, 120 + 980)  # used 980 more than reserved: a debt
        wait, _ = await _waited(budget, 1)  # 981 to wait for: ~10 s
        waits.append(wait)
        return waits

    at_once, credited, plain, half, debt = run_virtual(main)
    assert at_once < 0.01 and credited < 0.01
    assert 1.1 <= plain <= 1.35
    assert 0.5 <= half <= 0.7
    assert 9.5 <= debt <= 10.5


# -- OrderedWriter ---------------------------------------------------------------------------


class Recorder:
    """The writer's two callbacks, as one list of events."""

    def __init__(self) -> None:
        self.events: list[bytes | None] = []  # a written line, or None: one on_flushed call

    def write(self, line: bytes) -> None:
        self.events.append(line)

    def flushed(self) -> None:
        self.events.append(None)

    @property
    def written(self) -> list[bytes]:
        return [e for e in self.events if e is not None]

    @property
    def flushes(self) -> int:
        return sum(e is None for e in self.events)


def line(seq: int) -> bytes:
    return f"line {seq}\n".encode()


def test_take_numbers_in_admission_order() -> None:
    writer = OrderedWriter(Recorder().write, Recorder().flushed)
    assert [writer.take() for _ in range(4)] == [0, 1, 2, 3]


def test_out_of_order_puts_are_written_in_order() -> None:
    rec = Recorder()
    writer = OrderedWriter(rec.write, rec.flushed)
    for _ in range(4):
        writer.take()
    writer.put(2, line(2))
    writer.put(3, line(3))
    assert rec.events == [] and writer.buffered == 2  # held back behind 0 and 1
    writer.put(0, line(0))
    assert rec.events == [line(0), None]  # 0 leaves at once; 1 is still missing
    writer.put(1, line(1))
    assert rec.events == [line(0), None, line(1), None, line(2), None, line(3), None]
    assert writer.buffered == 0


def test_gaps_are_skipped_but_still_flushed() -> None:
    rec = Recorder()
    writer = OrderedWriter(rec.write, rec.flushed)
    for _ in range(3):
        writer.take()
    writer.put(1, None)  # dead-lettered or left pending: no result line
    writer.put(2, line(2))
    writer.put(0, line(0))
    assert rec.events == [line(0), None, None, line(2), None]


@given(st.data())
def test_any_put_order_writes_in_order_and_flushes_once_per_seq(data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 30))
    gaps = data.draw(st.sets(st.integers(0, max(n - 1, 0))))
    order = data.draw(st.permutations(range(n)))
    rec = Recorder()
    writer = OrderedWriter(rec.write, rec.flushed)
    assert [writer.take() for _ in range(n)] == list(range(n))
    put: set[int] = set()
    for seq in order:
        writer.put(seq, None if seq in gaps else line(seq))
        put.add(seq)
        head = next((s for s in range(n) if s not in put), n)  # everything below is out
        assert rec.written == [line(s) for s in range(head) if s not in gaps]
        assert rec.flushes == head
        assert writer.buffered == len(put) - head
    assert rec.written == [line(s) for s in range(n) if s not in gaps]
    assert rec.flushes == n


def test_flush_all_writes_what_is_buffered_in_order() -> None:
    rec = Recorder()
    writer = OrderedWriter(rec.write, rec.flushed)
    for _ in range(7):
        writer.take()
    writer.put(0, line(0))
    for seq, text in ((5, line(5)), (2, line(2)), (4, None), (3, line(3))):
        writer.put(seq, text)  # 1 never comes back (the run stopped)
    assert rec.written == [line(0)] and writer.buffered == 4
    writer.flush_all()
    assert rec.written == [line(0), line(2), line(3), line(5)]
    assert writer.buffered == 0
    writer.flush_all()  # nothing left: nothing written twice
    assert rec.written == [line(0), line(2), line(3), line(5)]


# -- Adaptive ----------------------------------------------------------------------------------


class RecordingPacer(RatePacer):
    """A pacer that only records the rates it is told."""

    def __init__(self, rps: float | None) -> None:
        super().__init__(rps)
        self.rates: list[float] = []

    def set_rate(self, rps: float) -> None:
        self.rates.append(rps)


def test_a_burst_of_429s_cuts_the_rate_once() -> None:
    pacer = RecordingPacer(100)
    ad = Adaptive(100, None, pacer)
    ad.answered(0.05, True, now=10.0)
    first = ad.rate
    assert first is not None and 0 < first < 100
    for now in (10.1, 10.4, 10.9):  # the same burst: within a second of the cut
        ad.answered(0.05, True, now=now)
    assert ad.rate == first
    assert pacer.rates == [first]
    ad.answered(0.05, True, now=11.05)  # a new burst: cut again, by the same factor
    assert ad.rate == pytest.approx(first * first / 100)
    assert pacer.rates == [first, ad.rate]


def test_rate_grows_back_additively_up_to_the_cap() -> None:
    pacer = RecordingPacer(40)
    ad = Adaptive(40, None, pacer)
    for k in range(4):  # four bursts, a second apart
        ad.answered(0.05, True, now=10.0 + 1.01 * k)
    low = ad.rate
    assert low is not None and low < 30
    ad.tick(13.5)  # within a second of the last 429: no growth
    assert ad.rate == low
    rates = [low]
    now = 14.1
    while len(rates) < 200 and rates[-1] < 40:
        ad.tick(now)
        assert ad.rate is not None
        rates.append(ad.rate)
        now += 1.0
    steps = [b - a for a, b in pairwise(rates[:-1])]  # the last step may be short
    assert steps and all(0 < s <= 0.025 * 40 + 1e-9 for s in steps)
    # Additive: a constant step near the limit just found (1 % of the rate it was cut to),
    # then a constant, larger step (2.5 % of the cap) once the 429s are long gone.
    assert len({round(s, 9) for s in steps}) <= 2
    assert steps[0] == pytest.approx(max(0.2, low * 0.01))
    assert rates[-1] == 40  # reached the cap ...
    for _ in range(5):
        ad.tick(now)
        now += 1.0
    assert ad.rate == 40  # ... and stays there
    assert pacer.rates[-1] == 40 and max(pacer.rates) == 40


def test_no_growth_while_429s_keep_coming() -> None:
    ad = Adaptive(50, None, RecordingPacer(50))
    ad.answered(0.05, True, now=10.0)
    cut = ad.rate
    for k in range(10):  # a 429 every 0.5 s, a tick every second
        ad.answered(0.05, True, now=10.5 + k)
        ad.tick(10.9 + k)
    assert ad.rate is not None and cut is not None and ad.rate < cut


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


def test_without_a_rate_cap_the_pool_is_cut_and_grown() -> None:
    pacer = RecordingPacer(None)
    ad = Adaptive(None, None, pacer)
    start = ad.pool
    assert start >= 2 and ad.limiter.total_tokens == start
    ad.answered(0.1, True, now=10.0)
    cut = ad.pool
    assert 1 <= cut < start
    ad.answered(0.1, True, now=10.5)  # the same burst
    assert ad.pool == cut
    sizes = []
    ad.tick(11.0)  # within a second of the last 429: no growth
    assert ad.pool == cut
    for k in range(3):
        ad.tick(11.5 + k)
        sizes.append(ad.pool)
    assert sizes == [cut + 1, cut + 2, cut + 3]  # additive growth, one per second
    assert ad.limiter.total_tokens == cut + 3
    for k in range(2000):
        ad.tick(20.0 + k)
    top = ad.pool
    ad.tick(3000.0)
    assert ad.pool == top > start  # grows, but not without end
    assert ad.rate is None and pacer.rates == []


def test_without_a_rate_cap_a_given_concurrency_stays() -> None:
    ad = Adaptive(None, 5, RecordingPacer(None))
    ad.answered(0.1, True, now=10.0)
    ad.tick(12.0)
    assert ad.pool == 5 and ad.limiter.total_tokens == 5


def test_rate_limited_share_counts_recent_answers() -> None:
    ad = Adaptive(10, None, RecordingPacer(10))
    assert ad.rate_limited_share == 0.0
    for k in range(4):
        ad.answered(0.1, rate_limited=k == 0, now=1.0)
    assert ad.rate_limited_share == pytest.approx(0.25)


# -- Spending ----------------------------------------------------------------------------------

MODEL = "mistral-small-latest"
#: USD 1 per prompt token and USD 2 per completion token: costs easy to add up.
PRICES = price_table({MODEL: {"input": 1_000_000, "output": 2_000_000}})


def test_unlimited_spending_admits_everything() -> None:
    spending = Spending(None, None, PRICES)
    assert not spending.limited
    assert all(spending.admit(MODEL, 10_000, 10_000) for _ in range(100))


def test_token_budget_admits_until_the_next_estimate_would_pass_it() -> None:
    spending = Spending(100, None, PRICES)
    assert spending.limited
    assert spending.admit(MODEL, 30, 10)
    assert spending.admit(MODEL, 30, 10)  # 80 reserved
    assert not spending.admit(MODEL, 15, 10)  # 105 would pass 100
    assert spending.admit(MODEL, 10, 10)  # exactly 100 does not
    assert not spending.admit(MODEL, 1, 0)
    assert spending.reserved_tokens == 100


def test_release_returns_the_reservation_and_spend_counts_the_usage() -> None:
    spending = Spending(100, None, PRICES)
    assert spending.admit(MODEL, 40, 10)
    assert spending.admit(MODEL, 40, 10)
    assert not spending.admit(MODEL, 1, 0)
    spending.release(MODEL, 40, 10)  # the first one ended ...
    spending.spend(MODEL, 20, 5)  # ... having used less than estimated
    assert (spending.reserved_tokens, spending.tokens_spent) == (50, 25)
    assert spending.admit(MODEL, 20, 5)  # 25 + 50 + 25 = 100
    assert not spending.admit(MODEL, 1, 0)
    spending.release(MODEL, 40, 10)
    spending.release(MODEL, 20, 5)
    assert spending.reserved_tokens == 0 and spending.reserved_cost == pytest.approx(0.0)


def test_cost_budget_admits_until_the_next_estimate_would_pass_it() -> None:
    spending = Spending(None, 10.0, PRICES)
    assert spending.limited
    assert spending.admit(MODEL, 3, 2)  # USD 7
    assert not spending.admit(MODEL, 2, 1)  # 7 + 4 = 11 would pass 10
    assert spending.admit(MODEL, 1, 1)  # 7 + 3 = 10 does not
    assert spending.reserved_cost == pytest.approx(10.0)
    spending.release(MODEL, 3, 2)
    spending.spend(MODEL, 1, 1)  # really cost USD 3
    assert spending.cost_spent == pytest.approx(3.0)
    assert spending.admit(MODEL, 2, 1)  # 3 + 3 + 4 = 10
    assert not spending.admit(MODEL, 1, 0)


def test_the_tighter_of_both_budgets_stops_admission() -> None:
    spending = Spending(1_000, 5.0, PRICES)
    assert spending.admit(MODEL, 3, 1)  # 4 tokens, USD 5
    assert not spending.admit(MODEL, 1, 0)  # tokens to spare, but not money
    cheap = Spending(10, 1_000.0, PRICES)
    assert cheap.admit(MODEL, 6, 4)
    assert not cheap.admit(MODEL, 1, 0)  # money to spare, but not tokens


def test_a_429_cuts_to_just_under_what_the_server_accepted() -> None:
    """A limit far below --rps is found in one step: after a 429 the rate goes to 95% of
    the answers the server accepted over the last second."""
    pacer = RecordingPacer(100)
    ad = Adaptive(100, None, pacer)
    for k in range(60):  # 30 accepted answers in the second before the 429, 2 s in
        ad.answered(0.01, False, now=1.0 + k / 30)
    ad.answered(0.01, True, now=3.0)
    assert ad.rate == pytest.approx(30 * 0.95)
    assert pacer.rates == [ad.rate]
