"""Where each id's line starts in a results file, in 16 bytes an id: the ids' 64-bit hashes
and the offsets, in two arrays (open addressing), so that a results file of millions of
lines can be joined to its input without holding it in memory.

Two ids with the same hash share a slot (a chance of about 3e-8 in a million ids): a
lookup returns an offset that the caller checks against the line it finds there.
"""

from __future__ import annotations

from array import array

__all__ = ["OffsetIndex"]

#: Slots of a new index (64 KiB): a small file never grows it; a big one doubles its way up,
#: each doubling a rehash, so a larger start saves a few rehashes for memory a small one wastes.
_START = 1 << 12


class OffsetIndex:
    """id -> the byte offset of its line; a later ``put`` of the same id replaces it."""

    __slots__ = ("_hashes", "_mask", "_offsets", "_used")

    def __init__(self) -> None:
        self._hashes = array("q", bytes(8 * _START))
        self._offsets = array("q", bytes(8 * _START))
        self._mask = _START - 1
        self._used = 0

    def put(self, key: str, offset: int) -> None:
        h = hash(key) or 1  # 0 marks an empty slot
        i = self._slot(h)
        if self._hashes[i] == 0:
            self._hashes[i] = h
            self._used += 1
        self._offsets[i] = offset
        if 2 * self._used > self._mask:  # at most half full: short probes
            self._grow()

    def get(self, key: str) -> int | None:
        h = hash(key) or 1
        i = self._slot(h)
        return self._offsets[i] if self._hashes[i] == h else None

    def __len__(self) -> int:
        return self._used

    def _slot(self, h: int) -> int:
        """The slot holding ``h``, or the empty one where it would go."""
        hashes, mask = self._hashes, self._mask
        i = h & mask
        while (v := hashes[i]) != 0 and v != h:
            i = (i + 1) & mask
        return i

    def _grow(self) -> None:
        old = zip(self._hashes, self._offsets, strict=True)
        size = 2 * len(self._hashes)
        self._hashes, self._offsets = array("q", bytes(8 * size)), array("q", bytes(8 * size))
        self._mask = size - 1
        for h, offset in old:
            if h:
                i = self._slot(h)
                self._hashes[i], self._offsets[i] = h, offset
