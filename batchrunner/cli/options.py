"""The options of ``batchrunner run``, all derived from one list of settings.

The list is :class:`~batchrunner.config.RunConfig`'s options (the library's settings) and
:class:`CliOnly`'s (how this command runs and reports). From it come the click options with
the defaults ``--help`` shows, the keys a job file may set with the type each must have, and
how an error about a setting is spelled on the command line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
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
    "STDOUT",
    "CliOnly",
    "given",
    "in_job_terms",
    "job_problem",
    "run_options",
    "split",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True, kw_only=True)
class CliOnly:
    """Settings of ``batchrunner run`` that are not the library's: what it prints."""

    #: 0: progress and the summary table; 1 (-q): a one-line verdict; 2 (-qq): nothing.
    quiet: int = field(
        default=0,
        metadata=option("No progress, a one-line verdict; -qq: nothing.", short="-q", count=True),
    )
    silent: bool = field(default=False, metadata=option("Print nothing (-qq).", job=False))
    json: bool = field(
        default=False,
        metadata=option("Print the summary as one JSON object on stdout, nothing else.", job=False),
    )
    summary_json: Path | None = field(
        default=None, metadata=option("Write the summary here, as JSON (-: stdout).")
    )
    log_json: Path | None = field(
        default=None, metadata=option("Append the run's events here as JSON lines (-: stderr).")
    )
    progress_interval: float = field(
        default=5.0, metadata=option("Seconds between progress lines (off a terminal) and events.")
    )
    dry_run: bool = field(
        default=False,
        metadata=option(
            "Check INPUT and show counts, tokens, worst-case cost and time; send nothing.",
            job=False,
        ),
    )

    def __post_init__(self) -> None:
        if not self.progress_interval > 0:
            expected = "a positive number"
            message = f"progress_interval must be {expected}, not {self.progress_interval!r}"
            raise ConfigError(message, setting="progress_interval", expected=expected)

    @property
    def level(self) -> int:
        """How much is printed: 0 everything, 1 a verdict, 2 nothing."""
        return 2 if self.silent else min(int(self.quiet), 2)

    @property
    def json_to_stdout(self) -> bool:
        return self.json or self.summary_json == STDOUT


#: ``-`` where a path is written: standard output.
STDOUT = Path("-")


#: Every setting ``run`` takes, in the order ``--help`` lists them.
SETTINGS: tuple[Setting, ...] = RUN_SETTINGS + settings_of(CliOnly)
#: The keys a job file may set (the settings' names, underscores and all).
JOB_SETTINGS: dict[str, Setting] = {s.key: s for s in SETTINGS if s.option.job}
#: A setting's field name -> how the command line spells it (``rps`` -> ``--rps``).
FLAGS: dict[str, str] = {s.name: s.flag for s in SETTINGS if s.option.flag}
_CLI_ONLY = frozenset(s.key for s in settings_of(CliOnly))
_BY_KEY = {s.key: s for s in SETTINGS}
#: A setting's field name -> its key in a job file (``dead_letter_path`` -> ``dead_letter``).
_KEYS = {s.name: s.key for s in SETTINGS}
_NAMES = re.compile(r"\b(" + "|".join(sorted(_KEYS, key=len, reverse=True)) + r")\b")


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
    if s.kind == "count":
        return {"count": True}
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
    elif not default and s.default not in (None, ()) and s.kind not in ("bool", "count"):
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
        if s.kind == "path":
            value = Path(value)
        elif s.kind == "count":
            value = int(value)  # a job file's quiet = true is -q
        (own if key in _CLI_ONLY else library)[s.name] = value
    return library, CliOnly(**own)


def job_problem(key: str, value: object) -> str | None:
    """What a job file's ``key`` must be, when ``value`` is not that; the same check the
    library makes of the setting, and paths must be strings."""
    kind = JOB_SETTINGS[key].kind
    if kind == "path":
        return None if isinstance(value, str) else "a string path"
    return type_problem(kind, value)


def in_job_terms(exc: ConfigError, job: Path, from_job: Collection[str]) -> ConfigError:
    """``exc`` as a job file's reader needs it when the job file gave the setting it refuses:
    ``job file J: 'dead_letter' must be ...`` rather than the library's field name or a flag
    that was never typed. Any other error is returned as it is."""
    key = _KEYS.get(exc.setting or "")
    if key is None or key not in from_job or exc.expected is None:
        return exc
    head = f"{exc.setting} must be {exc.expected}"
    text = str(exc)
    if not text.startswith(head):
        return exc
    expected = _NAMES.sub(lambda m: repr(_KEYS[m.group(0)]), exc.expected)
    message = f"job file {job}: '{key}' must be {expected}{text.removeprefix(head)}"
    if exc.setting in FLAGS:  # how to override it without editing the file
        message += f" (on the command line: {FLAGS[exc.setting]})"
    return ConfigError(message, path=job, setting=key, expected=expected, found=exc.found)
