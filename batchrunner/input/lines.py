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
from itertools import repeat
from pathlib import Path
from typing import Any, Literal, overload

import orjson

from batchrunner.config import ENDPOINTS
from batchrunner.input.idset import IdSet
from batchrunner.vocabulary import InputProblem

__all__ = [
    "DUPLICATE",
    "IMPLICIT_ID_PREFIX",
    "NEW",
    "BadLine",
    "Claim",
    "Done",
    "DoneLines",
    "Item",
    "exact",
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

_NO_ID = object()

#: What a :data:`Claim` answers for an id no earlier run decided: send it ...
NEW = 0
#: ... and for an id an earlier line of this read already named.
DUPLICATE = -1
#: ``claim(custom_ids)``, for the ids of a block of lines in turn: :data:`NEW`, :data:`DUPLICATE`,
#: or a positive number that stands for what an earlier run made of the id (the caller's own
#: handle, given back on the :class:`Done` or :class:`DoneLines`).
Claim = Callable[[list[str]], list[int]]

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
class DoneLines:
    """Lines in a row whose ids an earlier run already decided (as :class:`Done`, without
    the request): what a resume reads most, given a block at a time."""

    custom_ids: list[str]
    #: The line of the first id; the others follow it.
    line: int
    #: What ``claim`` answered for each id.
    outcomes: list[int]

    @property
    def last(self) -> int:
        """The line of the last id."""
        return self.line + len(self.custom_ids) - 1

    def each(self) -> Iterator[Done]:
        """Each line as a :class:`Done`."""
        for i, (custom_id, outcome) in enumerate(zip(self.custom_ids, self.outcomes, strict=True)):
            yield Done(custom_id, self.line + i, outcome)


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
    return _item(_exact(obj, stripped), custom_id, stripped, line, endpoint, model)


def _head(
    raw: bytes, line: int, implicit_prefix: str
) -> tuple[dict[str, Any], str, bytes, _Origin] | BadLine | None:
    """The object, its id, the stripped text and where the id came from: all a resume
    needs to skip a done line. The object is orjson's reading: pass it through
    :func:`_exact` before using more of it than its string ``custom_id``."""
    if line == 1 and raw.startswith(_BOM):  # Windows tools write one; it is not content
        raw = raw[len(_BOM) :]
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
    obj = _exact(obj, stripped)
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


def _exact(obj: Any, text: bytes) -> Any:
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


#: The same reading for another file that holds requests (a dead-letter entry's).
exact = _exact


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


#: Bytes of input read at once: a few thousand lines, whose ids are claimed in one call.
_BLOCK = 1 << 18


@overload
def read_input(
    path: Path,
    endpoint: str,
    model: str | None,
    claim: None = None,
    compare_done: bool = False,
    implicit_prefix: str = IMPLICIT_ID_PREFIX,
) -> Iterator[Item | BadLine]: ...


@overload
def read_input(
    path: Path,
    endpoint: str,
    model: str | None,
    claim: Claim,
    compare_done: Literal[True],
    implicit_prefix: str = IMPLICIT_ID_PREFIX,
) -> Iterator[Item | BadLine | Done]: ...


@overload
def read_input(
    path: Path,
    endpoint: str,
    model: str | None,
    claim: Claim,
    compare_done: bool = False,
    implicit_prefix: str = IMPLICIT_ID_PREFIX,
) -> Iterator[Item | BadLine | Done | DoneLines]: ...


def read_input(
    path: Path,
    endpoint: str,
    model: str | None,
    claim: Claim | None = None,
    compare_done: bool = False,
    implicit_prefix: str = IMPLICIT_ID_PREFIX,
) -> Iterator[Item | BadLine | Done | DoneLines]:
    """Stream ``path`` line by line; a repeated custom_id makes the later line a :class:`BadLine`.

    The first line to name an id claims it, whether or not that line can be sent. With
    ``claim``, ids an earlier run decided are yielded as a cheap :class:`DoneLines` (or
    :class:`Done`) without building their requests (resuming a million done ids costs one
    JSON parse each); ``claim`` also answers :data:`DUPLICATE` for the ids it knows. With
    ``compare_done`` too, each such line is a :class:`Done` that carries the line's request,
    so that it can be compared with what was sent (an edited input). The other ids are kept
    in memory as hashes only (:class:`IdSet`). ``implicit_prefix`` names a line without
    custom_id (see :data:`IMPLICIT_ID_PREFIX`).
    """
    reader = _Reader(endpoint, model, claim, compare_done, implicit_prefix)
    line_no = 0
    with path.open("rb") as f:
        while block := f.readlines(_BLOCK):
            yield from reader.block(block, line_no)
            line_no += len(block)


class _Reader:
    """:func:`read_input`'s state across blocks: the ids claimed so far."""

    __slots__ = ("_claim", "_compare", "_endpoint", "_model", "_prefix", "_seen")

    def __init__(
        self,
        endpoint: str,
        model: str | None,
        claim: Claim | None,
        compare_done: bool,
        implicit_prefix: str,
    ) -> None:
        self._endpoint, self._model, self._claim = endpoint, model, claim
        self._compare, self._prefix = compare_done, implicit_prefix
        self._seen = _Claims()

    def block(self, raws: list[bytes], before: int) -> Iterator[Item | BadLine | Done | DoneLines]:
        """The entries of lines ``before + 1`` on."""
        bom = not before and raws[0].startswith(_BOM)
        heads = None if bom else _given_ids(raws)
        if heads is None or self._claim is None or self._compare:
            for line_no, raw in enumerate(raws, start=before + 1):
                yield from self._line(raw, line_no)
            return
        objs, ids = heads
        outcomes = self._claim(ids)
        run = 0  # lines in a row already decided, from i - run
        for i, outcome in enumerate(outcomes):
            if outcome > 0:
                run += 1
                continue
            if run:
                yield _done_lines(ids, outcomes, before, i - run, i)
                run = 0
            stripped = raws[i].strip()
            yield self._undecided(objs[i], ids[i], stripped, before + i + 1, "given", outcome)
        if run:
            yield _done_lines(ids, outcomes, before, len(ids) - run, len(ids))

    def _line(self, raw: bytes, line_no: int) -> Iterator[Item | BadLine | Done]:
        head = _head(raw, line_no, self._prefix)
        if head is None or isinstance(head, BadLine):
            if head is not None:
                yield head
            return
        obj, custom_id, stripped, origin = head
        if origin != "given":  # most lines give theirs: no call for them
            self._seen.note(custom_id, origin)
        outcome = NEW if self._claim is None else self._claim([custom_id])[0]
        if outcome > 0 and not self._compare:
            yield Done(custom_id, line_no, outcome)
        else:
            yield self._undecided(obj, custom_id, stripped, line_no, origin, outcome)

    def _undecided(
        self,
        obj: dict[str, Any],
        custom_id: str,
        stripped: bytes,
        line_no: int,
        origin: _Origin,
        outcome: int,
    ) -> Item | BadLine | Done:
        """A line to send, a duplicate, or (compared) one decided before."""
        obj = _exact(obj, stripped)
        if outcome == NEW and not self._seen.add(custom_id):
            outcome = DUPLICATE
        if outcome == DUPLICATE:
            taken = self._seen.reason(custom_id, origin, self._prefix)
            return BadLine(line_no, custom_id, obj, "duplicate_custom_id", taken, stripped)
        item = _item(obj, custom_id, stripped, line_no, self._endpoint, self._model)
        if outcome == NEW:
            return item
        # decided before: its result or entry stands, even if the line is bad now
        return Done(custom_id, line_no, outcome, item if isinstance(item, Item) else None)


def _given_ids(raws: list[bytes]) -> tuple[list[Any], list[str]] | None:
    """Every line's object and ``custom_id`` when each line of the block is an object that
    gives a non-empty string one (nearly always: a block is then read without a Python step
    per line); else ``None``, and the block is read line by line."""
    try:
        objs = list(map(orjson.loads, raws))
        ids: list[Any] = list(map(dict.get, objs, repeat("custom_id")))
    except (orjson.JSONDecodeError, TypeError):  # a bad or blank line, or not an object
        return None
    if set(map(type, ids)) != {str} or not all(ids):
        return None
    return objs, ids


def _done_lines(ids: list[str], outcomes: list[int], before: int, i: int, j: int) -> DoneLines:
    """Lines ``i`` to ``j`` (0-based, ``j`` excluded) of a block."""
    return DoneLines(ids[i:j], before + i + 1, outcomes[i:j])


class _Claims:
    """The ids still to send that were claimed so far (an earlier run's ids are the
    ledger's to know), and why a second claim is refused, in words that say where the clash
    comes from when the id was a number or a line number."""

    __slots__ = ("_numbers", "_seen")

    def __init__(self) -> None:
        self._seen = IdSet()
        self._numbers = IdSet()  # ids given as numbers: rare, so this stays small

    def note(self, custom_id: str, origin: _Origin) -> None:
        if origin == "number":
            self._numbers.add(custom_id)

    def add(self, custom_id: str) -> bool:
        """Whether ``custom_id`` is claimed here for the first time."""
        return self._seen.add(custom_id)

    def reason(self, custom_id: str, origin: _Origin, implicit_prefix: str) -> str:
        """Why a second line naming ``custom_id`` is refused."""
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
