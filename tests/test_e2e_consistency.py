"""`status`, `dlq` and a resumed run decide every line the same way; job-file settings
behave like their flags. Through the real CLI against the real mock server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import MockProc, read_jsonl, run_cli, write_jsonl

pytestmark = pytest.mark.e2e

MODEL = "mistral-small-latest"


def run(inp: Path, mock: MockProc, *extra: str) -> list[str | Path]:
    return ["run", inp, "--server-url", mock.url, "--quiet", "--backoff-base", "0.01", *extra]


def status(inp: Path) -> dict[str, int]:
    res = run_cli("status", inp.with_name(inp.stem + ".results.jsonl"), "--json")
    assert res.code == 0, res.stderr
    data: dict[str, int] = orjson.loads(res.stdout)
    return data


def dlq_total(inp: Path) -> int:
    res = run_cli("dlq", "summary", inp.with_name(inp.stem + ".dead.jsonl"), "--json")
    assert res.code == 0, res.stderr
    return int(orjson.loads(res.stdout)["total"])


def test_status_agrees_after_a_resume_without_the_default_model(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    rows = [{"custom_id": "a", "prompt": "x"}, {"custom_id": "b", "prompt": "y", "model": MODEL}]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    assert run_cli(*run(inp, mock, "--model", MODEL)).code == 0
    assert run_cli(*run(inp, mock)).code == 0  # nothing left to send, no --model needed
    st = status(inp)
    assert (st["done"], st["dead_lettered"], st["pending"]) == (2, 0, 0)


def test_a_done_line_edited_into_a_bad_one_keeps_its_result(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    rows = [{"custom_id": "a", "prompt": "x"}, {"custom_id": "b", "prompt": "y"}]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    assert run_cli(*run(inp, mock, "--model", MODEL)).code == 0
    inp.write_bytes(inp.read_bytes().replace(b'"prompt": "x"', b'"body": 5'))
    again = run_cli(*run(inp, mock, "--model", MODEL, "--allow-changed-input"))
    assert again.code == 0, again.stderr
    assert read_jsonl(inp.with_name("in.dead.jsonl")) == []  # never in both files
    st = status(inp)
    assert (st["done"], st["dead_lettered"], st["pending"]) == (2, 0, 0)


def test_first_line_claims_its_id_in_every_run(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    rows = [
        {"custom_id": "x", "prompt": "first"},
        {"custom_id": "x", "prompt": "2", "model": MODEL},
        {"custom_id": "y", "prompt": "ok", "model": MODEL},
    ]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    assert run_cli(*run(inp, mock)).code == 1  # line 1 has no model; line 2 is its duplicate
    dead = read_jsonl(inp.with_name("in.dead.jsonl"))
    assert sorted(d["error"]["type"] for d in dead) == ["duplicate_custom_id", "no_model"]
    assert [r["custom_id"] for r in read_jsonl(inp.with_name("in.results.jsonl"))] == ["y"]
    # With --model line 1 can be sent: it is, and its result supersedes its input entry;
    # line 2 stays the duplicate it was.
    assert run_cli(*run(inp, mock, "--model", MODEL)).code == 1
    # No new entry, and line 1's superseded one is gone: the file holds what is still dead.
    dead = read_jsonl(inp.with_name("in.dead.jsonl"))
    assert [(d["line"], d["error"]["type"]) for d in dead] == [(2, "duplicate_custom_id")]
    results = sorted(r["custom_id"] for r in read_jsonl(inp.with_name("in.results.jsonl")))
    assert results == ["x", "y"]
    st = status(inp)
    assert (st["done"], st["dead_lettered"], st["pending"]) == (2, 1, 0)
    assert dlq_total(inp) == 1


def test_a_fixed_line_that_fails_again_is_counted_once_by_dlq(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b'{"custom_id": "a", "prompt": "ok"}\n{bad json\n')
    assert run_cli(*run(inp, mock, "--model", MODEL)).code == 1
    inp.write_bytes(
        inp.read_bytes().replace(b"{bad json", b'{"custom_id": "b", "prompt": "[[mock:400]]"}')
    )
    assert run_cli(*run(inp, mock, "--model", MODEL, "--allow-changed-input")).code == 1
    assert dlq_total(inp) == 1
    st = status(inp)
    assert (st["done"], st["dead_lettered"], st["pending"]) == (1, 1, 0)


def test_job_file_summary_json_and_allow_changed_input(tmp_path: Path) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", [{"custom_id": "a", "prompt": "x"}])
    job = tmp_path / "job.toml"
    job.write_text(
        f'input = "in.jsonl"\nmodel = "{MODEL}"\nmock = true\nquiet = true\n'
        'summary_json = "summary.json"\nallow_changed_input = true\n'
    )
    assert run_cli("run", job).code == 0
    assert orjson.loads((tmp_path / "summary.json").read_bytes())["ok"] == 1
    inp.write_bytes(inp.read_bytes().replace(b'"x"', b'"changed"'))
    again = run_cli("run", job)
    assert again.code == 0, again.stderr
    assert orjson.loads((tmp_path / "summary.json").read_bytes())["changed_since_done"] == 1


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('mock = "false"', "true or false"),
        ("server_url = 5", "a string"),
        ('rps = "5"', "a number"),
        ('[prices."m"]\ninput = "x"\noutput = 1', "prices"),
    ],
)
def test_job_file_values_of_the_wrong_type_are_one_line_errors(
    tmp_path: Path, line: str, words: str
) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"custom_id": "a", "prompt": "x"}])
    job = tmp_path / "job.toml"
    job.write_text(f'input = "in.jsonl"\nmodel = "{MODEL}"\n{line}\n')
    res = run_cli("run", job)
    assert res.code == 2, res.stderr
    assert words in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_requeue_never_overwrites_the_runs_input(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    rows = [{"custom_id": "a", "prompt": "[[mock:400]] x"}, {"custom_id": "b", "prompt": "y"}]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    before = inp.read_bytes()
    assert run_cli(*run(inp, mock, "--model", MODEL)).code == 1
    res = run_cli("dlq", "requeue", inp.with_name("in.dead.jsonl"), "-o", inp, "--force")
    assert res.code == 2 and "input" in res.stderr
    assert inp.read_bytes() == before


def dlq_summary(inp: Path) -> dict[str, Any]:
    res = run_cli("dlq", "summary", inp.with_name(inp.stem + ".dead.jsonl"), "--json")
    assert res.code == 0, res.stderr
    data: dict[str, Any] = orjson.loads(res.stdout)
    return data


def summary_of(inp: Path, mock: MockProc, *extra: str) -> dict[str, Any]:
    """Run with ``--summary-json`` and return the summary."""
    path = inp.with_name("summary.json")
    res = run_cli(*run(inp, mock, "--model", MODEL, "--summary-json", str(path), *extra))
    assert res.code in (0, 1), res.stderr
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


def test_garbage_200s_count_under_one_key_everywhere(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    rows = [
        {"custom_id": "ok", "prompt": "x"},
        {"custom_id": "g", "prompt": "[[mock:garbage,garbage]] y"},
        {"custom_id": "b", "prompt": "[[mock:400]] z"},
    ]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    with inp.open("ab") as f:
        f.write(b"{not json\n")
    summary = summary_of(inp, mock, "--max-attempts", "2")
    dead = {d["custom_id"]: d["error"] for d in read_jsonl(tmp_path / "in.dead.jsonl")}
    assert (dead["g"]["status_code"], dead["g"]["type"]) == (200, "retries_exhausted")
    expected = {"retries_exhausted": 1, "400": 1, "invalid_json": 1}
    assert summary["dead_by_status"] == expected
    assert status(inp)["dead_by_status"] == expected
    assert dlq_summary(inp)["by_key"] == expected


def agree(inp: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """``status`` and ``dlq summary`` agree with each other and with the run summary's
    totals; returns the status."""
    st, dq = status(inp), dlq_summary(inp)
    assert st["dead_lettered"] == dq["total"] == summary["dead_lettered_total"]
    assert st["dead_by_status"] == dq["by_key"]
    assert st["done"] == summary["results_total"]
    assert st["pending"] == summary["pending"] == 0
    return st


def test_status_dlq_and_the_run_summary_agree_through_fixes_and_retries(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()  # one server: a [[mock:400]] request succeeds when sent again
    rows = [
        {"custom_id": "ok1", "prompt": "a"},
        {"custom_id": "d1", "prompt": "[[mock:400]] b"},
        {"custom_id": "d2", "prompt": "[[mock:422]] c"},
        {"custom_id": "g", "prompt": "[[mock:garbage,garbage]] d"},
        {"custom_id": "nr"},
        {"custom_id": "ok2", "prompt": "e"},
    ]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    with inp.open("ab") as f:
        f.write(b"{broken\n")
    first = summary_of(inp, mock, "--max-attempts", "2")
    st = agree(inp, first)
    assert st["dead_by_status"] == first["dead_by_status"]
    assert st["dead_by_status"] == {
        "400": 1,
        "422": 1,
        "retries_exhausted": 1,
        "no_request": 1,
        "invalid_json": 1,
    }
    # Fix both bad lines (one now fails, one succeeds) and send the 400s again (d1 now
    # succeeds: its result supersedes its entry). g, dead after its attempts ran out (no
    # fault of its own), is sent again by any re-run, and now succeeds too.
    text = inp.read_bytes().replace(
        b'{"custom_id":"nr"}', b'{"custom_id":"nr","prompt":"[[mock:400]] f"}'
    )
    inp.write_bytes(text.replace(b"{broken", b'{"custom_id":"fixed","prompt":"g"}'))
    second = summary_of(inp, mock, "--allow-changed-input", "--retry-dead", "--status", "400")
    assert second["dead_by_status"] == {"400": 1}  # this run's: the fixed line refused
    st = agree(inp, second)
    assert st["dead_by_status"] == {"400": 1, "422": 1}
    assert (st["done"], st["dead_lettered"]) == (5, 2)
    # A plain resume sends nothing and says the same.
    third = summary_of(inp, mock)
    assert third["requests_sent"] == 0
    again = agree(inp, third)
    counts = ("done", "dead_lettered", "dead_by_status", "pending")
    assert [again[k] for k in counts] == [st[k] for k in counts]
