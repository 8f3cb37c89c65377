"""An asyncio loop on a virtual clock: waiting for a timer moves the clock to it at once, so
tests of pacing and budgets simulate minutes in milliseconds, without sleeping."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["START", "run_virtual"]

START = 50_000.0  # a monotonic-like clock value, not 0, so float spacing is realistic
TICK = 1e-6  # virtual cost of one loop iteration that does not wait
T = TypeVar("T")


class VirtualClockSelector(selectors.SelectSelector):
    """A selector that never blocks: waiting means advancing the virtual clock."""

    def __init__(self) -> None:
        super().__init__()
        self.now = START

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)  # the loop's self-pipe; never blocks
        if ready:
            return ready
        if timeout is None:
            raise RuntimeError("deadlock: the loop would wait forever")
        self.now += max(timeout, TICK)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.clock = VirtualClockSelector()
        super().__init__(self.clock)

    def time(self) -> float:
        return self.clock.now


def run_virtual(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion on a fresh virtual-clock loop."""

    async def wrapped() -> T:
        return await main()

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(wrapped())
