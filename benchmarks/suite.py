"""Issue 5's benchmark suite: P1-P7, each a figure measured in one run, MET / NOT MET.

Prints figures; nothing here is a test. Run it with the project's interpreter::

    python benchmarks/suite.py                  # full suite, about 5-6 minutes
    python benchmarks/suite.py --quick          # ~2 minute smoke run (no 1M-line run)
    python benchmarks/suite.py --only P1,P3     # some of them
    python benchmarks/suite.py --json figures.json

P1 rate precision, P2 overhead against a bare aiohttp loop, P3 latency hiding, P4 memory,
P5 tokens per minute, P6 AIMD against a server limited below ``--rps`` (a sliding window, a
fixed window, a token bucket; and without ``--rps``), P7 random 429s. Every client run is
a child process against a fresh mock server (``python -m batchrunner.mock --port 0``), and
every rate comes from the arrival times in that server's request log, as in
``throughput.py``, whose helpers this script imports. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from batchrunner.mock.content import ECHO_CHARS, completion_tokens, prompt_tokens

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput as tp  # a sibling script: importable once its folder is on the path

BENCHMARKS = ("P1", "P2", "P3", "P4", "P5", "P6", "P7")
MAX_TOKENS = 16  # every input line asks for at most this many completion tokens

# P1: --rps R against a server that refuses the (R + 1)-th request of any sliding second.
P1_RATES = (50.0, 200.0)
P1_ACHIEVED = 0.99
# P2: zero latency, no cap; the runner against the bare loop, both at this concurrency.
P2_CONCURRENCY = 64
P2_VS_BARE = 0.8
# P3: 500 ms per answer, --rps 100, the pool left to size itself.
P3_RPS, P3_LATENCY_MS, P3_SKIP_S, P3_ACHIEVED = 100.0, 500.0, 2.0, 0.97
# P4: peak RSS of the runner child for these input sizes; the largest must stay under this.
P4_SIZES_FULL, P4_SIZES_QUICK = (10_000, 100_000, 1_000_000), (10_000, 100_000)
P4_MAX_MB = 150.0
P4_FLAT = 1.2  # "flat": peak RSS at the largest size within this factor of the smallest's
# P5: --tpm T against a server with --limit-tpm T; 100-token requests (by the mock's count).
P5_TPM, P5_PROMPT_CHARS, P5_SKIP_S, P5_USED, P5_MAX_429 = 60_000, 336, 5.0, 0.95, 0.01
P5_QUICK_SKIP_S = 2.0
# P6: --rps 100 against --limit-rps 40 counted three ways, and one without --rps; from
# second 10 on, >= 95% of 40/s answered 200 and < 3% of the requests 429 (issue 9).
P6_RPS, P6_LIMIT, P6_LATENCY_MS, P6_SETTLE_S, P6_ACHIEVED, P6_MAX_429 = (
    100.0, 40.0, 20.0, 10.0, 0.95, 0.03,
)  # fmt: skip
P6_ALGOS, P6_NO_RPS_ALGO = ("sliding", "fixed", "bucket"), "fixed"
# P7: --rps 100 with a fifth of the requests 429 at random ("rate limited" bodies, then
# "capacity exceeded" ones): at least 90% of the cap sent.
P7_RPS, P7_SHARE, P7_SENT, P7_REQUESTS, P7_REQUESTS_QUICK = 100.0, 0.2, 0.9, 2_000, 1_000


# --- inputs --------------------------------------------------------------------------------------


def tpm_prompt(i: int) -> str:
    """A prompt of exactly P5_PROMPT_CHARS characters: every P5 request costs the same."""
    filler = " please summarise the following sentence in a few plain words" * 8
    return (f"request {i:07d}:" + filler)[:P5_PROMPT_CHARS]


def mock_tokens(text: str, max_tokens: int) -> int:
    """prompt + completion tokens the mock charges a one-message chat request of ``text``."""
    content = "echo: " + text[:ECHO_CHARS]
    return prompt_tokens([text]) + completion_tokens(content, max_tokens)


def write_input(path: Path, n: int, make_prompt: Callable[[int], str] = tp.prompt) -> Path:
    with path.open("wb") as f:
        for i in range(n):
            line = {"custom_id": f"r{i}", "prompt": make_prompt(i), "max_tokens": MAX_TOKENS}
            f.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
    return path


# --- one measured run of the CLI -----------------------------------------------------------------


@dataclass
class Measured:
    """One ``batchrunner run`` child against its own fresh mock server."""

    label: str
    requests: int
    server_args: list[str]
    run_args: list[str]
    returncode: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0  # ru_maxrss of the child, from os.wait4
    server_cpu_s: float = 0.0
    other_cores: float = 0.0  # CPU of everything else on the machine over the run, in cores
    server_stats: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""
    # (arrival, status) of every chat request, from the server's log; not in the JSON
    chats: list[tuple[float, int | str]] = field(default_factory=list, repr=False)
    last_first: float = 0.0  # when the last item's first attempt came

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def figures(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("chats")
        data["chat_arrivals"] = len(self.chats)
        return data


def run_child_rss(
    cmd: Sequence[str], env: dict[str, str], workdir: Path, timeout: float
) -> tuple[tp.ChildRun, float]:
    """``throughput.run_child`` and the child's peak RSS in MB."""
    child = tp.run_child(cmd, env, workdir, timeout)
    return child, child.peak_rss_mb


