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
:meth:`BatchRun.jobs`, on each :attr:`BatchRun.on_change`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import anyio

from batchrunner.batch.api import ApiFailure, BatchApi, JobState
from batchrunner.batch.home import Homecoming, JobContext, bring_home_file, ids_of_job
from batchrunner.batch.ids import JobIndex
from batchrunner.batch.jobs import ChunkRecord, JobBook
from batchrunner.batch.submit import BREATHE_EVERY, Submitter, admitted
from batchrunner.config import RunConfig
from batchrunner.engine.accounting import earlier_usage
from batchrunner.engine.admission import count_unread
from batchrunner.engine.control import Stop
from batchrunner.engine.events import NO_EVENTS, Events
from batchrunner.engine.opening import Opened, open_run
from batchrunner.engine.outcomes import quota_stop, tripped_stop
from batchrunner.engine.retry import RetryPolicy
from batchrunner.engine.stats import RunStats
from batchrunner.errors import ConfigError
from batchrunner.input.idset import IdSet
from batchrunner.ledger.manifest import implicit_id_prefix, read_manifest
from batchrunner.limits.pricing import CostMeter, batch_prices, cost, price_table
from batchrunner.runfiles import jobs_dir

__all__ = ["BatchRun"]

_POLL_GROWTH = 1.5


