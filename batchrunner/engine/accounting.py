"""What requests use and cost: each item's token estimate, whether it may be sent at all
(its size against ``--tpm``, the budget of ``--max-tokens-total``/``--max-cost``), and the
tokens and dollars the answers report.

It decides and says so; acting on it (dead-lettering, stopping the run) is the caller's.
"""

from __future__ import annotations

from typing import Final

from batchrunner.engine.control import Stop
from batchrunner.input.lines import Item
from batchrunner.limits.pricing import CostMeter
from batchrunner.limits.spending import Spending
from batchrunner.limits.tokens import CompletionEstimator, estimate_prompt_tokens
from batchrunner.vocabulary import Failure, Success

__all__ = ["Accounting", "Estimate"]

#: (prompt, completion) tokens an item is expected to use.
Estimate = tuple[int, int]

_NOTHING: Final[Estimate] = (0, 0)


class Accounting:
    """Token estimates, the spending budget and the cost meter of one run."""

    __slots__ = ("_completions", "_costs", "_endpoint", "_estimating", "_spending", "_tpm")

    def __init__(self, endpoint: str, tpm: int | None, spending: Spending, costs: CostMeter):
        self._endpoint, self._tpm = endpoint, tpm
        self._spending, self._costs = spending, costs
        self._completions = CompletionEstimator(endpoint)
        # Estimating costs a tokenizer pass per item: only when a limit reads it.
        self._estimating = tpm is not None or spending.limited

    def admit(self, item: Item) -> Estimate | Failure | Stop:
        """The item's estimate, reserved against the budget: it may be sent. Or a
        ``too_large`` failure (more than the whole ``--tpm``: dead-letter it), or a stop
        (the budget would be passed: the item stays pending)."""
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
        if spending.limited and not spending.admit(_model(item), *estimate):
            what = "--max-cost" if spending.max_cost is not None else "--max-tokens-total"
            return Stop(
                "budget",
                f"budget reached: the next request would pass {what}; "
                "the rest is pending: raise it and re-run",
            )
        return estimate

    def release(self, item: Item, estimate: Estimate) -> None:
        """The admitted item is over: its reservation no longer counts."""
        if self._spending.limited:
            self._spending.release(_model(item), *estimate)

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

    def projected(self, done: int, total: int) -> float | None:
        """What ``total`` items will cost at the rate of the ``done`` ones."""
        return self._costs.projected(done, total)

    def unpriced_warning(self) -> str | None:
        """A warning when the cost leaves out models that have no price."""
        unpriced = self._costs.unpriced()
        if not unpriced or not self._costs.spent():
            return None
        return f"no price for {', '.join(unpriced)}: the cost leaves them out"


def _model(item: Item) -> str:
    model = item.body.get("model")
    return model if isinstance(model, str) else ""
