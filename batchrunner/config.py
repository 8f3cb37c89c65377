"""Run configuration: one frozen value that the CLI, a job file or a script builds.

The settings are defined here once. Each :class:`RunConfig` field that can be given from
outside a script carries an :class:`Option` in its metadata (help line, spelling, whether a
job file may set it); :func:`settings_of` reads them back, with each field's kind taken from
its type. ``batchrunner run``'s flags, the job-file keys and their type checks, the defaults
shown by ``--help`` and the type checks below all come from there.
"""

from __future__ import annotations

import math
import os
import re
import types
import urllib.parse
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from batchrunner.errors import ConfigError
from batchrunner.runfiles import (
    MANIFEST_SUFFIX,
    check_apart,
    check_distinct,
    dead_letter_beside,
    manifest_path,
    recorded_dead_letter,
    run_files,
)

__all__ = [
    "BATCH_MAX_BYTES",
    "DEFAULT_ENDPOINT",
    "DEFAULT_SERVER_URL",
    "ENDPOINTS",
    "MANIFEST_SUFFIX",
    "MAX_CONCURRENCY",
    "MAX_POOL",
    "RUN_SETTINGS",
    "ClientKind",
    "Kind",
    "Option",
    "RunConfig",
    "Setting",
    "Shard",
    "Via",
    "default_paths",
    "manifest_path",
    "option",
    "settings_of",
    "type_problem",
]

DEFAULT_SERVER_URL = "https://api.mistral.ai"
DEFAULT_ENDPOINT = "/v1/chat/completions"

#: The Mistral Batch API endpoint names this tool can send, and the body field each needs.
ENDPOINTS: dict[str, str] = {
    "/v1/chat/completions": "messages",
    "/v1/embeddings": "input",
    "/v1/fim/completions": "prompt",
}

#: Requests in flight at most when ``concurrency`` is not set: the ceiling of the adaptive
#: pool and the HTTP client's connection limit. Higher buys nothing against one API host
#: but sockets and memory; a user who needs more sets ``concurrency``.
MAX_POOL = 1024
#: The most ``concurrency`` may ask for. Each request in flight costs a worker, a socket and
#: read-ahead room; no API host serves more from one client, and a million would take
#: minutes and gigabytes to set up before the first request (issue 9).
MAX_CONCURRENCY = 4096

ClientKind = Literal["http", "sdk"]

#: ``online`` sends each request itself; ``batch`` hands them to Mistral's Batch API as jobs.
Via = Literal["online", "batch"]

#: The size cap of one uploaded batch file: under the Files API's 512 MB, with room for
#: the multipart envelope whichever way "MB" is counted.
BATCH_MAX_BYTES = 500_000_000

#: What a setting holds, as a command line and a job file spell it.
Kind = Literal["bool", "int", "number", "str", "path", "ints", "table", "count"]

_OPTION = "batchrunner.option"
#: An output path left out (Path("") is the current folder, never a file to write).
_UNSET = Path()


@dataclass(frozen=True, slots=True, kw_only=True)
class Option:
    """How one setting is given from outside a script: its flag and its job-file key.

    ``key`` is its name on the command line (``--key-with-dashes``) and in job files, when
    that is not the field's name. ``unset`` says in ``--help`` what the default means when
    the default is None or computed. ``switch`` gives a boolean a ``--no-`` form; ``flag``
    False makes a setting job-file only, ``job`` False command-line only; ``argument``
    makes it the command's positional argument (``INPUT``); ``count`` makes a level of a
    repeated flag (``-qq``).
    """

    help: str
    key: str = ""
    short: str = ""
    unset: str = ""
    choices: tuple[str, ...] = ()
    envvar: str = ""
    switch: bool = False
    flag: bool = True
    job: bool = True
    argument: bool = False
    count: bool = False


def option(help: str, **how: Any) -> dict[str, Option]:
    """The metadata of a field that is an option: ``field(metadata=option("..."))``."""
    return {_OPTION: Option(help=help, **how)}


