"""``--via batch`` in process: the moments a run can be cut short (Ctrl-C during the upload,
a kill between a job's creation and its record, an answer lost after the job was made, a
crash half-way through bringing a job home) against the real mock server in this loop, and
the pure parts (ids index, upload files, the jobs record, prices, settings)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import orjson
import pytest
from conftest import read_jsonl, write_jsonl
from mistralai.client import Mistral
from mistralai.client.errors import SDKError

from batchrunner.batch.api import BatchApi, JobState
from batchrunner.batch.home import Homecoming
from batchrunner.batch.ids import JobIndex, LineOffsets
from batchrunner.batch.jobs import ChunkRecord, JobBook, eta_seconds, read_jobs
from batchrunner.batch.prepare import Preparer, upload_line
from batchrunner.batch.run import BatchRun
from batchrunner.config import RunConfig
from batchrunner.engine.outcomes import tripped_stop
from batchrunner.engine.retry import RetryPolicy
from batchrunner.errors import ConfigError, LedgerError
from batchrunner.input.lines import Item, read_input
from batchrunner.limits.pricing import Price, batch_prices, price_table
from batchrunner.mock import MockConfig, MockServer, start_server
from batchrunner.runfiles import jobs_dir
from batchrunner.vocabulary import Failure

SMALL = "mistral-small-latest"
FAST_POLICY = RetryPolicy(max_attempts=4, base=0.01, cap=0.02)


def prompts(n: int, marker: dict[int, str] | None = None) -> list[dict[str, Any]]:
    marker = marker or {}
    return [
        {
            "custom_id": f"p{i}",
            "prompt": f"prompt {i}" + (f" [[mock:{marker[i]}]]" if i in marker else ""),
        }
        for i in range(n)
    ]


def batch_config(tmp: Path, url: str, **changes: Any) -> RunConfig:
    settings: dict[str, Any] = {
        "input_path": tmp / "in.jsonl",
        "output_path": tmp / "out.jsonl",
        "dead_letter_path": tmp / "dead.jsonl",
        "model": SMALL,
        "server_url": url,
        "api_key": "k",
        "via": "batch",
        "client": "sdk",
        "batch_poll": 0.01,
        "batch_poll_max": 0.05,
        "backoff_base": 0.01,
        "backoff_max": 0.02,
    }
    return RunConfig(**(settings | changes))


@asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[MockServer]:
    server = await start_server(MockConfig(**options))
    try:
        yield server
    finally:
        await server.close()


async def server_jobs(server: MockServer) -> int:
    async with Mistral(api_key="k", server_url=server.url) as client:
        listing = await client.batch.jobs.list_async()
        return listing.total


def api_for(server: MockServer) -> BatchApi:
    return BatchApi(server.url, "k", 5.0, FAST_POLICY, random.Random(1))


def outcome_ids(tmp: Path) -> list[str]:
    ids = [r["custom_id"] for r in read_jsonl(tmp / "out.jsonl")]
    return ids + [d["custom_id"] for d in read_jsonl(tmp / "dead.jsonl")]


class Killed(BaseException):
    """The process dying at a chosen moment (nothing after it runs but finally blocks)."""


# --- cut short at each step -------------------------------------------------------------


class HangingUpload(BatchApi):
    """An upload that never finishes; says when it has begun."""

    def __init__(self, server: MockServer, started: anyio.Event) -> None:
        super().__init__(server.url, "k", 5.0, FAST_POLICY, random.Random(1))
        self.started = started

    async def upload(self, path: Path, name: str) -> str:
        self.started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


@pytest.mark.asyncio
async def test_ctrl_c_while_uploading_records_nothing_and_a_rerun_converges(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", prompts(12))
    async with serving() as server:
        cfg = batch_config(tmp_path, server.url)
        started = anyio.Event()
        api = HangingUpload(server, started)
        run = BatchRun(cfg, api=api)
        async with anyio.create_task_group() as tg:

            async def ctrl_c() -> None:
                await started.wait()
                run.stop()

            tg.start_soon(ctrl_c)
            stats = await run.run()
        await api.aclose()
        assert stats.stop_reason == "interrupted"
        assert read_jobs(cfg.output_path) == ([], [])  # no upload recorded, no ids out
        assert [p.name for p in jobs_dir(cfg.output_path).iterdir()] == ["jobs.jsonl"]
        assert await server_jobs(server) == 0

        again = await BatchRun(cfg).run()
        assert (again.ok, again.stop_reason) == (12, None)
        assert sorted(outcome_ids(tmp_path)) == sorted(f"p{i}" for i in range(12))
        assert await server_jobs(server) == 1


class DiesAfterCreate(BatchApi):
    """The job is made on the server, then the process dies before it can record it."""

    async def create(self, file_id: str, endpoint: str, model: str, token: str) -> JobState:
        await super().create(file_id, endpoint, model, token)
        raise Killed


@pytest.mark.asyncio
async def test_a_kill_between_creating_a_job_and_recording_it_loses_no_ids(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", prompts(8))
    async with serving() as server:
        cfg = batch_config(tmp_path, server.url)
        api = DiesAfterCreate(server.url, "k", 5.0, FAST_POLICY, random.Random(1))
        with pytest.raises(Killed):
            await BatchRun(cfg, api=api).run()
        await api.aclose()
        (chunk,), _ = read_jobs(cfg.output_path)
        assert chunk.job_id is None and chunk.live  # the upload and its ids are recorded
        assert await server_jobs(server) == 1

        stats = await BatchRun(cfg).run()
        assert stats.ok == 8 and stats.sent == 0  # nothing sent again: the job was found
        (chunk,), _ = read_jobs(cfg.output_path)
        assert chunk.homed and chunk.job_id is not None
        assert await server_jobs(server) == 1
        assert sorted(outcome_ids(tmp_path)) == sorted(f"p{i}" for i in range(8))


@pytest.mark.asyncio
async def test_a_create_whose_answer_is_lost_is_not_repeated(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", prompts(5))
    async with serving() as server:
        api = api_for(server)
        jobs = api._sdk.batch.jobs
        real = jobs.create_async
        calls = 0

        async def made_then_timed_out(**kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            job = await real(**kwargs)
            if calls == 1:
                raise httpx2.ReadTimeout("the answer never came")
            return job

        jobs.create_async = made_then_timed_out  # type: ignore[method-assign]
        stats = await BatchRun(batch_config(tmp_path, server.url), api=api).run()
        await api.aclose()
        assert (calls, stats.ok, await server_jobs(server)) == (1, 5, 1)


def answered(status: int, body: str, **headers: str) -> SDKError:
    request = httpx2.Request("GET", "http://mock")
    return SDKError("refused", httpx2.Response(status, headers=headers, text=body, request=request))


def failing_first(call: Any, error: BaseException, times: int = 1) -> tuple[Any, list[int]]:
    """``call`` failing with ``error`` the first ``times`` calls; counts the calls."""
    calls = [0]

    async def flaky(**kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] <= times:
            raise error
        return await call(**kwargs)

    return flaky, calls


@pytest.mark.asyncio
async def test_every_call_is_retried_on_429_5xx_timeouts_and_dropped_connections(
    tmp_path: Path,
) -> None:
    write_jsonl(tmp_path / "in.jsonl", prompts(6))
    async with serving() as server:
        api = api_for(server)
        sdk = api._sdk
        busy = answered(503, '{"message": "busy"}', **{"retry-after-ms": "5"})
        slow = answered(429, '{"message": "slow down"}')
        sdk.files.upload_async, uploads = failing_first(sdk.files.upload_async, busy, 2)  # type: ignore[method-assign]
        sdk.batch.jobs.create_async, creates = failing_first(sdk.batch.jobs.create_async, slow)  # type: ignore[method-assign]
        dropped = httpx2.ConnectError("connection refused")
        sdk.batch.jobs.get_async, gets = failing_first(sdk.batch.jobs.get_async, dropped)  # type: ignore[method-assign]
        late = httpx2.ReadTimeout("no answer")
        sdk.files.download_async, downloads = failing_first(sdk.files.download_async, late)  # type: ignore[method-assign]
        stats = await BatchRun(batch_config(tmp_path, server.url), api=api).run()
        await api.aclose()
        assert (stats.ok, stats.stop_reason, await server_jobs(server)) == (6, None, 1)
    assert uploads[0] == 3 and creates[0] == 2 and gets[0] >= 2 and downloads[0] == 2


@pytest.mark.asyncio
async def test_a_refused_key_stops_with_the_online_line_and_the_jobs_stay_recorded(
    tmp_path: Path,
) -> None:
    write_jsonl(tmp_path / "in.jsonl", prompts(4))
    async with serving() as server:
        api = api_for(server)
        refused = answered(401, '{"message": "Unauthorized", "type": "unauthorized"}')
        jobs = api._sdk.batch.jobs
        jobs.get_async, gets = failing_first(jobs.get_async, refused, 100)  # type: ignore[method-assign]
        stats = await BatchRun(batch_config(tmp_path, server.url), api=api).run()
        await api.aclose()
        assert gets[0] == 1  # not retried: a refused key will not be accepted a second later
        assert (
            stats.stop_reason == "fatal"
            and stats.stop_message
            == tripped_stop(
                Failure(type="unauthorized", status_code=401, message="Unauthorized")
            ).message
        )
        (chunk,), _ = read_jobs(tmp_path / "out.jsonl")
        assert chunk.live and chunk.job_id is not None
        again = await BatchRun(batch_config(tmp_path, server.url)).run()
        assert (again.ok, again.sent, await server_jobs(server)) == (4, 0, 1)


class Crash(Exception):
    pass


def _normalized(tmp: Path) -> tuple[list[Any], list[Any]]:
    """The outcome files without what differs from run to run (job ids, timestamps)."""
    results = []
    for r in read_jsonl(tmp / "out.jsonl"):
        for key in ("batch_job", "latency_ms", "ts"):
            r["batchrunner"].pop(key)
        results.append(r)
    dead = []
    for d in read_jsonl(tmp / "dead.jsonl"):
        d.pop("ts")
        d["batchrunner"].pop("batch_job", None)
        dead.append(d)
    return results, dead


@pytest.mark.asyncio
async def test_a_crash_half_way_home_and_a_rerun_give_the_files_of_no_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = prompts(300, {i: "400" if i % 7 == 0 else "500" for i in range(0, 300, 5)})
    clean, cut = tmp_path / "clean", tmp_path / "cut"
    for d in (clean, cut):
        d.mkdir()
        write_jsonl(d / "in.jsonl", rows)
    async with serving() as s1, serving() as s2:
        await BatchRun(batch_config(clean, s1.url)).run()
        real_take = Homecoming.take
        taken = 0

        def dies_after_100(self: Homecoming, raw: bytes) -> None:
            nonlocal taken
            taken += 1
            if taken > 100:
                raise Crash
            real_take(self, raw)

        monkeypatch.setattr(Homecoming, "take", dies_after_100)
        with pytest.raises(Crash):
            await BatchRun(batch_config(cut, s2.url)).run()
        monkeypatch.undo()
        assert 0 < len(read_jsonl(cut / "out.jsonl")) < 300
        stats = await BatchRun(batch_config(cut, s2.url)).run()
    assert stats.sent == 0
    assert _normalized(cut) == _normalized(clean)
    events = [r["event"] for r in read_jsonl(jobs_dir(cut / "out.jsonl") / "jobs.jsonl")]
    assert events.count("homing") == 1 and events.count("homed") == 1
    dead = read_jsonl(cut / "dead.jsonl")
    assert {d["error"]["type"] for d in dead} == {"bad_request"}
    assert len(dead) == len({d["custom_id"] for d in dead})


# --- the pure parts ------------------------------------------------------------------------


def test_the_job_index_finds_every_id_and_nothing_else() -> None:
    index = JobIndex(5000)
    for i in range(5000):
        index.add(f"id-{i}", (i + 1, i * 100, f"{i:016x}"))
    assert len(index) == 5000
    assert all(index.get(f"id-{i}") == (i + 1, i * 100, f"{i:016x}") for i in range(5000))
    assert index.get("id-5000") is None and index.get("") is None
    with pytest.raises(ValueError, match="sized"):
        for i in range(5000, 20000):
            index.add(f"id-{i}", (0, 0, "0" * 16))


def test_line_offsets_point_at_the_lines_admission_reads(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"prompt": "a"}\n\n{"prompt": "bb"}\r\n   \n{"prompt": "c"}')
    offsets = LineOffsets(path)
    items = [e for e in read_input(path, "/v1/chat/completions", SMALL) if isinstance(e, Item)]
    data = path.read_bytes()
    for item in items:
        at = offsets.offset_of(item.line)
        assert data[at:].split(b"\n", 1)[0].strip() == item.raw
    offsets.close()


def _items(path: Path) -> Iterator[Item]:
    for e in read_input(path, "/v1/chat/completions", SMALL):
        assert isinstance(e, Item)
        yield e


@pytest.mark.parametrize(
    ("limits", "by_model", "expected"),
    [
        ((10, 10**9), False, [10, 10, 5]),
        ((1000, 1000), False, None),  # by size: every file within 1000 bytes
        ((10, 10**9), True, [10, 5, 10]),
    ],
)
def test_upload_files_split_by_requests_size_and_model(
    tmp_path: Path, limits: tuple[int, int], by_model: bool, expected: list[int] | None
) -> None:
    rows = [
        {
            "custom_id": f"i{i}",
            "prompt": "x" * 40,
            "model": "mistral-large-latest" if i % 5 == 0 else SMALL,
        }
        for i in range(25)
    ]
    folder = tmp_path / "jobs"
    folder.mkdir()
    write_jsonl(tmp_path / "in.jsonl", rows)
    prep = Preparer(folder, tmp_path / "in.jsonl", limits, group_by_model=by_model)
    chunks = []
    for item in _items(tmp_path / "in.jsonl"):
        full = prep.add(item, upload_line(item), "/v1/chat/completions", str(item.body["model"]))
        chunks += [full] if full else []
    chunks += prep.finish()
    if expected is not None:
        assert [c.count for c in chunks] == expected
    else:
        assert all(c.upload.stat().st_size <= 1000 for c in chunks) and len(chunks) > 2
    assert sum(c.count for c in chunks) == 25
    models: set[str] = set()
    for chunk in chunks:
        lines = [orjson.loads(x) for x in chunk.upload.read_bytes().splitlines()]
        in_file = {line["body"]["model"] for line in lines}
        assert in_file == {chunk.model} or not by_model
        models |= in_file
        assert [line["custom_id"] for line in lines] == [
            orjson.loads(x)[0] for x in chunk.ids.read_bytes().splitlines()
        ]
    assert models == {SMALL, "mistral-large-latest"}


def test_the_jobs_record_replays_and_repairs_a_torn_tail(tmp_path: Path) -> None:
    book = JobBook(tmp_path / "x.jobs")
    book.record(
        "uploaded", "t1", file_id="f1", model=SMALL, endpoint="/v1/chat/completions",
        count=3, bytes=10, ids="t1.ids", ids_digest="d",
    )  # fmt: skip
    book.record("created", "t1", job_id="j1")
    book.record("status", "t1", status="RUNNING", total=3, completed=1, succeeded=1, failed=0)
    book.close()
    path = tmp_path / "x.jobs" / "jobs.jsonl"
    with path.open("ab") as f:
        f.write(b'{"event": "homed", "tok')
    left = [tmp_path / "x.jobs" / n for n in ("t1.ids", "t2.ids", ".t2.upload.tmp")]
    for f in left:
        f.write_bytes(b"")
    again = JobBook(tmp_path / "x.jobs")
    assert [f.exists() for f in left] == [True, False, False]  # t2 was never recorded
    (chunk,) = again.live()
    assert (chunk.job_id, chunk.status, chunk.completed, chunk.homed) == ("j1", "RUNNING", 1, False)
    assert again.warnings and "torn" in again.warnings[0]
    again.record("homed", "t1", results=2, dead=0, pending=1)
    assert again.live() == []
    again.close()


def test_the_eta_follows_the_jobs_own_pace() -> None:
    chunk = ChunkRecord(
        "t", "f", SMALL, "/v1/chat/completions", 100, "t.ids", "d", "2026-01-01T00:00:00Z"
    )
    chunk.status, chunk.total, chunk.completed, chunk.started_at = "RUNNING", 100, 25, 1000
    assert eta_seconds(chunk, 1010.0) == pytest.approx(30.0)
    chunk.status = "SUCCESS"
    assert eta_seconds(chunk, 1010.0) is None


def test_batch_prices_are_a_share_of_the_list_price() -> None:
    table = price_table({"mistral-small-latest": {"batch": 0.25}, "m": {"input": 2, "output": 4}})
    cheap = batch_prices(table)
    assert cheap["m"] == Price(1.0, 2.0, 1.0)
    assert cheap["mistral-small-latest"].input_per_m == pytest.approx(0.025)
    with pytest.raises(ValueError, match="batch"):
        price_table({"m": {"input": 1, "output": 1, "batch": -1}})


def test_batch_settings_that_do_not_go_together_are_refused(tmp_path: Path) -> None:
    base = batch_config(tmp_path, "http://x")
    for changes, setting in (
        ({"via": "online", "cancel": True}, "cancel"),
        ({"model": None}, "model"),
        ({"batch_poll": 10.0, "batch_poll_max": 5.0}, "batch_poll_max"),
        ({"batch_max_requests": 0}, "batch_max_requests"),
        ({"max_tokens_total": 10}, "max_tokens_total"),
    ):
        with pytest.raises(ConfigError) as info:
            batch_config(tmp_path, "http://x", **changes)
        assert info.value.setting == setting
    assert base.via == "batch"


def test_an_ids_file_that_is_gone_or_changed_is_a_one_line_error(tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    write_jsonl(tmp_path / "in.jsonl", prompts(3))
    prep = Preparer(folder, tmp_path / "in.jsonl", (10, 10**6), group_by_model=False)
    for item in _items(tmp_path / "in.jsonl"):
        prep.add(item, upload_line(item), "/v1/chat/completions", SMALL)
    (chunk,) = prep.finish()
    assert len(JobIndex.load(chunk.ids, chunk.ids_digest, 3)) == 3
    with chunk.ids.open("ab") as f:
        f.write(b'["extra", 9, 0, "0000000000000000"]\n')
    with pytest.raises(LedgerError, match="not the file recorded"):
        JobIndex.load(chunk.ids, chunk.ids_digest, 4)
    chunk.ids.unlink()
    with pytest.raises(LedgerError, match="`restart`"):
        JobIndex.load(chunk.ids, chunk.ids_digest, 3)
