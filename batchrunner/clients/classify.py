"""Turning an HTTP answer or a transport error into a :class:`Failure`: retry it or set it aside.

Status code first, then transport error, then an unusable 200 body. Both clients use these
functions, so the same server answer is classified the same way whichever client sent it.
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
import time
from collections.abc import Mapping
from typing import Any

import orjson

from batchrunner.vocabulary import Failure, FailureType

__all__ = [
    "classify_status",
    "connection_failure",
    "error_message",
    "invalid_response",
    "parse_retry_after",
    "redacted",
    "timeout_failure",
]

_TYPES: dict[int, FailureType] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    422: "validation_error",
    429: "rate_limited",
}
_MAX_MESSAGE = 500
_MIN_KEY = 8


def classify_status(status: int, headers: Mapping[str, str], body: bytes | str) -> Failure:
    """Classify a non-200 answer. 429 and 5xx are retryable; every other status is not.

    Two answers get a type of their own because no retry can help them: a 429 that says the
    quota is spent (``quota_exceeded``: a rate limit, by contrast, passes in seconds) and a
    400 naming an unknown model (``invalid_model``). A 429 that says the server is out of
    capacity (``capacity_exceeded``) is retried like a rate limit, but says nothing of the
    client's own rate.
    """
    message = error_message(body) or f"HTTP {status}"
    if status == 429:
        if _says(body, message, "quota"):
            return Failure(type="quota_exceeded", status_code=429, message=message)
        return Failure(
            type="capacity_exceeded" if _out_of_capacity(body, message) else "rate_limited",
            status_code=429,
            message=message,
            retry_after=parse_retry_after(headers),
        )
    if status == 400 and _says(body, message, "invalid_model"):
        return Failure(type="invalid_model", status_code=400, message=message)
    if status >= 500:
        return Failure(
            type="server_error",
            status_code=status,
            message=message,
            retry_after=parse_retry_after(headers),
        )
    return Failure(type=_TYPES.get(status, "client_error"), status_code=status, message=message)


def timeout_failure(timeout: float) -> Failure:
    return Failure(type="timeout", status_code=None, message=f"no answer within {timeout:g} s")


def connection_failure(exc: BaseException) -> Failure:
    detail = str(exc) or type(exc).__name__
    return Failure(type="connection_error", status_code=None, message=_clip(detail))


def invalid_response(detail: str) -> Failure:
    """A 200 whose body is not the JSON object expected: retried, the server may do better."""
    return Failure(type="invalid_response", status_code=200, message=_clip(detail))


#: The ``type`` of Mistral's 429s that say its side is full (the ``code`` is "3505").
_CAPACITY_TYPES = frozenset({"service_tier_capacity_exceeded", "backend_out_of_capacity"})


def _out_of_capacity(body: bytes | str, message: str) -> bool:
    """Whether a 429 says the server is full rather than the client too fast: by its
    ``type``, then its ``code`` (3505; a rate limit's is 1300), then its message. An
    unknown 429 is a plain rate limit."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        kind, code = data.get("type"), str(data.get("code"))
        if kind in _CAPACITY_TYPES or (kind != "rate_limited" and code == "3505"):
            return True
        if kind == "rate_limited" or code == "1300":
            return False
    text = message.lower()
    return "capacity" in text and "rate limit" not in text


def _says(body: bytes | str, message: str, word: str) -> bool:
    """Whether the error's ``type`` or message names ``word`` (``invalid_model`` also
    matches "Invalid model: ...")."""
    if word.replace("_", " ") in message.lower():
        return True
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    kind = data.get("type") if isinstance(data, dict) else None
    return isinstance(kind, str) and word in kind.lower()


def error_message(body: bytes | str) -> str:
    """The human part of an error body: Mistral's ``message``, a 422 ``detail``, or the text."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return _clip(text.strip())
    if isinstance(data, dict):
        message = data.get("message")
        if isinstance(message, str) and message:
            return _clip(message)
        detail = data.get("detail")
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            first = detail[0]
            loc = ".".join(str(p) for p in first.get("loc", []))
            return _clip(f"{loc}: {first.get('msg', '')}".strip(": "))
        if isinstance(detail, str):
            return _clip(detail)
    return _clip(orjson.dumps(data).decode())


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, else ``Retry-After``
    as seconds or an HTTP date. ``None`` when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def redacted(failure: Failure, api_key: str | None) -> Failure:
    """``failure`` with the key taken out of its message: a server may quote it back, and
    the message goes to files, logs and the terminal. A key too short to be a real one
    would only mangle ordinary words, so it is left alone."""
    if not api_key or len(api_key) < _MIN_KEY or api_key not in failure.message:
        return failure
    message = failure.message.replace(api_key, "[redacted]")
    return dataclasses.replace(failure, message=message)


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"
