"""Throughput benchmark: how close ``batchrunner run`` gets to a bare aiohttp loop.

Prints figures; it is not a test and asserts nothing. Run it with the project's
interpreter::

    python benchmarks/throughput.py            # full run, about a minute and a half
    python benchmarks/throughput.py --quick    # ~20 s smoke run
    python benchmarks/throughput.py --json figures.json

Every client runs as a child process of this script, and every client run gets a fresh
mock server (``python -m batchrunner.mock``) in a process of its own, so the three
clients are measured the same way: wall time and the child's user+sys CPU (from
``os.wait4``), the server's CPU from ``/proc/<pid>/stat``, the request rate from the
server's own first/last arrival times. See ``benchmarks/README.md`` for what each
figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

MODEL = "mistral-small-latest"
ENDPOINT = "/v1/chat/completions"
API_KEY = "bench-key"
PREFIX = "mock server listening on "
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Below this share of one core over its busy span, the server is not what limits a phase.
SATURATED = 0.9
# Above this many cores used by other processes during a run, the figures are suspect.
BUSY_MACHINE = 0.2
# Each client also runs once on this many requests: what it costs regardless of N
# (interpreter start-up, imports, opening files), subtracted for the per-request CPU.
SMALL_RUN = 50

TARGET_HTTP_VS_BARE_RATE = 0.8
TARGET_HTTP_VS_BARE_CPU = 1.5
TARGET_RPS_ACHIEVED = 0.99


def prompt(i: int) -> str:
    return f"short text number {i}: say something brief about it."


def chat_body(i: int) -> dict[str, Any]:
    """The body ``batchrunner`` builds from ``{"custom_id": ..., "prompt": prompt(i)}``."""
    return {"messages": [{"role": "user", "content": prompt(i)}], "model": MODEL}


# --- the bare loop (runs in a child: ``throughput.py --bare-worker URL N C``) -------------


async def bare_loop(url: str, n: int, concurrency: int) -> dict[str, float]:
    """``concurrency`` tasks post ``n`` chat bodies through one aiohttp session."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Authorization": f"Bearer {API_KEY}",
    }
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    indices = iter(range(n))  # shared by all tasks: one event loop, no locking needed
    target = url.rstrip("/") + ENDPOINT
    ok = failed = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal ok, failed
        for i in indices:
            async with session.post(target, data=orjson.dumps(chat_body(i))) as resp:
                await resp.read()
                if resp.status == 200:
                    ok += 1
                else:
                    failed += 1

    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(
        headers=headers, connector=connector, timeout=timeout
    ) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"ok": ok, "failed": failed, "elapsed_s": elapsed}


def bare_worker_main(url: str, n: int, concurrency: int) -> int:
    result = asyncio.run(bare_loop(url, n, concurrency))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0 if result["failed"] == 0 else 1


