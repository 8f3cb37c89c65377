"""A run that sends nothing: the input read and checked, its requests counted, their tokens
estimated, the worst-case cost and the time the limits allow. ``batchrunner run --dry-run``
shows it; a script can call :func:`dry_run` itself.

The whole input is counted, whatever an earlier run already did.

May import: ``config``, ``errors``, ``runfiles``, ``vocabulary``, ``input``, ``limits``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from batchrunner.config import RunConfig
from batchrunner.errors import ConfigError
from batchrunner.input.lines import BadLine, Item, read_input
from batchrunner.input.shard import in_shard
from batchrunner.limits.pricing import Price, cost, price_table
from batchrunner.limits.tokens import (
    CompletionEstimator,
    estimate_prompt_tokens,
    load_exact_tokenizer,
)

__all__ = ["DryRun", "dry_run"]


@dataclass(slots=True)
class DryRun:
    """What a run of the config would send. Completion tokens are ``max_tokens`` where a
    body gives it (the worst case) and a typical answer where it does not (counted in
    ``without_max_tokens``: those have no upper bound)."""

    lines: int = 0
    requests: int = 0
    bad: Counter[str] = field(default_factory=Counter)
    #: The first bad line of each type: (line, type, reason).
    examples: list[tuple[int, str, str]] = field(default_factory=list)
    endpoints: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    without_max_tokens: int = 0
    cost: float = 0.0
    unpriced: set[str] = field(default_factory=set)
    #: Seconds the run would take at ``rps`` / ``tpm`` (None: no such cap).
    seconds_at_rps: float | None = None
    seconds_at_tpm: float | None = None

    @property
    def seconds(self) -> float | None:
        """The longer of the two: the limit that decides; None with no cap at all."""
        times = [t for t in (self.seconds_at_rps, self.seconds_at_tpm) if t is not None]
        return max(times) if times else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "requests": self.requests,
            "bad_lines": dict(self.bad),
            "bad_examples": [{"line": n, "type": t, "message": m} for n, t, m in self.examples],
            "endpoints": dict(self.endpoints),
            "models": dict(self.models),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens_max": self.completion_tokens,
            "requests_without_max_tokens": self.without_max_tokens,
            "cost_usd_max": round(self.cost, 6),
            "unpriced_models": sorted(self.unpriced),
            "seconds_at_rps": self.seconds_at_rps,
            "seconds_at_tpm": self.seconds_at_tpm,
            "seconds": self.seconds,
        }


def dry_run(config: RunConfig) -> DryRun:
    """Read ``config``'s input once and say what its run would send; nothing is sent."""
    load_exact_tokenizer()  # the real tokenizer when it is installed: the estimate the run makes
    try:
        prices = price_table(config.prices)
    except ValueError as exc:  # its message names the prices entry at fault
        raise ConfigError(str(exc), setting="prices", found=config.prices) from None
    estimators: dict[str, CompletionEstimator] = {}
    plan = DryRun()
    shard = config.shard_spec
    for entry in read_input(config.input_path, config.endpoint, config.model):
        if not in_shard(entry.custom_id, entry.line, shard):
            continue  # another shard's: its own dry run counts it
        plan.lines += 1
        if isinstance(entry, BadLine):
            plan.bad[entry.type] += 1
            if plan.bad[entry.type] == 1:
                plan.examples.append((entry.line, entry.type, entry.message))
        elif isinstance(entry, Item):
            endpoint = entry.endpoint or config.endpoint
            estimator = estimators.setdefault(endpoint, CompletionEstimator(endpoint))
            _count(plan, entry, endpoint, estimator, prices)
    total = plan.prompt_tokens + plan.completion_tokens
    if config.rps is not None:
        plan.seconds_at_rps = plan.requests / config.rps
    if config.tpm is not None:
        plan.seconds_at_tpm = 60.0 * total / config.tpm
    return plan


def _count(
    plan: DryRun,
    item: Item,
    endpoint: str,
    estimator: CompletionEstimator,
    prices: Mapping[str, Price],
) -> None:
    model = str(item.body.get("model", ""))
    prompt = estimate_prompt_tokens(item.body, endpoint)
    completion = estimator.estimate(item.body)
    plan.requests += 1
    plan.endpoints[endpoint] += 1
    plan.models[model] += 1
    plan.prompt_tokens += prompt
    plan.completion_tokens += completion
    if "max_tokens" not in item.body and endpoint != "/v1/embeddings":
        plan.without_max_tokens += 1
    usd = cost(model, prompt, completion, prices)
    if usd is None:
        plan.unpriced.add(model)
    else:
        plan.cost += usd
