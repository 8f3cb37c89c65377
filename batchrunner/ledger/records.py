"""The two output line shapes, written and read back.

A result is the Mistral Batch API output shape plus our own ``batchrunner`` key; a
dead-letter entry carries what a person needs to fix and re-send the item. ``custom_id``
comes first and ``batchrunner`` last in both, so the files read well with ``head`` and a
result we wrote can be read back without parsing its (large) body.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import orjson

from batchrunner.input.lines import BadLine, Item
from batchrunner.vocabulary import Failure

__all__ = [
    "KIND_INPUT",
    "KIND_REQUEST",
    "DeadFields",
    "batch_job_of",
    "dead_line",
    "input_dead_line",
    "loads_object",
    "read_dead",
    "read_result",
    "result_line",
    "utc_iso",
]

#: A dead-letter entry for a request the API refused (keyed by custom_id) ...
KIND_REQUEST = "request"
#: ... or for an input line that could not be sent at all (keyed by line number).
KIND_INPUT = "input"

_ID_PREFIX = b'{"custom_id":"'
_ID_START = len(_ID_PREFIX)
# The end of a result line as result_line writes it: the line and fingerprint without a parse.
_RESULT_TAIL = re.compile(
    rb',"batchrunner":\{"line":(\d+),"attempts":\d+,"latency_ms":[^,]*,"fp":"([0-9a-f]+)"'
    rb'(?:,"batch_job":"[^"\\]*")?\}\}\n\Z'
)
# Longer than any tail _RESULT_TAIL matches: where its search starts.
_TAIL_SPAN = 240


def utc_iso(ts: float | None = None) -> str:
    """``ts`` (default: now) as the UTC timestamp every file of a run uses."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def result_line(
    item: Item, body: Any, attempts: int, latency_s: float, batch_job: str | None = None
) -> bytes:
    """A result line; ``batch_job`` names the Batch API job that answered it, if one did."""
    meta: dict[str, Any] = {
        "line": item.line,
        "attempts": attempts,
        "latency_ms": round(latency_s * 1000, 1),
        "fp": item.fp,
    }
    if batch_job is not None:
        meta["batch_job"] = batch_job
    record = {
        "custom_id": item.custom_id,
        "response": {"status_code": 200, "body": body},
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


@dataclass(frozen=True, slots=True)
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
    meta, error = _dict(obj.get("batchrunner")), _dict(obj.get("error"))
    kind = KIND_INPUT if meta.get("kind") == KIND_INPUT else KIND_REQUEST
    cid, line, fp = obj.get("custom_id"), obj.get("line"), meta.get("fp")
    status = error.get("status_code")
    fields = DeadFields(
        kind=kind,
        custom_id=cid if isinstance(cid, str) else None,
        line=line if _is_int(line) else None,
        status_code=status if _is_int(status) else None,
        type=str(error.get("type") or "unknown"),
        fp=fp if isinstance(fp, str) else None,
    )
    key = fields.line if kind == KIND_INPUT else fields.custom_id
    return fields if key is not None else None


def batch_job_of(obj: dict[str, Any]) -> str | None:
    """The Batch API job an outcome line (parsed) came from, if it came from one."""
    job = _dict(obj.get("batchrunner")).get("batch_job")
    return job if isinstance(job, str) else None


def read_result(raw: bytes) -> tuple[str, int | None, str | None] | None:
    """(custom_id, input line, request fingerprint) of a results-file line; ``None`` when
    it is not a result. A line as :func:`result_line` wrote it is read without a parse."""
    cid = _leading_id(raw)
    if cid is not None:
        tail = _RESULT_TAIL.search(raw, max(len(raw) - _TAIL_SPAN, 0))
        if tail is not None:
            return cid, int(tail[1]), tail[2].decode()
    obj = loads_object(raw)
    cid = obj.get("custom_id") if obj else None
    if not isinstance(cid, str):
        return None
    meta = _dict(obj.get("batchrunner")) if obj else {}
    line, fp = meta.get("line"), meta.get("fp")
    return cid, line if _is_int(line) else None, fp if isinstance(fp, str) else None


def _leading_id(raw: bytes) -> str | None:
    """The id of a line we wrote (``{"custom_id":"...",`` first, a whole line), without
    parsing the rest; ``None`` when the line is not that plain, and then it is parsed."""
    if not raw.startswith(_ID_PREFIX) or not raw.endswith(b"}\n"):
        return None
    end = raw.find(b'"', _ID_START)
    if end < 0 or raw.find(b"\\", _ID_START, end) >= 0 or raw[end + 1 : end + 2] != b",":
        return None
    try:
        return raw[_ID_START:end].decode("utf-8")
    except UnicodeDecodeError:
        return None


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
