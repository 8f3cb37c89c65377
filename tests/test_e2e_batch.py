"""``--via batch`` end to end: the real CLI and the real SDK against the real mock server's
Batch API, with ``--client sdk``. After each run, ``status`` and ``dlq summary`` must agree
with the files, and every id must be in exactly one place."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from conftest import TEST_KEY, CliResult, MockProc, cli_env, read_jsonl, run_cli, write_jsonl

from batchrunner.cli.main import cli

pytestmark = pytest.mark.e2e

MODEL = "mistral-small-latest"
LARGE = "mistral-large-latest"
MockFactory = Callable[..., MockProc]
Row = dict[str, Any]
# A job pace that answers the first line at once, then sits RUNNING for ~17 minutes.
STUCK = ("--batch-seconds-per-1000", "1000000")


def chat(i: int, text: str = "", model: str | None = None) -> Row:
    body: Row = {"messages": [{"role": "user", "content": f"question {i} {text}".strip()}]}
    if model is not None:
        body["model"] = model
    return {"custom_id": f"q{i}", "body": body}


class Files:
    """One run's input and output files in a folder."""

    def __init__(self, folder: Path, rows: list[Row], raw_tail: bytes = b"") -> None:
        folder.mkdir(exist_ok=True)
        self.inp, self.out, self.dead = (
            folder / n for n in ("in.jsonl", "out.jsonl", "dead.jsonl")
        )
        write_jsonl(self.inp, rows)
        with self.inp.open("ab") as f:
            f.write(raw_tail)
        self.ids = [r["custom_id"] for r in rows]
        self.jobs = self.out.with_name(self.out.name + ".jobs") / "jobs.jsonl"

    def args(self, mock: MockProc, *extra: str, batch: bool = True) -> list[str | Path]:
        via = ["--via", "batch", "--batch-poll", "0.05", "--batch-poll-max", "0.2"]
        return [
            "run", self.inp, "-o", self.out, "--dead-letter", self.dead, "--server-url",
            mock.url, "--model", MODEL, "--client", "sdk", "--backoff-base", "0.01",
            "--backoff-max", "0.05", "--timeout", "10", "--quiet", *(via if batch else []),
            *extra,
        ]  # fmt: skip

    def outcomes(self) -> tuple[list[str], list[str]]:
        """(ids with a result, ids whose dead-letter entry is in force), each exactly once."""
        done = [r["custom_id"] for r in read_jsonl(self.out)]
        assert len(done) == len(set(done)), "an id has two results"
        in_force: dict[object, Row] = {}
        for d in read_jsonl(self.dead):
            key = d["line"] if d["batchrunner"]["kind"] == "input" else d["custom_id"]
            in_force[key] = d
        dead = [k for k, d in in_force.items() if d["custom_id"] not in set(done)]
        return done, [str(k) for k in dead]

    def agree(self, pending: int) -> dict[str, Any]:
        """``status`` and ``dlq summary`` say what the files say; returns the status."""
        done, dead = self.outcomes()
        status = invoke("status", self.out, "--json")
        assert (status["done"], status["dead_lettered"], status["pending"]) == (
            len(done),
            len(dead),
            pending,
        )
        assert status["input_lines"] == len(done) + len(dead) + pending
        if self.dead.exists():
            assert invoke("dlq", "summary", self.dead, "--json")["total"] == len(dead)
        return status

    def events(self) -> list[str]:
        return [r["event"] for r in read_jsonl(self.jobs)]


def invoke(*args: str | Path) -> Any:
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"MISTRAL_API_KEY": TEST_KEY})
    assert result.exit_code == 0, result.output
    return orjson.loads(result.output)


