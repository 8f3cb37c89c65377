"""Blocking entry point: run a mock server until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal

from batchrunner.mock.app import start_server
from batchrunner.mock.config import MockConfig


async def _serve(config: MockConfig) -> None:
    server = await start_server(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        # Parents (tests, `run --mock`) read exactly this line to learn the URL.
        print(f"mock server listening on {server.url}", flush=True)
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await server.close()


def serve_forever(config: MockConfig) -> None:
    """Start the server, print ``mock server listening on URL``, serve until a signal.

    SIGINT and SIGTERM both end it cleanly: hanging requests are cut short, the
    log is flushed, and the function returns normally.
    """
    asyncio.run(_serve(config))
