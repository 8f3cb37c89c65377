"""HTTP plumbing shared by every route: the key check, replies, and the guard of control routes.

Control routes (files, batch jobs) answer 401 like the online endpoints when the key is
refused, and are counted in :class:`Stats` under their route template
(``/v1/files/{file_id}``), so that ids do not grow the per-path table.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from batchrunner.mock.replies import Reply, error_reply, validation_reply
from batchrunner.mock.stats import Stats

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def authorized(request: web.Request, require_key: str | None) -> bool:
    """A non-empty Bearer key, equal to ``require_key`` when one is set."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return False
    key = header[7:].strip()
    return bool(key) and (require_key is None or key == require_key)


def respond(reply: Reply) -> web.Response:
    """The aiohttp response carrying ``reply``."""
    return web.Response(body=reply.body, status=reply.status, headers=reply.headers)


def json_reply(document: Any, status: int = 200) -> Reply:
    """A JSON reply of ``document``."""
    return Reply(status, orjson.dumps(document))


def not_found(kind: str, item_id: str) -> Reply:
    """404 in Mistral's error shape for an unknown file or job id."""
    return error_reply(404, f"{kind} not found: {item_id}")


def invalid(field: str, message: str, value: object, where: str = "body") -> Reply:
    """422 with one FastAPI-style detail item about a request field."""
    item = {"type": "value_error", "loc": [where, field], "msg": message, "input": value}
    return validation_reply([item])


def guarded(handler: Handler, template: str, stats: Stats, require_key: str | None) -> Handler:
    """``handler`` behind the key check, counted in ``stats`` under ``template``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        if authorized(request, require_key):
            response = await handler(request)
        else:
            response = respond(error_reply(401))
        stats.record(now, template, str(response.status), None)
        return response

    return handle


def paging(request: web.Request, default_size: int = 100) -> tuple[int, int] | Reply:
    """``page`` (0-based) and ``page_size`` from the query, or a 422 naming the bad one."""
    values: list[int] = []
    for name, default, least in (("page", 0, 0), ("page_size", default_size, 1)):
        text = request.query.get(name)
        try:
            value = default if text is None else int(text)
        except ValueError:
            return invalid(name, "Input should be a valid integer", text, "query")
        if value < least:
            return invalid(name, f"Input should be >= {least}", value, "query")
        values.append(value)
    return values[0], values[1]
