"""Bringing a job's outcomes home: each line of its output and error files becomes the outcome
an online answer would have made, in the run's own results and dead-letter files.

- a 200 with a usable body: a result line in the online shape, the job named in its
  ``batchrunner`` metadata (with ``--client sdk`` the body is read through the SDK's
  response model, as an online ``sdk`` run records it);
- any other answer is classified as online (:mod:`batchrunner.clients.classify`): what an
  online run would retry (429, 5xx, an unusable 200) or pause on (a spent quota) stays
  pending, for a later run to send again; the rest is dead-lettered with its request;
- an id the job never answered (it failed, timed out or was cancelled) stays pending.

Bringing a job home again writes nothing twice: an id that has a result is skipped, and so
is one whose dead-letter entry this job already wrote (the dead-letter file is searched for
them only when an earlier bringing-home of the job was cut short). A crash half-way and a
re-run give the files that no crash gives.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import anyio
import orjson
import pydantic
from mistralai.client import models

from batchrunner.batch.ids import JobIndex, Row
from batchrunner.clients.base import usage_of
from batchrunner.clients.classify import classify_status, invalid_response, redacted
from batchrunner.config import ClientKind
from batchrunner.input.idset import IdSet
from batchrunner.input.lines import Item, parse_line, read_input
from batchrunner.ledger.appendfile import AppendFile
from batchrunner.ledger.records import batch_job_of, dead_line, loads_object, result_line
from batchrunner.ledger.state import LedgerState, read_records
from batchrunner.vocabulary import Failure, Success, failure_key

__all__ = ["HomeCounts", "Homecoming", "JobContext", "bring_home_file", "dead_ids_of_job"]

# Lines handled between two turns of the event loop: Ctrl-C stays prompt during a long file.
_BREATHE_EVERY = 4096
_SDK_MODELS: Final[dict[str, type[pydantic.BaseModel]]] = {
    "/v1/chat/completions": models.ChatCompletionResponse,
    "/v1/embeddings": models.EmbeddingResponse,
    "/v1/fim/completions": models.FIMCompletionResponse,
}


@dataclass(frozen=True, slots=True)
class JobContext:
    """What reading one job's answers needs to know of the run and the job."""

    job_id: str
    endpoint: str
    client: ClientKind
    input_path: Path
    model: str | None
    api_key: str | None
    #: The job's turnaround, recorded as each result's latency.
    latency_s: float


@dataclass(slots=True)
class HomeCounts:
    """What bringing a job home did."""

    results: int = 0
    dead: int = 0
    pending: int = 0
    #: Lines for ids that already had their outcome (an earlier, cut-short bringing-home).
    skipped: int = 0
    #: Lines whose id the job was not sent (or that name no id).
    unknown: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    dead_by_key: Counter[str] = field(default_factory=Counter)
    pending_by_key: Counter[str] = field(default_factory=Counter)


def dead_ids_of_job(dead_path: Path, job_id: str) -> IdSet:
    """The ids the dead-letter file already holds an entry of job ``job_id`` for."""
    ids = IdSet()
    for _, _, raw in read_records(dead_path):
        if job_id.encode() not in raw:  # most lines: no parse
            continue
        obj = loads_object(raw)
        cid = obj.get("custom_id") if obj else None
        if obj is not None and isinstance(cid, str) and batch_job_of(obj) == job_id:
            ids.add(cid)
    return ids


