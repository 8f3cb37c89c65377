"""End to end, as a hostile user would drive the CLI: flags that point one of the run's
side files at its own files must be refused before anything is sent, never after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from conftest import MockProc, read_jsonl, run_cli, start_mock, stop_mock, write_jsonl

pytestmark = pytest.mark.e2e

MODEL = "mistral-small-latest"


@pytest.fixture(scope="module")
def mock() -> Iterator[MockProc]:
    """One server for the module: each test counts only the requests it sends itself (a
    difference of the server's totals), and none scripts a fault or sets a limit."""
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


@pytest.mark.xfail(
    strict=True,
    reason="a run that stops early (budget, quota, breaker, Ctrl-C) counts earlier runs' "
    "outcomes only as far as its reader got: the summary under-counts results_total and "
    "over-counts pending",
)
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