@dataclass(frozen=True, slots=True)
class Setting:
    """One option of a settings dataclass: field name, outside name, kind, default."""

    name: str
    key: str
    kind: Kind
    optional: bool
    default: Any
    option: Option
    choices: tuple[str, ...]

    @property
    def flag(self) -> str:
        """How the command line spells it: ``--max-attempts``, ``INPUT``."""
        return self.key.upper() if self.option.argument else "--" + self.key.replace("_", "-")


def settings_of(cls: type[Any]) -> tuple[Setting, ...]:
    """The options of dataclass ``cls``, in field order (fields without an Option are left
    out: they are set by the program, not by a user)."""
    hints = get_type_hints(cls)
    found = []
    for f in fields(cls):
        how = f.metadata.get(_OPTION)
        if how is None:
            continue
        kind, optional, literal = _kind(hints[f.name])
        kind = "count" if how.count else kind
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        default = None if default is MISSING else default
        choices = how.choices or literal
        found.append(Setting(f.name, how.key or f.name, kind, optional, default, how, choices))
    return tuple(found)


def _kind(hint: Any) -> tuple[Kind, bool, tuple[str, ...]]:
    """(kind, None allowed, the Literal's values) of a field's type."""
    args = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
    optional = type(None) in args
    (base,) = (a for a in args if a is not type(None))
    origin = get_origin(base)
    if origin is Literal:
        return "str", optional, tuple(get_args(base))
    kinds: dict[Any, Kind] = {bool: "bool", int: "int", float: "number", str: "str", Path: "path"}
    if base in kinds:
        return kinds[base], optional, ()
    if origin is tuple:
        return "ints", optional, ()
    if origin in (Mapping, dict):
        return "table", optional, ()
    raise TypeError(f"no option kind for {hint!r}")


