"""Bringing a job's outcomes home: each line of its output and error files becomes the outcome
an online answer would have made, in the run's own results and dead-letter files.

- every answer is read as an online answer is read (:mod:`batchrunner.clients.classify`):
  a 200 that is an answer becomes a result line in the online shape, the job named in its
  ``batchrunner`` metadata; what an online run would retry (429, 5xx, an unusable 200) or
  pause on (a spent quota) stays pending, for a later run to send again; the rest is
  dead-lettered with its request;
- an id the job never answered (it failed, timed out or was cancelled) stays pending.

Bringing a job home again writes nothing twice: an id this job already has an outcome of is
skipped (the files are searched for them only when an earlier bringing-home of the job was
cut short). A crash half-way and a re-run give the files that no crash gives.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
import orjson

from batchrunner.batch.ids import JobIndex, Row
from batchrunner.clients.classify import classify_status, invalid_response, read_ok, safe_text
from batchrunner.engine.events import NO_EVENTS, Events
from batchrunner.input.idset import IdSet
from batchrunner.input.lines import Item, parse_line, read_input
from batchrunner.ledger.appendfile import AppendFile
from batchrunner.ledger.records import (
    batch_job_of,
    dead_line,
    loads_object,
    read_records,
    result_line,
)
from batchrunner.vocabulary import Failure, Success, failure_key

__all__ = ["HomeCounts", "Homecoming", "JobContext", "bring_home_file", "ids_of_job"]

# Lines handled between two turns of the event loop: Ctrl-C stays prompt during a long file.
_BREATHE_EVERY = 4096
# Digits in a row that may make an integer past orjson's 64 bits, which it reads as a float.
_LONG_RUN = re.compile(rb"\d{19}")


@dataclass(frozen=True, slots=True)
class JobContext:
    """What reading one job's answers needs to know of the run and the job."""

    job_id: str
    endpoint: str
    input_path: Path
    model: str | None
    #: How the run names a line without ``custom_id`` (see ``ledger.manifest``).
    implicit_prefix: str
    api_key: str | None
    #: The job's turnaround, recorded as each result's latency.
    latency_s: float


@dataclass(slots=True)
class HomeCounts:
    """What bringing a job home did."""

    results: int = 0
    dead: int = 0
    pending: int = 0
    #: Lines for ids this job already has an outcome of (an earlier, cut-short homecoming).
    skipped: int = 0
    #: Lines whose id the job was not sent, or that cannot be read at all.
    unknown: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    dead_by_key: Counter[str] = field(default_factory=Counter)
    pending_by_key: Counter[str] = field(default_factory=Counter)


def ids_of_job(results_path: Path, dead_path: Path, job_id: str) -> IdSet:
    """The ids the run's files already hold an outcome of job ``job_id`` for (only lines
    that name the job are parsed)."""
    ids = IdSet()
    marker = b'"batch_job":' + orjson.dumps(job_id)
    for path in (results_path, dead_path):
        for _, _, raw in read_records(path):
            obj = _read_line(raw) if marker in raw else None
            cid = obj.get("custom_id") if obj is not None else None
            if obj is not None and isinstance(cid, str) and batch_job_of(obj) == job_id:
                ids.add(cid)
    return ids


