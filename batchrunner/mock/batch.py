"""The Batch API routes: create, get, list and cancel jobs (run by :mod:`batchrunner.mock.jobs`).

``POST /v1/batch/jobs`` takes ``input_files`` (ids of ``purpose=batch`` uploads),
``endpoint`` (chat, embeddings or FIM), ``model``, ``metadata`` and ``timeout_hours``
(1-168, default 24). ``metadata={"mock": "..."}`` scripts the job's faults. Inline
``requests`` and agent jobs are refused with a 400 naming them: the mock runs files.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from batchrunner.mock.catalog import MODEL_IDS
from batchrunner.mock.config import MockConfig
from batchrunner.mock.control import guarded, invalid, json_reply, not_found, paging, respond
from batchrunner.mock.decide import Decider
from batchrunner.mock.endpoints import ENDPOINTS
from batchrunner.mock.jobfaults import METADATA_KEY, JobFaults, parse_job_faults
from batchrunner.mock.jobs import Job, JobContext, run_job
from batchrunner.mock.replies import (
    Reply,
    error_reply,
    invalid_model_reply,
    missing,
    validation_reply,
)
from batchrunner.mock.stats import Stats
from batchrunner.mock.store import FileStore, StoredFile, now_s

_MAX_TIMEOUT_HOURS = 168  # upstream: "should be lower than 7 days"
# Query keys of the job list that are not metadata filters (the SDK spreads
# ``metadata={"k": "v"}`` into the query as ``k=v``).
_LIST_KEYS = frozenset(
    (
        "page",
        "page_size",
        "model",
        "agent_id",
        "created_after",
        "created_by_me",
        "status",
        "order_by",
    )
)


class BatchApi:
    """The jobs of one server, their runner tasks, and the routes over them."""

    __slots__ = ("_base", "_ctx", "_seq", "_tasks", "jobs")

    def __init__(
        self, config: MockConfig, decider: Decider, store: FileStore, faults: JobFaults
    ) -> None:
        """``faults``: ``config.batch_faults``, parsed by the caller before it opens anything."""
        self._ctx = JobContext(config, decider, store)
        defaults = JobFaults(
            cancel_s=config.batch_cancel_s,
            queue_s=config.batch_queue_s,
            seconds_per_1000=config.batch_seconds_per_1000,
        )
        self._base = faults.over(defaults)
        self._seq = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self.jobs: dict[str, Job] = {}

    def register(self, router: web.UrlDispatcher, stats: Stats, require_key: str | None) -> None:
        """Add the routes, each behind the key check."""
        one = "/v1/batch/jobs/{job_id}"
        for method, path, handler in (
            ("POST", "/v1/batch/jobs", self.create),
            ("GET", "/v1/batch/jobs", self.list),
            ("GET", one, self.retrieve),
            ("POST", one + "/cancel", self.cancel),
        ):
            router.add_route(method, path, guarded(handler, path, stats, require_key))

    async def close(self) -> None:
        """Stop every running job (server shutdown)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def create(self, request: web.Request) -> web.StreamResponse:
        """Check the request, then start the job; answers the QUEUED ``BatchJob``."""
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return respond(error_reply(400, "Request body must be a JSON object"))
        checked = _check_request(body)
        if isinstance(checked, Reply):
            return respond(checked)
        files = self._input_files(body["input_files"])
        if isinstance(files, Reply):
            return respond(files)
        job = self._new_job(body, checked, files)
        task = asyncio.get_running_loop().create_task(
            run_job(job, [f.path for f in files], self._ctx)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return respond(json_reply(job.to_json()))

    def _input_files(self, ids: list[str]) -> list[StoredFile] | Reply:
        files = []
        for file_id in ids:
            stored = self._ctx.store.get(file_id)
            if stored is None:
                return not_found("File", file_id)
            if stored.purpose != "batch":
                message = f"File {file_id} has purpose {stored.purpose!r}, not 'batch'"
                return error_reply(400, message)
            files.append(stored)
        return files

    def _new_job(self, body: dict[str, Any], faults: JobFaults, files: list[StoredFile]) -> Job:
        job_id = str(uuid.uuid4())
        job = Job(
            id=job_id,
            seq=next(self._seq),
            input_files=[f.id for f in files],
            endpoint=body["endpoint"],
            model=body["model"],
            metadata=body.get("metadata"),
            timeout_hours=body.get("timeout_hours", 24),
            total=sum(f.num_lines for f in files),
            faults=faults.over(self._base),
            created_at=now_s(),
        )
        self.jobs[job_id] = job
        return job

    async def retrieve(self, request: web.Request) -> web.StreamResponse:
        """The ``BatchJob`` as it is now (``inline`` is accepted and ignored)."""
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            return respond(not_found("Batch job", request.match_info["job_id"]))
        return respond(json_reply(job.to_json()))

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        """Ask the job to stop; answers it (CANCELLATION_REQUESTED, or as it ended)."""
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            return respond(not_found("Batch job", request.match_info["job_id"]))
        job.request_cancel()
        return respond(json_reply(job.to_json()))

    async def list(self, request: web.Request) -> web.StreamResponse:
        """``ListBatchJobsResponse``: the SDK's filters, ``order_by`` and pages."""
        pages = paging(request)
        if isinstance(pages, Reply):
            return respond(pages)
        wanted = _job_filter(request)
        if isinstance(wanted, Reply):
            return respond(wanted)
        order = request.query.get("order_by", "-created")
        if order not in ("created", "-created"):
            return respond(invalid("order_by", "Input should be 'created' or '-created'", order))
        chosen = sorted(
            (job for job in self.jobs.values() if wanted(job)),
            key=lambda job: (job.created_at, job.seq),
            reverse=order == "-created",
        )
        page, size = pages
        data = [job.to_json() for job in chosen[page * size : (page + 1) * size]]
        return respond(json_reply({"data": data, "object": "list", "total": len(chosen)}))


def _check_request(body: dict[str, Any]) -> JobFaults | Reply:
    """The job's own faults, or the 4xx the request earns."""
    refused = _check_endpoint(body) or _check_model(body) or _check_rest(body)
    if refused is not None:
        return refused
    metadata = body.get("metadata") or {}
    try:
        return parse_job_faults(str(metadata.get(METADATA_KEY, "")))
    except ValueError as exc:
        return error_reply(400, str(exc))


def _check_endpoint(body: dict[str, Any]) -> Reply | None:
    endpoint = body.get("endpoint")
    if endpoint is None:
        return validation_reply([missing("endpoint")])
    if endpoint not in ENDPOINTS:
        supported = ", ".join(ENDPOINTS)
        return error_reply(400, f"mock: batch jobs on {endpoint!r} are not supported ({supported})")
    if body.get("requests") is not None:
        return error_reply(400, "mock: inline `requests` are not supported; upload a file")
    files = body.get("input_files")
    if not files or not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return invalid("input_files", "Input should be a non-empty list of file ids", files)
    return None


def _check_model(body: dict[str, Any]) -> Reply | None:
    model = body.get("model")
    if model is None:
        if body.get("agent_id") is not None:
            return error_reply(400, "mock: agent batch jobs are not supported; give a model")
        return validation_reply([missing("model")])
    if not isinstance(model, str):
        return invalid("model", "Input should be a valid string", model)
    return None if model in MODEL_IDS else invalid_model_reply(model)


def _check_rest(body: dict[str, Any]) -> Reply | None:
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return invalid("metadata", "Input should be a valid dictionary", metadata)
    hours = body.get("timeout_hours", 24)
    if (
        not isinstance(hours, int)
        or isinstance(hours, bool)
        or not 1 <= hours <= _MAX_TIMEOUT_HOURS
    ):
        message = f"Input should be an integer from 1 to {_MAX_TIMEOUT_HOURS}"
        return invalid("timeout_hours", message, hours)
    return None


def _job_filter(request: web.Request) -> Callable[[Job], bool] | Reply:
    """The list's filters as one predicate, or a 422 for a bad ``created_after``."""
    query = request.query
    after = query.get("created_after")
    try:
        since = None if after is None else datetime.fromisoformat(after).timestamp()
    except ValueError:
        return invalid("created_after", "Input should be a valid datetime", after, "query")
    statuses = set(query.getall("status", []))
    model = query.get("model")
    agent = query.get("agent_id")
    metadata = {k: v for k, v in query.items() if k not in _LIST_KEYS}

    def wanted(job: Job) -> bool:
        meta = job.metadata or {}
        return (
            (since is None or job.created_at >= since)
            and (not statuses or job.status in statuses)
            and (model is None or job.model == model)
            and agent is None  # the mock runs no agent jobs
            and all(str(meta.get(k)) == v for k, v in metadata.items())
        )

    return wanted
