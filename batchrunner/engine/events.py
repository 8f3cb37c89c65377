"""What a run reports as it goes, for a log that people and tools follow (``--log-json``).

:class:`Events` is handed to the engine's parts like any collaborator, and each part reports
at one clear point: admission and the outcomes writer each dead-letter, the workers each
retry, run control a pause, a tripped breaker or a spent budget, the once-a-second tick a
rate cut, the engine the start and the end. The CLI adds the periodic progress, and a batch
job's changes go through :meth:`Events.batch_job`. Each method builds one event — a flat
JSON object with a UTC timestamp ``ts`` and its name ``event`` — and hands it to the sink.
Without a sink (:data:`NO_EVENTS`) every method returns at once: a run that logs nothing
pays one test per retry or dead-letter, nothing per success.

Events never carry the API key: options are the config's settings (the key is not one),
failures are the redacted ones the workers keep, and dead-letters carry no message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from batchrunner.config import RUN_SETTINGS, RunConfig
from batchrunner.engine.stats import RunStats
from batchrunner.vocabulary import Failure, StopReason, failure_key

__all__ = ["NO_EVENTS", "Event", "Events", "Sink"]

#: One event, as the sink receives it.
Event = dict[str, Any]
#: Where events go: it must take each one whole (one line, say) and must not raise.
Sink = Callable[[Event], None]

#: The event a run that stops by itself reports, by its stop reason.
_HALTS: Final[dict[str, str]] = {
    "quota": "pause",
    "fatal": "breaker_trip",
    "budget": "budget_reached",
}


class Events:
    """A run's events, handed to ``sink`` as they happen; ``Events()`` reports nothing."""

    __slots__ = ("_sink",)

    def __init__(self, sink: Sink | None = None) -> None:
        self._sink = sink

    @property
    def on(self) -> bool:
        """Whether anything receives the events (so a caller may skip building one)."""
        return self._sink is not None

    def emit(self, event: str, **fields: Any) -> None:
        """Report ``event`` with ``fields`` (JSON values), timestamped now."""
        if self._sink is not None:
            self._sink({"ts": _now(), "event": event, **fields})

    def run_start(self, config: RunConfig, total_lines: int) -> None:
        """The run begins: its effective options (settings only: never the key)."""
        if self._sink is not None:
            options = {s.key: _plain(getattr(config, s.name)) for s in RUN_SETTINGS}
            self.emit("run_start", options=options, input_lines=total_lines)

    def retry(self, custom_id: str, attempt: int, failure: Failure, wait: float) -> None:
        """Attempt ``attempt`` of an item failed; it tries again after ``wait`` seconds."""
        if self._sink is not None:
            cause = failure_key(failure.status_code, failure.type)
            self.emit(
                "retry", id=custom_id, attempt=attempt, cause=cause, type=failure.type,
                status=failure.status_code, wait_s=round(wait, 3),
            )  # fmt: skip

    def dead_letter(self, custom_id: str | None, line: int, status: int | None, type_: str) -> None:
        """An item or input line went to the dead-letter file."""
        if self._sink is not None:
            self.emit("dead_letter", id=custom_id, line=line, type=type_, status=status)

    def halted(self, reason: StopReason, message: str) -> None:
        """The run stops by itself: ``pause`` (quota), ``breaker_trip``, ``budget_reached``."""
        if self._sink is not None:
            self.emit(_HALTS.get(reason, "stop"), reason=reason, message=message)

    def rate_cut(self, limit: str, old: float, new: float, why: str) -> None:
        """The adaptive limit cut ``limit`` (``rps``, or ``pool`` with no rate cap)."""
        if self._sink is not None:
            self.emit("rate_cut", limit=limit, old=round(old, 3), new=round(new, 3), why=why)

    def batch_job(self, job_id: str, status: str, counts: Mapping[str, int]) -> None:
        """A Batch API job changed status (``counts``: total, completed, failed ...)."""
        if self._sink is not None:
            self.emit("batch_job", job_id=job_id, status=status, **counts)

    def progress(self, stats: RunStats, eta: float | None) -> None:
        """Where the run stands (sent every ``--progress-interval`` seconds)."""
        if self._sink is not None:
            self.emit("progress", **_progress(stats, eta))

    def run_end(self, stats: RunStats) -> None:
        """The run is over (completed or stopped): its summary."""
        if self._sink is not None:
            self.emit("run_end", summary=stats.as_dict())


#: Reports nothing: the default wherever an ``Events`` is taken.
NO_EVENTS: Final = Events()


def _progress(s: RunStats, eta: float | None) -> dict[str, Any]:
    total = s.to_do
    return {
        "done": s.done, "total": total,
        "percent": round(100 * s.done / total, 2) if total else 100.0,
        "ok": s.ok, "dead": s.dead, "decided_before": s.decided_before,
        "retrying": s.retrying_now, "in_flight": s.in_flight,
        "requests_per_s": round(s.rate, 2),
        "completions_per_s": round(s.done / s.elapsed, 2) if s.elapsed > 0 else 0.0,
        "rps_now": None if s.current_rps is None else round(s.current_rps, 2),
        "share_429": round(s.share_429, 4),
        "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens,
        "cost_usd": round(s.cost, 6),
        "cost_projected_usd": None if s.cost_projected is None else round(s.cost_projected, 4),
        "eta_s": None if eta is None else round(eta, 1),
    }  # fmt: skip


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(value: object) -> object:
    """A setting's value as JSON can carry it."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    return value
