"""Sending what a batch run has still to send: the admitted lines into upload files, each file
uploaded and recorded before its job is created.

The lines come from the same admission as an online run's (parsing, validation, bad lines
dead-lettered, decided ids skipped), less the ids a job still out covers. A line whose
model is not the job's (without ``--batch-group-by-model``), or too large for a file, is
dead-lettered here. ``--max-cost`` refuses a job whose worst case would pass the budget: the
refusal comes back as a :class:`~batchrunner.engine.control.Stop`, the rest stays pending.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping

import anyio

from batchrunner.batch.api import BatchApi
from batchrunner.batch.ids import covered_ids
from batchrunner.batch.jobs import ChunkRecord, JobBook
from batchrunner.batch.prepare import Chunk, Costing, Preparer, upload_line
from batchrunner.config import RunConfig
from batchrunner.engine.admission import admit
from batchrunner.engine.control import Stop
from batchrunner.engine.events import NO_EVENTS, Events
from batchrunner.engine.opening import Opened
from batchrunner.engine.stats import RunStats
from batchrunner.input.idset import IdSet
from batchrunner.input.lines import Item
from batchrunner.ledger.records import dead_line
from batchrunner.limits.pricing import Price, cost
from batchrunner.limits.tokens import CompletionEstimator, estimate_prompt_tokens
from batchrunner.vocabulary import Failure, failure_key

__all__ = ["BREATHE_EVERY", "Submitter", "admitted"]

#: Lines admitted between two turns of the event loop: Ctrl-C stays prompt.
BREATHE_EVERY = 1024

#: Makes the job of an upload just recorded.
CreateJob = Callable[[ChunkRecord], Awaitable[None]]


def admitted(
    config: RunConfig, opened: Opened, stats: RunStats, events: Events
) -> Iterator[Item | None]:
    """The run's admission (:func:`~batchrunner.engine.admission.admit`) over its files."""
    ledger = opened.ledger
    return admit(config, ledger.state, stats, ledger.dead.write, opened.check_bodies, events)


class Submitter:
    """Prepares, uploads and records the jobs of one run."""

    __slots__ = (
        "_api", "_book", "_config", "_events", "_opened", "_prices", "_set_phase", "_stats",
        "_worst",
    )  # fmt: skip

    def __init__(
        self,
        config: RunConfig,
        opened: Opened,
        stats: RunStats,
        book: JobBook,
        api: BatchApi,
        *,
        prices: Mapping[str, Price],
        set_phase: Callable[[str], None],
        events: Events = NO_EVENTS,
        spent_before: float = 0.0,
    ) -> None:
        """``prices``: the batch price table; ``spent_before``: what earlier invocations of
        the run spent (both for ``--max-cost``)."""
        self._config, self._opened, self._stats, self._events = config, opened, stats, events
        self._book, self._api, self._prices, self._set_phase = book, api, prices, set_phase
        self._worst = spent_before

    async def send_all(self, create: CreateJob) -> Stop | None:
        """Send every id still to send, ``create`` making each job once its upload is
        recorded; the budget's stop, if it refused a job."""
        cfg, book = self._config, self._book
        covered = covered_ids((book.ids_path(c), c.ids_digest) for c in book.live())
        prep = Preparer(
            book.folder,
            cfg.input_path,
            (cfg.batch_max_requests, cfg.batch_max_bytes),
            group_by_model=cfg.batch_group_by_model,
            costing=self._costing(),
        )
        self._set_phase("preparing the upload files")
        try:
            stop = await self._fill(prep, covered, create)
            chunks = prep.finish() if stop is None else []
            for i, chunk in enumerate(chunks):
                stop = await self._submit(chunk, create)
                if stop is not None:
                    for left in chunks[i + 1 :]:
                        _discard(left)
                    break
        finally:
            prep.discard()
        return stop

    async def _fill(self, prep: Preparer, covered: IdSet, create: CreateJob) -> Stop | None:
        """Admit the lines into upload files, submitting each file as it fills."""
        items = admitted(self._config, self._opened, self._stats, self._events)
        for n, item in enumerate(items, start=1):
            if n % BREATHE_EVERY == 0:
                await anyio.sleep(0)
            if item is None or item.custom_id in covered:
                continue
            line = upload_line(item)
            refusal = self._refusal(item, len(line))
            if refusal is not None:
                self._dead_letter(item, refusal)
                continue
            full = prep.add(item, line, self._endpoint(item), _model(item))
            if full is not None and (stop := await self._submit(full, create)) is not None:
                return stop
        return None

    def _endpoint(self, item: Item) -> str:
        return item.endpoint or self._config.endpoint

    def _refusal(self, item: Item, size: int) -> Failure | None:
        """Why ``item`` cannot go into a job, if it cannot."""
        cfg = self._config
        model, endpoint = _model(item), self._endpoint(item)
        if not cfg.batch_group_by_model and endpoint != cfg.endpoint:
            message = (
                f"the line's url {endpoint} is not the batch job's endpoint {cfg.endpoint} (a "
                "batch job runs one endpoint): send it online, or pass --batch-group-by-model"
            )
            return Failure(type="invalid_request", status_code=None, message=message)
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
        self._opened.ledger.dead.write(dead_line(item, failure, 0))
        self._events.dead_letter(item.custom_id, item.line, failure.status_code, failure.type)
        self._stats.dead += 1
        self._stats.dead_by_status[failure_key(failure.status_code, failure.type)] += 1

    async def _submit(self, chunk: Chunk, create: CreateJob) -> Stop | None:
        """Upload ``chunk``, record it, have its job created; or the budget's refusal."""
        budget = self._config.max_cost
        if budget is not None and self._worst + chunk.worst_cost > budget:
            _discard(chunk)
            return _over_budget(chunk, budget)
        book = self._book
        recorded = False
        try:
            self._set_phase(f"uploading {chunk.count:,} requests ({chunk.size:,} bytes)")
            file_id = await self._api.upload(chunk.upload, f"batchrunner-{chunk.token}.jsonl")
            book.record(
                "uploaded", chunk.token, file_id=file_id, model=chunk.model,
                endpoint=chunk.endpoint, count=chunk.count, bytes=chunk.size,
                ids=chunk.ids.name, ids_digest=chunk.ids_digest,
            )  # fmt: skip
            recorded = True
        finally:
            chunk.upload.unlink(missing_ok=True)
            if not recorded:
                chunk.ids.unlink(missing_ok=True)
        self._worst += chunk.worst_cost
        self._stats.sent += chunk.count
        await create(book.chunks[chunk.token])
        return None

    def _costing(self) -> Costing | None:
        """What an item may cost at most at batch prices, when ``--max-cost`` asks."""
        cfg, prices = self._config, self._prices
        if cfg.max_cost is None:
            return None
        completions = CompletionEstimator(cfg.endpoint)

        def worst(item: Item) -> float:
            prompt = estimate_prompt_tokens(item.body, cfg.endpoint)
            return cost(_model(item), prompt, completions.estimate(item.body), prices) or 0.0

        return worst


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
        f"${chunk.worst_cost:.4f} at batch prices, which would pass `max_cost` ${budget:g}; "
        "its ids are pending: raise it and re-run",
    )
