"""The CLI's side of a ``--via batch`` run: signals, what a person sees while the jobs run,
the jobs table after it, and the jobs in ``batchrunner status``.

The batch code (and the SDK it drives) is imported when a batch run or ``status --refresh``
needs it, so that other commands do not pay for loading the SDK.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import click
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from batchrunner.batch.jobs import ChunkRecord, age_seconds, eta_seconds, read_jobs
from batchrunner.config import DEFAULT_SERVER_URL, RunConfig
from batchrunner.engine.events import NO_EVENTS, Events
from batchrunner.engine.retry import RetryPolicy
from batchrunner.engine.stats import RunStats
from batchrunner.errors import BatchRunnerError, ConfigError

if TYPE_CHECKING:
    from batchrunner.batch.run import BatchRun

__all__ = ["echo_jobs", "job_lines", "jobs_as_json", "recorded_jobs", "run_batch_with_signals"]

_TICK = 0.25


def run_batch_with_signals(
    config: RunConfig, *, quiet: bool, events: Events = NO_EVENTS
) -> RunStats:
    """Run ``config`` as batch jobs; SIGINT/SIGTERM stop waiting (the jobs keep running)."""
    return anyio.run(_main, config, quiet, events, backend="asyncio")


async def _main(config: RunConfig, quiet: bool, events: Events) -> RunStats:
    from batchrunner.batch.run import BatchRun

    run = BatchRun(config, events=events)
    error: BatchRunnerError | None = None
    async with anyio.create_task_group() as tg:
        # Caught from the start: a signal during the opening or the preflight stops there.
        tg.start_soon(_watch_signals, run, quiet)
        try:
            await run.open()
            with BatchView(run, quiet=quiet) as view:
                run.on_change = view.update  # every phase and status change: none missed
                tg.start_soon(_refresh, view)
                stats = await run.run()
        except BatchRunnerError as exc:
            error = exc  # raised below, outside the task group that would wrap it
        finally:
            tg.cancel_scope.cancel()
    if error is not None:
        raise error
    return stats


async def _watch_signals(run: BatchRun, quiet: bool) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            run.stop()
            if not quiet:
                name = signal.Signals(signum).name
                print(f"\n{name}: stopped waiting; the jobs keep running.", file=sys.stderr)


async def _refresh(view: BatchView) -> None:
    while True:
        await anyio.sleep(_TICK)
        view.update()


class BatchView:
    """A live table of the jobs on a terminal; elsewhere one line per phase and per job
    status change; or nothing."""

    def __init__(self, run: BatchRun, *, quiet: bool, stream: TextIO = sys.stderr) -> None:
        self._run, self._quiet, self._stream = run, quiet, stream
        self._live: Live | None = None
        self._phase = ""
        self._seen: dict[str, str] = {}

    def __enter__(self) -> BatchView:
        if not self._quiet and self._stream.isatty():
            console = Console(file=self._stream)
            self._live = Live(console=console, refresh_per_second=4, transient=True)
            self._live.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.update()
        if self._live is not None:
            self._live.stop()  # transient: the jobs as they ended stay, below
            for line in job_lines(self._run.jobs()):
                self._print(line)

    def update(self) -> None:
        if self._quiet:
            return
        run = self._run
        if self._live is not None:
            lines = "\n".join(job_lines(run.jobs()))
            self._live.update(Group(Text(run.phase, style="dim"), Text(lines)))
            return
        if run.phase != self._phase and not run.phase.startswith("waiting"):
            self._print(run.phase)
        self._phase = run.phase
        for chunk in run.jobs():
            if self._seen.get(chunk.token) != chunk.status:
                self._seen[chunk.token] = chunk.status
                self._print(_job_line(chunk))

    def _print(self, text: str) -> None:
        print(text, file=self._stream, flush=True)


def _job_line(chunk: ChunkRecord) -> str:
    job = chunk.job_id or f"(upload {chunk.file_id})"
    line = f"job {job} {chunk.status}: {chunk.completed:,}/{chunk.total or chunk.count:,} done"
    line += f" ({chunk.succeeded:,} ok, {chunk.failed:,} failed)"
    eta = eta_seconds(chunk, time.time())
    return line + (f", about {_duration(eta)} to go" if eta is not None else "")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def job_lines(chunks: list[ChunkRecord]) -> list[str]:
    """One line a job: its id, status, counts, ETA or what came home, age."""
    now = time.time()
    lines = []
    for c in chunks:
        if c.homed:
            state = f"home: {c.results:,} results, {c.dead:,} dead, {c.pending:,} pending"
        else:
            state = "dropped" if c.dropped else "out"
        age = _duration(age_seconds(c.uploaded_at, now))
        lines.append(f"{_job_line(c)}; {state}; {c.model}; age {age}")
    return lines


# -- status ---------------------------------------------------------------------------


def recorded_jobs(results: Path, manifest: dict[str, Any], *, refresh: bool) -> list[ChunkRecord]:
    """The run's jobs as recorded; with ``refresh``, the live ones as the API says now
    (the record is not changed: ``status`` only reads)."""
    chunks, _ = read_jobs(results)
    asked = [c for c in chunks if c.live and c.job_id is not None]
    if refresh and asked:
        anyio.run(_ask, asked, manifest, backend="asyncio")
    return chunks


async def _ask(chunks: list[ChunkRecord], manifest: dict[str, Any]) -> None:
    from batchrunner.batch.api import ApiFailure, BatchApi

    key = os.environ.get("MISTRAL_API_KEY", "").strip() or None
    url = str(manifest.get("server_url") or DEFAULT_SERVER_URL)
    api = BatchApi(url, key, 30.0, RetryPolicy(max_attempts=3), random.Random())
    try:
        for chunk in chunks:
            assert chunk.job_id is not None
            job = await api.get(chunk.job_id)
            chunk.status, chunk.total, chunk.completed = job.status, job.total, job.completed
            chunk.succeeded, chunk.failed, chunk.started_at = (
                job.succeeded,
                job.failed,
                job.started_at,
            )
    except ApiFailure as exc:
        raise ConfigError(f"cannot refresh the batch jobs from {url}: {exc}") from None
    finally:
        await api.aclose()


def echo_jobs(chunks: list[ChunkRecord]) -> None:
    """The jobs, as ``status`` prints them."""
    if not chunks:
        return
    live = [c for c in chunks if c.live]
    covering = sum(c.count for c in live)
    click.echo(f"batch jobs     {len(chunks)} ({len(live)} out, covering {covering:,} ids)")
    for line in job_lines(chunks):
        click.echo("  " + line)


def jobs_as_json(chunks: list[ChunkRecord]) -> list[dict[str, Any]]:
    return [
        {
            "job_id": c.job_id,
            "file_id": c.file_id,
            "model": c.model,
            "requests": c.count,
            **c.snapshot(),
            "brought_home": c.homed,
            "dropped": c.dropped,
            "uploaded_at": c.uploaded_at,
        }
        for c in chunks
    ]
