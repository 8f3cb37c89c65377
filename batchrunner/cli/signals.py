"""The CLI's side of a run: the engine plus signals and the progress display."""

from __future__ import annotations

import signal
import sys

import anyio
import anyio.abc

from batchrunner.cli.progress import ProgressView
from batchrunner.config import RunConfig
from batchrunner.engine.events import NO_EVENTS, Events
from batchrunner.engine.run import Engine
from batchrunner.engine.stats import RunStats
from batchrunner.errors import BatchRunnerError

__all__ = ["run_with_signals"]

#: Seconds between two redraws of the progress display: smoother costs the run CPU.
_TICK = 0.25


def run_with_signals(
    config: RunConfig, *, quiet: bool, events: Events = NO_EVENTS, interval: float = 5.0
) -> RunStats:
    """Run ``config``; the first SIGINT/SIGTERM drains, the second aborts. The signals are
    caught from the start: one during the opening, the preflight or the warm-up request
    stops the run there (exit 130), it does not wait for them. Progress shows (and is
    reported to ``events``) every ``interval`` seconds."""
    return anyio.run(_main, config, quiet, events, interval, backend="asyncio")


async def _main(config: RunConfig, quiet: bool, events: Events, interval: float) -> RunStats:
    engine = Engine(config, events=events)
    error: BatchRunnerError | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch_signals, engine, engine.stats, config.drain_timeout, quiet)
        try:
            await engine.open()
            with ProgressView(engine.stats, quiet=quiet, interval=interval, events=events) as view:
                tg.start_soon(_refresh, view)
                stats = await engine.run()
        except BatchRunnerError as exc:
            error = exc  # raised below, outside the task group that would wrap it
        finally:
            tg.cancel_scope.cancel()  # no checkpoint since the view closed: no refresh after
    if error is not None:
        raise error
    return stats


async def _watch_signals(engine: Engine, stats: RunStats, drain: float, quiet: bool) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not engine.stopping:
                engine.stop("interrupted")
                if not quiet:
                    print(f"\n{name}: {_stopping(stats, drain)}", file=sys.stderr, flush=True)
            else:
                engine.abort("interrupted")


def _stopping(stats: RunStats, drain: float) -> str:
    if not stats.sent:
        return "stopping before the first request."
    return (
        f"no new requests; finishing {stats.in_flight} in flight (up to {drain:g} s). "
        "Again to abort now."
    )


async def _refresh(view: ProgressView) -> None:
    while True:
        await anyio.sleep(_TICK)
        view.update()
