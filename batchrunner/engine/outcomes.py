"""Writing each item's single outcome: a result line, a dead-letter entry, or nothing (left
pending). Every write is one synchronous call, so cancellation cannot cut it in half."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from batchrunner.engine.breaker import CircuitBreaker, Parked
from batchrunner.engine.stats import RunStats
from batchrunner.errors import OutputWriteError
from batchrunner.input.lines import Item
from batchrunner.ledger.ordered import OrderedWriter
from batchrunner.ledger.records import dead_line, result_line
from batchrunner.ledger.state import Ledger
from batchrunner.vocabulary import Failure, Success, failure_key

__all__ = ["Outcomes"]


class Outcomes:
    """The write side of a run. ``halt`` stops the run (breaker, quota); ``on_write_error``
    is told of a failed write before it propagates; ``release`` frees one read-ahead slot."""

    def __init__(
        self,
        ledger: Ledger,
        stats: RunStats,
        breaker: CircuitBreaker,
        *,
        halt: Callable[[str, Failure], None],
        on_write_error: Callable[[OutputWriteError], None],
        release: Callable[[], None],
        ordered: bool,
    ) -> None:
        self._ledger, self._stats, self.breaker = ledger, stats, breaker
        self._halt, self._on_write_error, self._release = halt, on_write_error, release
        self._ordered = OrderedWriter(self._write_result, release) if ordered else None

    def take_seq(self) -> int:
        return self._ordered.take() if self._ordered is not None else 0

    def write_dead(self, line: bytes) -> None:
        self._write(self._ledger.dead.write, line)

    def succeeded(self, item: Item, reply: Success, attempts: int, latency: float) -> bytes:
        """Count a success; returns its line, written by :meth:`finished`."""
        stats = self._stats
        stats.ok += 1
        stats.prompt_tokens += reply.prompt_tokens
        stats.completion_tokens += reply.completion_tokens
        line = result_line(item, reply.body, attempts, latency)
        with contextlib.suppress(OutputWriteError):  # kept by the engine; the line still goes
            self.dead_letter(self.breaker.other())
        return line

    def failed(self, item: Item, failure: Failure, attempts: int) -> None:
        """A final failure: dead-letter it, or park it (breaker), or stop (quota)."""
        if failure.action == "pause":
            self._halt("quota", failure)  # the item stays pending: no retry helps today
            return
        parked = Parked(item, failure, attempts)
        if self.breaker.is_fatal(failure):
            self.dead_letter(self.breaker.fatal(parked))
            if self.breaker.tripped is not None:
                self._halt("fatal", self.breaker.tripped)
            return
        self.dead_letter([parked, *self.breaker.other()])

    def dead_letter(self, entries: list[Parked]) -> None:
        for p in entries:
            self.write_dead(dead_line(p.item, p.failure, p.attempts))
            self._stats.dead += 1
            self._stats.dead_by_status[failure_key(p.failure.status_code, p.failure.type)] += 1

    def finished(self, seq: int, line: bytes | None) -> None:
        """The item is over: write its result (in order, with ``--ordered``)."""
        if self._ordered is not None:
            self._ordered.put(seq, line)  # releases read-ahead as lines leave the buffer
            return
        try:
            if line is not None:
                self._write_result(line)
        finally:
            self._release()

    def close(self, completed: bool) -> None:
        """End of the run: parked failures of a run that did not trip are dead; what the
        reorder buffer still holds is written."""
        try:
            if completed:
                self.dead_letter(self.breaker.close())
        finally:
            if self._ordered is not None:
                self._ordered.flush_all()

    @property
    def buffered(self) -> int:
        return self._ordered.buffered if self._ordered is not None else 0

    def _write_result(self, line: bytes) -> None:
        self._write(self._ledger.results.write, line)

    def _write(self, write: Callable[[bytes], None], line: bytes) -> None:
        try:
            write(line)
        except OutputWriteError as exc:
            self._on_write_error(exc)
            raise
