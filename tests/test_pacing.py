"""RatePacer on a virtual clock: simulated seconds, no real waiting.

The event loop below keeps its own clock. When the loop would block in ``select`` until
the next timer, the selector instead moves the clock forward by that timeout and returns
at once; every loop iteration that has work to do costs one microsecond of virtual time,
as it would on a real machine. (At zero cost the clock can stall: aiolimiter's wake-up
timer, recomputed after float rounding, may land on the very instant it fired at, and
the loop spins forever at one virtual time.) aiolimiter reads ``loop.time()`` and waits
with ``call_at``, so it runs on this clock unchanged.
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
