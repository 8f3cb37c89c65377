"""How long to wait before the next attempt: capped exponential backoff with full jitter,
never shorter than what the server asked for."""

from __future__ import annotations

import random
from dataclasses import dataclass

from batchrunner.vocabulary import Failure, FailureType

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` counts the first try. A ``Retry-After`` above ``max_retry_after``
    ends the item instead of parking it for hours."""

    max_attempts: int = 8
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 300.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt - 1, 60))
        return rng.uniform(0.0, ceiling)

    def delay(self, failure: Failure, attempt: int, rng: random.Random) -> float | None:
        """Seconds to wait after failed ``attempt`` (1-based), or ``None`` to give up."""
        if not failure.retryable or attempt >= self.max_attempts:
            return None
        asked = failure.retry_after
        if asked is not None and asked > self.max_retry_after:
            return None
        return max(asked or 0.0, self.backoff(attempt, rng))

    def final(self, failure: Failure, attempts: int) -> Failure:
        """The failure to record when no retry follows: a retryable one says why it stopped."""
        if not failure.retryable:
            return failure
        if failure.retry_after is not None and failure.retry_after > self.max_retry_after:
            why = (
                f"server asked to wait {failure.retry_after:g} s (limit {self.max_retry_after:g} s)"
            )
            type_: FailureType = "retry_after_too_long"
        else:
            why, type_ = f"gave up after {attempts} attempts", "retries_exhausted"
        message = f"{why}; last error: {failure.type}: {failure.message}"
        return Failure(type=type_, status_code=failure.status_code, message=message)
