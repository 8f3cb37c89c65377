"""The two output line shapes.

A result is the Mistral Batch API output shape plus our own ``batchrunner`` key; a
dead-letter entry carries what a person needs to fix and re-send the item. ``custom_id``
comes first and ``batchrunner`` last in both, so the files read well with ``head``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from batchrunner.input.lines import BadLine, Item
from batchrunner.vocabulary import Failure

__all__ = ["KIND_INPUT", "KIND_REQUEST", "dead_line", "input_dead_line", "result_line"]

#: A dead-letter entry for a request the API refused (keyed by custom_id) ...
KIND_REQUEST = "request"
#: ... or for an input line that could not be sent at all (keyed by line number).
KIND_INPUT = "input"


def result_line(item: Item, body: Any, attempts: int, latency_s: float) -> bytes:
    meta: dict[str, Any] = {
        "line": item.line,
        "attempts": attempts,
        "latency_ms": round(latency_s * 1000, 1),
        "fp": item.fp,
    }
    if item.endpoint is not None:  # the line named it with "url": say where it went
        meta["url"] = item.endpoint
    record = {
        "custom_id": item.custom_id,
        "response": {"status_code": 200, "body": body},
        "error": None,
        "batchrunner": meta,
    }
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def dead_line(item: Item, failure: Failure, attempts: int) -> bytes:
    return _dead(
        item.custom_id,
        item.line,
        item.request,
        item.raw,
        failure.status_code,
        failure.type,
        failure.message,
        attempts,
        {"kind": KIND_REQUEST, "fp": item.fp},
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
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "batchrunner": meta,
    }
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: keep the line's text
        record["request"] = raw.decode("utf-8", "replace")
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
