"""The two output line shapes, written and read back.

A result is the Mistral Batch API output shape plus our own ``batchrunner`` key; a
dead-letter entry carries what a person needs to fix and re-send the item. ``custom_id``
comes first and ``batchrunner`` last in both, so the files read well with ``head`` and a
result we wrote can be read back without parsing its (large) body.
"""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import repeat
from operator import add, getitem
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from batchrunner.input.lines import BadLine, Item
from batchrunner.vocabulary import Failure

__all__ = [
    "KIND_INPUT",
    "KIND_REQUEST",
    "DeadFields",
    "ResultLines",
    "batch_job_of",
    "dead_fields",
    "dead_line",
    "input_dead_line",
    "is_dead_entry",
    "is_result",
    "loads_object",
    "read_dead",
    "read_records",
    "read_results",
    "result_line",
    "utc_iso",
]

#: A dead-letter entry for a request the API refused (keyed by custom_id) ...
KIND_REQUEST = "request"
#: ... or for an input line that could not be sent at all (keyed by line number).
KIND_INPUT = "input"

# How result_line's lines start and end, to read them without a parse:
# {"custom_id":"ID",...,"batchrunner":{"line":N,...,"fp":"16 hex digits"}}
_ID_PREFIX = b'{"custom_id":"'
_ID_START = len(_ID_PREFIX)
_META = b',"batchrunner":{"line":'
_FP_KEY, _FP_END = b',"fp":"', b'"}}\n'  # 16 hex digits between
_FP_AT, _FP = slice(-27, -20), slice(-20, -4)
# How _dead's lines are laid out, to read them without their request:
# {"custom_id":..,"line":..,"request":..,"error":{..},"attempts":..,"ts":..,"batchrunner":{..}}
_ID_KEY, _REQUEST = b'{"custom_id":', b',"request":'
_DEAD_HEAD = ["custom_id", "line"]
_ERROR, _ERROR_END, _DEAD_META = b',"error":{', b'},"attempts":', b',"batchrunner":{'
_COMMA = repeat(b",")


def utc_iso(ts: float | None = None) -> str:
    """``ts`` (default: now) as the UTC timestamp every file of a run uses."""
    second = int(time.time() if ts is None else ts)
    return _utc_second(second)


@functools.lru_cache(maxsize=4)
def _utc_second(second: int) -> str:
    # Every result line carries one: formatted once a second, not once a line.
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))


def result_line(
    item: Item,
    body: Any,
    attempts: int,
    latency_s: float,
    raw: bytes = b"",
    batch_job: str | None = None,
) -> bytes:
    """A result line; ``ts`` in its metadata is when it completed (UTC). The body is ``raw``
    as it is when given (JSON on one line, as the server sent it: nothing to re-serialize,
    so nothing it holds can fail the write or be changed by it), else ``body`` serialized.
    ``batch_job`` names the Batch API job that answered it, if one did."""
    # "line" first and "fp" last: read_results reads both back without a parse.
    meta: dict[str, Any] = {
        "line": item.line,
        "attempts": attempts,
        "latency_ms": round(latency_s * 1000, 1),
    }
    if batch_job is not None:
        meta["batch_job"] = batch_job
    meta["ts"] = utc_iso()
    meta["fp"] = item.fp
    if item.endpoint is not None:  # the line named it with "url": say where it went
        meta["url"] = item.endpoint
    record = {
        "custom_id": item.custom_id,
        "response": {"status_code": 200, "body": orjson.Fragment(raw) if raw else body},
        "error": None,
        "batchrunner": meta,
    }
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def dead_line(item: Item, failure: Failure, attempts: int, batch_job: str | None = None) -> bytes:
    """A dead-letter entry for a request; ``batch_job`` as in :func:`result_line`."""
    meta: dict[str, Any] = {"kind": KIND_REQUEST, "fp": item.fp}
    if batch_job is not None:
        meta["batch_job"] = batch_job
    return _dead(
        item.custom_id,
        item.line,
        item.request,
        item.raw,
        failure.status_code,
        failure.type,
        failure.message,
        attempts,
        meta,
    )


def input_dead_line(bad: BadLine) -> bytes:
    meta = {"kind": KIND_INPUT}
    return _dead(
        bad.custom_id, bad.line, bad.request, bad.raw, None, bad.type, bad.message, 0, meta
    )


