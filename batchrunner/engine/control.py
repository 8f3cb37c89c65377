"""Run control: whether the run goes on, why it stopped, and the waits a stop cuts short.

A graceful stop lets in-flight requests finish for up to the drain timeout, then aborts;
an abort cancels them at once (they stay pending). The first reason and the first message
stand: a later stop does not reword why the run ended.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
import anyio.abc

from batchrunner.engine.events import NO_EVENTS, Events
from batchrunner.errors import OutputWriteError
from batchrunner.vocabulary import StopReason

__all__ = ["RunControl", "Stop"]


@dataclass(frozen=True, slots=True)
class Stop:
    """A decision to stop the run by itself, and the one line that says why."""

    reason: StopReason
    message: str


class RunControl:
    """Stop, abort and halt; holds the first write error, which ends the run."""

    __slots__ = (
        "_drain_timeout",
        "_events",
        "_items",
        "_tg",
        "_waiting",
        "error",
        "message",
        "reason",
    )

    def __init__(self, drain_timeout: float, events: Events = NO_EVENTS) -> None:
        self._drain_timeout, self._events = drain_timeout, events
        self._waiting: set[anyio.CancelScope] = set()
        self._items: anyio.CancelScope | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self.reason: StopReason | None = None
        self.message: str | None = None
        self.error: OutputWriteError | None = None

    @property
    def stopping(self) -> bool:
        return self.reason is not None

    def stop(self, reason: StopReason = "interrupted") -> None:
        """Stop admitting; let in-flight requests finish within the drain timeout."""
        if self.reason is not None:
            return
        self.reason = reason
        for scope in list(self._waiting):
            scope.cancel()
        if self._tg is not None:
            self._tg.start_soon(self._drain_deadline)

    def abort(self, reason: StopReason = "interrupted") -> None:
        """Cancel everything in flight now; those items stay pending."""
        self.stop(reason)
        if self._items is not None:
            self._items.cancel()

    def halt(self, stop: Stop) -> None:
        """Stop because the run decided so (a tripped breaker, a spent quota, the budget)."""
        if self.reason is None:
            self._events.halted(stop.reason, stop.message)
        if self.message is None:
            self.message = stop.message
        self.stop(stop.reason)

    def fail(self, error: OutputWriteError) -> None:
        """An outcome could not be written: keep the first such error and abort."""
        if self.error is None:
            self.error = error
        self.abort("write_error")

    @contextmanager
    def waiting(self) -> Iterator[anyio.CancelScope]:
        """A wait (for the gates or a backoff) that a graceful stop cuts short."""
        with anyio.CancelScope() as scope:
            if self.reason is not None:
                scope.cancel()
            self._waiting.add(scope)
            try:
                yield scope
            finally:
                self._waiting.discard(scope)

    @contextmanager
    def items(self, tg: anyio.abc.TaskGroup) -> Iterator[anyio.CancelScope]:
        """The scope the items run in: an abort cancels it; a stop meanwhile starts the drain
        deadline in ``tg``. After it, a stop has nothing left to drain."""
        with anyio.CancelScope() as scope:
            self._items, self._tg = scope, tg
            if self.reason is not None:
                tg.start_soon(self._drain_deadline)
            try:
                yield scope
            finally:
                self._items = self._tg = None

    async def _drain_deadline(self) -> None:
        await anyio.sleep(self._drain_timeout)
        self.abort()
