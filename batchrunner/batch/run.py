"""One ``--via batch`` run: the ids still to send go to Mistral's Batch API as jobs, and each
job's outcomes come home into the run's results and dead-letter files.

1. Open the run as an online run opens it (:func:`~batchrunner.engine.opening.open_run`:
   files, manifest, the server and key checked) and read the jobs record
   (:class:`~batchrunner.batch.jobs.JobBook`).
2. Settle every upload whose job was not recorded (a kill between the two): the job is
   looked up by the token in its metadata, and created only if it does not exist.
3. Send what is still to send: the lines the admission lets through (the same parsing,
   validation and dead-lettering as online), less the ids a job still out covers, written
   into upload files, each uploaded, recorded, then made a job and recorded.
   ``--cancel`` sends nothing and cancels this run's jobs instead.
4. Poll the jobs (waits growing from ``batch_poll`` to ``batch_poll_max``) and bring each
   one home as it ends (:mod:`~batchrunner.batch.home`).

``stop()`` (Ctrl-C) stops waiting: the jobs keep running, and the same command resumes.
The run never prints: the CLI renders :attr:`BatchRun.stats`, :attr:`BatchRun.phase` and
:meth:`BatchRun.jobs`.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import anyio

from batchrunner.batch.api import ApiFailure, BatchApi, JobState
from batchrunner.batch.home import (
    Homecoming,
    JobContext,
    bring_home_file,
    dead_ids_of_job,
)
from batchrunner.batch.ids import JobIndex, covered_ids
from batchrunner.batch.jobs import ChunkRecord, JobBook
from batchrunner.batch.prepare import Chunk, Costing, Preparer, upload_line
from batchrunner.config import RunConfig, jobs_dir
from batchrunner.engine.admission import admit
from batchrunner.engine.control import Stop
from batchrunner.engine.opening import Opened, open_run
from batchrunner.engine.outcomes import quota_stop, tripped_stop
from batchrunner.engine.retry import RetryPolicy
from batchrunner.engine.stats import RunStats
from batchrunner.errors import ConfigError
from batchrunner.input.idset import IdSet
from batchrunner.input.lines import Item
from batchrunner.ledger.records import dead_line
from batchrunner.limits.pricing import CostMeter, batch_prices, cost, price_table
from batchrunner.limits.tokens import CompletionEstimator, estimate_prompt_tokens
from batchrunner.vocabulary import Failure, failure_key

__all__ = ["BatchRun"]

# Lines admitted between two turns of the event loop while preparing.
_BREATHE_EVERY = 1024
_POLL_GROWTH = 1.5


class BatchRun:
    """One batch run. Create it, hand it to whoever renders progress, ``await run()``."""

    def __init__(
        self, config: RunConfig, api: BatchApi | None = None, seed: int | None = None
    ) -> None:
        self.config, self.stats = config, RunStats()
        #: What the run is doing now, for a progress display.
        self.phase = "opening"
        self._api = api
        self._rng = random.Random(seed)
        try:
            self._prices = batch_prices(price_table(config.prices))
        except ValueError as exc:
            raise ConfigError(f"prices: {exc}") from None
        self._costs = CostMeter(self._prices)
        self._stop: Stop | None = None
        self._scope = anyio.CancelScope()
        self._opened: Opened | None = None
        self._book: JobBook | None = None
        self._worst_cost = 0.0
        self._shortfalls: list[str] = []

    def jobs(self) -> list[ChunkRecord]:
        """The run's jobs as recorded so far (brought home or not)."""
        return list(self._book.chunks.values()) if self._book is not None else []

    def stop(self) -> None:
        """Stop waiting (and sending); the jobs keep running on Mistral's side."""
        live = sum(1 for c in self.jobs() if c.live)
        self._note(
            Stop(
                "interrupted",
                f"stopped waiting: {live} batch job(s) keep running on Mistral's side; the "
                "same command waits for them and brings their outcomes home (add --cancel "
                "to cancel them)",
            )
        )
        self._scope.cancel()

    async def open(self) -> None:
        """Check and open the files (``run`` does it if you don't)."""
        if self._opened is None:
            self._opened = await open_run(self.config)
            self.stats.total_lines = self._opened.total_lines
            self.stats.warnings.extend(self._opened.warnings)
            try:
                self._book = JobBook(jobs_dir(self.config.output_path))
            except BaseException:
                self._opened.ledger.close()
                raise
            self.stats.warnings.extend(self._book.warnings)

    async def run(self) -> RunStats:
        """Send, wait and bring home until every job of the run has ended (or a stop)."""
        await self.open()
        assert self._opened is not None and self._book is not None
        cfg = self.config
        api = self._api or BatchApi(
            cfg.server_url, cfg.api_key, cfg.timeout, _policy(cfg), self._rng
        )
        try:
            with self._scope:
                await self._go(api, self._book)
        except ApiFailure as exc:
            self._note(_api_stop(exc))
        finally:
            if self._api is None:
                with anyio.CancelScope(shield=True):
                    await api.aclose()
            self._book.close()
            self._opened.ledger.close()
            self._finish()
        return self.stats

    async def _go(self, api: BatchApi, book: JobBook) -> None:
        await self._settle_uploads(api, book)
        if self.config.cancel:
            await self._cancel_all(api, book)
            await self._count_only()
        else:
            await self._send_all(api, book)
        await self._wait(api, book)

    # -- uploads and jobs ------------------------------------------------------------

    async def _settle_uploads(self, api: BatchApi, book: JobBook) -> None:
        """Uploads recorded without their job: find the job, or create it (or drop the
        upload, with ``--cancel``)."""
        for chunk in book.live():
            if chunk.job_id is not None:
                continue
            self.phase = f"looking up the job of upload {chunk.token}"
            found = await api.find(chunk.token)
            if found is not None:
                self._created(book, chunk, found)
            elif self.config.cancel:
                book.record("dropped", chunk.token, reason="cancelled before its job existed")
                book.ids_path(chunk).unlink(missing_ok=True)
            else:
                await self._create(api, book, chunk)

    async def _create(self, api: BatchApi, book: JobBook, chunk: ChunkRecord) -> None:
        self.phase = f"creating the job for {chunk.count:,} requests"
        job = await api.create(chunk.file_id, chunk.endpoint, chunk.model, chunk.token)
        # No await between the answer and the record: a Ctrl-C cannot come in between.
        self._created(book, chunk, job)

    def _created(self, book: JobBook, chunk: ChunkRecord, job: JobState) -> None:
        book.record("created", chunk.token, job_id=job.id)
        self._observe(book, chunk, job)

    def _observe(self, book: JobBook, chunk: ChunkRecord, job: JobState) -> None:
        """Record the job's status when it moved."""
        snapshot = {
            "status": job.status,
            "total": job.total,
            "completed": job.completed,
            "succeeded": job.succeeded,
            "failed": job.failed,
            "started_at": job.started_at,
        }
        if snapshot != chunk.snapshot():
            book.record("status", chunk.token, **snapshot)

    async def _cancel_all(self, api: BatchApi, book: JobBook) -> None:
        for chunk in book.live():
            if chunk.job_id is not None and not chunk.ended:
                self.phase = f"cancelling job {chunk.job_id}"
                self._observe(book, chunk, await api.cancel(chunk.job_id))

    # -- sending -----------------------------------------------------------------------

    async def _send_all(self, api: BatchApi, book: JobBook) -> None:
        """Prepare and submit the jobs for every id still to send."""
        cfg = self.config
        covered = covered_ids((book.ids_path(c), c.ids_digest) for c in book.live())
        prep = Preparer(
            book.folder,
            cfg.input_path,
            (cfg.batch_max_requests, cfg.batch_max_bytes),
            group_by_model=cfg.batch_group_by_model,
            costing=self._costing(),
        )
        self.phase = "preparing the upload files"
        try:
            if await self._fill(api, book, prep, covered):
                chunks = prep.finish()
                for i, chunk in enumerate(chunks):
                    if not await self._submit(api, book, chunk):
                        for left in chunks[i:]:
                            _discard(left)
                        break
        finally:
            prep.discard()

    async def _fill(self, api: BatchApi, book: JobBook, prep: Preparer, covered: IdSet) -> bool:
        """Admit the lines into upload files, submitting each file as it fills; False
        when a job was refused (the rest is not prepared)."""
        assert self._opened is not None
        opened = self._opened
        items = admit(
            self.config, opened.ledger.state, self.stats, opened.ledger.dead.write,
            opened.check_bodies,
        )  # fmt: skip
        for n, item in enumerate(items, start=1):
            if n % _BREATHE_EVERY == 0:
                await anyio.sleep(0)
            if item is None or item.custom_id in covered:
                continue
            line = upload_line(item)
            refusal = self._refusal(item, len(line))
            if refusal is not None:
                self._dead_letter(item, refusal)
                continue
            full = prep.add(item, line, _model(item))
            if full is not None and not await self._submit(api, book, full):
                return False
        return True

    def _refusal(self, item: Item, size: int) -> Failure | None:
        """Why ``item`` cannot go into a job, if it cannot."""
        cfg = self.config
        model = _model(item)
        if not cfg.batch_group_by_model and model != cfg.model:
            message = (
                f"the line's model {model!r} is not the batch job's model {cfg.model!r} (a "
                "batch job runs one model): send it online, or pass --batch-group-by-model"
            )
            return Failure(type="invalid_request", status_code=None, message=message)
        if size > cfg.batch_max_bytes:
            message = f"{size:,} bytes as a batch line, more than --batch-max-bytes"
            return Failure(type="too_large", status_code=None, message=message)
        return None

    def _dead_letter(self, item: Item, failure: Failure) -> None:
        assert self._opened is not None
        self._opened.ledger.dead.write(dead_line(item, failure, 0))
        self.stats.dead += 1
        self.stats.dead_by_status[failure_key(failure.status_code, failure.type)] += 1

    async def _submit(self, api: BatchApi, book: JobBook, chunk: Chunk) -> bool:
        """Upload ``chunk``, record it, create its job; False when the budget refuses it."""
        budget = self.config.max_cost
        if budget is not None and self._worst_cost + chunk.worst_cost > budget:
            self._note(_over_budget(chunk, budget))
            _discard(chunk)
            return False
        recorded = False
        try:
            self.phase = f"uploading {chunk.count:,} requests ({chunk.size:,} bytes)"
            file_id = await api.upload(chunk.upload, f"batchrunner-{chunk.token}.jsonl")
            book.record(
                "uploaded", chunk.token, file_id=file_id, model=chunk.model,
                endpoint=self.config.endpoint, count=chunk.count, bytes=chunk.size,
                ids=chunk.ids.name, ids_digest=chunk.ids_digest,
            )  # fmt: skip
            recorded = True
        finally:
            chunk.upload.unlink(missing_ok=True)
            if not recorded:
                chunk.ids.unlink(missing_ok=True)
        self._worst_cost += chunk.worst_cost
        self.stats.sent += chunk.count
        await self._create(api, book, book.chunks[chunk.token])
        return True

    def _costing(self) -> Costing | None:
        """What an item may cost at most at batch prices, when ``--max-cost`` asks."""
        cfg = self.config
        if cfg.max_cost is None:
            return None
        completions = CompletionEstimator(cfg.endpoint)

        def worst(item: Item) -> float:
            prompt = estimate_prompt_tokens(item.body, cfg.endpoint)
            return cost(_model(item), prompt, completions.estimate(item.body), self._prices) or 0.0

        return worst

    async def _count_only(self) -> None:
        """Read the input through the admission without sending (``--cancel``): the
        counts of the summary, and bad lines dead-lettered as in any run."""
        assert self._opened is not None
        opened = self._opened
        items = admit(
            self.config, opened.ledger.state, self.stats, opened.ledger.dead.write,
            opened.check_bodies,
        )  # fmt: skip
        for n, _ in enumerate(items, start=1):
            if n % _BREATHE_EVERY == 0:
                await anyio.sleep(0)

    # -- waiting and bringing home --------------------------------------------------

    async def _wait(self, api: BatchApi, book: JobBook) -> None:
        """Poll the jobs until each has ended and is home."""
        pause = self.config.batch_poll
        while True:
            for chunk in [c for c in book.live() if c.job_id is not None]:
                assert chunk.job_id is not None
                job = await api.get(chunk.job_id)
                self._observe(book, chunk, job)
                if chunk.ended:
                    await self._home(api, book, chunk, job)
            if not any(c.job_id is not None for c in book.live()):
                return
            self.phase = "waiting for the jobs"
            await anyio.sleep(pause)
            pause = min(pause * _POLL_GROWTH, self.config.batch_poll_max)

    async def _home(self, api: BatchApi, book: JobBook, chunk: ChunkRecord, job: JobState) -> None:
        """Download the job's output and error files and write their outcomes."""
        assert self._opened is not None
        ledger = self._opened.ledger
        self.phase = f"bringing job {job.id} home"
        again = chunk.homing
        if not again:
            book.record("homing", chunk.token)
        homecoming = Homecoming(
            self._job_context(chunk, job),
            JobIndex.load(book.ids_path(chunk), chunk.ids_digest, chunk.count),
            ledger.state,
            (ledger.results, ledger.dead),
            dead_ids_of_job(ledger.dead.path, job.id) if again else IdSet(),
        )
        try:
            for file_id in (job.output_file, job.error_file):
                if file_id is not None:
                    await self._download_home(
                        api, book.folder / f".{chunk.token}.tmp", file_id, homecoming
                    )
        finally:
            homecoming.close()
        ledger.sync()
        self._homed(book, chunk, job, homecoming)

    async def _download_home(
        self, api: BatchApi, tmp: Path, file_id: str, homecoming: Homecoming
    ) -> None:
        try:
            await api.download(file_id, tmp)
            await bring_home_file(tmp, homecoming)
        finally:
            tmp.unlink(missing_ok=True)

    def _job_context(self, chunk: ChunkRecord, job: JobState) -> JobContext:
        cfg = self.config
        turnaround = (job.completed_at or job.created_at) - job.created_at
        return JobContext(
            job.id, chunk.endpoint, cfg.client, cfg.input_path, cfg.model, cfg.api_key,
            float(max(turnaround, 0)),
        )  # fmt: skip

    def _homed(
        self, book: JobBook, chunk: ChunkRecord, job: JobState, homecoming: Homecoming
    ) -> None:
        counts = homecoming.counts
        pending = chunk.count - counts.results - counts.dead - counts.skipped
        book.record("homed", chunk.token, results=counts.results, dead=counts.dead, pending=pending)
        book.ids_path(chunk).unlink(missing_ok=True)
        stats = self.stats
        stats.ok += counts.results
        stats.dead += counts.dead
        stats.dead_by_status.update(counts.dead_by_key)
        stats.prompt_tokens += counts.prompt_tokens
        stats.completion_tokens += counts.completion_tokens
        self._costs.add(chunk.model, counts.prompt_tokens, counts.completion_tokens)
        if counts.unknown:
            stats.warnings.append(f"job {job.id}: {counts.unknown} line(s) for ids it was not sent")
        if job.status != "SUCCESS":
            self._shortfalls.append(f"job {job.id} ended {job.status}")
        if counts.pending_by_key:
            by = ", ".join(f"{k}: {v}" for k, v in sorted(counts.pending_by_key.items()))
            self._shortfalls.append(f"job {job.id} answered {by} (retryable)")

    # -- the end ---------------------------------------------------------------------

    def _note(self, stop: Stop) -> None:
        """The first stop stands."""
        if self._stop is None:
            self._stop = stop

    def _finish(self) -> None:
        stats = self.stats
        stats.finished = time.monotonic()
        stats.cost = self._costs.spent()
        if self._stop is None:
            self._stop = self._incomplete()
        if self._stop is not None:
            stats.stop_reason, stats.stop_message = self._stop.reason, self._stop.message

    def _incomplete(self) -> Stop | None:
        """The stop of a run whose jobs all ended with ids still pending, if it is one."""
        pending = self.stats.pending
        if not pending:
            return None
        if self.config.cancel:
            why = "this run's batch jobs are cancelled"
            todo = "send them with --via batch, or online"
        else:
            why = "; ".join(self._shortfalls) or "not every id was answered"
            todo = "re-run the same command, or run it online, to send them"
        return Stop("incomplete", f"{pending:,} ids are pending ({why}): {todo}")


