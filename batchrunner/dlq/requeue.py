"""``dlq requeue``: the requests still dead, as a new input file that ``run`` accepts."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from batchrunner.config import ENDPOINTS
from batchrunner.dlq.entries import DeadLetter, json_text
from batchrunner.errors import DlqError, DlqWriteError
from batchrunner.input.idset import IdSet
from batchrunner.input.lines import BadLine, parse_line

__all__ = ["Requeue", "build_requeue", "write_requeue"]


@dataclass(frozen=True, slots=True)
class Requeue:
    """Input lines, built as they are read; the entries left out, by type, and why (one
    example), counted as the lines are read."""

    lines: Iterator[bytes]
    left_out: Counter[str]
    reasons: dict[str, str]


def build_requeue(entries: Iterable[DeadLetter], endpoint: str, model: str | None) -> Requeue:
    """Each entry's original request as a Batch API input line, its body built exactly as
    ``batchrunner run`` builds it (shorthand expanded, ``model`` added where missing)."""
    if endpoint not in ENDPOINTS:
        raise DlqError(f"unsupported endpoint {endpoint!r}; use one of {', '.join(ENDPOINTS)}")
    left_out: Counter[str] = Counter()
    reasons: dict[str, str] = {}
    return Requeue(_lines(entries, endpoint, model, left_out, reasons), left_out, reasons)


def _lines(
    entries: Iterable[DeadLetter],
    endpoint: str,
    model: str | None,
    left_out: Counter[str],
    reasons: dict[str, str],
) -> Iterator[bytes]:
    written = IdSet()
    for e in entries:
        line = _requeue_line(e, endpoint, model, written)
        if isinstance(line, bytes):
            yield line
        else:
            left_out[line[0]] += 1
            reasons.setdefault(*line)


def _requeue_line(
    e: DeadLetter, endpoint: str, model: str | None, written: IdSet
) -> bytes | tuple[str, str]:
    """The input line for ``e``, or (type, why) it cannot be re-queued."""
    if isinstance(e.request, str):
        return e.type, "the line is raw text, not a JSON object"
    if not isinstance(e.request, dict):
        return e.type, "the line is not a JSON object"
    # The same function as `batchrunner run`, so the body is what run would have sent.
    text = json_text(e.request)
    if text is None:
        return "invalid_request", "the request is nested deeper than a request can be sent"
    parsed = parse_line(text.encode(), e.line or 0, endpoint, model)
    if isinstance(parsed, BadLine):
        return parsed.type, parsed.message
    if parsed is None:  # cannot happen: a serialised object is never a blank line
        return e.type, "empty request"
    cid = e.custom_id or parsed.custom_id
    if not written.add(cid):  # a duplicate_custom_id line: its id is in the file already
        return "duplicate_custom_id", "another re-queued entry has the same custom_id"
    line: dict[str, object] = {"custom_id": cid, "body": parsed.body}
    if parsed.endpoint is not None:  # a batch line's own url: it goes where it went before
        line["url"] = parsed.endpoint
    return orjson.dumps(line) + b"\n"


def write_requeue(path: Path, lines: Iterable[bytes], *, force: bool = False) -> int:
    """Write ``lines`` to ``path`` as they come, and say how many; no line, no file. An
    existing file is refused unless ``force``."""
    rest = iter(lines)
    first = next(rest, None)
    if first is None:
        return 0
    try:
        f = path.open("wb" if force else "xb")  # x: the existence check cannot race
    except FileExistsError:
        raise DlqError(f"{path} already exists; pass `force` to overwrite it", path=path) from None
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    written = 1
    try:
        with f:
            f.write(first)
            for line in rest:
                f.write(line)
                written += 1
    except BaseException as exc:
        with contextlib.suppress(OSError):  # half a file would pass for the whole list
            path.unlink()
        if isinstance(exc, OSError):
            raise _cannot_write(path, exc) from None
        raise
    return written


def _cannot_write(path: Path, exc: OSError) -> DlqWriteError:
    message = f"cannot write {path}: {exc.strerror or exc}"
    return DlqWriteError(message, path=path, cause=exc)
