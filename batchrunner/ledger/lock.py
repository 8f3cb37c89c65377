"""One run, one writer: an exclusive lock beside each file a run writes.

The lock is an ``fcntl.flock`` on ``<file>.lock``, which holds the pid of the run that
took it. The kernel drops a flock when its holder's descriptor closes, so a run that dies,
``kill -9`` included, leaves no stale lock: the next run takes it over. A second run on
the same files is refused at once, naming the first one's pid. ``merge`` takes the same
locks, on its targets and on the shards' files it reads. ``status`` and ``dlq`` only read,
and take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from batchrunner.errors import LedgerError, OutputWriteError
from batchrunner.runfiles import lock_path

__all__ = ["RunLock"]

# How long a refused run waits for the holder's pid to appear: 20 x 5 ms.
_PID_TRIES, _PID_WAIT = 20, 0.005


class RunLock:
    """The locks on a run's files, held until :meth:`release` (or the process ends)."""

    __slots__ = ("_held",)

    def __init__(self, *guarded: Path) -> None:
        """Lock each of ``guarded`` (the results and dead-letter files), or raise
        :class:`LedgerError` naming the run that holds one, having taken none."""
        self._held: list[tuple[Path, int]] = []
        try:
            for path in guarded:
                lock = lock_path(path)
                self._held.append((lock, _acquire(lock, path)))
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Remove the lock files and let go (removed first, while still held, so that no
        run can lock a file that is about to disappear)."""
        while self._held:
            lock, fd = self._held.pop()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
            os.close(fd)


def _acquire(lock: Path, guarded: Path) -> int:
    """A descriptor of ``lock`` holding an exclusive flock, the pid written in it."""
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(str(lock), exc) from exc
    while True:
        fd = _open(lock)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise LedgerError(
                f"another run{holder} is writing {guarded}; wait for it to end, or stop it, "
                "and re-run",
                path=guarded,
            ) from None
        except OSError as exc:
            os.close(fd)
            raise LedgerError(f"cannot lock {lock}: {exc.strerror or exc}", path=lock) from None
        if _still_there(fd, lock):
            break
        # Its holder removed it between our open and our lock: lock the one there now.
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _open(lock: Path) -> int:
    try:
        return os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise OutputWriteError(str(lock), exc) from exc


def _still_there(fd: int, lock: Path) -> bool:
    try:
        here = os.stat(lock)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


def _holder(fd: int) -> str:
    """`` (pid N)`` as the holder wrote it, or nothing if it has not within a moment (it
    writes its pid right after taking the lock)."""
    for _ in range(_PID_TRIES):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return f" (pid {text})"
        time.sleep(_PID_WAIT)
    return ""
