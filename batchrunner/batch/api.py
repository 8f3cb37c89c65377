"""The Files and Batch API calls of a batch run: the official SDK, its own retries off, ours
around each call.

A call answered 429 or 5xx, or that times out or loses its connection, is tried again after
the run's backoff (full jitter, capped, never shorter than ``Retry-After``); any other
failure, or one that outlasts the attempts, raises :class:`ApiFailure` carrying the
:class:`~batchrunner.vocabulary.Failure` an online request would have got for the same
answer. Creating a job is the one call that is not safe to repeat: before it is tried again,
the job is looked up by the token its metadata carries, since the first try may have made it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import anyio
import httpx2
from mistralai.client import Mistral, models
from mistralai.client.errors import MistralError, NoResponseError, ResponseValidationError

from batchrunner.clients.base import on_loopback
from batchrunner.clients.classify import (
    classify_status,
    connection_failure,
    invalid_response,
    safe_text,
    timeout_failure,
)
from batchrunner.engine.retry import RetryPolicy
from batchrunner.errors import OutputWriteError
from batchrunner.vocabulary import Failure

__all__ = ["TOKEN_KEY", "ApiFailure", "BatchApi", "JobState"]

#: The job metadata key that carries the token the run recorded with the upload.
TOKEN_KEY: Final = "batchrunner_token"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class JobState:
    """A batch job as the API last described it."""

    id: str
    status: str
    total: int
    completed: int
    succeeded: int
    failed: int
    output_file: str | None
    error_file: str | None
    created_at: int
    started_at: int | None
    completed_at: int | None
    errors: tuple[str, ...]

    @classmethod
    def of(cls, job: models.BatchJob) -> JobState:
        return cls(
            id=job.id,
            status=str(job.status),
            total=job.total_requests,
            completed=job.completed_requests,
            succeeded=job.succeeded_requests,
            failed=job.failed_requests,
            output_file=cast("str | None", job.output_file),
            error_file=cast("str | None", job.error_file),
            created_at=job.created_at,
            started_at=cast("int | None", job.started_at),
            completed_at=cast("int | None", job.completed_at),
            errors=tuple(e.message for e in job.errors),
        )


class ApiFailure(Exception):
    """A Files or Batch API call that failed for good; ``what`` names the call."""

    def __init__(self, what: str, failure: Failure) -> None:
        super().__init__(f"{what}: {failure.status_code} {failure.type}: {failure.message}")
        self.what, self.failure = what, failure


class BatchApi:
    """The calls a batch run makes, each retried by the run's policy."""

    __slots__ = ("_http", "_key", "_policy", "_rng", "_sdk", "_timeout")

    def __init__(
        self,
        server_url: str,
        api_key: str | None,
        timeout: float,
        policy: RetryPolicy,
        rng: random.Random,
    ) -> None:
        # The environment's proxy, as the online clients take it (none for the loopback).
        self._http = httpx2.AsyncClient(
            follow_redirects=True, trust_env=not on_loopback(server_url)
        )
        # retry_config=None: the SDK never retries on its own; _retrying below does.
        self._sdk = Mistral(
            api_key=api_key,
            server_url=server_url,
            async_client=self._http,
            timeout_ms=int(timeout * 1000),
            retry_config=None,
        )
        self._key, self._timeout, self._policy, self._rng = api_key, timeout, policy, rng

    async def upload(self, path: Path, name: str) -> str:
        """Upload ``path`` (streamed from disk) for a batch job; its file id."""

        async def once() -> str:
            with path.open("rb") as f:
                upload = models.File(file_name=name, content=f, content_type="application/jsonl")
                made = await self._sdk.files.upload_async(file=upload, purpose="batch")
            return made.id

        # Not bounded as a whole: a large file takes its time; each read and write is.
        return await self._retrying("upload the batch file", once, bounded=False)

    async def create(self, file_id: str, endpoint: str, model: str, token: str) -> JobState:
        """Create the job that runs ``file_id``; its metadata carries ``token``."""

        async def once() -> JobState:
            job = await self._sdk.batch.jobs.create_async(
                input_files=[file_id],
                endpoint=cast("Any", endpoint),
                model=model,
                metadata={TOKEN_KEY: token},
            )
            return JobState.of(job)

        return await self._retrying(
            "create the batch job", once, before_retry=lambda: self.find(token)
        )

    async def find(self, token: str) -> JobState | None:
        """The job created with ``token`` in its metadata, if there is one."""

        async def once() -> JobState | None:
            listing = await self._sdk.batch.jobs.list_async(metadata={TOKEN_KEY: token})
            for job in listing.data or []:
                if (job.metadata or {}).get(TOKEN_KEY) == token:  # whatever the filter did
                    return JobState.of(job)
            return None

        return await self._retrying("list the batch jobs", once)

    async def get(self, job_id: str) -> JobState:
        async def once() -> JobState:
            return JobState.of(await self._sdk.batch.jobs.get_async(job_id=job_id))

        return await self._retrying(f"get batch job {job_id}", once)

    async def cancel(self, job_id: str) -> JobState:
        async def once() -> JobState:
            return JobState.of(await self._sdk.batch.jobs.cancel_async(job_id=job_id))

        return await self._retrying(f"cancel batch job {job_id}", once)

    async def download(self, file_id: str, dest: Path) -> None:
        """Stream file ``file_id`` into ``dest`` (replaced on each try)."""

        async def once() -> None:
            response = await self._sdk.files.download_async(file_id=file_id)
            try:
                with dest.open("wb") as out:
                    async for chunk in response.aiter_bytes():
                        _write(out, chunk, dest)
            finally:
                await response.aclose()

        await self._retrying(f"download file {file_id}", once, bounded=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _retrying(
        self,
        what: str,
        call: Callable[[], Awaitable[T]],
        *,
        bounded: bool = True,
        before_retry: Callable[[], Awaitable[T | None]] | None = None,
    ) -> T:
        """``call()`` until it succeeds, fails for good, or runs out of attempts."""
        attempt = 0
        while True:
            attempt += 1
            try:
                if not bounded:
                    return await call()
                async with asyncio.timeout(self._timeout):
                    return await call()
            except Exception as exc:
                failure = self._failure_of(exc)
            delay = self._policy.delay(failure, attempt, self._rng)
            if delay is None:
                raise ApiFailure(what, self._policy.final(failure, attempt))
            await anyio.sleep(delay)
            if before_retry is not None and (done := await before_retry()) is not None:
                return done

    def _failure_of(self, exc: Exception) -> Failure:
        """The failure an online request would record for the same error; anything that
        is not an answer or a transport error is raised as it is."""
        key = self._key
        if isinstance(exc, ResponseValidationError):
            detail = safe_text(f"an answer the SDK could not read: {exc.message}", key)
            return invalid_response(detail)
        if isinstance(exc, MistralError):
            return classify_status(exc.status_code, exc.headers, exc.body, key)
        if isinstance(exc, TimeoutError | httpx2.TimeoutException):
            return timeout_failure(self._timeout)
        if isinstance(exc, NoResponseError | httpx2.RequestError):  # a redirect loop too
            return connection_failure(exc, key)
        raise exc


def _write(out: Any, chunk: bytes, dest: Path) -> None:
    try:
        out.write(chunk)
    except OSError as exc:
        raise OutputWriteError(str(dest), exc) from exc
