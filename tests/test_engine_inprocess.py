"""The run machinery in process: the real Engine, workers, gates, outcomes and breaker with a
fake client, zero backoff, and the virtual clock where time matters.

What the end-to-end tests show through the CLI, specified here in milliseconds: the
breaker's rule, the quota pause, the graceful drain, the budget stop, retries, and every id
exactly once in the files.
"""

from __future__ import annotations

import asyncio
import bisect
import selectors
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import orjson
import pytest
from conftest import read_jsonl, write_jsonl
from virtual_clock import VirtualClockSelector, VirtualTimeLoop

from batchrunner.config import RunConfig
from batchrunner.engine.accounting import Accounting, Estimate
from batchrunner.engine.control import RunControl, Stop
from batchrunner.engine.run import Engine
from batchrunner.engine.stats import RunStats
from batchrunner.input.lines import Item, parse_line, read_input
from batchrunner.limits.pricing import CostMeter, price_table
from batchrunner.limits.spending import Spending
from batchrunner.limits.tokens import CHAT, estimate_prompt_tokens
from batchrunner.vocabulary import Failure, FailureType, Success

MODEL = "mistral-small-latest"
T = TypeVar("T")
Reply = Success | Failure


def ok(prompt: int = 10, completion: int = 5) -> Success:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return Success({"object": "chat.completion", "usage": usage}, prompt, completion)


def fail(type_: FailureType, status: int | None, retry_after: float | None = None) -> Failure:
    return Failure(type=type_, status_code=status, message=f"{type_}!", retry_after=retry_after)