def _dead(
    custom_id: str | None,
    line: int,
    request: Any,
    raw: bytes,
    status: int | None,
    type_: str,
    message: str,
    attempts: int,
    meta: dict[str, Any],
) -> bytes:
    record = {
        "custom_id": custom_id,
        "line": line,
        "request": request,
        "error": {"status_code": status, "type": type_, "message": message},
        "attempts": attempts,
        "ts": utc_iso(),
        "batchrunner": meta,
    }
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: keep the line's text
        record["request"] = raw.decode("utf-8", "replace")
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


# -- reading them back ---------------------------------------------------------------


def read_records(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(offset, line number, raw line) of each non-blank line of ``path``; a missing file
    has none."""
    offset = 0
    with _open(path) as f:
        for n, raw in enumerate(f, start=1):
            if raw.strip():
                yield offset, n, raw
            offset += len(raw)


def _open(path: Path) -> BinaryIO:
    """``path`` to read; a missing file reads as an empty one."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        return io.BytesIO()


@dataclass(slots=True)  # not frozen: one is made per entry on resume, and frozen costs 2x
class DeadFields:
    """What decides a dead-letter entry: its key (an id, or an input line for ``input``
    entries) and the failure it records."""

    kind: str
    custom_id: str | None
    line: int | None
    status_code: int | None
    type: str
    fp: str | None


def read_dead(obj: dict[str, Any]) -> DeadFields | None:
    """The deciding fields of a dead-letter entry; ``None`` when it has no key (a request
    entry without a custom_id, an input entry without a line number)."""
    meta, error = obj.get("batchrunner"), obj.get("error")
    meta = meta if type(meta) is dict else {}  # exact types: what a JSON parse makes
    error = error if type(error) is dict else {}
    cid, line, fp = obj.get("custom_id"), obj.get("line"), meta.get("fp")
    status = error.get("status_code")
    kind = KIND_INPUT if meta.get("kind") == KIND_INPUT else KIND_REQUEST
    fields = DeadFields(
        kind,
        cid if type(cid) is str else None,
        line if type(line) is int else None,
        status if type(status) is int else None,
        str(error.get("type") or "unknown"),
        fp if type(fp) is str else None,
    )
    key = fields.line if kind == KIND_INPUT else fields.custom_id
    return fields if key is not None else None


def dead_fields(raw: bytes) -> DeadFields | None:
    """The deciding fields of one line of a dead-letter file (:func:`read_dead`); ``None``
    when it is not an entry. A line as :func:`dead_line` wrote it is read without parsing
    its request, which is most of it: only its head, its error and our metadata."""
    obj = _dead_parts(raw)
    if obj is None:
        obj = loads_object(raw)
    return read_dead(obj) if obj is not None else None


def _dead_parts(raw: bytes) -> dict[str, Any] | None:
    request = raw.find(_REQUEST)  # the first: the id and line before it hold no quote
    error = raw.rfind(_ERROR)  # the last: after the request, which may hold one
    error_end = raw.find(_ERROR_END, error) + 1
    meta = raw.rfind(_DEAD_META)  # the last key
    if not (
        0 < request < error < error_end < meta and raw.startswith(_ID_KEY) and raw.endswith(b"}}\n")
    ):
        return None
    try:
        obj = orjson.loads(raw[:request] + b"}")
        if list(obj) != _DEAD_HEAD:  # keys in another order: a line we did not write
            return None
        obj["error"] = orjson.loads(raw[error + len(_ERROR) - 1 : error_end])
        obj["batchrunner"] = orjson.loads(raw[meta + len(_DEAD_META) - 1 : -2])
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def batch_job_of(obj: dict[str, Any]) -> str | None:
    """The Batch API job an outcome line (parsed) came from, if it came from one."""
    job = _dict(obj.get("batchrunner")).get("batch_job")
    return job if isinstance(job, str) else None


@dataclass(slots=True)
class ResultLines:
    """The results among a block of lines of a results file, as lists in file order: each
    one's custom_id (UTF-8), input line (0: none) and request fingerprint (``None``: none);
    and the numbers of the block's lines that are not results."""

    ids: list[bytes] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    fps: list[bytes | None] = field(default_factory=list)
    not_results: list[int] = field(default_factory=list)


#: Bytes of a results file read at once by :func:`read_results`: a few thousand results, so
#: that the lists it gives are worth a call each, and little memory.
_BLOCK = 1 << 20


def read_results(path: Path, with_fp: bool = True) -> Iterator[ResultLines]:
    """The results of a results file, block by block (blank lines are skipped). Lines as
    :func:`result_line` wrote them are read without a parse, a whole block by each step:
    resuming ten million of them is mostly this loop. Without ``with_fp``, the fingerprints
    are left out (``None``)."""
    n = 0
    with _open(path) as f:
        while block := f.readlines(_BLOCK):
            got = _ours(block, with_fp) or _one_by_one(block, n)
            if not with_fp:
                got.fps = [None] * len(got.ids)
            yield got
            n += len(block)


def _ours(block: list[bytes], with_fp: bool) -> ResultLines | None:
    """The block's results when every line is one as :func:`result_line` wrote it (each
    step a ``map``, no Python step per line); ``None`` when a line is not."""
    ends = list(map(bytes.find, block, repeat(b'",'), repeat(_ID_START)))  # the id's quote
    ids = _cuts(map(getitem, block, map(slice, repeat(_ID_START), ends)))
    starts = list(map(bytes.rfind, block, repeat(_META), ends))  # our key, written last
    meta = min(starts, default=-1) >= 0  # ... after the id, in every line
    starts = list(map(add, starts, repeat(len(_META))))
    digits = _cuts(map(getitem, block, map(slice, starts, map(bytes.find, block, _COMMA, starts))))
    if not (
        meta
        and all(map(bytes.isdigit, digits))
        and all(map(bytes.endswith, block, repeat(_FP_END)))
        and all(map(bytes.startswith, block, repeat(_ID_PREFIX)))
        and set(map(getitem, block, repeat(_FP_AT))) == {_FP_KEY}
        and not any(map(bytes.__contains__, ids, repeat(b"\\")))  # an escaped id: parsed
    ):
        return None
    if not with_fp:
        return ResultLines(ids, list(map(int, digits)))
    fps: list[bytes | None] = list(_cuts(map(getitem, block, repeat(_FP))))
    return ResultLines(ids, list(map(int, digits)), fps)


def _cuts(pieces: Iterator[Any]) -> list[bytes]:
    """``pieces``, slices of lines cut by ``map(getitem, ...)`` (typed as any sequence)."""
    return list(pieces)


def _one_by_one(block: list[bytes], before: int) -> ResultLines:
    """The block's results, line by line: those :func:`result_line` wrote still without a
    parse (by :func:`_ours`'s one rule, a line at a time)."""
    got = ResultLines()
    for n, raw in enumerate(block, start=before + 1):
        if not raw.strip():
            continue
        ours = _ours([raw], with_fp=True)
        cid, line, fp = (ours.ids[0], ours.lines[0], ours.fps[0]) if ours else _parse_result(raw)
        if cid is None:
            got.not_results.append(n)
        else:
            got.ids.append(cid)
            got.lines.append(line)
            got.fps.append(fp)
    return got


def read_result(raw: bytes) -> tuple[str, int] | None:
    """(custom_id, input line or 0) of one results-file line; ``None`` when it is not a
    result (a parse: for tools that read a file once, not for the resume scan)."""
    cid, line, _ = _parse_result(raw)
    return (cid.decode("utf-8", "surrogatepass"), line) if cid is not None else None


def result_id(raw: bytes) -> str | None:
    """The custom_id of one results-file line; ``None`` when it is not a result. A line as
    :func:`result_line` wrote it is read without a parse."""
    end = raw.find(b'",', _ID_START)
    if raw.startswith(_ID_PREFIX) and end > 0 and raw.find(b"\\", 0, end) < 0:
        cid: bytes | None = raw[_ID_START:end]
    else:
        cid = _parse_result(raw)[0]
    return cid.decode("utf-8", "surrogatepass") if cid is not None else None


def _parse_result(raw: bytes) -> tuple[bytes | None, int, bytes | None]:
    obj = loads_object(raw)
    cid = obj.get("custom_id") if obj else None
    if obj is None or not isinstance(cid, str):
        return None, 0, None
    meta = _dict(obj.get("batchrunner"))
    line, fp = meta.get("line"), meta.get("fp")
    return (
        cid.encode(),
        line if isinstance(line, int) and not isinstance(line, bool) else 0,
        fp.encode() if isinstance(fp, str) else None,
    )


def is_result(obj: dict[str, Any]) -> bool:
    """Whether a parsed line has the shape of a result (the Batch API output shape)."""
    return "custom_id" in obj and "response" in obj


def is_dead_entry(obj: dict[str, Any]) -> bool:
    """Whether a parsed line has the shape of a dead-letter entry."""
    return {"error", "line", "request"} <= obj.keys()


def loads_object(raw: bytes) -> dict[str, Any] | None:
    """``raw`` parsed when it is a JSON object, else ``None``."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
