"""``--ordered``: results written in input order through a bounded reorder buffer.

Every admitted item takes a sequence number; its result line (or ``None``: it was
dead-lettered or left pending) is put back under that number, and lines leave the buffer
only from the head, in order. The engine admits an item only when the buffer has room, so
a slow item holds back at most ``capacity`` later results — and memory stays bounded.
A kill loses the results still buffered (they are sent again on resume); a stop flushes them.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["OrderedWriter"]


class OrderedWriter:
    __slots__ = ("_buffer", "_head", "_next", "_on_flushed", "_write")

    def __init__(self, write: Callable[[bytes], None], on_flushed: Callable[[], None]) -> None:
        self._write, self._on_flushed = write, on_flushed
        self._buffer: dict[int, bytes | None] = {}
        self._head = self._next = 0

    def take(self) -> int:
        """The next sequence number, in admission (= input) order."""
        seq, self._next = self._next, self._next + 1
        return seq

    def put(self, seq: int, line: bytes | None) -> None:
        """Hand back ``seq``'s outcome; writes whatever is now contiguous from the head."""
        self._buffer[seq] = line
        while self._head in self._buffer:
            ready = self._buffer.pop(self._head)
            self._head += 1
            if ready is not None:
                self._write(ready)
            self._on_flushed()

    def flush_all(self) -> None:
        """At the end of a stopped run: write what is buffered, in order, skipping gaps."""
        for seq in sorted(self._buffer):
            line = self._buffer.pop(seq)
            if line is not None:
                self._write(line)
        self._head = self._next

    @property
    def buffered(self) -> int:
        return len(self._buffer)