class FakeClient:
    """Answers from a script keyed by the prompt: one reply per attempt, the last one
    repeating; an unscripted prompt succeeds. With ``hold``, every request waits for it."""

    def __init__(self, script: dict[str, list[Reply]] | None = None, hold: bool = False) -> None:
        self.script = script or {}
        self.sent: list[str] = []
        self.sent_at: list[float] = []
        self.in_flight = 0
        self.hold = anyio.Event() if hold else None
        self._busy: tuple[int, anyio.Event] | None = None

    async def send(self, endpoint: str, body: dict[str, Any]) -> Success | Failure:
        key = body["messages"][0]["content"]
        attempt = self.sent.count(key)
        self.sent.append(key)
        self.sent_at.append(anyio.current_time())
        self.in_flight += 1
        try:
            if self._busy is not None and self.in_flight >= self._busy[0]:
                self._busy[1].set()
            if self.hold is not None:
                await self.hold.wait()
            else:
                await anyio.lowlevel.checkpoint()
        finally:
            self.in_flight -= 1
        replies = self.script.get(key, [ok()])
        return replies[min(attempt, len(replies) - 1)]

    async def in_flight_reaches(self, n: int) -> None:
        event = anyio.Event()
        self._busy = (n, event)
        await event.wait()

    async def warm_up(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def make_config(tmp_path: Path, rows: int | list[Any], **changes: Any) -> RunConfig:
    """``rows`` input lines (``p0``, ``p1``, ... whose prompt is their id), zero backoff."""
    if isinstance(rows, int):
        rows = [{"custom_id": f"p{i}", "prompt": f"p{i}"} for i in range(rows)]
    settings: dict[str, Any] = {
        "model": MODEL,
        "preflight": False,
        "backoff_base": 0.0,
        "backoff_max": 0.001,
        "fsync_interval": 3600.0,  # no sync thread while a run is on the virtual clock
    }
    settings.update(changes)
    return RunConfig(
        input_path=write_jsonl(tmp_path / "in.jsonl", rows),
        output_path=tmp_path / "out.jsonl",
        dead_letter_path=tmp_path / "dead.jsonl",
        **settings,
    )


def run(config: RunConfig, client: FakeClient) -> RunStats:
    return anyio.run(Engine(config, client=client, seed=1).run, backend="asyncio")


def files(config: RunConfig) -> tuple[list[str], list[str]]:
    """The ids in the results file and in the dead-letter file."""
    results = [r["custom_id"] for r in read_jsonl(config.output_path)]
    dead = [d["custom_id"] for d in read_jsonl(config.dead_letter_path)]
    return results, dead


def assert_exactly_once(config: RunConfig, pending: set[str]) -> None:
    """Every input id is in exactly one file once, or pending (in no file)."""
    every = [e.custom_id for e in read_input(config.input_path, config.endpoint, MODEL)]
    results, dead = files(config)
    decided = results + dead
    assert len(decided) == len(set(decided)), "an id written twice"
    assert not pending & set(decided)
    assert sorted(decided + sorted(pending)) == sorted(every)


# -- the virtual clock, with the engine's file threads ----------------------------------------


class _ThreadedClock(VirtualClockSelector):
    """The virtual clock; but with no timer at all, waits for real (a worker thread: the
    engine opens its files in threads) up to a few seconds before calling it a deadlock."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None:
            return super().select(timeout)
        ready = selectors.SelectSelector.select(self, 5.0)
        if not ready:
            raise RuntimeError("deadlock: the loop would wait forever")
        return ready


class _EngineLoop(VirtualTimeLoop):
    def __init__(self) -> None:
        self.clock = _ThreadedClock()
        asyncio.SelectorEventLoop.__init__(self, self.clock)


def run_virtual(main: Callable[[], Awaitable[T]]) -> T:
    async def wrapped() -> T:
        return await main()

    with asyncio.Runner(loop_factory=_EngineLoop) as runner:
        return runner.run(wrapped())


# -- retries ----------------------------------------------------------------------------------


def test_retries_then_success_every_id_once(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, 20, concurrency=4)
    client = FakeClient(
        {
            "p3": [fail("server_error", 500), fail("rate_limited", 429), ok()],
            "p7": [fail("timeout", None), ok()],
        }
    )
    stats = run(cfg, client)
    assert (stats.ok, stats.dead, stats.sent, stats.retries) == (20, 0, 23, 3)
    assert stats.retry_causes == {"500": 1, "429": 1, "timeout": 1}
    assert stats.retrying_now == 0 and stats.in_flight == 0 and stats.pending == 0
    assert stats.stop_reason is None
    attempts = {r["custom_id"]: r["batchrunner"]["attempts"] for r in read_jsonl(cfg.output_path)}
    assert (attempts["p3"], attempts["p7"], attempts["p0"]) == (3, 2, 1)
    assert_exactly_once(cfg, pending=set())


def test_retries_exhausted_are_dead_lettered_with_the_last_error(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, 5, max_attempts=3)
    stats = run(cfg, FakeClient({"p1": [fail("server_error", 503)]}))
    (entry,) = read_jsonl(cfg.dead_letter_path)
    assert entry["custom_id"] == "p1" and entry["attempts"] == 3
    assert entry["error"]["type"] == "retries_exhausted" and entry["error"]["status_code"] == 503
    assert (stats.ok, stats.dead, stats.sent) == (4, 1, 7)
    assert stats.dead_by_status == {"503": 1}
    assert_exactly_once(cfg, pending=set())


def test_a_long_retry_after_is_waited_out_on_the_virtual_clock(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, 3, concurrency=1)
    client = FakeClient({"p0": [fail("rate_limited", 429, retry_after=30.0), ok()]})

    async def main() -> tuple[RunStats, float]:
        start = anyio.current_time()
        stats = await Engine(cfg, client=client, seed=1).run()
        return stats, anyio.current_time() - start

    wall = time.monotonic()
    stats, elapsed = run_virtual(main)
    assert time.monotonic() - wall < 2.0
    assert elapsed >= 30.0
    retried = client.sent_at[client.sent.index("p0", 1)] - client.sent_at[0]
    assert retried >= 30.0  # never before the server said
    assert client.sent[:3] == ["p0", "p1", "p2"]  # the others did not wait behind it
    assert stats.ok == 3
    assert_exactly_once(cfg, pending=set())


def test_ordered_results_follow_the_input_despite_retries(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, 12, concurrency=4, ordered=True, reorder_buffer=5)
    client = FakeClient({"p1": [fail("server_error", 500)] * 2 + [ok()]})
    run(cfg, client)
    assert files(cfg)[0] == [f"p{i}" for i in range(12)]


# -- the breaker ------------------------------------------------------------------------------


def test_three_fatal_failures_in_a_row_at_the_start_trip_the_breaker(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, 30, concurrency=1, breaker=10)
    client = FakeClient({f"p{i}": [fail("unauthorized", 401)] for i in range(30)})
    stats = run(cfg, client)
    assert stats.stop_reason == "fatal"
    assert stats.stop_message is not None and "MISTRAL_API_KEY" in stats.stop_message
    assert client.sent == ["p0", "p1", "p2"]
    assert files(cfg) == ([], [])  # parked, then left pending: nothing dead-lettered
    assert stats.pending == 30
    assert_exactly_once(cfg, pending={f"p{i}" for i in range(30)})


def test_after_a_success_the_threshold_applies_and_parked_items_stay_pending(
    tmp_path: Path,
) -> None:
    cfg = make_config(tmp_path, 20, concurrency=1, breaker=5)
    client = FakeClient({f"p{i}": [fail("invalid_model", 400)] for i in range(1, 20)})
    stats = run(cfg, client)
    assert stats.stop_reason == "fatal"
    assert client.sent == [f"p{i}" for i in range(6)]  # p0 ok, then five in a row
    assert files(cfg) == (["p0"], [])
    assert_exactly_once(cfg, pending={f"p{i}" for i in range(1, 20)})


def test_isolated_fatal_failures_are_dead_lettered_not_tripping(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, 40, concurrency=2)
    bad = {"p5", "p17", "p30"}
    stats = run(cfg, FakeClient({p: [fail("unauthorized", 401)] for p in bad}))
    assert stats.stop_reason is None
    results, dead = files(cfg)
    assert set(dead) == bad and len(results) == 37
    assert stats.dead_by_status == {"401": 3}
    assert_exactly_once(cfg, pending=set())


def test_a_streak_broken_by_a_success_is_dead_lettered(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, 10, concurrency=1, breaker=3)
    client = FakeClient({p: [fail("forbidden", 403)] for p in ("p1", "p2", "p4", "p5")})
    stats = run(cfg, client)
    assert stats.stop_reason is None  # p3's success broke the streak: two, then two
    assert files(cfg)[1] == ["p1", "p2", "p4", "p5"]
    assert_exactly_once(cfg, pending=set())


# -- stopping by itself -----------------------------------------------------------------------


def test_a_spent_quota_pauses_the_run_and_leaves_the_item_pending(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, 30, concurrency=1)
    client = FakeClient({"p10": [fail("quota_exceeded", 429)]})
    stats = run(cfg, client)
    assert stats.stop_reason == "quota"
    assert stats.stop_message is not None and "quota" in stats.stop_message
    assert client.sent == [f"p{i}" for i in range(11)]  # no retry burnt, nothing after it
    assert stats.ok == 10 and stats.pending == 20
    assert_exactly_once(cfg, pending={f"p{i}" for i in range(10, 30)})


def test_the_budget_stops_before_it_would_be_passed(tmp_path: Path) -> None:
    rows = [{"custom_id": f"p{i}", "prompt": f"p{i}", "max_tokens": 20} for i in range(50)]
    cfg = make_config(tmp_path, rows, concurrency=1, max_tokens_total=300)
    stats = run(cfg, FakeClient())
    assert stats.stop_reason == "budget"
    assert stats.stop_message is not None
    assert stats.stop_message.startswith("budget reached") and "`max_tokens_total`" in (
        stats.stop_message
    )
    assert 0 < stats.ok < 50
    assert stats.prompt_tokens + stats.completion_tokens <= 300
    results, _ = files(cfg)
    assert_exactly_once(cfg, pending={f"p{i}" for i in range(50)} - set(results))


def test_a_request_larger_than_the_tpm_is_dead_lettered_unsent(tmp_path: Path) -> None:
    rows = [{"custom_id": f"p{i}", "prompt": f"p{i}", "max_tokens": 10} for i in range(6)]
    rows[2]["prompt"] = "p2 " + "many words here " * 200
    cfg = make_config(tmp_path, rows, tpm=600)
    client = FakeClient()
    stats = run_virtual(lambda: Engine(cfg, client=client, seed=1).run())
    (entry,) = read_jsonl(cfg.dead_letter_path)
    assert entry["custom_id"] == "p2" and entry["error"]["type"] == "too_large"
    assert entry["attempts"] == 0 and "p2" not in [s.split()[0] for s in client.sent]
    assert stats.ok == 5
    assert_exactly_once(cfg, pending=set())


# -- stopping from outside --------------------------------------------------------------------


def _stopped_run(cfg: RunConfig, stop: Callable[[Engine], None]) -> tuple[RunStats, FakeClient]:
    """A run whose first 4 requests are held until ``stop`` is called, then let go."""
    client = FakeClient(hold=True)
    engine = Engine(cfg, client=client, seed=1)

    async def main() -> RunStats:
        async with anyio.create_task_group() as tg:

            async def stop_then_release() -> None:
                await client.in_flight_reaches(4)
                stop(engine)
                assert client.hold is not None
                client.hold.set()

            tg.start_soon(stop_then_release)
            return await engine.run()

    return anyio.run(main, backend="asyncio"), client


def test_a_graceful_stop_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, 50, concurrency=4)
    stats, client = _stopped_run(cfg, lambda engine: engine.stop())
    assert stats.stop_reason == "interrupted"
    assert len(client.sent) == 4 and stats.ok == 4 and stats.pending == 46
    assert sorted(files(cfg)[0]) == sorted(client.sent)
    assert_exactly_once(cfg, pending={f"p{i}" for i in range(50)} - set(client.sent))


def test_an_abort_cancels_in_flight_requests_which_stay_pending(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, 50, concurrency=4)
    stats, client = _stopped_run(cfg, lambda engine: engine.abort())
    assert len(client.sent) == 4 and stats.ok == 0 and stats.pending == 50
    assert files(cfg) == ([], [])


def test_a_drain_that_outlasts_its_timeout_is_aborted(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, 20, concurrency=3, drain_timeout=10.0)
    client = FakeClient(hold=True)  # never let go
    engine = Engine(cfg, client=client, seed=1)

    async def main() -> tuple[RunStats, float]:
        async with anyio.create_task_group() as tg:

            async def stop() -> None:
                await client.in_flight_reaches(3)
                engine.stop()

            tg.start_soon(stop)
            start = anyio.current_time()
            stats = await engine.run()
            return stats, anyio.current_time() - start

    stats, elapsed = run_virtual(main)
    assert elapsed == pytest.approx(10.0, abs=0.1)
    assert stats.stop_reason == "interrupted" and stats.pending == 20
    assert files(cfg) == ([], [])


# -- the gates --------------------------------------------------------------------------------


def test_rps_paces_the_sends_from_the_first(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, 30, rps=5.0)
    client = FakeClient()
    stats = run_virtual(lambda: Engine(cfg, client=client, seed=1).run())
    stamps = sorted(client.sent_at)
    busiest = max(bisect.bisect_right(stamps, t + 1.0) - i for i, t in enumerate(stamps))
    assert busiest <= 5
    assert stamps[-1] - stamps[0] == pytest.approx(29 / 5, rel=0.05)
    assert stats.ok == 30


def test_bad_lines_are_dead_lettered_by_line_number_and_the_rest_sent(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, 4)
    cfg.input_path.write_bytes(cfg.input_path.read_bytes() + b"{not json\n\n")
    stats = run(cfg, FakeClient())
    dead = read_jsonl(cfg.dead_letter_path)
    assert [(d["line"], d["error"]["type"]) for d in dead] == [(5, "invalid_json")]
    assert (stats.ok, stats.dead, stats.dead_input, stats.blank) == (4, 1, 1, 1)
    assert stats.dead_by_status == {"invalid_json": 1}


# -- the collaborators on their own ------------------------------------------------------------


def _accounting(tpm: int | None = None, max_tokens: int | None = None) -> Accounting:
    prices = price_table()
    return Accounting(CHAT, tpm, Spending(max_tokens, None, prices), CostMeter(prices))


def _item(prompt: str, max_tokens: int | None = None) -> Item:
    line: dict[str, Any] = {"custom_id": "x", "prompt": prompt}
    if max_tokens is not None:
        line["max_tokens"] = max_tokens
    item = parse_line(orjson.dumps(line), 1, CHAT, MODEL)
    assert isinstance(item, Item)
    return item


def admit(accounting: Accounting, item: Item) -> Estimate | Failure | Stop:
    """``accounting.admit`` in a loop of its own; it must not wait."""

    async def main() -> Estimate | Failure | Stop:
        with anyio.fail_after(1):
            return await accounting.admit(item)

    return anyio.run(main)


def test_accounting_estimates_nothing_when_no_limit_reads_it() -> None:
    assert admit(_accounting(), _item("hello")) == (0, 0)


def test_accounting_estimate_is_prompt_plus_completion() -> None:
    item = _item("a prompt of a few words", max_tokens=64)
    estimate = admit(_accounting(tpm=10_000), item)
    assert estimate == (estimate_prompt_tokens(item.body, CHAT), 64)


def test_accounting_refuses_only_what_passes_the_whole_tpm() -> None:
    item = _item("x", max_tokens=100)
    prompt = estimate_prompt_tokens(item.body, CHAT)
    assert isinstance(admit(_accounting(tpm=prompt + 100), item), tuple)
    refused = admit(_accounting(tpm=prompt + 99), item)
    assert isinstance(refused, Failure) and refused.type == "too_large"


def test_accounting_waits_for_the_budget_held_in_flight_then_says_stop() -> None:
    """The third item does not fit while two are in flight: it waits for one to end (its
    answer may have cost far less than was held), then fits. With nothing in flight, an
    item that does not fit stops the run."""

    async def main() -> None:
        accounting = _accounting(max_tokens=250)
        item = _item("x", max_tokens=100)
        first, second = await accounting.admit(item), await accounting.admit(item)
        assert isinstance(first, tuple) and isinstance(second, tuple)
        async with anyio.create_task_group() as tg:
            third: list[Estimate | Failure | Stop] = []

            async def waits() -> None:
                third.append(await accounting.admit(item))

            tg.start_soon(waits)
            await anyio.wait_all_tasks_blocked()
            assert third == []  # waiting, not stopped
            accounting.release(item, first)  # an admitted item ended: its share is free
        assert isinstance(third[0], tuple)
        accounting.answered(item, Success({}, 0, 240))  # the second really used 240
        accounting.release(item, second)
        accounting.release(item, third[0])
        with anyio.fail_after(1):
            stop = await accounting.admit(item)  # nothing in flight, and no room
        assert isinstance(stop, Stop) and stop.reason == "budget"

    anyio.run(main)


def test_control_keeps_the_first_reason_and_message() -> None:
    control = RunControl(drain_timeout=1.0)
    assert not control.stopping
    control.halt(Stop("quota", "quota spent"))
    control.halt(Stop("fatal", "breaker"))
    control.stop("interrupted")
    assert (control.reason, control.message) == ("quota", "quota spent")
