"""RatePacer on a virtual clock: simulated seconds, no real waiting.

The event loop below keeps its own clock. When the loop would block in ``select`` until
the next timer, the selector instead moves the clock forward by that timeout and returns
at once; every loop iteration that has work to do costs one microsecond of virtual time,
as it would on a real machine. (At zero cost the clock can stall: a wake-up timer,
recomputed after float rounding, may land on the very instant it fired at, and the loop
spins forever at one virtual time.) The pacer and aiolimiter read ``loop.time()`` and wait
with the loop's timers, so they run on this clock unchanged.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import selectors
from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiolimiter import AsyncLimiter
from virtual_clock import run_virtual

from batchrunner.limits.pacing import RatePacer

SIMULATED = 10.0
WORKERS = 40

#: Builds an ``acquire`` coroutine function: the pacer under test or a bare AsyncLimiter.
Factory = Callable[[], Callable[[], Awaitable[None]]]


async def hammer(make: Factory, seconds: float, workers: int) -> list[float]:
    """``workers`` tasks acquire as fast as allowed for ``seconds`` of virtual time.

    Returns the admission times relative to the start, sorted.
    """
    loop = asyncio.get_running_loop()
    acquire = make()  # built inside the running loop, as the engine does
    t0 = loop.time()
    stamps: list[float] = []

    async def worker() -> None:
        while True:
            await acquire()
            t = loop.time() - t0
            if t >= seconds:
                return
            stamps.append(t)

    await asyncio.gather(*(worker() for _ in range(workers)))
    assert loop.time() - t0 >= seconds  # the clock really moved on
    return sorted(stamps)


def max_in_window(stamps: list[float], width: float = 1.0) -> int:
    """The most admissions in any closed window [t, t + width]; the busiest window starts
    at an admission, so checking those starts is enough."""
    return max(bisect.bisect_right(stamps, t + width) - i for i, t in enumerate(stamps))


def pacer_factory(rps: float | None) -> Factory:
    return lambda: RatePacer(rps).acquire


@pytest.fixture
def os_waits(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float | None]]:
    """Every timeout the event loop passes to the operating system's ``select``.

    "It did not really wait" as a count instead of a stopwatch: all zero means the loop
    never asked the OS to block, whatever the machine's load."""
    waits: list[float | None] = []
    real_select = selectors.SelectSelector.select

    def spy(
        self: selectors.SelectSelector, timeout: float | None = None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        waits.append(timeout)
        return real_select(self, timeout)

    monkeypatch.setattr(selectors.SelectSelector, "select", spy)
    yield waits


def test_virtual_clock_does_not_really_wait(os_waits: list[float | None]) -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(3600)
        return t0, loop.time()

    t0, t1 = run_virtual(main)
    assert t1 - t0 == pytest.approx(3600, abs=1e-3)
    assert os_waits and set(os_waits) == {0}  # an hour passed without blocking once


@pytest.mark.parametrize("rps", [5, 50, 200])
def test_rate_is_capped_in_every_one_second_window(rps: int, os_waits: list[float | None]) -> None:
    stamps = run_virtual(lambda: hammer(pacer_factory(rps), SIMULATED, WORKERS))
    assert os_waits and set(os_waits) == {0}  # virtual: the loop never really waited

    limit = math.floor(rps) + 1
    first_second = bisect.bisect_right(stamps, 1.0)
    assert first_second <= limit, f"start-up burst: {first_second} in the first second"
    assert first_second >= rps  # and the first second is not starved either
    assert max_in_window(stamps) <= rps  # the sliding-window guard: an account's own limit
    assert len(stamps) >= 0.99 * rps * SIMULATED
    # Spot-check every whole second, not only the busiest window.
    for s in range(int(SIMULATED)):
        in_second = bisect.bisect_right(stamps, s + 1.0) - bisect.bisect_left(stamps, float(s))
        assert 0.99 * rps - 1 <= in_second <= limit


def test_harness_detects_a_burst() -> None:
    """The check above can fail: a bare ``AsyncLimiter(rps, 1)`` admits ~2 * rps at start."""
    rps = 50

    def bare() -> Callable[[], Awaitable[None]]:
        return AsyncLimiter(rps, 1).acquire

    stamps = run_virtual(lambda: hammer(bare, 3.0, WORKERS))
    assert bisect.bisect_right(stamps, 1.0) >= 2 * rps - 1
    assert max_in_window(stamps) > rps + 1


def test_no_rate_admits_at_once() -> None:
    async def main() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        pacer = RatePacer(None)
        t0 = loop.time()
        n = 0
        for _ in range(10_000):
            await pacer.acquire()
            n += 1
        return n, loop.time() - t0

    n, elapsed = run_virtual(main)
    assert n == 10_000
    assert elapsed == 0.0
    assert RatePacer(None).rps is None


def test_a_rate_cut_holds_at_once_without_a_burst() -> None:
    """The adaptive limit cuts the rate while requests wait: from the change on, every
    one-second window holds at most the new rate (+1 for the bucket's slack)."""

    async def main() -> tuple[list[float], float]:
        loop = asyncio.get_running_loop()
        pacer = RatePacer(50)
        t0 = loop.time()

        async def cut() -> None:
            await asyncio.sleep(3.0)
            pacer.set_rate(10)

        changer = asyncio.ensure_future(cut())
        stamps = await hammer(lambda: pacer.acquire, 8.0, WORKERS)
        await changer
        return stamps, t0

    stamps, _ = run_virtual(main)
    after = [t for t in stamps if t >= 3.0]
    assert max_in_window(after) <= 10  # the guard keeps the last 10 sends: no new burst
    settled = [t for t in stamps if 4.0 <= t < 8.0]  # a second on, the new pace
    assert 0.99 * 10 * 4 - 1 <= len(settled) <= 10 * 4 + 1
    before = [t for t in stamps if t < 3.0]
    assert len(before) >= 0.99 * 50 * 3 - 2


def test_a_rate_raise_wakes_the_waiting_request() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        pacer = RatePacer(1)
        await pacer.acquire()  # the bucket now holds one: the next waits ~1 s at 1/s
        t0 = loop.time()
        waiter = asyncio.ensure_future(pacer.acquire())
        await asyncio.sleep(0.1)
        assert not waiter.done()
        pacer.set_rate(100)
        await waiter
        return loop.time() - t0

    waited = run_virtual(main)
    assert 0.1 <= waited < 0.15  # woken by the change, not by the old 1 s timer


def test_a_cancelled_wait_takes_nothing_from_the_bucket() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        pacer = RatePacer(2)
        t0 = loop.time()
        await pacer.acquire()
        await pacer.acquire()  # 2 per second: the third waits for the window, at 1.008 s
        waiter = asyncio.ensure_future(pacer.acquire())
        await asyncio.sleep(0.1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await pacer.acquire()  # the lock is free, and the turn is the one it would have had
        third = loop.time() - t0
        await pacer.acquire()
        return third, loop.time() - t0

    third, fourth = run_virtual(main)
    assert third == pytest.approx(1.008, abs=1e-3)
    assert fourth == pytest.approx(1.008 + 0.005, abs=1e-3)  # the bucket's slack: a pair


def test_an_unpaced_pacer_starts_pacing_when_told_and_stops_again() -> None:
    """Without --rps the adaptive limit starts the pace at the first rate-limit 429 (and
    stops it again if cutting proves futile)."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        pacer = RatePacer(None)
        t0 = loop.time()
        stamps: list[float] = []

        async def worker() -> None:
            while loop.time() - t0 < 6.0:
                await pacer.acquire()
                stamps.append(loop.time() - t0)
                await asyncio.sleep(0.01)  # unpaced, each worker sends 100 a second

        async def start_then_stop() -> None:
            await asyncio.sleep(2.0)
            pacer.set_rate(10)
            await asyncio.sleep(3.0)
            pacer.set_rate(None)

        await asyncio.gather(start_then_stop(), *(worker() for _ in range(WORKERS)))
        return sorted(stamps)

    stamps = run_virtual(main)
    assert len([t for t in stamps if t < 2.0]) > 0.9 * 2 * 100 * WORKERS  # unpaced
    paced = [t for t in stamps if 2.0 < t < 5.0]
    assert max_in_window(paced) <= 10  # no burst as the pace starts
    assert 0.99 * 10 * 3 - 1 <= len(paced) <= 10 * 3 + 1
    assert len([t for t in stamps if t >= 5.01]) > 0.9 * 100 * WORKERS * 0.9  # at once again
