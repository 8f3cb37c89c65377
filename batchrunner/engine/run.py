"""The worker pool: stream the input, skip what is done, send the rest under the limits,
write one outcome per item.

Each item is one task for its whole life (all its attempts). A bounded read-ahead window
keeps memory flat; an adaptive capacity limiter caps requests in flight; the rate pacer and
the token budget space the sends. An item waiting out a backoff holds no concurrency slot,
and every retry goes back through the gates like a first attempt.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import anyio.abc

from batchrunner.clients import Client, make_client
from batchrunner.config import RunConfig
from batchrunner.engine.admission import admit
from batchrunner.engine.breaker import CircuitBreaker, fatal_hint
from batchrunner.engine.outcomes import Outcomes
from batchrunner.engine.preflight import check_server, first_item
from batchrunner.engine.retry import RetryPolicy
from batchrunner.engine.stats import RunStats
from batchrunner.engine.workers import ItemSender
from batchrunner.errors import ConfigError, OutputWriteError
from batchrunner.input.lines import Item
from batchrunner.input.scan import scan_input
from batchrunner.ledger.manifest import (
    check_manifest,
    move_aside,
    previous_input_size,
    write_manifest,
)
from batchrunner.ledger.state import Ledger
from batchrunner.limits.adaptive import Adaptive
from batchrunner.limits.pacing import RatePacer
from batchrunner.limits.pricing import CostMeter, price_table
from batchrunner.limits.spending import Spending
from batchrunner.limits.tokens import (
    CompletionEstimator,
    estimate_prompt_tokens,
    load_exact_tokenizer,
)
from batchrunner.limits.tpm import TokenBudget
from batchrunner.vocabulary import Failure, Success

__all__ = ["Engine"]

_MAX_POOL = 1024


class Engine:
    """One run. Create it, hand ``stats`` to whoever renders progress, ``await run()``.

    ``stop()`` asks for a graceful stop (no new attempts, in-flight ones finish for up to
    ``drain_timeout``); ``abort()`` cancels in-flight requests at once. Either way every
    outcome already received is on disk.
    """

    def __init__(self, config: RunConfig, client: Client | None = None, seed: int | None = None):
        self.config = config
        self.stats = RunStats()
        self.policy = RetryPolicy(
            config.max_attempts, config.backoff_base, config.backoff_max, config.max_retry_after
        )
        self.rng = random.Random(seed)
        self.breaker = CircuitBreaker(config.breaker)
        try:
            self.prices = price_table(config.prices)
        except ValueError as exc:
            raise ConfigError(f"prices: {exc}") from None
        self.costs = CostMeter(self.prices)
        self.spending = Spending(config.max_tokens_total, config.max_cost, self.prices)
        self.completions = CompletionEstimator(config.endpoint)
        #: What made the run stop by itself (``stats.stop_reason`` "fatal", "quota", "budget").
        self.stop_cause: Failure | None = None
        self._client = client
        self._stopping = False
        self._waiting: set[anyio.CancelScope] = set()
        self._items_scope: anyio.CancelScope | None = None
        self._outer: anyio.abc.TaskGroup | None = None
        self._fatal: OutputWriteError | None = None
        self._ledger: Ledger | None = None
        self._check_bodies = False
        # Built inside the running loop, in _pump: aiolimiter binds to its first loop.
        self.adaptive: Adaptive
        self.pacer: RatePacer
        self.token_budget: TokenBudget | None = None
        self.outcomes: Outcomes
        self._sender: ItemSender | None = None

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
        """Stop the run because of ``cause`` (a tripped breaker, a spent quota, the budget)."""
        if self.stop_cause is None:
            self.stop_cause = cause
            self.stats.stop_message = _halt_message(reason, cause)
        self.stop(reason)

    @contextmanager
    def waiting(self) -> Iterator[anyio.CancelScope]:
        """A wait (for a slot, tokens, the pacer or a backoff) that a graceful stop cuts short."""
        with anyio.CancelScope() as scope:
            if self._stopping:
                scope.cancel()
            self._waiting.add(scope)
            try:
                yield scope
            finally:
                self._waiting.discard(scope)

    # -- opening -----------------------------------------------------------------------

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
        if cfg.tpm or cfg.max_tokens_total or cfg.max_cost:
            # Loading the exact tokenizer takes ~1 s: not on the first request's path.
            await anyio.to_thread.run_sync(load_exact_tokenizer)
        if cfg.preflight:
            await check_server(cfg, first)
        if change in ("grown", "edited"):
            self.stats.warnings.append(f"{cfg.input_path} was {change} since the last run")
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

    # -- the run -----------------------------------------------------------------------

    async def run(self) -> RunStats:
        """Run to completion or until stopped. Raises the :mod:`batchrunner.errors`:
        :class:`OutputWriteError` when an outcome cannot be written, the others when the
        files cannot be used."""
        await self.open()
        assert self._ledger is not None
        ledger = self._ledger
        cfg = self.config
        client = self._client or make_client(
            cfg.client, cfg.server_url, cfg.api_key, cfg.timeout, cfg.concurrency or _MAX_POOL
        )
        try:
            await client.warm_up()
            await self._pump(ledger, client)
        finally:
            self.stats.finished = time.monotonic()
            self.stats.cost = self.costs.spent()
            unpriced = self.costs.unpriced()
            if unpriced and self.stats.cost:
                names = ", ".join(unpriced)
                self.stats.warnings.append(f"no price for {names}: the cost leaves them out")
            if self._client is None:
                with anyio.CancelScope(shield=True):
                    await client.aclose()
            ledger.close()
        if self._fatal is not None:
            raise self._fatal
        return self.stats

    async def _pump(self, ledger: Ledger, client: Client) -> None:
        cfg = self.config
        self.pacer = RatePacer(cfg.rps)
        self.adaptive = Adaptive(cfg.rps, cfg.concurrency, self.pacer)
        self.stats.pool = self.adaptive.pool
        self.token_budget = TokenBudget(cfg.tpm) if cfg.tpm else None
        read_ahead = cfg.reorder_buffer if cfg.ordered else max(1024, 8 * (cfg.concurrency or 128))
        window = anyio.Semaphore(read_ahead)
        self.outcomes = Outcomes(
            ledger,
            self.stats,
            self.breaker,
            halt=self.halt,
            on_write_error=self._write_failed,
            release=window.release,
            ordered=cfg.ordered,
        )
        items = admit(cfg, ledger.state, self.stats, self.outcomes.write_dead, self._check_bodies)
        async with anyio.create_task_group() as outer:
            self._outer = outer
            outer.start_soon(self._sync_files, ledger)
            if self._stopping:
                outer.start_soon(self._drain_deadline)
            with anyio.CancelScope() as items_scope:
                self._items_scope = items_scope
                async with anyio.create_task_group() as tg:
                    self._sender = ItemSender(self, client, items, window, tg)
                    self._sender.grow(self.adaptive.pool)
                    outer.start_soon(self._tick)
            with contextlib.suppress(OutputWriteError):  # kept in self._fatal
                self.outcomes.close(completed=not items_scope.cancel_called)
            outer.cancel_scope.cancel()
        self._outer = None  # a signal from now on has nothing left to drain

    # -- what the sender asks ------------------------------------------------------------

    def estimate_tokens(self, item: Item) -> tuple[int, int]:
        """(prompt, completion) tokens an item is expected to use, when anything needs it."""
        if self.token_budget is None and not self.spending.limited:
            return 0, 0
        prompt = estimate_prompt_tokens(item.body, item.endpoint or self.config.endpoint)
        return prompt, self.completions.estimate(item.body)

    def too_large(self, tokens: int) -> Failure | None:
        """A request bigger than the whole per-minute budget can never be sent."""
        budget = self.token_budget
        if budget is None or budget.fits(tokens):
            return None
        message = f"needs about {tokens:,} tokens, more than the whole --tpm {budget.tpm:,}"
        return Failure(type="too_large", status_code=None, message=message)

    def admit_spending(self, item: Item, estimate: tuple[int, int]) -> bool:
        """Reserve an item's share of ``--max-tokens-total``/``--max-cost``, or stop the run."""
        if not self.spending.limited:
            return True
        if self.spending.admit(_model(item), *estimate):
            return True
        what = "--max-cost" if self.spending.max_cost is not None else "--max-tokens-total"
        if self.stats.stop_message is None:
            self.stats.stop_message = (
                f"budget reached: the next request would pass {what}; "
                "the rest is pending: raise it and re-run"
            )
        self.stop("budget")
        return False

    def release_spending(self, item: Item, estimate: tuple[int, int]) -> None:
        if self.spending.limited:
            self.spending.release(_model(item), *estimate)

    def succeeded(self, item: Item, reply: Success, attempts: int, latency: float) -> bytes:
        model = _model(item)
        self.completions.observe(reply.completion_tokens)
        self.costs.add(model, reply.prompt_tokens, reply.completion_tokens)
        if self.spending.limited:  # per request: only when a budget asks for it
            self.spending.spend(model, reply.prompt_tokens, reply.completion_tokens)
        return self.outcomes.succeeded(item, reply, attempts, latency)

    def item_finished(self, seq: int, line: bytes | None) -> None:
        with contextlib.suppress(OutputWriteError):  # kept in self._fatal; aborting
            self.outcomes.finished(seq, line)

    # -- housekeeping ----------------------------------------------------------------------

    def _write_failed(self, exc: OutputWriteError) -> None:
        if self._fatal is None:
            self._fatal = exc
        self.abort("write_error")

    async def _sync_files(self, ledger: Ledger) -> None:
        while True:
            await anyio.sleep(self.config.fsync_interval)
            try:
                await anyio.to_thread.run_sync(ledger.sync)
            except OutputWriteError as exc:
                self._write_failed(exc)
                return

    async def _tick(self) -> None:
        """Once a second: let the adaptive limits move; publish them and the cost."""
        stats = self.stats
        while True:
            await anyio.sleep(1.0)
            self.adaptive.tick(time.monotonic())
            if self._sender is not None and not stats.input_exhausted:
                self._sender.grow(self.adaptive.pool)
            stats.pool = self.adaptive.pool
            stats.current_rps = self.adaptive.rate
            stats.share_429 = self.adaptive.rate_limited_share
            stats.cost = self.costs.spent()
            remaining = stats.total_lines - stats.blank - stats.skipped_done
            stats.cost_projected = self.costs.projected(stats.done, max(remaining, stats.done))

    async def _drain_deadline(self) -> None:
        await anyio.sleep(self.config.drain_timeout)
        self.abort(self.stats.stop_reason or "interrupted")


def _model(item: Item) -> str:
    model = item.body.get("model")
    return model if isinstance(model, str) else ""


def _halt_message(reason: str, cause: Failure) -> str:
    what = f"{cause.status_code} {cause.type}: {cause.message}"
    if reason == "quota":
        return (
            f"paused: the account's quota is spent ({what}); the rest is pending: "
            "re-run the same command when the quota renews"
        )
    if reason == "budget":
        return f"budget reached: {cause.message}; the rest is pending: raise it and re-run"
    return (
        f"stopped: requests keep failing with {what}; {fatal_hint(cause)}. The items are "
        "left pending: fix the cause and re-run the same command"
    )


def _started_at(manifest: dict[str, Any] | None) -> str | None:
    value = manifest.get("started_at") if manifest else None
    return value if isinstance(value, str) else None
