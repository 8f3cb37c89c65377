"""The options of ``batchrunner run``, all derived from one list of settings.

The list is :class:`~batchrunner.config.RunConfig`'s options (the library's settings) and
:class:`CliOnly`'s (how this command runs and reports). From it come the click options with
the defaults ``--help`` shows, the keys a job file may set with the type each must have, and
how an error about a setting is spelled on the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from batchrunner.config import RUN_SETTINGS, Setting, option, settings_of, type_problem
from batchrunner.errors import ConfigError

__all__ = [
    "FLAGS",
    "JOB_SETTINGS",
    "SETTINGS",
    "CliOnly",
    "given",
    "job_problem",
    "run_options",
    "split",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True, kw_only=True)
class CliOnly:
    """Settings of ``batchrunner run`` that are not the library's."""

    mock: bool = field(
        default=False,
        metadata=option("Run against the embedded mock server (no key needed).", switch=True),
    )
    quiet: bool = field(default=False, metadata=option("No progress display.", short="-q"))
    summary_json: Path | None = field(
        default=None, metadata=option("Write the summary here, as JSON.")
    )
    log_json: Path | None = field(
        default=None, metadata=option("Append the run's events here as JSON lines (-: stderr).")
    )
    progress_interval: float = field(
        default=5.0, metadata=option("Seconds between progress lines (off a terminal) and events.")
    )

    def __post_init__(self) -> None:
        if not self.progress_interval > 0:
            expected = "a positive number"
            message = f"progress_interval must be {expected}, not {self.progress_interval!r}"
            raise ConfigError(message, setting="progress_interval", expected=expected)


#: Every setting ``run`` takes, in the order ``--help`` lists them.
SETTINGS: tuple[Setting, ...] = RUN_SETTINGS + settings_of(CliOnly)
#: The keys a job file may set (the settings' names, underscores and all).
JOB_SETTINGS: dict[str, Setting] = {s.key: s for s in SETTINGS if s.option.job}
#: A setting's field name -> how the command line spells it (``rps`` -> ``--rps``).
FLAGS: dict[str, str] = {s.name: s.flag for s in SETTINGS if s.option.flag}
_CLI_ONLY = frozenset(s.key for s in settings_of(CliOnly))
_BY_KEY = {s.key: s for s in SETTINGS}


def run_options(f: F) -> F:
    """Decorate ``run`` with an argument or option per setting. None means "not given" (a
    flag included), so that a job file's value stands unless a flag overrides it."""
    for s in reversed(SETTINGS):
        if s.option.argument:
            f = click.argument(s.key, metavar=s.flag, type=click.Path(path_type=Path))(f)
        elif s.option.flag:
            f = click.option(*_declarations(s), s.key, default=None, help=_help(s), **_how(s))(f)
    return f


def _declarations(s: Setting) -> list[str]:
    if s.option.switch:
        return [f"{s.flag}/--no-{s.flag.removeprefix('--')}"]
    return [d for d in (s.option.short, s.flag) if d]


def _how(s: Setting) -> dict[str, Any]:
    types: dict[str, Any] = {
        "int": int,
        "ints": int,
        "number": float,
        "str": click.Choice(s.choices) if s.choices else str,
        "path": click.Path(path_type=Path),
    }
    how: dict[str, Any] = {"is_flag": True} if s.kind == "bool" and not s.option.switch else {}
    if s.kind in types:
        how["type"] = types[s.kind]
    if s.kind == "ints":
        how["multiple"] = True
    if s.option.envvar:
        how["envvar"] = s.option.envvar
    return how


def _help(s: Setting) -> str:
    """The help line with the real default in brackets (an on/off flag's default is off)."""
    default = s.option.unset
    if not default and s.option.switch:
        default = "on" if s.default else "off"
    elif not default and s.default not in (None, ()) and s.kind != "bool":
        default = f"{s.default:g}" if isinstance(s.default, float) else str(s.default)
    if s.option.envvar:
        default += f"; env {s.option.envvar}"
    return f"{s.option.help} [{default}]" if default else s.option.help


def given(flags: dict[str, Any]) -> dict[str, Any]:
    """The options given on the command line (by key), without those left unset."""
    return {k: v for k, v in flags.items() if v is not None and v != ()}


def split(settings: dict[str, Any]) -> tuple[dict[str, Any], CliOnly]:
    """Settings by key -> (RunConfig's keyword arguments by field name, the CLI's own).
    Paths become :class:`Path` whether a flag or a job file gave them."""
    library: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for key, value in settings.items():
        s = _BY_KEY[key]
        (own if key in _CLI_ONLY else library)[s.name] = Path(value) if s.kind == "path" else value
    return library, CliOnly(**own)


def job_problem(key: str, value: object) -> str | None:
    """What a job file's ``key`` must be, when ``value`` is not that; the same check the
    library makes of the setting, and paths must be strings."""
    kind = JOB_SETTINGS[key].kind
    if kind == "path":
        return None if isinstance(value, str) else "a string path"
    return type_problem(kind, value)