class Homecoming:
    """Writes the outcome of each answer line of one job; :attr:`counts` says what it did."""

    __slots__ = (
        "_ctx", "_dead", "_events", "_index", "_input", "_results", "_written", "counts",
    )  # fmt: skip

    def __init__(
        self,
        ctx: JobContext,
        index: JobIndex,
        files: tuple[AppendFile, AppendFile],
        written: IdSet,
        events: Events = NO_EVENTS,
    ) -> None:
        """``files``: the results and dead-letter files; ``written``: the ids this job
        already has an outcome of (:func:`ids_of_job`); ``events`` hears each dead-letter."""
        self._ctx, self._index, self._written, self._events = ctx, index, written, events
        self._results, self._dead = files
        self._input: IO[bytes] = ctx.input_path.open("rb")
        self.counts = HomeCounts()

    def take(self, raw: bytes) -> None:
        """One line of the job's output or error file."""
        obj = _read_line(raw)
        cid = obj.get("custom_id") if obj is not None else None
        row = self._index.get(cid) if isinstance(cid, str) else None
        if obj is None or row is None or not isinstance(cid, str):
            self.counts.unknown += 1
        elif cid in self._written:
            self.counts.skipped += 1
        else:
            self._decide(cid, row, self._outcome(obj))

    def close(self) -> None:
        self._input.close()

    def _decide(self, cid: str, row: Row, outcome: Success | Failure) -> None:
        if isinstance(outcome, Success):
            self._succeeded(cid, row, outcome)
        elif outcome.action in ("retry", "pause"):  # online would send it again
            self.counts.pending += 1
            self.counts.pending_by_key[failure_key(outcome.status_code, outcome.type)] += 1
        else:
            self._dead_letter(cid, row, outcome)

    def _outcome(self, obj: dict[str, Any]) -> Success | Failure:
        """The answer of one line, read as an online answer is read."""
        ctx = self._ctx
        response = obj.get("response")
        response = response if isinstance(response, dict) else {}
        status, body = response.get("status_code"), response.get("body")
        if not isinstance(status, int) or isinstance(status, bool):
            what = safe_text(f"a batch line without an answer: {obj.get('error')!r}", ctx.api_key)
            return invalid_response(what)
        if status == 200:
            return read_ok(_json_bytes(body), ctx.endpoint, {}, ctx.api_key)
        text = body if isinstance(body, str) else _json_bytes(body)
        return classify_status(status, {}, text, ctx.api_key)

    def _succeeded(self, cid: str, row: Row, reply: Success) -> None:
        line, _, fp = row
        item = Item(cid, line, {}, {}, fp)
        ctx = self._ctx
        self._results.write(
            result_line(item, reply.body, 1, ctx.latency_s, reply.raw, batch_job=ctx.job_id)
        )
        counts = self.counts
        counts.results += 1
        counts.prompt_tokens += reply.prompt_tokens
        counts.completion_tokens += reply.completion_tokens

    def _dead_letter(self, cid: str, row: Row, failure: Failure) -> None:
        item = self._request(cid, row)
        self._dead.write(dead_line(item, failure, 1, batch_job=self._ctx.job_id))
        self._events.dead_letter(cid, item.line, failure.status_code, failure.type)
        self.counts.dead += 1
        self.counts.dead_by_key[failure_key(failure.status_code, failure.type)] += 1

    def _request(self, cid: str, row: Row) -> Item:
        """The item as the input has it, for its dead-letter entry: read at the offset the
        ids file kept; searched for when the input was edited since."""
        line, offset, fp = row
        ctx = self._ctx
        self._input.seek(offset)
        raw = self._input.readline()
        parsed = parse_line(raw, line, ctx.endpoint, ctx.model, ctx.implicit_prefix)
        if isinstance(parsed, Item) and parsed.custom_id == cid:
            return parsed
        found = read_input(
            ctx.input_path, ctx.endpoint, ctx.model, None, False, ctx.implicit_prefix
        )
        for entry in found:
            if isinstance(entry, Item) and entry.custom_id == cid:
                return entry
        return Item(cid, line, {}, {"custom_id": cid}, fp)  # the line is gone from the input


def _read_line(raw: bytes) -> dict[str, Any] | None:
    """One output line parsed, its numbers as written: orjson, or the standard library for
    integers past 64 bits and nesting deeper than orjson reads (an answer is never lost to
    its shape)."""
    obj: Any = None
    if _LONG_RUN.search(raw) is None:
        obj = loads_object(raw)
    if obj is None:
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            return None
    return obj if isinstance(obj, dict) else None


def _json_bytes(value: Any) -> bytes:
    """``value`` as JSON on one line (through the standard library where orjson cannot)."""
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


async def bring_home_file(path: Path, homecoming: Homecoming) -> None:
    """Every line of a downloaded output or error file, letting the loop breathe."""
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            if raw.strip():
                homecoming.take(raw)
            if n % _BREATHE_EVERY == 0:
                await anyio.sleep(0)
