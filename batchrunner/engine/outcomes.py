"""Writing each item's single outcome: a result line, a dead-letter entry, or nothing (left
pending). Every write is one synchronous call, so cancellation cannot cut it in half.

A write that fails raises :class:`~batchrunner.errors.OutputWriteError` to the caller, who
keeps it and ends the run. A failure that should stop the run (a spent quota, a tripped
breaker) comes back as a :class:`~batchrunner.engine.control.Stop` for the caller to act on.
"""

from __future__ import annotations

from collections.abc import Callable

from batchrunner.engine.breaker import CircuitBreaker, Parked, fatal_hint
from batchrunner.engine.control import Stop
from batchrunner.engine.events import NO_EVENTS, Events
from batchrunner.engine.stats import RunStats
from batchrunner.input.lines import Item
from batchrunner.ledger.appendfile import AppendFile
from batchrunner.ledger.ordered import OrderedWriter
from batchrunner.ledger.records import dead_line, result_line
from batchrunner.vocabulary import Failure, Success, failure_key

__all__ = ["Outcomes", "quota_stop", "tripped_stop"]


class Outcomes:
    """The write side of a run, and its outcome counters. ``release`` frees one read-ahead
    slot each time an item's outcome leaves (with ``ordered``, as its line leaves the
    reorder buffer)."""

    __slots__ = ("_breaker", "_dead", "_events", "_ordered", "_release", "_results", "_stats")

    def __init__(
        self,
        results: AppendFile,
        dead: AppendFile,
        stats: RunStats,
        breaker: CircuitBreaker,
        *,
        release: Callable[[], None],
        ordered: bool,
        events: Events = NO_EVENTS,
    ) -> None:
        self._results, self._dead, self._stats, self._breaker = results, dead, stats, breaker
        self._release, self._events = release, events
        self._ordered = OrderedWriter(results.write, release) if ordered else None

    def take_seq(self) -> int:
        """The item's place in the input order (only ``ordered`` uses it)."""
        return self._ordered.take() if self._ordered is not None else 0

    def write_dead(self, line: bytes) -> None:
        """A dead-letter line as it is (an unusable input line)."""
        self._dead.write(line)

    def succeeded(self, item: Item, reply: Success, attempts: int, latency: float) -> bytes:
        """Count a success; returns its line, which :meth:`finished` writes."""
        line = result_line(item, reply.body, attempts, latency, reply.raw)  # first: may raise
        stats = self._stats
        stats.ok += 1
        stats.prompt_tokens += reply.prompt_tokens
        stats.completion_tokens += reply.completion_tokens
        return line

    def failed(self, item: Item, failure: Failure, attempts: int) -> Stop | None:
        """A final failure: dead-letter it, or park it (breaker), or say to stop (quota)."""
        if failure.action == "pause":
            return quota_stop(failure)  # the item stays pending: no retry helps today
        parked = Parked(item, failure, attempts)
        breaker = self._breaker
        if breaker.is_fatal(failure):
            self._dead_letter(breaker.fatal(parked))
            return tripped_stop(breaker.tripped) if breaker.tripped is not None else None
        self._dead_letter([parked, *breaker.other()])
        return None

    def refused(self, item: Item, failure: Failure) -> None:
        """An item that may never be sent (too large): dead-lettered without an attempt."""
        self._dead_letter([Parked(item, failure, 0)])

    def finished(self, seq: int, line: bytes | None) -> None:
        """The item is over: write its result (in order, with ``ordered``). A result proves
        that the failures the breaker holds are not universal: they are dead-lettered."""
        try:
            if self._ordered is not None:
                self._ordered.put(seq, line)  # releases read-ahead as lines leave the buffer
            else:
                try:
                    if line is not None:
                        self._results.write(line)
                finally:
                    self._release()
        finally:
            if line is not None:
                self._dead_letter(self._breaker.other())

    def close(self, completed: bool) -> None:
        """End of the run: parked failures of a run that did not trip are dead; what the
        reorder buffer still holds is written."""
        try:
            if completed:
                self._dead_letter(self._breaker.close())
        finally:
            if self._ordered is not None:
                self._ordered.flush_all()

    def _dead_letter(self, entries: list[Parked]) -> None:
        for p in entries:
            status, type_ = p.failure.status_code, p.failure.type
            self._dead.write(dead_line(p.item, p.failure, p.attempts))
            self._stats.dead += 1
            self._stats.dead_by_status[failure_key(status, type_)] += 1
            self._events.dead_letter(p.item.custom_id, p.item.line, status, type_)


def quota_stop(cause: Failure) -> Stop:
    """The stop of a run whose account quota is spent (a ``pause`` failure)."""
    return Stop(
        "quota",
        f"paused: the account's quota is spent ({_what(cause)}); the rest is pending: "
        "re-run the same command when the quota renews",
    )


def tripped_stop(cause: Failure) -> Stop:
    """The stop of a run whose requests fail with a fatal cause (a ``hold`` failure)."""
    return Stop(
        "fatal",
        f"stopped: requests keep failing with {_what(cause)}; {fatal_hint(cause)}. The items "
        "are left pending: fix the cause and re-run the same command",
    )


def _what(cause: Failure) -> str:
    return f"{cause.status_code} {cause.type}: {cause.message}"
