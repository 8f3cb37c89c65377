"""What ``batchrunner merge`` found: per shard its lines and outcomes, the outcomes left out
and why, and the verdict in one line. Nothing here reads or writes a file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batchrunner.config import RunConfig
from batchrunner.ledger.shards import ShardFiles
from batchrunner.ledger.state import Decision

__all__ = ["Left", "MergeReport", "ShardTally"]

#: Ids named for each kind of outcome left out: enough to find the cause.
_EXAMPLES = 5


@dataclass(slots=True)
class ShardTally:
    """One shard's input lines and what its files say of them."""

    results: str | None = None
    lines: int = 0
    done: int = 0
    dead: int = 0
    pending: int = 0

    def count(self, decision: Decision) -> None:
        """Count one of the shard's lines, as its files decide it."""
        self.lines += 1
        if decision is None:
            self.pending += 1
        elif decision == "done":
            self.done += 1
        else:
            self.dead += 1

    def state(self) -> str:
        if self.results is None:
            return "missing"
        return "incomplete" if self.pending else "complete"


@dataclass(slots=True)
class Left:
    """Outcomes left out of the merge for one reason: how many, and the first few."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, what: str) -> None:
        self.count += 1
        if len(self.examples) < _EXAMPLES:
            self.examples.append(what)

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "examples": self.examples}


@dataclass(slots=True)
class MergeReport:
    """The outcome of a merge; :attr:`complete` only when every line of the input has
    exactly one outcome, every shard is there and nothing was left out."""

    input: str
    output: str
    dead_letter: str
    count: int
    by_shard: list[ShardTally]
    results_written: int = 0
    dead_written: int = 0
    #: An id whose outcome a shard's files hold twice (only the first is kept).
    doubled: Left = field(default_factory=Left)
    #: An id (or dead input line) that is not in the input.
    foreign: Left = field(default_factory=Left)
    #: An outcome of the input's (an id or line in it) in another shard's files.
    misplaced: Left = field(default_factory=Left)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def empty(cls, config: RunConfig, shards: list[ShardFiles]) -> MergeReport:
        count = shards[0].shard.count
        by_shard = [ShardTally() for _ in range(count)]
        for f in shards:
            by_shard[f.shard.index].results = str(f.results)
        out, dead = str(config.output_path), str(config.dead_letter_path)
        return cls(str(config.input_path), out, dead, count, by_shard)

    def _total(self, what: str) -> int:
        return sum(getattr(t, what) for t in self.by_shard)

    @property
    def missing(self) -> list[int]:
        return [k for k, t in enumerate(self.by_shard) if t.results is None]

    @property
    def incomplete(self) -> list[int]:
        return [k for k, t in enumerate(self.by_shard) if t.results is not None and t.pending]

    @property
    def complete(self) -> bool:
        left = self.doubled.count + self.foreign.count + self.misplaced.count
        return not self.missing and not self._total("pending") and not left

    def verdict(self) -> str:
        """One line: complete, or what is missing and what was left out."""
        lines, done, dead = self._total("lines"), self._total("done"), self._total("dead")
        if self.complete:
            return (
                f"complete: {lines:,} lines from {self.count} shards: {done:,} results in "
                f"{self.output}, {dead:,} dead-lettered in {self.dead_letter}"
            )
        problems = [f"{self._total('pending'):,} of {lines:,} lines have no outcome"]
        if self.missing:
            problems.append(f"{_shards(self.missing, self.count)} missing (no files)")
        for k in self.incomplete:
            problems.append(f"shard {k}/{self.count} has {self.by_shard[k].pending:,} pending")
        for left, why in (
            (self.doubled, "doubled"),
            (self.foreign, "not in the input"),
            (self.misplaced, "in another shard's files"),
        ):
            if left.count:
                problems.append(f"{left.count:,} outcomes {why} (e.g. {left.examples[0]})")
        hint = " (re-run those shards: they resume; then merge again)"
        needs_runs = self.missing or self.incomplete
        return "incomplete: " + "; ".join(problems) + (hint if needs_runs else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "verdict": self.verdict(),
            "input": self.input,
            "output": self.output,
            "dead_letter": self.dead_letter,
            "shards": self.count,
            "lines": self._total("lines"),
            "done": self._total("done"),
            "dead_lettered": self._total("dead"),
            "pending": self._total("pending"),
            "results_written": self.results_written,
            "dead_letter_written": self.dead_written,
            "missing": [f"{k}/{self.count}" for k in self.missing],
            "incomplete": [f"{k}/{self.count}" for k in self.incomplete],
            "by_shard": [_shard_dict(k, self.count, t) for k, t in enumerate(self.by_shard)],
            "doubled": self.doubled.as_dict(),
            "not_in_input": self.foreign.as_dict(),
            "misplaced": self.misplaced.as_dict(),
            "warnings": self.warnings,
        }


def _shard_dict(k: int, count: int, t: ShardTally) -> dict[str, Any]:
    return {
        "shard": f"{k}/{count}",
        "state": t.state(),
        "results": t.results,
        "lines": t.lines,
        "done": t.done,
        "dead_lettered": t.dead,
        "pending": t.pending,
    }


def _shards(ks: list[int], count: int) -> str:
    names = ", ".join(f"{k}/{count}" for k in ks)
    return f"shard {names}" if len(ks) == 1 else f"shards {names}"
