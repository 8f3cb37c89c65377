"""One physical line of input in, one request (or one reason it is bad) out.

:func:`parse_line` is pure and never raises; :mod:`batchrunner.input.lines` streams a file
through these functions, adding what needs memory of earlier lines (duplicate ids, done ids).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from batchrunner.config import ENDPOINTS
from batchrunner.vocabulary import InputProblem

__all__ = [
    "BOM",
    "IMPLICIT_ID_PREFIX",
    "BadLine",
    "Item",
    "Origin",
    "build_item",
    "exact",
    "fingerprint",
    "parse_head",
    "parse_line",
]

#: A line without ``custom_id`` is called ``#`` and its line number (``#17``): a form that a
#: ``custom_id`` chosen by a person or a program (``req-17``, ``17``) is unlikely to take.
#: Runs begun before this rule keep bare numbers (see ``ledger.manifest``), so that their
#: results still match their lines.
IMPLICIT_ID_PREFIX = "#"

BOM = b"\xef\xbb\xbf"

#: Where a line's id came from: its ``custom_id`` string, a number there, or its line number.
Origin = Literal["given", "number", "line"]

_NO_ID = object()

# Digits in a row that may make an integer past orjson's 64 bits (-2**63 has 19).
_LONG_RUN = re.compile(rb"\d{19}")


@dataclass(frozen=True, slots=True)
class Item:
    """One request to send: its id, where it came from and the body to post."""

    custom_id: str
    line: int
    body: dict[str, Any]
    request: dict[str, Any]
    fp: str
    #: The line's text, for the rare request too deeply nested to write back as JSON.
    raw: bytes = b""
    #: The endpoint the line's own ``url`` names (OpenAI / Mistral batch files); None: the
    #: run's endpoint.
    endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class BadLine:
    """An input line that cannot be sent; it goes to the dead-letter file as it is."""

    line: int
    custom_id: str | None
    request: Any
    type: InputProblem
    message: str
    raw: bytes = b""


def fingerprint(body: dict[str, Any]) -> str:
    """A short hash of a body, stable across key order, to notice a changed request on resume."""
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=8).hexdigest()


def parse_line(
    raw: bytes,
    line: int,
    endpoint: str,
    model: str | None,
    implicit_prefix: str = IMPLICIT_ID_PREFIX,
) -> Item | BadLine | None:
    """Parse one physical line; ``None`` for a blank line. Never raises."""
    head = parse_head(raw, line, implicit_prefix)
    if head is None or isinstance(head, BadLine):
        return head
    obj, custom_id, stripped, _ = head
    return build_item(exact(obj, stripped), custom_id, stripped, line, endpoint, model)


def parse_head(
    raw: bytes, line: int, implicit_prefix: str
) -> tuple[dict[str, Any], str, bytes, Origin] | BadLine | None:
    """The object, its id, the stripped text and where the id came from: all a resume
    needs to skip a done line. The object is orjson's reading: pass it through
    :func:`exact` before using more of it than its string ``custom_id``."""
    if line == 1 and raw.startswith(BOM):  # Windows tools write one; it is not content
        raw = raw[len(BOM) :]
    stripped = raw.strip()
    if not stripped:
        return None
    try:
        obj = orjson.loads(stripped)
    except orjson.JSONDecodeError as exc:
        return _unparseable(stripped, line, exc)
    if type(obj) is dict:
        custom_id = obj.get("custom_id", _NO_ID)
        if type(custom_id) is str and custom_id:  # nearly always: the rest only when not
            return obj, custom_id, stripped, "given"
    obj = exact(obj, stripped)
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        msg = f"line is a JSON {kind}, not an object"
        return BadLine(line, None, obj, "not_an_object", msg, stripped)
    custom_id = obj.get("custom_id", _NO_ID)
    if custom_id is _NO_ID:
        return obj, f"{implicit_prefix}{line}", stripped, "line"
    if isinstance(custom_id, int) and not isinstance(custom_id, bool):
        return obj, str(custom_id), stripped, "number"
    msg = f"custom_id must be a non-empty string (or a whole number), not {custom_id!r}"
    return BadLine(line, None, obj, "invalid_custom_id", msg, stripped)


def build_item(
    obj: dict[str, Any],
    custom_id: str,
    stripped: bytes,
    line: int,
    endpoint: str,
    model: str | None,
) -> Item | BadLine:
    routed = _route(obj, endpoint)
    if isinstance(routed, str):
        return BadLine(line, custom_id, obj, "invalid_request", routed, stripped)
    own, endpoint = routed
    body = _body_of(obj, endpoint, own)
    if isinstance(body, str):
        return BadLine(line, custom_id, obj, "no_request", body, stripped)
    if "model" not in body:
        if model is None:
            msg = "no model: add one to the line's body or pass --model"
            return BadLine(line, custom_id, obj, "no_model", msg, stripped)
        body["model"] = model
    try:
        fp = fingerprint(body)
    except orjson.JSONEncodeError as exc:  # nested deeper than orjson writes: keep the text
        text = stripped.decode("utf-8", "replace")
        return BadLine(line, custom_id, text, "invalid_request", f"body cannot be sent: {exc}")
    return Item(custom_id, line, body, obj, fp, stripped, endpoint if own else None)


def _route(obj: dict[str, Any], endpoint: str) -> tuple[bool, str] | str:
    """(whether the line names its own endpoint, the endpoint to send it to), or why not.

    OpenAI and Mistral batch files carry ``"url"`` (and ``"method"``) on each line: a url
    that names an endpoint this tool sends to wins over the run's endpoint.
    """
    method = obj.get("method", "POST")
    if method != "POST":
        return f"'method' must be POST (batch requests are POSTed), not {method!r}"
    if "url" not in obj:
        return False, endpoint
    url = obj["url"]
    if not isinstance(url, str) or url not in ENDPOINTS:
        served = ", ".join(ENDPOINTS)
        return f"'url' {url!r} is not an endpoint batchrunner sends to ({served})"
    return True, url


def exact(obj: Any, text: bytes) -> Any:
    """``obj``, orjson's reading of ``text``, with its numbers as written. orjson reads an
    integer past 64 bits as a float (2**64 + 1 becomes 1.8446744073709552e19), so a line
    with 19 digits in a row is read again, keeping such integers as their digits (an
    ``orjson.Fragment``, which every write of the request puts back as it was). A string
    reads the same either way: a done line skipped by its ``custom_id`` needs no look."""
    if _LONG_RUN.search(text) is None:
        return obj
    try:
        return json.loads(text, parse_int=_exact_int)
    except RecursionError:  # deeper than the stdlib reads: keep orjson's reading
        return obj


def _exact_int(digits: str) -> int | orjson.Fragment:
    number = int(digits)
    return number if -(2**63) <= number < 2**64 else orjson.Fragment(digits.encode())


def _unparseable(raw: bytes, line: int, exc: orjson.JSONDecodeError) -> BadLine:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        text = raw.decode("utf-8", errors="replace")
        msg = f"line is not valid UTF-8 (byte {err.start})"
        return BadLine(line, None, text, "invalid_utf8", msg)
    return BadLine(line, None, text, "invalid_json", f"line is not valid JSON: {exc.msg}")


def _body_of(obj: dict[str, Any], endpoint: str, own_url: bool) -> dict[str, Any] | str:
    """The request body for ``endpoint``, or a reason why the line has none."""
    if "body" in obj:
        body = obj["body"]
        if not isinstance(body, dict):
            return "'body' must be a JSON object"
        body = dict(body)
    else:
        body = {k: v for k, v in obj.items() if k not in _NOT_BODY}
        if endpoint == "/v1/chat/completions" and "prompt" in body and "messages" not in body:
            body["messages"] = [{"role": "user", "content": body.pop("prompt")}]
    need = ENDPOINTS[endpoint]
    value = body.get(need)
    if not value or not isinstance(value, list | str):
        named = f"{endpoint} (the line's 'url')" if own_url else endpoint
        return f"no usable request: {named} needs a non-empty '{need}'"
    return body


#: Keys of a line that say how to send it, never part of a shorthand body.
_NOT_BODY = frozenset(("custom_id", "url", "method"))
