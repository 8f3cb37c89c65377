"""``run --mock``: the mock server in a child process of its own, for the length of a run.

A child process, not a thread, so that the server's CPU does not compete with the
runner's for one interpreter lock: the run measures what a real server would give it.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from batchrunner.errors import ConfigError

__all__ = ["mock_args", "running_mock"]

_PREFIX = "mock server listening on "
_PR_SET_PDEATHSIG = 1


def mock_args(settings: dict[str, Any]) -> list[str]:
    """Command-line flags of ``python -m batchrunner.mock`` for job-file settings."""
    args: list[str] = []
    for key, value in settings.items():
        if value is None:
            continue
        args += ["--" + key.replace("_", "-"), str(value)]
    return args


@contextmanager
def running_mock(settings: dict[str, Any]) -> Iterator[str]:
    """Start the mock server on 127.0.0.1 (a free port) and yield its URL; stop it after."""
    cmd = [sys.executable, "-m", "batchrunner.mock", "--host", "127.0.0.1", "--port", "0"]
    # stderr goes to a file, not a pipe: nobody reads it while the server runs.
    errors = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  (closed in the finally below)
    proc = subprocess.Popen(
        cmd + mock_args(settings),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        preexec_fn=_die_with_parent,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        if not first.startswith(_PREFIX):
            proc.wait(timeout=10)
            errors.seek(0)
            last = (errors.read().strip().splitlines() or [first or "?"])[-1]
            reason = last.removeprefix("Error: ")  # click's prefix; ours follows
            raise ConfigError(f"the mock server did not start: {reason}")
        yield first.removeprefix(_PREFIX)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        errors.close()


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM it when the runner dies, even by ``kill -9``."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the child outlives a killed parent, as any child would
