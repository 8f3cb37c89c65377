"""Compact structures for millions of ids: fixed-width keys in flat arrays, no object per id.

A Python ``dict`` of ``str`` costs ~130 bytes an id; :class:`KeyTable` costs 16 bytes a slot
for the key plus 8 per value word, at most 80 % full (about 23 bytes an id with no value).

An id is kept as a 128-bit :func:`key`: two 64-bit SipHash values (Python's own ``hash``,
keyed at random in each process) of the id and of the id with a byte appended. Two
different ids taken for one is a chance of about 1e-25 among ten million, far below a disk's
undetected error rate; the keys are never written anywhere, so that they change from one
process to the next does not matter. SipHash takes half the time of a 128-bit blake2b, and
every id is hashed twice on resume (once in the results, once in the input).

Open addressing with linear probing on one ``array('Q')``; the slot is picked from the key's
second word by a multiply-shift, so a table can have any size and be sized from the files.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["TAKEN", "BitSet", "KeyTable", "estimate_lines", "key", "sorted_ints"]

_M64 = (1 << 64) - 1
#: What :meth:`KeyTable.take` answers for a key taken before.
TAKEN = -2
#: Set in every key's first word, so that a slot whose first word is 0 is empty.
_USED = 1 << 63
#: Fill a table sized from an estimate reaches: linear probing needs ~2 probes to find a key
#: at 70 % full and ~6 to miss one; fuller saves memory and costs probes.
_FILL = 0.7
#: Past this, the estimate was short: grow by half (a few % over costs nothing, so it waits).
_MAX_FILL = 0.8
#: How much of a file :func:`estimate_lines` reads to learn its line length.
_SAMPLE = 1 << 20
#: Values :func:`sorted_ints` sorts as Python ints at once (~40 MB), the rest in arrays.
_SORT_CHUNK = 1 << 20


def key(data: bytes) -> tuple[int, int]:
    """The two words a :class:`KeyTable` keeps of ``data`` (127 bits of hash: the top bit is
    set so that a used slot is never all zeros)."""
    return hash(data) & _M64 | _USED, hash(data + b"\x00") & _M64


class KeyTable:
    """A map from :func:`key` keys (ids, kept as their digests) to ``width`` unsigned 64-bit
    words each.

    Slots are addressed by their offset in the array (:meth:`find`, :meth:`insert`), which
    stays valid until the next insert of a new key.
    """

    __slots__ = ("_cap", "_limit", "_marks", "_step", "_t", "_used")

    def __init__(self, width: int, expected: int = 0) -> None:
        self._step = 2 + width
        self._cap = max(8, math.ceil(expected / _FILL))
        self._limit = int(self._cap * _MAX_FILL)
        self._t = array("Q", bytes(8 * self._step * self._cap))
        self._used = 0
        self._marks = bytearray()  # one bit a slot, made at the first mark

    def __len__(self) -> int:
        return self._used

    @property
    def nbytes(self) -> int:
        """Memory held by the slots."""
        return self._t.itemsize * len(self._t)

    def find(self, hi: int, lo: int) -> int:
        """The offset of the slot of key (``hi``, ``lo``), or -1."""
        t, step = self._t, self._step
        off, end = ((lo * self._cap) >> 64) * step, len(t)
        while (h := t[off]) != hi or t[off + 1] != lo:  # hi is never 0: an empty slot ends
            if h == 0:
                return -1
            off += step
            if off == end:
                off = 0
        return off

    def insert(self, hi: int, lo: int) -> int:
        """The offset of the slot of key (``hi``, ``lo``), made (values 0) if it had none."""
        if self._used >= self._limit:
            self._resize(math.ceil(self._cap * 1.5))
        t, step = self._t, self._step
        off, end = ((lo * self._cap) >> 64) * step, len(t)
        while (h := t[off]) != 0:  # as in find: the key's slot, or the empty one ending its run
            if h == hi and t[off + 1] == lo:
                return off
            off += step
            if off == end:
                off = 0
        t[off], t[off + 1] = hi, lo
        self._used += 1
        return off

    def get(self, off: int, i: int = 0) -> int:
        """Value word ``i`` of the slot at ``off``."""
        return self._t[off + 2 + i]

    def put(self, off: int, value: int, i: int = 0) -> None:
        self._t[off + 2 + i] = value

    def take(self, hi: int, lo: int) -> int:
        """Mark the slot of key (``hi``, ``lo``) and return its offset; -1 when the key is
        absent, :data:`TAKEN` when its slot was marked already. Marks are kept while no
        new key is inserted."""
        t, step = self._t, self._step  # find's loop, inline: once per input line on resume
        off, end = ((lo * self._cap) >> 64) * step, len(t)
        while (h := t[off]) != hi or t[off + 1] != lo:
            if h == 0:
                return -1
            off += step
            if off == end:
                off = 0
        slot = off // step
        if not self._marks:
            self._marks = bytearray((self._cap >> 3) + 1)
        bit = 1 << (slot & 7)
        if self._marks[slot >> 3] & bit:
            return TAKEN
        self._marks[slot >> 3] |= bit
        return off

    def _resize(self, cap: int) -> None:
        old, step = self._t, self._step
        self._cap, self._t = cap, array("Q", bytes(8 * step * cap))
        self._limit = int(cap * _MAX_FILL)
        self._used, self._marks = 0, bytearray()
        for off in range(0, len(old), step):
            if old[off]:
                new = self.insert(old[off], old[off + 1])
                self._t[new + 2 : new + step] = old[off + 2 : off + step]


class BitSet:
    """Non-negative ints as bits of a ``bytearray`` that grows to the largest one."""

    __slots__ = ("_bits",)

    def __init__(self, size: int = 0) -> None:
        self._bits = bytearray((size + 7) >> 3)

    def add(self, n: int) -> None:
        bits, i = self._bits, n >> 3
        if i >= len(bits):
            bits.extend(bytes(max(i + 1 - len(bits), len(bits))))  # doubling: few copies
        bits[i] |= 1 << (n & 7)

    def __contains__(self, n: int) -> bool:
        bits, i = self._bits, n >> 3
        return i < len(bits) and bool(bits[i] >> (n & 7) & 1)


def estimate_lines(path: Path) -> int:
    """About how many lines ``path`` has, from its size and its first lines' length."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            sample = f.read(_SAMPLE)
    except FileNotFoundError:
        return 0
    lines = sample.count(b"\n") or 1
    return lines if len(sample) == size else math.ceil(size * lines / len(sample))


def sorted_ints(values: Iterable[int]) -> Iterator[int]:
    """``values`` (each < 2**64) in order, holding 8 bytes each and one chunk as ints."""
    runs: list[array[int]] = []
    chunk: list[int] = []
    for v in values:
        chunk.append(v)
        if len(chunk) == _SORT_CHUNK:
            runs.append(array("Q", sorted(chunk)))
            chunk = []
    chunk.sort()
    if not runs:
        yield from chunk
        return
    runs.append(array("Q", chunk))
    del chunk
    yield from heapq.merge(*runs)
