"""Plain counters the engine updates and the CLI reads; the engine itself never prints.

Who writes what: admission the input's counters (read, skipped, bad lines), the workers the
sends (sent, in flight, retries), the outcomes writer the outcomes (ok, dead, tokens), the
engine the rest (lines, gauges once a second, and at the end why the run stopped).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from batchrunner.vocabulary import Failure, StopReason, failure_key

__all__ = ["RunStats"]


@dataclass(slots=True)
class RunStats:
    """Live counters of one run. ``done`` counts this run's outcomes only; ``skipped_done``
    what earlier runs had already finished."""

    total_lines: int = 0
    read: int = 0
    blank: int = 0
    #: With ``--shard``: the number of shards, the lines read that belong to the others, and
    #: the input line the reading has reached (for an estimate of this shard's lines).
    shards: int = 1
    other_shards: int = 0
    position: int = 0
    skipped_done: int = 0
    skipped_dead: int = 0
    #: Of the lines skipped as still dead, the bad ones (dead by their line number, not by
    #: an id); the ids other shards' lines named (a shard's files should hold none). With
    #: the skipped ones: which of the files' outcomes the reader has passed.
    skipped_dead_lines: int = 0
    other_shards_results: int = 0
    other_shards_dead: int = 0
    #: Outcomes in the files for lines the reader did not reach (the run stopped before the
    #: end of its input): results, and entries still dead (:func:`~.admission.count_unread`).
    unread_done: int = 0
    unread_dead: int = 0
    changed_done: int = 0
    ok: int = 0
    dead: int = 0
    dead_input: int = 0
    sent: int = 0
    retries: int = 0
    retrying_now: int = 0
    in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    dead_by_status: Counter[str] = field(default_factory=Counter)
    retry_causes: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    stop_reason: StopReason | None = None
    pool: int = 0
    current_rps: float | None = None
    share_429: float = 0.0
    #: Items finished, and requests sent (every attempt), a second lately: apart, since
    #: retries can keep the second far above the first.
    done_per_s: float = 0.0
    sent_per_s: float = 0.0
    cost: float = 0.0
    cost_projected: float | None = None
    #: With a budget: (spent, budget) over every invocation of the run, in USD / tokens.
    budget_usd: tuple[float, float] | None = None
    budget_tokens: tuple[int, int] | None = None
    #: A one-line explanation when the run stopped by itself (breaker, quota).
    stop_message: str | None = None

    def note_retry(self, failure: Failure) -> None:
        """An attempt failed and the item will wait, then try again."""
        self.retries += 1
        self.retry_causes[failure_key(failure.status_code, failure.type)] += 1
        self.retrying_now += 1

    @property
    def done(self) -> int:
        return self.ok + self.dead

    @property
    def total_ok(self) -> int:
        """Results in the file for this input's lines: this run's and earlier runs'."""
        return self.ok + self.skipped_done - self.skipped_dead + self.unread_done

    @property
    def total_dead(self) -> int:
        """This input's items still dead-lettered: this run's and earlier runs'."""
        return self.dead + self.skipped_dead + self.unread_dead

    @property
    def decided_before(self) -> int:
        """Lines an earlier run decided: passed over, or not reached by this run."""
        return self.skipped_done + self.unread_done + self.unread_dead

    @property
    def ids_passed(self) -> tuple[int, int]:
        """How many of the results and dead ids the files held at start the reader has
        passed: the ones it skipped (a bad line a result names passes that result), and
        the ones other shards' lines named."""
        results = self.skipped_done - self.skipped_dead + self.other_shards_results
        return results, self.skipped_dead - self.skipped_dead_lines + self.other_shards_dead

    @property
    def to_decide(self) -> int:
        """Input lines this run answers for, blank ones excluded: with ``--shard`` its own
        shard's, estimated from the share not yet read until the whole input is read."""
        if self.shards == 1:
            return self.total_lines - self.blank
        unread = max(self.total_lines - self.position, 0)
        unread_own = max(round(unread / self.shards), self.unread_done + self.unread_dead)
        return self.read - self.other_shards + unread_own

    @property
    def to_do(self) -> int:
        """Lines this run decides itself: those no earlier run decided."""
        return max(self.to_decide - self.decided_before, self.done)

    @property
    def pending(self) -> int:
        """Lines of the input not yet decided by this or an earlier run (blank ones excluded)."""
        return max(self.to_decide - self.done - self.decided_before, 0)

    @property
    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else time.monotonic()
        return end - self.started

    @property
    def rate(self) -> float:
        """Requests sent per second (every attempt counts)."""
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def done_rate(self) -> float:
        """Items finished (a result or a dead letter) per second."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    def _budget(self) -> dict[str, Any] | None:
        """What the run spent of its budget, over all its invocations."""
        budget: dict[str, Any] = {}
        if self.budget_usd is not None:
            budget["spent_usd"] = round(self.budget_usd[0], 6)
            budget["max_cost_usd"] = self.budget_usd[1]
        if self.budget_tokens is not None:
            budget["spent_tokens"], budget["max_tokens_total"] = self.budget_tokens
        return budget or None

    def as_dict(self) -> dict[str, Any]:
        return {
            "total_lines": self.total_lines,
            "blank_lines": self.blank,
            "other_shards_lines": self.other_shards,
            "ok": self.ok,
            "dead_lettered": self.dead,
            "results_total": self.total_ok,
            "dead_lettered_total": self.total_dead,
            "dead_lettered_input_lines": self.dead_input,
            "skipped_done": self.skipped_done,
            "decided_before_unread": self.unread_done + self.unread_dead,
            "changed_since_done": self.changed_done,
            "pending": self.pending,
            "requests_sent": self.sent,
            "retries": self.retries,
            "retry_causes": dict(self.retry_causes),
            "dead_by_status": dict(self.dead_by_status),
            "cost_usd": round(self.cost, 6),
            "budget": self._budget(),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "elapsed_s": round(self.elapsed, 3),
            "requests_per_s": round(self.rate, 2),
            "done_per_s": round(self.done_rate, 2),
            "stop_reason": self.stop_reason,
            "stop_message": self.stop_message,
            "warnings": list(self.warnings),
        }
