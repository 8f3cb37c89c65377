"""Mistral-shaped HTTP replies: error bodies, 422 details and rate-limit headers.

Every error body has the shape the real API uses:
``{"object": "error", "message": ..., "type": ..., "param": null, "code": ...}``.
The ``type``/``code`` pairs below are the mock's choice where the real values are
not documented: 401 is ``unauthorized``/"1000", generic statuses use a snake_case
reason phrase as type and the status itself as code. 422 uses FastAPI's
``{"detail": [...]}`` shape because that is what the SDK parses into
``HTTPValidationError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, NamedTuple

import orjson

JSON_HEADERS: Mapping[str, str] = {"Content-Type": "application/json"}

# (message, type, code) for the statuses a client is most likely to branch on.
_KNOWN: dict[int, tuple[str, str, str]] = {
    400: ("Bad request", "invalid_request_error", "400"),
    401: ("Unauthorized", "unauthorized", "1000"),
    403: ("Forbidden", "forbidden", "403"),
    404: ("Not found", "not_found", "404"),
    429: ("Requests rate limit exceeded", "rate_limited", "1300"),
    500: ("Internal server error", "internal_server_error", "500"),
    502: ("Bad gateway", "bad_gateway", "502"),
    503: ("Service unavailable", "service_unavailable", "503"),
    504: ("Gateway timeout", "gateway_timeout", "504"),
}


class Reply(NamedTuple):
    """A complete HTTP answer: status, body bytes and extra headers."""

    status: int
    body: bytes
    headers: Mapping[str, str] = JSON_HEADERS


def error_reply(
    status: int,
    message: str | None = None,
    type_: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] = JSON_HEADERS,
) -> Reply:
    """A Mistral-shaped error body for ``status``; unset parts get defaults."""
    default_message, default_type, default_code = _KNOWN.get(status) or _generic(status)
    body = {
        "object": "error",
        "message": message or default_message,
        "type": type_ or default_type,
        "param": None,
        "code": code or default_code,
    }
    return Reply(status, orjson.dumps(body), headers)


def _generic(status: int) -> tuple[str, str, str]:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:  # a status Python does not name, e.g. 599
        phrase = "Error"
    return phrase, phrase.lower().replace(" ", "_").replace("-", "_"), str(status)


def retry_headers(retry_after_ms: int) -> dict[str, str]:
    """Headers of a 429: whole seconds (rounded up) and exact milliseconds."""
    return {
        "Content-Type": "application/json",
        "Retry-After": str(math.ceil(retry_after_ms / 1000)),
        "retry-after-ms": str(retry_after_ms),
    }


def rate_limited_reply(retry_after_ms: int, message: str = "Requests rate limit exceeded") -> Reply:
    """The 429 a real account gets when over its request or token limit."""
    return error_reply(429, message, "rate_limited", "1300", retry_headers(retry_after_ms))


def capacity_reply(retry_after_ms: int) -> Reply:
    """The 429 Mistral sends when its side is full, whatever the client's own rate."""
    message = "Service tier capacity exceeded for this model."
    return error_reply(
        429, message, "service_tier_capacity_exceeded", "3505", retry_headers(retry_after_ms)
    )


def quota_reply() -> Reply:
    """A 429 that retrying will not fix: monthly quota spent, no Retry-After."""
    return error_reply(429, "You have exceeded your monthly quota", "quota_exceeded", "3505")


def invalid_model_reply(name: str) -> Reply:
    """400 for a model that is not in ``GET /v1/models``."""
    return error_reply(400, f"Invalid model: {name}", "invalid_model", "1500")


def missing(field: str) -> dict[str, Any]:
    """A FastAPI-style detail item for a required body field that is absent."""
    return {"type": "missing", "loc": ["body", field], "msg": "Field required", "input": None}


def wrong_type(field: str, kind: str, value: object) -> dict[str, Any]:
    """A FastAPI-style detail item for a body field of the wrong type."""
    article = "an" if kind[0] in "aeiou" else "a"
    return {
        "type": f"{kind}_type",
        "loc": ["body", field],
        "msg": f"Input should be {article} valid {kind}",
        "input": value,
    }


def validation_reply(detail: list[dict[str, Any]]) -> Reply:
    """422 with a FastAPI ``detail`` list, which the SDK turns into HTTPValidationError."""
    return Reply(422, orjson.dumps({"detail": detail}))


def status_fault_reply(status: int, retry_after_ms: int) -> Reply:
    """The reply for an injected HTTP status fault (scripted or random)."""
    if status == 429:
        return rate_limited_reply(retry_after_ms)
    if status == 422:
        item = {"type": "value_error", "loc": ["body"], "msg": "mock: injected 422", "input": None}
        return validation_reply([item])
    return error_reply(status)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


_DEEP_ANSWER = (
    b'{"id":"cmpl-deep","object":"chat.completion","created":1,"model":"mistral-small-latest",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"deep"},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,'
    b'"total_tokens":2},"nested":' + _nested(300) + b"}"
)
_HTML = {"Content-Type": "text/html; charset=utf-8"}

#: Answers a hostile or broken server (or a proxy in the way) sends, by fault name: each
#: must still become one outcome for its item. 300 levels is past the 254 that orjson
#: writes and the SDK's pydantic reads, and within the 1024 that orjson reads.
POISON: Mapping[str, Reply] = {
    "deep": Reply(200, _DEEP_ANSWER),
    "deeperror": Reply(500, b'{"object":"error","detail":' + _nested(300) + b"}"),
    "html": Reply(200, b"<!DOCTYPE html><html><body>Proxy sign-in required</body></html>", _HTML),
    "shapeless": Reply(200, b'{"foo":1}'),
    "error200": Reply(200, error_reply(503).body),
}
