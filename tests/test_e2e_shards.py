"""Shards and the JSON log through the real CLI against the real mock server: four shard
processes at once (each its own key and --rps), one killed with SIGKILL and re-run, merged
into what a single run gives; a missing shard named by merge; --shard auto/N from each
orchestrator's variable; --log-json followed line by line, with the key nowhere."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import TEST_KEY, MockProc, cli_env, read_jsonl, run_cli, write_jsonl

from batchrunner.config import Shard, default_paths, manifest_path
from batchrunner.input.shard import shard_of

pytestmark = pytest.mark.e2e

MODEL = "mistral-small-latest"
FAST = ("--backoff-base", "0.01", "--backoff-max", "0.05", "--timeout", "5", "--quiet")


def rows(n: int) -> list[Any]:
    """``n`` prompts, with a line without id, a duplicate id, a bad line and a 400."""
    out: list[Any] = [{"custom_id": f"p{i}", "prompt": f"prompt {i}"} for i in range(n)]
    out[5] = {"prompt": "no id: keyed by its line number"}
    out[9] = {"custom_id": "p3", "prompt": "a duplicate of p3"}
    out[13] = {"custom_id": "p13"}  # no request
    out[17] = {"custom_id": "p17", "prompt": "refused [[mock:400]]"}
    return out


def run_args(inp: Path, mock: MockProc, *extra: str | Path) -> list[str | Path]:
    return ["run", inp, "--server-url", mock.url, "--model", MODEL, *FAST, *extra]


def start(args: list[str | Path], key: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchrunner", *map(str, args)],
        env=cli_env(MISTRAL_API_KEY=key),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def outcomes(results: Path, dead: Path) -> dict[str, str]:
    """Each id (or bad line) -> "ok" or its error type; fails on one found twice."""
    seen: dict[str, str] = {}
    for r in read_jsonl(results):
        assert r["custom_id"] not in seen
        seen[r["custom_id"]] = "ok"
    for d in read_jsonl(dead):
        key = d["custom_id"] if d["batchrunner"]["kind"] == "request" else f"line {d['line']}"
        assert key not in seen
        seen[key] = d["error"]["type"]
    return seen


def test_four_shards_with_one_killed_merge_into_what_one_run_gives(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    # Two servers: the mock counts a marked prompt's attempts (a 400, then success).
    mock, other_mock = mock_server("--latency-ms", "10"), mock_server("--latency-ms", "10")
    single_dir, shard_dir = tmp_path / "single", tmp_path / "shards"
    single_dir.mkdir()
    shard_dir.mkdir()
    single_in = write_jsonl(single_dir / "in.jsonl", rows(240))
    inp = write_jsonl(shard_dir / "in.jsonl", rows(240))
    single = start(run_args(single_in, other_mock, "--rps", "200"), TEST_KEY)
    # Each shard its own key and rate; shard 2 slow, to be killed half-way.
    rates = {0: "60", 1: "70", 2: "8", 3: "80"}
    procs = {
        k: start(run_args(inp, mock, "--shard", f"{k}/4", "--rps", rate), f"key-{k}")
        for k, rate in rates.items()
    }
    slow = default_paths(inp, Shard(2, 4))[0]
    deadline = time.monotonic() + 30
    while not (slow.exists() and slow.read_bytes().count(b"\n") >= 5):
        assert time.monotonic() < deadline and procs[2].poll() is None
        time.sleep(0.02)
    procs[2].kill()  # SIGKILL
    for k, proc in procs.items():
        proc.communicate(timeout=60)
        assert proc.returncode in ((-9,) if k == 2 else (0, 1)), k
    single.communicate(timeout=60)
    assert single.returncode == 1  # some lines dead-lettered

    half = run_cli("merge", inp)
    assert half.code == 6
    assert "incomplete:" in half.stderr and "shard 2/4 has" in half.stderr
    assert "re-run those shards" in half.stderr

    assert run_cli(*run_args(inp, mock, "--shard", "2/4", "--rps", "100")).code in (0, 1)
    merged = run_cli("merge", inp, "--json")
    assert merged.code == 0, merged.stdout + merged.stderr
    detail = orjson.loads(merged.stdout)
    assert detail["complete"] and detail["lines"] == 240 and detail["pending"] == 0
    assert [s["state"] for s in detail["by_shard"]] == ["complete"] * 4
    out, dead = default_paths(inp)
    expected = outcomes(*default_paths(single_in))
    assert outcomes(out, dead) == expected
    assert sum(v != "ok" for v in expected.values()) == 3  # the duplicate, no request, 400
    status = run_cli("status", out, "--json")
    st = orjson.loads(status.stdout)
    assert (st["done"], st["dead_lettered"], st["pending"]) == (237, 3, 0)
    summary = run_cli("dlq", "summary", dead, "--json")
    assert orjson.loads(summary.stdout)["total"] == 3
    per_shard = [run_cli("dlq", "summary", default_paths(inp, Shard(k, 4))[1], "--json")
                 for k in range(4)]  # fmt: skip
    assert sum(orjson.loads(r.stdout)["total"] for r in per_shard) == 3


def test_a_missing_shard_makes_merge_fail_naming_it(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    inp = write_jsonl(tmp_path / "in.jsonl", rows(40))
    for k in (0, 1, 3):
        assert run_cli(*run_args(inp, mock, "--shard", f"{k}/4")).code in (0, 1)
    given = [default_paths(inp, Shard(k, 4))[0] for k in (0, 1, 3)]

    merged = run_cli("merge", inp, *given, "-o", tmp_path / "all.jsonl")

    assert merged.code == 6
    (line,) = merged.stderr.splitlines()
    assert "shard 2/4 missing (no files)" in line
    assert (tmp_path / "all.dead.jsonl").exists()  # beside -o, by default
    detail = orjson.loads(run_cli("merge", inp, "-o", tmp_path / "all.jsonl", "--json").stdout)
    assert detail["missing"] == ["2/4"] and not detail["complete"]
    glob = str(tmp_path / "in.shard-*-of-4.results.jsonl")
    none = run_cli("merge", inp, str(tmp_path / "nothing-*.jsonl"))
    assert none.code == 2 and "no shard results found" in none.stderr
    assert run_cli("merge", inp, glob, "-o", tmp_path / "all.jsonl").code == 6


def wait_for_lock(proc: subprocess.Popen[str], locked: Path, *also: Path) -> None:
    """Until ``proc`` holds the lock of ``locked`` and it and ``also`` exist (``proc`` must
    not end before)."""
    deadline = time.monotonic() + 30
    lock = locked.with_name(locked.name + ".lock")
    while not (
        all(f.exists() for f in (locked, *also))
        and lock.exists()
        and lock.read_text().strip() == str(proc.pid)
    ):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)


def test_merge_takes_the_run_lock_of_every_file_it_reads_or_writes(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock, slow = mock_server(), mock_server("--latency-ms", "3000")
    inp = write_jsonl(tmp_path / "in.jsonl", rows(40))
    for k in (0, 1, 3):
        assert run_cli(*run_args(inp, mock, "--shard", f"{k}/4")).code in (0, 1)
    given = [default_paths(inp, Shard(k, 4))[0] for k in (0, 1, 3)]
    all_out = tmp_path / "all.jsonl"
    # A shard still running: merge would read its files while the run writes them.
    shard2 = start([*run_args(inp, slow, "--shard", "2/4", "--concurrency", "1")], "key-2")
    # A run writing the merge's target: the two would write one file.
    target = start([*run_args(inp, slow, "-o", all_out, "--concurrency", "1")], "key-t")
    try:
        shard2_results = default_paths(inp, Shard(2, 4))[0]
        wait_for_lock(shard2, shard2_results, manifest_path(shard2_results))
        wait_for_lock(target, all_out)
        for args, holder in (((), shard2), ((*given, "-o", all_out), target)):
            refused = run_cli("merge", inp, *args)
            assert refused.code == 2, refused.stderr
            (line,) = refused.stderr.strip().splitlines()
            assert line.startswith("Error: ") and f"(pid {holder.pid})" in line
        assert not default_paths(inp)[0].exists()  # nothing written by the refused merge
    finally:
        for proc in (shard2, target):
            proc.kill()
            proc.communicate()
    merged = run_cli("merge", inp, "-o", tmp_path / "merged.jsonl")
    assert merged.code == 6, merged.stderr  # shard 2 was stopped half-way: not refused
    # The merge let go of every lock it took, the killed shard's too; the killed run on
    # all.jsonl left its own (no flock holds them), which this merge did not touch.
    locks = sorted(p.name for p in tmp_path.glob("*.lock"))
    assert locks == ["all.dead.jsonl.lock", "all.jsonl.lock"]


def test_merge_says_an_id_in_no_line_of_the_input_is_not_in_it(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    inp = write_jsonl(tmp_path / "in.jsonl", rows(40))
    for k in range(4):
        assert run_cli(*run_args(inp, mock, "--shard", f"{k}/4")).code in (0, 1)
    stranger, p0 = "zz-not-in-input", {"custom_id": "p0"}
    elsewhere = (shard_of(stranger, 0, 4) + 1) % 4  # not the shard its hash would name
    away = (shard_of("p0", 1, 4) + 1) % 4  # p0 is in the input: in another shard's files
    for k, row in ((elsewhere, {"custom_id": stranger}), (away, p0)):
        results = default_paths(inp, Shard(k, 4))[0]
        first = orjson.loads(results.read_bytes().splitlines()[0])
        with results.open("ab") as f:
            f.write(orjson.dumps(first | row) + b"\n")

    merged = run_cli("merge", inp, "-o", tmp_path / "all.jsonl", "--json")

    assert merged.code == 6, merged.stderr
    detail = orjson.loads(merged.stdout)
    assert detail["not_in_input"] == {"count": 1, "examples": [repr(stranger)]}
    assert detail["misplaced"]["count"] == 1
    assert detail["misplaced"]["examples"][0].startswith(f"'p0' in shard {away}/4's files")
    plain = run_cli("merge", inp, "-o", tmp_path / "all.jsonl")
    (line,) = plain.stderr.splitlines()
    assert f"1 outcomes not in the input (e.g. {stranger!r})" in line
    assert "1 outcomes in another shard's files (e.g. 'p0' in shard" in line


def test_shard_auto_takes_k_from_each_orchestrators_variable(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    mock = mock_server()
    inp = write_jsonl(tmp_path / "in.jsonl", rows(24))
    envs = {
        0: {"JOB_COMPLETION_INDEX": "0"},
        1: {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "1"},
        2: {"BATCHRUNNER_SHARD": "2"},
        3: {"SLURM_ARRAY_TASK_ID": "3"},
    }
    for k, env in envs.items():
        done = run_cli(*run_args(inp, mock, "--shard", "auto/4"), env=cli_env(**env))
        assert done.code in (0, 1), done.stderr
        manifest = default_paths(inp, Shard(k, 4))[0].with_suffix(".jsonl.manifest.json")
        assert orjson.loads(manifest.read_bytes())["shard"] == f"{k}/4"
    assert run_cli("merge", inp).code == 0

    unset = run_cli(*run_args(inp, mock, "--shard", "auto/4"))
    assert unset.code == 2
    assert unset.stderr.count("\n") == 1 and "no shard index in the environment" in unset.stderr
    other = run_cli(
        *run_args(inp, mock, "--shard", "1/4", "-o", default_paths(inp, Shard(0, 4))[0])
    )
    assert other.code == 2 and other.stderr.count("\n") == 1
    assert "holds shard 0/4 and this run is for shard 1/4" in other.stderr


def test_the_json_log_follows_a_run_and_never_holds_the_key(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    canary = "sk-canary-4d1f0b9e7c3a5e2d"
    mock = mock_server("--limit-rps", "25", "--retry-after-ms", "50")
    n = 90  # at 75 a second, 429s and a cut in the first second; then ~25 a second, 3 s
    data: list[Any] = [{"custom_id": f"p{i}", "prompt": f"prompt {i}"} for i in range(n)]
    data[3] = {"custom_id": "p3", "prompt": "retried [[mock:500,reset]]"}
    data[4] = {"custom_id": "p4", "prompt": "refused [[mock:400]]"}
    data[5] = "not an object"
    inp = write_jsonl(tmp_path / "in.jsonl", data)
    log = tmp_path / "run.log.jsonl"
    args = run_args(inp, mock, "--rps", "75", "--log-json", log, "--progress-interval", "0.2")
    done = run_cli(*args, env=cli_env(MISTRAL_API_KEY=canary))
    assert done.code == 1, done.stderr

    events = [orjson.loads(line) for line in log.read_bytes().splitlines()]  # each line parses
    names = [e["event"] for e in events]
    assert names[0] == "run_start" and names[-1] == "run_end"
    assert {"retry", "dead_letter", "rate_cut", "progress"} <= set(names)
    assert all(e["ts"].endswith("Z") for e in events)
    assert events[0]["options"]["rps"] == 75.0 and events[0]["options"]["shard"] is None
    retried = [e for e in events if e["event"] == "retry" and e["id"] == "p3"]
    assert [(e["attempt"], e["cause"]) for e in retried] == [(1, "500"), (2, "connection_error")]
    assert any(e["event"] == "retry" and e["cause"] == "429" for e in events)
    dead = {(e["id"], e["type"], e["status"]) for e in events if e["event"] == "dead_letter"}
    assert dead == {("p4", "bad_request", 400), (None, "not_an_object", None)}
    cut = next(e for e in events if e["event"] == "rate_cut")
    assert cut["limit"] == "rps" and cut["new"] < cut["old"] <= 75 and "429" in cut["why"]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["total"] == n and 0 <= progress[-1]["percent"] <= 100
    assert events[-1]["summary"]["ok"] == n - 2
    for path in tmp_path.iterdir():  # the log, results, dead-letter file, manifest
        assert canary.encode() not in path.read_bytes(), path
    assert canary not in done.stdout + done.stderr
