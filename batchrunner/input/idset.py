"""A set of ids that costs 16 bytes an id, where a Python ``set`` of ``str`` costs ~90.

Only the ids' 64-bit hashes are kept, in an open-addressing table on an ``array``. Two
different ids with the same hash would be taken for one: with Python's 64-bit string hash,
salted anew in every process, that is a chance of about 3e-8 in a run of a million ids.
"""

from __future__ import annotations

from array import array

__all__ = ["IdSet"]

#: Slots of a new set (32 KiB): a small file never grows it; a big one doubles its way up,
#: each doubling a rehash, so a larger start saves a few rehashes for memory a small one wastes.
_START = 1 << 12


class IdSet:
    __slots__ = ("_mask", "_table", "_used")

    def __init__(self) -> None:
        self._table = array("q", bytes(8 * _START))
        self._mask = _START - 1
        self._used = 0

    def add(self, key: str) -> bool:
        """Add ``key``; ``False`` when it was there already."""
        h = hash(key) or 1  # 0 marks an empty slot
        table, mask = self._table, self._mask
        i = h & mask
        while (v := table[i]) != 0:
            if v == h:
                return False
            i = (i + 1) & mask
        table[i] = h
        self._used += 1
        if 2 * self._used > mask:  # keep it at most half full: short probes
            self._grow()
        return True

    def __contains__(self, key: str) -> bool:
        h = hash(key) or 1
        table, mask = self._table, self._mask
        i = h & mask
        while (v := table[i]) != 0:
            if v == h:
                return True
            i = (i + 1) & mask
        return False

    def __len__(self) -> int:
        return self._used

    def _grow(self) -> None:
        old = self._table
        size = 2 * len(old)
        table = array("q", bytes(8 * size))
        mask = size - 1
        for h in old:
            if h:
                i = h & mask
                while table[i]:
                    i = (i + 1) & mask
                table[i] = h
        self._table, self._mask = table, mask
