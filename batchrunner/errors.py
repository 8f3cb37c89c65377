"""The exceptions batchrunner raises, all under one root.

::

    BatchRunnerError          root: every error raised on purpose; .path, the file concerned
    ├── ConfigError           a run cannot start as configured: a bad setting, job file or
    │                         key; .setting, .expected, .found say which value and why
    ├── LedgerError           the files on disk do not belong to this run (another input, ...)
    ├── DlqError              a dead-letter file cannot be used as asked (missing, unreadable,
    │                         a re-queue target that exists)
    └── WriteError            a file could not be written; .cause is the OSError
        ├── OutputWriteError  an outcome or the manifest: the files stay valid, re-run to resume
        └── DlqWriteError     a re-queue file

Each message is one line meant for the user. Library messages name settings as
:class:`~batchrunner.config.RunConfig` names them, never as flags: a refused value as
``rps must be a positive number, not -1`` (from :class:`ConfigError`'s context attributes),
any other setting a message points to between backticks (``pass `restart` to start over``).
The command line re-spells both with its flags (``--rps ...``, ``pass --restart ...``).

Per-item failures (a 429, a 400, a malformed line) are not exceptions: they are values
(:class:`batchrunner.vocabulary.Failure`) that end in the dead-letter file, so one bad item
never stops a run.
"""

from __future__ import annotations

import os

__all__ = [
    "BatchRunnerError",
    "ConfigError",
    "DlqError",
    "DlqWriteError",
    "LedgerError",
    "OutputWriteError",
    "WriteError",
]

PathLike = str | os.PathLike[str]


class BatchRunnerError(Exception):
    """Root of the errors batchrunner raises; its message is one line meant for the user.

    ``path`` is the file the error is about (as a string), or None.
    """

    def __init__(self, message: str, *, path: PathLike | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else os.fspath(path)


class ConfigError(BatchRunnerError):
    """The run cannot start as configured; the message says which setting and how to fix it.

    ``setting`` names the value at fault (a :class:`~batchrunner.config.RunConfig` field, or
    a job file's key), ``expected`` what it must be, ``found`` what it was; each is None when
    it does not apply (a missing API key has no setting).
    """

    def __init__(
        self,
        message: str,
        *,
        path: PathLike | None = None,
        setting: str | None = None,
        expected: str | None = None,
        found: object = None,
    ) -> None:
        super().__init__(message, path=path)
        self.setting = setting
        self.expected = expected
        self.found = found


class LedgerError(BatchRunnerError):
    """The existing output files do not belong to this run."""


class DlqError(BatchRunnerError):
    """The dead-letter file (or what goes with it) cannot be used as asked."""


class WriteError(BatchRunnerError):
    """A file could not be written; ``cause`` is the OSError, when there was one."""

    def __init__(
        self, message: str, *, path: PathLike | None = None, cause: OSError | None = None
    ) -> None:
        super().__init__(message, path=path)
        self.cause = cause


class OutputWriteError(WriteError):
    """Writing an outcome failed; the files stay valid and the run can be resumed."""

    def __init__(self, path: str, cause: OSError) -> None:
        reason = cause.strerror or type(cause).__name__
        message = f"cannot write {path}: {reason}; fix the cause and re-run to resume"
        super().__init__(message, path=path, cause=cause)


class DlqWriteError(WriteError):
    """A re-queue file could not be written."""
