"""The reference client: the official ``mistralai`` SDK's async methods.

The SDK's own retries stay off (its default): retrying is the engine's job, so that
backoff, ``Retry-After`` and the rate limiter see every attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx2
import pydantic
from mistralai.client import Mistral
from mistralai.client.errors import MistralError, NoResponseError, ResponseValidationError

from batchrunner.clients.base import usage_of
from batchrunner.clients.classify import (
    classify_status,
    connection_failure,
    invalid_response,
    timeout_failure,
)
from batchrunner.vocabulary import Failure, Success

__all__ = ["SdkClient"]


class SdkClient:
    __slots__ = ("_base", "_http", "_sdk", "_timeout")

    def __init__(self, server_url: str, api_key: str | None, timeout: float, pool: int) -> None:
        limits = httpx2.Limits(max_connections=pool, max_keepalive_connections=pool)
        self._http = httpx2.AsyncClient(limits=limits, follow_redirects=True)
        self._sdk = Mistral(
            api_key=api_key,
            server_url=server_url,
            async_client=self._http,
            timeout_ms=int(timeout * 1000),
        )
        self._timeout = timeout
        self._base = server_url.rstrip("/")

    async def send(self, endpoint: str, body: dict[str, Any]) -> Success | Failure:
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._call(endpoint, body)
        except (TypeError, pydantic.ValidationError) as exc:
            message = f"the SDK rejected the request body: {exc}".splitlines()[0]
            return Failure(type="invalid_request", status_code=None, message=message)
        except ResponseValidationError as exc:
            return invalid_response(f"200 the SDK could not read: {exc.message}")
        except MistralError as exc:
            return classify_status(exc.status_code, exc.headers, exc.body)
        except (TimeoutError, httpx2.TimeoutException):
            return timeout_failure(self._timeout)
        except (NoResponseError, httpx2.TransportError) as exc:
            return connection_failure(exc)
        return usage_of(response.model_dump(mode="json", by_alias=True, exclude_unset=True))

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
