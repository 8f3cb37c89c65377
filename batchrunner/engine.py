"""The worker pool: stream the input, skip what is done, send the rest under the limits,
write one outcome per item.

Each item is one task for its whole life (all its attempts). A bounded read-ahead window
keeps memory flat; a capacity limiter caps requests in flight; the rate pacer spaces the
sends. An item waiting out a backoff holds no concurrency slot, and every retry goes back
through the pacer like a first attempt.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import anyio.abc

from .backoff import RetryPolicy
from .breaker import CircuitBreaker, Parked, fatal_hint
from .classify import Failure
from .clients import Client, Success, make_client
from .config import RunConfig
from .errors import OutputWriteError
from .ledger import DeadEntry, Ledger
from .lines import BadLine, Done, Item, read_input
from .manifest import check_manifest, move_aside, previous_input_size, write_manifest
from .pacing import RatePacer
from .preflight import check_server, first_item
from .prepare import scan_input
from .records import dead_line, input_dead_line, result_line
from .stats import RunStats

__all__ = ["Engine"]


class Engine:
    """One run. Create it, hand ``stats`` to whoever renders progress, ``await run()``.

    ``stop()`` asks for a graceful stop (no new attempts, in-flight ones finish for up to
    ``drain_timeout``); ``abort()`` cancels in-flight requests at once. Either way every
    outcome already received is on disk.
    """

    def __init__(self, config: RunConfig, client: Client | None = None, seed: int | None = None):
        self.config = config
        self.stats = RunStats()
        self._client = client
        self._policy = RetryPolicy(
            config.max_attempts, config.backoff_base, config.backoff_max, config.max_retry_after
        )
        self._rng = random.Random(seed)
        self._stopping = False
        self._waiting: set[anyio.CancelScope] = set()
        self._items_scope: anyio.CancelScope | None = None
        self._fatal: OutputWriteError | None = None
        self._outer: anyio.abc.TaskGroup | None = None
        self._ledger: Ledger | None = None
        self._check_bodies = False
        self.breaker = CircuitBreaker(config.breaker)
        #: What made the run stop by itself (``stats.stop_reason`` "fatal" or "quota").
        self.stop_cause: Failure | None = None

    # -- control -----------------------------------------------------------------------

    def stop(self, reason: str = "interrupted") -> None:
        """Stop admitting; let in-flight requests finish within the drain timeout."""
        if self._stopping:
            return
        self._stopping = True
        self.stats.stop_reason = self.stats.stop_reason or reason
        for scope in list(self._waiting):
            scope.cancel()
        if self._outer is not None:
            self._outer.start_soon(self._drain_deadline)

    def abort(self, reason: str = "interrupted") -> None:
        """Cancel everything in flight now; those items stay pending."""
        self.stop(reason)
        if self._items_scope is not None:
            self._items_scope.cancel()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def halt(self, reason: str, cause: Failure) -> None:
        """Stop the run because of ``cause`` (a tripped breaker, a spent quota)."""
        if self.stop_cause is None:
            self.stop_cause = cause
            self.stats.stop_message = _halt_message(reason, cause)
        self.stop(reason)

    def dead_letter(self, entries: list[Parked]) -> None:
        """Write final failures to the dead-letter file."""
        assert self._ledger is not None
        stats = self.stats
        for p in entries:
            self._write(self._ledger.dead.write, dead_line(p.item, p.failure, p.attempts))
            stats.dead += 1
            stats.dead_by_status[_cause(p.failure)] += 1

    # -- the run -----------------------------------------------------------------------

    async def open(self) -> None:
        """Check and open the files (``run`` does it if you don't): errors surface here,
        before anything is sent."""
        if self._ledger is not None:
            return
        cfg = self.config
        if cfg.restart:
            self.stats.warnings.extend(f"moved aside: {p}" for p in move_aside(cfg))
        scan = await anyio.to_thread.run_sync(scan_input, cfg.input_path, previous_input_size(cfg))
        self.stats.total_lines = scan.lines
        change, old = check_manifest(cfg, scan)
        first = await anyio.to_thread.run_sync(first_item, cfg)
        if cfg.preflight:
            await check_server(cfg, first)
        if change == "grown":
            self.stats.warnings.append(f"{cfg.input_path} has grown since the last run")
        elif change == "edited":
            self.stats.warnings.append(f"{cfg.input_path} was edited since the last run")
        # Only an edited input can hold a done id whose body changed: only then compare them.
        self._check_bodies = change == "edited"
        ledger = await anyio.to_thread.run_sync(
            Ledger, cfg.output_path, cfg.dead_letter_path, self._check_bodies
        )
        self.stats.warnings.extend(ledger.state.warnings)
        try:
            write_manifest(cfg, scan, _started_at(old))
        except BaseException:
            ledger.close()
            raise
        self._ledger = ledger

    async def run(self) -> RunStats:
        """Run to completion or until stopped. Raises the :mod:`batchrunner.errors`:
        :class:`OutputWriteError` when an outcome cannot be written, the others when the
        files cannot be used."""
        await self.open()
        assert self._ledger is not None
        ledger = self._ledger
        client = self._client or make_client(self.config, self.config.concurrency)
        try:
            await self._pump(ledger, client)
        finally:
            self.stats.finished = time.monotonic()
            if self._client is None:
                with anyio.CancelScope(shield=True):
                    await client.aclose()
            ledger.close()
        if self._fatal is not None:
            raise self._fatal
        return self.stats

    async def _pump(self, ledger: Ledger, client: Client) -> None:
        limiter = anyio.CapacityLimiter(self.config.concurrency)
        pacer = RatePacer(self.config.rps)
        window = anyio.Semaphore(max(1024, 8 * self.config.concurrency))
        send = _Sender(self, ledger, client, limiter, pacer)
        async with anyio.create_task_group() as outer:
            self._outer = outer
            outer.start_soon(self._sync_files, ledger)
            if self._stopping:
                outer.start_soon(self._drain_deadline)
            with anyio.CancelScope() as items_scope:
                self._items_scope = items_scope
                async with anyio.create_task_group() as tg:
                    await self._feed(tg, ledger, send, window)
            if not items_scope.cancel_called:
                with contextlib.suppress(OutputWriteError):  # kept in self._fatal
                    self.dead_letter(self.breaker.close())
            outer.cancel_scope.cancel()

    async def _feed(
        self, tg: anyio.abc.TaskGroup, ledger: Ledger, send: _Sender, window: anyio.Semaphore
    ) -> None:
        for item in self._admit(ledger):
            if item is None:
                await anyio.lowlevel.checkpoint()
            else:
                await window.acquire()
                if self._stopping:
                    window.release()
            if self._stopping:
                return
            if item is not None:
                tg.start_soon(send.item, item, window)
        self.stats.input_exhausted = True

    def _admit(self, ledger: Ledger) -> Iterator[Item | None]:
        """Items that still need sending; bad lines are written here as they come.
        Yields ``None`` now and then so the caller can let the loop breathe."""
        state, stats = ledger.state, self.stats
        results, dead = state.results, state.dead
        if self.config.retry_dead:
            dead = {k: v for k, v in dead.items() if not self._retry(v)}
        done = None if self._check_bodies else (lambda cid: cid in results or cid in dead)
        cfg = self.config
        not_sent = 0
        for entry in read_input(cfg.input_path, cfg.endpoint, cfg.model, done):
            stats.read += 1
            if isinstance(entry, Item) and not self._already_done(entry, results, dead):
                yield entry
                continue
            if isinstance(entry, BadLine):
                self._bad_line(entry, ledger)
            elif isinstance(entry, Done):
                stats.skipped_done += 1
                stats.skipped_dead += entry.custom_id not in results
            not_sent += 1
            if not_sent % 512 == 0:
                yield None
        stats.blank = max(stats.total_lines - stats.read, 0)

    def _retry(self, entry: DeadEntry) -> bool:
        """Whether ``--retry-dead`` sends this dead item again."""
        statuses = self.config.retry_statuses
        return not statuses or entry.status_code in statuses

    def _bad_line(self, bad: BadLine, ledger: Ledger) -> None:
        stats = self.stats
        if bad.line in ledger.state.dead_lines:
            stats.skipped_done += 1
            stats.skipped_dead += 1
            return
        self._write(ledger.dead.write, input_dead_line(bad))
        stats.dead += 1
        stats.dead_input += 1
        stats.dead_by_status[bad.type] += 1

    def _already_done(self, item: Item, results: dict[str, Any], dead: dict[str, Any]) -> bool:
        """Compare a done id's body with what was sent (only when the input was edited)."""
        if item.custom_id in results:
            old_fp = results[item.custom_id]
        elif item.custom_id in dead:
            old_fp = dead[item.custom_id].fp
            self.stats.skipped_dead += 1
        else:
            return False
        self.stats.skipped_done += 1
        if old_fp is not None and old_fp != item.fp:
            self.stats.changed_done += 1
        return True

    def _write(self, write: Callable[[bytes], None], line: bytes) -> None:
        """Outcomes are written with one synchronous call: cancellation cannot cut it."""
        try:
            write(line)
        except OutputWriteError as exc:
            if self._fatal is None:
                self._fatal = exc
            self.abort("write_error")
            raise

    async def _sync_files(self, ledger: Ledger) -> None:
        while True:
            await anyio.sleep(self.config.fsync_interval)
            try:
                await anyio.to_thread.run_sync(ledger.sync)
            except OutputWriteError as exc:
                self._fatal = self._fatal or exc
                self.abort("write_error")
                return

    async def _drain_deadline(self) -> None:
        await anyio.sleep(self.config.drain_timeout)
        self.abort(self.stats.stop_reason or "interrupted")

    @contextmanager
    def waiting(self) -> Iterator[anyio.CancelScope]:
        """A wait (for a slot, the pacer or a backoff) that a graceful stop cuts short."""
        with anyio.CancelScope() as scope:
            if self._stopping:
                scope.cancel()
            self._waiting.add(scope)
            try:
                yield scope
            finally:
                self._waiting.discard(scope)


class _Sender:
    """All the attempts of one item, and its single outcome."""

    __slots__ = ("_client", "_engine", "_ledger", "_limiter", "_pacer")

    def __init__(
        self,
        engine: Engine,
        ledger: Ledger,
        client: Client,
        limiter: anyio.CapacityLimiter,
        pacer: RatePacer,
    ) -> None:
        self._engine, self._ledger, self._client = engine, ledger, client
        self._limiter, self._pacer = limiter, pacer

    async def item(self, item: Item, window: anyio.Semaphore) -> None:
        try:
            await self._attempts(item)
        except OutputWriteError:
            pass  # the engine holds it and stops the run
        finally:
            window.release()

    async def _attempts(self, item: Item) -> None:
        eng, stats = self._engine, self._engine.stats
        attempt = 0
        while not eng.stopping:
            attempt += 1
            reply, latency = await self._send_once(item)
            if reply is None:
                return  # stopped while waiting: the item stays pending
            if isinstance(reply, Success):
                return self._succeeded(item, reply, attempt, latency)
            delay = eng._policy.delay(reply, attempt, eng._rng)
            if delay is None:
                return self._failed(item, reply, attempt)
            stats.retries += 1
            stats.retry_causes[_cause(reply)] += 1
            stats.retrying_now += 1
            try:
                with eng.waiting():
                    await anyio.sleep(delay)
            finally:
                stats.retrying_now -= 1

    async def _send_once(self, item: Item) -> tuple[Success | Failure | None, float]:
        eng, stats = self._engine, self._engine.stats
        with eng.waiting() as scope:
            await self._limiter.acquire()
        if scope.cancelled_caught:
            return None, 0.0
        try:
            with eng.waiting() as scope:
                await self._pacer.acquire()
            if scope.cancelled_caught or eng.stopping:
                return None, 0.0  # a wait that ended as the stop began must not send
            stats.sent += 1
            stats.in_flight += 1
            start = time.monotonic()
            try:
                reply = await self._client.send(eng.config.endpoint, item.body)
            finally:
                stats.in_flight -= 1
            return reply, time.monotonic() - start
        finally:
            self._limiter.release()

    def _succeeded(self, item: Item, reply: Success, attempt: int, latency: float) -> None:
        eng, stats = self._engine, self._engine.stats
        eng._write(self._ledger.results.write, result_line(item, reply.body, attempt, latency))
        stats.ok += 1
        stats.prompt_tokens += reply.prompt_tokens
        stats.completion_tokens += reply.completion_tokens
        eng.dead_letter(eng.breaker.other())

    def _failed(self, item: Item, failure: Failure, attempt: int) -> None:
        eng = self._engine
        if failure.type == "quota_exceeded":
            eng.halt("quota", failure)  # the item stays pending: no retry can help today
            return
        if failure.retryable:
            failure = _exhausted(failure, attempt, eng._policy.max_retry_after)
        parked = Parked(item, _redacted(failure, eng.config.api_key), attempt)
        if eng.breaker.is_fatal(failure):
            eng.dead_letter(eng.breaker.fatal(parked))
            if eng.breaker.tripped is not None:
                eng.halt("fatal", eng.breaker.tripped)
            return
        eng.dead_letter([parked, *eng.breaker.other()])


def _halt_message(reason: str, cause: Failure) -> str:
    what = f"{cause.status_code} {cause.type}: {cause.message}"
    if reason == "quota":
        return (
            f"paused: the account's quota is spent ({what}); the rest is pending: "
            "re-run the same command when the quota renews"
        )
    return (
        f"stopped: requests keep failing with {what}; {fatal_hint(cause)}. The items are "
        "left pending: fix the cause and re-run the same command"
    )


def _cause(failure: Failure) -> str:
    """How a failure is counted: its HTTP status, or its type when that says more."""
    code = failure.status_code
    return str(code) if code is not None and code != 200 else failure.type


def _started_at(manifest: dict[str, Any] | None) -> str | None:
    value = manifest.get("started_at") if manifest else None
    return value if isinstance(value, str) else None


def _exhausted(failure: Failure, attempts: int, max_retry_after: float) -> Failure:
    if failure.retry_after is not None and failure.retry_after > max_retry_after:
        why = f"server asked to wait {failure.retry_after:g} s (limit {max_retry_after:g} s)"
        type_ = "retry_after_too_long"
    else:
        why, type_ = f"gave up after {attempts} attempts", "retries_exhausted"
    message = f"{why}; last error: {failure.type}: {failure.message}"
    return Failure(False, failure.status_code, type_, message)


def _redacted(failure: Failure, api_key: str | None) -> Failure:
    if not api_key or api_key not in failure.message:
        return failure
    message = failure.message.replace(api_key, "[redacted]")
    return Failure(failure.retryable, failure.status_code, failure.type, message)
