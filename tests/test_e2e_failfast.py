"""Failing fast and re-sending dead items, through the real CLI against the real mock server:
a refused key, an unknown model, a spent quota, up-front checks, --retry-dead."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import MockProc, cli_env, read_jsonl, run_cli, write_jsonl

pytestmark = pytest.mark.e2e

MODEL = "mistral-small-latest"
FAST = ("--backoff-base", "0.01", "--backoff-max", "0.03", "--timeout", "5", "--quiet")


def prompts(n: int, text: str = "") -> list[dict[str, str]]:
    return [{"custom_id": f"p{i}", "prompt": f"prompt {i} {text}"} for i in range(n)]


def args(inp: Path, mock: MockProc, *extra: str) -> list[str | Path]:
    out, dead = inp.with_suffix(".out.jsonl"), inp.with_suffix(".dead.jsonl")
    return ["run", inp, "-o", out, "--dead-letter", dead, "--server-url", mock.url,
            "--model", MODEL, *FAST, *extra]  # fmt: skip


def msg(i: int) -> dict[str, str]:
    return {"role": "user", "content": f"q{i}"}


def chat_requests(mock: MockProc) -> int:
    return int(mock.stats()["by_path"].get("/v1/chat/completions", 0))


def ids(path: Path) -> list[str]:
    return [r["custom_id"] for r in read_jsonl(path)]


@pytest.mark.parametrize("client", ["http", "sdk"])
def test_wrong_key_stops_early_and_the_right_key_completes(
    tmp_path: Path, mock_server: Callable[..., MockProc], client: str
) -> None:
    mock = mock_server("--require-key", "right-key")
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(300))
    run = args(inp, mock, "--client", client, "--no-preflight", "--concurrency", "4")
    wrong = run_cli(*run, env=cli_env(MISTRAL_API_KEY="wrong-key"))
    assert wrong.code == 3
    assert "MISTRAL_API_KEY" in wrong.stderr and "Traceback" not in wrong.stderr
    assert "wrong-key" not in wrong.stderr + wrong.stdout
    assert chat_requests(mock) <= 3 + 4  # the first three, and what was in flight
    assert ids(inp.with_suffix(".dead.jsonl")) == []  # left pending, not dead-lettered
    right = run_cli(*run, env=cli_env(MISTRAL_API_KEY="right-key"))
    assert right.code == 0, right.stderr
    assert sorted(ids(inp.with_suffix(".out.jsonl"))) == sorted(f"p{i}" for i in range(300))


def test_preflight_refuses_wrong_key_and_unknown_model(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server("--require-key", "right-key")
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(5))
    wrong = run_cli(*args(inp, mock), env=cli_env(MISTRAL_API_KEY="wrong-key"))
    assert wrong.code == 2 and "MISTRAL_API_KEY" in wrong.stderr
    env = cli_env(MISTRAL_API_KEY="right-key")
    unknown = run_cli(*args(inp, mock, "--model", "mistral-tiny-nonexistent"), env=env)
    assert unknown.code == 2
    assert "mistral-tiny-nonexistent" in unknown.stderr and len(unknown.stderr.splitlines()) == 1
    assert chat_requests(mock) == 0


def test_unknown_model_in_bodies_trips_the_breaker(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    rows: list[dict[str, Any]] = [
        {"custom_id": f"b{i}", "body": {"model": "no-such-model", "messages": [msg(i)]}}
        for i in range(50)
    ]
    rows[0]["body"]["model"] = MODEL  # preflight sees a good model on the first line
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    res = run_cli(*args(inp, mock, "--concurrency", "1", "--breaker", "5"))
    assert res.code == 3
    assert "model" in res.stderr and "resume with" in res.stderr
    assert "check --model" in res.stderr  # the library names the setting, the CLI the flag
    assert ids(inp.with_suffix(".out.jsonl")) == ["b0"]
    assert ids(inp.with_suffix(".dead.jsonl")) == []
    assert chat_requests(mock) == 1 + 5


def test_isolated_permanent_failures_are_dead_lettered_not_tripping(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    rows = prompts(40)
    for i in (5, 17, 30):
        rows[i]["prompt"] += " [[mock:401]]"
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    res = run_cli(*args(inp, mock, "--concurrency", "2"))
    assert res.code == 1, res.stderr
    dead = read_jsonl(inp.with_suffix(".dead.jsonl"))
    assert sorted(d["custom_id"] for d in dead) == ["p17", "p30", "p5"]
    assert {d["error"]["status_code"] for d in dead} == {401}
    assert len(ids(inp.with_suffix(".out.jsonl"))) == 37


def test_quota_429_pauses_and_resumes(tmp_path: Path, mock_server: Callable[..., MockProc]) -> None:
    mock = mock_server()
    rows = prompts(30)
    rows[10]["prompt"] += " [[mock:quota]]"
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    run = args(inp, mock, "--concurrency", "1")
    paused = run_cli(*run)
    assert paused.code == 4
    assert "quota" in paused.stderr and "resume with" in paused.stderr
    assert "p10" not in ids(inp.with_suffix(".out.jsonl")) + ids(inp.with_suffix(".dead.jsonl"))
    assert chat_requests(mock) == 11  # no retries burnt on it, nothing sent after it
    resumed = run_cli(*run)  # the quota marker is spent: the account "renewed"
    assert resumed.code == 0, resumed.stderr
    assert sorted(ids(inp.with_suffix(".out.jsonl"))) == sorted(f"p{i}" for i in range(30))


def test_all_lines_unusable_is_refused_before_sending(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b'not json\n[1, 2]\n{"custom_id": "x"}\n')
    res = run_cli(*args(inp, mock))
    assert res.code == 2
    assert "no usable request" in res.stderr and "Traceback" not in res.stderr
    assert mock.stats()["total"] == 0
    assert not inp.with_suffix(".dead.jsonl").exists()


def test_retry_dead_moves_fixed_items_to_results(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    rows = prompts(20)
    for i in (3, 9):
        rows[i]["prompt"] += " [[mock:503,503,503]]"  # dead after 2 attempts, fine on the 4th
    rows[12]["prompt"] += " [[mock:400]]"
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    out, dead = inp.with_suffix(".out.jsonl"), inp.with_suffix(".dead.jsonl")
    run = args(inp, mock, "--max-attempts", "2")
    assert run_cli(*run).code == 1
    assert sorted(ids(dead)) == ["p12", "p3", "p9"]
    # p3 and p9 ran out of attempts, no fault of theirs: any re-run sends them again (both
    # attempts again: the 3rd is a 503, the 4th succeeds), whatever --status selects; p12
    # (400) is sent again only when selected: not by --status 500, nor by --status 503.
    only_500s = run_cli(*run, "--retry-dead", "--status", "500")
    assert only_500s.code == 1 and chat_requests(mock) == 17 + 1 + 2 * 2 + 2 * 2
    retried = run_cli(*run, "--retry-dead", "--status", "503")
    assert retried.code == 1 and chat_requests(mock) == 17 + 1 + 2 * 2 + 2 * 2
    assert sorted(ids(out)) == sorted(f"p{i}" for i in range(20) if i != 12)
    status = orjson.loads(run_cli("status", out, "--json").stdout)
    assert (status["done"], status["dead_lettered"], status["pending"]) == (19, 1, 0)
    assert status["dead_by_status"] == {"400": 1}


def test_retry_dead_keeps_exactly_once_after_a_kill(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server("--latency-ms", "30")
    rows = [{"custom_id": f"p{i}", "prompt": f"prompt {i} [[mock:500]]"} for i in range(120)]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    out, dead = inp.with_suffix(".out.jsonl"), inp.with_suffix(".dead.jsonl")
    run = args(inp, mock, "--max-attempts", "1", "--concurrency", "8")
    assert run_cli(*run).code == 1
    assert len(ids(dead)) == 120
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchrunner", *map(str, [*run, "--retry-dead"])],
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while len(ids(out)) < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    half = set(ids(out))
    assert 30 <= len(half) < 120
    status = orjson.loads(run_cli("status", out, "--json").stdout)
    assert status["done"] + status["dead_lettered"] == 120  # every id in exactly one place
    assert status["done"] == len(half)
    finish = run_cli(*run, "--retry-dead")
    assert finish.code == 0, finish.stderr
    assert sorted(ids(out)) == sorted(f"p{i}" for i in range(120))
    final = orjson.loads(run_cli("status", out, "--json").stdout)
    assert (final["done"], final["dead_lettered"]) == (120, 0)


def test_a_bad_line_fixed_in_the_input_is_no_longer_dead(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b'{"custom_id": "a", "prompt": "fine"}\n{"custom_id": "b", "prompt": oops}\n')
    out, dead = inp.with_suffix(".out.jsonl"), inp.with_suffix(".dead.jsonl")
    assert run_cli(*args(inp, mock)).code == 1
    summary = orjson.loads(run_cli("dlq", "summary", dead, "--json").stdout)
    assert summary["total"] == 1
    inp.write_bytes(inp.read_bytes().replace(b"oops", b'"fixed"'))
    fixed = run_cli(*args(inp, mock, "--allow-changed-input"))
    assert fixed.code == 0, fixed.stderr
    assert sorted(ids(out)) == ["a", "b"]
    summary = orjson.loads(run_cli("dlq", "summary", dead, "--json").stdout)
    assert summary["total"] == 0
    status = orjson.loads(run_cli("status", out, "--json").stdout)
    assert (status["done"], status["dead_lettered"]) == (2, 0)


def test_quota_while_retries_wait_for_slots_pauses_cleanly(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    """The halt cancels waiters for a slot in the same step as answers release theirs."""
    mock = mock_server("--latency-ms", "50")
    rows = [
        {"custom_id": "r1", "prompt": "[[mock:500]] r1"},
        {"custom_id": "r2", "prompt": "[[mock:500]] r2"},
        {"custom_id": "q", "prompt": "[[mock:quota]] q"},
        *prompts(20),
    ]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    res = run_cli(*args(inp, mock, "--concurrency", "2", "--backoff-base", "0.001"))
    assert res.code == 4, res.stderr
    assert "Traceback" not in res.stderr and "quota" in res.stderr
    assert "q" not in ids(inp.with_suffix(".out.jsonl")) + ids(inp.with_suffix(".dead.jsonl"))
