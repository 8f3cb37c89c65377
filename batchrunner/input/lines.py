"""Reading the input: one physical line in, one request (or one reason it is bad) out.

:func:`parse_line` is pure and never raises; :func:`read_input` streams a file through it,
adding what needs memory of earlier lines (duplicate ids). Line numbers are physical and
1-based, blank lines included, so a user can jump to them in an editor.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from batchrunner.config import ENDPOINTS
from batchrunner.input.idset import IdSet

__all__ = ["BadLine", "Done", "Item", "fingerprint", "parse_line", "read_input"]

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


@dataclass(frozen=True, slots=True)
class Done:
    """A line whose id an earlier run already finished (see ``read_input(done=...)``)."""

    custom_id: str
    line: int


@dataclass(frozen=True, slots=True)
class BadLine:
    """An input line that cannot be sent; it goes to the dead-letter file as it is."""

    line: int
    custom_id: str | None
    request: Any
    type: str
    message: str
    raw: bytes = b""


def fingerprint(body: dict[str, Any]) -> str:
    """A short hash of a body, stable across key order, to notice a changed request on resume."""
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=8).hexdigest()


def parse_line(raw: bytes, line: int, endpoint: str, model: str | None) -> Item | BadLine | None:
    """Parse one physical line; ``None`` for a blank line. Never raises."""
    head = _head(raw, line)
    if head is None or isinstance(head, BadLine):
        return head
    return _item(*head, line, endpoint, model)


def _head(raw: bytes, line: int) -> tuple[dict[str, Any], str, bytes] | BadLine | None:
    """The object, its id and the stripped text: all a resume needs to skip a done line."""
    stripped = raw.strip()
    if not stripped:
        return None
    try:
        obj = _loads(stripped)
    except orjson.JSONDecodeError as exc:
        return _unparseable(stripped, line, exc)
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        msg = f"line is a JSON {kind}, not an object"
        return BadLine(line, None, obj, "not_an_object", msg, stripped)
    custom_id = obj.get("custom_id", str(line))
    if isinstance(custom_id, int) and not isinstance(custom_id, bool):
        custom_id = str(custom_id)
    if not isinstance(custom_id, str) or not custom_id:
        msg = "custom_id must be a non-empty string"
        return BadLine(line, None, obj, "invalid_custom_id", msg, stripped)
    return obj, custom_id, stripped


def _item(
    obj: dict[str, Any],
    custom_id: str,
    stripped: bytes,
    line: int,
    endpoint: str,
    model: str | None,
) -> Item | BadLine:
    body = _body_of(obj, endpoint)
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
    return Item(custom_id, line, body, obj, fp, stripped)


def _loads(text: bytes) -> Any:
    """``text`` parsed, its numbers as written. orjson reads an integer past 64 bits as a
    float (2**64 + 1 becomes 1.8446744073709552e19), so a line with 19 digits in a row is
    read again, keeping such integers as their digits (an ``orjson.Fragment``, which every
    write of the request puts back as it was)."""
    obj = orjson.loads(text)
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


def _body_of(obj: dict[str, Any], endpoint: str) -> dict[str, Any] | str:
    """The request body for ``endpoint``, or a reason why the line has none."""
    if "body" in obj:
        body = obj["body"]
        if not isinstance(body, dict):
            return "'body' must be a JSON object"
        body = dict(body)
    else:
        body = {k: v for k, v in obj.items() if k != "custom_id"}
        if endpoint == "/v1/chat/completions" and "prompt" in body and "messages" not in body:
            body["messages"] = [{"role": "user", "content": body.pop("prompt")}]
    need = ENDPOINTS[endpoint]
    value = body.get(need)
    if not value or not isinstance(value, list | str):
        return f"no usable request: {endpoint} needs a non-empty '{need}'"
    return body


def read_input(
    path: Path,
    endpoint: str,
    model: str | None,
    done: Callable[[str], bool] | None = None,
    compare_done: bool = False,
) -> Iterator[Item | BadLine | Done]:
    """Stream ``path`` line by line; a repeated custom_id makes the later line a :class:`BadLine`.

    With ``done``, a line whose id it accepts is yielded as a cheap :class:`Done` without
    building its request: resuming a million done ids costs one JSON parse each. With
    ``compare_done`` too, a done line that still makes a request is yielded as its
    :class:`Item`, so its body can be compared with what was sent (an edited input).
    The first line to name an id claims it, whether or not that line can be sent.
    Only the ids' hashes are kept in memory (:class:`IdSet`), never the requests.
    """
    seen = IdSet()
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            head = _head(raw, line_no)
            if head is None or isinstance(head, BadLine):
                if head is not None:
                    yield head
                continue
            obj, custom_id, stripped = head
            if not seen.add(custom_id):
                msg = f"duplicate custom_id {custom_id!r}; only its first line is sent"
                yield BadLine(line_no, custom_id, obj, "duplicate_custom_id", msg, stripped)
                continue
            if done is not None and done(custom_id):
                if compare_done:
                    parsed = _item(obj, custom_id, stripped, line_no, endpoint, model)
                    yield parsed if isinstance(parsed, Item) else Done(custom_id, line_no)
                else:
                    yield Done(custom_id, line_no)
                continue
            yield _item(obj, custom_id, stripped, line_no, endpoint, model)
