"""Retry delays: capped exponential backoff with full jitter, never below Retry-After."""

from __future__ import annotations

import random

import pytest

from batchrunner.engine.retry import RetryPolicy
from batchrunner.vocabulary import Failure

DRAWS = 4000


def retryable(retry_after: float | None = None) -> Failure:
    return Failure(
        type="rate_limited", status_code=429, message="slow down", retry_after=retry_after
    )


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6, 7, 8, 20, 200])
def test_full_jitter_stays_within_the_capped_exponential_ceiling(attempt: int) -> None:
    policy = RetryPolicy(max_attempts=1000, base=0.5, cap=30.0)
    ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
    rng = random.Random(attempt)
    delays = [policy.delay(retryable(), attempt, rng) for _ in range(DRAWS)]
    values = [d for d in delays if d is not None]
    assert len(values) == DRAWS
    assert all(0.0 <= d <= ceiling for d in values)
    # Full jitter: the whole range is used, up to near the ceiling and down to near zero.
    assert max(values) >= 0.98 * ceiling
    assert min(values) <= 0.02 * ceiling
    assert sum(values) / len(values) == pytest.approx(ceiling / 2, rel=0.05)


def test_backoff_grows_then_caps() -> None:
    policy = RetryPolicy(base=1.0, cap=10.0)
    rng = random.Random(0)
    maxima = [max(policy.backoff(k, rng) for _ in range(DRAWS)) for k in range(1, 7)]
    assert maxima[0] <= 1.0
    assert 1.0 < maxima[1] <= 2.0
    assert 2.0 < maxima[2] <= 4.0
    assert 4.0 < maxima[3] <= 8.0
    assert 8.0 < maxima[4] <= 10.0
    assert 8.0 < maxima[5] <= 10.0


def test_same_seed_same_delays() -> None:
    policy = RetryPolicy()
    a = [policy.delay(retryable(), 3, random.Random(42)) for _ in range(3)]
    b = [policy.delay(retryable(), 3, random.Random(42)) for _ in range(3)]
    assert a == b


@pytest.mark.parametrize("retry_after", [0.0, 0.7, 5.0, 60.0, 300.0])
def test_never_below_retry_after(retry_after: float) -> None:
    policy = RetryPolicy(max_attempts=10, base=0.5, cap=30.0, max_retry_after=300.0)
    rng = random.Random(7)
    for attempt in range(1, 10):
        for _ in range(200):
            d = policy.delay(retryable(retry_after), attempt, rng)
            assert d is not None
            assert d >= retry_after
            assert d <= max(retry_after, min(30.0, 0.5 * 2 ** (attempt - 1)))


def test_not_retryable_is_none() -> None:
    failure = Failure(type="bad_request", status_code=400, message="bad")
    assert RetryPolicy().delay(failure, 1, random.Random(0)) is None


def test_none_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    rng = random.Random(0)
    assert policy.delay(retryable(), 1, rng) is not None
    assert policy.delay(retryable(), 2, rng) is not None
    assert policy.delay(retryable(), 3, rng) is None
    assert policy.delay(retryable(), 4, rng) is None
    assert RetryPolicy(max_attempts=1).delay(retryable(), 1, rng) is None


def test_none_when_retry_after_exceeds_the_limit() -> None:
    policy = RetryPolicy(max_retry_after=60.0)
    rng = random.Random(0)
    assert policy.delay(retryable(60.0), 1, rng) == 60.0
    assert policy.delay(retryable(60.5), 1, rng) is None
    assert policy.delay(retryable(3600.0), 1, rng) is None
