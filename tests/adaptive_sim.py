"""The adaptive rate in a closed loop with a simulated server, on a virtual clock: minutes of
traffic in a fraction of a second, the same figures every run.

The client side is the real pacer, the real ``Adaptive`` and its slots, used in the order the
workers use them (a slot, the pacer's turn, send, report the answer, give the slot back; a
429 waits out the real retry policy's delay — at least its ``Retry-After`` — holding no
slot, then goes back through admission). The server side is the mock server's own request
limiters (:mod:`batchrunner.mock.limits`) and random 429s, with either body.
"""

from __future__ import annotations

import asyncio
import bisect
import random
from dataclasses import dataclass
from typing import Literal

from batchrunner.engine.retry import RetryPolicy
from batchrunner.limits.adaptive import Adaptive
from batchrunner.limits.pacing import RatePacer
from batchrunner.mock.limits import LimitAlgo, request_limit
from batchrunner.vocabulary import Failure

__all__ = ["Arrival", "Figures", "Server", "closed_loop", "figures"]

Status = Literal["200", "429", "busy"]  # "busy": a 429 saying the server is out of capacity


@dataclass(frozen=True, slots=True)
class Server:
    """What the simulated server does: a request limit, random 429s, a latency."""

    limit: float | None = None
    algo: LimitAlgo = "sliding"
    noise: float = 0.0  # share of the requests within the limit answered 429 at random
    noise_says: Literal["rate_limited", "capacity_exceeded"] = "rate_limited"
    latency: float = 0.02  # seconds from arrival to answer ...
    jitter: float = 0.0  # ... give or take up to this much
    retry_after: float = 1.0  # what each 429 asks


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # seconds since the first arrival
    status: Status
    first: bool  # an item's first attempt (not a retry)


async def closed_loop(
    n: int, server: Server, rps: float | None, adaptive: type[Adaptive] = Adaptive, seed: int = 0
) -> list[Arrival]:
    """Send ``n`` items until each is answered 200; every arrival at the server, in order."""
    loop = asyncio.get_running_loop()
    pacer = RatePacer(rps)  # built inside the running loop, as the engine does
    ad = adaptive(rps, None, pacer)
    limit = request_limit(server.algo, server.limit) if server.limit is not None else None
    noise, jitter = random.Random(seed), random.Random(seed + 1)
    policy = RetryPolicy(max_attempts=10_000)
    stamps: list[tuple[float, Status, bool]] = []

    def decide(now: float) -> Status:
        if limit is not None and not limit.admit(now):
            return "429"
        if noise.random() < server.noise:
            return "429" if server.noise_says == "rate_limited" else "busy"
        return "200"

    async def attempt(first: bool) -> Status:
        await ad.limiter.acquire()
        try:
            await pacer.acquire()
            status = decide(loop.time())
            stamps.append((loop.time(), status, first))
            latency = server.latency + jitter.uniform(-server.jitter, server.jitter)
            await asyncio.sleep(latency)
            ad.answered(latency, status == "429", loop.time(), busy=status == "busy")
            return status
        finally:
            ad.limiter.release()

    async def item() -> None:
        tries = 1
        while (status := await attempt(tries == 1)) != "200":
            kind = "rate_limited" if status == "429" else "capacity_exceeded"
            failure = Failure(
                type=kind, status_code=429, message="", retry_after=server.retry_after
            )
            await asyncio.sleep(policy.delay(failure, tries, jitter) or 0.0)  # holding no slot
            tries += 1

    async def ticker() -> None:
        while True:
            await asyncio.sleep(1.0)
            ad.tick(loop.time())

    tick = asyncio.create_task(ticker())
    await asyncio.gather(*(item() for _ in range(n)))
    tick.cancel()
    start = stamps[0][0]
    return [Arrival(at - start, status, first) for at, status, first in stamps]


@dataclass(frozen=True, slots=True)
class Figures:
    """What a run looked like at the server from ``since`` seconds on."""

    answered_per_s: float  # 200s a second
    sent_per_s: float  # arrivals a second (every attempt)
    share_429: float  # of the arrivals, answered 429 saying "rate limited"
    span: float  # seconds measured


def figures(arrivals: list[Arrival], since: float = 0.0) -> Figures:
    """From ``since`` seconds on while some item had not been sent yet: the steady part,
    before the last retries trickle in alone."""
    last = max(i for i, a in enumerate(arrivals) if a.first)
    late = arrivals[bisect.bisect_left([a.at for a in arrivals], since) : last + 1]
    span = late[-1].at - late[0].at
    ok = sum(a.status == "200" for a in late)
    refused = sum(a.status == "429" for a in late)
    # n arrivals span n - 1 gaps: the rates count the gaps, not the fence posts
    return Figures((ok - 1) / span, (len(late) - 1) / span, refused / len(late), span)
