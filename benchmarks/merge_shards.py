"""Merge cost: how long `batchrunner merge` takes to join 4 shards totalling N lines and
check them against the input, and how much memory it holds while doing so.

Writes an input of N short prompts and, for each of 4 shards, the files a finished
`run --shard K/4` leaves: results (the real result shape, ~480 bytes a line), a dead-letter
file (1 % of the lines, refused with a 400) and the manifest. Nothing is sent. Then times the
real CLI merging them (`merge INPUT --json`, which must exit 0: complete), and, for scale,
the same on N/10 lines, so the growth with N reads as a ratio.

    python benchmarks/merge_shards.py            # 1,000,000 lines (about 0.5 GB of files)
    python benchmarks/merge_shards.py --quick    # 100,000 lines
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson

from batchrunner.config import RunConfig, Shard, default_paths
from batchrunner.input.lines import fingerprint
from batchrunner.input.scan import scan_input
from batchrunner.input.shard import shard_of
from batchrunner.ledger.manifest import write_manifest

MODEL = "mistral-small-latest"
SHARDS = 4
DEAD_EVERY = 100


def write_files(folder: Path, n: int) -> Path:
    inp = folder / "in.jsonl"
    paths = [default_paths(inp, Shard(k, SHARDS)) for k in range(SHARDS)]
    with ExitStack() as stack:
        fi = stack.enter_context(inp.open("wb"))
        files = [(stack.enter_context(r.open("wb")), stack.enter_context(d.open("wb")))
                 for r, d in paths]  # fmt: skip
        for i in range(n):
            cid, prompt = f"req-{i:07d}", f"Summarise item {i} in one sentence."
            fi.write(orjson.dumps({"custom_id": cid, "prompt": prompt}) + b"\n")
            body = {"messages": [{"role": "user", "content": prompt}], "model": MODEL}
            results, dead = files[shard_of(cid, i + 1, SHARDS)]
            record = _dead if i % DEAD_EVERY == 0 else _result
            (dead if record is _dead else results).write(
                orjson.dumps(record(cid, body, i + 1, fingerprint(body))) + b"\n"
            )
    scan = scan_input(inp)
    for k, (results, dead) in enumerate(paths):
        config = RunConfig(input_path=inp, output_path=results, dead_letter_path=dead,
                           model=MODEL, shard=f"{k}/{SHARDS}")  # fmt: skip
        write_manifest(config, scan, None)
    return inp


def _result(cid: str, body: dict[str, Any], line: int, fp: str) -> dict[str, Any]:
    answer = {
        "id": f"cmpl-{line:032x}", "object": "chat.completion", "model": MODEL,
        "created": 1700000000,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "echo: " + body["messages"][0]["content"]}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 11, "total_tokens": 20},
    }  # fmt: skip
    meta = {"ts": "2026-01-01T00:00:00Z", "line": line, "attempts": 1, "latency_ms": 12.5,
            "fp": fp}  # fmt: skip
    return {"custom_id": cid, "response": {"status_code": 200, "body": answer}, "error": None,
            "batchrunner": meta}  # fmt: skip


def _dead(cid: str, body: dict[str, Any], line: int, fp: str) -> dict[str, Any]:
    error = {"status_code": 400, "type": "bad_request", "message": "Invalid request"}
    return {"custom_id": cid, "line": line, "request": {"custom_id": cid, "body": body},
            "error": error, "attempts": 1, "ts": "2026-01-01T00:00:00Z",
            "batchrunner": {"kind": "request", "fp": fp}}  # fmt: skip


def time_merge(inp: Path) -> tuple[float, float, float, dict[str, Any]]:
    """(wall seconds, CPU seconds, peak RSS MiB, the --json report) of one merge through the
    real CLI. On a shared machine the wall time waits for the CPU: the CPU time does not."""
    cmd = [sys.executable, "-m", "batchrunner", "merge", str(inp), "--json"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    out = proc.stdout.read()  # the report comes at the end: read it all, then reap
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"merge failed with exit {code}: {out.decode()}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024, orjson.loads(out)


def measure(n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        inp = write_files(Path(tmp), n)
        made = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20
        wall, cpu, rss, report = time_merge(inp)
        assert report["complete"] and report["lines"] == n, report["verdict"]
        print(f"  {n:>9,} lines in {SHARDS} shards: files {size:,.0f} MiB (made in {made:.1f} s);"
              f" merge {wall:.2f} s ({cpu:.2f} s CPU), peak RSS {rss:,.0f} MiB")  # fmt: skip
    return wall, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k lines instead of 1M")
    args = parser.parse_args()
    n = 100_000 if args.quick else 1_000_000
    print(f"merge of {SHARDS} shards (cpu count {os.cpu_count()}, python {sys.version.split()[0]})")
    small_wall, small_rss = measure(n // 10)
    wall, rss = measure(n)
    print(f"growth x10 lines: time x{wall / small_wall:.1f}, peak RSS x{rss / small_rss:.1f} "
          f"({(rss - small_rss) * 2**20 / (n - n // 10):.0f} bytes per extra line)")  # fmt: skip


if __name__ == "__main__":
    main()
