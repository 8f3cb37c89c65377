"""Concurrency slots: the cap holds, waiters are served in order, resizing and
cancellation never lose or leak a slot."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from batchrunner.limits.slots import Slots


@pytest.mark.asyncio
async def test_cap_holds_and_waiters_are_served_in_order() -> None:
    slots = Slots(2)
    running = peak = 0
    order: list[int] = []

    async def job(n: int) -> None:
        nonlocal running, peak
        await slots.acquire()
        order.append(n)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        running -= 1
        slots.release()

    await asyncio.gather(*(job(n) for n in range(10)))
    assert peak == 2
    assert order == list(range(10))
    assert slots.borrowed_tokens == 0


@pytest.mark.asyncio
async def test_acquire_nowait_refuses_when_full_or_when_others_wait() -> None:
    slots = Slots(1)
    slots.acquire_nowait()
    with pytest.raises(anyio.WouldBlock):
        slots.acquire_nowait()
    waiter = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # handed straight to the waiter
    await waiter
    assert slots.borrowed_tokens == 1
    with pytest.raises(anyio.WouldBlock):
        slots.acquire_nowait()


@pytest.mark.asyncio
async def test_growing_wakes_waiters_and_shrinking_holds_new_ones() -> None:
    slots = Slots(1)
    slots.acquire_nowait()
    waiters = [asyncio.ensure_future(slots.acquire()) for _ in range(3)]
    await asyncio.sleep(0)
    slots.total_tokens = 3
    await asyncio.sleep(0)
    assert [w.done() for w in waiters] == [True, True, False]
    slots.total_tokens = 1  # three in use, cap one: nobody new until two are back
    slots.release()
    slots.release()
    await asyncio.sleep(0)
    assert not waiters[2].done()
    slots.release()
    await asyncio.sleep(0)
    assert waiters[2].done() and slots.borrowed_tokens == 1


@pytest.mark.asyncio
async def test_a_cancelled_waiter_neither_leaks_nor_loses_a_slot() -> None:
    slots = Slots(1)
    slots.acquire_nowait()
    cancelled = asyncio.ensure_future(slots.acquire())
    handed = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    slots.release()  # skips the cancelled waiter
    await handed
    assert slots.borrowed_tokens == 1
    late = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # the slot is set on `late` ...
    late.cancel()  # ... which is cancelled before it runs: the slot comes back
    with pytest.raises(asyncio.CancelledError):
        await late
    assert slots.borrowed_tokens == 0


@pytest.mark.asyncio
async def test_cancel_and_release_in_the_same_step() -> None:
    """A stop cancels a waiter, and before it runs again another request releases its
    slot: the waiter is already gone from the queue and must not fail looking for it."""
    slots = Slots(1)
    slots.acquire_nowait()
    waiter = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    slots.release()  # same step: drops the cancelled waiter, keeps the slot free
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.borrowed_tokens == 0
    slots.acquire_nowait()  # and the slot is there to take