class Suite:
    def __init__(self, workdir: Path, quick: bool, wait_idle: float) -> None:
        self.workdir = workdir
        self.quick = quick
        self.wait_idle = wait_idle
        self.env = dict(os.environ, MISTRAL_API_KEY=tp.API_KEY)
        self.env.pop("MISTRAL_SERVER_URL", None)
        self.busiest_other = 0.0

    def input(self, name: str, n: int, make_prompt: Callable[[int], str] = tp.prompt) -> Path:
        path = self.workdir / f"{name}-{n}.jsonl"
        return path if path.exists() else write_input(path, n, make_prompt)

    def run(
        self, label: str, input_path: Path, n: int, server_args: Sequence[str] = (),
        run_args: Sequence[str] = (), log: bool = True, timeout: float = 600,
    ) -> Measured:  # fmt: skip
        """``batchrunner run INPUT --quiet ... RUN_ARGS`` against a fresh mock server."""
        m = Measured(label, n, list(server_args), list(run_args))
        stamp = time.monotonic_ns()
        run_dir = self.workdir / f"run-{stamp}"
        run_dir.mkdir()
        log_path = self.workdir / f"requests-{stamp}.jsonl"
        log_args = ("--log", str(log_path)) if log else ()
        try:
            with tp.mock_server(self.workdir, *log_args, *server_args) as server:
                cmd = [
                    sys.executable, "-m", "batchrunner", "run", str(input_path),
                    "--server-url", server.url, "--model", tp.MODEL, "--quiet",
                    "--summary-json", str(run_dir / "summary.json"),
                    "-o", str(run_dir / "out.jsonl"), "--dead-letter", str(run_dir / "dead.jsonl"),
                    *run_args,
                ]  # fmt: skip
                tp.wait_for_idle(self.wait_idle)
                cpu0, busy0 = server.cpu(), tp.machine_busy_seconds()
                child, m.peak_rss_mb = run_child_rss(cmd, self.env, self.workdir, timeout)
                m.server_cpu_s = server.cpu() - cpu0
                busy = tp.machine_busy_seconds() - busy0
                m.server_stats = server.stats()
            # Stopping the server flushed its log: one line per request, in arrival order.
            if log:
                read_log(m, log_path)
            summary_path = run_dir / "summary.json"
            if summary_path.exists():
                m.summary = orjson.loads(summary_path.read_bytes())
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
            log_path.unlink(missing_ok=True)
        m.returncode, m.wall_s, m.cpu_s = child.returncode, child.wall_s, child.cpu_s
        m.stderr_tail = child.stderr.strip()[-500:]
        m.other_cores = max(busy - child.cpu_s - m.server_cpu_s, 0.0) / child.wall_s
        self.busiest_other = max(self.busiest_other, m.other_cores)
        return m


# --- figures from a server log -------------------------------------------------------------------


def read_log(m: Measured, path: Path) -> None:
    """The chat arrivals of a server's log into ``m``, and when the last first attempt came."""
    seen: set[str] = set()
    with path.open("rb") as f:
        for line in f:
            e = orjson.loads(line)
            if e["path"] == tp.ENDPOINT:
                m.chats.append((float(e["t"]), e["status"]))
                if e["custom"] not in seen:
                    seen.add(e["custom"])
                    m.last_first = float(e["t"])


