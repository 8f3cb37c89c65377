"""Compact structures for millions of ids: fixed-width keys in flat arrays, no object per id.

A Python ``dict`` of ``str`` costs ~130 bytes an id; :class:`KeyTable` costs 16 bytes a slot
for the key plus 8 per value word, at most 80 % full (about 23 bytes an id with no value).

An id is kept as a 128-bit key (:func:`keys`): two 64-bit SipHash values (Python's own
``hash``, keyed at random in each process) of the id and of the id with a byte appended. Two
different ids taken for one is a chance of about 1e-25 among ten million, far below a disk's
undetected error rate; the keys are never written anywhere, so that they change from one
process to the next does not matter. SipHash takes half the time of a 128-bit blake2b, and
every id is hashed twice on resume (once in the results, once in the input).

Resuming ten million lines is mostly this module's loops, so they work on lists of ids: the
keys are made by ``map`` (no Python step per id) and each probe loop runs once per id with
everything it needs in local names. Open addressing with linear probing on one
``array('Q')``; the slot is picked from the key's second word by a multiply-shift, so a
table can have any size and be sized from the files. A slot whose two words are 0 is empty:
a real key is (0, 0) once in 2**128.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from operator import and_
from pathlib import Path

__all__ = [
    "MISSING",
    "TAKEN",
    "KeyTable",
    "Keys",
    "NumberSet",
    "estimate_lines",
    "key",
    "keys",
    "positions",
    "sorted_ints",
]

_M64 = (1 << 64) - 1
#: What :meth:`KeyTable.find` and :meth:`KeyTable.take` answer for a key the table lacks ...
MISSING = -1
#: ... and what :meth:`KeyTable.take` answers for a key taken before.
TAKEN = -2
#: Fill a table sized from an estimate reaches: linear probing needs ~2 probes to find a key
#: at 70 % full and ~6 to miss one; fuller saves memory and costs probes.
_FILL = 0.7
#: Past this, the estimate was short: grow by half (a few % over costs nothing, so it waits).
_MAX_FILL = 0.8
#: How much of a file :func:`estimate_lines` reads to learn its line length.
_SAMPLE = 1 << 20
#: Numbers a :class:`NumberSet` keeps a byte each for, up to here (64 MiB); beyond, only a
#: hand-edited file goes.
_NEAR = 1 << 26
#: Slots :meth:`KeyTable.entries` gives at once.
_CHUNK = 1 << 12
#: Values :func:`sorted_ints` sorts as Python ints at once (~40 MB), the rest in arrays.
_SORT_CHUNK = 1 << 20

#: The keys of a list of ids: their first words, and their second words, in the same order.
Keys = tuple[list[int], list[int]]


def keys(ids: Sequence[bytes]) -> Keys:
    """The 128-bit keys of ``ids`` as two lists of 64-bit words."""
    first = list(map(and_, map(hash, ids), repeat(_M64)))
    ends = map(bytes.__add__, ids, repeat(b"\x00"))
    return first, list(map(and_, map(hash, ends), repeat(_M64)))


def key(data: bytes) -> tuple[int, int]:
    """The key of one id: ``keys([data])``, without the lists."""
    return hash(data) & _M64, hash(data + b"\x00") & _M64


class KeyTable:
    """A map from 128-bit keys (ids, kept as their digests: :func:`keys`) to ``width``
    unsigned 64-bit words each.

    Slots are addressed by their offset in the array (:meth:`find`, :meth:`insert`), which
    stays valid until the next insert of a new key. The methods take lists of keys: one call
    does the work of a block of lines.
    """

    __slots__ = ("_cap", "_limit", "_marks", "_step", "_t", "_used")

    def __init__(self, width: int, expected: int = 0) -> None:
        self._step = 2 + width
        self._cap = max(8, math.ceil(expected / _FILL))
        self._limit = int(self._cap * _MAX_FILL)
        self._t = array("Q", bytes(8 * self._step * self._cap))
        self._used = 0
        self._marks = bytearray()  # one byte a slot, made at the first mark

    def __len__(self) -> int:
        return self._used

    @property
    def nbytes(self) -> int:
        """Memory held by the slots."""
        return self._t.itemsize * len(self._t)

    # One key at a time (a dead-letter entry as it is read, an in_force question): lists of
    # one would cost each ~3 µs more than this probe; blocks of keys take the *_all loops.
    def find(self, hi: int, lo: int) -> int:
        """The offset of the slot of key (``hi``, ``lo``), or :data:`MISSING`."""
        off = self._slot(hi, lo)
        return off if self._t[off] or self._t[off + 1] else MISSING

    def insert(self, hi: int, lo: int) -> int:
        """The offset of the slot of key (``hi``, ``lo``), made (values 0) if it had none."""
        if self._used >= self._limit:
            return self.insert_all([hi], [lo])[0]  # which grows the table first
        off, t = self._slot(hi, lo), self._t
        if not t[off] and not t[off + 1]:
            t[off], t[off + 1] = hi, lo
            self._used += 1
        return off

    def _slot(self, hi: int, lo: int) -> int:
        """The offset of the key's slot, or of the empty slot that ends its run."""
        t, step = self._t, self._step
        off = ((lo * self._cap) >> 64) * step
        while ((h := t[off]) != hi or t[off + 1] != lo) and (h or t[off + 1]):
            off = (off + step) % len(t)
        return off

    def find_all(self, his: list[int], los: list[int], mark: bool = False) -> list[int]:
        """The offset of each key's slot, or :data:`MISSING`. With ``mark``, each slot found
        is marked too, and one marked before (by this call or an earlier one) answers
        :data:`TAKEN` instead: the first claim of an id wins. Marks are kept while no new key
        is inserted."""
        t, step, cap = self._t, self._step, self._cap
        found: list[int] = []
        end, append = len(t), found.append
        if mark and not self._marks:
            self._marks = bytearray(cap)  # a byte a slot: fewer steps than a bit
        marks = self._marks
        for hi, lo in zip(his, los, strict=True):
            off = ((lo * cap) >> 64) * step
            while (h := t[off]) != hi or t[off + 1] != lo:
                if not h and not t[off + 1]:  # an empty slot ends the key's run: not there
                    off = MISSING
                    break
                off += step
                if off == end:
                    off = 0
            if mark and off >= 0:
                if marks[off // step]:
                    off = TAKEN
                else:
                    marks[off // step] = 1
            append(off)
        return found

    def insert_all(self, his: list[int], los: list[int]) -> list[int]:
        """The offset of each key's slot, made (values 0) for a key that had none."""
        if self._used + len(his) > self._limit:
            self._resize(
                max(math.ceil(self._cap * 1.5), math.ceil((self._used + len(his)) / _FILL))
            )
        t, step, cap, made = self._t, self._step, self._cap, []
        end, used = len(t), self._used
        for hi, lo in zip(his, los, strict=True):
            off = ((lo * cap) >> 64) * step
            while (h := t[off]) != hi or t[off + 1] != lo:
                if not h and not t[off + 1]:  # the empty slot ending the key's run: its own
                    t[off], t[off + 1] = hi, lo
                    used += 1
                    break
                off += step
                if off == end:
                    off = 0
            made.append(off)
        self._used = used
        return made

    def get(self, off: int, i: int = 0) -> int:
        """Value word ``i`` of the slot at ``off``."""
        return self._t[off + 2 + i]

    def put(self, off: int, value: int, i: int = 0) -> None:
        self._t[off + 2 + i] = value

    def entries(self) -> Iterator[tuple[Keys, list[list[int]]]]:
        """The keys of the used slots and their values (a list for each value word), a few
        thousand slots at a time."""
        return _entries(self._t, self._step)

    def _resize(self, cap: int) -> None:
        old = _entries(self._t, self._step)
        self._cap, self._t = cap, array("Q", bytes(8 * self._step * cap))
        self._limit = int(cap * _MAX_FILL)
        self._used, self._marks = 0, bytearray()
        for (his, los), values in old:
            offs = self.insert_all(his, los)
            for i, word in enumerate(values):
                for off, value in zip(offs, word, strict=True):
                    self.put(off, value, i)


def _entries(t: array[int], step: int) -> Iterator[tuple[Keys, list[list[int]]]]:
    for start in range(0, len(t), _CHUNK * step):
        words = [t[start + i : start + _CHUNK * step : step] for i in range(step)]
        used = [i for i, key in enumerate(zip(words[0], words[1], strict=True)) if any(key)]
        his, los, *values = ([word[i] for i in used] for word in words)
        yield (his, los), values


class NumberSet:
    """A set of ints (line numbers) in one byte each of a ``bytearray`` that grows to the
    largest, up to a limit; the rare others in a ``set``. A byte, not a bit: a block of
    numbers is added by one ``map``, no Python step each."""

    __slots__ = ("_far", "_near")

    def __init__(self) -> None:
        self._near = bytearray()
        self._far: set[int] = set()

    def add_all(self, numbers: list[int]) -> None:
        if not numbers:
            return
        near = self._near
        if min(numbers) < 0 or max(numbers) >= _NEAR:
            self._far.update(n for n in numbers if not 0 <= n < _NEAR)
            numbers = [n for n in numbers if 0 <= n < _NEAR]
        top = max(numbers, default=-1)
        if top >= len(near):
            near.extend(bytes(max(top + 1 - len(near), len(near))))  # doubling: few copies
        deque(map(near.__setitem__, numbers, repeat(1)), maxlen=0)

    def __contains__(self, n: int) -> bool:
        return bool(self._near[n]) if 0 <= n < len(self._near) else n in self._far


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


def positions(values: list[int], value: int) -> Iterator[int]:
    """The indices of ``value`` in ``values``, found by ``list.index`` (a search in C)."""
    i = -1
    try:
        while True:
            i = values.index(value, i + 1)
            yield i
    except ValueError:
        return
