"""The aiohttp application: request pipeline, routes and server lifecycle."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import orjson
from aiohttp import web

from batchrunner.mock.batch import BatchApi
from batchrunner.mock.catalog import MODELS_BODY
from batchrunner.mock.config import MockConfig
from batchrunner.mock.content import body_digest, canonical_body
from batchrunner.mock.control import authorized, respond
from batchrunner.mock.decide import Decider, Decision
from batchrunner.mock.endpoints import ENDPOINTS, Endpoint
from batchrunner.mock.files import FilesApi
from batchrunner.mock.jobfaults import parse_job_faults
from batchrunner.mock.replies import Reply, error_reply
from batchrunner.mock.stats import RequestLog, Stats
from batchrunner.mock.store import FileStore

_RST_LINGER = struct.pack("ii", 1, 0)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_UNAUTHORIZED = Decision("401", error_reply(401))


class _Pipeline:
    """Per-server state: the key check, the :class:`Decider`, latency, stats and log.

    Order: auth (401), then the decider's (see :class:`Decider`), then the wait.
    """

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.log = RequestLog(config.log_path) if config.log_path else None
        self.decider = Decider(config, self.stats)
        # Jitter has its own RNG so the fault sequence depends only on seed and order.
        self._jitter = random.Random(config.seed + 1)

    def authorized(self, request: web.Request) -> bool:
        return authorized(request, self.config.require_key)

    def delay(self, extra: float) -> float:
        """Seconds to wait before answering: latency +- jitter (never < 0) + extra."""
        cfg = self.config
        base = cfg.latency_ms
        if cfg.jitter_ms:
            base += self._jitter.uniform(-cfg.jitter_ms, cfg.jitter_ms)
        return max(0.0, base / 1000.0) + extra

    async def api(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        now = time.monotonic()
        raw = await request.read()
        body: dict[str, Any] | None = None
        try:
            parsed = orjson.loads(raw)
            body = parsed if isinstance(parsed, dict) else None
        except orjson.JSONDecodeError:
            pass
        canonical = canonical_body(body) if body is not None else raw
        digest = body_digest(canonical)
        if self.authorized(request):
            decision = self.decider.decide(endpoint, body, canonical, digest, now)
        else:
            decision = _UNAUTHORIZED
        path = request.path
        self.stats.record(now, path, decision.label, int.from_bytes(digest[:8], "big"))
        if self.log is not None:
            label = decision.label
            status: int | str = int(label) if label.isdigit() else label
            custom = endpoint.custom(body) if body is not None else ""
            self.log.write(now, path, status, digest[:8].hex(), custom)
        if decision.reply is None:
            return _reset(request)
        delay = self.delay(decision.extra_delay)
        if delay > 0:  # with no latency configured, skip the sleep: it costs a loop turn
            await asyncio.sleep(delay)
        return respond(decision.reply)

    async def models(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        reply = Reply(200, MODELS_BODY) if self.authorized(request) else error_reply(401)
        self.stats.record(now, request.path, str(reply.status), None)
        if self.log is not None:
            self.log.write(now, request.path, reply.status, "", "")
        return respond(reply)

    async def stats_view(self, request: web.Request) -> web.StreamResponse:
        return respond(Reply(200, orjson.dumps(self.stats.snapshot())))

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        reply = error_reply(404, f"Not found: {request.method} {request.path}")
        self.stats.record(time.monotonic(), request.path, "404", None)
        return respond(reply)


def _reset(request: web.Request) -> web.Response:
    """Drop the connection with a TCP RST and no response bytes at all."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0 turns the close into an RST, like a crashed upstream.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST_LINGER)
        transport.abort()
    # aiohttp fails to write this to the aborted transport and quietly drops it.
    return web.Response(status=500)


def _format_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class MockServer:
    """A running mock server; stop it with :meth:`close`."""

    def __init__(self, runner: web.AppRunner, parts: _Parts, url: str) -> None:
        self._runner = runner
        self._parts = parts
        #: Base URL with the real port, e.g. ``http://127.0.0.1:40123``.
        self.url = url
        #: The live :class:`Stats` of this server.
        self.stats = parts.pipeline.stats
        self.config = parts.pipeline.config
        #: The temporary directory holding the Files API's files (removed by :meth:`close`).
        self.files_dir = parts.store.root

    async def close(self) -> None:
        """Stop accepting, cut hanging requests short, stop jobs, remove files, flush the log."""
        await self._runner.cleanup()
        await self._parts.close()


class _Parts(NamedTuple):
    """What a server holds besides its HTTP runner."""

    pipeline: _Pipeline
    store: FileStore
    batch: BatchApi

    async def close(self) -> None:
        await self.batch.close()
        self.store.close()
        if self.pipeline.log is not None:
            await self.pipeline.log.close()


def _endpoint_handler(pipeline: _Pipeline, endpoint: Endpoint) -> _Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await pipeline.api(request, endpoint)

    return handle


def _app(parts: _Parts) -> web.Application:
    pipeline = parts.pipeline
    # Embedding batches can be large; the real API accepts far more than 1 MiB.
    app = web.Application(client_max_size=64 * 1024 * 1024)
    for path, endpoint in ENDPOINTS.items():
        app.router.add_post(path, _endpoint_handler(pipeline, endpoint))
    app.router.add_get("/v1/models", pipeline.models)
    key = pipeline.config.require_key
    FilesApi(parts.store).register(app.router, pipeline.stats, key)
    parts.batch.register(app.router, pipeline.stats, key)
    app.router.add_get("/_mock/stats", pipeline.stats_view)
    app.router.add_route("*", "/{tail:.*}", pipeline.not_found)
    return app


async def start_server(config: MockConfig) -> MockServer:
    """Start a mock server in the running event loop and return once it listens.

    Raises ValueError when ``config.batch_faults`` does not parse, OSError when the
    port cannot be bound or the log cannot be written.
    """
    faults = parse_job_faults(config.batch_faults)  # before anything is opened
    pipeline = _Pipeline(config)
    store = FileStore()
    parts = _Parts(pipeline, store, BatchApi(config, pipeline.decider, store, faults))
    # No access log: per-request logging would dominate the server's CPU time.
    # A short shutdown timeout: hanging "timeout" faults must not delay close().
    runner = web.AppRunner(_app(parts), access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
    except BaseException:
        await runner.cleanup()
        await parts.close()
        raise
    port: int = runner.addresses[0][1]
    if pipeline.log is not None:
        pipeline.log.start()
    return MockServer(runner, parts, _format_url(config.host, port))
