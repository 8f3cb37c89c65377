"""Crash-safe resume and graceful interruption, through the real CLI against the real mock
server: ``kill -9`` at random moments, Ctrl-C, a torn line, an edited input, a full disk."""

from __future__ import annotations

import os
import random
import resource
import selectors
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from conftest import MockProc, cli_env, read_jsonl, run_cli, write_jsonl

pytestmark = pytest.mark.e2e

MODEL = "mistral-small-latest"
FAST = ("--backoff-base", "0.01", "--backoff-max", "0.05", "--timeout", "5", "--quiet")


def prompts(n: int, tag: str = "p") -> list[dict[str, str]]:
    return [{"custom_id": f"{tag}{i}", "prompt": f"prompt {tag}{i}"} for i in range(n)]


def chat_requests(mock: MockProc) -> int:
    """Chat completions the server received (the preflight's GET /v1/models not counted)."""
    return int(mock.stats()["by_path"].get("/v1/chat/completions", 0))


def start_run(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchrunner", *map(str, args)],
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_lines(path: Path, n: int, proc: subprocess.Popen[str], limit: float = 30) -> None:
    """Poll until ``path`` has ``n`` lines (the run is under way), or fail."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        assert proc.poll() is None, f"run ended early: {proc.communicate()}"
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {n} lines")


def wait_for_stderr(proc: subprocess.Popen[str], text: str, limit: float = 30) -> None:
    """Read the run's stderr until it says ``text`` (the run got there), or fail."""
    assert proc.stderr is not None
    fd, seen = proc.stderr.fileno(), b""
    deadline = time.monotonic() + limit
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while text.encode() not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                break
            chunk = os.read(fd, 65536)  # the raw pipe: nothing left behind in a buffer
            if not chunk:
                break  # stderr closed: the run ended
            seen += chunk
    assert text.encode() in seen, f"the run never said {text!r}: {seen.decode(errors='replace')}"


def outcome_ids(out: Path, dead: Path) -> tuple[list[str], list[str]]:
    results = [r["custom_id"] for r in read_jsonl(out)]
    deads = [d["custom_id"] for d in read_jsonl(dead)]
    return results, deads


def run_args(inp: Path, out: Path, dead: Path, mock: MockProc, *extra: str) -> list[str | Path]:
    paths: list[str | Path] = ["run", inp, "-o", out, "--dead-letter", dead]
    return [*paths, "--server-url", mock.url, "--model", MODEL, *FAST, *extra]


def test_kill_9_at_random_moments_loses_nothing_and_resends_only_in_flight(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    n, concurrency = 400, 8
    log = tmp_path / "requests.jsonl"
    mock = mock_server("--latency-ms", "15", "--jitter-ms", "10", "--log", str(log))
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(n))
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    args = run_args(inp, out, dead, mock, "--concurrency", str(concurrency))
    rng = random.Random(20261125)
    kills = 0
    for _ in range(4):
        proc = start_run(*args)
        wait_for_lines(out, 1 + kills * 60, proc)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            break
        proc.kill()
        proc.communicate()
        kills += 1
        for line in out.read_bytes().splitlines()[:-1]:
            orjson.loads(line)  # every line but a possibly torn last one is whole
    final = run_cli(*args)
    assert final.code == 0, final.stderr
    assert kills >= 2
    results, deads = outcome_ids(out, dead)
    assert deads == []
    assert sorted(results) == sorted(f"p{i}" for i in range(n))  # each exactly once
    mock_log = tmp_path / "requests.jsonl"
    mock.proc.terminate()
    mock.proc.communicate(timeout=10)
    sends = Counter(r["custom"] for r in read_jsonl(mock_log) if r["path"].endswith("completions"))
    resent = sum(c - 1 for c in sends.values())
    assert len(sends) == n
    assert resent <= kills * concurrency, f"{resent} re-sent after {kills} kills"


def test_torn_last_line_is_repaired_with_a_warning(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(20))
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    assert run_cli(*run_args(inp, out, dead, mock)).code == 0
    lines = out.read_bytes().splitlines(keepends=True)
    torn_id = orjson.loads(lines[-1])["custom_id"]
    out.write_bytes(b"".join(lines[:-1]) + lines[-1][:25])  # a kill in mid-write
    again = run_cli(*run_args(inp, out, dead, mock))
    assert again.code == 0, again.stderr
    assert "torn" in again.stderr
    results = read_jsonl(out)  # every line valid JSON
    assert sorted(r["custom_id"] for r in results) == sorted(f"p{i}" for i in range(20))
    assert results[-1]["custom_id"] == torn_id  # only the torn item was sent again
    assert chat_requests(mock) == 21


def test_sigint_drains_exits_130_and_resumes(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server("--latency-ms", "300")
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(200))
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    args = run_args(inp, out, dead, mock, "--concurrency", "4", "--drain-timeout", "5")
    args.remove("--quiet")
    proc = start_run(*args)
    wait_for_lines(out, 4, proc)
    proc.send_signal(signal.SIGINT)
    # What draining means is counted, not timed: the server got exactly the requests whose
    # results were written (the ones in flight finished; nothing new was sent), and not all
    # 200 (they would take 15 s at 4 x 0.3 s). communicate's timeout, four times the
    # --drain-timeout, only keeps a hung run from hanging the suite.
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "resume with: batchrunner run" in err
    assert "Traceback" not in err
    partial = len(read_jsonl(out))
    assert 0 < partial < 200
    assert chat_requests(mock) == partial
    status = run_cli("status", out, "--json")
    assert status.code == 0
    st = orjson.loads(status.stdout)
    assert (st["done"], st["pending"]) == (partial, 200 - partial)
    assert st["resume_command"].startswith("batchrunner run")
    resumed = run_cli(*args, "--quiet", "--concurrency", "64")
    assert resumed.code == 0, resumed.stderr
    results, _ = outcome_ids(out, dead)
    assert sorted(results) == sorted(f"p{i}" for i in range(200))


def test_second_sigint_aborts_in_flight_at_once(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    # "At once" against a drain that would last ten minutes: the hanging request would hold
    # the run until --timeout / --drain-timeout (600 s), and communicate gives it 30 s.
    mock = mock_server("--latency-ms", "20", "--hang-s", "3600")
    rows = [*prompts(4), {"custom_id": "hang", "prompt": "[[mock:timeout]] wait"}]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    args = run_args(inp, out, dead, mock, "--timeout", "600", "--drain-timeout", "600")
    args.remove("--quiet")  # for the first SIGINT's message
    proc = start_run(*args)
    wait_for_lines(out, 4, proc)
    proc.send_signal(signal.SIGINT)
    # Not a sleep: two signals close together can arrive as one; the second goes once the
    # run has taken the first.
    wait_for_stderr(proc, "Again to abort now.")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    results, deads = outcome_ids(out, dead)
    assert "hang" not in [*results, *deads]  # left pending, sent again on resume


def test_changed_input_is_refused_and_appended_input_resumes(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(10))
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    assert run_cli(*run_args(inp, out, dead, mock)).code == 0
    other = write_jsonl(tmp_path / "other.jsonl", prompts(10))
    refused = run_cli(*run_args(other, out, dead, mock))
    assert refused.code == 2
    assert "--restart" in refused.stderr and "Traceback" not in refused.stderr
    endpoint = run_cli(*run_args(inp, out, dead, mock, "--endpoint", "/v1/embeddings"))
    assert endpoint.code == 2 and "endpoint" in endpoint.stderr
    with inp.open("ab") as f:
        f.write(orjson.dumps({"custom_id": "new", "prompt": "appended"}) + b"\n")
    grown = run_cli(*run_args(inp, out, dead, mock))
    assert grown.code == 0, grown.stderr
    assert [r["custom_id"] for r in read_jsonl(out)][-1] == "new"
    inp.write_bytes(inp.read_bytes().replace(b"prompt p3", b"prompt p3 edited"))
    edited = run_cli(*run_args(inp, out, dead, mock))
    assert edited.code == 2 and "--allow-changed-input" in edited.stderr
    summary = tmp_path / "summary.json"
    allowed = run_cli(
        *run_args(inp, out, dead, mock, "--allow-changed-input", "--summary-json", str(summary))
    )
    assert allowed.code == 0
    assert orjson.loads(summary.read_bytes())["changed_since_done"] == 1
    assert chat_requests(mock) == 11  # nothing was sent twice


def test_restart_moves_old_files_aside(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(5))
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    assert run_cli(*run_args(inp, out, dead, mock)).code == 0
    assert run_cli(*run_args(inp, out, dead, mock, "--restart")).code == 0
    backups = sorted(p.name for p in tmp_path.glob("out.jsonl.2*.bak"))
    assert len(backups) == 1
    assert len(read_jsonl(tmp_path / backups[0])) == 5
    assert len(read_jsonl(out)) == 5
    assert chat_requests(mock) == 10


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))