class Homecoming:
    """Writes the outcome of each answer line of one job; :attr:`counts` says what it did."""

    __slots__ = ("_ctx", "_dead", "_index", "_input", "_results", "_state", "_written", "counts")

    def __init__(
        self,
        ctx: JobContext,
        index: JobIndex,
        state: LedgerState,
        files: tuple[AppendFile, AppendFile],
        written_dead: IdSet,
    ) -> None:
        """``files``: the results and dead-letter files; ``written_dead``: the ids this job
        already dead-lettered (:func:`dead_ids_of_job`)."""
        self._ctx, self._index, self._state = ctx, index, state
        self._results, self._dead = files
        self._written = written_dead
        self._input: IO[bytes] = ctx.input_path.open("rb")
        self.counts = HomeCounts()

    def take(self, raw: bytes) -> None:
        """One line of the job's output or error file."""
        obj = loads_object(raw)
        cid = obj.get("custom_id") if obj else None
        row = self._index.get(cid) if isinstance(cid, str) else None
        if obj is None or row is None or not isinstance(cid, str):
            self.counts.unknown += 1
            return
        if self._has_result(cid):
            self.counts.skipped += 1
            return
        outcome = self._outcome(obj)
        if isinstance(outcome, Success):
            self._succeeded(cid, row, outcome)
        elif outcome.action in ("retry", "pause"):
            self.counts.pending += 1
            self.counts.pending_by_key[failure_key(outcome.status_code, outcome.type)] += 1
        elif cid in self._written:
            self.counts.skipped += 1
        else:
            self._dead_letter(cid, row, redacted(outcome, self._ctx.api_key))

    def close(self) -> None:
        self._input.close()

    def _has_result(self, cid: str) -> bool:
        state = self._state
        return state.decided(cid) and state.dead_entry(cid) is None

    def _outcome(self, obj: dict[str, Any]) -> Success | Failure:
        response = obj.get("response")
        response = response if isinstance(response, dict) else {}
        status, body = response.get("status_code"), response.get("body")
        if not isinstance(status, int) or isinstance(status, bool):
            return invalid_response(f"a batch line without an answer: {obj.get('error')!r}")
        if status != 200:
            text = body if isinstance(body, str) else orjson.dumps(body)
            return classify_status(status, {}, text)
        return self._success(body)

    def _success(self, body: object) -> Success | Failure:
        if not isinstance(body, dict):
            return invalid_response("200 with a body that is not a JSON object")
        if self._ctx.client != "sdk":
            return usage_of(body)
        try:
            parsed = _SDK_MODELS[self._ctx.endpoint].model_validate(body)
        except pydantic.ValidationError as exc:
            return invalid_response(f"200 the SDK could not read: {exc}".splitlines()[0])
        return usage_of(parsed.model_dump(mode="json", by_alias=True, exclude_unset=True))

    def _succeeded(self, cid: str, row: Row, reply: Success) -> None:
        line, _, fp = row
        item = Item(cid, line, {}, {}, fp)
        ctx = self._ctx
        self._results.write(result_line(item, reply.body, 1, ctx.latency_s, ctx.job_id))
        counts = self.counts
        counts.results += 1
        counts.prompt_tokens += reply.prompt_tokens
        counts.completion_tokens += reply.completion_tokens

    def _dead_letter(self, cid: str, row: Row, failure: Failure) -> None:
        item = self._request(cid, row)
        self._dead.write(dead_line(item, failure, 1, self._ctx.job_id))
        self.counts.dead += 1
        self.counts.dead_by_key[failure_key(failure.status_code, failure.type)] += 1

    def _request(self, cid: str, row: Row) -> Item:
        """The item as the input has it, for its dead-letter entry: read at the offset the
        ids file kept; searched for when the input was edited since."""
        line, offset, fp = row
        ctx = self._ctx
        self._input.seek(offset)
        parsed = parse_line(self._input.readline(), line, ctx.endpoint, ctx.model)
        if isinstance(parsed, Item) and parsed.custom_id == cid:
            return parsed
        for entry in read_input(ctx.input_path, ctx.endpoint, ctx.model):
            if isinstance(entry, Item) and entry.custom_id == cid:
                return entry
        return Item(cid, line, {}, {"custom_id": cid}, fp)  # the line is gone from the input


async def bring_home_file(path: Path, homecoming: Homecoming) -> None:
    """Every line of a downloaded output or error file, letting the loop breathe."""
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            if raw.strip():
                homecoming.take(raw)
            if n % _BREATHE_EVERY == 0:
                await anyio.sleep(0)
