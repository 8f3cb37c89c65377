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

from batchrunner.mock.catalog import MODELS_BODY
from batchrunner.mock.config import MockConfig
from batchrunner.mock.content import body_digest, canonical_body
from batchrunner.mock.endpoints import ENDPOINTS, Endpoint
from batchrunner.mock.faults import SLOW_S, RandomFaults, ScriptedFaults, find_marker, parse_marker
from batchrunner.mock.limits import RequestWindow, TokenWindow
from batchrunner.mock.replies import (
    Reply,
    error_reply,
    quota_reply,
    rate_limited_reply,
    status_fault_reply,
)
from batchrunner.mock.stats import RequestLog, Stats

# A 200 whose body is cut mid-JSON: what a broken proxy or truncated read looks like.
GARBAGE = Reply(200, b'{"id":"cmpl-garbage","object":"chat.completion","choi')
_RST_LINGER = struct.pack("ii", 1, 0)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Decision(NamedTuple):
    label: str  # stats/log outcome: "200", "429", ..., "reset", "timeout", "garbage"
    reply: Reply | None  # None: drop the connection instead of answering
    extra_delay: float = 0.0  # seconds on top of the configured latency


class _Pipeline:
    """Per-server state and the decision each API request goes through.

    Order: auth (401) -> JSON object (400) -> scripted marker -> validation
    (422/400) -> limit_rps (429) -> random fault -> limit_tpm (429) -> answer.
    A request carrying a marker skips limits and random faults entirely: it is a
    test fixture, and its outcome must not depend on other traffic.
    """

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.log = RequestLog(config.log_path) if config.log_path else None
        self.scripted = ScriptedFaults()
        self.random_faults = RandomFaults(config.error_rates, config.seed)
        # Jitter has its own RNG so the fault sequence depends only on seed and order.
        self.jitter_rng = random.Random(config.seed + 1)
        self.rps = RequestWindow(config.limit_rps) if config.limit_rps is not None else None
        self.tpm = TokenWindow(config.limit_tpm) if config.limit_tpm is not None else None

    def authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        key = header[7:].strip()
        return bool(key) and (self.config.require_key is None or key == self.config.require_key)

    def fault_decision(self, fault: str) -> _Decision:
        if fault == "reset":
            return _Decision("reset", None)
        if fault == "garbage":
            return _Decision("garbage", GARBAGE)
        if fault == "quota":
            return _Decision("429", quota_reply())
        return _Decision(fault, status_fault_reply(int(fault), self.config.retry_after_ms))

    def decide(
        self,
        request: web.Request,
        endpoint: Endpoint,
        body: dict[str, Any] | None,
        canonical: bytes,
        digest: bytes,
        now: float,
    ) -> _Decision:
        """Everything about the answer except the waiting; see the class docstring."""
        if not self.authorized(request):
            return _Decision("401", error_reply(401))
        if body is None:
            return _Decision("400", error_reply(400, "Request body must be a JSON object"))
        marker = find_marker(endpoint.texts(body))
        fault: str | None = None
        if marker is not None:
            try:
                faults = parse_marker(marker)
            except ValueError as exc:
                return _Decision("400", error_reply(400, str(exc)))
            fault = self.scripted.next_fault(marker, faults, canonical)
            if fault is not None and fault not in ("timeout", "slow"):
                return self.fault_decision(fault)
        invalid = endpoint.validate(body)
        if invalid is not None:
            return _Decision(str(invalid.status), invalid)
        if marker is None:
            if self.rps is not None and not self.rps.admit(now):
                return _Decision("429", rate_limited_reply(self.config.retry_after_ms))
            fault = self.random_faults.draw()
            if fault is not None and fault != "timeout":
                return self.fault_decision(fault)
        answer = endpoint.answer(body, digest, self.config.embedding_dim)
        tokens = answer.prompt_tokens + answer.completion_tokens
        if marker is None and self.tpm is not None and not self.tpm.admit(now, tokens):
            return _Decision(
                "429",
                rate_limited_reply(self.config.retry_after_ms, "Tokens per minute limit exceeded"),
            )
        self.stats.add_tokens(answer.prompt_tokens, answer.completion_tokens)
        reply = Reply(200, answer.body)
        if fault == "timeout":
            return _Decision("timeout", reply, self.config.hang_s)
        return _Decision("200", reply, SLOW_S if fault == "slow" else 0.0)

    def delay(self, extra: float) -> float:
        """Seconds to wait before answering: latency +- jitter (never < 0) + extra."""
        cfg = self.config
        base = cfg.latency_ms
        if cfg.jitter_ms:
            base += self.jitter_rng.uniform(-cfg.jitter_ms, cfg.jitter_ms)
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
        decision = self.decide(request, endpoint, body, canonical, digest, now)
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
        return _response(decision.reply)

    async def models(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        reply = Reply(200, MODELS_BODY) if self.authorized(request) else error_reply(401)
        self.stats.record(now, request.path, str(reply.status), None)
        if self.log is not None:
            self.log.write(now, request.path, reply.status, "", "")
        return _response(reply)

    async def stats_view(self, request: web.Request) -> web.StreamResponse:
        return _response(Reply(200, orjson.dumps(self.stats.snapshot())))

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        reply = error_reply(404, f"Not found: {request.method} {request.path}")
        self.stats.record(time.monotonic(), request.path, "404", None)
        return _response(reply)


def _response(reply: Reply) -> web.Response:
    return web.Response(body=reply.body, status=reply.status, headers=reply.headers)


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

    def __init__(self, runner: web.AppRunner, pipeline: _Pipeline, url: str) -> None:
        self._runner = runner
        self._pipeline = pipeline
        #: Base URL with the real port, e.g. ``http://127.0.0.1:40123``.
        self.url = url
        #: The live :class:`Stats` of this server.
        self.stats = pipeline.stats
        self.config = pipeline.config

    async def close(self) -> None:
        """Stop accepting, cut hanging requests short, and flush the log."""
        await self._runner.cleanup()
        if self._pipeline.log is not None:
            await self._pipeline.log.close()


def _endpoint_handler(pipeline: _Pipeline, endpoint: Endpoint) -> _Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await pipeline.api(request, endpoint)

    return handle


async def start_server(config: MockConfig) -> MockServer:
    """Start a mock server in the running event loop and return once it listens."""
    pipeline = _Pipeline(config)
    # Embedding batches can be large; the real API accepts far more than 1 MiB.
    app = web.Application(client_max_size=64 * 1024 * 1024)
    for path, endpoint in ENDPOINTS.items():
        app.router.add_post(path, _endpoint_handler(pipeline, endpoint))
    app.router.add_get("/v1/models", pipeline.models)
    app.router.add_get("/_mock/stats", pipeline.stats_view)
    app.router.add_route("*", "/{tail:.*}", pipeline.not_found)
    # No access log: per-request logging would dominate the server's CPU time.
    # A short shutdown timeout: hanging "timeout" faults must not delay close().
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
    except BaseException:
        await runner.cleanup()
        if pipeline.log is not None:
            await pipeline.log.close()
        raise
    port: int = runner.addresses[0][1]
    if pipeline.log is not None:
        pipeline.log.start()
    return MockServer(runner, pipeline, _format_url(config.host, port))
