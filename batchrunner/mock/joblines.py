"""One batch-job input line, answered exactly as the online endpoint answers its body.

Input line: ``{"custom_id": ..., "body": {...}}``. The body goes through the same
:class:`Decider` as an online request (markers, validation, unknown model), with the
job's ``model`` filled in when the body names none. Output line, the Batch API's shape::

    {"id": ..., "custom_id": ..., "response": {"status_code": 200, "body": {...}}, "error": null}

A line that did not get a 200 goes to the job's error file with the status and body
the online endpoint would have sent, and ``error`` set to that body's message (a
string, as in the SDK's own batch fixtures). Mapped because a job has no connection
to drop: ``reset`` becomes a 500 line, ``garbage`` a 200 line whose body is the
truncated text as a JSON string; ``timeout`` and ``slow`` just answer.
The mock's choices where the real API is not documented: a line that is not a JSON
object with a ``body`` object, or whose body names another model than the job's, is
a 400 line.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, NamedTuple

import orjson

from batchrunner.mock.content import body_digest, canonical_body
from batchrunner.mock.decide import Decider
from batchrunner.mock.endpoints import Endpoint
from batchrunner.mock.replies import Reply, error_reply

_RESET = error_reply(500, "mock: the upstream connection was reset inside the batch job")
_NOT_A_REQUEST = "mock: a batch line must be a JSON object with a `body` object"


class LineOutcome(NamedTuple):
    """One answered line: which file it goes to, and its bytes (newline included)."""

    ok: bool  # True: a 200 for the output file; False: the error file
    line: bytes


def answer_line(
    decider: Decider, endpoint: Endpoint, model: str, raw: bytes, line_id: str, now: float
) -> LineOutcome:
    """Answer one input line of a job running ``model`` on ``endpoint``."""
    custom_id, body = _split(raw)
    if body is None:
        return _outcome(line_id, custom_id, error_reply(400, _NOT_A_REQUEST), "400")
    named = body.get("model")
    if named is None:
        body = {**body, "model": model}
    elif named != model:
        message = f"mock: the line's model {named!r} is not the job's model {model!r}"
        return _outcome(line_id, custom_id, error_reply(400, message), "400")
    canonical = canonical_body(body)
    decision = decider.decide(endpoint, body, canonical, body_digest(canonical), now, online=False)
    reply = decision.reply if decision.reply is not None else _RESET
    return _outcome(line_id, custom_id, reply, decision.label)


def _split(raw: bytes) -> tuple[Any, dict[str, Any] | None]:
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(line, dict):
        return None, None
    body = line.get("body")
    return line.get("custom_id"), body if isinstance(body, dict) else None


def _outcome(line_id: str, custom_id: Any, reply: Reply, label: str) -> LineOutcome:
    # The body bytes are already JSON: splice them in rather than parse and re-dump.
    text = label in ("garbage", "html")  # not JSON: a string, so the line stays JSON
    body = orjson.dumps(reply.body.decode("utf-8", "replace")) if text else reply.body
    ok = reply.status == 200
    error = b"null" if ok else orjson.dumps(_message(reply))
    line = b"".join(
        (
            b'{"id":',
            orjson.dumps(line_id),
            b',"custom_id":',
            orjson.dumps(custom_id),
            b',"response":{"status_code":',
            str(reply.status).encode(),
            b',"body":',
            body,
            b'},"error":',
            error,
            b"}\n",
        )
    )
    return LineOutcome(ok, line)


def _message(reply: Reply) -> str:
    """The human message of an error body (Mistral's ``message``, or FastAPI's first ``msg``)."""
    try:
        document = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict):
        if isinstance(document.get("message"), str):
            return str(document["message"])
        detail = document.get("detail")
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            return str(detail[0].get("msg", ""))
    try:
        return HTTPStatus(reply.status).phrase
    except ValueError:
        return f"HTTP {reply.status}"
