"""The run's Batch API jobs, recorded durably beside the results before anything depends on them.

``<results>.jobs/jobs.jsonl`` is append-only: one whole line per record, fsynced before the
step that depends on it. A job (one uploaded file, known by the random ``token`` its job
carries in its metadata) goes through these records, each with ``event``, ``token`` and
``at``::

    uploaded  file_id, model, endpoint, count, bytes, ids, ids_digest   (before the job exists)
    created   job_id
    status    status, total, completed, succeeded, failed, started_at  (when they change)
    homing    (its outcomes are being written into the results and dead-letter files)
    homed     results, dead, pending
    dropped   reason          (an upload whose job will never be created: ``--cancel``)

A job's state is the replay of its records. ``<results>.jobs/TOKEN.ids`` lists the ids it
covers until it is brought home. Since the upload is recorded before the job is created, a
kill between the two leaves a token to look the job up by, never a job whose ids are lost.
"""

from __future__ import annotations

import contextlib
import os
import time
from calendar import timegm
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from batchrunner.errors import LedgerError
from batchrunner.ledger.appendfile import AppendFile, repair_torn_tail
from batchrunner.ledger.records import loads_object, read_records, utc_iso
from batchrunner.runfiles import jobs_dir

__all__ = [
    "ENDED",
    "ChunkRecord",
    "JobBook",
    "age_seconds",
    "check_no_live_jobs",
    "eta_seconds",
    "read_jobs",
    "sync_folder",
]

#: Job statuses after which a job answers nothing more.
ENDED: Final = frozenset({"SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"})
_BOOK = "jobs.jsonl"
_COUNTS = ("total", "completed", "succeeded", "failed")


@dataclass(slots=True)
class ChunkRecord:
    """One uploaded file and the job that runs it, as the records say."""

    token: str
    file_id: str
    model: str
    endpoint: str
    count: int
    ids: str
    ids_digest: str
    uploaded_at: str
    job_id: str | None = None
    status: str = "UPLOADED"
    total: int = 0
    completed: int = 0
    succeeded: int = 0
    failed: int = 0
    started_at: int | None = None
    homing: bool = False
    homed: bool = False
    dropped: bool = False
    results: int = 0
    dead: int = 0
    pending: int = 0

    @property
    def live(self) -> bool:
        """Its ids are still out: not brought home, not dropped."""
        return not (self.homed or self.dropped)

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def snapshot(self) -> dict[str, Any]:
        """What a ``status`` record says of the job now."""
        fields = {k: getattr(self, k) for k in _COUNTS}
        return {"status": self.status, **fields, "started_at": self.started_at}


def eta_seconds(chunk: ChunkRecord, now: float) -> float | None:
    """Seconds until the job is done, at the pace it has kept since it started."""
    if chunk.started_at is None or chunk.completed <= 0 or chunk.ended:
        return None
    elapsed = max(now - chunk.started_at, 0.0)
    return elapsed / chunk.completed * max(chunk.total - chunk.completed, 0)


def _apply(chunks: dict[str, ChunkRecord], rec: dict[str, Any]) -> bool:
    """Replay one record onto ``chunks``; False when it is not one this file holds."""
    event, token = rec.get("event"), rec.get("token")
    if not isinstance(token, str):
        return False
    if event == "uploaded":
        uploaded = _uploaded(token, rec)
        if uploaded is not None:
            chunks[token] = uploaded
        return uploaded is not None
    chunk = chunks.get(token)
    if chunk is None:
        return False
    _update(chunk, event, rec)
    return True


