"""Failing fast when no item can succeed: a refused key, an unknown model.

A fatal failure is not dead-lettered at once: it is parked while the fatal failures come in a
row. Any other outcome proves the cause is not universal and releases the parked items to the
dead-letter file; enough of them in a row — or the very first requests all failing — trips the
breaker, and the parked items stay pending, so fixing the key and re-running just continues.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from batchrunner.input.lines import Item
from batchrunner.vocabulary import Failure

__all__ = ["CircuitBreaker", "Parked", "fatal_hint"]

#: Before any request has got through, this many fatal failures in a row are enough.
_FIRST = 3


@dataclass(frozen=True, slots=True)
class Parked:
    item: Item
    failure: Failure
    attempts: int


@dataclass(slots=True)
class CircuitBreaker:
    """``threshold`` fatal failures of one cause in a row trip it; 0 disables it."""

    threshold: int
    tripped: Failure | None = None
    streak: int = 0
    _parked: list[Parked] = field(default_factory=list)
    _cause: tuple[int | None, str] | None = None
    _any_other: bool = False

    def is_fatal(self, failure: Failure) -> bool:
        return self.threshold > 0 and failure.action == "hold"

    def fatal(self, parked: Parked) -> list[Parked]:
        """Record a fatal failure; returns what to dead-letter now (a changed cause flushes
        the previous streak). After a trip nothing more is dead-lettered."""
        if self.tripped is not None:
            return []
        cause = (parked.failure.status_code, parked.failure.type)
        flushed = self._flush() if cause != self._cause else []
        self._cause = cause
        self._parked.append(parked)
        self.streak += 1
        limit = self.threshold if self._any_other else min(self.threshold, _FIRST)
        if self.streak >= limit:
            self.tripped = parked.failure
            self._parked.clear()
        return flushed

    def other(self) -> list[Parked]:
        """Any other outcome: the cause was not universal; release the parked items."""
        self._any_other = True
        return self._flush() if self._parked else []

    def close(self) -> list[Parked]:
        """At the end of a run that did not trip: what is still parked is dead."""
        return [] if self.tripped is not None else self._flush()

    def _flush(self) -> list[Parked]:
        flushed, self._parked = self._parked, []
        self.streak, self._cause = 0, None
        return flushed


def fatal_hint(failure: Failure) -> str:
    """What to do about a cause that tripped the breaker."""
    if failure.type == "unauthorized":
        return "the API key was refused: check MISTRAL_API_KEY"
    if failure.type == "forbidden":
        return "the API key may not use this model or endpoint"
    if failure.type == "invalid_model":
        return "the model does not exist: check `model` or the bodies' model"
    return "the endpoint or model was not found: check `endpoint`, `model` and `server_url`"
