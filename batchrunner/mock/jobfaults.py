"""Faults and pacing of one batch job, told by ``MockConfig.batch_faults`` or the job's metadata.

Grammar: comma-separated ``NAME:VALUE`` directives, e.g. ``"fail_after:50%,slow_cancel:2"``.

- ``fail_after:N`` / ``fail_after:P%``: after N lines (or P% of the job's lines, rounded
  down) the job ends FAILED, delivering the lines done so far.
- ``timeout_after:N`` / ``timeout_after:P%``: the same, ending TIMEOUT_EXCEEDED.
- ``slow_cancel:S``: once cancelled, the job stays CANCELLATION_REQUESTED for S seconds.
- ``queue:S``: the job stays QUEUED for S seconds before it runs.
- ``speed:S``: S seconds per 1,000 lines (0: as fast as possible).

A job's ``metadata={"mock": "..."}`` overrides the server-wide value directive by
directive (``fail_after`` and ``timeout_after`` are one directive: how the job ends).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

#: Metadata key whose value scripts a job's faults.
METADATA_KEY = "mock"
_ENDS = {"fail_after": "FAILED", "timeout_after": "TIMEOUT_EXCEEDED"}
_SECONDS = ("slow_cancel", "queue", "speed")


@dataclass(frozen=True, slots=True)
class JobFaults:
    """Parsed directives; None means "not said here" (the server-wide value applies)."""

    end_status: str | None = None
    end_lines: int | None = None
    end_percent: float | None = None
    cancel_s: float | None = None
    queue_s: float | None = None
    seconds_per_1000: float | None = None

    def over(self, base: JobFaults) -> JobFaults:
        """These directives, with ``base`` filling in what these do not say."""
        merged = base
        if self.end_status is not None:
            merged = replace(
                merged,
                end_status=self.end_status,
                end_lines=self.end_lines,
                end_percent=self.end_percent,
            )
        return replace(
            merged,
            cancel_s=_first(self.cancel_s, base.cancel_s),
            queue_s=_first(self.queue_s, base.queue_s),
            seconds_per_1000=_first(self.seconds_per_1000, base.seconds_per_1000),
        )

    def stop_after(self, total: int) -> int | None:
        """How many lines the job answers before its scripted end, if it has one."""
        if self.end_status is None:
            return None
        if self.end_percent is not None:
            return math.floor(total * self.end_percent / 100)
        return self.end_lines


def parse_job_faults(text: str) -> JobFaults:
    """Parse the grammar in the module docstring; ValueError with a one-line message."""
    faults = JobFaults()
    seen: set[str] = set()
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, value = (part.strip() for part in item.partition(":"))
        if not sep or (name not in _ENDS and name not in _SECONDS):
            raise ValueError(
                f"mock: unknown batch fault {item!r} (use fail_after:N|P%, timeout_after:N|P%, "
                "slow_cancel:S, queue:S, speed:S)"
            )
        key = "end" if name in _ENDS else name
        if key in seen:
            raise ValueError(f"mock: batch fault {item!r} conflicts with an earlier one")
        seen.add(key)
        faults = _with(faults, name, value)
    return faults


def _with(faults: JobFaults, name: str, value: str) -> JobFaults:
    if name == "slow_cancel":
        return replace(faults, cancel_s=_number(name, value))
    if name == "queue":
        return replace(faults, queue_s=_number(name, value))
    if name == "speed":
        return replace(faults, seconds_per_1000=_number(name, value))
    if value.endswith("%"):
        percent = _number(name, value[:-1])
        if percent > 100:
            raise ValueError(f"mock: {name} percentage must be <= 100: {value!r}")
        return replace(faults, end_status=_ENDS[name], end_percent=percent)
    if not value.isdigit():
        raise ValueError(f"mock: {name} needs a line count or a percentage: {value!r}")
    return replace(faults, end_status=_ENDS[name], end_lines=int(value))


def _first(mine: float | None, base: float | None) -> float | None:
    return base if mine is None else mine


def _number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"mock: {name} needs a number: {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"mock: {name} must be finite and >= 0: {value!r}")
    return number
