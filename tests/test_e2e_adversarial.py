"""End to end, as a hostile user would drive the CLI: flags that point one of the run's
side files at its own files must be refused before anything is sent, never after; a run
stopped early still reports what the files hold."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from conftest import (
    MockProc,
    cli_env,
    read_jsonl,
    run_cli,
    start_mock,
    stop_mock,
    write_jsonl,
)

from batchrunner.input.shard import shard_of

pytestmark = pytest.mark.e2e

MODEL = "mistral-small-latest"


@pytest.fixture(scope="module")
def mock() -> Iterator[MockProc]:
    """One server for the module: each test counts only the requests it sends itself (a
    difference of the server's totals), and none scripts a fault or sets a limit on it (a
    test that needs a server set otherwise starts its own)."""
    started = start_mock()
    yield started
    stop_mock(started)


@pytest.mark.parametrize("target", ["input", "results", "dead", "manifest"])
def test_summary_json_onto_the_runs_own_files_is_refused_before_sending(
    tmp_path: Path, mock: MockProc, target: str
) -> None:
    inp = write_jsonl(
        tmp_path / "in.jsonl", [{"custom_id": f"a{i}", "prompt": f"p{i}"} for i in range(5)]
    )
    run = ["run", inp, "--server-url", mock.url, "--model", MODEL, "-q"]
    assert run_cli(*run).code == 0
    files = {
        "input": inp,
        "results": tmp_path / "in.results.jsonl",
        "dead": tmp_path / "in.dead.jsonl",
        "manifest": tmp_path / "in.results.jsonl.manifest.json",
    }
    files["dead"].touch()
    before = {name: path.read_bytes() for name, path in files.items()}
    sent = mock.stats()["total"]
    again = run_cli(*run, "--summary-json", files[target])
    assert again.code == 2, again.stderr
    assert again.stderr.count("\n") == 1 and "--summary-json" in again.stderr
    assert "Traceback" not in again.stderr
    assert {name: path.read_bytes() for name, path in files.items()} == before
    assert mock.stats()["total"] == sent
    assert len(read_jsonl(files["results"])) == 5


def test_summary_json_in_a_missing_folder_is_refused_before_sending(
    tmp_path: Path, mock: MockProc
) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", [{"custom_id": "a", "prompt": "p"}])
    sent = mock.stats()["total"]
    result = run_cli(
        "run",
        inp,
        "--server-url",
        mock.url,
        "--model",
        MODEL,
        "-q",
        "--summary-json",
        tmp_path / "nowhere" / "s.json",
    )
    assert result.code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "create the folder first" in result.stderr
    assert mock.stats()["total"] == sent
    assert not (tmp_path / "in.results.jsonl").exists()


def test_a_rerun_stopped_by_the_budget_reports_what_the_files_hold(
    tmp_path: Path, mock: MockProc
) -> None:
    rows = [{"custom_id": f"c{i}", "prompt": "word " * 50, "max_tokens": 200} for i in range(300)]
    inp = write_jsonl(tmp_path / "b.jsonl", rows)
    summary = tmp_path / "s.json"
    run = ["run", inp, "--server-url", mock.url, "--model", "mistral-large-latest", "-q"]
    run += ["--max-cost", "0.002", "--summary-json", summary]
    assert run_cli(*run).code == 5
    results = len(read_jsonl(tmp_path / "b.results.jsonl"))
    assert results > 0
    again = run_cli(*run)
    assert again.code == 5
    data = orjson.loads(summary.read_bytes())
    assert data["requests_sent"] == 0
    assert (data["results_total"], data["pending"]) == (results, 300 - results)


def test_a_rerun_stopped_by_the_breaker_counts_the_outcomes_it_did_not_reach(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server("--require-key", "right-key")
    old = [{"custom_id": f"o{i}", "prompt": f"old {i}"} for i in range(90)]
    for row in old[30:60]:
        row["prompt"] += " [[mock:400]]"  # dead for good
    for row in old[60:]:
        row["prompt"] += " [[mock:500]]"  # retries exhausted: sent again by the next run
    inp = write_jsonl(tmp_path / "in.jsonl", old)
    run = ["run", inp, "--server-url", mock.url, "--model", MODEL, "-q", "--no-preflight"]
    run += ["--max-attempts", "1", "--summary-json", tmp_path / "s.json"]
    assert run_cli(*run, env=cli_env(MISTRAL_API_KEY="right-key")).code == 1
    # New lines before the old ones, more than the reader reads ahead of the workers: a
    # wrong key trips the breaker long before the reader reaches the old lines.
    new = [{"custom_id": f"n{i}", "prompt": f"new {i}"} for i in range(1500)]
    write_jsonl(inp, new + old)
    stopped = run_cli(*run, "--allow-changed-input", env=cli_env(MISTRAL_API_KEY="wrong"))
    assert stopped.code == 3, stopped.stderr
    data = orjson.loads((tmp_path / "s.json").read_bytes())
    assert data["stop_reason"] == "fatal" and data["ok"] == 0  # the breaker tripped
    assert (data["results_total"], data["dead_lettered_total"]) == (30, 30)
    assert data["pending"] == 1500 + 30
    assert data["decided_before_unread"] == 60


def test_a_shard_rerun_stopped_by_the_budget_reports_what_its_files_hold(
    tmp_path: Path, mock: MockProc
) -> None:
    # Ids alternating between the two shards: the unread lines' share is then half of them.
    by_shard: list[list[str]] = [[], []]
    for cid in (f"c{i}" for i in range(1000)):
        by_shard[shard_of(cid, 0, 2)].append(cid)
    pairs = zip(by_shard[0][:150], by_shard[1][:150], strict=True)
    order = [cid for pair in pairs for cid in pair]
    rows = [{"custom_id": cid, "prompt": "word " * 50, "max_tokens": 200} for cid in order]
    inp = write_jsonl(tmp_path / "b.jsonl", rows)
    summary = tmp_path / "s.json"
    run = ["run", inp, "--server-url", mock.url, "--model", "mistral-large-latest", "-q"]
    run += ["--max-cost", "0.002", "--summary-json", summary, "--shard", "1/2"]
    assert run_cli(*run).code == 5
    results = read_jsonl(tmp_path / "b.shard-1-of-2.results.jsonl")
    assert len(results) > 0 and {r["custom_id"] for r in results} <= set(by_shard[1])
    assert run_cli(*run).code == 5
    data = orjson.loads(summary.read_bytes())
    assert data["requests_sent"] == 0 and data["results_total"] == len(results)
    # Until the whole input is read, a shard's unread lines are estimated: half, rounded.
    assert abs(data["results_total"] + data["pending"] - 150) <= 1
