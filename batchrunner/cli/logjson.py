"""``--log-json PATH``: the run's events as JSON lines, for ``tail -f PATH | jq``.

Each event is one line written by one ``write(2)`` on a file opened for appending, so a
reader never sees half a line and a resumed run continues the same log; ``-`` is stderr.
A log that cannot be written is given up with one warning: it never stops the run. Settings
a stop message names are spelled as flags, as on the terminal.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType

import orjson

from batchrunner.cli.exits import flags_for
from batchrunner.config import RunConfig
from batchrunner.engine.events import Event
from batchrunner.errors import ConfigError

__all__ = ["JsonLines", "open_log"]


def open_log(path: Path, config: RunConfig) -> JsonLines:
    """The log at ``path`` for the run of ``config``; never one of the run's own files."""
    if str(path) != "-":
        config.check_apart("log_json", path)
    try:
        return JsonLines(path)
    except OSError as exc:
        message = f"cannot open the --log-json file {path}: {exc.strerror or exc}"
        raise ConfigError(message, setting="log_json", path=path) from None


def _spelled(event: Event) -> Event:
    """``event`` with the settings its stop message names spelled as flags: a halt's
    ``message``, the end summary's ``stop_message``."""
    if isinstance(message := event.get("message"), str):
        event = event | {"message": flags_for(message)}
    summary = event.get("summary")
    if isinstance(summary, dict) and isinstance(stop := summary.get("stop_message"), str):
        event = event | {"summary": summary | {"stop_message": flags_for(stop)}}
    return event


class JsonLines:
    """The sink of :class:`~batchrunner.engine.events.Events` that writes ``path``."""

    __slots__ = ("_fd", "_own", "path", "problem")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._own = str(path) != "-"
        #: Why the log stopped being written (a full disk, say), for a warning at the end.
        self.problem: str | None = None
        if self._own:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        else:
            self._fd = sys.stderr.fileno()

    def __call__(self, event: Event) -> None:
        if self.problem is not None:
            return
        line = orjson.dumps(_spelled(event), option=orjson.OPT_APPEND_NEWLINE, default=str)
        try:
            view = memoryview(line)
            while view:  # a pipe may take a long line in parts; a file takes it whole
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self.problem = f"--log-json {self.path}: {exc.strerror or exc}; the log stops here"

    def close(self) -> None:
        if self._own:
            os.close(self._fd)

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
