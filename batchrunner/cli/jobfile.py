"""Job files: TOML that names an input, a model, an endpoint and limits.

The keys are the ``run`` options' names with underscores (:data:`JOB_SETTINGS`, derived
from the one list of settings), and ``[mock_server]`` takes the mock server's options
(:data:`batchrunner.mock.cli.JOB_KEYS`). Relative paths are resolved against the job
file's own folder, so a job runs the same from any working directory.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any

from batchrunner.cli.options import JOB_SETTINGS, job_problem
from batchrunner.errors import ConfigError
from batchrunner.mock.cli import JOB_KEYS as MOCK_KEYS

__all__ = ["load_job"]


def load_job(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run settings, mock-server settings) from a job file; one-line errors."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"job file {path} does not exist", path=path) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"job file {path} is not valid TOML: {exc}", path=path) from None
    mock = data.pop("mock_server", {})
    prices = data.pop("prices", {})
    if not isinstance(prices, dict) or not all(isinstance(v, dict) for v in prices.values()):
        raise ConfigError(
            f'job file {path}: [prices."MODEL"] tables need input and output',
            path=path,
            setting="prices",
        )
    if prices:
        data["prices"] = prices
    if not isinstance(mock, dict):
        raise ConfigError(f"job file {path}: [mock_server] must be a table", path=path)
    _check_keys(path, data, JOB_SETTINGS, "")
    _check_keys(path, mock, MOCK_KEYS, "mock_server.")
    _check_types(path, data)
    if "input" not in data:
        raise ConfigError(f"job file {path} has no 'input'", path=path, setting="input")
    for key, value in data.items():
        if JOB_SETTINGS[key].kind == "path":
            data[key] = os.path.normpath(path.parent / value)
    return data, mock


def _check_types(path: Path, data: dict[str, Any]) -> None:
    """A job file's values have the types the settings have: a quoted "false" is not false."""
    for key, value in data.items():
        expected = job_problem(key, value)
        if expected is not None:
            raise ConfigError(
                f"job file {path}: '{key}' must be {expected}, not {value!r}",
                path=path,
                setting=key,
                expected=expected,
                found=value,
            )


def _check_keys(path: Path, table: dict[str, Any], known: Collection[str], prefix: str) -> None:
    if "api_key" in table:
        raise ConfigError(
            f"job file {path}: there is no api_key key: the key is read only from "
            "MISTRAL_API_KEY, so that it is never written in a file; export it instead",
            path=path,
            setting="api_key",
        )
    unknown = sorted(set(table) - set(known))
    if unknown:
        names = ", ".join(prefix + k for k in unknown)
        raise ConfigError(
            f"job file {path}: unknown key(s) {names}{_guess(unknown, known)}", path=path
        )


def _guess(unknown: list[str], known: Collection[str]) -> str:
    """``; did you mean 'rps'?`` for a key one typo away from a known one."""
    guesses = {k: difflib.get_close_matches(k, list(known), n=1) for k in unknown}
    found = [(k, g[0]) for k, g in guesses.items() if g]
    if not found:
        return ""
    if len(unknown) == 1:
        return f"; did you mean {found[0][1]!r}?"
    return "; did you mean " + ", ".join(f"{g!r} for {k!r}" for k, g in found) + "?"
