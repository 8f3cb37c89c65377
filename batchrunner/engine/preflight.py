"""Checks before anything is sent, so that a doomed run fails in one line, not a million.

- the input has at least one usable request;
- the server is reachable, accepts the key, and offers the model (when it lists models at
  ``GET /v1/models``; a server that does not is not held against the run), asked through
  the proxy the environment names, as every request of the run is.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from batchrunner.clients.http import env_proxy
from batchrunner.config import RunConfig
from batchrunner.errors import ConfigError
from batchrunner.input.lines import BadLine, Item, read_input

__all__ = ["check_server", "first_item"]

#: Seconds the ``GET /v1/models`` check waits (the run's timeout, if shorter). Long enough
#: for a slow API; short enough that an unreachable server is refused before a long wait.
_TIMEOUT = 15.0


def first_item(config: RunConfig) -> Item:
    """The first usable request of the input, or a :class:`ConfigError` naming why none is."""
    first: BadLine | None = None
    lines = 0
    for entry in read_input(config.input_path, config.endpoint, config.model):
        if isinstance(entry, Item):
            return entry
        if isinstance(entry, BadLine):
            lines += 1
            first = first or entry
    if first is None:
        message = f"{config.input_path} has no requests (it is empty or blank)"
        raise ConfigError(message, path=config.input_path)
    raise ConfigError(
        f"{config.input_path} has no usable request: all {lines} lines are bad "
        f"(line {first.line}: {first.message})",
        path=config.input_path,
    )


async def check_server(config: RunConfig, item: Item) -> None:
    """Ask ``GET /v1/models`` whether the key works and the models exist."""
    url = config.server_url.rstrip("/") + "/v1/models"
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    timeout = aiohttp.ClientTimeout(total=min(_TIMEOUT, config.timeout))
    proxy, proxy_auth = env_proxy(config.server_url)  # the way the run's requests go
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers, proxy=proxy, proxy_auth=proxy_auth) as resp,
        ):
            status, body = resp.status, await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        message = f"cannot reach {config.server_url}: {reason}"
        raise ConfigError(message, setting="server_url", found=config.server_url) from None
    if status in (401, 403):
        raise ConfigError(f"the server refused the API key ({status}): check MISTRAL_API_KEY")
    offered = _model_ids(body) if status == 200 else None
    if offered is None:
        return
    wanted = [m for m in (config.model, item.body.get("model")) if isinstance(m, str)]
    for model in wanted:
        if model not in offered:
            some = ", ".join(sorted(offered)[:8])
            raise ConfigError(
                f"model {model!r} is not offered by {config.server_url} (it offers {some}…); "
                "check `model` or the bodies' model",
                setting="model",
                found=model,
            )


def _model_ids(body: bytes) -> set[str] | None:
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    rows = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        return None
    ids = {r["id"] for r in rows if isinstance(r, dict) and isinstance(r.get("id"), str)}
    return ids or None
