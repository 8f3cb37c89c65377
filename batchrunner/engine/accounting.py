"""What requests use and cost: each item's token estimate, whether it may be sent at all
(its size against ``tpm``, the budget of ``max_tokens_total``/``max_cost``), and the
tokens and dollars the answers report.

It decides and says so; acting on it (dead-lettering, stopping the run) is the caller's.
The budget is the run's, over all its invocations: what the results file already holds
(its lines' ``usage``) is counted before the first item is admitted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import anyio

from batchrunner.engine.control import Stop
from batchrunner.engine.stats import RunStats
from batchrunner.input.lines import Item
from batchrunner.limits.pricing import CostMeter
from batchrunner.limits.spending import Spending
from batchrunner.limits.tokens import CompletionEstimator, estimate_prompt_tokens
from batchrunner.vocabulary import Failure, Success

__all__ = ["Accounting", "Estimate", "earlier_usage"]

#: (prompt, completion) tokens an item is expected to use.
Estimate = tuple[int, int]

_NOTHING: Final[Estimate] = (0, 0)

# A result line's usage and model, found without parsing the line (bodies can be large):
# a key can only appear unescaped as a key, and a longer key ("prompt_tokens_details")
# does not match.
_PROMPT = re.compile(rb'"prompt_tokens":(\d+)')
_COMPLETION = re.compile(rb'"completion_tokens":(\d+)')
_MODEL = re.compile(rb'"model":"([^"\\]*)"')


class Accounting:
    """Token estimates, the spending budget and the cost meter of one run."""

    __slots__ = (
        "_completions",
        "_costs",
        "_endpoint",
        "_estimating",
        "_released",
        "_spending",
        "_tpm",
    )

    def __init__(self, endpoint: str, tpm: int | None, spending: Spending, costs: CostMeter):
        self._endpoint, self._tpm = endpoint, tpm
        self._spending, self._costs = spending, costs
        self._completions = CompletionEstimator(endpoint)
        # Estimating costs a tokenizer pass per item: only when a limit reads it.
        self._estimating = tpm is not None or spending.limited
        self._released: anyio.Event | None = None  # set when a reservation is given back

    async def count_earlier(self, results: Path, model: str | None) -> None:
        """Count what earlier invocations of the run spent (the usage in ``results``)
        against the budget; read only when there is one. A result whose model has no price
        is priced as ``model`` (the run's ``--model``), when that has one."""
        spending = self._spending
        if not spending.limited:
            return
        usage = await anyio.to_thread.run_sync(earlier_usage, results)
        for answered, (prompt, completion) in usage.items():
            priced = answered if spending.priced(answered) or model is None else model
            spending.spend(priced, prompt, completion)

    @property
    def may_wait(self) -> bool:
        """Whether :meth:`admit` may wait (for items in flight to give budget back)."""
        return self._spending.limited

    async def admit(self, item: Item) -> Estimate | Failure | Stop:
        """The item's estimate, reserved against the budget: it may be sent. Or a
        ``too_large`` failure (more than the whole ``tpm``: dead-letter it), or a stop
        (the budget would be passed even with nothing in flight: the item stays pending).
        While items in flight hold the budget it waits for them to end, not stops."""
        if not self._estimating:
            return _NOTHING
        estimate = (
            estimate_prompt_tokens(item.body, item.endpoint or self._endpoint),
            self._completions.estimate(item.body),
        )
        tokens = sum(estimate)
        if self._tpm is not None and tokens > self._tpm:
            message = f"needs about {tokens:,} tokens, more than the whole --tpm {self._tpm:,}"
            return Failure(type="too_large", status_code=None, message=message)
        spending = self._spending
        while spending.limited and not spending.admit(_model(item), *estimate):
            if not spending.held:  # nothing in flight to give any back: it is spent
                return self._spent()
            if self._released is None:
                self._released = anyio.Event()
            await self._released.wait()
        return estimate

    def _spent(self) -> Stop:
        what = "`max_cost`" if self._spending.max_cost is not None else "`max_tokens_total`"
        return Stop(
            "budget",
            f"budget reached: the next request would pass {what}; "
            "the rest is pending: raise it and re-run",
        )

    def release(self, item: Item, estimate: Estimate) -> None:
        """The admitted item is over: its reservation no longer counts, and whoever waits
        for the budget may ask again."""
        if self._spending.limited:
            self._spending.release(_model(item), *estimate)
            if self._released is not None:
                self._released.set()
                self._released = None

    def answered(self, item: Item, reply: Success) -> None:
        """Count what a success really used."""
        model = _model(item)
        self._completions.observe(reply.completion_tokens)
        self._costs.add(model, reply.prompt_tokens, reply.completion_tokens)
        if self._spending.limited:  # per request: only when a budget asks for it
            self._spending.spend(model, reply.prompt_tokens, reply.completion_tokens)

    def spent(self) -> float:
        """USD so far, over the models that have a price."""
        return self._costs.spent()

    def publish(self, stats: RunStats) -> None:
        """The cost so far and, with a budget, what the run has spent of it (all its
        invocations) into ``stats``."""
        stats.cost = self._costs.spent()
        spending = self._spending
        if spending.max_cost is not None:
            stats.budget_usd = (spending.cost_spent, spending.max_cost)
        if spending.max_tokens is not None:
            stats.budget_tokens = (spending.tokens_spent, spending.max_tokens)

    def projected(self, done: int, total: int) -> float | None:
        """What ``total`` items will cost at the rate of the ``done`` ones."""
        return self._costs.projected(done, total)

    def unpriced_warning(self) -> str | None:
        """A warning when the cost leaves out models that have no price."""
        unpriced = self._costs.unpriced()
        if not unpriced or not self._costs.spent():
            return None
        return f"no price for {', '.join(unpriced)}: the cost leaves them out"


def earlier_usage(results: Path) -> dict[str, tuple[int, int]]:
    """model -> (prompt, completion) tokens over the result lines already in ``results``
    (none when it does not exist)."""
    usage: dict[str, tuple[int, int]] = {}
    try:
        lines = _lines(results)
        for line in lines:
            prompt, completion = _PROMPT.search(line), _COMPLETION.search(line)
            if prompt is None and completion is None:
                continue
            found = _MODEL.search(line)
            model = found.group(1).decode("utf-8", "replace") if found else ""
            before = usage.get(model, (0, 0))
            usage[model] = (
                before[0] + (int(prompt.group(1)) if prompt else 0),
                before[1] + (int(completion.group(1)) if completion else 0),
            )
    except FileNotFoundError:
        pass
    return usage


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        yield from f


def _model(item: Item) -> str:
    model = item.body.get("model")
    return model if isinstance(model, str) else ""
