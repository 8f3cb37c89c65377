"""The reference client: the official ``mistralai`` SDK's async methods.

The SDK's own retries stay off (its default): retrying is the engine's job, so that
backoff, ``Retry-After`` and the rate limiter see every attempt.

The SDK builds and sends the request; what a 200 becomes is decided from its raw bytes by
:func:`~batchrunner.clients.classify.read_ok`, as for the ``http`` client, whether the SDK's
models accepted the body or not (they refuse a body nested past pydantic's limit, or one
lacking a field they require), so both clients write the same files for the same answers.
The raw answer is caught by an ``httpx`` response hook, into a list that each attempt sets
in its own context.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
from typing import Any

import httpx2
import orjson
import pydantic
from mistralai.client import Mistral
from mistralai.client.errors import MistralError, NoResponseError

from batchrunner.clients.base import on_loopback
from batchrunner.clients.classify import (
    classify_status,
    connection_failure,
    read_ok,
    safe_text,
    timeout_failure,
)
from batchrunner.vocabulary import Failure, Success

__all__ = ["SdkClient"]

#: The HTTP answers of the attempt running in this context (redirects come first).
_ANSWERS: contextvars.ContextVar[list[httpx2.Response]] = contextvars.ContextVar("answers")


async def _keep_answer(response: httpx2.Response) -> None:
    answers = _ANSWERS.get(None)
    if answers is not None:
        answers.append(response)


class SdkClient:
    __slots__ = ("_base", "_http", "_key", "_sdk", "_timeout")

    def __init__(self, server_url: str, api_key: str | None, timeout: float, pool: int) -> None:
        limits = httpx2.Limits(max_connections=pool, max_keepalive_connections=pool)
        # httpx takes HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment (trust_env),
        # except for a server on the loopback, as the http client does.
        self._http = httpx2.AsyncClient(
            limits=limits,
            follow_redirects=True,
            event_hooks={"response": [_keep_answer]},
            trust_env=not on_loopback(server_url),
        )
        self._sdk = Mistral(
            api_key=api_key,
            server_url=server_url,
            async_client=self._http,
            timeout_ms=int(timeout * 1000),
        )
        self._timeout = timeout
        self._key = api_key
        self._base = server_url.rstrip("/")

    async def send(self, endpoint: str, body: dict[str, Any]) -> Success | Failure:
        answers: list[httpx2.Response] = []
        _ANSWERS.set(answers)
        try:
            async with asyncio.timeout(self._timeout):
                await self._call(endpoint, _plain(body))
        except MistralError as exc:
            if exc.status_code != 200:
                return classify_status(exc.status_code, exc.headers, exc.body, self._key)
        except (TimeoutError, httpx2.TimeoutException):
            return timeout_failure(self._timeout)
        except (NoResponseError, httpx2.RequestError) as exc:  # a redirect loop, bad gzip too
            return connection_failure(exc, self._key)
        except (TypeError, pydantic.ValidationError) as exc:
            if not _answered(answers):
                return self._refused(exc)
        final = answers[-1]
        return read_ok(final.content, endpoint, final.headers, self._key)

    def _refused(self, exc: Exception) -> Failure:
        """The SDK refused to build the request: nothing was sent."""
        message = f"the SDK rejected the request body: {exc}".splitlines()[0]
        return Failure(
            type="invalid_request", status_code=None, message=safe_text(message, self._key)
        )

    async def _call(self, endpoint: str, body: dict[str, Any]) -> pydantic.BaseModel:
        if endpoint == "/v1/chat/completions":
            return await self._sdk.chat.complete_async(**body)
        if endpoint == "/v1/embeddings":
            args = dict(body)
            args["inputs"] = args.pop("input")
            return await self._sdk.embeddings.create_async(**args)
        return await self._sdk.fim.complete_async(**body)

    async def warm_up(self) -> None:
        """Open a connection before the pacer starts timing sends."""
        with contextlib.suppress(httpx2.HTTPError):  # the run itself will report a problem
            await self._http.get(self._base + "/v1/models", timeout=self._timeout)

    async def aclose(self) -> None:
        await self._http.aclose()


def _answered(answers: list[httpx2.Response]) -> bool:
    return bool(answers) and answers[-1].status_code == 200


def _plain(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the numbers it keeps verbatim (past 64 bits, as ``orjson.Fragment``)
    made Python ints again, which the SDK's models take and write exactly."""
    if not _has_fragment(body):
        return body
    plain: dict[str, Any] = json.loads(orjson.dumps(body))
    return plain


def _has_fragment(value: Any) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, orjson.Fragment):
            return True
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False
