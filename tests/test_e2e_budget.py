"""Issue 9 §9 through the real CLI: a budget is used (the run waits for the answers in
flight before it calls the budget spent), it is the run's over every invocation (a re-run
of the same command spends nothing), and the summary says how much of it is spent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import MockProc, read_jsonl, run_cli, write_jsonl

from batchrunner.limits.pricing import DEFAULT_PRICES

pytestmark = pytest.mark.e2e

MODEL = "mistral-small-latest"
#: ~100 prompt tokens; the mock answers ~100 completion tokens, far below max_tokens 2,000,
#: the worst case each request holds: USD ~0.00004 used, ~0.0006 held.
TEXT = " ".join(["the quick brown fox jumps over the lazy dog"] * 9)


def rows(n: int) -> list[dict[str, Any]]:
    message = {"role": "user", "content": TEXT}
    body = {"model": MODEL, "max_tokens": 2000, "messages": [message]}
    return [{"custom_id": f"r{i:04d}", "body": body | {"user": str(i)}} for i in range(n)]


def used(results: Path, key: str) -> float:
    """Tokens, or USD at the built-in price, that the results' usage adds up to."""
    price = DEFAULT_PRICES[MODEL]
    total = 0.0
    for r in read_jsonl(results):
        usage = r["response"]["body"]["usage"]
        prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
        if key == "spent_tokens":
            total += prompt + completion
        else:
            total += (prompt * price.input_per_m + completion * price.output_per_m) / 1e6
    return total


def chat_requests(mock: MockProc) -> int:
    return int(mock.stats()["by_path"].get("/v1/chat/completions", 0))


@pytest.mark.parametrize(
    ("flag", "budget", "key"),
    [("--max-cost", 0.01, "spent_usd"), ("--max-tokens-total", 40_000, "spent_tokens")],
)
def test_a_budget_is_used_and_is_the_runs_over_every_invocation(
    tmp_path: Path,
    mock_server: Callable[..., MockProc],
    flag: str,
    budget: float,
    key: str,
) -> None:
    """Before: --max-cost 0.01 stopped after spending 1.3 % of it (every request in flight
    held its worst case, and the first one that did not fit stopped the run), and the same
    command again spent the whole budget again."""
    mock = mock_server()
    inp = write_jsonl(tmp_path / "in.jsonl", rows(1000))
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    run = ["run", inp, "-o", out, "--dead-letter", dead, "--server-url", mock.url]
    first = run_cli(*run, flag, str(budget), "--summary-json", tmp_path / "first.json")
    assert first.code == 5, first.stderr
    assert 0.9 * budget <= used(out, key) <= budget  # used, not passed
    s1 = orjson.loads((tmp_path / "first.json").read_bytes())
    spent = s1["budget"][key]
    assert spent == pytest.approx(used(out, key), rel=1e-3)  # the summary says so
    assert f"{spent if key == 'spent_tokens' else round(spent, 4):,}" in first.stdout
    done = len(read_jsonl(out))
    assert 0 < done < 500 and read_jsonl(dead) == []
    sent = chat_requests(mock)
    assert sent == done

    again = run_cli(*run, flag, str(budget), "--summary-json", tmp_path / "again.json")
    assert again.code == 5, again.stderr
    assert chat_requests(mock) == sent  # nothing spent twice
    s2 = orjson.loads((tmp_path / "again.json").read_bytes())
    assert s2["budget"][key] == pytest.approx(spent, rel=1e-3) and s2["requests_sent"] == 0

    more = run_cli(*run, flag, str(2 * budget), "--summary-json", tmp_path / "more.json")
    assert more.code == 5, more.stderr  # a larger budget goes on from what was spent
    s3 = orjson.loads((tmp_path / "more.json").read_bytes())
    assert 1.8 * budget <= s3["budget"][key] <= 2 * budget
    assert len(read_jsonl(out)) == pytest.approx(2 * done, rel=0.1)
