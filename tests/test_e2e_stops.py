"""Issue 9 §6 through the real CLI: Ctrl-C and SIGTERM stop a run at once even before its
first request (the preflight, the warm-up), ``--concurrency`` has a ceiling, and what a user
can get wrong ends in one line, never a traceback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli_env, read_jsonl, require_e2e, run_cli, write_jsonl

from batchrunner.config import MAX_CONCURRENCY

pytestmark = pytest.mark.e2e

MODEL = "mistral-small-latest"
UNUSED = "http://127.0.0.1:9"  # refused before anything is sent


def rows(n: int) -> list[dict[str, object]]:
    msg = [{"role": "user", "content": "hi"}]
    return [{"custom_id": f"r{i}", "body": {"model": MODEL, "messages": msg}} for i in range(n)]


def one_line_error(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    """A port that accepts connections and never answers: a request to it hangs."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        srv.settimeout(30)
        yield srv


# -- Ctrl-C before the first request -----------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "signum"),
    [
        ("preflight", signal.SIGINT),
        ("warm-up", signal.SIGINT),
        ("warm-up", signal.SIGTERM),
    ],
)
def test_a_signal_while_the_server_does_not_answer_yet_exits_130_at_once(
    tmp_path: Path, silent_server: socket.socket, stage: str, signum: signal.Signals
) -> None:
    """The preflight (GET /v1/models) and, without it, the warm-up request hang on a server
    that never answers: the signal still ends the run within a second, exit 130, nothing
    sent, nothing written (before: the preflight said "Aborted!" and exited 1, the warm-up
    ignored it until --timeout)."""
    require_e2e("the CLI")
    inp = write_jsonl(tmp_path / "in.jsonl", rows(3))
    out = tmp_path / "out.jsonl"
    url = f"http://127.0.0.1:{silent_server.getsockname()[1]}"
    extra = ["--no-preflight"] if stage == "warm-up" else []
    cmd = [sys.executable, "-m", "batchrunner", "run", str(inp), "-o", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--server-url", url, "--timeout", "60", *extra],
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        conn, _ = silent_server.accept()  # the run's first request reached us: it waits
        with conn:
            conn.settimeout(10)
            assert conn.recv(4096).startswith(b"GET /v1/models")
            sent_at = time.monotonic()
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=30)
            took = time.monotonic() - sent_at
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert took < 1.5, f"exit {took:.2f} s after the signal"
    assert "Traceback" not in err and "Aborted" not in err
    assert read_jsonl(out) == [] and read_jsonl(tmp_path / "in.dead.jsonl") == []


# -- --concurrency has a ceiling -----------------------------------------------------------------


def test_a_concurrency_above_the_ceiling_is_refused_at_once(tmp_path: Path) -> None:
    """Before: --concurrency 1000000 took 48 s and 3.4 GB for two lines (a worker per slot,
    set up front); 100000000 met the OOM killer."""
    inp = write_jsonl(tmp_path / "in.jsonl", rows(2))
    started = time.monotonic()
    res = run_cli("run", inp, "--server-url", UNUSED, "--concurrency", "1000000")
    assert time.monotonic() - started < 10
    assert res.code == 2
    one_line_error(res.stderr)
    assert f"--concurrency must be at most {MAX_CONCURRENCY}" in res.stderr
    assert not (tmp_path / "in.results.jsonl").exists()
    shown = run_cli("run", "--help").stdout
    assert f"1 to {MAX_CONCURRENCY:,}" in " ".join(shown.split())  # the ceiling is documented


def test_the_ceiling_itself_runs(tmp_path: Path) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", rows(2))
    res = run_cli("run", inp, "--mock", "--quiet", "--concurrency", str(MAX_CONCURRENCY))
    assert res.code == 0, res.stderr
    assert len(read_jsonl(tmp_path / "in.results.jsonl")) == 2


# -- one line, not a traceback -------------------------------------------------------------------


def test_results_given_as_a_directory_is_one_line(tmp_path: Path) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", rows(2))
    (tmp_path / "adir").mkdir()
    res = run_cli("run", inp, "--mock", "--quiet", "-o", tmp_path / "adir")
    assert res.code == 2  # refused as a usage error before anything is opened or sent
    one_line_error(res.stderr)
    assert "must be a file, not the folder" in res.stderr and "adir" in res.stderr


def test_a_read_only_results_file_is_one_line(tmp_path: Path) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", rows(2))
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"")
    out.chmod(0o444)
    env = cli_env()
    cmd = [sys.executable, "-m", "batchrunner", "run", str(inp), "-o", str(out), "--mock"]
    if os.geteuid() == 0:  # root writes read-only files: run without that privilege
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a file read-only")
        cmd = [setpriv, "--bounding-set", "-dac_override", *cmd]
    proc = subprocess.run(
        [*cmd, "--quiet"], env=env, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    one_line_error(proc.stderr)
    assert f"cannot write {out}: Permission denied" in proc.stderr
    assert out.read_bytes() == b""


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--timeout", "inf"], "--timeout must be a positive number, not inf"),
        (["--server-url", "http://127.0.0.1:99999"], "--server-url must be an http:// or https://"),
        (["--server-url", "api.mistral.ai"], "--server-url must be an http:// or https://"),
        (["--server-url", "ftp://127.0.0.1"], "--server-url must be an http:// or https://"),
        (["--server-url", "http://[::1"], "--server-url must be an http:// or https://"),
    ],
)
def test_a_setting_no_request_could_use_is_one_line(
    tmp_path: Path, flags: list[str], words: str
) -> None:
    """Without the preflight, a bad host or an endless timeout used to end in an
    ExceptionGroup traceback at the first request."""
    inp = write_jsonl(tmp_path / "in.jsonl", rows(2))
    res = run_cli("run", inp, "--no-preflight", "--quiet", "--server-url", UNUSED, *flags)
    assert res.code == 2
    one_line_error(res.stderr)
    assert words in res.stderr
    assert not (tmp_path / "in.results.jsonl").exists()


def test_a_mock_log_in_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    log = tmp_path / "no-such-dir" / "requests.jsonl"
    direct = run_cli("mock-server", "--port", "0", "--log", log, timeout=30)
    assert direct.code == 1
    one_line_error(direct.stderr)
    assert "cannot start the mock server" in direct.stderr and str(log) in direct.stderr
    write_jsonl(tmp_path / "in.jsonl", rows(2))
    job = tmp_path / "job.toml"
    job.write_text(f'input = "in.jsonl"\nmock = true\n[mock_server]\nlog = "{log}"\n')
    res = run_cli("run", job, "--quiet")
    assert res.code == 2
    one_line_error(res.stderr)
    assert "the mock server did not start" in res.stderr
