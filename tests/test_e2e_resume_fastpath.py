"""End to end: the resume scan reads the files a block at a time and most lines without a
JSON parse (issue 13). Whatever a line looks like, the decisions must be the ones a full
parse gives, as the code before that rewrite (f25e8cb) made them: a dead-letter entry whose
keys come in another order still counts, and a results line that is not JSON is not a
result, whether or not it names its own endpoint."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from conftest import run_cli, write_jsonl

pytestmark = pytest.mark.e2e

MODEL = "mistral-small-latest"


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines(keepends=True) if line.strip()]


def _reordered(raw: bytes, order: list[str]) -> bytes:
    """A dead-letter line with its keys in ``order`` (as a script that builds entries might)."""
    obj = orjson.loads(raw)
    return orjson.dumps({k: obj[k] for k in order}) + b"\n"


#: ``line`` after ``request``: every key is there, only the order differs from ours.
LINE_AFTER_REQUEST = ["custom_id", "request", "line", "error", "attempts", "ts", "batchrunner"]


def test_a_dead_input_line_whose_keys_are_in_another_order_is_not_dead_lettered_twice(
    tmp_path: Path,
) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b'{"custom_id":"a","prompt":"hi"}\nnot json\n{"custom_id":"c","prompt":"yo"}\n')
    run = ["run", inp, "--mock", "--model", MODEL, "--json"]
    assert run_cli(*run).code == 1
    dead = tmp_path / "in.dead.jsonl"
    (entry,) = _lines(dead)
    dead.write_bytes(_reordered(entry, LINE_AFTER_REQUEST))

    status = run_cli("status", tmp_path / "in.results.jsonl", "--json")
    report = orjson.loads(status.stdout)
    assert (report["dead_lettered"], report["pending"], report["warnings"]) == (1, 0, [])

    again = run_cli(*run)
    summary = orjson.loads(again.stdout)
    assert again.code == 1, again.stderr
    assert "not a dead-letter line" not in again.stderr
    assert (summary["dead_lettered"], summary["dead_lettered_total"]) == (0, 1)
    assert len(_lines(dead)) == 1  # line 2 is not dead-lettered a second time


def test_a_request_entry_whose_line_comes_after_its_request_supersedes_the_input_entry(
    tmp_path: Path,
) -> None:
    """Line 2 was broken (an input entry), then fixed, sent and refused (a request entry
    naming line 2): the input entry is superseded, whatever the order of the keys."""
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b'{"custom_id":"a","prompt":"hi"}\nnot json\n')
    run = ["run", inp, "--mock", "--model", MODEL, "-q"]
    assert run_cli(*run).code == 1
    dead = tmp_path / "in.dead.jsonl"
    refused = orjson.loads(_lines(dead)[0])
    refused.update(
        custom_id="b",
        request={"custom_id": "b", "prompt": "fixed"},
        error={"status_code": 400, "type": "bad_request", "message": "Bad request"},
        attempts=1,
        batchrunner={"kind": "request", "fp": "0123456789abcdef"},
    )
    later = _reordered(orjson.dumps(refused), LINE_AFTER_REQUEST)
    dead.write_bytes(dead.read_bytes() + later)

    summary = run_cli("dlq", "summary", dead, "--json")
    assert summary.code == 0, summary.stderr
    report = orjson.loads(summary.stdout)
    assert report["total"] == 1, report  # the request entry alone is in force
    assert report["by_key"] == {"400": 1}


@pytest.mark.parametrize("damage", ["own endpoint", "no fingerprint"])
def test_a_results_line_that_is_not_json_is_not_a_result(tmp_path: Path, damage: str) -> None:
    """A damaged results line (its middle cut or garbled, its head and tail intact) is not
    a result: it is reported and its id is sent again, as a full parse decides. Taking it
    as done would leave that line without a readable answer for good."""
    rows = []
    for i in range(6):
        if damage == "own endpoint":
            body = {"model": "mistral-embed", "input": f"text {i}"}
            rows.append({"custom_id": f"e{i}", "url": "/v1/embeddings", "body": body})
        else:
            rows.append({"custom_id": f"e{i}", "prompt": f"p{i}"})
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    run = ["run", inp, "--mock", "--model", MODEL, "--json"]
    assert run_cli(*run).code == 0
    results = tmp_path / "in.results.jsonl"
    lines = _lines(results)
    victim = orjson.loads(lines[3])["custom_id"]
    answer = b'"data":[' if damage == "own endpoint" else b'"choices":['
    broken = lines[3].replace(answer, answer + b"[[", 1)
    if damage == "no fingerprint":
        meta = orjson.loads(lines[3])["batchrunner"]
        broken = broken.replace(b',"fp":"' + meta["fp"].encode() + b'"', b"")
    assert broken != lines[3]
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(broken)
    lines[3] = broken
    results.write_bytes(b"".join(lines))

    status = orjson.loads(run_cli("status", results, "--json").stdout)
    assert status["pending"] == 1 and status["done"] == 5, status

    again = run_cli(*run)
    summary = orjson.loads(again.stdout)
    assert "not a result line" in again.stderr
    assert (summary["ok"], summary["results_total"]) == (1, 6), summary
    readable = [orjson.loads(line) for line in _lines(results) if line != broken]
    assert [r["custom_id"] for r in readable].count(victim) == 1
