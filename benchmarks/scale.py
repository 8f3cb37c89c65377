"""Ten million lines on one machine: resume, `status` and `dlq summary` over synthesized files.

Writes an input of N lines and the files a run over it would have left, as `resume_scan.py`
does: results (the real result shape, ~450 bytes each) for 90 % of the ids, dead-letter
entries for the other 10 %, 1 % of the ids dead-lettered first and done since (their entries
superseded), one bad input line in 100,000, and the run manifest. Then times each command in
its own process through the real CLI, sending nothing: `run` resuming, `status --json` and
`dlq summary --json`; checks their counts against what was written, and prints wall time and
peak RSS for each, at N/10 and at N.

    nice python benchmarks/scale.py              # 10,000,000 ids: ~6 GB of files, minutes
    python benchmarks/scale.py --ids 1000000     # 1,000,000 ids
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from resume_scan import MODEL, _result
from throughput import ChildRun, run_child

from batchrunner.config import RunConfig
from batchrunner.input.lines import BadLine, Item, parse_line
from batchrunner.input.scan import scan_input
from batchrunner.ledger.manifest import write_manifest
from batchrunner.ledger.records import dead_line, input_dead_line
from batchrunner.vocabulary import Failure

CHAT = "/v1/chat/completions"
REFUSED = Failure(type="bad_request", status_code=400, message="Invalid request: item refused")
FLAKY = Failure(type="server_error", status_code=500, message="Internal server error")
#: The targets of issue 13, for N = 10 million and 1 million.
TARGETS = {10_000_000: (60.0, 500.0), 1_000_000: (None, 150.0)}


@dataclass(frozen=True)
class Run:
    input: Path
    results: Path
    dead: Path
    lines: int
    done: int
    dead_count: int


def write_run(folder: Path, n: int) -> Run:
    """The input and the files a run over it left; the counts ``status`` must find."""
    inp, out, dead = folder / "in.jsonl", folder / "in.results.jsonl", folder / "in.dead.jsonl"
    done = dead_count = 0
    with inp.open("wb") as fi, out.open("wb") as fo, dead.open("wb") as fd:
        for i in range(n):
            if i % 100_000 == 99_999:  # a bad line: dead-lettered by its line number
                fi.write(b"{broken\n")
                bad = parse_line(b"{broken", i + 1, CHAT, MODEL)
                assert isinstance(bad, BadLine)
                fd.write(input_dead_line(bad))
                dead_count += 1
                continue
            cid, prompt = f"req-{i:08d}", f"Summarise item {i} in one sentence."
            raw = orjson.dumps({"custom_id": cid, "prompt": prompt})
            fi.write(raw + b"\n")
            if i % 10 == 0 or i % 100 == 1:
                item = parse_line(raw, i + 1, CHAT, MODEL)
                assert isinstance(item, Item)
                fd.write(dead_line(item, REFUSED if i % 10 == 0 else FLAKY, 1))
            if i % 10 == 0:
                dead_count += 1
            else:
                fo.write(orjson.dumps(_result(cid, prompt, i, _fp(raw))) + b"\n")
                done += 1
    config = RunConfig(input_path=inp, output_path=out, dead_letter_path=dead, model=MODEL)
    write_manifest(config, scan_input(inp), None)
    return Run(inp, out, dead, n, done, dead_count)


def _fp(raw: bytes) -> str:
    item = parse_line(raw, 1, CHAT, MODEL)
    assert isinstance(item, Item)
    return item.fp


def timed(args: list[str | Path], folder: Path, ok: tuple[int, ...] = (0,)) -> ChildRun:
    """``python -m batchrunner ARGS`` in a child process: its wall time and peak RSS."""
    cmd = [sys.executable, "-m", "batchrunner", *map(str, args)]
    env = os.environ | {"MISTRAL_API_KEY": "bench"}
    child = run_child(cmd, env, folder, timeout=3600)
    if child.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {child.returncode}: {child.stderr[-2000:]}")
    return child


def measure(n: int) -> dict[str, ChildRun]:
    """Write the files for ``n`` ids, time the three commands, check what they count."""
    with tempfile.TemporaryDirectory(prefix="batchrunner-scale-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        run = write_run(folder, n)
        made = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in (run.input, run.results, run.dead)) / 2**20
        resume = [run.input, "--model", MODEL, "--quiet", "--no-preflight"]
        resume += ["--server-url", "http://127.0.0.1:9"]  # unreachable: nothing is sent
        got = {
            "resume": timed(["run", *resume], folder, ok=(1,)),  # 1: some lines are dead
            "status": timed(["status", run.results, "--json"], folder),
            "dlq summary": timed(["dlq", "summary", run.dead, "--json"], folder),
        }
        _check(run, orjson.loads(got["status"].stdout), orjson.loads(got["dlq summary"].stdout))
    figures = ", ".join(
        f"{k} {c.wall_s:.1f} s (cpu {c.cpu_s:.1f} s) / {c.peak_rss_mb:,.0f} MiB"
        for k, c in got.items()
    )
    print(f"  {n:>11,} ids: files {size:,.0f} MiB (made in {made:.0f} s); {figures}", flush=True)
    return got


def _check(run: Run, status: dict[str, Any], summary: dict[str, Any]) -> None:
    found = (status["input_lines"], status["done"], status["dead_lettered"], status["pending"])
    if found != (run.lines, run.done, run.dead_count, 0) or summary["total"] != run.dead_count:
        raise SystemExit(f"wrong counts: status {found}, dlq {summary['total']}, wrote {run}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=10_000_000, help="ids (default 10M)")
    args = parser.parse_args()
    print(f"scale (cpu count {os.cpu_count()}, python {sys.version.split()[0]})")
    rows = {n: measure(n) for n in (args.ids // 10, args.ids)}
    for n, got in rows.items():
        wall, rss = TARGETS.get(n, (None, None))
        resume = got["resume"]
        if wall is not None:
            print(_verdict(f"resume of {n:,} ids", resume.wall_s, wall, "s"))
        if rss is not None:
            print(_verdict(f"resume of {n:,} ids, peak RSS", resume.peak_rss_mb, rss, "MiB"))
    (small, s_got), (large, l_got) = rows.items()
    for name in l_got:
        extra = (l_got[name].peak_rss_mb - s_got[name].peak_rss_mb) * 2**20 / (large - small)
        print(f"{name}: {extra:.0f} bytes of peak RSS per extra id")


def _verdict(what: str, value: float, target: float, unit: str) -> str:
    met = "met" if value <= target else "NOT met"
    return f"target: {what} <= {target:,.0f} {unit} -> {value:,.1f} {unit} ({met})"


if __name__ == "__main__":
    main()
