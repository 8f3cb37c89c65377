"""Run configuration: one frozen value that the CLI, a job file or a script builds."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from batchrunner.errors import ConfigError

__all__ = [
    "DEFAULT_SERVER_URL",
    "ENDPOINTS",
    "ClientKind",
    "RunConfig",
    "default_paths",
    "manifest_path",
]

DEFAULT_SERVER_URL = "https://api.mistral.ai"

#: The Mistral Batch API endpoint names this tool can send, and the body field each needs.
ENDPOINTS: dict[str, str] = {
    "/v1/chat/completions": "messages",
    "/v1/embeddings": "input",
    "/v1/fim/completions": "prompt",
}

ClientKind = Literal["http", "sdk"]


def default_paths(input_path: Path) -> tuple[Path, Path]:
    """The results and dead-letter paths used when none are given: beside the input."""
    stem = input_path.name.removesuffix(".jsonl")
    return (
        input_path.with_name(f"{stem}.results.jsonl"),
        input_path.with_name(f"{stem}.dead.jsonl"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """Everything one run needs. Build it directly, or through the CLI / a job file.

    ``rps=None`` means no request-rate cap. The API key is kept out of ``repr`` so that
    printing a config never leaks it.
    """

    input_path: Path
    output_path: Path
    dead_letter_path: Path
    endpoint: str = "/v1/chat/completions"
    model: str | None = None
    rps: float | None = None
    #: Requests in flight at most; ``None`` sizes the pool from the rate and the latency.
    concurrency: int | None = None
    #: Tokens per minute (prompt + completion) the account allows; ``None``: no token cap.
    tpm: int | None = None
    max_attempts: int = 8
    timeout: float = 120.0
    server_url: str = DEFAULT_SERVER_URL
    api_key: str | None = field(default=None, repr=False)
    client: ClientKind = "http"
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 300.0
    restart: bool = False
    allow_changed_input: bool = False
    #: Send dead-lettered ids again (those with one of ``retry_statuses``, or all).
    retry_dead: bool = False
    retry_statuses: tuple[int, ...] = ()
    #: Fatal failures of one cause in a row (401, 403, 404, unknown model) that stop the
    #: run with the items left pending; 0 turns the breaker off.
    breaker: int = 10
    #: Check the key and the model with ``GET /v1/models`` before sending anything.
    preflight: bool = True
    #: Write results in input order, holding at most ``reorder_buffer`` of them back.
    ordered: bool = False
    reorder_buffer: int = 1000
    #: Stop admitting before these would be passed (resumable with a larger budget).
    max_tokens_total: int | None = None
    max_cost: float | None = None
    #: Price overrides per model: ``{"model": {"input": usd_per_m, "output": usd_per_m}}``.
    prices: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    drain_timeout: float = 10.0
    fsync_interval: float = 1.0
    #: The command that started the run, recorded so that ``status`` can say how to resume.
    command: str | None = None

    def __post_init__(self) -> None:
        optional = ("concurrency", "tpm", "max_tokens_total")
        for name in (*optional, "max_attempts", "breaker", "reorder_buffer"):
            value = getattr(self, name)
            if value is None and name in optional:
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be a whole number, not {value!r}"
                )
        if self.endpoint not in ENDPOINTS:
            known = ", ".join(ENDPOINTS)
            raise ConfigError(f"unsupported endpoint {self.endpoint!r}; use one of {known}")
        if self.rps is not None and not (self.rps > 0 and math.isfinite(self.rps)):
            raise ConfigError(f"--rps must be a positive number, not {self.rps}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, not {self.concurrency}")
        if self.max_attempts < 1:
            raise ConfigError(f"--max-attempts must be at least 1, not {self.max_attempts}")
        for name in ("timeout", "backoff_max", "max_retry_after", "drain_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive")
        if self.tpm is not None and self.tpm < 1:
            raise ConfigError("--tpm must be at least 1")
        if self.reorder_buffer < 1:
            raise ConfigError("--reorder-buffer must be at least 1")
        if self.max_cost is not None and not self.max_cost > 0:
            raise ConfigError("--max-cost must be positive")
        if self.breaker < 0:
            raise ConfigError("--breaker must be 0 (off) or a positive count")
        if self.retry_statuses and not self.retry_dead:
            raise ConfigError("--status selects what --retry-dead sends again: add --retry-dead")
        if self.backoff_base < 0:
            raise ConfigError("--backoff-base must not be negative")
        if self.client not in ("http", "sdk"):
            raise ConfigError(f"--client must be http or sdk, not {self.client!r}")
        if self.output_path == self.dead_letter_path:
            raise ConfigError("the output and dead-letter files must be different files")
        if self.input_path in (self.output_path, self.dead_letter_path):
            raise ConfigError("the input file cannot also be an output file")

    @property
    def manifest_path(self) -> Path:
        """The small run manifest kept beside the results file."""
        return self.output_path.with_name(self.output_path.name + ".manifest.json")

    def replace(self, **changes: object) -> RunConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def manifest_path(results: Path) -> Path:
    """The small run manifest kept beside a results file."""
    return results.with_name(results.name + ".manifest.json")