def between(times: Sequence[float], start: float, end: float = float("inf")) -> list[float]:
    return [t for t in times if start <= t <= end]


def max_window(times: Sequence[float], width: float = 1.0) -> int:
    """Most arrivals in any sliding window of ``width`` seconds (as the mock's limiter sees)."""
    best = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


def per_second(times: Sequence[float], t0: float) -> list[int]:
    """Arrivals in each whole second [t0 + k, t0 + k + 1) up to the last arrival."""
    if not times:
        return []
    counts = [0] * (int(times[-1] - t0) + 1)
    for t in times:
        counts[int(t - t0)] += 1
    return counts


def statuses(m: Measured) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, status in m.chats:
        counts[str(status)] = counts.get(str(status), 0) + 1
    return counts


def completeness(m: Measured) -> list[str]:
    """What makes a run's figures suspect: a bad exit or not every line answered."""
    problems = []
    if m.returncode != 0:
        problems.append(f"exit {m.returncode}: {m.stderr_tail}")
    ok = int(m.summary.get("ok", 0))
    if ok != m.requests:
        problems.append(f"{ok} of {m.requests} lines answered (summary: {m.summary})")
    return problems


def run_line(m: Measured) -> str:
    return (
        f"    [{m.label}: wall {m.wall_s:.1f} s, client CPU {m.cpu_s:.1f} s, server CPU"
        f" {m.server_cpu_s:.1f} s, other processes {m.other_cores:.2f} cores]"
    )


# --- targets -------------------------------------------------------------------------------------


@dataclass
class Target:
    bench: str
    what: str
    value: float | None
    target: str
    met: bool | None  # None: a figure for information, no target
    note: str = ""

    def line(self) -> str:
        value = "n/a" if self.value is None else f"{self.value:.3f}".rstrip("0").rstrip(".")
        verdict = "-" if self.met is None else tp.verdict(self.met)
        note = f"  ({self.note})" if self.note else ""
        return f"  {self.bench}  {self.what:<44} {value:>9}  {self.target:<12} {verdict}{note}"


@dataclass
class Result:
    figures: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def say(text: str = "") -> None:
    print(text, flush=True)


# --- P1 rate precision ---------------------------------------------------------------------------


def p1(suite: Suite) -> Result:
    res = Result()
    seconds = 3.0 if suite.quick else 10.0
    say(f"\nP1 rate precision: --rps R against --limit-rps R, {seconds:g} s each, adaptive pool")
    for cap in P1_RATES:
        n = int(cap * seconds)
        m = suite.run(
            f"rps {cap:g}", suite.input("short", n), n,
            server_args=("--limit-rps", f"{cap:g}"), run_args=("--rps", f"{cap:g}"),
        )  # fmt: skip
        times = [t for t, _ in m.chats]
        counts = statuses(m)
        n429 = counts.get("429", 0)
        later = between(times, times[0] + 1.0) if times else []
        achieved = tp.rate(later)
        window = max_window(times)
        seconds_full = per_second(times, times[0])[1:-1] if times else []
        refused_at = [t - times[0] for t, s in m.chats if s == 429]
        fig = {
            "cap": cap, "requests": n, "achieved_after_1s": achieved,
            "achieved_ratio": achieved / cap, "max_1s_window": window,
            "server_max_1s_window_all_paths": m.server_stats.get("max_1s_window"),
            "status_counts": counts, "retries_429": m.summary.get("retry_causes", {}).get("429", 0),
            "per_second": per_second(times, times[0]) if times else [],
            "429_at_s": refused_at, "run": m.figures(),
        }  # fmt: skip
        res.figures[f"rps_{cap:g}"] = fig
        res.problems += [f"rps {cap:g}: {p}" for p in completeness(m)]
        say(
            f"  --rps {cap:g}: {len(times)} arrivals, achieved after the first second"
            f" {achieved:.2f}/s = {achieved / cap:.4f} of the cap; largest sliding 1-s window"
            f" {window} (cap + 1 = {cap + 1:g}); 429s {n429}"
        )
        if seconds_full:
            say(
                f"    whole seconds between the first and the last: min {min(seconds_full)}"
                f" max {max(seconds_full)} arrivals"
            )
        if refused_at:
            say("    429s at (s after the first arrival): "
                + " ".join(f"{t:.3f}" for t in refused_at[:20]))  # fmt: skip
        say(run_line(m))
        res.targets += [
            Target("P1", f"--rps {cap:g}: achieved after 1st s / cap", achieved / cap,
                   f">= {P1_ACHIEVED}", achieved / cap >= P1_ACHIEVED),
            Target("P1", f"--rps {cap:g}: largest sliding 1-s window", window,
                   f"<= {cap + 1:g}", window <= cap + 1),
            Target("P1", f"--rps {cap:g}: 429s", n429, "== 0", n429 == 0),
        ]  # fmt: skip
    return res