class BatchRun:
    """One batch run. Create it, hand it to whoever renders progress, ``await run()``."""

    def __init__(
        self,
        config: RunConfig,
        api: BatchApi | None = None,
        seed: int | None = None,
        events: Events = NO_EVENTS,
    ) -> None:
        """``events`` hears the run's start and end, each job's status changes and each
        dead-letter (``--log-json``)."""
        self.config, self.stats, self._events = config, RunStats(), events
        #: Called after each change of :attr:`phase` and each record of a job: a display
        #: that renders on it misses no status change.
        self.on_change: Callable[[], None] = _nothing
        self._phase = "opening"
        self._api = api
        self._rng = random.Random(seed)
        try:
            self._prices = batch_prices(price_table(config.prices))
        except ValueError as exc:
            raise ConfigError(f"prices: {exc}") from None
        self._costs = CostMeter(self._prices)
        self._stop: Stop | None = None
        self._interrupted = False
        self._spent_before = 0.0
        self._opening, self._scope = anyio.CancelScope(), anyio.CancelScope()
        self._opened: Opened | None = None
        self._book: JobBook | None = None
        self._shortfalls: list[str] = []

    @property
    def phase(self) -> str:
        """What the run is doing now, in a few words."""
        return self._phase

    def _set_phase(self, text: str) -> None:
        self._phase = text
        self.on_change()

    def jobs(self) -> list[ChunkRecord]:
        """The run's jobs as recorded so far (brought home or not)."""
        return list(self._book.chunks.values()) if self._book is not None else []

    def _recorded(self) -> None:
        self.on_change()

    def stop(self) -> None:
        """Stop opening, sending or waiting; the jobs keep running on Mistral's side."""
        self._interrupted = True
        self._opening.cancel()
        self._scope.cancel()

    async def open(self) -> None:
        """Check, lock and open the files (``run`` does it if you don't); a stop meanwhile
        cuts it short, opening nothing."""
        if self._opened is not None:
            return
        cfg = self.config
        with self._opening:
            self._opened = await open_run(cfg)
        if self._opened is None:
            return
        self.stats.total_lines = self._opened.total_lines
        self.stats.warnings.extend(self._opened.warnings)
        try:
            self._book = JobBook(jobs_dir(cfg.output_path), self._recorded)
            if cfg.max_cost is not None:  # the budget is the run's, over all its invocations
                self._spent_before = _spent(earlier_usage(cfg.output_path), cfg)
        except BaseException:
            self._opened.close(settled=False)
            raise
        self.stats.warnings.extend(self._book.warnings)

    async def run(self) -> RunStats:
        """Send, wait and bring home until every job of the run has ended (or a stop)."""
        await self.open()
        if self._opened is None or self._book is None:  # stopped while opening
            self._finish()
            return self.stats
        cfg = self.config
        api = self._api or BatchApi(
            cfg.server_url, cfg.api_key, cfg.timeout, _policy(cfg), self._rng
        )
        self._events.run_start(cfg, self.stats.total_lines)
        settled = False
        try:
            with self._scope:
                await self._go(api, self._book)
            settled = True
        except ApiFailure as exc:
            self._note(_api_stop(exc))
            settled = True
        finally:
            with anyio.CancelScope(shield=True):  # before the dead-letter file is rewritten
                state = self._opened.ledger.state
                await anyio.to_thread.run_sync(count_unread, cfg, state, self.stats)
            self._finish()
            self._events.run_end(self.stats)
            with anyio.CancelScope(shield=True):
                await self._close(api, settled)
        return self.stats

    async def _close(self, api: BatchApi, settled: bool) -> None:
        """Let go of the API and the files; a settled run's dead-letter file is made true
        (superseded entries dropped), as an online run's is."""
        assert self._opened is not None and self._book is not None
        try:
            if self._api is None:
                await api.aclose()
        finally:
            self._book.close()
            closing = await anyio.to_thread.run_sync(self._opened.close, settled)
            self.stats.warnings.extend(closing)

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
            self._set_phase(f"looking up the job of upload {chunk.token}")
            found = await api.find(chunk.token)
            if found is not None:
                self._created(book, chunk, found)
            elif self.config.cancel:
                book.record("dropped", chunk.token, reason="cancelled before its job existed")
                book.ids_path(chunk).unlink(missing_ok=True)
            else:
                await self._create(api, book, chunk)

    async def _create(self, api: BatchApi, book: JobBook, chunk: ChunkRecord) -> None:
        self._set_phase(f"creating the job for {chunk.count:,} requests")
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
            counts = {
                "total": job.total, "completed": job.completed, "succeeded": job.succeeded,
                "failed": job.failed,
            }  # fmt: skip
            self._events.batch_job(job.id, job.status, counts)

    async def _cancel_all(self, api: BatchApi, book: JobBook) -> None:
        for chunk in book.live():
            if chunk.job_id is not None and not chunk.ended:
                self._set_phase(f"cancelling job {chunk.job_id}")
                self._observe(book, chunk, await api.cancel(chunk.job_id))

    async def _send_all(self, api: BatchApi, book: JobBook) -> None:
        assert self._opened is not None
        submitter = Submitter(
            self.config, self._opened, self.stats, book, api,
            prices=self._prices, set_phase=self._set_phase, events=self._events,
            spent_before=self._spent_before,
        )  # fmt: skip
        stop = await submitter.send_all(lambda chunk: self._create(api, book, chunk))
        if stop is not None:
            self._note(stop)

    async def _count_only(self) -> None:
        """Read the input through the admission without sending (``--cancel``): the
        counts of the summary, and bad lines dead-lettered as in any run."""
        assert self._opened is not None
        items = admitted(self.config, self._opened, self.stats, self._events)
        for n, _ in enumerate(items, start=1):
            if n % BREATHE_EVERY == 0:
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
            self._set_phase("waiting for the jobs")
            await anyio.sleep(pause)
            pause = min(pause * _POLL_GROWTH, self.config.batch_poll_max)

    async def _home(self, api: BatchApi, book: JobBook, chunk: ChunkRecord, job: JobState) -> None:
        """Download the job's output and error files and write their outcomes."""
        assert self._opened is not None
        ledger = self._opened.ledger
        self._set_phase(f"bringing job {job.id} home")
        again = chunk.homing
        if not again:
            book.record("homing", chunk.token)
        homecoming = Homecoming(
            self._job_context(chunk, job),
            JobIndex.load(book.ids_path(chunk), chunk.ids_digest, chunk.count),
            (ledger.results, ledger.dead),
            ids_of_job(ledger.results.path, ledger.dead.path, job.id) if again else IdSet(),
            self._events,
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
        prefix = implicit_id_prefix(read_manifest(cfg.manifest_path))
        return JobContext(
            job.id, chunk.endpoint, cfg.input_path, cfg.model, prefix, cfg.api_key,
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
        """The first stop stands; one the run makes by itself is an event."""
        if self._stop is None:
            self._stop = stop
            if stop.reason != "interrupted":
                self._events.halted(stop.reason, stop.message)

    def _finish(self) -> None:
        stats, cfg = self.stats, self.config
        stats.finished = time.monotonic()
        stats.cost = self._costs.spent()
        if cfg.max_cost is not None:
            stats.budget_usd = (self._spent_before + stats.cost, cfg.max_cost)
        if self._stop is None and self._interrupted:
            self._stop = self._interruption()
        if self._stop is None:
            self._stop = self._incomplete()
        if self._stop is not None:
            stats.stop_reason, stats.stop_message = self._stop.reason, self._stop.message

    def _interruption(self) -> Stop:
        live = sum(1 for c in self.jobs() if c.live)
        if not live:
            return Stop("interrupted", "stopped before any batch job of the run was made")
        return Stop(
            "interrupted",
            f"stopped waiting: {live} batch job(s) keep running on Mistral's side; the same "
            "command waits for them and brings their outcomes home (add `cancel` to cancel "
            "them)",
        )

    def _incomplete(self) -> Stop | None:
        """The stop of a run whose jobs all ended with ids still pending, if it is one."""
        pending = self.stats.pending
        if not pending:
            return None
        if self.config.cancel:
            why = "this run's batch jobs are cancelled"
            todo = "send them with `via` batch, or online"
        else:
            why = "; ".join(self._shortfalls) or "not every id was answered"
            todo = "re-run the same command, or run it online, to send them"
        return Stop("unanswered", f"{pending:,} ids are pending ({why}): {todo}")


def _nothing() -> None:
    pass


def _spent(usage: dict[str, tuple[int, int]], cfg: RunConfig) -> float:
    """What the results already hold cost, at list prices (some may have come through
    batch jobs at less: the budget errs on the safe side). A model without a price is
    priced as ``--model``, as an online run prices it."""
    table = price_table(cfg.prices)
    total = 0.0
    for model, (prompt, completion) in usage.items():
        priced = model if model in table or cfg.model is None else cfg.model
        total += cost(priced, prompt, completion, table) or 0.0
    return total


def _policy(cfg: RunConfig) -> RetryPolicy:
    return RetryPolicy(cfg.max_attempts, cfg.backoff_base, cfg.backoff_max, cfg.max_retry_after)


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