def run_with_file_size_limit(args: list[str | Path]) -> subprocess.CompletedProcess[str]:
    """The real CLI in a process that may not write files past 8 KiB (RLIMIT_FSIZE)."""
    return subprocess.run(
        [sys.executable, "-m", "batchrunner", *map(str, args)],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_file_size,
    )


def test_write_failure_stops_cleanly_and_resumes(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(100))
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    args = run_args(inp, out, dead, mock)
    proc = run_with_file_size_limit(args)
    assert proc.returncode == 3, proc.stderr
    message = proc.stderr.strip()
    assert "\n" not in message and str(out) in message and "too large" in message.lower()
    partial = read_jsonl(out)  # whole lines only
    assert 0 < len(partial) < 100
    assert out.stat().st_size <= 8192
    resumed = run_cli(*args)
    assert resumed.code == 0, resumed.stderr
    results, _ = outcome_ids(out, dead)
    assert sorted(results) == sorted(f"p{i}" for i in range(100))


def test_a_dead_letter_write_failure_stops_cleanly(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    filler = "x" * 400
    rows = [{"custom_id": f"b{i}", "prompt": f"[[mock:400]] bad {i} {filler}"} for i in range(100)]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    proc = run_with_file_size_limit(run_args(inp, out, dead, mock))
    assert proc.returncode == 3, proc.stderr
    message = proc.stderr.strip()
    assert "\n" not in message and str(dead) in message and "Traceback" not in message
    assert 0 < len(read_jsonl(dead)) < 100  # whole lines only
