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
from typing import Any, Literal

import orjson

from batchrunner.config import ENDPOINTS
from batchrunner.input.idset import IdSet
from batchrunner.vocabulary import InputProblem

__all__ = [
    "IMPLICIT_ID_PREFIX",
    "BadLine",
    "Done",
    "Item",
    "fingerprint",
    "parse_line",
    "read_input",
]

#: A line without ``custom_id`` is called ``#`` and its line number (``#17``): a form that a
#: ``custom_id`` chosen by a person or a program (``req-17``, ``17``) is unlikely to take.
#: Runs begun before this rule keep bare numbers (see ``ledger.manifest``), so that their
#: results still match their lines.
IMPLICIT_ID_PREFIX = "#"

_BOM = b"\xef\xbb\xbf"

#: Where a line's id came from: its ``custom_id`` string, a number there, or its line number.
_Origin = Literal["given", "number", "line"]


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
    head = _head(raw, line, implicit_prefix)
    if head is None or isinstance(head, BadLine):
        return head
    obj, custom_id, stripped, _ = head
    return _item(obj, custom_id, stripped, line, endpoint, model)


def _head(
    raw: bytes, line: int, implicit_prefix: str
) -> tuple[dict[str, Any], str, bytes, _Origin] | BadLine | None:
    """The object, its id, the stripped text and where the id came from: all a resume
    needs to skip a done line."""
    if line == 1 and raw.startswith(_BOM):  # Windows tools write one; it is not content
        raw = raw[len(_BOM) :]
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
    if "custom_id" not in obj:
        return obj, f"{implicit_prefix}{line}", stripped, "line"
    custom_id = obj["custom_id"]
    if isinstance(custom_id, int) and not isinstance(custom_id, bool):
        return obj, str(custom_id), stripped, "number"
    if not isinstance(custom_id, str) or not custom_id:
        msg = f"custom_id must be a non-empty string (or a whole number), not {custom_id!r}"
        return BadLine(line, None, obj, "invalid_custom_id", msg, stripped)
    return obj, custom_id, stripped, "given"


def _item(
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


def read_input(
    path: Path,
    endpoint: str,
    model: str | None,
    done: Callable[[str], bool] | None = None,
    compare_done: bool = False,
    implicit_prefix: str = IMPLICIT_ID_PREFIX,
) -> Iterator[Item | BadLine | Done]:
    """Stream ``path`` line by line; a repeated custom_id makes the later line a :class:`BadLine`.

    With ``done``, a line whose id it accepts is yielded as a cheap :class:`Done` without
    building its request: resuming a million done ids costs one JSON parse each. With
    ``compare_done`` too, a done line that still makes a request is yielded as its
    :class:`Item`, so its body can be compared with what was sent (an edited input).
    The first line to name an id claims it, whether or not that line can be sent.
    Only the ids' hashes are kept in memory (:class:`IdSet`), never the requests.
    ``implicit_prefix`` names a line without custom_id (see :data:`IMPLICIT_ID_PREFIX`).
    """
    seen = _Claims()
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            head = _head(raw, line_no, implicit_prefix)
            if head is None or isinstance(head, BadLine):
                if head is not None:
                    yield head
                continue
            obj, custom_id, stripped, origin = head
            taken = seen.claim(custom_id, origin, implicit_prefix)
            if taken is not None:
                yield BadLine(line_no, custom_id, obj, "duplicate_custom_id", taken, stripped)
                continue
            if done is not None and done(custom_id):
                if compare_done:
                    parsed = _item(obj, custom_id, stripped, line_no, endpoint, model)
                    yield parsed if isinstance(parsed, Item) else Done(custom_id, line_no)
                else:
                    yield Done(custom_id, line_no)
                continue
            yield _item(obj, custom_id, stripped, line_no, endpoint, model)


class _Claims:
    """The ids claimed so far, and why a second claim is refused, in words that say where
    the clash comes from when the id was a number or a line number."""

    __slots__ = ("_numbers", "_seen")

    def __init__(self) -> None:
        self._seen = IdSet()
        self._numbers = IdSet()  # ids given as numbers: rare, so this stays small

    def claim(self, custom_id: str, origin: _Origin, implicit_prefix: str) -> str | None:
        """None when ``custom_id`` is new; else the reason this line is refused."""
        if origin == "number":
            self._numbers.add(custom_id)
        if self._seen.add(custom_id):
            return None
        tail = "; only its first line is sent"
        if origin == "line":
            return (
                f"this line has no custom_id and its implicit id {custom_id!r} is an earlier "
                "line's custom_id: give this line a custom_id"
            )
        if origin == "number" or custom_id in self._numbers:
            return (
                f"duplicate custom_id {custom_id!r}: the number {custom_id} and the string "
                f'"{custom_id}" are the same id{tail}'
            )
        if _looks_implicit(custom_id, implicit_prefix):
            return (
                f"duplicate custom_id {custom_id!r}: an earlier line has it, or it is the "
                f"implicit id of line {custom_id.removeprefix(implicit_prefix)} (which has no "
                f"custom_id){tail}"
            )
        return f"duplicate custom_id {custom_id!r}{tail}"


def _looks_implicit(custom_id: str, implicit_prefix: str) -> bool:
    number = custom_id.removeprefix(implicit_prefix)
    return custom_id.startswith(implicit_prefix) and number.isdigit()
