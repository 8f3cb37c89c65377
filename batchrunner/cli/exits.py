"""Exit codes, and the one table from library errors and stop reasons to them.

Every command runs inside :class:`Group`, which turns a :class:`BatchRunnerError` into a
one-line message (settings spelled as flags) and the exit code :data:`ERROR_CODES` gives
its class. How a run ended maps to a code through :data:`STOP_CODES`.
"""

from __future__ import annotations

import re
from enum import IntEnum
from typing import Any, Final

import click

from batchrunner.cli.options import FLAGS
from batchrunner.errors import BatchRunnerError, ConfigError, WriteError
from batchrunner.vocabulary import StopReason

__all__ = ["ERROR_CODES", "STOP_CODES", "ExitCode", "Group", "error_code", "message", "stop_code"]


class ExitCode(IntEnum):
    """What ``batchrunner`` exits with (README, "Exit codes"); all but USAGE resumable."""

    OK = 0  # every input line has a result
    DEAD_LETTERED = 1  # some lines are dead-lettered
    USAGE = 2  # usage or configuration error: nothing was sent
    ERROR = 3  # stopped on an error: a write failure, the breaker, a batch job that fell short
    PAUSED = 4  # the account's quota is spent
    BUDGET = 5  # stopped at the token or cost budget
    INTERRUPTED = 130  # Ctrl-C / SIGTERM


#: An error's exit code: that of its class's nearest ancestor in this table.
ERROR_CODES: Final[dict[type[BatchRunnerError], ExitCode]] = {
    BatchRunnerError: ExitCode.USAGE,  # config, ledger, dlq: refused before anything was done
    WriteError: ExitCode.ERROR,  # a file could not be written: fix the cause, re-run
}

#: Why a run stopped before its input was exhausted -> its exit code.
STOP_CODES: Final[dict[StopReason, ExitCode]] = {
    "interrupted": ExitCode.INTERRUPTED,
    "fatal": ExitCode.ERROR,
    "write_error": ExitCode.ERROR,
    "quota": ExitCode.PAUSED,
    "budget": ExitCode.BUDGET,
    "incomplete": ExitCode.ERROR,
}


def error_code(exc: BatchRunnerError) -> ExitCode:
    """The exit code for ``exc``, by the nearest class :data:`ERROR_CODES` names."""
    for cls in type(exc).__mro__:
        if cls in ERROR_CODES:
            return ERROR_CODES[cls]
    raise AssertionError("BatchRunnerError is in the table")


def stop_code(reason: str | None) -> ExitCode:
    """The exit code of a run that stopped for ``reason`` (an unknown one is an error)."""
    for known, code in STOP_CODES.items():
        if known == reason:
            return code
    return ExitCode.ERROR


def message(exc: BatchRunnerError) -> str:
    """The one line shown for ``exc``: a refused setting is spelled as its flag
    (``rps must be ...`` becomes ``--rps must be ...``); anything else as it is."""
    text = str(exc)
    if not isinstance(exc, ConfigError) or exc.setting not in FLAGS or exc.expected is None:
        return text
    head = f"{exc.setting} must be {exc.expected}"
    if not text.startswith(head):  # not the library's shape, e.g. a job file's own message
        return text
    expected = _SETTING_NAMES.sub(lambda m: FLAGS[m.group(0)], exc.expected)
    return f"{FLAGS[exc.setting]} must be {expected}{text.removeprefix(head)}"


# Whole words only: "rps" in "--rps", not in "rpsx"; the longest name first.
_SETTING_NAMES = re.compile(r"\b(" + "|".join(sorted(FLAGS, key=len, reverse=True)) + r")\b")


class Group(click.Group):
    """A click group whose commands' library errors end as one line and a code, here only."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BatchRunnerError as exc:
            click.echo(f"Error: {message(exc)}", err=True)  # as click shows its own errors
            ctx.exit(error_code(exc))
