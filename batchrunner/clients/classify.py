"""Turning an answer or a transport error into the outcome of one attempt.

Status code first, then transport error; a 200 is read by :func:`read_ok`, from its raw
bytes. Both clients use these functions and nothing else to decide, so the same server
answer has the same outcome whichever client sent it (the SDK's own verdict on a 200 is not
asked: it would fail a body the ``http`` client keeps).

What a 200 becomes (README, "Output"):

- a JSON object with the endpoint's answer field (``choices``, ``data``): a success, its
  body kept exactly as sent;
- an error object (``"object": "error"``, or an ``error``/``message``/``detail`` where the
  answer should be): a failure, typed by the status its type or code implies (a 200
  "rate limit" is ``rate_limited``, retried; a 200 "invalid request" is ``bad_request``,
  dead-lettered); its ``status_code`` stays the 200 the server sent;
- anything else (not JSON, not an object, an object without the answer field):
  ``invalid_response``, retried: the server may do better next time.

Every message is made safe by :func:`safe_text`: the API key is taken out first, then the
text is cut to 500 characters, then a tail that begins the key is taken out too, so no
part of the key survives the cut.
"""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import math
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from batchrunner.clients.base import usage_of
from batchrunner.vocabulary import Failure, FailureType, Success

__all__ = [
    "REDACTED",
    "classify_status",
    "connection_failure",
    "error_message",
    "internal_error",
    "invalid_response",
    "parse_retry_after",
    "read_ok",
    "safe_text",
    "timeout_failure",
]

#: What stands where the key was.
REDACTED = "[redacted]"

_TYPES: dict[int, FailureType] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    422: "validation_error",
    429: "rate_limited",
}
#: A failure's message is cut to this many characters: enough for any API error's words,
#: and a server that answers with a whole page does not bloat every dead-letter line.
_MAX_MESSAGE = 500
#: Keys shorter than this are not looked for (they would only mangle ordinary words), and
#: a message's tail is taken out when it begins the key with more characters than this.
_MIN_KEY = 8

#: The field an answer of each endpoint cannot lack: without it, the 200 is not an answer.
ANSWER_FIELDS: dict[str, str] = {
    "/v1/chat/completions": "choices",
    "/v1/embeddings": "data",
    "/v1/fim/completions": "choices",
}

#: Words in a 200 error object's type, code or message, and the status each implies; the
#: first that matches wins (a quota is a 429, but not a rate limit).
_ERROR_WORDS: tuple[tuple[str, int], ...] = (
    ("quota", 429),
    ("rate", 429),
    ("capacity", 429),
    ("unauthori", 401),
    ("authentication", 401),
    ("forbidden", 403),
    ("permission", 403),
    ("not_found", 404),
    ("not found", 404),
    ("invalid_model", 400),
    ("invalid model", 400),
    ("invalid_request", 400),
    ("bad_request", 400),
    ("validation", 422),
    ("overloaded", 503),
    ("unavailable", 503),
    ("timeout", 504),
    ("internal", 500),
    ("server", 500),
)


def classify_status(
    status: int, headers: Mapping[str, str], body: bytes | str, key: str | None = None
) -> Failure:
    """Classify a non-200 answer. 429 and 5xx are retryable; every other status is not.

    Two answers get a type of their own because no retry can help them: a 429 that says the
    quota is spent (``quota_exceeded``: a rate limit, by contrast, passes in seconds) and a
    400 naming an unknown model (``invalid_model``). A 429 that says the server is out of
    capacity (``capacity_exceeded``) is retried like a rate limit, but says nothing of the
    client's own rate. ``key`` is taken out of the message.
    """
    message = error_message(body, key) or f"HTTP {status}"
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


def read_ok(
    raw: bytes, endpoint: str, headers: Mapping[str, str], key: str | None = None
) -> Success | Failure:
    """The one reading of a 200 (see the module docstring). The key is taken out of the
    body before anything else: a search of the bytes, and a rewrite only when it is there."""
    raw = _without_key(raw, key)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return invalid_response(f"200 with a body that is not JSON ({exc.msg})")
    if not isinstance(body, dict):
        return invalid_response(f"200 with a JSON {_json_kind(body)}, not an object")
    field = ANSWER_FIELDS.get(endpoint)
    if body.get("object") == "error" or (field is not None and field not in body):
        return _no_answer(body, raw, headers, endpoint, key)
    return usage_of(body, _one_line(raw))


