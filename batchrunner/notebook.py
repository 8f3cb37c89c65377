"""A notebook-sized API: a list of prompts or requests in, one :class:`Result` per request
out, in the order given::

    results = await batchrunner.arun_list(["Hi", "Bonjour"], model="mistral-small-latest")
    [r.text for r in results]

Underneath it is an ordinary run (the same retries, pacing, dead letters and resume): the
list is written as a JSONL input in ``workdir`` (a temporary folder, removed afterwards,
when none is given). With a ``workdir`` the files stay, and the same list run again there
resumes instead of sending twice. The results are read back whole: this is for lists that
fit in memory; for files, use :func:`batchrunner.run` and ``batchrunner export``.

May import: ``config``, ``errors``, ``runfiles``, ``vocabulary``, ``input``, ``ledger``,
``export``, ``api``.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, Literal

import anyio
import orjson

from batchrunner.api import Progress, arun
from batchrunner.config import RunConfig
from batchrunner.errors import ConfigError
from batchrunner.export.answers import Answer, answer_of
from batchrunner.export.join import Joined, RunFiles, joined
from batchrunner.ledger.manifest import implicit_id_prefix, read_manifest

__all__ = ["Result", "arun_list", "run_list"]

Status = Literal["ok", "dead", "pending"]
_OWN_FILES = ("input_path", "output_path", "dead_letter_path")
_SETTINGS = tuple(f.name for f in fields(RunConfig) if f.name not in _OWN_FILES)


@dataclass(frozen=True, slots=True)
class Result:
    """One request's outcome. ``response`` is the API's answer body (``status`` "ok"),
    ``error`` the dead-letter entry's error (``status`` "dead": status_code, type,
    message); a run that stopped early leaves the rest "pending"."""

    request: Any
    custom_id: str | None
    status: Status
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def answer(self) -> Answer:
        """The answer's text or embedding, finish reason and tokens."""
        return answer_of(self.response)

    @property
    def text(self) -> str | None:
        return self.answer.text

    @property
    def embedding(self) -> list[float] | list[list[float]] | None:
        return self.answer.embedding


def run_list(
    requests: Sequence[str | Mapping[str, Any]],
    *,
    workdir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    **settings: Any,
) -> list[Result]:
    """Send ``requests`` (prompts, or request dicts in any input form) and return their
    results in the same order (blocking). ``settings`` are :class:`RunConfig`'s (``model``,
    ``endpoint``, ``rps``, ``mock``, ...). Inside a running event loop use :func:`arun_list`."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        run = partial(arun_list, requests, workdir=workdir, progress=progress, **settings)
        return anyio.run(run, backend="asyncio")
    raise RuntimeError(
        "batchrunner.run_list() blocks, and this thread already runs an event loop (a "
        "notebook cell does): use `results = await batchrunner.arun_list(...)` instead"
    )


async def arun_list(
    requests: Sequence[str | Mapping[str, Any]],
    *,
    workdir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    **settings: Any,
) -> list[Result]:
    """:func:`run_list` in the running event loop."""
    _check_settings(settings)
    data = _jsonl(requests)
    with _folder(workdir) as folder:
        name = f"requests-{hashlib.blake2b(data, digest_size=6).hexdigest()}.jsonl"
        path = folder / name
        if not path.exists():  # the same list again: the same file, and the run resumes
            path.write_bytes(data)
        config = RunConfig(input_path=path, **settings)
        await arun(config, progress=progress)
        return await anyio.to_thread.run_sync(_collect, config, requests)


def _check_settings(settings: dict[str, Any]) -> None:
    for name in settings:
        if name in _OWN_FILES:
            raise ConfigError(
                f"run_list writes its own files: leave {name} out (give workdir= to keep them)",
                setting=name,
            )
        if name not in _SETTINGS:
            close = difflib.get_close_matches(name, _SETTINGS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"{name} is not a RunConfig setting{hint}", setting=name)


def _jsonl(requests: Sequence[str | Mapping[str, Any]]) -> bytes:
    lines = []
    for i, request in enumerate(requests):
        if isinstance(request, str):
            request = {"prompt": request}
        if not isinstance(request, Mapping):
            kind = type(request).__name__
            raise ConfigError(
                f"requests[{i}] must be a prompt (str) or a request (dict), not {kind}"
            )
        try:
            lines.append(orjson.dumps(dict(request)) + b"\n")
        except TypeError as exc:
            raise ConfigError(f"requests[{i}] cannot be written as JSON: {exc}") from None
    if not lines:
        raise ConfigError("requests is empty: give at least one prompt or request")
    return b"".join(lines)


@contextmanager
def _folder(workdir: str | os.PathLike[str] | None) -> Iterator[Path]:
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="batchrunner-") as tmp:
            yield Path(tmp)
        return
    folder = Path(workdir)
    try:
        folder.mkdir(exist_ok=True)  # one level: a typo does not scatter folders
    except OSError as exc:
        raise ConfigError(f"workdir {folder} cannot be made: {exc.strerror}", path=folder) from None
    yield folder


def _collect(config: RunConfig, requests: Sequence[Any]) -> list[Result]:
    """Each input line's outcome, in input order (one line per request), by the ledger's
    rule (:func:`~batchrunner.export.join.joined`)."""
    prefix = implicit_id_prefix(read_manifest(config.manifest_path))
    run = RunFiles(
        config.input_path,
        config.output_path,
        config.dead_letter_path,
        config.endpoint,
        config.model,
        prefix,
    )
    return [_result(r, j) for r, j in zip(requests, joined(run), strict=True)]


def _result(request: Any, j: Joined) -> Result:
    record = j.record or {}
    if j.status == "ok":
        response = record.get("response")
        body = response.get("body") if isinstance(response, dict) else None
        return Result(request, j.custom_id, "ok", response=body if isinstance(body, dict) else None)
    error = record.get("error") if j.status == "dead" else None
    return Result(request, j.custom_id, j.status, error=error if isinstance(error, dict) else None)
