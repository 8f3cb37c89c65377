"""The limits through the real CLI against the real mock server: --ordered, --tpm, the
too-large check, --max-tokens-total and --max-cost (built-in and job-file prices), the adaptive
rate against a lower server limit, and the limit settings' validation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import MockProc, read_jsonl, run_cli, start_mock, stop_mock, write_jsonl

from batchrunner.limits.pricing import DEFAULT_PRICES, Price

pytestmark = pytest.mark.e2e

MODEL = "mistral-small-latest"
FAST = ("--backoff-base", "0.01", "--backoff-max", "0.03", "--timeout", "5", "--quiet")
TEXT = "please summarise the following short paragraph about rate limits and retries"


def row(i: int, extra: str = "", max_tokens: int = 16) -> dict[str, Any]:
    """A chat request of ~40 tokens; ``max_tokens`` makes its completion estimate exact."""
    content = f"prompt {i}: {TEXT}. {extra}".strip()
    body = {
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": content}],
    }
    return {"custom_id": f"r{i:04d}", "body": body}


def rows(start: int, stop: int) -> list[dict[str, Any]]:
    return [row(i) for i in range(start, stop)]


def paths(inp: Path) -> tuple[Path, Path]:
    return inp.with_suffix(".out.jsonl"), inp.with_suffix(".dead.jsonl")


def args(inp: Path, mock: MockProc, *extra: str | Path) -> list[str | Path]:
    out, dead = paths(inp)
    return ["run", inp, "-o", out, "--dead-letter", dead, "--server-url", mock.url, *FAST, *extra]


def ids(path: Path) -> list[str]:
    return [r["custom_id"] for r in read_jsonl(path)]


def input_ids(inp: Path) -> list[str]:
    return [r["custom_id"] for r in read_jsonl(inp)]


def chat_requests(mock: MockProc) -> int:
    return int(mock.stats()["by_path"].get("/v1/chat/completions", 0))


def summary(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


# -- --ordered ---------------------------------------------------------------------------------

#: Scripted faults: each is one extra request, then the item succeeds.
FAULTS = {3: "[[mock:429]]", 10: "[[mock:500]]", 41: "[[mock:500,500]]", 77: "[[mock:429,500]]"}


def test_ordered_results_follow_the_input_despite_jitter_and_retries(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    jitter = ("--latency-ms", "5", "--jitter-ms", "30", "--retry-after-ms", "50")
    data = [row(i, FAULTS.get(i, "")) for i in range(150)]
    inp = write_jsonl(tmp_path / "in.jsonl", data)
    mock = mock_server(*jitter)
    res = run_cli(*args(inp, mock, "--ordered", "--reorder-buffer", "16"))
    assert res.code == 0, res.stderr
    assert ids(paths(inp)[0]) == input_ids(inp)  # exactly the input order, each id once
    assert chat_requests(mock) == 150 + 6  # the retries happened, and nothing else twice
    # The same run without --ordered really does finish out of order (the retried items
    # come late), so the order above is --ordered's doing.
    plain = write_jsonl(tmp_path / "plain.jsonl", data)
    unordered = run_cli(*args(plain, mock_server(*jitter)))
    assert unordered.code == 0, unordered.stderr
    got = ids(paths(plain)[0])
    assert sorted(got) == input_ids(plain) and got != input_ids(plain)


def test_ordered_resume_writes_the_new_lines_after_the_old(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server("--latency-ms", "5", "--jitter-ms", "30")
    inp = write_jsonl(tmp_path / "in.jsonl", rows(0, 40))
    run = args(inp, mock, "--ordered")
    assert run_cli(*run).code == 0
    assert ids(paths(inp)[0]) == input_ids(inp)
    with inp.open("ab") as f:  # the input grows
        f.write(b"".join(orjson.dumps(r) + b"\n" for r in rows(40, 90)))
    again = run_cli(*run)
    assert again.code == 0, again.stderr
    assert ids(paths(inp)[0]) == [f"r{i:04d}" for i in range(90)]
    assert chat_requests(mock) == 90  # the first 40 were not sent again


# -- --tpm ------------------------------------------------------------------------------------


def test_tpm_keeps_within_a_server_limit_of_the_same_value(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    """A run of ~4 s in a fresh 60 s window, the case a start-up burst would spoil."""
    tpm, n = 90_000, 200
    mock = mock_server("--limit-tpm", str(tpm), "--latency-ms", "5")
    inp = write_jsonl(tmp_path / "in.jsonl", rows(0, n))
    res = run_cli(*args(inp, mock, "--tpm", str(tpm)))
    assert res.code == 0, res.stderr
    assert sorted(ids(paths(inp)[0])) == input_ids(inp)
    stats = mock.stats()
    assert stats["rate_limited"] <= 0.02 * n
    # Paced, not burst: the tokens the server counted between its first and last arrival
    # fit a start-up share of tpm / 50 plus tpm / 60 a second of that window (a run without
    # --tpm sends all of it in well under a second). A count in a window of the server's own
    # arrival stamps, not a stopwatch on the test: a loaded machine only delays arrivals and
    # so widens the window. The 4/3 covers a late first stamp. test_limits_unit checks the
    # budget exactly, on a virtual clock; benchmarks/suite.py's P5 measures the rate.
    used = stats["tokens"]["prompt"] + stats["tokens"]["completion"]
    window = stats["last_arrival"] - stats["first_arrival"]
    assert used > tpm / 20  # the run is long enough for the check below to mean something
    assert used <= tpm / 50 + tpm / 60 * window * 4 / 3


def test_request_bigger_than_tpm_is_dead_lettered_without_sending(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    data = rows(0, 20)
    data[7] = row(7, "a long answer please", max_tokens=200_000)  # more than the whole tpm
    inp = write_jsonl(tmp_path / "in.jsonl", data)
    res = run_cli(*args(inp, mock, "--tpm", "100000"))
    assert res.code == 1, res.stderr
    out, dead = paths(inp)
    (entry,) = read_jsonl(dead)
    assert entry["custom_id"] == "r0007"
    assert entry["error"]["type"] == "too_large" and entry["attempts"] == 0
    assert "100,000" in entry["error"]["message"]
    assert sorted(ids(out)) == [r["custom_id"] for r in data if r["custom_id"] != "r0007"]
    assert chat_requests(mock) == 19  # it never reached the server


# -- --max-tokens-total / --max-cost --------------------------------------------------------------


def test_max_tokens_total_stops_before_the_budget_and_resumes(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    n, budget = 60, 800  # ~40 tokens a request: about 20 fit
    inp = write_jsonl(tmp_path / "in.jsonl", rows(0, n))
    out, dead = paths(inp)
    first_summary = tmp_path / "first.json"
    run = args(inp, mock, "--concurrency", "4")
    first = run_cli(*run, "--max-tokens-total", str(budget), "--summary-json", first_summary)
    assert first.code == 5, first.stderr
    assert "budget" in first.stderr and "--max-tokens-total" in first.stderr
    assert "resume with" in first.stderr
    done = ids(out)
    assert 5 <= len(done) < n and ids(dead) == []  # the rest is pending, in neither file
    s1 = summary(first_summary)
    assert s1["stop_reason"] == "budget" and s1["pending"] == n - len(done)
    assert 0 < s1["prompt_tokens"] + s1["completion_tokens"] <= budget
    assert chat_requests(mock) == len(done)
    rest = run_cli(*run, "--max-tokens-total", "1000000")
    assert rest.code == 0, rest.stderr
    assert sorted(ids(out)) == input_ids(inp) and ids(dead) == []
    assert chat_requests(mock) == n  # nothing done was sent again


#: USD 1,000 / 2,000 per million tokens: USD 0.001 a prompt token, 0.002 a completion token.
OVERRIDE = Price(1_000, 2_000)


def cost_of(results: list[dict[str, Any]], price: Price) -> float:
    """USD for the ``usage`` of some result lines at ``price``."""
    total = 0.0
    for r in results:
        usage = r["response"]["body"]["usage"]
        total += usage["prompt_tokens"] * price.input_per_m
        total += usage["completion_tokens"] * price.output_per_m
    return total / 1_000_000


def test_max_cost_stops_before_the_budget_and_resumes(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    """With the built-in price of the model (~USD 7e-6 a request here)."""
    mock = mock_server()
    n, max_cost = 60, 1.3e-4  # about 18 fit
    inp = write_jsonl(tmp_path / "in.jsonl", rows(0, n))
    out, dead = paths(inp)
    run = args(inp, mock, "--concurrency", "4")
    first = run_cli(*run, "--max-cost", str(max_cost), "--summary-json", tmp_path / "first.json")
    assert first.code == 5, first.stderr
    assert "budget" in first.stderr and "--max-cost" in first.stderr
    done = read_jsonl(out)
    assert 5 <= len(done) < n and ids(dead) == []  # the rest is pending, in neither file
    s1 = summary(tmp_path / "first.json")
    assert s1["stop_reason"] == "budget" and s1["pending"] == n - len(done)
    assert 0 < s1["cost_usd"] <= max_cost
    assert s1["cost_usd"] == pytest.approx(cost_of(done, DEFAULT_PRICES[MODEL]), abs=1e-6)
    rest = run_cli(*run, "--max-cost", "1", "--summary-json", tmp_path / "rest.json")
    assert rest.code == 0, rest.stderr
    assert sorted(ids(out)) == input_ids(inp) and ids(dead) == []
    assert chat_requests(mock) == n


def test_max_cost_with_job_file_prices_stops_and_resumes(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    n, max_cost = 60, 1.0  # ~USD 0.055 a request at the override: about 18 fit
    write_jsonl(tmp_path / "in.jsonl", rows(0, n))
    job = tmp_path / "job.toml"
    job.write_text(
        'input = "in.jsonl"\noutput = "out.jsonl"\ndead_letter = "dead.jsonl"\n'
        f'server_url = "{mock.url}"\nmax_cost = {max_cost}\nconcurrency = 4\nquiet = true\n'
        f'[prices."{MODEL}"]\ninput = {OVERRIDE.input_per_m}\n'
        f"output = {OVERRIDE.output_per_m}\n",
        encoding="utf-8",
    )
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    first = run_cli("run", job, "--summary-json", tmp_path / "first.json")
    assert first.code == 5, first.stderr
    assert "budget" in first.stderr and "--max-cost" in first.stderr
    done = read_jsonl(out)
    assert 5 <= len(done) < n and ids(dead) == []
    s1 = summary(tmp_path / "first.json")
    assert 0 < s1["cost_usd"] <= max_cost
    assert s1["cost_usd"] == pytest.approx(cost_of(done, OVERRIDE), abs=2e-6)  # rounded
    rest = run_cli("run", job, "--max-cost", "100", "--summary-json", tmp_path / "rest.json")
    assert rest.code == 0, rest.stderr
    assert sorted(ids(out)) == [f"r{i:04d}" for i in range(n)]
    first_ids = {r["custom_id"] for r in done}
    new = [r for r in read_jsonl(out) if r["custom_id"] not in first_ids]
    assert summary(tmp_path / "rest.json")["cost_usd"] == pytest.approx(
        cost_of(new, OVERRIDE), abs=2e-6
    )


# -- adaptive rate ---------------------------------------------------------------------------------


def test_adaptive_rate_settles_below_a_lower_server_limit(tmp_path: Path) -> None:
    """--rps 100 against a server that allows 30/s, no --concurrency: every id completes.

    The rate is cut by a factor at most once a second, so it takes several seconds to come
    down from 100 to 30, and the 429s of a run this short are mostly from that start (over
    a third of all requests; the benchmark measures the settled share). So: fewer 429s
    than items (a fixed 100/s would draw more than two per item), and few in the last
    quarter of the requests, once it has settled. Counts of the server's answers; how fast
    it settles is asserted exactly in test_adaptive_loop (virtual clock) and measured by
    benchmarks/suite.py's P6."""
    n = 300
    log = tmp_path / "mock.log"
    mock = start_mock("--limit-rps", "30", "--log", str(log))
    try:
        inp = write_jsonl(tmp_path / "in.jsonl", rows(0, n))
        res = run_cli(*args(inp, mock, "--rps", "100"))
        stats = mock.stats()
    finally:
        stop_mock(mock)  # flushes the request log
    assert res.code == 0, res.stderr
    out, dead = paths(inp)
    assert sorted(ids(out)) == input_ids(inp) and ids(dead) == []
    chats = [r["status"] for r in read_jsonl(log) if r["path"] == "/v1/chat/completions"]
    assert len(chats) == stats["by_path"]["/v1/chat/completions"]
    assert chats.count(200) == n
    assert stats["rate_limited"] == chats.count(429) < n
    last_quarter = chats[-len(chats) // 4 :]
    assert last_quarter.count(429) < 0.25 * len(last_quarter)


# -- settings ------------------------------------------------------------------------------------


def test_job_file_accepts_the_limit_keys(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server("--latency-ms", "5", "--jitter-ms", "30")
    inp = write_jsonl(tmp_path / "in.jsonl", rows(0, 30))
    job = tmp_path / "job.toml"
    job.write_text(
        f'input = "in.jsonl"\nserver_url = "{mock.url}"\nquiet = true\n'
        "tpm = 500000\nordered = true\nreorder_buffer = 4\nmax_cost = 50.0\n",
        encoding="utf-8",
    )
    res = run_cli("run", job, "--summary-json", tmp_path / "s.json")
    assert res.code == 0, res.stderr
    assert ids(tmp_path / "in.results.jsonl") == input_ids(inp)  # ordered
    s = summary(tmp_path / "s.json")
    assert s["ok"] == 30 and 0 < s["cost_usd"] <= 50.0  # priced: max_cost was in force


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--tpm", "0", "--tpm"),
        ("--reorder-buffer", "0", "--reorder-buffer"),
        ("--max-cost", "-1", "--max-cost"),
        ("job:tpm", "0", "--tpm"),
        ("job:max_cost", "-1.5", "--max-cost"),
    ],
)
def test_bad_limit_values_are_usage_errors(
    tmp_path: Path, flag: str, value: str, message: str
) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", rows(0, 3))
    out = tmp_path / "out.jsonl"
    unused = "http://127.0.0.1:9"  # refused before anything is sent
    if flag.startswith("job:"):
        job = tmp_path / "job.toml"
        job.write_text(
            f'input = "in.jsonl"\noutput = "out.jsonl"\nserver_url = "{unused}"\n'
            f"{flag.removeprefix('job:')} = {value}\n",
            encoding="utf-8",
        )
        res = run_cli("run", job)
    else:
        res = run_cli("run", inp, "-o", out, "--server-url", unused, flag, value)
    assert res.code == 2
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()
