"""The mock's Files and Batch APIs through the real SDK: shapes, line answers, progress, faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mistralai.client import Mistral, errors, models
from mistralai.client.models import APIEndpoint

from batchrunner.mock import JobFaults, MockConfig, MockServer, parse_job_faults, start_server
from batchrunner.mock.store import LineCounter

CHAT: Final = "/v1/chat/completions"
SMALL = "mistral-small-latest"
AUTH = {"Authorization": "Bearer k"}
# A pace that answers the first line at once and the next one after ~17 minutes: the job
# sits RUNNING with exactly one line done for as long as a test needs.
STUCK = "speed:1000000"


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": SMALL, "messages": [{"role": "user", "content": text}], **extra}


def jsonl(bodies: list[dict[str, Any]]) -> bytes:
    lines = (
        orjson.dumps({"custom_id": f"id-{i}", "body": b}) + b"\n" for i, b in enumerate(bodies)
    )
    return b"".join(lines)


@asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[tuple[MockServer, Mistral]]:
    server = await start_server(MockConfig(**options))
    try:
        async with Mistral(api_key="k", server_url=server.url) as client:
            yield server, client
    finally:
        await server.close()


async def upload(client: Mistral, content: bytes, name: str = "in.jsonl") -> str:
    file = await client.files.upload_async(
        file={"file_name": name, "content": content}, purpose="batch"
    )
    assert isinstance(file, models.CreateFileResponse)
    return file.id


async def create(
    client: Mistral,
    content: bytes,
    model: str = SMALL,
    endpoint: APIEndpoint = CHAT,
    mock: str = "",
) -> models.BatchJob:
    file_id = await upload(client, content)
    job = await client.batch.jobs.create_async(
        input_files=[file_id],
        endpoint=endpoint,
        model=model,
        metadata={"mock": mock} if mock else None,
        timeout_hours=2,
    )
    assert isinstance(job, models.BatchJob)
    return job


async def poll(
    client: Mistral, job_id: str, until: Callable[[models.BatchJob], bool]
) -> models.BatchJob:
    """Get the job until ``until`` holds: a bounded loop (5 s at most), not a fixed sleep."""
    for _ in range(500):
        job = await client.batch.jobs.get_async(job_id=job_id)
        assert isinstance(job, models.BatchJob)
        if until(job):
            return job
        await asyncio.sleep(0.01)
    raise AssertionError(f"the job never got there: {job}")


def ended(job: models.BatchJob) -> bool:
    return job.status not in ("QUEUED", "RUNNING", "CANCELLATION_REQUESTED")


async def download(client: Mistral, file_id: object) -> list[dict[str, Any]]:
    assert isinstance(file_id, str)
    response = await client.files.download_async(file_id=file_id)
    try:
        assert response.headers["content-type"] == "application/octet-stream"
        return [orjson.loads(line) for line in (await response.aread()).splitlines()]
    finally:
        await response.aclose()


async def online(session: aiohttp.ClientSession, body: Any, path: str = CHAT) -> tuple[int, Any]:
    async with session.post(path, data=orjson.dumps(body), headers=AUTH) as resp:
        return resp.status, orjson.loads(await resp.read())


# --- the SDK accepts every answer ---------------------------------------------------------


@pytest.mark.asyncio
async def test_the_sdk_drives_every_endpoint_and_parses_every_answer() -> None:
    async with serving() as (server, client):
        job = await create(client, jsonl([chat("a"), chat("b [[mock:400]]")]), mock="queue:0")
        assert job.status == "QUEUED" and job.total_requests == 2 and job.output_file is None
        assert job.metadata == {"mock": "queue:0"} and job.model == SMALL and job.endpoint == CHAT
        done = await poll(client, job.id, ended)
        assert (done.status, done.completed_requests, done.succeeded_requests) == ("SUCCESS", 2, 1)
        assert done.failed_requests == 1 and done.errors == []
        assert done.started_at is not None and done.completed_at is not None
        for file_id, sample_type in (
            (done.output_file, "batch_result"),
            (done.error_file, "batch_error"),
        ):
            assert isinstance(file_id, str)
            info = await client.files.retrieve_async(file_id=file_id)
            assert isinstance(info, models.GetFileResponse)
            assert (info.sample_type, info.source, info.num_lines) == (sample_type, "mistral", 1)
            assert not info.deleted and len(await download(client, file_id)) == 1
        listing = await client.batch.jobs.list_async()
        assert isinstance(listing, models.ListBatchJobsResponse)
        assert listing.total == 1 and listing.data is not None and listing.data[0].id == job.id
        cancelled = await client.batch.jobs.cancel_async(job_id=job.id)
        assert isinstance(cancelled, models.BatchJob) and cancelled.status == "SUCCESS"
        files = await client.files.list_async(purpose="batch")
        assert isinstance(files, models.ListFilesResponse) and files.total == 3
        gone = await client.files.delete_async(file_id=job.input_files[0])
        assert isinstance(gone, models.DeleteFileResponse) and gone.deleted
        with pytest.raises(errors.SDKError) as info_404:
            await client.files.retrieve_async(file_id=job.input_files[0])
        assert info_404.value.status_code == 404
        assert server.stats.by_path["/v1/batch/jobs/{job_id}"] >= 1  # ids do not grow the table


@pytest.mark.asyncio
async def test_each_line_gets_what_the_online_endpoint_answers_for_its_body() -> None:
    bodies: list[dict[str, Any]] = [
        chat("plain"),
        chat("bad [[mock:400]]"),
        chat("flaky [[mock:429,500]]"),
        chat("down [[mock:503]]"),
        chat("spent [[mock:quota]]"),
        chat("typo [[mock:bogus]]"),
        chat("hangs online only [[mock:timeout]]"),
        chat("streams", stream=True),
        chat("wrong type", max_tokens="many"),
        {"model": SMALL, "messages": "not a list"},
        {"messages": [{"role": "user", "content": "the job's model is filled in"}]},
    ]
    async with (
        serving(hang_s=0.01) as (reference, _),
        serving() as (server, client),
        aiohttp.ClientSession(reference.url) as ref_session,
        aiohttp.ClientSession(server.url) as session,
    ):
        job = await poll(client, (await create(client, jsonl(bodies))).id, ended)
        lines = await download(client, job.output_file) + await download(client, job.error_file)
        assert (job.succeeded_requests, job.failed_requests) == (3, 8)
        by_id = {line["custom_id"]: line for line in lines}
        assert len(by_id) == len(lines) == len(bodies)
        for i, body in enumerate(bodies):
            status, answer = await online(ref_session, {"model": SMALL, **body})
            line = by_id[f"id-{i}"]
            assert line["response"] == {"status_code": status, "body": answer}, body
            assert (line["error"] is None) == (status == 200)
            if status != 200:
                assert line["error"] == answer.get(
                    "message", answer.get("detail", [{}])[0].get("msg")
                )
        # The job's attempt counts as attempt 1: online retries continue the script.
        assert (await online(session, bodies[2]))[0] == 500
        assert (await online(session, bodies[2]))[0] == 200


@pytest.mark.asyncio
async def test_an_embeddings_job_answers_like_the_embeddings_endpoint() -> None:
    bodies: list[dict[str, Any]] = [{"input": ["a", "b"]}, {"input": "c [[mock:500]]"}]
    async with (
        serving() as (reference, _),
        serving() as (_, client),
        aiohttp.ClientSession(reference.url) as session,
    ):
        created = await create(client, jsonl(bodies), "mistral-embed", "/v1/embeddings")
        job = await poll(client, created.id, ended)
        out, err = await download(client, job.output_file), await download(client, job.error_file)
        for line, body in ((out[0], bodies[0]), (err[0], bodies[1])):
            expected = await online(session, {**body, "model": "mistral-embed"}, "/v1/embeddings")
            assert (line["response"]["status_code"], line["response"]["body"]) == expected
        assert models.EmbeddingResponse.model_validate(out[0]["response"]["body"]).data


@pytest.mark.asyncio
async def test_lines_that_are_not_requests_and_transport_faults_become_lines() -> None:
    content = b"".join(
        (
            b"not json\n",
            b'{"custom_id": "no-body"}\n',
            orjson.dumps({"custom_id": "other", "body": chat("x", model="mistral-large-latest")}),
            b"\n\n   \n",  # blank lines are not requests
            orjson.dumps({"custom_id": "cut", "body": chat("[[mock:garbage]]")}) + b"\n",
            orjson.dumps({"custom_id": "drop", "body": chat("[[mock:reset]]")}),  # no newline
        )
    )
    async with serving() as (_, client):
        job = await poll(client, (await create(client, content)).id, ended)
        assert job.total_requests == 5
        lines = await download(client, job.output_file) + await download(client, job.error_file)
        status = {line["custom_id"]: line["response"]["status_code"] for line in lines}
        assert status == {None: 400, "no-body": 400, "other": 400, "cut": 200, "drop": 500}
        cut = next(line for line in lines if line["custom_id"] == "cut")
        assert isinstance(cut["response"]["body"], str)  # a 200 whose body is no completion


# --- progress and the scripted ends --------------------------------------------------------


@pytest.mark.asyncio
async def test_counts_move_while_running_and_a_cancel_keeps_the_lines_done() -> None:
    async with serving() as (_, client):
        created = await create(client, jsonl([chat(f"q{i}") for i in range(5)]), mock=STUCK)
        running = await poll(client, created.id, lambda j: j.completed_requests == 1)
        assert running.status == "RUNNING" and running.succeeded_requests == 1
        assert running.output_file is None  # results only once the job is over
        asked = await client.batch.jobs.cancel_async(job_id=created.id)
        assert asked.status in ("CANCELLATION_REQUESTED", "CANCELLED")
        job = await poll(client, created.id, ended)
        assert (job.status, job.completed_requests, job.total_requests) == ("CANCELLED", 1, 5)
        assert [line["custom_id"] for line in await download(client, job.output_file)] == ["id-0"]
        assert job.error_file is None


@pytest.mark.asyncio
async def test_a_slow_cancel_stays_requested_for_its_seconds() -> None:
    async with serving(batch_cancel_s=0.3) as (_, client):
        created = await create(client, jsonl([chat("a"), chat("b")]), mock=STUCK)
        await poll(client, created.id, lambda j: j.completed_requests == 1)
        start = time.monotonic()
        asked = await client.batch.jobs.cancel_async(job_id=created.id)
        assert asked.status == "CANCELLATION_REQUESTED"
        job = await poll(client, created.id, ended)
        assert time.monotonic() - start >= 0.3
        assert (job.status, job.completed_requests) == ("CANCELLED", 1)
        assert len(await download(client, job.output_file)) == 1


@pytest.mark.parametrize(
    ("mock", "status", "done"),
    [
        ("fail_after:50%", "FAILED", 5),
        ("timeout_after:3", "TIMEOUT_EXCEEDED", 3),
        ("fail_after:0", "FAILED", 0),
        ("timeout_after:100%", "TIMEOUT_EXCEEDED", 10),
    ],
)
@pytest.mark.asyncio
async def test_a_scripted_end_delivers_the_lines_done_so_far(
    mock: str, status: str, done: int
) -> None:
    async with serving() as (_, client):
        created = await create(client, jsonl([chat(f"q{i}") for i in range(10)]), mock=mock)
        job = await poll(client, created.id, ended)
        assert (job.status, job.completed_requests, job.total_requests) == (status, done, 10)
        assert job.errors and "scripted" in job.errors[0].message
        if done:
            ids = [line["custom_id"] for line in await download(client, job.output_file)]
            assert ids == [f"id-{i}" for i in range(done)]
        else:
            assert job.output_file is None


@pytest.mark.asyncio
async def test_server_wide_faults_apply_to_every_job_and_metadata_overrides_them() -> None:
    async with serving(batch_faults="fail_after:2") as (_, client):
        content = jsonl([chat(f"q{i}") for i in range(4)])
        first = await poll(client, (await create(client, content)).id, ended)
        second = await create(client, content, mock="timeout_after:1")
        second = await poll(client, second.id, ended)
        assert (first.status, first.completed_requests) == ("FAILED", 2)
        assert (second.status, second.completed_requests) == ("TIMEOUT_EXCEEDED", 1)


@pytest.mark.asyncio
async def test_timeout_hours_run_out_for_real_on_a_short_hour() -> None:
    async with serving(batch_hour_s=0.2) as (_, client):
        created = await create(client, jsonl([chat("a"), chat("b")]), mock=STUCK)
        job = await poll(client, created.id, ended)  # timeout_hours=2: 0.4 s
        assert (job.status, job.completed_requests) == ("TIMEOUT_EXCEEDED", 1)
        assert len(await download(client, job.output_file)) == 1


@pytest.mark.asyncio
async def test_a_queued_job_cancels_without_output() -> None:
    async with serving(batch_queue_s=60) as (_, client):
        created = await create(client, jsonl([chat("a")]))
        assert (await client.batch.jobs.get_async(job_id=created.id)).status == "QUEUED"
        await client.batch.jobs.cancel_async(job_id=created.id)
        job = await poll(client, created.id, ended)
        assert (job.status, job.completed_requests, job.started_at) == ("CANCELLED", 0, None)
        assert job.output_file is None and job.error_file is None


@pytest.mark.asyncio
async def test_an_input_file_deleted_before_the_job_runs_fails_the_job() -> None:
    async with serving() as (_, client):
        file_id = await upload(client, jsonl([chat("a")]))
        created = await client.batch.jobs.create_async(
            input_files=[file_id], endpoint=CHAT, model=SMALL, metadata={"mock": "queue:1"}
        )
        await client.files.delete_async(file_id=file_id)
        job = await poll(client, created.id, ended)
        assert job.status == "FAILED" and "crashed" in job.errors[0].message


# --- listing -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_job_list_filters_orders_and_pages_like_the_sdk_asks() -> None:
    async with serving() as (_, client):
        file_id = await upload(client, jsonl([chat("a")]))
        ids = []
        for tag in ("x", "y", "x"):
            job = await client.batch.jobs.create_async(
                input_files=[file_id], endpoint=CHAT, model=SMALL, metadata={"tag": tag}
            )
            ids.append(job.id)
        for job_id in ids:
            await poll(client, job_id, ended)
        xs = await client.batch.jobs.list_async(metadata={"tag": "x"}, order_by="created")
        assert xs.total == 2 and [j.id for j in xs.data or []] == [ids[0], ids[2]]
        newest = await client.batch.jobs.list_async(page=0, page_size=2)
        second = await client.batch.jobs.list_async(page=1, page_size=2)
        assert newest.total == 3 and [j.id for j in newest.data or []] == [ids[2], ids[1]]
        assert [j.id for j in second.data or []] == [ids[0]]
        assert (await client.batch.jobs.list_async(status=["RUNNING"])).total == 0
        assert (await client.batch.jobs.list_async(status=["SUCCESS"], model=SMALL)).total == 3
        assert (await client.batch.jobs.list_async(model="mistral-embed")).total == 0
        later = await client.batch.jobs.list_async(created_after=_future())
        assert later.total == 0


def _future() -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(days=1)


# --- refusals, auth, unknown ids ---------------------------------------------------------


@pytest.mark.asyncio
async def test_auth_applies_and_unknown_ids_are_404_in_mistral_shape() -> None:
    async with serving(require_key="right") as (server, _), aiohttp.ClientSession(server.url) as s:
        wrong = {"Authorization": "Bearer wrong"}
        for method, path in (
            ("POST", "/v1/files"),
            ("GET", "/v1/files"),
            ("GET", "/v1/files/nope"),
            ("GET", "/v1/files/nope/content"),
            ("DELETE", "/v1/files/nope"),
            ("POST", "/v1/batch/jobs"),
            ("GET", "/v1/batch/jobs"),
            ("GET", "/v1/batch/jobs/nope"),
            ("POST", "/v1/batch/jobs/nope/cancel"),
        ):
            async with s.request(method, path, headers=wrong) as resp:
                assert resp.status == 401, path
            async with s.request(method, path) as resp:
                assert resp.status == 401, path
        right = {"Authorization": "Bearer right"}
        for method, path in (
            ("GET", "/v1/files/nope"),
            ("GET", "/v1/files/nope/content"),
            ("DELETE", "/v1/files/nope"),
            ("GET", "/v1/batch/jobs/nope"),
            ("POST", "/v1/batch/jobs/nope/cancel"),
        ):
            async with s.request(method, path, headers=right) as resp:
                body = orjson.loads(await resp.read())
                assert resp.status == 404 and body["object"] == "error", path
                assert body["type"] == "not_found" and "nope" in body["message"]


@pytest.mark.asyncio
async def test_job_creation_refuses_what_it_cannot_run() -> None:
    async with (
        serving() as (server, client),
        aiohttp.ClientSession(server.url, headers=AUTH) as s,
    ):
        batch_file = await upload(client, jsonl([chat("a")]))
        other = await client.files.upload_async(
            file={"file_name": "ft.jsonl", "content": b"{}\n"}, purpose="fine-tune"
        )
        good = {"input_files": [batch_file], "endpoint": CHAT, "model": SMALL}
        unknown_model = await online(s, chat("x", model="gpt-5"))
        for change, status in (
            ({"model": "gpt-5"}, 400),
            ({"input_files": [other.id]}, 400),
            ({"input_files": ["missing"]}, 404),
            ({"input_files": []}, 422),
            ({"endpoint": "/v1/ocr"}, 400),
            ({"endpoint": None}, 422),
            ({"model": None}, 422),
            ({"timeout_hours": 0}, 422),
            ({"metadata": {"mock": "explode:1"}}, 400),
            ({"requests": [{"body": chat("x")}]}, 400),
        ):
            got = await online(s, {**good, **change}, "/v1/batch/jobs")
            assert got[0] == status, change
            if change == {"model": "gpt-5"}:
                assert got == unknown_model  # the same one-line refusal as online
        assert (await client.batch.jobs.list_async()).total == 0


# --- files on disk ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_uploads_and_outputs_live_on_disk_and_go_with_the_server() -> None:
    content = jsonl([chat(f"q{i}") for i in range(3000)])
    async with serving() as (server, client):
        job = await poll(client, (await create(client, content)).id, ended)
        assert job.status == "SUCCESS" and job.succeeded_requests == 3000
        on_disk = {p.name: p.stat().st_size for p in server.files_dir.iterdir()}
        assert on_disk[job.input_files[0]] == len(content)
        assert isinstance(job.output_file, str) and on_disk[job.output_file] > len(content)
        assert len(await download(client, job.output_file)) == 3000
        still_running = await create(client, content, mock=STUCK)
        await poll(client, still_running.id, lambda j: j.completed_requests == 1)
    assert not server.files_dir.exists()  # closed with a job running: everything removed


@pytest.mark.asyncio
async def test_upload_fields_are_checked_and_a_refused_upload_leaves_no_file() -> None:
    async with serving() as (server, _), aiohttp.ClientSession(server.url, headers=AUTH) as s:

        def form(**fields: str) -> aiohttp.FormData:
            data = aiohttp.FormData()
            for name, value in fields.items():
                data.add_field(name, value, filename="in.jsonl" if name == "file" else None)
            return data

        async with s.post("/v1/files", data=form(purpose="batch")) as resp:
            detail = orjson.loads(await resp.read())["detail"]
            assert resp.status == 422 and detail[0]["loc"] == ["body", "file"]
        async with s.post("/v1/files", json={"file": "x"}) as resp:
            assert resp.status == 422
        async with s.post("/v1/files", data=form(file="{}\n", purpose="nonsense")) as resp:
            assert resp.status == 422
        assert list(server.files_dir.iterdir()) == []
        async with s.post("/v1/files", data=form(file="{}\n\n{}")) as resp:
            file = models.CreateFileResponse.model_validate_json(await resp.read())
        assert (file.purpose, file.sample_type, file.num_lines) == ("fine-tune", "instruct", 2)


@pytest.mark.asyncio
async def test_an_upload_cut_short_leaves_no_file() -> None:
    async with serving() as (server, client):
        seen_on_disk: list[str] = []

        async def cut_body() -> AsyncIterator[bytes]:
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n'
            yield b'{"custom_id": "1"}\n' * 1000
            seen_on_disk.extend(await names_in(server, lambda names: bool(names)))
            raise ConnectionError("the client went away")

        headers = {**AUTH, "Content-Type": "multipart/form-data; boundary=b"}
        async with aiohttp.ClientSession(server.url) as s:
            with pytest.raises((aiohttp.ClientError, ConnectionError)):
                await s.post("/v1/files", data=cut_body(), headers=headers)
        assert len(seen_on_disk) == 1  # the upload was being streamed to disk...
        assert await names_in(server, lambda names: not names) == []  # ...and is gone
        assert (await client.files.list_async()).total == 0


async def names_in(server: MockServer, until: Callable[[list[str]], bool]) -> list[str]:
    """The names in the server's files directory once ``until`` holds (a bounded poll)."""
    for _ in range(500):
        names = [p.name for p in server.files_dir.iterdir()]
        if until(names):
            return names
        await asyncio.sleep(0.01)
    raise AssertionError(f"the files directory holds {names}")


