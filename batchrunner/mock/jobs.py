"""Batch jobs: their state as the API shows it, and the task that runs each one.

A job waits QUEUED (``queue``), then RUNNING answers its lines one by one (see
:mod:`batchrunner.mock.joblines`) at its ``speed``, its completed/succeeded/failed counts
moving as it goes, and ends SUCCESS. It ends half-way FAILED or TIMEOUT_EXCEEDED when
scripted (:mod:`batchrunner.mock.jobfaults`), or TIMEOUT_EXCEEDED when ``timeout_hours``
(of ``MockConfig.batch_hour_s`` seconds each) pass. Cancelled, it answers no more lines,
stays CANCELLATION_REQUESTED for ``slow_cancel`` seconds, then ends CANCELLED.

Every ending delivers what was done: the 200 lines in an output file, the others in an
error file, each created only when it has a line. ``output_file`` and ``error_file`` stay
null until the job has ended (upstream, results are available once the job is over).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from batchrunner.mock.config import MockConfig
from batchrunner.mock.decide import Decider
from batchrunner.mock.endpoints import ENDPOINTS
from batchrunner.mock.jobfaults import JobFaults
from batchrunner.mock.joblines import answer_line
from batchrunner.mock.store import FileStore, StoredFile, now_s

#: Statuses in which a job still answers lines and can be cancelled.
LIVE = frozenset({"QUEUED", "RUNNING"})
# Lines answered between two turns of the event loop when nothing makes the job wait:
# small enough that polls are answered promptly during a 1M-line job.
_SLICE = 256
# A job ahead of its pace by less than this keeps going: shorter sleeps cost more than
# they pace.
_MIN_SLEEP = 0.005


@dataclass(slots=True, eq=False)
class Job:
    """One batch job; mutated only by its runner and by a cancel request."""

    id: str
    seq: int  # creation order, to sort jobs created in the same second
    input_files: list[str]
    endpoint: str
    model: str
    metadata: dict[str, Any] | None
    timeout_hours: int
    total: int
    faults: JobFaults
    created_at: int
    status: str = "QUEUED"
    completed: int = 0
    succeeded: int = 0
    failed: int = 0
    started_at: int | None = None
    completed_at: int | None = None
    output_file: str | None = None
    error_file: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    cancel: asyncio.Event = field(default_factory=asyncio.Event)

    def request_cancel(self) -> None:
        """Ask a live job to stop; an ended job stays as it is."""
        if self.status in LIVE:
            self.status = "CANCELLATION_REQUESTED"
            self.cancel.set()

    def to_json(self) -> dict[str, Any]:
        """The ``BatchJob`` body."""
        return {
            "id": self.id,
            "object": "batch",
            "input_files": self.input_files,
            "metadata": self.metadata,
            "endpoint": self.endpoint,
            "model": self.model,
            "agent_id": None,
            "output_file": self.output_file,
            "error_file": self.error_file,
            "errors": self.errors,
            "status": self.status,
            "created_at": self.created_at,
            "total_requests": self.total,
            "completed_requests": self.completed,
            "succeeded_requests": self.succeeded,
            "failed_requests": self.failed,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
        }


class _Sink:
    """One result file of a job, created at its first line and published at the end."""

    __slots__ = ("_file", "_id", "_job_id", "_kind", "_lines", "_path", "_size", "_store")

    def __init__(self, store: FileStore, job_id: str, kind: str) -> None:
        self._store = store
        self._job_id = job_id
        self._kind = kind  # "batch_result" or "batch_error"
        self._file: IO[bytes] | None = None
        self._id, self._path = "", Path()
        self._lines = self._size = 0

    def write(self, line: bytes) -> None:
        if self._file is None:
            self._id, self._path = self._store.new_path()
            self._file = open(self._path, "wb", buffering=1 << 16)  # noqa: SIM115 - see close()
        self._file.write(line)
        self._lines += 1
        self._size += len(line)

    def publish(self) -> str | None:
        """Close the file and make it downloadable; its id, or None when it has no line."""
        if self._file is None:
            return None
        self._file.close()
        name = f"{self._job_id}_{'output' if self._kind == 'batch_result' else 'error'}.jsonl"
        stored = StoredFile(
            id=self._id,
            path=self._path,
            filename=name,
            purpose="batch",
            sample_type=self._kind,
            source="mistral",
            size=self._size,
            num_lines=self._lines,
            created_at=now_s(),
            mimetype="application/jsonl",
        )
        self._store.add(stored)
        return self._id

    def close(self) -> None:
        """Close the file whatever happened (publishing closes it first)."""
        if self._file is not None and not self._file.closed:
            self._file.close()


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a running job needs from the server."""

    config: MockConfig
    decider: Decider
    store: FileStore


