"""An append-only JSONL file whose lines are always whole.

Each line is one ``write(2)`` on a file opened ``O_APPEND``: once it returns, the line
belongs to the kernel and survives the process being killed. A write that fails half-way
(disk full, file size limit) is cut back off, so the file never holds a torn line that we
wrote; a torn last line can only come from a kill, and :func:`repair_torn_tail` mends it
on the next start, keeping a copy of what it cuts. ``fsync`` runs on a timer and at close,
not per line.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

import orjson

from batchrunner.errors import OutputWriteError
from batchrunner.runfiles import torn_path

__all__ = ["AppendFile", "repair_torn_tail"]


def repair_torn_tail(path: Path) -> int:
    """Make ``path`` end with a whole line; returns how many bytes were cut off.

    A last line that is a whole JSON object lacking only its newline (a kill between the
    two) is completed, not cut. Anything else after the last newline is cut, after being
    appended to ``<path>.torn`` (:func:`~batchrunner.config.torn_path`): nothing a repair
    removes is lost.
    """
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return 0
        keep = _last_newline_end(fd, size)
        tail = os.pread(fd, size - keep, keep)
        if _is_object(tail):
            os.pwrite(fd, b"\n", size)
            os.fsync(fd)
            return 0
        _keep_copy(torn_path(path), tail)
        os.ftruncate(fd, keep)
        os.fsync(fd)
        return size - keep
    finally:
        os.close(fd)


def _is_object(raw: bytes) -> bool:
    try:
        return isinstance(orjson.loads(raw), dict)
    except orjson.JSONDecodeError:
        return False


def _keep_copy(torn: Path, tail: bytes) -> None:
    """Append ``tail`` as one line to ``torn``, on disk before the caller cuts it."""
    try:
        fd = os.open(torn, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, tail + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputWriteError(str(torn), exc) from exc


def _last_newline_end(fd: int, size: int) -> int:
    pos = size
    chunk = 1 << 16
    while pos > 0:
        start = max(0, pos - chunk)
        block = os.pread(fd, pos - start, start)
        idx = block.rfind(b"\n")
        if idx >= 0:
            return start + idx + 1
        pos = start
    return 0


class AppendFile:
    """Whole-line appends to one file; errors become :class:`OutputWriteError`."""

    __slots__ = ("_dirty", "_fd", "_opened_size", "_size", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputWriteError(str(path), exc) from exc
        self._size = self._opened_size = os.fstat(self._fd).st_size
        self._dirty = False

    @property
    def grew(self) -> bool:
        """Whether a line was appended since the file was opened."""
        return self._size != self._opened_size

    def write(self, line: bytes) -> None:
        """Append one complete line (ending in ``\\n``) or raise, leaving the file as it was."""
        try:
            written = os.write(self._fd, line)
        except OSError as exc:
            raise OutputWriteError(str(self.path), exc) from exc
        if written != len(line):
            # Writing the rest names the real cause (ENOSPC, EFBIG) when it fails.
            try:
                os.write(self._fd, line[written:])
                cause = OSError(errno.EIO, "short write")
            except OSError as exc:
                cause = exc
            self._cut_back()
            raise OutputWriteError(str(self.path), cause)
        self._size += written
        self._dirty = True

    def _cut_back(self) -> None:
        # If even this fails, the next start repairs the torn tail instead.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._size)

    def sync(self) -> None:
        """Flush to stable storage if anything was written since the last sync."""
        if self._dirty:
            self._dirty = False
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise OutputWriteError(str(self.path), exc) from exc

    def close(self) -> None:
        try:
            self.sync()
        finally:
            os.close(self._fd)
