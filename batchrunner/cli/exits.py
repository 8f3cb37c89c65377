"""Exit codes, and the one table from library errors and stop reasons to them.

Every command runs inside :class:`Group`, which turns a :class:`BatchRunnerError` into a
one-line message (settings spelled as flags, :func:`flags_for`) and the exit code
:data:`ERROR_CODES` gives its class. How a run ended maps to a code through
:data:`STOP_CODES`.
"""

from __future__ import annotations

import re
from enum import IntEnum
from typing import Any, Final

import click

from batchrunner.cli.options import FLAGS
from batchrunner.errors import BatchRunnerError, ConfigError, WriteError
from batchrunner.vocabulary import StopReason

__all__ = [
    "ERROR_CODES",
    "EXIT_CODES_HELP",
    "STOP_CODES",
    "ExitCode",
    "Group",
    "error_code",
    "flags_for",
    "message",
    "stop_code",
]


class ExitCode(IntEnum):
    """What ``batchrunner`` exits with (README, "Exit codes"); all but USAGE resumable."""

    OK = 0  # every input line has a result
    DEAD_LETTERED = 1  # some lines are dead-lettered
    USAGE = 2  # usage or configuration error: nothing was sent
    ERROR = 3  # stopped on an error: a write failure, the breaker, a batch job that fell short
    PAUSED = 4  # the account's quota is spent
    BUDGET = 5  # stopped at the token or cost budget
    INCOMPLETE = 6  # merge: a shard missing or incomplete, an outcome doubled or left out
    INTERRUPTED = 130  # Ctrl-C / SIGTERM


#: What each code means, as ``run --help`` and the README list them.
MEANINGS: Final[dict[ExitCode, str]] = {
    ExitCode.OK: "every input line has a result",
    ExitCode.DEAD_LETTERED: "some lines are dead-lettered (this run or an earlier one)",
    ExitCode.USAGE: "usage or configuration error; nothing was sent",
    ExitCode.ERROR: "stopped on an error (a failed write, the breaker, unanswered batch ids)",
    ExitCode.PAUSED: "paused: the account's quota is spent; re-run when it renews",
    ExitCode.BUDGET: "stopped at --max-tokens-total / --max-cost; re-run with more",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C, SIGTERM); re-run the same command to resume",
}
#: The exit codes as a help epilog (``\b``: click keeps its lines as they are).
EXIT_CODES_HELP = "\b\nExit codes:\n" + "\n".join(
    f"  {int(code):<3}  {text}" for code, text in MEANINGS.items()
)

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
    "unanswered": ExitCode.ERROR,
}


def error_code(exc: BatchRunnerError) -> ExitCode:
    """The exit code for ``exc``, by the nearest class :data:`ERROR_CODES` names."""
    for cls in type(exc).__mro__:
        if cls in ERROR_CODES:
            return ERROR_CODES[cls]
    raise AssertionError("BatchRunnerError is in the table")


def stop_code(reason: StopReason | None) -> ExitCode:
    """The exit code of a run that stopped for ``reason`` (no reason is an error)."""
    return ExitCode.ERROR if reason is None else STOP_CODES[reason]


def message(exc: BatchRunnerError) -> str:
    """The one line shown for ``exc``, settings spelled as flags: a refused one
    (``rps must be ...`` becomes ``--rps must be ...``) and any named between backticks."""
    text = str(exc)
    if isinstance(exc, ConfigError) and exc.setting in FLAGS and exc.expected is not None:
        head = f"{exc.setting} must be {exc.expected}"
        if text.startswith(head):  # else not the library's shape: a job file's own message
            expected = _SETTING_NAMES.sub(lambda m: FLAGS[m.group(0)], exc.expected)
            return f"{FLAGS[exc.setting]} must be {expected}{text.removeprefix(head)}"
    return flags_for(text)


def flags_for(text: str) -> str:
    """A library message with each setting it names between backticks spelled as its flag:
    ``pass `restart` to start over`` becomes ``pass --restart to start over``. Only known
    settings: a server's words quoted in the message stay as they are."""
    return _QUOTED_SETTING.sub(lambda m: _SPELLED.get(m[1], m[0]), text)


# Whole words only: "rps" in "--rps", not in "rpsx"; the longest name first.
_SETTING_NAMES = re.compile(r"\b(" + "|".join(sorted(FLAGS, key=len, reverse=True)) + r")\b")
# How the library marks a setting in a message: a field name between backticks.
_QUOTED_SETTING = re.compile(r"`([a-z][a-z0-9_]*)`")
#: ``run``'s settings, and the one other a library message names (``dlq requeue --force``).
_SPELLED: Final[dict[str, str]] = FLAGS | {"force": "--force"}


class Group(click.Group):
    """A click group whose commands' library errors end as one line and a code, here only;
    its help lists each command's summary whole (click cuts them at 45 characters)."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BatchRunnerError as exc:
            click.echo(f"Error: {message(exc)}", err=True)  # as click shows its own errors
            ctx.exit(error_code(exc))
        except KeyboardInterrupt:  # Ctrl-C before a run catches signals itself (start-up)
            click.echo("interrupted", err=True)
            ctx.exit(ExitCode.INTERRUPTED)
