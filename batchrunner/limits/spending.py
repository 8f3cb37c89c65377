"""``--max-tokens-total`` / ``--max-cost``: the budget of the run, over all its invocations.

An item is admitted only if what is spent, plus what the items in flight may still spend
(each one's worst case: its prompt and its whole ``max_tokens``), plus its own worst case
stays within the budget. When the next item does not fit, that is no verdict while items are
in flight: their answers usually cost far less than was held for them, so the caller waits
for them to settle and asks again; only with nothing in flight does "does not fit" mean the
budget is spent. The estimate of an admitted item is released when it ends, and what it
really used is counted. What earlier invocations of the run spent (the results file holds
their usage) counts from the start.
"""

from __future__ import annotations

from collections.abc import Mapping

from batchrunner.limits.pricing import Price, cost

__all__ = ["Spending"]


class Spending:
    __slots__ = (
        "_prices",
        "cost_spent",
        "held",
        "max_cost",
        "max_tokens",
        "reserved_cost",
        "reserved_tokens",
        "tokens_spent",
    )

    def __init__(
        self, max_tokens: int | None, max_cost: float | None, prices: Mapping[str, Price]
    ) -> None:
        self.max_tokens, self.max_cost, self._prices = max_tokens, max_cost, prices
        self.tokens_spent = self.reserved_tokens = 0
        self.cost_spent = self.reserved_cost = 0.0
        self.held = 0  # reservations not yet released: items in flight

    @property
    def limited(self) -> bool:
        return self.max_tokens is not None or self.max_cost is not None

    def admit(self, model: str, prompt: int, completion: int) -> bool:
        """Reserve an item's estimate, or say it would pass the budget."""
        tokens = prompt + completion
        price = cost(model, prompt, completion, self._prices) or 0.0
        if self.max_tokens is not None and (
            self.tokens_spent + self.reserved_tokens + tokens > self.max_tokens
        ):
            return False
        if (
            self.max_cost is not None
            and self.cost_spent + self.reserved_cost + price > self.max_cost
        ):
            return False
        self.reserved_tokens += tokens
        self.reserved_cost += price
        self.held += 1
        return True

    def release(self, model: str, prompt: int, completion: int) -> None:
        self.reserved_tokens -= prompt + completion
        self.reserved_cost -= cost(model, prompt, completion, self._prices) or 0.0
        self.held -= 1

    def priced(self, model: str) -> bool:
        return model in self._prices

    def spend(self, model: str, prompt: int, completion: int) -> None:
        self.tokens_spent += prompt + completion
        self.cost_spent += cost(model, prompt, completion, self._prices) or 0.0
