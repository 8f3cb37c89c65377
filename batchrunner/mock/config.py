"""Configuration of the mock Mistral server."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from batchrunner.mock.limits import LimitAlgo

#: Fault names accepted by ``error_rates`` besides an HTTP status ("429", "500", ...).
#: ``capacity`` is a 429 whose body says the server is out of capacity (Mistral's
#: ``service_tier_capacity_exceeded``), where a plain "429" says "rate limit exceeded".
RANDOM_FAULT_NAMES: frozenset[str] = frozenset({"timeout", "reset", "garbage", "capacity"})


def _empty_rates() -> Mapping[str, float]:
    # A read-only mapping keeps the frozen dataclass honestly immutable.
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class MockConfig:
    """Everything the mock server can be told; all fields have safe defaults.

    ``error_rates`` maps a fault ("429", "500", "503", "400", ..., "timeout",
    "reset", "garbage", "capacity") to the probability that a request gets it.
    ``limit_rps`` answers 429 beyond that many requests a second, counted as
    ``limit_algo`` says (a sliding 1 s window, a fixed 1 s window, or a bucket
    holding one second's burst; see :mod:`batchrunner.mock.limits`); ``limit_tpm``
    answers 429 beyond that many prompt+completion tokens in a sliding 60 s window.
    ``hang_s`` is how long a "timeout" fault holds the request before answering it normally.

    Batch jobs (see :mod:`batchrunner.mock.jobs`): a job waits ``batch_queue_s``
    QUEUED, then answers its lines at ``batch_seconds_per_1000`` seconds per 1,000
    lines (0: as fast as the server can), and a cancelled job stays
    CANCELLATION_REQUESTED for ``batch_cancel_s``. ``batch_hour_s`` is the length of
    one of the job's ``timeout_hours`` (shrink it to make a job time out for real).
    ``batch_faults`` applies to every job, in the grammar of a job's ``metadata``
    ``"mock"`` value (``"fail_after:50%"``, ...); a job's own value overrides it
    directive by directive.
    """

    host: str = "127.0.0.1"
    port: int = 0
    latency_ms: float = 0
    jitter_ms: float = 0
    error_rates: Mapping[str, float] = field(default_factory=_empty_rates)
    limit_rps: float | None = None
    limit_algo: LimitAlgo = "sliding"
    limit_tpm: int | None = None
    seed: int = 0
    retry_after_ms: int = 1000
    require_key: str | None = None
    hang_s: float = 30.0
    embedding_dim: int = 16
    log_path: str | None = None
    batch_seconds_per_1000: float = 0.0
    batch_queue_s: float = 0.0
    batch_cancel_s: float = 0.0
    batch_hour_s: float = 3600.0
    batch_faults: str = ""


def is_error_status(text: str) -> bool:
    """True when ``text`` is a 3-digit HTTP error status (400-599)."""
    return len(text) == 3 and text.isdigit() and 400 <= int(text) <= 599


def parse_error_rates(text: str) -> dict[str, float]:
    """Parse ``"429=0.1,500=0.05,timeout=0.01"`` into ``{"429": 0.1, ...}``.

    Raises ValueError with a one-line message on an unknown key, a rate that is
    not a number in [0, 1], a repeated key, or rates summing to more than 1.
    """
    rates: dict[str, float] = {}
    for raw_item in text.split(","):
        item = raw_item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"error rate {item!r} is not KEY=RATE")
        if not (is_error_status(key) or key in RANDOM_FAULT_NAMES):
            raise ValueError(
                f"unknown error-rate key {key!r} (use an HTTP status 400-599, "
                "'timeout', 'reset', 'garbage' or 'capacity')"
            )
        if key in rates:
            raise ValueError(f"error-rate key {key!r} given twice")
        try:
            rate = float(value)
        except ValueError:
            raise ValueError(f"error rate for {key!r} is not a number: {value.strip()!r}") from None
        if not 0.0 <= rate <= 1.0:  # also rejects nan
            raise ValueError(f"error rate for {key!r} must be in [0, 1], got {rate}")
        rates[key] = rate
    total = sum(rates.values())
    # A little slack so "0.7,0.3"-style inputs are not rejected by float rounding.
    if total > 1.0 + 1e-9:
        raise ValueError(f"error rates sum to {total:g}, more than 1")
    return rates
