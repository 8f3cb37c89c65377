"""End to end: a dead-letter file edited by hand never stops a tool that reads it. The
entries of a line number no input line has (0, negative) are read as the code before the
block-at-a-time scan (f25e8cb) read them: kept, counted, matching no line."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from conftest import run_cli

pytestmark = pytest.mark.e2e

MODEL = "mistral-small-latest"


@pytest.mark.parametrize("line", [-3, 0])
def test_an_input_entry_of_a_line_no_input_has_stops_no_tool(tmp_path: Path, line: int) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b'{"custom_id":"a","prompt":"hi"}\n')
    run = ["run", inp, "--mock", "--model", MODEL, "--json"]
    assert run_cli(*run).code == 0
    dead = tmp_path / "in.dead.jsonl"
    entry = {
        "custom_id": None,
        "line": line,
        "request": "not json",
        "error": {"status_code": None, "type": "invalid_json", "message": "hand-made"},
        "attempts": 0,
        "ts": "2026-01-01T00:00:00Z",
        "batchrunner": {"kind": "input"},
    }
    dead.write_bytes(orjson.dumps(entry) + b"\n")
    results = tmp_path / "in.results.jsonl"

    again = run_cli(*run)
    assert "Traceback" not in again.stderr, again.stderr
    assert again.code == 0, again.stderr
    assert orjson.loads(again.stdout)["results_total"] == 1

    status = run_cli("status", results, "--json")
    assert status.code == 0, status.stderr
    assert orjson.loads(status.stdout)["done"] == 1

    summary = run_cli("dlq", "summary", dead, "--json")
    assert summary.code == 0, summary.stderr
    assert orjson.loads(summary.stdout)["total"] == 1  # the entry: kept, in force

    export = run_cli("export", results)
    assert export.code == 0, export.stderr
    (row,) = [orjson.loads(r) for r in export.stdout.splitlines()]
    assert (row["custom_id"], row["status"]) == ("a", "ok")