def _no_answer(
    body: dict[str, Any], raw: bytes, headers: Mapping[str, str], endpoint: str, key: str | None
) -> Failure:
    """A 200 JSON object that is not an answer: an error object, or something else."""
    is_error = body.get("object") == "error" or any(k in body for k in ("error", "message"))
    if not is_error and "detail" not in body:
        field = ANSWER_FIELDS[endpoint]
        return invalid_response(f"200 without {field!r}: not an answer of {endpoint}")
    implied = _implied_status(body)
    if implied is None:
        text = safe_text(f"200 with an error body: {error_message(raw, key)}", key)
        return invalid_response(text)
    failure = classify_status(implied, headers, raw, key)
    message = safe_text(f"200 with an error body, read as a {implied}: {failure.message}", key)
    return dataclasses.replace(failure, status_code=200, message=message)


def _implied_status(body: dict[str, Any]) -> int | None:
    """The HTTP status an error object stands for: an error status it names, else one its
    type, code or message implies; ``None`` when it says nothing that can be read."""
    inner = body.get("error")
    err = inner if isinstance(inner, dict) else body
    for name in ("status", "status_code", "code"):
        value = err.get(name)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
            return value
    words = " ".join(str(err.get(k) or "") for k in ("type", "code", "message")).lower()
    if isinstance(inner, str):
        words += " " + inner.lower()
    return next((status for word, status in _ERROR_WORDS if word in words), None)


def timeout_failure(timeout: float) -> Failure:
    return Failure(type="timeout", status_code=None, message=f"no answer within {timeout:g} s")


def connection_failure(exc: BaseException, key: str | None = None) -> Failure:
    detail = str(exc) or type(exc).__name__
    return Failure(type="connection_error", status_code=None, message=safe_text(detail, key))


def invalid_response(detail: str) -> Failure:
    """A 200 whose body is not the answer expected: retried, the server may do better."""
    return Failure(type="invalid_response", status_code=200, message=safe_text(detail, None))


def internal_error(exc: BaseException, key: str | None) -> Failure:
    """An unexpected error while handling one item (a bug): that item is dead-lettered
    with the error's text, and the run goes on."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"at {Path(frames[-1].filename).name}:{frames[-1].lineno}; " if frames else ""
    message = safe_text(f"{text} ({where}a bug in batchrunner: please report it)", key)
    return Failure(type="internal_error", status_code=None, message=message)


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


def error_message(body: bytes | str, key: str | None = None) -> str:
    """The human part of an error body: Mistral's ``message``, a 422 ``detail``, or the
    text; made safe by :func:`safe_text`."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return safe_text(_decoded(body).strip(), key)
    if isinstance(data, dict):
        message = data.get("message")
        if isinstance(message, str) and message:
            return safe_text(message, key)
        detail = data.get("detail")
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            first = detail[0]
            loc = first.get("loc")
            where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
            return safe_text(f"{where}: {first.get('msg', '')}".strip(": "), key)
        if isinstance(detail, str):
            return safe_text(detail, key)
    try:
        shown = orjson.dumps(data).decode()
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: the text as sent
        shown = _decoded(body).strip()
    return safe_text(shown, key)


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


def safe_text(text: str, key: str | None) -> str:
    """``text`` fit for files, logs and the terminal: the key taken out, then cut to 500
    characters, then a tail that begins the key (a cut the server made) taken out too."""
    if key is not None and len(key) >= _MIN_KEY and key in text:
        text = text.replace(key, REDACTED)
    clipped = len(text) > _MAX_MESSAGE
    if clipped:
        text = text[:_MAX_MESSAGE]
    if key is not None:
        text = _without_key_start(text, key)
    return text + "…" if clipped else text


def _without_key_start(text: str, key: str) -> str:
    """``text`` without a tail that is the key's first 9 or more characters."""
    for n in range(min(len(key) - 1, len(text)), _MIN_KEY, -1):  # the longest first
        if text.endswith(key[:n]):
            return text[:-n] + REDACTED
    return text


def _without_key(raw: bytes, key: str | None) -> bytes:
    """``raw`` with the key, as a JSON string spells it, taken out."""
    if key is None or len(key) < _MIN_KEY:
        return raw
    spelled = _spelled(key)
    return raw.replace(spelled, _REDACTED_BYTES) if spelled in raw else raw


@functools.lru_cache(maxsize=4)
def _spelled(key: str) -> bytes:
    return orjson.dumps(key)[1:-1]


_REDACTED_BYTES = REDACTED.encode()


def _one_line(raw: bytes) -> bytes:
    """A JSON text on one line: the only line breaks valid JSON can hold are whitespace
    between tokens (a string must escape them), so dropping them changes nothing else."""
    raw = raw.strip()
    if raw.find(10) >= 0 or raw.find(13) >= 0:  # a byte search: memchr, twice the speed of in
        raw = raw.replace(b"\r", b"").replace(b"\n", b"")
    return raw


def _json_kind(value: object) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return kinds.get(type(value), "null")


def _decoded(body: bytes | str) -> str:
    return body.decode("utf-8", "replace") if isinstance(body, bytes) else body
