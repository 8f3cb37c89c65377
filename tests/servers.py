"""Small servers that tests start in a thread of their own, for answers the mock cannot give.

- :func:`hostile_server`: a chat endpoint whose answer the request's text picks, some of
  them quoting the API key it was sent (the mock never sees a key it could quote);
- :func:`counting_proxy`: a plain-HTTP forward proxy that counts what goes through it and
  sends everything to 127.0.0.1 on the port asked for, whatever the host is called.

Each listens on 127.0.0.1, on a free port, and is stopped when its ``with`` block ends.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from batchrunner.mock.catalog import MODELS_BODY

T = TypeVar("T")

#: The request texts :func:`hostile_server` answers in its own way.
QUOTE_KEY_200 = "quote the key in a 200"
QUOTE_KEY_400 = "quote the key at the cut of a 400"
NEGATIVE_USAGE = "report negative usage"


@dataclass
class Recorded:
    """What a test server saw: (method, path, raw body) of each request."""

    url: str = ""
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)

    def posts(self) -> list[bytes]:
        return [body for method, _, body in self.requests if method == "POST"]


@contextmanager
def _loop_thread() -> Iterator[Callable[[Awaitable[T]], T]]:
    """A running event loop in a thread; yields "run this coroutine there and wait"."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)  # type: ignore[arg-type]

    try:
        yield run
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def _answer(text: str, key: str) -> web.Response:
    if text == QUOTE_KEY_400:
        message = "x" * 470 + f" key {key} is not allowed here"
        error = {"object": "error", "message": message, "type": "invalid_request_error"}
        return web.json_response(error, status=400)
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    if text == NEGATIVE_USAGE:
        usage = {"prompt_tokens": -7, "completion_tokens": -1, "total_tokens": -8}
    content = f"your key is {key}" if text == QUOTE_KEY_200 else "echo: " + text
    return web.json_response(
        {
            "id": "cmpl-hostile",
            "object": "chat.completion",
            "created": 1,
            "model": "mistral-small-latest",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
    )


@contextmanager
def hostile_server() -> Iterator[Recorded]:
    """A chat endpoint (and ``GET /v1/models``) answering by the last message's text (see
    the module constants; anything else is echoed); records every request."""
    seen = Recorded()

    async def chat(request: web.Request) -> web.Response:
        raw = await request.read()
        seen.requests.append((request.method, request.path, raw))
        body: dict[str, Any] = json.loads(raw)  # the stdlib: every integer exactly
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return _answer(str(body["messages"][-1]["content"]), key)

    async def models(request: web.Request) -> web.Response:
        seen.requests.append((request.method, request.path, b""))
        return web.Response(body=MODELS_BODY, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app, access_log=None)
    with _loop_thread() as run:
        run(runner.setup())
        run(web.TCPSite(runner, "127.0.0.1", 0).start())
        seen.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            yield seen
        finally:
            run(runner.cleanup())


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


class _Proxy:
    """Forwards each request of a client connection (absolute-form, as a client talks to
    a proxy) to 127.0.0.1 on the URL's port, in origin form; answers flow back as they are."""

    def __init__(self, seen: Recorded) -> None:
        self.seen = seen
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        if me is not None:  # stopped with the proxy, like the pipes
            self.tasks.add(me)
            me.add_done_callback(self.tasks.discard)
        upstream: asyncio.StreamWriter | None = None
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                first, _, rest = head.partition(b"\r\n")
                method, target, version = first.split(b" ", 2)
                url = urllib.parse.urlsplit(target.decode())
                length = _content_length(rest)
                body = await reader.readexactly(length)
                self.seen.requests.append((method.decode(), url.path, body))
                if upstream is None:
                    up_reader, upstream = await asyncio.open_connection("127.0.0.1", url.port)
                    self._start(_pipe(up_reader, writer))
                origin = (url.path + ("?" + url.query if url.query else "")).encode()
                upstream.write(b" ".join((method, origin, version)) + b"\r\n" + rest + body)
                await upstream.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if upstream is not None:
                upstream.close()
            writer.close()

    def _start(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def _content_length(headers: bytes) -> int:
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


@contextmanager
def counting_proxy() -> Iterator[Recorded]:
    """A forward proxy for plain-HTTP URLs; ``requests`` lists what went through it."""
    seen = Recorded()
    proxy = _Proxy(seen)
    with _loop_thread() as run:

        async def start() -> asyncio.Server:
            return await asyncio.start_server(proxy.handle, "127.0.0.1", 0)

        server = run(start())
        seen.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            yield seen
        finally:

            async def stop() -> None:
                server.close()
                for task in list(proxy.tasks):
                    task.cancel()
                await asyncio.gather(*proxy.tasks, return_exceptions=True)
                await server.wait_closed()

            run(stop())