def type_problem(kind: Kind, value: object) -> str | None:
    """What a value of ``kind`` must be, when ``value`` is not one (a quoted "false" is not
    false, 2.5 is not a whole number); None when it is fine or the kind is not checked here."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    checks: dict[Kind, tuple[bool, str]] = {
        "bool": (isinstance(value, bool), "true or false"),
        "count": (isinstance(value, int) and 0 <= value <= 2, "true, false, 0, 1 or 2"),
        "path": (isinstance(value, str | os.PathLike), "a path (str or Path)"),
        "int": (isinstance(value, int) and not isinstance(value, bool), "a whole number"),
        "number": (is_number, "a number"),
        "str": (isinstance(value, str), "a string"),
    }
    ok, expected = checks.get(kind, (True, ""))
    return None if ok else expected


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count``, counted from 0 as a Kubernetes Indexed Job counts its
    pods: ``0/4`` … ``3/4``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard | None:
        """``"K/N"`` (whole numbers, ``0 <= K < N``) as a shard; ``None`` when it is not one."""
        found = _SHARD.fullmatch(text.strip())
        if found is None:
            return None
        index, count = int(found[1]), int(found[2])
        return cls(index, count) if index < count else None


_SHARD = re.compile(r"(\d+)\s*/\s*(\d+)", re.ASCII)


def default_paths(
    input_path: str | os.PathLike[str], shard: Shard | None = None
) -> tuple[Path, Path]:
    """The results and dead-letter paths used when none are given: the results beside the
    input, named after the shard when there is one (``prompts.shard-2-of-8.results.jsonl``),
    the dead letters beside the results (:func:`~batchrunner.runfiles.dead_letter_beside`)."""
    input_path = Path(input_path)
    stem = input_path.name.removesuffix(".jsonl")
    if shard is not None:
        stem += f".shard-{shard.index}-of-{shard.count}"
    results = input_path.with_name(f"{stem}.results.jsonl")
    return results, dead_letter_beside(results)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """Everything one run needs. Build it directly, or through the CLI / a job file.

    The help line of each option is in its field's metadata. The API key is kept out of
    ``repr`` so that printing a config never leaks it.
    """

    input_path: Path = field(
        metadata=option("A .jsonl file or a jobs/NAME.toml job file.", key="input", argument=True)
    )
    #: Paths may be given as ``str``; they are kept as :class:`Path`. Left out, the results
    #: go beside the input and the dead letters beside the results (:func:`default_paths`),
    #: or where the results' manifest says an earlier run put them.
    output_path: Path = field(
        default=_UNSET,
        metadata=option(
            "Results JSONL.", key="output", short="-o", unset="<stem>.results.jsonl beside INPUT"
        ),
    )
    dead_letter_path: Path = field(
        default=_UNSET,
        metadata=option(
            "Dead-letter JSONL.",
            key="dead_letter",
            unset="<output stem>.dead.jsonl beside --output, or the one the run already uses",
        ),
    )
    endpoint: str = field(
        default=DEFAULT_ENDPOINT,
        metadata=option("API endpoint.", choices=tuple(ENDPOINTS)),
    )
    model: str | None = field(
        default=None, metadata=option("Model for lines whose body names none.")
    )
    rps: float | None = field(default=None, metadata=option("Requests per second.", unset="no cap"))
    tpm: int | None = field(
        default=None,
        metadata=option("Tokens per minute (prompt + completion) at most.", unset="no cap"),
    )
    #: None sizes the pool from the rate and the latency.
    concurrency: int | None = field(
        default=None,
        metadata=option(
            f"Requests in flight at most (1 to {MAX_CONCURRENCY:,}).",
            unset=f"adaptive, up to {MAX_POOL}",
        ),
    )
    max_attempts: int = field(default=8, metadata=option("Attempts per item, first included."))
    timeout: float = field(default=120.0, metadata=option("Seconds per request."))
    backoff_base: float = field(default=0.5, metadata=option("First backoff ceiling, seconds."))
    backoff_max: float = field(default=30.0, metadata=option("Largest backoff ceiling, seconds."))
    max_retry_after: float = field(
        default=300.0, metadata=option("Longest Retry-After honoured, seconds.")
    )
    server_url: str = field(
        default=DEFAULT_SERVER_URL,
        metadata=option("API base URL.", envvar="MISTRAL_SERVER_URL"),
    )
    client: ClientKind = field(default="http", metadata=option("How requests are sent."))
    restart: bool = field(
        default=False, metadata=option("Move old output aside and start over.", job=False)
    )
    allow_changed_input: bool = field(
        default=False, metadata=option("Resume although the input was edited.")
    )
    drain_timeout: float = field(
        default=10.0, metadata=option("Seconds to finish in-flight on Ctrl-C.")
    )
    #: Send dead-lettered ids again (those with one of ``retry_statuses``, or all).
    retry_dead: bool = field(
        default=False, metadata=option("Send this run's dead-lettered ids again.", job=False)
    )
    retry_statuses: tuple[int, ...] = field(
        default=(), metadata=option("With --retry-dead: only these.", key="status", job=False)
    )
    #: Write results in input order, holding at most ``reorder_buffer`` of them back.
    ordered: bool = field(default=False, metadata=option("Write results in input order."))
    reorder_buffer: int = field(
        default=1000, metadata=option("With --ordered: results held back at most.")
    )
    #: Stop admitting before these would be passed (resumable with a larger budget).
    max_tokens_total: int | None = field(
        default=None, metadata=option("Stop before this many tokens are spent.", unset="none")
    )
    max_cost: float | None = field(
        default=None, metadata=option("Stop before this many USD are spent.", unset="none")
    )
    #: Price overrides per model: ``{"model": {"input": usd_per_m, "output": usd_per_m}}``.
    prices: Mapping[str, Mapping[str, float]] = field(
        default_factory=dict, metadata=option("Prices per model.", flag=False)
    )
    #: Fatal failures of one cause in a row (401, 403, 404, unknown model) that stop the
    #: run with the items left pending; 0 turns the breaker off.
    breaker: int = field(
        default=10, metadata=option("Fatal failures in a row that stop the run (0: off).")
    )
    preflight: bool = field(
        default=True,
        metadata=option("Check key and model with GET /v1/models first.", switch=True),
    )
    via: Via = field(default="online", metadata=option("Send online, or as Batch API jobs."))
    batch_max_requests: int = field(
        default=1_000_000, metadata=option("With --via batch: requests per job at most.")
    )
    batch_max_bytes: int = field(
        default=BATCH_MAX_BYTES, metadata=option("With --via batch: bytes per uploaded file.")
    )
    batch_group_by_model: bool = field(
        default=False,
        metadata=option("With --via batch: one job per model (else other models are dead)."),
    )
    #: Polling waits grow from ``batch_poll`` to ``batch_poll_max`` (x1.5 a poll).
    batch_poll: float = field(
        default=5.0, metadata=option("With --via batch: first wait between polls, seconds.")
    )
    batch_poll_max: float = field(
        default=60.0, metadata=option("With --via batch: longest wait between polls, seconds.")
    )
    cancel: bool = field(
        default=False,
        metadata=option(
            "With --via batch: cancel this run's live jobs, keep what they sent.", job=False
        ),
    )
    #: ``K/N``: send only the lines of shard K (from 0) of N (:mod:`batchrunner.input.shard`).
    shard: str | None = field(
        default=None,
        metadata=option(
            "Only shard K of N (K from 0); auto/N takes K from the environment.", unset="all"
        ),
    )
    #: Start the embedded mock server on 127.0.0.1 for the run (no key needed), with the
    #: ``mock_server`` settings (``python -m batchrunner.mock`` options, underscored).
    mock: bool = field(
        default=False,
        metadata=option("Run against the embedded mock server (no key needed).", switch=True),
    )
    mock_server: Mapping[str, Any] = field(default_factory=dict)
    #: None reads ``MISTRAL_API_KEY`` from the environment.
    api_key: str | None = field(default=None, repr=False)
    fsync_interval: float = 1.0
    #: The command that started the run, recorded so that ``status`` can say how to resume.
    command: str | None = None

    def __post_init__(self) -> None:
        _convert(self)
        for s in RUN_SETTINGS:
            value = getattr(self, s.name)
            if value is None and s.optional:
                continue
            expected = type_problem(s.kind, value)
            if expected is not None:
                raise _refused(s.name, expected, value)
            if s.choices and value not in s.choices:
                raise _refused(s.name, "one of " + ", ".join(s.choices), value)
        _check_ranges(self)
        _check_shard(self)
        _check_secrets(self)  # first: the checks after it may show the URL
        _check_url(self)
        _check_together(self)

    @property
    def manifest_path(self) -> Path:
        """The small run manifest kept beside the results file."""
        return manifest_path(self.output_path)

    def files(self) -> list[tuple[str, Path]]:
        """Every file a run reads or writes, each with what it is (:func:`run_files`)."""
        return run_files(self.input_path, self.output_path, self.dead_letter_path)

    def check_apart(self, setting: str, path: Path) -> None:
        """Refuse ``path`` as ``setting`` (a file the config does not hold, such as the
        summary) when it is one of the run's :meth:`files`, however it is spelled."""
        check_apart(setting, path, self.files())

    @property
    def shard_spec(self) -> Shard | None:
        """``shard`` as a :class:`Shard`; ``None``: the whole input."""
        return None if self.shard is None else Shard.parse(self.shard)