# --- processes -----------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # comm (field 2) may contain spaces: count fields after its closing parenthesis.
    fields = stat[stat.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of the whole line
    return (utime + stime) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds spent busy by all processes on all CPUs, from ``/proc/stat``."""
    with open("/proc/stat", "rb") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def machine_load(sample_s: float = 0.5) -> float:
    """Cores kept busy by all processes over the next ``sample_s`` seconds."""
    busy0, t0 = machine_busy_seconds(), time.perf_counter()
    time.sleep(sample_s)
    return (machine_busy_seconds() - busy0) / (time.perf_counter() - t0)


def wait_for_idle(limit_s: float) -> None:
    """Wait (at most ``limit_s``) until the machine is idle; 0 does not wait."""
    deadline = time.perf_counter() + limit_s
    while limit_s > 0 and machine_load() > BUSY_MACHINE and time.perf_counter() < deadline:
        pass


class MockServer:
    """``python -m batchrunner.mock`` on a free port; stop it with :meth:`stop`."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self._stderr_path = workdir / f"mock-{time.monotonic_ns()}.stderr"
        cmd = [sys.executable, "-m", "batchrunner.mock", "--host", "127.0.0.1", "--port", "0"]
        with self._stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [*cmd, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
            )
        try:
            assert self.proc.stdout is not None
            first = self.proc.stdout.readline().decode().strip()
            if not first.startswith(PREFIX):
                raise RuntimeError(f"mock server did not start: {first!r} {self._stderr()}")
        except BaseException:
            self.stop()
            raise
        self.url = first.removeprefix(PREFIX)

    def _stderr(self) -> str:
        with contextlib.suppress(OSError):
            return self._stderr_path.read_text(errors="replace")[-2000:]
        return ""

    def cpu(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/_mock/stats", timeout=10) as resp:
            data: dict[str, Any] = orjson.loads(resp.read())
        return data

    def stop(self) -> None:
        """SIGTERM (the server flushes its log and exits 0), SIGKILL after 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def mock_server(workdir: Path, *args: str) -> Iterator[MockServer]:
    server = MockServer(workdir, *args)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class ChildRun:
    wall_s: float
    cpu_s: float  # user + sys of the child alone (os.wait4)
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mb: float = 0.0  # ru_maxrss of the child (KiB on Linux)


def run_child(cmd: Sequence[str], env: dict[str, str], workdir: Path, timeout: float) -> ChildRun:
    """Run ``cmd`` to completion; its own rusage comes from ``os.wait4`` on its pid."""
    out_path, err_path = workdir / "child.stdout", workdir / "child.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return ChildRun(
        wall_s=wall,
        peak_rss_mb=usage.ru_maxrss / 1024,
        cpu_s=usage.ru_utime + usage.ru_stime,
        returncode=proc.returncode,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


# --- one measured client run ----------------------------------------------------------------


@dataclass
class Phase:
    name: str
    requests: int
    concurrency: int
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    wall_s: float = 0.0  # child process, start-up included
    span_s: float = 0.0  # server: first to last arrival
    calls_per_s: float = 0.0  # server-side: (arrivals - 1) / span
    calls_per_s_wall: float = 0.0  # requests / child wall time
    client_cpu_s: float = 0.0
    client_cpu_ms_per_req_all_in: float = 0.0
    client_cpu_ms_per_req: float = 0.0  # start-up cost (SMALL_RUN) subtracted
    client_cores: float = 0.0  # per-request CPU over the span, in cores
    server_cpu_s: float = 0.0
    server_cpu_ms_per_req: float = 0.0
    server_cores: float = 0.0  # server CPU over the span, in cores
    server_saturated: bool = False
    other_load_cores: float = 0.0  # CPU used by everything else on the machine, in cores
    max_1s_window: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


class Bench:
    def __init__(self, workdir: Path, concurrency: int, wait_idle: float) -> None:
        self.workdir = workdir
        self.concurrency = concurrency
        self.wait_idle = wait_idle
        self.env = dict(os.environ, MISTRAL_API_KEY=API_KEY)
        self.env.pop("MISTRAL_SERVER_URL", None)
        self.fixed_cpu: dict[str, float] = {}
        self._inputs: dict[int, Path] = {}

    def input_file(self, n: int) -> Path:
        if n not in self._inputs:
            path = self.workdir / f"input-{n}.jsonl"
            with path.open("wb") as f:
                for i in range(n):
                    line = {"custom_id": f"r{i}", "prompt": prompt(i)}
                    f.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
            self._inputs[n] = path
        return self._inputs[n]

    def command(self, kind: str, url: str, n: int, extra: Sequence[str] = ()) -> list[str]:
        if kind == "bare":
            script = str(Path(__file__).resolve())
            return [sys.executable, script, "--bare-worker", url, str(n), str(self.concurrency)]
        run_dir = self.workdir / f"run-{time.monotonic_ns()}"
        run_dir.mkdir()
        return [
            sys.executable, "-m", "batchrunner", "run", str(self.input_file(n)),
            "--server-url", url, "--model", MODEL, "--client", kind,
            "--concurrency", str(self.concurrency), "--quiet",
            "--summary-json", str(run_dir / "summary.json"),
            "-o", str(run_dir / "out.jsonl"), "--dead-letter", str(run_dir / "dead.jsonl"),
            *extra,
        ]  # fmt: skip

    def measure_fixed_cost(self, kind: str) -> None:
        """CPU of a SMALL_RUN-request run: the cost that does not grow with N."""
        with mock_server(self.workdir) as server:
            cmd = self.command(kind, server.url, SMALL_RUN)
            child = run_child(cmd, self.env, self.workdir, timeout=120)
        if child.returncode != 0:
            raise RuntimeError(f"{kind} small run failed: {child.stderr[-2000:]}")
        self.fixed_cpu[kind] = child.cpu_s

    def phase(
        self, name: str, kind: str, n: int, server_args: Sequence[str] = (),
        extra: Sequence[str] = (), timeout: float = 300,
    ) -> tuple[Phase, list[tuple[float, int | str]]]:  # fmt: skip
        """One client run against a fresh server.

        Returns the figures and the server's log of chat requests: (arrival, status).
        """
        ph = Phase(name=name, requests=n, concurrency=self.concurrency)
        log = self.workdir / f"requests-{time.monotonic_ns()}.jsonl"
        with mock_server(self.workdir, "--log", str(log), *server_args) as server:
            cmd = self.command(kind, server.url, n, extra)
            wait_for_idle(self.wait_idle)
            cpu0, busy0 = server.cpu(), machine_busy_seconds()
            child = run_child(cmd, self.env, self.workdir, timeout)
            ph.server_cpu_s = server.cpu() - cpu0
            busy = machine_busy_seconds() - busy0
            stats = server.stats()
            server_requests = int(stats["total"])
        # Stopping the server flushed its log: one line per request, in arrival order.
        entries = [orjson.loads(line) for line in log.read_bytes().splitlines() if line.strip()]
        chats = [(float(e["t"]), e["status"]) for e in entries if e["path"] == ENDPOINT]
        if child.returncode != 0:
            ph.ok = False
            ph.problems.append(f"exit {child.returncode}: {child.stderr.strip()[-500:]}")
        if kind != "bare":
            summary_path = Path(cmd[cmd.index("--summary-json") + 1])
            if summary_path.exists():
                ph.summary = orjson.loads(summary_path.read_bytes())
        ph.wall_s = child.wall_s
        ph.client_cpu_s = child.cpu_s
        ph.other_load_cores = max(busy - child.cpu_s - ph.server_cpu_s, 0.0) / child.wall_s
        for _, status in chats:
            ph.status_counts[str(status)] = ph.status_counts.get(str(status), 0) + 1
        ph.max_1s_window = int(stats["max_1s_window"])
        if ph.status_counts.get("200", 0) != n:
            ph.ok = False
            ph.problems.append(f"server answered {ph.status_counts} for {n} chat requests")
        if len(chats) >= 2:
            ph.span_s = chats[-1][0] - chats[0][0]
            ph.calls_per_s = (len(chats) - 1) / ph.span_s if ph.span_s > 0 else 0.0
        ph.calls_per_s_wall = n / ph.wall_s
        ph.client_cpu_ms_per_req_all_in = 1000 * ph.client_cpu_s / n
        fixed = self.fixed_cpu.get(kind)
        if fixed is not None and n > SMALL_RUN:
            marginal = max(ph.client_cpu_s - fixed, 0.0)
            ph.client_cpu_ms_per_req = 1000 * marginal / (n - SMALL_RUN)
            if ph.span_s > 0:
                ph.client_cores = marginal * n / (n - SMALL_RUN) / ph.span_s
        else:
            ph.client_cpu_ms_per_req = ph.client_cpu_ms_per_req_all_in
        ph.server_cpu_ms_per_req = 1000 * ph.server_cpu_s / max(server_requests, 1)
        if ph.span_s > 0:
            ph.server_cores = ph.server_cpu_s / ph.span_s
            ph.server_saturated = ph.server_cores >= SATURATED
        return ph, chats


# --- the rate-limited run -------------------------------------------------------------------


@dataclass
class RpsPhase:
    rps: float
    requests: int
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    achieved_after_1s: float = 0.0  # chat arrivals/s from 1 s after the first to the last
    achieved_ratio: float = 0.0
    answered_200_after_1s: float = 0.0  # the same, counting only requests answered 200
    middle_rate: float = 0.0  # arrivals/s with the first and the last second left out
    max_1s_window: int = 0
    server_429s: int = 0
    retries_429: int = 0
    arrivals: int = 0
    span_s: float = 0.0
    run_requests_per_s: float = 0.0


def rate(times: Sequence[float]) -> float:
    """Arrivals per second: n arrivals paced 1/r apart span (n - 1)/r seconds."""
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def rps_phase(bench: Bench, rps: float, n: int) -> RpsPhase:
    cap = f"{rps:g}"
    ph, chats = bench.phase(
        "rps", "http", n, server_args=("--limit-rps", cap), extra=("--rps", cap),
        timeout=n / rps * 3 + 60,
    )  # fmt: skip
    out = RpsPhase(rps=rps, requests=n, ok=ph.ok, problems=list(ph.problems))
    out.max_1s_window = ph.max_1s_window
    out.server_429s = ph.status_counts.get("429", 0)
    out.retries_429 = int(ph.summary.get("retry_causes", {}).get("429", 0))
    out.run_requests_per_s = float(ph.summary.get("requests_per_s", 0.0))
    out.arrivals = len(chats)
    if chats:
        first, last = chats[0][0], chats[-1][0]
        later = [(t, status) for t, status in chats if t >= first + 1.0]
        times = [t for t, _ in later]
        if len(times) >= 2:
            out.span_s = times[-1] - times[0]
            out.achieved_after_1s = rate(times)
            out.achieved_ratio = out.achieved_after_1s / rps
            answered = [t for t, status in later if status == 200]
            out.answered_200_after_1s = (len(answered) - 1) / out.span_s
            out.middle_rate = rate([t for t in times if t <= last - 1.0])
    if out.server_429s:
        out.ok = False
    return out


# --- driving and reporting -------------------------------------------------------------------


def package_revision() -> str:
    """The commit the measured package is at, with "+dirty" for uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
            check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "batchrunner"], cwd=root,
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def median_phase(runs: list[Phase]) -> Phase:
    """The run with the median calls/s (the middle one of an odd count)."""
    ordered = sorted(runs, key=lambda p: p.calls_per_s)
    return ordered[(len(ordered) - 1) // 2]


def fmt_phase(p: Phase) -> str:
    sat = "  SERVER SATURATED" if p.server_saturated else ""
    return (
        f"  {p.name:<5} {p.requests:>6} req  {p.calls_per_s:>8.0f} calls/s"
        f" ({p.calls_per_s_wall:>6.0f}/s incl. start-up, wall {p.wall_s:5.2f} s)\n"
        f"        client CPU {p.client_cpu_ms_per_req:6.3f} ms/req"
        f" ({p.client_cpu_ms_per_req_all_in:6.3f} all-in, {p.client_cpu_s:5.2f} s;"
        f" {p.client_cores:4.2f} cores)\n"
        f"        server CPU {p.server_cpu_ms_per_req:6.3f} ms/req"
        f" ({p.server_cpu_s:5.2f} s; {p.server_cores:4.2f} cores over the span){sat}\n"
        f"        other processes on the machine: {p.other_load_cores:4.2f} cores"
        + ("" if p.ok else f"\n        INVALID: {'; '.join(p.problems)}")
    )


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~20 s smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--requests", type=int, help="per bare/http run [5000; quick 2000]")
    parser.add_argument("--sdk-requests", type=int, help="sdk run [1500; quick 200]")
    parser.add_argument("--repeats", type=int, help="bare/http runs, interleaved [3; quick 1]")
    parser.add_argument("--rps", type=float, default=50.0, help="rate of the paced run [50]")
    parser.add_argument("--rps-seconds", type=float, help="length of the paced run [15; quick 4]")
    parser.add_argument(
        "--wait-idle", type=float, default=0.0, metavar="S",
        help="before each measured run, wait up to S seconds for other processes to go quiet",
    )  # fmt: skip
    parser.add_argument("--bare-worker", nargs=3, metavar=("URL", "N", "C"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_worker:
        url, n, c = args.bare_worker
        return bare_worker_main(url, int(n), int(c))

    q = args.quick
    n = args.requests or (2000 if q else 5000)
    n_sdk = args.sdk_requests or (200 if q else 1500)
    repeats = args.repeats or (1 if q else 3)
    n_rps = int(args.rps * (args.rps_seconds or (4.0 if q else 15.0)))
    began = time.perf_counter()
    revision = package_revision()

    with tempfile.TemporaryDirectory(prefix="batchrunner-bench-") as tmp:
        bench = Bench(Path(tmp), args.concurrency, args.wait_idle)
        print(
            f"batchrunner throughput benchmark: {os.cpu_count()} CPUs, concurrency "
            f"{args.concurrency}, {n} req per bare/http run x{repeats}, {n_sdk} sdk req, "
            f"{n_rps} req at --rps {args.rps:g}; package at {revision}",
            flush=True,
        )
        print("start-up cost (a run of 50 requests, CPU s):", end="", flush=True)
        for kind in ("bare", "http", "sdk"):
            bench.measure_fixed_cost(kind)
            print(f" {kind} {bench.fixed_cpu[kind]:.2f}", end="", flush=True)
        print()

        bare_runs: list[Phase] = []
        http_runs: list[Phase] = []
        for _ in range(repeats):  # interleaved, so drift hits both alike
            bare_runs.append(bench.phase("bare", "bare", n)[0])
            http_runs.append(bench.phase("http", "http", n)[0])
        sdk = bench.phase("sdk", "sdk", n_sdk)[0]
        bare, http = median_phase(bare_runs), median_phase(http_runs)
        rps = rps_phase(bench, args.rps, n_rps)

    rate_ratio = http.calls_per_s / bare.calls_per_s if bare.calls_per_s else 0.0
    cpu_ratio = (
        http.client_cpu_ms_per_req / bare.client_cpu_ms_per_req
        if bare.client_cpu_ms_per_req else 0.0
    )  # fmt: skip
    cpu_ratio_all_in = http.client_cpu_ms_per_req_all_in / bare.client_cpu_ms_per_req_all_in
    sdk_ratio = sdk.calls_per_s / http.calls_per_s if http.calls_per_s else 0.0
    pairs = zip(bare_runs, http_runs, strict=True)
    pair_ratios = [h.calls_per_s / b.calls_per_s if b.calls_per_s else 0.0 for b, h in pairs]
    valid = all(p.ok for p in (*bare_runs, *http_runs, sdk))

    print("\n(a)-(c) zero latency, no rate cap (median run of each; calls/s seen by the server)")
    for p in (bare, http, sdk):
        print(fmt_phase(p))
    if repeats > 1:
        print("  calls/s of every run:")
        print("    bare " + "  ".join(f"{p.calls_per_s:.0f}" for p in bare_runs))
        print("    http " + "  ".join(f"{p.calls_per_s:.0f}" for p in http_runs))
        print("    http/bare per interleaved pair " + "  ".join(f"{r:.2f}" for r in pair_ratios))
    if bare.server_saturated:
        print(
            f"  NOTE: the server used {bare.server_cores:.2f} cores during the bare loop: it is"
            " at (or near) its one-core limit, so the bare figure is the server's ceiling, not"
            " the client stack's."
        )
    else:
        print(
            f"  the server used {bare.server_cores:.2f} of its ~1 core during the bare loop:"
            " not the bottleneck."
        )

    rps_ok = rps.achieved_ratio >= TARGET_RPS_ACHIEVED and rps.server_429s == 0
    print(f"\n(d) --rps {rps.rps:g} against --limit-rps {rps.rps:g}, {rps.requests} requests")
    print(
        f"  achieved after the first second {rps.achieved_after_1s:.2f} req/s"
        f" ({rps.answered_200_after_1s:.2f}/s answered 200; {rps.arrivals} arrivals in all)"
    )
    print(
        f"  first and last second left out {rps.middle_rate:.2f} req/s;"
        f" run summary {rps.run_requests_per_s:.2f} req/s overall (start-up included)"
    )
    print(f"  largest 1-s window {rps.max_1s_window}   429s from the server {rps.server_429s}"
          f" (run retried {rps.retries_429} for 429)")  # fmt: skip
    if rps.problems:
        print("  problems: " + "; ".join(rps.problems))

    print("\nratios (same run)")
    print(
        f"  http calls/s / bare        {rate_ratio:5.2f}   target >= {TARGET_HTTP_VS_BARE_RATE}"
        f"  {verdict(rate_ratio >= TARGET_HTTP_VS_BARE_RATE)}"
    )
    print(
        f"  http CPU/req / bare        {cpu_ratio:5.2f}   target <= {TARGET_HTTP_VS_BARE_CPU}"
        f"  {verdict(0 < cpu_ratio <= TARGET_HTTP_VS_BARE_CPU)}"
        f"   (all-in, start-up included: {cpu_ratio_all_in:.2f})"
    )
    print(f"  sdk calls/s / http         {sdk_ratio:5.3f}   (1/{1 / sdk_ratio:.0f})"
          if sdk_ratio else "  sdk calls/s / http         n/a")  # fmt: skip
    print(
        f"  rps achieved / cap         {rps.achieved_ratio:5.3f}   target >= {TARGET_RPS_ACHIEVED}"
        f" with 0 429s  {verdict(rps_ok)}"
    )
    busiest = max(p.other_load_cores for p in (*bare_runs, *http_runs, sdk))
    if busiest > BUSY_MACHINE:
        print(
            f"  WARNING: other processes used up to {busiest:.2f} cores during a run: on"
            f" {os.cpu_count()} CPUs that takes CPU from the client and the server, and the"
            " calls/s figures (and their ratios) are depressed and noisy. Re-run when idle."
        )
    if not valid:
        print("  WARNING: some runs were invalid (see INVALID above); their figures mean little")
    elapsed = time.perf_counter() - began
    print(f"\nbenchmark took {elapsed:.0f} s")

    if args.json:
        figures = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "package_revision": revision,
            "settings": {
                "concurrency": args.concurrency, "requests": n, "sdk_requests": n_sdk,
                "repeats": repeats, "rps": args.rps, "rps_requests": n_rps,
                "small_run": SMALL_RUN, "quick": q, "wait_idle_s": args.wait_idle,
            },
            "startup_cpu_s": bench.fixed_cpu,
            "bare": asdict(bare), "http": asdict(http), "sdk": asdict(sdk),
            "bare_runs": [asdict(p) for p in bare_runs],
            "http_runs": [asdict(p) for p in http_runs],
            "rps": asdict(rps),
            "ratios": {
                "http_vs_bare_calls_per_s": rate_ratio,
                "http_vs_bare_calls_per_s_pairs": pair_ratios,
                "http_vs_bare_cpu_per_req": cpu_ratio,
                "http_vs_bare_cpu_per_req_all_in": cpu_ratio_all_in,
                "sdk_vs_http_calls_per_s": sdk_ratio,
                "rps_achieved_vs_cap": rps.achieved_ratio,
            },
            "targets_met": {
                "http_vs_bare_calls_per_s": rate_ratio >= TARGET_HTTP_VS_BARE_RATE,
                "http_vs_bare_cpu_per_req": 0 < cpu_ratio <= TARGET_HTTP_VS_BARE_CPU,
                "rps_achieved_with_no_429": rps_ok,
            },
            "all_runs_valid": valid and rps.ok,
            "elapsed_s": elapsed,
        }  # fmt: skip
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
