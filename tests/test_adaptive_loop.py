"""The adaptive rate in a closed loop with simulated servers, on a virtual clock (see
adaptive_sim.py): minutes of traffic in a fraction of a second, the same figures every run.

Issue 9's targets, exactly: against each of the three request limiters real gateways use
(a sliding 1 s window, a fixed 1 s window, a token bucket holding one second's burst) set
below ``--rps``, from 10 s on at least 95 % of the limit answered 200 with fewer than 3 % of
the requests answered 429; the same without ``--rps``; and with a fifth of the requests
answered 429 at random — whatever their body says — at least 90 % of ``--rps`` sent.
benchmarks/suite.py's P6 and P7 measure the same against the real mock server over HTTP.
"""

from __future__ import annotations

import pytest
from adaptive_sim import Arrival, Server, closed_loop, figures
from virtual_clock import run_virtual

from batchrunner.limits.adaptive import Adaptive
from batchrunner.mock.limits import LIMIT_ALGOS, LimitAlgo

RPS = 100.0  # --rps
LIMIT = 40  # the server's --limit-rps
SETTLED = 10.0  # seconds after the first arrival: the start-up cuts are over by then


class FixedRate(Adaptive):
    """Adaptive that never hears an answer: the rate stays at ``--rps`` (the control)."""

    __slots__ = ()

    def answered(
        self, latency: float, rate_limited: bool, now: float, *, busy: bool = False
    ) -> None:
        return None


def run(n: int, server: Server, rps: float | None, seed: int = 0) -> list[Arrival]:
    arrivals = run_virtual(lambda: closed_loop(n, server, rps, seed=seed))
    assert sum(a.status == "200" for a in arrivals) == n  # every item answered 200, once
    return arrivals


@pytest.mark.parametrize("algo", LIMIT_ALGOS)
@pytest.mark.parametrize("rps", [RPS, None], ids=["rps", "no-rps"])
def test_a_lower_server_limit_is_found_and_held(algo: LimitAlgo, rps: float | None) -> None:
    """About 35 s at the server's limit. Before: ~0.9 of a sliding-window limit; without
    --rps, half of all requests were 429s."""
    arrivals = run(1_400, Server(limit=LIMIT, algo=algo), rps)
    late = figures(arrivals, since=SETTLED)
    assert late.span > 15  # long enough for the figures below to mean something
    assert late.answered_per_s >= 0.95 * LIMIT
    assert late.share_429 < 0.03
    assert len(arrivals) < 1.2 * 1_400  # the start-up costs few 429s too


@pytest.mark.parametrize("body", ["rate_limited", "capacity_exceeded"])
@pytest.mark.parametrize("seed", range(4))
def test_random_429s_do_not_collapse_the_rate(body: str, seed: int) -> None:
    """A fifth of the requests answered 429 whatever the rate: a capacity 429 cuts nothing,
    and cuts for "rate limited" ones are found futile and undone. Before: --rps 100 fell
    to 4-9 requests a second."""
    server = Server(noise=0.2, noise_says=body)  # type: ignore[arg-type]
    arrivals = run(2_000, server, RPS, seed)
    assert figures(arrivals).sent_per_s >= 0.9 * RPS
    assert abs(figures(arrivals, since=SETTLED).share_429 - 0.2 * (body == "rate_limited")) < 0.05


@pytest.mark.xfail(strict=True, reason="known: a bucket's saved burst, read late, cuts gently")
def test_a_token_bucket_answered_late_is_found_as_cheaply() -> None:
    """Known weakness, recorded: answers 0.15 s late from a token bucket holding a second's
    burst. The first 429 comes after the burst was spent at --rps, so the answers before it
    say the server accepts about --rps: the first cut is the gentle 3 %, the 429s since it
    (59 % at 97/s against 40) stay under the urgent share (60 %), and the limit is found
    only when that cut is judged, ~2 s later: about 190 429s for 320 items, where 20 ms
    answers cost ~45. The end-to-end test meets the same when the machine is loaded."""
    arrivals = run(320, Server(limit=LIMIT, algo="bucket", latency=0.15), RPS)
    assert len(arrivals) < 1.25 * 320


def test_a_few_random_429s_do_not_hold_the_rate_down() -> None:
    """The quickstart's 3 % random 429s under --rps 50. Before: held at 30 a second."""
    arrivals = run(1_500, Server(noise=0.03), 50.0)
    assert figures(arrivals).sent_per_s >= 0.95 * 50


def test_the_control_at_a_fixed_rate_draws_a_retry_storm() -> None:
    """The tests above can fail: the same loop with the rate fixed at --rps gets more than
    two 429s for every item, and most requests are still refused long after the start."""
    n = 1_000
    arrivals = run_virtual(lambda: closed_loop(n, Server(limit=LIMIT), RPS, FixedRate))
    assert len(arrivals) - n > n
    late = figures(arrivals, since=SETTLED)
    assert late.share_429 > 0.5
