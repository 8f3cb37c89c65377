"""Job files: TOML that names an input, a model, an endpoint and limits.

The keys are the ``run`` options' names with underscores. Relative paths are resolved
against the job file's own folder, so a job runs the same from any working directory.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from batchrunner.errors import ConfigError

__all__ = ["MOCK_KEYS", "RUN_KEYS", "load_job"]

RUN_KEYS = frozenset(
    {
        "input", "output", "dead_letter", "endpoint", "model", "rps", "concurrency",
        "max_attempts", "timeout", "server_url", "client", "mock", "backoff_base",
        "backoff_max", "max_retry_after", "drain_timeout", "quiet", "summary_json",
        "allow_changed_input", "breaker", "preflight", "tpm", "ordered", "reorder_buffer",
        "max_tokens_total", "max_cost", "prices",
    }
)  # fmt: skip
MOCK_KEYS = frozenset(
    {"latency_ms", "jitter_ms", "error_rate", "limit_rps", "limit_tpm", "seed", "retry_after_ms"}
)
_PATH_KEYS = ("input", "output", "dead_letter", "summary_json")


def load_job(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run settings, mock-server settings) from a job file; one-line errors."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"job file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"job file {path} is not valid TOML: {exc}") from None
    mock = data.pop("mock_server", {})
    prices = data.pop("prices", {})
    if not isinstance(prices, dict) or not all(isinstance(v, dict) for v in prices.values()):
        raise ConfigError(f'job file {path}: [prices."MODEL"] tables need input and output')
    if prices:
        data["prices"] = prices
    if not isinstance(mock, dict):
        raise ConfigError(f"job file {path}: [mock_server] must be a table")
    _check_keys(path, data, RUN_KEYS, "")
    _check_keys(path, mock, MOCK_KEYS, "mock_server.")
    _check_types(path, data)
    if "input" not in data:
        raise ConfigError(f"job file {path} has no 'input'")
    base = path.parent
    for key in _PATH_KEYS:
        if key in data:
            if not isinstance(data[key], str):
                raise ConfigError(f"job file {path}: '{key}' must be a string path")
            data[key] = os.path.normpath(base / data[key])
    return data, mock


_BOOL = frozenset({"mock", "quiet", "ordered", "allow_changed_input", "preflight"})
_NUMBER = frozenset(
    {"rps", "timeout", "backoff_base", "backoff_max", "max_retry_after", "drain_timeout",
     "max_cost"}
)  # fmt: skip
_INT = frozenset(
    {"concurrency", "max_attempts", "breaker", "tpm", "reorder_buffer", "max_tokens_total"}
)
_STR = frozenset({"endpoint", "model", "server_url", "client"})


def _check_types(path: Path, data: dict[str, Any]) -> None:
    """A job file's values have the types the options have: a quoted "false" is not false."""
    for key, value in data.items():
        if key in _BOOL:
            ok, want = isinstance(value, bool), "true or false"
        elif key in _INT:
            ok, want = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif key in _NUMBER:
            ok, want = isinstance(value, int | float) and not isinstance(value, bool), "a number"
        elif key in _STR:
            ok, want = isinstance(value, str), "a string"
        else:
            continue
        if not ok:
            raise ConfigError(f"job file {path}: '{key}' must be {want}, not {value!r}")


def _check_keys(path: Path, table: dict[str, Any], known: frozenset[str], prefix: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        names = ", ".join(prefix + k for k in unknown)
        raise ConfigError(f"job file {path}: unknown key(s) {names}")
