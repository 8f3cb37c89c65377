"""Reading the input: one physical line in, one request (or one reason it is bad) out.

:func:`parse_line` is pure and never raises; :func:`read_input` streams a file through it,
adding what needs memory of earlier lines (duplicate ids). Line numbers are physical and
1-based, blank lines included, so a user can jump to them in an editor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from batchrunner.config import ENDPOINTS
from batchrunner.input.idset import IdSet

__all__ = [
    "DUPLICATE",
    "NEW",
    "BadLine",
    "Claim",
    "Done",
    "Item",
    "fingerprint",
    "parse_line",
    "read_input",
]

_NO_ID = object()

#: What a :data:`Claim` answers for an id no earlier run decided: send it ...
NEW = 0
#: ... and for an id an earlier line of this read already named.
DUPLICATE = -1
#: ``claim(custom_id)``: :data:`NEW`, :data:`DUPLICATE`, or a positive number that stands for
#: what an earlier run made of the id (the caller's own handle, given back on the :class:`Done`).
Claim = Callable[[str], int]


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


@dataclass(slots=True)  # not frozen: one is made per line on resume, and frozen costs 2x
class Done:
    """A line whose id an earlier run already decided (see ``read_input(claim=...)``)."""

    custom_id: str
    line: int
    #: What ``claim`` answered for the id.
    outcome: int
    #: The line's request, when asked for (``compare_done``) and it still makes one.
    item: Item | None = None


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
        obj = orjson.loads(stripped)
    except orjson.JSONDecodeError as exc:
        return _unparseable(stripped, line, exc)
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        msg = f"line is a JSON {kind}, not an object"
        return BadLine(line, None, obj, "not_an_object", msg, stripped)
    custom_id = obj.get("custom_id", _NO_ID)
    if type(custom_id) is not str:  # nearly always a str: the rest only when it is not
        custom_id = _other_id(custom_id, line)
    if not custom_id:
        msg = "custom_id must be a non-empty string"
        return BadLine(line, None, obj, "invalid_custom_id", msg, stripped)
    return obj, custom_id, stripped


def _other_id(value: object, line: int) -> str | None:
    """The id of a line whose custom_id is not a string: its line number when it has none,
    the number when it is a whole number, else none."""
    if value is _NO_ID:
        return str(line)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


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
    claim: Claim | None = None,
    compare_done: bool = False,
) -> Iterator[Item | BadLine | Done]:
    """Stream ``path`` line by line; a repeated custom_id makes the later line a :class:`BadLine`.

    The first line to name an id claims it, whether or not that line can be sent. With
    ``claim``, an id an earlier run decided is yielded as a cheap :class:`Done` without
    building its request (resuming a million done ids costs one JSON parse each); ``claim``
    also answers :data:`DUPLICATE` for the ids it knows. With ``compare_done`` too, the
    :class:`Done` carries the line's request, so that it can be compared with what was sent
    (an edited input). The other ids are kept in memory as hashes only (:class:`IdSet`).
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
            outcome = NEW if claim is None else claim(custom_id)
            if outcome > 0 and not compare_done:  # most lines of a resumed run
                yield Done(custom_id, line_no, outcome)
                continue
            if outcome == NEW and not seen.add(custom_id):
                outcome = DUPLICATE
            if outcome == DUPLICATE:
                msg = f"duplicate custom_id {custom_id!r}; only its first line is sent"
                yield BadLine(line_no, custom_id, obj, "duplicate_custom_id", msg, stripped)
                continue
            item = None
            if outcome == NEW or compare_done:
                item = _item(obj, custom_id, stripped, line_no, endpoint, model)
            if outcome == NEW:
                assert item is not None
                yield item
            else:  # decided before: its result or entry stands, even if the line is bad now
                yield Done(custom_id, line_no, outcome, item if isinstance(item, Item) else None)
