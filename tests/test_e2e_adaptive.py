"""Issue 9 §7 through the real CLI and the real mock server: random 429s do not collapse the
rate (whatever their body says), a limited server without ``--rps`` is met with a paced
rate instead of a retry storm, the new limiters of the mock are found, and the progress
shows completions and attempts a second apart. Figures from the server's request log;
the exact targets are asserted on a virtual clock (test_adaptive_loop.py) and measured by
benchmarks/suite.py's P6 and P7."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import MockProc, read_jsonl, run_cli, start_mock, stop_mock, write_jsonl

pytestmark = pytest.mark.e2e

MODEL = "mistral-small-latest"
CHAT = "/v1/chat/completions"


def rows(n: int) -> list[dict[str, Any]]:
    text = "summarise the following short paragraph about rate limits and retries"
    return [
        {"custom_id": f"r{i:04d}", "body": chat(f"{i}: {text}")} for i in range(n)
    ]  # fmt: skip


def chat(content: str) -> dict[str, Any]:
    message = {"role": "user", "content": content}
    return {"model": MODEL, "max_tokens": 16, "messages": [message]}


def run_against(
    tmp_path: Path, n: int, server: list[str], flags: list[str]
) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """Run ``n`` items against a fresh mock server started with ``server``; the server's
    chat requests in arrival order, the run's summary and its stderr."""
    log = tmp_path / "requests.jsonl"
    mock: MockProc = start_mock("--log", str(log), *server)
    inp = write_jsonl(tmp_path / "in.jsonl", rows(n))
    out, dead, summary = tmp_path / "out.jsonl", tmp_path / "dead.jsonl", tmp_path / "s.json"
    try:
        res = run_cli(
            "run", inp, "-o", out, "--dead-letter", dead, "--server-url", mock.url,
            "--summary-json", summary, "--timeout", "10", *flags,
        )  # fmt: skip
    finally:
        stop_mock(mock)  # flushes the request log
    assert res.code == 0, res.stderr
    assert sorted(r["custom_id"] for r in read_jsonl(out)) == [f"r{i:04d}" for i in range(n)]
    assert read_jsonl(dead) == []
    chats = [r for r in read_jsonl(log) if r["path"] == CHAT]
    return chats, orjson.loads(summary.read_bytes()), res.stderr


def sent_while_unsent(chats: list[dict[str, Any]]) -> float:
    """Requests a second at the server until the last item's first attempt came."""
    seen: set[str] = set()
    last = 0
    for k, r in enumerate(chats):
        if r["custom"] not in seen:
            seen.add(r["custom"])
            last = k
    return last / (chats[last]["t"] - chats[0]["t"])


@pytest.mark.parametrize("fault", ["429", "capacity"])
def test_random_429s_do_not_collapse_the_rate(tmp_path: Path, fault: str) -> None:
    """A fifth of the requests answered 429 at random, with a "rate limited" body or a
    "capacity exceeded" one. Before: --rps 100 fell to 4-9 requests a second and 1,000
    items took 50 s and more."""
    n = 600
    chats, summary, _ = run_against(
        tmp_path, n, ["--error-rate", f"{fault}=0.2"], ["--rps", "100", "--quiet"]
    )
    assert sum(r["status"] == 429 for r in chats) > 0.1 * n  # the 429s were there
    assert sent_while_unsent(chats) >= 0.85 * 100  # the benchmark's figure is 0.9
    assert summary["retry_causes"] == {"429": len(chats) - n}


def test_without_rps_a_limited_server_gets_a_paced_rate(tmp_path: Path) -> None:
    """No --rps against a server that allows 40 a second: once the 429s say "rate
    limited", the rate is paced from what the server accepted. Before: half of all
    requests were 429s. The progress shows finished items and requests a second apart."""
    n = 320
    chats, summary, stderr = run_against(
        tmp_path, n, ["--limit-rps", "40", "--limit-algo", "fixed"], []
    )
    refused = sum(r["status"] == 429 for r in chats)
    assert refused < 0.3 * n  # before: about one 429 for every item
    assert summary["done_per_s"] > 0 and summary["requests_per_s"] >= summary["done_per_s"]
    progress = [line for line in stderr.splitlines() if "Z progress: " in line]  # timestamped
    assert progress and all("done/s" in p and "sent/s" in p for p in progress)


@pytest.mark.parametrize("algo", ["sliding", "bucket"])
def test_a_lower_limit_of_each_kind_is_found(tmp_path: Path, algo: str) -> None:
    """--rps 100 against a server allowing 40 a second, counted the mock's other ways."""
    n = 320
    chats, _, _ = run_against(
        tmp_path, n, ["--limit-rps", "40", "--limit-algo", algo], ["--rps", "100", "--quiet"]
    )
    # Found within the first second or two; or, when a loaded machine answers late (the
    # gentle first cut recorded in test_adaptive_loop.py), about 2 s later. Held from 4 s
    # on either way (the run lasts ~7.5 s).
    assert sum(r["status"] == 429 for r in chats) < 0.6 * n
    late = [r for r in chats if r["t"] - chats[0]["t"] >= 4.0]
    assert len(late) > 100 and sum(r["status"] == 429 for r in late) < 0.05 * len(late)