# --- pure parts -----------------------------------------------------------------------------


@given(
    st.lists(st.sampled_from([b"a", b" ", b"\n", b"{}", b"\r\n", b"\t"]), max_size=40), st.data()
)
def test_the_line_counter_ignores_where_chunks_split(parts: list[bytes], data: Any) -> None:
    content = b"".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(content)), max_size=5)))
    counter = LineCounter()
    for start, end in zip([0, *cuts], [*cuts, len(content)], strict=True):
        counter.feed(content[start:end])
    assert counter.close() == sum(1 for line in content.split(b"\n") if line.strip())


def test_job_faults_parse_and_layer() -> None:
    faults = parse_job_faults("fail_after:50%, slow_cancel:2,queue:0.5,speed:10")
    assert faults == JobFaults("FAILED", None, 50.0, 2.0, 0.5, 10.0)
    assert faults.stop_after(7) == 3
    assert parse_job_faults("timeout_after:4").stop_after(100) == 4
    assert parse_job_faults("") == JobFaults()
    layered = parse_job_faults("timeout_after:1").over(faults)
    assert (layered.end_status, layered.stop_after(10), layered.cancel_s) == (
        "TIMEOUT_EXCEEDED",
        1,
        2.0,
    )
    for bad in ("explode:1", "fail_after", "fail_after:x", "fail_after:150%", "queue:-1",
                "fail_after:1,timeout_after:2", "speed:nan"):  # fmt: skip
        with pytest.raises(ValueError, match="mock: "):
            parse_job_faults(bad)


@pytest.mark.asyncio
async def test_bad_server_wide_faults_refuse_to_start() -> None:
    with pytest.raises(ValueError, match="unknown batch fault"):
        await start_server(MockConfig(batch_faults="explode:1"))