#: RunConfig's options, in field order.
RUN_SETTINGS = settings_of(RunConfig)


def _convert(c: RunConfig) -> None:
    """Paths given as ``str`` become :class:`Path`, the outputs left out go where
    :func:`default_paths` (or the manifest of a run begun) says, and a key not given is read
    from ``MISTRAL_API_KEY`` (a blank one is none)."""
    for name in ("input_path", "output_path", "dead_letter_path"):
        value = getattr(c, name)
        if not isinstance(value, str | os.PathLike):
            raise _refused(name, "a path (str or Path)", value)
        object.__setattr__(c, name, Path(value))
    shard = Shard.parse(c.shard) if isinstance(c.shard, str) else None  # a bad one: refused later
    if c.output_path == _UNSET:
        object.__setattr__(c, "output_path", default_paths(c.input_path, shard)[0])
    if c.dead_letter_path == _UNSET:
        dead = recorded_dead_letter(c.output_path) or dead_letter_beside(c.output_path)
        object.__setattr__(c, "dead_letter_path", dead)
    key = os.environ.get("MISTRAL_API_KEY", "") if c.api_key is None else c.api_key
    if not isinstance(key, str):
        raise _refused("api_key", "a string")  # the value is never shown
    object.__setattr__(c, "api_key", key.strip() or None)


_NOT_SHOWN = object()