def _policy(cfg: RunConfig) -> RetryPolicy:
    return RetryPolicy(cfg.max_attempts, cfg.backoff_base, cfg.backoff_max, cfg.max_retry_after)


def _model(item: Item) -> str:
    model = item.body.get("model")
    return model if isinstance(model, str) else ""


def _discard(chunk: Chunk) -> None:
    chunk.upload.unlink(missing_ok=True)
    chunk.ids.unlink(missing_ok=True)


def _over_budget(chunk: Chunk, budget: float) -> Stop:
    return Stop(
        "budget",
        f"budget reached: the next batch job ({chunk.count:,} requests) may cost up to "
        f"${chunk.worst_cost:.4f} at batch prices, which would pass --max-cost ${budget:g}; "
        "its ids are pending: raise it and re-run",
    )


def _api_stop(exc: ApiFailure) -> Stop:
    """The stop of a Files or Batch API call that failed for good: a refused key or an
    unknown model in the very words of an online run."""
    failure = exc.failure
    if failure.action == "hold":
        return tripped_stop(failure)
    if failure.action == "pause":
        return quota_stop(failure)
    return Stop(
        "fatal",
        f"stopped: could not {exc.what} ({failure.status_code} {failure.type}: "
        f"{failure.message}); the jobs so far are recorded and the rest is pending: fix "
        "the cause and re-run the same command",
    )
