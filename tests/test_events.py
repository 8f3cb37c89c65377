"""The run's events in process: what each part reports and when, the JSON-lines sink, the
plain progress line and its ETA. The same log through the CLI is in test_e2e_shards.py."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from test_engine_inprocess import FakeClient, fail, make_config, ok

from batchrunner.cli.logjson import JsonLines, open_log
from batchrunner.cli.progress import Eta, ProgressView
from batchrunner.engine.events import NO_EVENTS, Event, Events
from batchrunner.engine.housekeeping import _report_cut
from batchrunner.engine.run import Engine
from batchrunner.engine.stats import RunStats
from batchrunner.errors import ConfigError

CANARY = "sk-canary-5f3a9e1c7d2b4e6f8a0c"


def run_logged(config: Any, client: FakeClient) -> tuple[RunStats, list[Event]]:
    events: list[Event] = []
    engine = Engine(config, client=client, seed=1, events=Events(events.append))
    return anyio.run(engine.run, backend="asyncio"), events


def named(events: list[Event], name: str) -> list[Event]:
    return [e for e in events if e["event"] == name]


def test_no_events_reports_nothing() -> None:
    assert not NO_EVENTS.on
    NO_EVENTS.emit("anything", x=1)
    NO_EVENTS.retry("a", 1, fail("timeout", None), 0.5)  # returns before building anything


def test_a_run_reports_start_retries_dead_letters_and_end(tmp_path: Path) -> None:
    rows: list[Any] = [{"custom_id": f"p{i}", "prompt": f"p{i}"} for i in range(8)]
    rows.append("a string")  # a JSON line, but not an object
    cfg = make_config(tmp_path, rows, max_attempts=3, api_key=CANARY)
    client = FakeClient(
        {
            "p1": [fail("server_error", 503), fail("rate_limited", 429), ok()],
            "p2": [fail("bad_request", 400)],
            "p3": [fail("timeout", None)],
        }
    )
    stats, events = run_logged(cfg, client)

    assert events[0]["event"] == "run_start" and events[-1]["event"] == "run_end"
    assert all(e["ts"].endswith("Z") and len(e["ts"]) == 24 for e in events)
    start = events[0]
    assert start["options"]["max_attempts"] == 3 and start["input_lines"] == 9
    assert start["options"]["input"] == str(cfg.input_path)
    retries = [(e["id"], e["attempt"], e["cause"]) for e in named(events, "retry")]
    assert sorted(retries) == [
        ("p1", 1, "503"), ("p1", 2, "429"), ("p3", 1, "timeout"), ("p3", 2, "timeout"),
    ]  # fmt: skip
    assert all(e["wait_s"] >= 0 for e in named(events, "retry"))
    dead = {(e["id"], e["line"], e["type"], e["status"]) for e in named(events, "dead_letter")}
    assert dead == {
        ("p2", 3, "bad_request", 400),
        ("p3", 4, "retries_exhausted", None),
        (None, 9, "not_an_object", None),
    }
    assert events[-1]["summary"] == stats.as_dict()
    assert CANARY not in orjson.dumps(events).decode()


def test_a_tripped_breaker_is_reported_once(tmp_path: Path) -> None:
    refused = {f"p{i}": [fail("unauthorized", 401)] for i in range(6)}
    _, events = run_logged(make_config(tmp_path, 6, concurrency=1), FakeClient(refused))
    (trip,) = named(events, "breaker_trip")
    assert trip["reason"] == "fatal" and "401 unauthorized" in trip["message"]


def test_a_spent_quota_is_reported_as_a_pause(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, 6, concurrency=1)
    _, events = run_logged(cfg, FakeClient({"p2": [fail("quota_exceeded", 429)]}))
    (pause,) = named(events, "pause")
    assert pause["reason"] == "quota" and "quota" in pause["message"]
    assert events[-1]["summary"]["stop_reason"] == "quota"


class _Gates:
    """What the tick reads of the gates."""

    def __init__(self, rate: float | None, pool: int, share: float) -> None:
        self.rate, self.pool, self.share_429 = rate, pool, share


def test_a_rate_cut_is_reported_with_the_old_and_new_rate() -> None:
    events: list[Event] = []
    stats = RunStats(current_rps=50.0, pool=10)
    _report_cut(_Gates(42.5, 10, 0.2), stats, Events(events.append))  # type: ignore[arg-type]
    _report_cut(_Gates(55.0, 10, 0.0), stats, Events(events.append))  # type: ignore[arg-type]
    uncapped = RunStats(current_rps=None, pool=32)
    _report_cut(_Gates(None, 22, 0.1), uncapped, Events(events.append))  # type: ignore[arg-type]
    cuts = [(e["limit"], e["old"], e["new"]) for e in events]
    assert cuts == [("rps", 50.0, 42.5), ("pool", 32, 22)]  # growth is not reported
    assert events[0]["why"] == "429s: 20% of recent answers"


def test_json_lines_are_whole_and_appended(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    for run in range(2):  # a resumed run continues the log
        with JsonLines(path) as log:
            events = Events(log)
            events.emit("hello", run=run, where=tmp_path, long="x" * 100_000)
            events.batch_job("job-1", "RUNNING", {"total": 10, "succeeded": 3})
    lines = path.read_bytes().splitlines()
    parsed = [orjson.loads(line) for line in lines]
    assert [(p["event"], p.get("run")) for p in parsed] == [
        ("hello", 0), ("batch_job", None), ("hello", 1), ("batch_job", None),
    ]  # fmt: skip
    assert parsed[1] == parsed[1] | {"job_id": "job-1", "status": "RUNNING", "succeeded": 3}
    assert parsed[0]["where"] == str(tmp_path)


def test_the_log_spells_the_settings_a_stop_names_as_flags(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    stats = RunStats(stop_reason="budget", stop_message="would pass `max_cost`")
    with JsonLines(path) as log:
        Events(log).halted("budget", "would pass `max_cost`")
        Events(log).run_end(stats)
    halt, end = (orjson.loads(line) for line in path.read_bytes().splitlines())
    assert halt["message"] == "would pass --max-cost"
    assert end["summary"]["stop_message"] == "would pass --max-cost"


def test_json_lines_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    with JsonLines(Path("-")) as log:
        Events(log).emit("hi")
    assert orjson.loads(capfd.readouterr().err)["event"] == "hi"


def test_the_log_is_never_one_of_the_runs_files(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, 1)
    for path in (cfg.output_path, cfg.input_path, tmp_path / "." / "dead.jsonl"):
        with pytest.raises(ConfigError, match="log_json must be a file other than"):
            open_log(path, cfg)
    with pytest.raises(ConfigError, match="cannot open the --log-json file"):
        open_log(tmp_path / "no" / "such" / "dir.jsonl", cfg)


def test_eta_reads_the_recent_completion_rate() -> None:
    eta = Eta()
    assert eta.update(0.0, 0, 100) is None  # nothing completed yet
    assert eta.update(10.0, 20, 100) == pytest.approx(40.0)  # 2/s, 80 left
    for t in range(11, 100):  # then 1/s for a long while: the old rate is forgotten
        left = eta.update(float(t), 20 + (t - 10), 1000)
    assert left == pytest.approx(1000 - 109, rel=0.02)
    assert eta.update(100.0, 1000, 1000) == 0.0


def test_the_plain_line_has_time_done_of_total_and_eta() -> None:
    stream = io.StringIO()
    stats = RunStats(total_lines=200, ok=50)
    view = ProgressView(stats, quiet=False, stream=stream, interval=0.0)
    view.update()
    (line,) = stream.getvalue().splitlines()
    stamp, rest = line.split(" ", 1)
    assert stamp.endswith("Z") and stamp[4] == "-" and stamp[10] == "T"
    assert rest.startswith("progress: 50/200 (25.0%) · ETA ")


def test_progress_events_every_interval() -> None:
    events: list[Event] = []
    stats = RunStats(total_lines=10, ok=4, dead=1)
    view = ProgressView(
        stats, quiet=True, stream=io.StringIO(), interval=0.0, events=Events(events.append)
    )
    view.update()
    (p,) = events
    assert (p["done"], p["total"], p["percent"], p["ok"], p["dead"]) == (5, 10, 50.0, 4, 1)
    assert {"eta_s", "requests_per_s", "cost_usd", "prompt_tokens"} <= set(p)
    quiet = ProgressView(stats, quiet=True, stream=io.StringIO(), interval=3600.0)
    quiet.update()  # no events, no line: nothing to see