def _uploaded(token: str, rec: dict[str, Any]) -> ChunkRecord | None:
    try:
        return ChunkRecord(
            token=token,
            file_id=str(rec["file_id"]),
            model=str(rec["model"]),
            endpoint=str(rec["endpoint"]),
            count=int(rec["count"]),
            ids=str(rec["ids"]),
            ids_digest=str(rec["ids_digest"]),
            uploaded_at=str(rec["at"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _update(chunk: ChunkRecord, event: object, rec: dict[str, Any]) -> None:
    if event == "created":
        chunk.job_id = rec.get("job_id")
    elif event == "status":
        for key in ("status", *_COUNTS, "started_at"):
            if key in rec:
                setattr(chunk, key, rec[key])
    elif event == "homing":
        chunk.homing = True
    elif event == "homed":
        chunk.homed = True
        chunk.results, chunk.dead, chunk.pending = (
            rec.get(k, 0) for k in ("results", "dead", "pending")
        )
    elif event == "dropped":
        chunk.dropped = True


def _replay(path: Path) -> tuple[dict[str, ChunkRecord], list[str]]:
    chunks: dict[str, ChunkRecord] = {}
    warnings = []
    for _, n, raw in read_records(path):
        obj = loads_object(raw)
        if obj is None or not _apply(chunks, obj):
            warnings.append(f"{path}:{n}: not a job record; ignored")
    return chunks, warnings


class JobBook:
    """The open jobs file of one run: read back at open, appended to as jobs move."""

    __slots__ = ("_file", "_on_record", "chunks", "folder", "warnings")

    def __init__(self, folder: Path, on_record: Callable[[], None] | None = None) -> None:
        """``on_record`` is called after each record (a progress display follows it)."""
        self.folder = folder
        self._on_record = on_record
        path = folder / _BOOK
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(f"cannot create {folder}: {exc.strerror or exc}") from None
        cut = repair_torn_tail(path)
        self.chunks, self.warnings = _replay(path)
        if cut:
            self.warnings.insert(0, f"repaired {path}: removed a torn last line ({cut} bytes)")
        self._file = AppendFile(path)
        sync_folder(folder)
        self._sweep()

    def _sweep(self) -> None:
        """Remove what a run cut short left behind: temporary upload and download files,
        and ids files no upload record names (prepared, never uploaded)."""
        named = {c.ids for c in self.live()}
        for entry in self.folder.iterdir():
            stale = entry.name.endswith(".tmp") or (
                entry.suffix == ".ids" and entry.name not in named
            )
            if stale:
                entry.unlink(missing_ok=True)

    def record(self, event: str, token: str, **fields: Any) -> None:
        """Append one record and fsync it; the step that depends on it comes after."""
        rec = {"event": event, "token": token, **fields, "at": utc_iso()}
        self._file.write(orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE))
        self._file.sync()
        _apply(self.chunks, rec)
        if self._on_record is not None:
            self._on_record()

    def live(self) -> list[ChunkRecord]:
        """The jobs whose ids are still out, in the order they were uploaded."""
        return [c for c in self.chunks.values() if c.live]

    def ids_path(self, chunk: ChunkRecord) -> Path:
        return self.folder / chunk.ids

    def close(self) -> None:
        self._file.close()


def sync_folder(folder: Path) -> None:
    """fsync a folder, so that the files just created in it survive a power cut."""
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_jobs(results: Path) -> tuple[list[ChunkRecord], list[str]]:
    """The jobs recorded beside ``results`` (none when it has no jobs file), read-only."""
    chunks, warnings = _replay(jobs_dir(results) / _BOOK)
    return list(chunks.values()), warnings


def check_no_live_jobs(results: Path) -> None:
    """Refuse to send online while batch jobs of the same run may still answer its ids."""
    live = [c for c in read_jobs(results)[0] if c.live]
    if live:
        raise LedgerError(
            f"{len(live)} batch job(s) of this run are not brought home yet (they cover "
            f"{sum(c.count for c in live):,} ids): finish them first with the same command "
            "and `via` batch (add `cancel` to cancel them), then run online"
        )


def age_seconds(iso: str, now: float | None = None) -> float:
    """Seconds since the UTC timestamp ``iso`` (as :func:`utc_iso` writes them)."""
    then = timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))
    return max((time.time() if now is None else now) - then, 0.0)