# --- P2 overhead ---------------------------------------------------------------------------------


def p2(suite: Suite) -> Result:
    res = Result()
    q = suite.quick
    n, n_sdk, repeats = (5000, 200, 3) if q else (20_000, 1500, 5)
    say(
        f"\nP2 overhead: zero latency, no cap, concurrency {P2_CONCURRENCY}; {repeats} pairs of"
        f" runs (bare loop, then batchrunner --client http) of {n} requests; {n_sdk} requests"
        " via --client sdk; the ratio is the median of the pairs' ratios"
    )
    bench = tp.Bench(suite.workdir, P2_CONCURRENCY, suite.wait_idle)
    pairs: list[tuple[tp.Phase, tp.Phase]] = []
    for _ in range(repeats):  # a pair runs back to back: drift in the machine hits both alike
        bare_run = bench.phase("bare", "bare", n)[0]
        pairs.append((bare_run, bench.phase("http", "http", n)[0]))
    sdk = bench.phase("sdk", "sdk", n_sdk)[0]
    # The same runner with the pool left to size itself (no --concurrency), for information.
    auto = suite.run("http, adaptive pool", suite.input("short", n), n)
    auto_rate = tp.rate([t for t, _ in auto.chats])
    bare_runs, http_runs = [b for b, _ in pairs], [h for _, h in pairs]
    for p in (*bare_runs, *http_runs, sdk):
        suite.busiest_other = max(suite.busiest_other, p.other_load_cores)
        res.problems += [f"{p.name}: {x}" for x in p.problems]
    res.problems += [f"adaptive pool: {x}" for x in completeness(auto)]
    ratios = [h.calls_per_s / b.calls_per_s if b.calls_per_s else 0.0 for b, h in pairs]
    for i, ((b, h), r) in enumerate(zip(pairs, ratios, strict=True), start=1):
        sat = ", SERVER SATURATED" if b.server_saturated else ""
        say(
            f"  pair {i}: bare {b.calls_per_s:6.0f} calls/s (server {b.server_cores:.2f} cores"
            f"{sat}; other processes {b.other_load_cores:.2f})  http {h.calls_per_s:6.0f}"
            f" calls/s (server {h.server_cores:.2f}; other {h.other_load_cores:.2f})"
            f"  http/bare {r:.3f}"
        )
    vs_bare = sorted(ratios)[(len(ratios) - 1) // 2]
    bare, http = tp.median_phase(bare_runs), tp.median_phase(http_runs)
    vs_sdk = http.calls_per_s / sdk.calls_per_s if sdk.calls_per_s else 0.0
    auto_vs_bare = auto_rate / bare.calls_per_s if bare.calls_per_s else 0.0
    say(
        f"  sdk {sdk.calls_per_s:.0f} calls/s (other processes {sdk.other_load_cores:.2f});"
        f" http without --concurrency (adaptive pool) {auto_rate:.0f} calls/s"
        f" (other processes {auto.other_cores:.2f})"
    )
    say(
        f"  http/bare median of pairs {vs_bare:.3f} (medians of each: {bare.calls_per_s:.0f}"
        f" and {http.calls_per_s:.0f}); http/sdk {vs_sdk:.1f}; adaptive pool / bare median"
        f" {auto_vs_bare:.3f}"
    )
    if any(b.server_saturated for b in bare_runs):
        say("  NOTE: the server saturated one core during a bare loop: the bare figure is then"
            " the server's ceiling, and http/bare flatters the runner")  # fmt: skip
    res.figures = {
        "requests": n, "sdk_requests": n_sdk, "repeats": repeats,
        "bare_runs": [asdict(p) for p in bare_runs], "http_runs": [asdict(p) for p in http_runs],
        "sdk": asdict(sdk), "pair_ratios": ratios,
        "adaptive_pool_calls_per_s": auto_rate, "adaptive_pool_run": auto.figures(),
        "http_vs_bare": vs_bare, "http_vs_sdk": vs_sdk, "adaptive_pool_vs_bare": auto_vs_bare,
    }  # fmt: skip
    res.targets += [
        Target("P2", "http calls/s / bare aiohttp loop", vs_bare, f">= {P2_VS_BARE}",
               vs_bare >= P2_VS_BARE),
        Target("P2", "http calls/s / sdk path", vs_sdk, "none", None, "for information"),
        Target("P2", "adaptive pool (no --concurrency) / bare", auto_vs_bare, "none", None,
               "for information"),
    ]  # fmt: skip
    return res


# --- P3 latency hiding ---------------------------------------------------------------------------


def p3(suite: Suite) -> Result:
    res = Result()
    seconds = 5.0 if suite.quick else 12.0
    n = int(P3_RPS * seconds)
    say(
        f"\nP3 latency hiding: server latency {P3_LATENCY_MS:g} ms, --rps {P3_RPS:g}, no"
        f" --concurrency, {n} requests (~{seconds:g} s); measured from {P3_SKIP_S:g} s on"
    )
    m = suite.run(
        "latency", suite.input("short", n), n,
        server_args=("--latency-ms", f"{P3_LATENCY_MS:g}"), run_args=("--rps", f"{P3_RPS:g}"),
    )  # fmt: skip
    times = [t for t, _ in m.chats]
    steady = between(times, times[0] + P3_SKIP_S) if times else []
    achieved = tp.rate(steady)
    whole = tp.rate(times)
    seconds_list = per_second(times, times[0]) if times else []
    res.problems += completeness(m)
    say(
        f"  achieved from {P3_SKIP_S:g} s on {achieved:.2f}/s = {achieved / P3_RPS:.4f} of"
        f" {P3_RPS:g}; over the whole run {whole:.2f}/s; run summary"
        f" {m.summary.get('requests_per_s', 0)}/s (start-up included)"
    )
    say(f"  arrivals per second: {' '.join(map(str, seconds_list))}")
    say(run_line(m))
    res.figures = {
        "requests": n, "achieved_steady": achieved, "achieved_ratio": achieved / P3_RPS,
        "achieved_whole_run": whole, "per_second": seconds_list, "run": m.figures(),
    }  # fmt: skip
    res.targets.append(
        Target("P3", f"achieved from {P3_SKIP_S:g} s on / {P3_RPS:g}", achieved / P3_RPS,
               f">= {P3_ACHIEVED}", achieved / P3_RPS >= P3_ACHIEVED)
    )  # fmt: skip
    return res


# --- P4 memory -----------------------------------------------------------------------------------


def p4(suite: Suite) -> Result:
    res = Result()
    sizes = P4_SIZES_QUICK if suite.quick else P4_SIZES_FULL
    say(
        f"\nP4 memory: peak RSS of the runner for {', '.join(f'{s:,}' for s in sizes)} lines"
        " (short prompts, zero latency, no cap, adaptive pool)"
        + ("; --quick: the 1,000,000-line run is left out" if suite.quick else "")
    )
    rows: list[dict[str, Any]] = []
    for n in sizes:
        path = suite.input("short", n)
        m = suite.run(f"{n:,} lines", path, n, log=False, timeout=1200)
        path.unlink()
        res.problems += [f"{n:,} lines: {p}" for p in completeness(m)]
        rate = n / m.wall_s
        rows.append({"lines": n, "peak_rss_mb": m.peak_rss_mb, "wall_s": m.wall_s,
                     "lines_per_s_wall": rate, "run": m.figures()})  # fmt: skip
        say(
            f"  {n:>9,} lines  peak RSS {m.peak_rss_mb:6.1f} MB  wall {m.wall_s:6.1f} s"
            f"  ({rate:,.0f} lines/s incl. start-up; summary"
            f" {m.summary.get('requests_per_s', 0):,.0f} req/s)  other processes"
            f" {m.other_cores:.2f} cores"
        )
    small, big = rows[0], rows[-1]
    growth = big["peak_rss_mb"] / small["peak_rss_mb"] if small["peak_rss_mb"] else 0.0
    per_line = (big["peak_rss_mb"] - small["peak_rss_mb"]) * 2**20 / (big["lines"] - small["lines"])
    say(
        f"  {big['lines']:,} vs {small['lines']:,} lines: x{growth:.3f} peak RSS"
        f" ({per_line:+.1f} bytes per extra line)"
    )
    res.figures = {"sizes": rows, "growth": growth, "bytes_per_extra_line": per_line}
    at = f"{big['lines']:,}"
    note = "" if big["lines"] >= 1_000_000 else "quick: measured at 100k, not 1M"
    res.targets += [
        Target("P4", f"peak RSS {at} / {small['lines']:,} lines (flat)", growth,
               f"<= {P4_FLAT}", growth <= P4_FLAT),
        Target("P4", f"peak RSS at {at} lines, MB", big["peak_rss_mb"], f"<= {P4_MAX_MB:g}",
               big["peak_rss_mb"] <= P4_MAX_MB, note),
    ]  # fmt: skip
    return res


# --- P5 tokens per minute ------------------------------------------------------------------------


def p5(suite: Suite) -> Result:
    res = Result()
    per_request = mock_tokens(tpm_prompt(0), MAX_TOKENS)
    sizes = {mock_tokens(tpm_prompt(i), MAX_TOKENS) for i in (0, 9, 99_999, 1_234_567)}
    assert sizes == {per_request}, sizes  # every request costs the same
    per_minute = P5_TPM / per_request
    seconds = 20.0 if suite.quick else 73.0
    skip = P5_QUICK_SKIP_S if suite.quick else P5_SKIP_S
    n = int(per_minute / 60 * seconds)
    say(
        f"\nP5 TPM: --tpm {P5_TPM:,} against --limit-tpm {P5_TPM:,}; {per_request} tokens per"
        f" request by the mock's count ({per_minute:g} requests/min), {n} requests"
        f" (~{seconds:g} s); measured from {skip:g} s on"
    )
    if suite.quick:
        say("  --quick: the run is shorter than the server's 60-s window, so it only covers the"
            " first window (the server's limit cannot bite yet)")  # fmt: skip
    m = suite.run(
        "tpm", suite.input("tpm", n, tpm_prompt), n,
        server_args=("--limit-tpm", str(P5_TPM)), run_args=("--tpm", str(P5_TPM)),
    )  # fmt: skip
    res.problems += completeness(m)
    counts = statuses(m)
    n429 = counts.get("429", 0)
    times = [t for t, _ in m.chats]
    ok = [t for t, s in m.chats if s == 200]
    t0 = times[0] if times else 0.0
    steady = between(ok, t0 + skip)
    used_per_min = tp.rate(steady) * per_request * 60
    used = used_per_min / P5_TPM
    # The minute [t0 + skip, t0 + skip + 60), when the run is that long.
    minute = None
    if ok and ok[-1] >= t0 + skip + 60:
        minute = len(between(ok, t0 + skip, t0 + skip + 60 - 1e-9)) * per_request / P5_TPM
    peak = max_window(ok, 60.0) * per_request / P5_TPM
    server_tokens = m.server_stats.get("tokens", {})
    charged = int(server_tokens.get("prompt", 0)) + int(server_tokens.get("completion", 0))
    share_429 = n429 / len(times) if times else 0.0
    if charged != per_request * counts.get("200", 0):
        res.problems.append(
            f"the server charged {charged} tokens for {counts.get('200', 0)} answers, not"
            f" {per_request} each: the token figures are off"
        )
    say(
        f"  budget used from {skip:g} s to the end: {used_per_min:,.0f} tokens/min ="
        f" {used:.4f} of {P5_TPM:,}"
        + (f"; in the minute [{skip:g} s, {skip + 60:g} s): {minute:.4f}" if minute else "")
    )
    say(
        f"  busiest sliding 60 s at the server {peak:.4f} of the budget; the server charged"
        f" {charged:,} tokens for {counts.get('200', 0)} answers"
        f" ({charged / max(counts.get('200', 1), 1):.1f} each)"
    )
    say(f"  429s {n429} of {len(times)} requests = {share_429:.4f}; run retried"
        f" {m.summary.get('retry_causes', {}).get('429', 0)} for 429")  # fmt: skip
    say(f"  answered per second: {' '.join(map(str, per_second(ok, t0)))}")
    say(run_line(m))
    res.figures = {
        "tpm": P5_TPM, "tokens_per_request": per_request, "requests": n, "skip_s": skip,
        "used_tokens_per_min": used_per_min, "used_ratio": used, "minute_ratio": minute,
        "peak_60s_ratio": peak, "server_tokens": charged, "status_counts": counts,
        "share_429": share_429, "per_second_200": per_second(ok, t0), "run": m.figures(),
    }  # fmt: skip
    note = "quick: first window only" if suite.quick else ""
    res.targets += [
        Target("P5", "token budget used (steady part)", used, f">= {P5_USED}", used >= P5_USED,
               note),
        Target("P5", "share of requests answered 429", share_429, f"<= {P5_MAX_429}",
               share_429 <= P5_MAX_429, note),
    ]  # fmt: skip
    return res


# --- P6 AIMD against three limiters --------------------------------------------------------------


def steady(m: Measured, since: float) -> list[tuple[float, int | str]]:
    """The chat arrivals from ``since`` s after the first until the last item's first
    attempt: before the last retries trickle in alone, when no item is left to send."""
    t0 = m.chats[0][0] if m.chats else 0.0
    return [(t, s) for t, s in m.chats if t0 + since <= t <= m.last_first]


def p6(suite: Suite) -> Result:
    res = Result()
    seconds = 15.0 if suite.quick else 25.0
    n = int(P6_LIMIT * seconds)
    say(
        f"\nP6 AIMD: --rps {P6_RPS:g} against --limit-rps {P6_LIMIT:g} counted each way"
        f" (--limit-algo), and without --rps; latency {P6_LATENCY_MS:g} ms, no --concurrency,"
        f" {n} requests; measured from {P6_SETTLE_S:g} s on until the last first attempt"
    )
    for algo, rps in [(a, P6_RPS) for a in P6_ALGOS] + [(P6_NO_RPS_ALGO, None)]:
        label = f"{algo}{'' if rps else ', no --rps'}"
        server = ("--limit-rps", f"{P6_LIMIT:g}", "--limit-algo", algo,
                  "--latency-ms", f"{P6_LATENCY_MS:g}")  # fmt: skip
        run_args = ("--rps", f"{rps:g}") if rps else ()
        m = suite.run(f"aimd {label}", suite.input("short", n), n, server, run_args)
        res.problems += completeness(m)
        figures, targets = p6_figures(m, label)
        res.figures[label] = figures
        res.targets += targets
    return res


def p6_figures(m: Measured, label: str) -> tuple[dict[str, Any], list[Target]]:
    times = [t for t, _ in m.chats]
    t0 = times[0] if times else 0.0
    refused = [t for t, s in m.chats if s == 429]
    late = steady(m, P6_SETTLE_S)
    admitted = tp.rate([t for t, s in late if s == 200])
    late_429 = sum(1 for _, s in late if s == 429) / len(late) if late else 0.0
    share_429 = len(refused) / len(times) if times else 0.0
    say(
        f"  {label}: from {P6_SETTLE_S:g} s on {admitted:.2f} answered 200/s ="
        f" {admitted / P6_LIMIT:.4f} of {P6_LIMIT:g}, {late_429:.4f} of the requests 429;"
        f" over the run {len(refused)} 429s of {len(times)} requests = {share_429:.4f}"
    )
    say(f"    arrivals per second: {' '.join(map(str, per_second(times, t0)))}")
    say(f"    429s per second:     {' '.join(map(str, per_second(refused, t0)))}")
    say(run_line(m))
    figures = {
        "requests": m.requests, "admitted_after_settle": admitted,
        "admitted_ratio": admitted / P6_LIMIT, "share_429_after_settle": late_429,
        "share_429": share_429, "status_counts": statuses(m),
        "per_second": per_second(times, t0), "per_second_429": per_second(refused, t0),
        "run": m.figures(),
    }  # fmt: skip
    ratio = admitted / P6_LIMIT
    targets = [
        Target("P6", f"{label}: 200/s from {P6_SETTLE_S:g} s / {P6_LIMIT:g}", ratio,
               f">= {P6_ACHIEVED}", ratio >= P6_ACHIEVED),
        Target("P6", f"{label}: 429s from {P6_SETTLE_S:g} s on", late_429,
               f"< {P6_MAX_429}", late_429 < P6_MAX_429),
        Target("P6", f"{label}: 429s over the run", share_429, "none", None, "for information"),
    ]  # fmt: skip
    return figures, targets


# --- P7 random 429s ------------------------------------------------------------------------------


def p7(suite: Suite) -> Result:
    res = Result()
    n = P7_REQUESTS_QUICK if suite.quick else P7_REQUESTS
    say(
        f"\nP7 random 429s: --rps {P7_RPS:g}, a share {P7_SHARE:g} of the requests answered 429"
        f" at random, with a 'rate limited' body or a 'capacity exceeded' one; {n} requests;"
        " requests sent a second until the last first attempt"
    )
    for fault in ("429", "capacity"):
        m = suite.run(
            f"random {fault}", suite.input("short", n), n,
            server_args=("--error-rate", f"{fault}={P7_SHARE:g}"),
            run_args=("--rps", f"{P7_RPS:g}"),
        )  # fmt: skip
        res.problems += completeness(m)
        sent = tp.rate([t for t, _ in steady(m, 0.0)])
        counts = statuses(m)
        say(
            f"  {fault}: {sent:.2f} requests/s = {sent / P7_RPS:.4f} of {P7_RPS:g}; statuses"
            f" {counts}; the run took {m.wall_s:.1f} s"
        )
        times = [t for t, _ in m.chats]
        say(f"    arrivals per second: {' '.join(map(str, per_second(times, times[0])))}")
        say(run_line(m))
        res.figures[fault] = {
            "requests": n, "sent_per_s": sent, "sent_ratio": sent / P7_RPS,
            "status_counts": counts, "per_second": per_second(times, times[0]),
            "run": m.figures(),
        }  # fmt: skip
        res.targets.append(
            Target("P7", f"{fault} bodies: sent/s / {P7_RPS:g}", sent / P7_RPS,
                   f">= {P7_SENT}", sent / P7_RPS >= P7_SENT)
        )  # fmt: skip
    return res


RUNNERS: dict[str, Callable[[Suite], Result]] = {
    "P1": p1, "P2": p2, "P3": p3, "P4": p4, "P5": p5, "P6": p6, "P7": p7,
}  # fmt: skip


# --- driving -------------------------------------------------------------------------------------


def parse_only(text: str | None) -> list[str]:
    if not text:
        return list(BENCHMARKS)
    chosen = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"--only: unknown {', '.join(unknown)}; choose from {BENCHMARKS}")
    return [b for b in BENCHMARKS if b in chosen]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes: CI smoke run")
    parser.add_argument("--only", metavar="P1,P3", help="run only these benchmarks")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument(
        "--wait-idle", type=float, default=0.0, metavar="S",
        help="before each run, wait up to S seconds for other processes to go quiet",
    )  # fmt: skip
    args = parser.parse_args(argv)
    chosen = parse_only(args.only)
    began = time.perf_counter()
    revision = tp.package_revision()
    say(
        f"batchrunner benchmark suite ({'quick' if args.quick else 'full'}): {', '.join(chosen)};"
        f" {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, package at {revision}"
    )
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="batchrunner-suite-") as tmp:
        suite = Suite(Path(tmp), args.quick, args.wait_idle)
        for name in chosen:
            started = time.perf_counter()
            results[name] = RUNNERS[name](suite)
            results[name].figures["elapsed_s"] = time.perf_counter() - started
            for problem in results[name].problems:
                say(f"  INVALID RUN: {problem}")

    targets = [t for r in results.values() for t in r.targets]
    say("\ntargets (each figure from one run of this invocation)")
    for t in targets:
        say(t.line())
    if suite.busiest_other > tp.BUSY_MACHINE:
        say(
            f"  WARNING: other processes used up to {suite.busiest_other:.2f} cores during a"
            f" run: on {os.cpu_count()} CPUs that takes CPU from the runner and the server;"
            " throughput figures (P2, P4 wall times) are depressed. Re-run when idle."
        )
    problems = [p for r in results.values() for p in r.problems]
    if problems:
        say(f"  WARNING: {len(problems)} run(s) did not complete cleanly (INVALID RUN above)")
    elapsed = time.perf_counter() - began
    say(f"\nsuite took {elapsed:.0f} s")
    if args.json:
        figures = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "package_revision": revision,
            "quick": args.quick,
            "benchmarks": {name: r.figures for name, r in results.items()},
            "targets": [asdict(t) for t in targets],
            "problems": problems,
            "busiest_other_cores": suite.busiest_other,
            "elapsed_s": elapsed,
        }
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
        say(f"figures written to {args.json}")
    return 1 if problems else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up the temp dir
    sys.exit(main())