def mock_jobs(mock: MockProc, key: str = TEST_KEY) -> list[Row]:
    """The jobs the mock server holds, newest first."""
    request = urllib.request.Request(
        mock.url + "/v1/batch/jobs?page_size=100", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        jobs: list[Row] = orjson.loads(resp.read())["data"]
    return jobs


@contextmanager
def started(args: list[str | Path]) -> Iterator[subprocess.Popen[str]]:
    """The run in the background; killed and reaped on the way out, whatever happened."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchrunner", *map(str, args)],
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def wait_until(check: Callable[[], bool], proc: subprocess.Popen[str], limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
        time.sleep(0.02)
    raise AssertionError("the run never got there")


def created(files: Files) -> Callable[[], bool]:
    return lambda: files.jobs.exists() and b'"created"' in files.jobs.read_bytes()


def stop_line(result: CliResult) -> str:
    return next(line for line in result.stderr.splitlines() if line.startswith("stopped:"))


# --- the tests ------------------------------------------------------------------------------


def test_a_batch_run_gives_the_files_an_online_run_gives(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    rows = [chat(i, "[[mock:400]]" if i == 3 else "") for i in range(20)]
    rows.append({"custom_id": "no-body", "body": "not an object"})
    tail = b'{"custom_id": "cut\n'
    online, batch = Files(tmp_path / "online", rows, tail), Files(tmp_path / "batch", rows, tail)
    ran_online = run_cli(*online.args(mock_server(), batch=False))
    ran_batch = run_cli(*batch.args(mock_server()))
    assert (ran_online.code, ran_batch.code) == (1, 1), ran_batch.stderr
    results = {r["custom_id"]: r for r in read_jsonl(batch.out)}
    for expected in read_jsonl(online.out):
        got = results.pop(expected["custom_id"])
        assert got["response"] == expected["response"]
        assert got["batchrunner"]["batch_job"] == mock_jobs_of(batch)[0]
        assert {k: got["batchrunner"][k] for k in ("line", "fp")} == {
            k: expected["batchrunner"][k] for k in ("line", "fp")
        }
    assert results == {}

    def dead(files: Files) -> set[tuple[Any, ...]]:
        return {
            (d["custom_id"], d["line"], d["error"]["type"], d["error"]["status_code"],
             orjson.dumps(d["request"]))
            for d in read_jsonl(files.dead)
        }  # fmt: skip

    assert dead(batch) == dead(online) and len(dead(batch)) == 3
    assert online.agree(pending=0)["dead_by_status"] == batch.agree(pending=0)["dead_by_status"]


def mock_jobs_of(files: Files) -> list[str]:
    return [r["job_id"] for r in read_jsonl(files.jobs) if r["event"] == "created"]


def test_kill_9_while_waiting_resumes_polling_the_same_job(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    mock = mock_server("--batch-seconds-per-1000", "60")  # 25 lines: 1.5 s
    files = Files(tmp_path, [chat(i) for i in range(25)])
    with started(files.args(mock)) as proc:
        wait_until(created(files), proc)
        proc.kill()
    assert len(mock_jobs(mock)) == 1
    again = run_cli(*files.args(mock))
    assert again.code == 0, again.stderr
    assert len(mock_jobs(mock)) == 1
    assert sorted(files.outcomes()[0]) == sorted(files.ids)
    assert files.events().count("uploaded") == 1
    files.agree(pending=0)


def test_ctrl_c_stops_waiting_and_the_same_command_resumes(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    mock = mock_server("--batch-seconds-per-1000", "60")
    files = Files(tmp_path, [chat(i) for i in range(25)])
    with started(files.args(mock)) as proc:
        wait_until(created(files), proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "keep running on Mistral's side" in err and "resume with: batchrunner run" in err
    assert files.agree(pending=25)["batch_jobs"][0]["brought_home"] is False
    refreshed = invoke("status", files.out, "--json", "--refresh")["batch_jobs"][0]
    assert refreshed["status"] in ("RUNNING", "SUCCESS") and refreshed["completed"] > 0
    online = CliRunner().invoke(cli, [str(a) for a in files.args(mock, batch=False)], env=cli_env())
    assert online.exit_code == 2 and "not brought home yet" in online.output
    again = run_cli(*files.args(mock))
    assert again.code == 0, again.stderr
    assert len(mock_jobs(mock)) == 1
    assert sorted(files.outcomes()[0]) == sorted(files.ids)
    files.agree(pending=0)


@pytest.mark.parametrize(
    ("fault", "status"), [("fail_after:40%", "FAILED"), ("timeout_after:8", "TIMEOUT_EXCEEDED")]
)
def test_a_job_that_ends_half_way_keeps_what_it_delivered_and_online_finishes(
    tmp_path: Path, mock_server: MockFactory, fault: str, status: str
) -> None:
    mock = mock_server("--batch-faults", fault)
    files = Files(tmp_path, [chat(i) for i in range(20)])
    log = tmp_path / "run.log"
    first = run_cli(*files.args(mock, "--log-json", str(log)))
    assert first.code == 3, first.stderr
    assert f"ended {status}" in first.stderr and "12 ids are pending" in first.stderr
    events = read_jsonl(log)
    assert [e["status"] for e in events if e["event"] == "batch_job"][-1] == status
    assert events[-1]["event"] == "run_end" and events[-1]["summary"]["pending"] == 12
    assert files.outcomes()[0] == files.ids[:8]
    job = files.agree(pending=12)["batch_jobs"][0]
    assert (job["status"], job["completed"], job["brought_home"]) == (status, 8, True)
    online = run_cli(*files.args(mock, batch=False))
    assert online.code == 0, online.stderr
    assert sorted(files.outcomes()[0]) == sorted(files.ids)
    files.agree(pending=0)


def test_retryable_lines_stay_pending_a_400_is_dead_and_retry_dead_works_in_batch(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    mock = mock_server()
    markers = {1: "[[mock:429]]", 2: "[[mock:500]]", 3: "[[mock:400]]"}
    files = Files(tmp_path, [chat(i, markers.get(i, "")) for i in range(12)])
    first = run_cli(*files.args(mock))
    assert first.code == 3 and "429: 1, 500: 1" in first.stderr, first.stderr
    done, dead = files.outcomes()
    assert dead == ["q3"] and sorted(done) == sorted(set(files.ids) - {"q1", "q2", "q3"})
    (entry,) = read_jsonl(files.dead)
    assert (entry["error"]["type"], entry["error"]["status_code"]) == ("bad_request", 400)
    assert entry["request"] == chat(3, markers[3]) and entry["line"] == 4
    files.agree(pending=2)
    online = run_cli(*files.args(mock, batch=False))  # their second attempts succeed
    assert online.code == 1, online.stderr
    files.agree(pending=0)
    retried = run_cli(*files.args(mock, "--retry-dead"))
    assert retried.code == 0, retried.stderr
    assert sorted(files.outcomes()[0]) == sorted(files.ids)
    files.agree(pending=0)
    assert [j["total"] for j in invoke("status", files.out, "--json")["batch_jobs"]] == [12, 1]


def test_an_input_split_into_jobs_and_lines_of_another_model(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    mock = mock_server()
    rows = [chat(i, model=LARGE if i in (4, 17, 29) else None) for i in range(33)]
    files = Files(tmp_path, rows)
    first = run_cli(*files.args(mock, "--batch-max-requests", "10"))
    assert first.code == 1, first.stderr
    assert [j["total_requests"] for j in mock_jobs(mock)] == [10, 10, 10]
    done, dead = files.outcomes()
    assert sorted(dead) == ["q17", "q29", "q4"] and len(done) == 30
    assert all("--batch-group-by-model" in d["error"]["message"] for d in read_jsonl(files.dead))
    files.agree(pending=0)
    grouped = run_cli(*files.args(mock, "--retry-dead", "--batch-group-by-model"))
    assert grouped.code == 0, grouped.stderr
    newest = mock_jobs(mock)[0]
    assert (newest["model"], newest["total_requests"], len(mock_jobs(mock))) == (LARGE, 3, 4)
    assert sorted(files.outcomes()[0]) == sorted(files.ids)
    files.agree(pending=0)


def test_cancel_cancels_the_runs_jobs_and_keeps_what_they_delivered(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    mock = mock_server(*STUCK)
    files = Files(tmp_path, [chat(i) for i in range(10)])
    with started(files.args(mock)) as proc:
        wait_until(lambda: any(j["completed_requests"] for j in mock_jobs(mock)), proc)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 130
    cancelled = run_cli(*files.args(mock, "--cancel"))
    assert cancelled.code == 3 and "9 ids are pending (this run's batch jobs are cancelled)" in (
        cancelled.stderr
    )
    assert "resume with:" in cancelled.stderr and "--cancel" not in cancelled.stderr
    assert [j["status"] for j in mock_jobs(mock)] == ["CANCELLED"]
    assert files.outcomes()[0] == ["q0"]
    files.agree(pending=9)
    online = run_cli(*files.args(mock, batch=False))
    assert online.code == 0, online.stderr
    files.agree(pending=0)


def test_a_refused_key_and_an_unknown_model_read_as_they_do_online(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    keyed, open_ = mock_server("--require-key", "the-right-key"), mock_server()
    # A key refused half-way (no preflight): exit 3; a model the preflight does not find: 2.
    for name, mock, extra, code in (
        ("key", keyed, ("--no-preflight",), 3),
        ("model", open_, ("--model", "gpt-5"), 2),
    ):
        files = Files(tmp_path / name, [chat(i) for i in range(3)])
        online = run_cli(*files.args(mock, *extra, batch=False))
        batch = run_cli(*files.args(mock, *extra))
        assert (online.code, batch.code) == (code, code), batch.stderr
        if code == 3:
            assert stop_line(online) == stop_line(batch)
            assert "the API key was refused" in stop_line(batch)
            files.agree(pending=3)
        else:
            assert online.stderr == batch.stderr and "gpt-5" in batch.stderr
        assert mock_jobs(mock, "the-right-key") == []


def test_max_cost_refuses_a_job_whose_worst_case_passes_it(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    mock = mock_server()
    files = Files(tmp_path, [chat(i) for i in range(10)])
    refused = run_cli(*files.args(mock, "--max-cost", "0.00001"))
    assert refused.code == 5 and "--max-cost" in refused.stderr, refused.stderr
    assert mock_jobs(mock) == []
    files.agree(pending=10)
    allowed = run_cli(*files.args(mock, "--max-cost", "1"))
    assert allowed.code == 0, allowed.stderr
    files.agree(pending=0)


def test_start_online_finish_in_batch_from_a_job_file(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    mock = mock_server()
    files = Files(tmp_path, [chat(i) for i in range(15)])
    partial = run_cli(*files.args(mock, "--max-tokens-total", "300", batch=False))
    assert partial.code == 5, partial.stderr
    done_online = len(files.outcomes()[0])
    assert 0 < done_online < 15
    job = tmp_path / "job.toml"
    job.write_text(
        f'input = "in.jsonl"\noutput = "out.jsonl"\ndead_letter = "dead.jsonl"\n'
        f'model = "{MODEL}"\nserver_url = "{mock.url}"\nclient = "sdk"\nvia = "batch"\n'
        "batch_poll = 0.05\nquiet = true\n"
    )
    finished = run_cli("run", job)
    assert finished.code == 0, finished.stderr
    assert [j["total_requests"] for j in mock_jobs(mock)] == [15 - done_online]
    assert sorted(files.outcomes()[0]) == sorted(files.ids)
    files.agree(pending=0)
