"""The budget (``--max-tokens-total``, ``--max-cost``) in process: it waits for the items in
flight before it calls itself spent, and it is the run's over all its invocations (what the
results file already holds counts). Through the CLI: test_e2e_budget.py."""

from __future__ import annotations

from pathlib import Path

import anyio
import orjson
import pytest
from conftest import write_jsonl
from test_engine_inprocess import MODEL, FakeClient, assert_exactly_once, files, make_config

from batchrunner.engine.accounting import Accounting, earlier_usage
from batchrunner.engine.run import Engine
from batchrunner.input.lines import Item, parse_line
from batchrunner.limits.pricing import CostMeter, price_table
from batchrunner.limits.spending import Spending

PRICES = price_table({MODEL: {"input": 1_000_000, "output": 1_000_000}})  # USD 1 a token


def rows(n: int, max_tokens: int = 100) -> list[dict[str, object]]:
    return [{"custom_id": f"p{i}", "prompt": f"p{i}", "max_tokens": max_tokens} for i in range(n)]


def test_a_budget_held_by_requests_in_flight_waits_for_them(tmp_path: Path) -> None:
    """Each request holds its worst case (~103 tokens: 100 of completion) but uses 15: the
    budget of 300 tokens fits two worst cases at a time, and 20 requests' real use. Before:
    the run stopped at the third request, having spent 30 of 300."""
    cfg = make_config(tmp_path, rows(60), concurrency=8, max_tokens_total=300)
    stats = anyio.run(Engine(cfg, client=FakeClient(), seed=1).run, backend="asyncio")
    used = stats.prompt_tokens + stats.completion_tokens
    assert stats.stop_reason == "budget"
    assert 300 - 110 <= used <= 300  # within one worst case (~105) of the budget
    assert stats.ok >= 13
    results, _ = files(cfg)
    assert_exactly_once(cfg, pending={f"p{i}" for i in range(60)} - set(results))


def test_the_budget_counts_what_earlier_runs_spent(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, rows(60, max_tokens=10), concurrency=4, max_tokens_total=400)
    first = anyio.run(Engine(cfg, client=FakeClient(), seed=1).run, backend="asyncio")
    assert first.stop_reason == "budget" and 0 < first.ok < 60
    spent = first.prompt_tokens + first.completion_tokens
    assert first.budget_tokens == (spent, 400)
    client = FakeClient()
    again = anyio.run(Engine(cfg, client=client, seed=1).run, backend="asyncio")
    assert again.stop_reason == "budget" and client.sent == []  # nothing spent twice
    assert again.budget_tokens == (spent, 400)
    results, _ = files(cfg)
    assert_exactly_once(cfg, pending={f"p{i}" for i in range(60)} - set(results))


def test_earlier_usage_sums_the_results_by_model(tmp_path: Path) -> None:
    def result(i: int, model: str, prompt: int, completion: int) -> dict[str, object]:
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": 0}
        details = {"prompt_tokens_details": {"cached_tokens": 99}}  # not "prompt_tokens"
        body = {"id": f"c{i}", "model": model, "usage": usage | details}
        return {"custom_id": f"p{i}", "response": {"status_code": 200, "body": body}}

    path = write_jsonl(
        tmp_path / "out.jsonl",
        [result(0, "a", 10, 5), result(1, "b", 7, 0), result(2, "a", 1, 2)],
    )
    with path.open("ab") as f:
        f.write(orjson.dumps({"custom_id": "p3", "response": {"body": {"object": "x"}}}) + b"\n")
    assert earlier_usage(path) == {"a": (11, 7), "b": (7, 0)}
    assert earlier_usage(tmp_path / "missing.jsonl") == {}


def test_an_unpriced_earlier_model_is_priced_as_the_runs_model(tmp_path: Path) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 4}
    line = {"custom_id": "p0", "response": {"body": {"model": "dated-name", "usage": usage}}}
    path = write_jsonl(tmp_path / "out.jsonl", [line])

    async def main() -> tuple[float, int]:
        spending = Spending(None, 100.0, PRICES)
        accounting = Accounting("/v1/chat/completions", None, spending, CostMeter(PRICES))
        await accounting.count_earlier(path, MODEL)
        return spending.cost_spent, spending.tokens_spent

    assert anyio.run(main) == (pytest.approx(7.0), 7)


def test_a_request_that_cannot_fit_even_alone_stops_at_once() -> None:
    async def main() -> object:
        spending = Spending(50, None, PRICES)
        accounting = Accounting("/v1/chat/completions", None, spending, CostMeter(PRICES))
        raw = orjson.dumps({"prompt": "x", "max_tokens": 100})
        item = parse_line(raw, 1, "/v1/chat/completions", MODEL)
        assert isinstance(item, Item)
        with anyio.fail_after(1):
            return await accounting.admit(item)

    decision = anyio.run(main)
    assert getattr(decision, "reason", None) == "budget"
