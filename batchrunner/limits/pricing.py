"""What a run costs: a built-in price table (overridable from the job file) and a meter.

The built-in figures are APPROXIMATE list prices in USD per million tokens for the
ordinary (non-batch) API, as published by several public price trackers in mid-2026;
Mistral's own pricing page is the authority. Prices change and a ``-latest`` alias moves
to a new model generation (with a new price) without notice, so a job file can override
any of them or add a model::

    [prices."mistral-small-latest"]
    input = 0.1
    output = 0.3

A model that is in neither table has no price: :func:`cost` says ``None`` rather than
guess, and :class:`CostMeter` names it in :meth:`CostMeter.unpriced`.

Batch API jobs (``--via batch``) cost a share of the list price, :data:`BATCH_SHARE` (half)
unless a model's ``batch`` key says otherwise; :func:`batch_prices` is the table they use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = [
    "BATCH_SHARE",
    "DEFAULT_PRICES",
    "CostMeter",
    "Price",
    "batch_prices",
    "cost",
    "price_table",
]

_PER: Final = 1_000_000

#: What a Batch API job costs as a share of the list price: Mistral's batch discount (50 %).
BATCH_SHARE: Final = 0.5


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million input (prompt) and output (completion) tokens, and the share of
    that a Batch API job costs."""

    input_per_m: float
    output_per_m: float
    batch_share: float = BATCH_SHARE


# Approximate list prices, USD / 1M tokens, as of 2026-06 (see the module docstring).
# What each alias pointed to then is noted, since that is what the price belongs to.
DEFAULT_PRICES: Final[Mapping[str, Price]] = MappingProxyType(
    {
        "mistral-small-latest": Price(0.10, 0.30),  # Small 3.2 / 4
        "mistral-medium-latest": Price(1.50, 7.50),  # Medium 3.5; Medium 3/3.1 were 0.40/2.00
        "mistral-large-latest": Price(0.50, 1.50),  # Large 3 (2512); Large 2 was 2.00/6.00
        "ministral-8b-latest": Price(0.15, 0.15),  # Ministral 3 8B; 8B 2410 was 0.10/0.10
        "ministral-3b-latest": Price(0.10, 0.10),  # Ministral 3 3B; 3B 2410 was 0.04/0.04
        "open-mistral-nemo": Price(0.15, 0.15),
        "codestral-latest": Price(0.30, 0.90),
        "mistral-embed": Price(0.10, 0.0),  # embeddings produce no output tokens
    }
)

_KEYS: Final = ("input", "output")
_OPTIONAL: Final = ("batch",)


def _rate(model: str, key: str, value: object) -> float:
    """One override value: a finite number >= 0 (TOML gives int or float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f'prices."{model}".{key} must be a number, got {value!r}')
    rate = float(value)
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f'prices."{model}".{key} must be a finite number >= 0, got {value!r}')
    return rate


def price_table(overrides: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, Price]:
    """The built-in prices with ``overrides`` applied: ``{model: {"input": x, "output": y}}``.

    An override of a built-in model may give only one of the two rates; a model that is
    not built in needs both. Unknown keys, non-numbers and negative rates are a
    ``ValueError`` with a one-line message naming the job-file table.
    """
    table = dict(DEFAULT_PRICES)
    for model, rates in (overrides or {}).items():
        if not isinstance(model, str) or not model:
            raise ValueError(f"prices: model names must be non-empty strings, got {model!r}")
        if not isinstance(rates, Mapping):
            raise ValueError(f'prices."{model}" must be a table of input and output')
        unknown = sorted(str(k) for k in rates if k not in _KEYS + _OPTIONAL)
        if unknown:
            raise ValueError(
                f'prices."{model}": unknown key {unknown[0]!r} (expected input, output, batch)'
            )
        base = table.get(model)
        if base is None:
            if not all(k in rates for k in _KEYS):
                raise ValueError(f'prices."{model}" is not a built-in model: give input and output')
            base = Price(0.0, 0.0)  # both rates are given; the batch share may default
        table[model] = Price(
            _rate(model, "input", rates["input"]) if "input" in rates else base.input_per_m,
            _rate(model, "output", rates["output"]) if "output" in rates else base.output_per_m,
            _rate(model, "batch", rates["batch"]) if "batch" in rates else base.batch_share,
        )
    return table


def batch_prices(table: Mapping[str, Price]) -> dict[str, Price]:
    """``table`` at Batch API prices: each model's list price times its batch share."""
    return {
        model: Price(p.input_per_m * p.batch_share, p.output_per_m * p.batch_share, 1.0)
        for model, p in table.items()
    }


def cost(
    model: str, prompt_tokens: int, completion_tokens: int, table: Mapping[str, Price]
) -> float | None:
    """USD for one request's usage, or ``None`` when ``model`` has no price."""
    price = table.get(model)
    if price is None:
        return None
    return (prompt_tokens * price.input_per_m + completion_tokens * price.output_per_m) / _PER


class CostMeter:
    """Accumulates real ``usage`` per model; reports what was spent and a projection.

    :meth:`spent` sums the models that have a price; a model without one adds nothing
    there and is listed by :meth:`unpriced`, so a report can say the sum is partial.
    """

    __slots__ = ("_table", "_usage")

    def __init__(self, table: Mapping[str, Price]) -> None:
        self._table = table
        #: model -> [prompt tokens, completion tokens]
        self._usage: dict[str, list[int]] = {}

    def add(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Count one answered request's ``usage``."""
        if prompt_tokens < 0 or completion_tokens < 0:
            raise ValueError(
                f"token counts must be >= 0, got {prompt_tokens} and {completion_tokens}"
            )
        counts = self._usage.get(model)
        if counts is None:
            counts = self._usage[model] = [0, 0]
        counts[0] += prompt_tokens
        counts[1] += completion_tokens

    def spent(self) -> float:
        """USD so far, over the models that have a price."""
        total = 0.0
        for model, (prompt, completion) in self._usage.items():
            total += cost(model, prompt, completion, self._table) or 0.0
        return total

    def unpriced(self) -> tuple[str, ...]:
        """Models that were used but have no price, sorted."""
        return tuple(sorted(m for m in self._usage if m not in self._table))

    def projected(self, done: int, total: int) -> float | None:
        """What ``total`` requests will cost at the rate of the ``done`` ones so far.

        ``spent / done * total``; ``None`` before any request is done. ``done`` must
        count the same requests whose usage was added (not those of an earlier run).
        """
        if done < 0 or total < 0:
            raise ValueError(f"done and total must be >= 0, got {done} and {total}")
        if done == 0:
            return None
        return self.spent() / done * total
