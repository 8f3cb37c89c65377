"""Resume cost: how long `batchrunner run` takes to find that N ids are already done, and how
much memory it holds while doing so.

Writes an input of N short prompts and a results file in which every id is done (lines of the
real result shape, ~450 bytes each), then times the real CLI resuming it (nothing to send: the
run must read both files, repair nothing and exit 0). Prints wall time, the child's peak RSS
and, for scale, the same run on N/10 ids, so the growth with N can be read as a ratio.

    python benchmarks/resume_scan.py            # 1,000,000 ids (about 0.5 GB of files)
    python benchmarks/resume_scan.py --quick    # 100,000 ids
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from batchrunner.input.lines import fingerprint

MODEL = "mistral-small-latest"


def write_files(folder: Path, n: int) -> tuple[Path, Path]:
    inp, out = folder / "in.jsonl", folder / "in.results.jsonl"
    with inp.open("wb") as fi, out.open("wb") as fo:
        for i in range(n):
            cid = f"req-{i:07d}"
            prompt = f"Summarise item {i} in one sentence."
            fi.write(orjson.dumps({"custom_id": cid, "prompt": prompt}) + b"\n")
            body = {"messages": [{"role": "user", "content": prompt}], "model": MODEL}
            fo.write(orjson.dumps(_result(cid, prompt, i, fingerprint(body))) + b"\n")
    return inp, out


def _result(cid: str, prompt: str, line: int, fp: str) -> dict[str, object]:
    body = {
        "id": f"cmpl-{line:032x}",
        "object": "chat.completion",
        "model": MODEL,
        "created": 1700000000,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "echo: " + prompt},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 11, "total_tokens": 20},
    }
    meta = {"line": line + 1, "attempts": 1, "latency_ms": 12.5, "fp": fp}
    return {"custom_id": cid, "response": {"status_code": 200, "body": body}, "error": None,
            "batchrunner": meta}  # fmt: skip


def time_resume(inp: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, the run's stderr) of one resume through the real CLI."""
    env = os.environ | {"MISTRAL_API_KEY": "bench"}
    cmd = [
        sys.executable,
        "-m",
        "batchrunner",
        "run",
        str(inp),
        "--model",
        MODEL,
        "--quiet",
        "--server-url",
        "http://127.0.0.1:9",
        "--no-preflight",
    ]  # fmt: skip  (sends nothing)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"resume run failed with exit {code}: {err}")
    return wall, usage.ru_maxrss / 1024, err


def measure(n: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        inp, out = write_files(Path(tmp), n)
        made = time.perf_counter() - t0
        # A first run writes the manifest; the timed one is a plain resume.
        time_resume(inp)
        wall, rss, _ = time_resume(inp)
        size = (inp.stat().st_size + out.stat().st_size) / 2**20
        print(f"  {n:>9,} ids: files {size:,.0f} MiB (made in {made:.1f} s); "
              f"resume {wall:.2f} s, peak RSS {rss:,.0f} MiB")  # fmt: skip
    return wall, rss, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k ids instead of 1M")
    args = parser.parse_args()
    n = 100_000 if args.quick else 1_000_000
    print(f"resume scan (cpu count {os.cpu_count()}, python {sys.version.split()[0]})")
    small_wall, small_rss, _ = measure(n // 10)
    wall, rss, _ = measure(n)
    print(f"target: resume of {n:,} done ids <= 10 s -> {wall:.2f} s "
          f"({'met' if wall <= 10 else 'NOT met'})")  # fmt: skip
    print(f"growth x10 ids: time x{wall / small_wall:.1f}, peak RSS x{rss / small_rss:.1f} "
          f"({(rss - small_rss) * 2**20 / (n - n // 10):.0f} bytes per extra id)")  # fmt: skip


if __name__ == "__main__":
    main()
