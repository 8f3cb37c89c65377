"""``--via batch`` at scale: preparing and uploading N lines, and bringing home an N-line output.

Writes an input of N short prompts, starts the mock server (jobs answered as fast as it can),
and runs the real CLI (``run --via batch --client http``) on it, watching the run's jobs
record (``<results>.jobs/jobs.jsonl``) to time its two heavy phases with this script's clock:

- **prepare + upload**: from the start of the command to the ``created`` record (start-up,
  the input scan, the admission, writing the upload file and its ids, the upload, the job);
- **bring home**: from the ``homing`` record to the end of the command (downloading the
  output file, N result lines written, the files fsynced).

The run's memory is sampled from ``/proc/<pid>/status`` every 20 ms: the high-water mark
(VmHWM) when the job is created is the peak of the first phase; the largest VmRSS seen while
bringing home is the second's; the peak of the whole run comes from ``wait4``. The time the
mock takes to answer the lines is in between and not counted. N/10 is run too, so that the
growth with N can be read as a ratio.

    python benchmarks/batch_scale.py            # 100,000 and 1,000,000 lines (~2-4 min)
    python benchmarks/batch_scale.py --quick    # 10,000 and 100,000 lines
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

MODEL = "mistral-small-latest"
_SAMPLE = 0.02


@dataclass
class Figures:
    lines: int
    prepare_s: float
    prepare_rss: float
    home_s: float
    home_rss: float
    peak_rss: float
    upload_mib: float
    output_mib: float


def write_input(path: Path, n: int) -> None:
    with path.open("wb", buffering=1 << 20) as f:
        for i in range(n):
            prompt = f"Summarise item {i} in one sentence."
            f.write(orjson.dumps({"custom_id": f"req-{i:07d}", "prompt": prompt}) + b"\n")


def start_mock() -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "batchrunner.mock", "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip().removeprefix("mock server listening on ")


def memory_mib(pid: int, field: str) -> float:
    """A ``/proc/<pid>/status`` memory field (VmRSS, VmHWM) in MiB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def events(path: Path) -> set[str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return set()
    return {e for e in ("created", "homing") if f'"event":"{e}"'.encode() in data}


def measure(n: int) -> Figures:
    mock, url = start_mock()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            inp = Path(tmp) / "in.jsonl"
            write_input(inp, n)
            return _run(inp, url, n)
    finally:
        mock.terminate()
        mock.wait()


def _run(inp: Path, url: str, n: int) -> Figures:
    results = inp.with_name("in.results.jsonl")
    record = results.with_name(results.name + ".jobs") / "jobs.jsonl"
    cmd = [
        sys.executable, "-m", "batchrunner", "run", str(inp), "--via", "batch", "--model",
        MODEL, "--server-url", url, "--silent", "--batch-poll", "0.2", "--batch-poll-max", "1",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=os.environ | {"MISTRAL_API_KEY": "bench"})
    seen: dict[str, float] = {}
    prepare_rss = home_rss = 0.0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # not poll(): it reaps
        if pid:
            break
        now = events(record)
        if "created" in now and "created" not in seen:
            seen["created"] = time.perf_counter()
            prepare_rss = memory_mib(proc.pid, "VmHWM")
        if "homing" in now:
            seen.setdefault("homing", time.perf_counter())
            home_rss = max(home_rss, memory_mib(proc.pid, "VmRSS"))
        time.sleep(_SAMPLE)
    proc.returncode = os.waitstatus_to_exitcode(status)
    end = time.perf_counter()
    if os.waitstatus_to_exitcode(status) != 0 or len(seen) != 2:
        raise SystemExit(f"the batch run failed (exit {os.waitstatus_to_exitcode(status)})")
    return Figures(
        lines=n,
        prepare_s=seen["created"] - start,
        prepare_rss=prepare_rss,
        home_s=end - seen["homing"],
        home_rss=home_rss,
        peak_rss=usage.ru_maxrss / 1024,
        upload_mib=_upload_size(inp) / 2**20,
        output_mib=results.stat().st_size / 2**20,
    )


def _upload_size(inp: Path) -> int:
    """The uploaded file's size, as recorded with the upload."""
    record = inp.with_name("in.results.jsonl.jobs") / "jobs.jsonl"
    for line in record.read_bytes().splitlines():
        rec = orjson.loads(line)
        if rec["event"] == "uploaded":
            return int(rec["bytes"])
    return 0


def show(f: Figures) -> None:
    print(
        f"  {f.lines:>9,} lines: prepare+upload {f.prepare_s:6.1f} s, peak RSS "
        f"{f.prepare_rss:5.0f} MiB ({f.upload_mib:,.0f} MiB uploaded); bring home "
        f"{f.home_s:6.1f} s, RSS {f.home_rss:5.0f} MiB ({f.output_mib:,.0f} MiB of results); "
        f"whole run peak {f.peak_rss:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k lines")
    args = parser.parse_args()
    n = 100_000 if args.quick else 1_000_000
    print(f"batch scale (cpu count {os.cpu_count()}, python {sys.version.split()[0]})")
    small, big = measure(n // 10), measure(n)
    for figures in (small, big):
        show(figures)
    grown = big.peak_rss - small.peak_rss
    print(
        f"growth x10 lines: peak RSS x{big.peak_rss / small.peak_rss:.2f} "
        f"({grown * 2**20 / (n - n // 10):.0f} bytes per extra line); target <= 150 MB at "
        f"{n:,}: {'met' if big.peak_rss * 2**20 <= 150e6 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