async def run_job(job: Job, inputs: list[Path], ctx: JobContext) -> None:
    """Drive ``job`` to its end. Only cancellation (server shutdown) escapes."""
    run = _Run(job, ctx)
    try:
        try:
            end = await run.answer_all(inputs)
        except Exception as exc:  # no failure inside a job may reach the server
            job.errors.append({"message": f"mock: the job crashed: {exc!r}", "count": 1})
            end = "FAILED"
        if end == "CANCELLED":
            await asyncio.sleep(job.faults.cancel_s or 0.0)
        job.output_file = run.output.publish()
        job.error_file = run.error.publish()
        job.status = end
        job.completed_at = now_s()
    finally:
        run.output.close()
        run.error.close()


class _Run:
    """The running part of one job: the deadline, the pace, and where lines go."""

    __slots__ = ("ctx", "deadline", "error", "job", "loop", "output", "per_line")

    def __init__(self, job: Job, ctx: JobContext) -> None:
        self.job = job
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + job.timeout_hours * ctx.config.batch_hour_s
        self.per_line = (job.faults.seconds_per_1000 or 0.0) / 1000
        self.output = _Sink(ctx.store, job.id, "batch_result")
        self.error = _Sink(ctx.store, job.id, "batch_error")

    async def answer_all(self, inputs: list[Path]) -> str:
        """Queue, then answer lines until the end; the status the job ends in."""
        job = self.job
        if await self._cancelled_during(job.faults.queue_s or 0.0):
            return "CANCELLED"
        if self.loop.time() >= self.deadline:
            return self._timed_out()
        job.status = "RUNNING"
        job.started_at = now_s()
        with ExitStack() as stack:
            # Opened before the first line, so a file deleted later is still read whole.
            files = [stack.enter_context(open(path, "rb")) for path in inputs]
            end = await self._answer_lines(_non_blank(files))
        if end is None and job.faults.stop_after(job.total) is not None:
            end = self._scripted_end()  # the scripted end lies at or past the last line
        return end or ("CANCELLED" if job.cancel.is_set() else "SUCCESS")

    async def _answer_lines(self, lines: Iterator[bytes]) -> str | None:
        job = self.job
        stop = job.faults.stop_after(job.total)
        endpoint = ENDPOINTS[job.endpoint]
        start = self.loop.time()
        for raw in lines:
            now = self.loop.time()
            if job.cancel.is_set():
                return "CANCELLED"
            if job.completed == stop:
                return self._scripted_end()
            if now >= self.deadline:
                return self._timed_out()
            line_id = f"batch-{job.id[:8]}-{job.completed}"
            outcome = answer_line(self.ctx.decider, endpoint, job.model, raw, line_id, now)
            (self.output if outcome.ok else self.error).write(outcome.line)
            job.completed += 1
            job.succeeded += outcome.ok
            job.failed += not outcome.ok
            if await self._pace(start + job.completed * self.per_line, now):
                return "CANCELLED"
        return None

    async def _pace(self, due: float, now: float) -> bool:
        """Wait until the next line is due (or yield now and then); True when cancelled."""
        if due - now > _MIN_SLEEP:
            return await self._cancelled_during(min(due, self.deadline) - now)
        if self.job.completed % _SLICE == 0:
            await asyncio.sleep(0)
        return False

    async def _cancelled_during(self, seconds: float) -> bool:
        """Wait ``seconds`` unless a cancel request comes first; True when it came."""
        if seconds > 0:
            with suppress(TimeoutError):
                await asyncio.wait_for(self.job.cancel.wait(), seconds)
        return self.job.cancel.is_set()

    def _scripted_end(self) -> str:
        job = self.job
        status = job.faults.end_status or "FAILED"
        message = f"mock: scripted {status} after {job.completed} of {job.total} requests"
        job.errors.append({"message": message, "count": 1})
        return status

    def _timed_out(self) -> str:
        hours = self.job.timeout_hours
        self.job.errors.append({"message": f"Job exceeded its timeout of {hours} h", "count": 1})
        return "TIMEOUT_EXCEEDED"


def _non_blank(files: Iterable[IO[bytes]]) -> Iterator[bytes]:
    """The lines with text, file after file (blank lines are not requests)."""
    for file in files:
        for raw in file:
            if raw.strip():
                yield raw
