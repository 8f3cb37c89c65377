"""Upload files for batch jobs, written as the items stream by (never the input in memory).

Each item becomes one line of the Batch API's input form, ``{"custom_id", "body"}``, in a
temporary file beside the run's jobs record, while its id goes to the job's ids file
(:mod:`batchrunner.batch.ids`). A file is closed, and handed over as a :class:`Chunk`, when
the next line would pass ``max_requests`` or ``max_bytes``; with ``group_by_model`` each
endpoint and model fills files of its own (a batch job runs one model on one endpoint).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

from batchrunner.batch.ids import IdsWriter, LineOffsets
from batchrunner.input.lines import Item

__all__ = ["Chunk", "Preparer", "upload_line"]

#: What an item may cost at most (USD), to hold the jobs to ``--max-cost``.
Costing = Callable[[Item], float]


def upload_line(item: Item) -> bytes:
    """The item as one line of a Batch API input file."""
    return orjson.dumps(
        {"custom_id": item.custom_id, "body": item.body}, option=orjson.OPT_APPEND_NEWLINE
    )


@dataclass(frozen=True, slots=True)
class Chunk:
    """A prepared upload: the file to send, the ids it covers, what it may cost."""

    token: str
    endpoint: str
    model: str
    upload: Path
    ids: Path
    count: int
    size: int
    ids_digest: str
    worst_cost: float


class _Open:
    """One upload file being written, with its ids file."""

    __slots__ = ("cost", "count", "endpoint", "file", "ids", "model", "size", "token", "upload")

    def __init__(self, folder: Path, endpoint: str, model: str) -> None:
        self.token = secrets.token_hex(8)
        self.endpoint, self.model = endpoint, model
        self.upload = folder / f".{self.token}.upload.tmp"
        self.file: IO[bytes] = open(self.upload, "wb", buffering=1 << 20)  # noqa: SIM115
        self.ids = IdsWriter(folder / f"{self.token}.ids")
        self.count = self.size = 0
        self.cost = 0.0

    def add(self, item: Item, line: bytes, offset: int, cost: float) -> None:
        self.file.write(line)
        self.ids.add(item, offset)
        self.count += 1
        self.size += len(line)
        self.cost += cost

    def close(self) -> Chunk:
        self.file.close()
        digest = self.ids.close()
        return Chunk(
            self.token, self.endpoint, self.model, self.upload, self.ids.path, self.count,
            self.size, digest, self.cost,
        )  # fmt: skip

    def discard(self) -> None:
        self.file.close()
        self.upload.unlink(missing_ok=True)
        self.ids.discard()


class Preparer:
    """Items in, full :class:`Chunk` s out; :meth:`finish` hands over the last ones."""

    __slots__ = ("_costing", "_folder", "_limits", "_offsets", "_open", "_single")

    def __init__(
        self,
        folder: Path,
        input_path: Path,
        limits: tuple[int, int],
        *,
        group_by_model: bool,
        costing: Costing | None = None,
    ) -> None:
        """``limits``: (requests, bytes) per file at most."""
        self._folder, self._limits, self._costing = folder, limits, costing
        self._single = not group_by_model
        self._offsets = LineOffsets(input_path)
        self._open: dict[tuple[str, str], _Open] = {}

    def add(self, item: Item, line: bytes, endpoint: str, model: str) -> Chunk | None:
        """Write ``line`` (:func:`upload_line` of ``item``) to the file of its endpoint and
        model; returns that file as a chunk when ``line`` would not fit in it, then starts a
        new one."""
        key = ("", "") if self._single else (endpoint, model)
        current = self._open.get(key)
        full = None
        max_requests, max_bytes = self._limits
        if current is not None and (
            current.count >= max_requests or current.size + len(line) > max_bytes
        ):
            full = current.close()
            current = None
        if current is None:
            current = self._open[key] = _Open(self._folder, endpoint, model)
        cost = self._costing(item) if self._costing is not None else 0.0
        current.add(item, line, self._offsets.offset_of(item.line), cost)
        return full

    def finish(self) -> list[Chunk]:
        """The files still open, as chunks."""
        chunks = [f.close() for f in self._open.values() if f.count]
        self._open.clear()
        self._offsets.close()
        return chunks

    def discard(self) -> None:
        """Remove the files still open (a run that stops half-way)."""
        for f in self._open.values():
            f.discard()
        self._open.clear()
        self._offsets.close()
