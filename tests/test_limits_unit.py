"""The limits, without a server: the token budget (on a virtual clock), the reorder buffer
and the spending budget (the adaptive rate and pool: test_adaptive.py)."""

from __future__ import annotations

import asyncio
import bisect
from typing import TypeVar

import pytest
from aiolimiter import AsyncLimiter
from hypothesis import given
from hypothesis import strategies as st
from virtual_clock import run_virtual

from batchrunner.ledger.ordered import OrderedWriter
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
