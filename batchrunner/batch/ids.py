"""The ids a batch job covers, kept on disk while the job is out.

``TOKEN.ids`` holds one JSON array per id sent in the job: ``[custom_id, line, offset, fp]``
(the input line it came from, where that line starts, the request's fingerprint): all that
is needed to write its outcome in the shape an online run writes, and to read its request
back when it is dead-lettered. In memory, a resumed run keeps the covered ids as an
:class:`IdSet` (16 bytes an id) and bringing a job home keeps a :class:`JobIndex` (about 44
bytes an id), never a dict of strings.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import orjson

from batchrunner.errors import LedgerError
from batchrunner.input.idset import IdSet
from batchrunner.input.lines import Item

__all__ = ["IdsWriter", "JobIndex", "LineOffsets", "Row", "covered_ids", "read_ids"]

#: (input line, byte offset of that line, request fingerprint) of one id.
Row = tuple[int, int, str]


class IdsWriter:
    """Writes one job's ids file as its upload file is written; :meth:`close` fsyncs it."""

    __slots__ = ("_file", "_hash", "count", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] = open(path, "wb", buffering=1 << 16)  # noqa: SIM115 - closed in close()
        self._hash = hashlib.blake2b(digest_size=16)
        self.count = 0

    def add(self, item: Item, offset: int) -> None:
        line = orjson.dumps(
            [item.custom_id, item.line, offset, item.fp], option=orjson.OPT_APPEND_NEWLINE
        )
        self._file.write(line)
        self._hash.update(line)
        self.count += 1

    def close(self) -> str:
        """Flush to stable storage and close; returns the digest of the file."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._hash.hexdigest()

    def discard(self) -> None:
        """Close and remove an ids file whose job will not be created."""
        self._file.close()
        self.path.unlink(missing_ok=True)


def read_ids(path: Path, digest: str) -> Iterator[tuple[str, Row]]:
    """(custom_id, row) of each id in an ids file; :class:`LedgerError` when the file is
    gone or is not the one recorded (``digest``), found once it is read to the end."""
    check = hashlib.blake2b(digest_size=16)
    try:
        f = path.open("rb")
    except OSError as exc:
        raise _lost(path, exc.strerror or str(exc)) from None
    with f:
        for raw in f:
            check.update(raw)
            try:
                cid, line, offset, fp = orjson.loads(raw)
            except (orjson.JSONDecodeError, ValueError, TypeError):
                continue
            yield str(cid), (int(line), int(offset), str(fp))
    if check.hexdigest() != digest:
        raise _lost(path, "it is not the file recorded with the upload")


def _lost(path: Path, why: str) -> LedgerError:
    return LedgerError(
        f"cannot read the ids of a batch job from {path} ({why}); without them its "
        "outcomes cannot be brought home: use `restart` to start over (old files are kept)",
        path=path,
    )


def covered_ids(files: Iterable[tuple[Path, str]]) -> IdSet:
    """The ids of the given (ids file, digest) pairs (the jobs still out), as one set."""
    ids = IdSet()
    for path, digest in files:
        for cid, _ in read_ids(path, digest):
            ids.add(cid)
    return ids


class JobIndex:
    """custom_id -> :data:`Row` for one job's ids: an open-addressing table of the ids'
    64-bit hashes over flat arrays (two ids with one hash: ~3e-8 in a million, as
    :class:`~batchrunner.input.idset.IdSet` accepts)."""

    __slots__ = ("_fps", "_keys", "_lines", "_mask", "_offsets", "_rows")

    def __init__(self, expected: int) -> None:
        size = 8
        while size < 2 * expected:
            size *= 2
        self._keys = array("q", bytes(8 * size))
        # 32 bits for rows and line numbers (2 billion): 12 bytes an id less than 64.
        self._rows = array("i", bytes(4 * size))
        self._mask = size - 1
        self._lines, self._offsets, self._fps = array("i"), array("q"), array("Q")

    @classmethod
    def load(cls, path: Path, digest: str, expected: int) -> JobIndex:
        """The index of an ids file of ``expected`` ids (see :func:`read_ids`)."""
        index = cls(expected)
        for cid, row in read_ids(path, digest):
            index.add(cid, row)
        return index

    def add(self, custom_id: str, row: Row) -> None:
        if len(self._lines) * 2 >= self._mask:
            raise ValueError("more ids than the index was sized for")
        h = hash(custom_id) or 1  # 0 marks an empty slot
        i = self._slot(h)
        self._keys[i] = h
        self._rows[i] = len(self._lines)
        line, offset, fp = row
        self._lines.append(line)
        self._offsets.append(offset)
        self._fps.append(int(fp, 16))

    def get(self, custom_id: str) -> Row | None:
        h = hash(custom_id) or 1
        i = self._slot(h)
        if self._keys[i] != h:
            return None
        r = self._rows[i]
        return self._lines[r], self._offsets[r], format(self._fps[r], "016x")

    def _slot(self, h: int) -> int:
        """Where ``h`` is, or the empty slot where it would go."""
        keys, mask = self._keys, self._mask
        i = h & mask
        while (v := keys[i]) != 0 and v != h:
            i = (i + 1) & mask
        return i

    def __len__(self) -> int:
        return len(self._lines)


class LineOffsets:
    """Where each input line starts, read forward alongside the admission's own reading
    (it asks for increasing line numbers); one line in memory at a time."""

    __slots__ = ("_file", "_line", "_offset")

    def __init__(self, path: Path) -> None:
        self._file: IO[bytes] = path.open("rb")
        self._line, self._offset = 1, 0

    def offset_of(self, line: int) -> int:
        """The byte offset of physical line ``line`` (1-based)."""
        while self._line < line:
            raw = self._file.readline()
            if not raw:
                break
            self._offset += len(raw)
            self._line += 1
        return self._offset

    def close(self) -> None:
        self._file.close()