def _refused(setting: str, expected: str, found: object = _NOT_SHOWN) -> ConfigError:
    """``{setting} must be {expected}, not {found}``: the one shape of a refused setting,
    which the CLI re-spells with its flags."""
    shown = "" if found is _NOT_SHOWN else f", not {found!r}"
    found = None if found is _NOT_SHOWN else found
    message = f"{setting} must be {expected}{shown}"
    return ConfigError(message, setting=setting, expected=expected, found=found)


def _check_ranges(c: RunConfig) -> None:
    least = {
        "concurrency": 1,
        "tpm": 1,
        "max_attempts": 1,
        "reorder_buffer": 1,
        "breaker": 0,
        "batch_max_requests": 1,
        "batch_max_bytes": 1,
    }
    for name, low in least.items():
        value = getattr(c, name)
        if value is not None and value < low:
            raise _refused(name, f"at least {low}", value)
    if c.concurrency is not None and c.concurrency > MAX_CONCURRENCY:
        raise _refused("concurrency", f"at most {MAX_CONCURRENCY}", c.concurrency)
    if not c.backoff_base >= 0:
        raise _refused("backoff_base", "at least 0", c.backoff_base)
    # inf is no rate cap, and neither HTTP stack takes an endless timeout: both are finite.
    for name in ("rps", "timeout"):
        value = getattr(c, name)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise _refused(name, "a positive number", value)
    positive = ("backoff_max", "max_retry_after", "drain_timeout", "max_cost")
    for name in (*positive, "batch_poll", "batch_poll_max"):
        value = getattr(c, name)
        if value is not None and not value > 0:
            raise _refused(name, "a positive number", value)


def _check_shard(c: RunConfig) -> None:
    if c.shard is not None and Shard.parse(c.shard) is None:
        expected = "K/N with whole numbers 0 <= K < N (auto/N is for the command line)"
        raise _refused("shard", expected, c.shard)


def _check_url(c: RunConfig) -> None:
    """A server URL the HTTP stacks can use: checked here, not met as a traceback later."""
    try:
        url = urllib.parse.urlsplit(c.server_url)
        port_ok = url.port is None or url.port > 0
    except ValueError:  # a port out of range, a bracket left open
        url, port_ok = None, False
    if url is None or url.scheme not in ("http", "https") or not url.hostname or not port_ok:
        # Shown only when it cannot hold a secret (a user name, a password): see above.
        readable = url is not None and "@" not in c.server_url
        shown = c.server_url if readable else _NOT_SHOWN
        raise _refused("server_url", "an http:// or https:// URL with a host", shown)


def _check_together(c: RunConfig) -> None:
    if c.retry_statuses and not c.retry_dead:
        raise _refused("retry_statuses", "given with retry_dead (it selects what is sent again)")
    check_distinct(c.files())
    if c.cancel and c.via != "batch":
        raise _refused("cancel", "given with via batch (it cancels this run's batch jobs)")
    if c.via == "batch" and c.model is None and not c.batch_group_by_model:
        expected = "given with via batch (a batch job runs one model), or batch_group_by_model"
        raise _refused("model", expected)
    if c.via == "batch" and c.max_tokens_total is not None:
        raise _refused("max_tokens_total", "left out with via batch (its budget is max_cost)")
    if c.batch_poll_max < c.batch_poll:
        raise _refused("batch_poll_max", "at least batch_poll", c.batch_poll_max)


def _check_secrets(c: RunConfig) -> None:
    """The key goes in one header and nowhere else, so it must be a header's plain text;
    and a URL is written to the manifest, so it must not carry credentials. Neither
    message shows the value: it may be (or hold) a secret."""
    if c.api_key is not None and not all(33 <= ord(ch) <= 126 for ch in c.api_key):
        expected = "printable ASCII without spaces or line breaks (check MISTRAL_API_KEY)"
        raise _refused("api_key", expected)
    try:
        url = urlsplit(c.server_url)
        credentials = url.username is not None or url.password is not None
    except ValueError:  # not a URL at all: _check_url says so, without showing it
        credentials = "@" in c.server_url
    if credentials:
        expected = "a URL without a user name or password (the key goes in MISTRAL_API_KEY)"
        raise _refused("server_url", expected)
