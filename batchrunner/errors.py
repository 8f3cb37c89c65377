"""The exceptions batchrunner raises.

::

    BatchRunnerError                  root: every error the library raises on purpose
    ├── ConfigError                   a run cannot start: bad option, bad job file, missing key
    ├── LedgerError                   the output files disagree with the run (different input, ...)
    └── OutputWriteError              an outcome could not be written (disk full, permission, ...)

Per-item failures (a 429, a 400, a malformed line) are not exceptions: they are values
(:class:`batchrunner.clients.classify.Failure`) that end in the dead-letter file, so one bad item
never stops a run.
"""

from __future__ import annotations

__all__ = ["BatchRunnerError", "ConfigError", "LedgerError", "OutputWriteError"]


class BatchRunnerError(Exception):
    """Root of the errors batchrunner raises; its message is one line meant for the user."""


class ConfigError(BatchRunnerError):
    """The run cannot start as configured; the message says which setting and how to fix it."""


class LedgerError(BatchRunnerError):
    """The existing output files do not belong to this run."""


class OutputWriteError(BatchRunnerError):
    """Writing an outcome failed; the files stay valid and the run can be resumed."""

    def __init__(self, path: str, cause: OSError) -> None:
        reason = cause.strerror or type(cause).__name__
        super().__init__(f"cannot write {path}: {reason}; fix the cause and re-run to resume")
        self.path = path
        self.cause = cause
