"""The mock Mistral server: SDK-valid bodies, determinism, faults, limits, stats, CLI.

Answers go over real loopback HTTP to a server in the test's own loop; how long each answer
is held (latency, ``slow``, ``timeout``) is measured on a virtual clock, exactly. Only the
tests of ``python -m batchrunner.mock`` as a process are ``e2e``.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import orjson
import pytest
from aiohttp import streams
from aiohttp.test_utils import make_mocked_request
from conftest import require_e2e
from mistralai.client import Mistral, errors, models
from virtual_clock import run_virtual

from batchrunner.mock import MODEL_IDS, MockConfig, MockServer, parse_error_rates, start_server
from batchrunner.mock.app import _Pipeline
from batchrunner.mock.endpoints import ENDPOINTS

CHAT = "/v1/chat/completions"
AUTH = {"Authorization": "Bearer test-key"}
REPO = Path(__file__).resolve().parents[1]


def chat_body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "mistral-small-latest",
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


@asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[tuple[MockServer, aiohttp.ClientSession]]:
    """A server on a free port plus a plain HTTP session; both closed afterwards."""
    server = await start_server(MockConfig(**options))
    try:
        async with aiohttp.ClientSession(server.url) as session:
            yield server, session
    finally:
        await server.close()


async def post(
    session: aiohttp.ClientSession,
    body: Any,
    path: str = CHAT,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    hdrs = {"Content-Type": "application/json", **(AUTH if headers is None else headers)}
    async with session.post(path, data=data, headers=hdrs) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


async def stats_of(session: aiohttp.ClientSession) -> dict[str, Any]:
    async with session.get("/_mock/stats") as resp:
        result: dict[str, Any] = orjson.loads(await resp.read())
        return result


# --- configuration -----------------------------------------------------------


def test_parse_error_rates_accepts_statuses_and_named_faults() -> None:
    assert parse_error_rates("429=0.1, 500=0.05,timeout=0.01,reset=0,garbage=0.2") == {
        "429": 0.1,
        "500": 0.05,
        "timeout": 0.01,
        "reset": 0.0,
        "garbage": 0.2,
    }
    assert parse_error_rates("") == {}


@pytest.mark.parametrize(
    "text", ["nope=0.1", "429=1.5", "429=-0.1", "429=x", "429", "429=0.6,500=0.5"]
)
def test_parse_error_rates_rejects_bad_input_with_one_line(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_error_rates(text)
    assert "\n" not in str(info.value)


# --- endpoints and SDK compatibility -------------------------------------------


@pytest.mark.asyncio
async def test_each_endpoint_validates_with_sdk_models() -> None:
    async with serving(embedding_dim=8) as (_, session):
        status, raw, _ = await post(session, chat_body("hello there", max_tokens=3))
        assert status == 200
        chat = models.ChatCompletionResponse.model_validate_json(raw)
        assert chat.choices[0].message is not None
        assert chat.choices[0].message.content == "echo: hello there"
        assert chat.usage.completion_tokens == 3  # capped by max_tokens
        assert chat.usage.total_tokens == (chat.usage.prompt_tokens or 0) + 3

        body = {"model": "mistral-embed", "input": ["a", "b", "a"]}
        status, raw, _ = await post(session, body, "/v1/embeddings")
        assert status == 200
        emb = models.EmbeddingResponse.model_validate_json(raw)
        vectors = [d.embedding for d in emb.data]
        assert [d.index for d in emb.data] == [0, 1, 2]
        assert all(v is not None and len(v) == 8 and all(-1 <= x <= 1 for x in v) for v in vectors)
        assert vectors[0] == vectors[2] != vectors[1]

        body = {"model": "codestral-latest", "prompt": "def f(", "suffix": "return 1"}
        status, raw, _ = await post(session, body, "/v1/fim/completions")
        fim = models.FIMCompletionResponse.model_validate_json(raw)
        assert fim.choices[0].message is not None
        assert fim.choices[0].message.content == "echo: def f("

        async with session.get("/v1/models", headers=AUTH) as resp:
            listing = models.ModelList.model_validate_json(await resp.read())
        assert listing.data is not None
        ids = {card.id for card in listing.data if isinstance(card, models.BaseModelCard)}
        assert ids == MODEL_IDS


@pytest.mark.asyncio
async def test_real_sdk_calls_succeed() -> None:
    async with (
        serving() as (server, _),
        Mistral(api_key="k", server_url=server.url) as client,
    ):
        chat = await client.chat.complete_async(
            model="mistral-large-latest", messages=[{"role": "user", "content": "ping"}]
        )
        assert chat.choices[0].message is not None
        assert chat.choices[0].message.content == "echo: ping"
        emb = await client.embeddings.create_async(model="mistral-embed", inputs=["x", "y"])
        assert len(emb.data) == 2
        fim = await client.fim.complete_async(model="codestral-latest", prompt="x = ")
        assert fim.choices[0].message is not None
        assert fim.choices[0].message.content == "echo: x = "
        listing = await client.models.list_async()
        assert listing.data is not None and len(listing.data) >= 7


@pytest.mark.asyncio
async def test_same_request_gets_byte_identical_answer() -> None:
    async with serving(latency_ms=1, jitter_ms=1) as (_, session):
        first = await post(session, chat_body("same"))
        second = await post(session, chat_body("same"))
        other = await post(session, chat_body("different"))
        # Key order and whitespace do not make it a different request.
        spelled = (
            b'{"messages": [{"content": "same", "role": "user"}], "model": "mistral-small-latest"}'
        )
        third = await post(session, spelled)
    assert first[1] == second[1] == third[1]
    assert orjson.loads(first[1])["id"] != orjson.loads(other[1])["id"]


# --- scripted faults -------------------------------------------------------------


@pytest.mark.asyncio
async def test_scripted_429_then_500_then_success() -> None:
    async with serving(retry_after_ms=1500) as (server, session):
        body = chat_body("job 7 [[mock:429,500]]")
        status, raw, headers = await post(session, body)
        assert status == 429
        assert headers["Retry-After"] == "2" and headers["retry-after-ms"] == "1500"
        assert orjson.loads(raw) == {
            "object": "error",
            "message": "Requests rate limit exceeded",
            "type": "rate_limited",
            "param": None,
            "code": "1300",
        }
        status, raw, _ = await post(session, body)
        assert status == 500 and orjson.loads(raw)["object"] == "error"
        status, raw, _ = await post(session, body)
        assert status == 200
        assert (
            orjson.loads(raw)["choices"][0]["message"]["content"] == "echo: job 7 [[mock:429,500]]"
        )
        # A different request with the same marker has its own attempt counter.
        assert (await post(session, chat_body("job 8 [[mock:429,500]]")))[0] == 429
        assert server.stats.by_status == {"429": 2, "500": 1, "200": 1}


@pytest.mark.asyncio
async def test_sdk_and_plain_client_share_the_attempt_counter() -> None:
    async with (
        serving() as (server, session),
        Mistral(api_key="k", server_url=server.url) as client,
    ):
        with pytest.raises(errors.SDKError) as info:
            await client.chat.complete_async(
                model="mistral-small-latest",
                messages=[{"role": "user", "content": "shared [[mock:503]]"}],
            )
        assert info.value.status_code == 503
        # The SDK sent "stream": false and its own key order; this is still attempt 2.
        assert (await post(session, chat_body("shared [[mock:503]]")))[0] == 200


@pytest.mark.asyncio
async def test_reset_garbage_quota_and_slow() -> None:
    async with serving() as (server, session):
        with pytest.raises(aiohttp.ClientConnectionError):
            await post(session, chat_body("r [[mock:reset]]"))
        status, raw, headers = await post(session, chat_body("g [[mock:garbage]]"))
        assert status == 200 and headers["Content-Type"] == "application/json"
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(raw)
        status, raw, headers = await post(session, chat_body("q [[mock:quota]]"))
        assert status == 429 and "Retry-After" not in headers
        assert orjson.loads(raw)["type"] == "quota_exceeded"
        # [[mock:slow]]: see test_answers_are_held_for_the_latency_and_the_fault
        assert (await post(session, chat_body("r [[mock:reset]]")))[0] == 200
        assert (await post(session, chat_body("x [[mock:bogus]]")))[0] == 400
        assert server.stats.by_status["reset"] == 1
        assert server.stats.by_status["garbage"] == 1


@pytest.mark.asyncio
async def test_timeout_fault_hangs_then_answers_and_close_cuts_it_short() -> None:
    async with serving(hang_s=0.01) as (server, session):  # how long it holds: below
        status, _, _ = await post(session, chat_body("t [[mock:timeout]]"))
        assert status == 200
        assert server.stats.by_status == {"timeout": 1}
    server = await start_server(MockConfig(hang_s=3600))
    async with aiohttp.ClientSession(server.url) as session:
        task = asyncio.create_task(post(session, chat_body("t [[mock:timeout]]")))
        await stats_ready(session, 1)
        # Only a clock can tell "close() cut the hang short" from "close() waited": the hang
        # is an hour, and close() takes its 0.2 s shutdown timeout (aiohttp's own default
        # would be 60 s). 30 s is far from both, so load cannot fail it and a regression to
        # the default cannot pass. The request is then cut: no answer ever reaches it.
        async with asyncio.timeout(30):
            await server.close()
        with pytest.raises(aiohttp.ClientError):
            await task
        assert server.stats.by_status == {"timeout": 1}


def held_for(config: MockConfig, *texts: str) -> list[tuple[float, int]]:
    """Virtual seconds one server's request pipeline holds each chat request, one after
    the other, and the status it answers.

    The real handler code, on a virtual clock: a sleep moves the clock at once, so the hold
    is measured exactly and takes no real time. No socket is involved (aiohttp's mocked
    request), which is what lets the clock be virtual."""

    async def main() -> list[tuple[float, int]]:
        loop = asyncio.get_running_loop()
        pipeline = _Pipeline(config)
        held = []
        for text in texts:
            payload = streams.StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=loop)
            payload.feed_data(orjson.dumps(chat_body(text)))
            payload.feed_eof()
            headers = {**AUTH, "Content-Type": "application/json"}
            request = make_mocked_request("POST", CHAT, headers=headers, payload=payload)
            started = loop.time()
            response = await pipeline.api(request, ENDPOINTS[CHAT])
            held.append((loop.time() - started, response.status))
        return held

    return run_virtual(main)


@pytest.mark.parametrize(
    ("config", "text", "seconds"),
    [
        (MockConfig(), "plain", 0.0),
        (MockConfig(latency_ms=60), "late", 0.06),
        (MockConfig(), "s [[mock:slow]]", 0.3),
        (MockConfig(latency_ms=60), "s [[mock:slow]]", 0.36),  # on top of the latency
        (MockConfig(hang_s=0.2), "t [[mock:timeout]]", 0.2),
        (MockConfig(), "t [[mock:timeout]]", 30.0),  # the default hang
    ],
)
def test_answers_are_held_for_the_latency_and_the_fault(
    config: MockConfig, text: str, seconds: float
) -> None:
    [(held, status)] = held_for(config, text)
    assert held == pytest.approx(seconds, abs=1e-4) and status == 200


def test_jitter_spreads_the_latency_within_its_bounds() -> None:
    config = MockConfig(latency_ms=50, jitter_ms=20, seed=3)
    held = held_for(config, *(f"j{i}" for i in range(20)))
    assert {status for _, status in held} == {200}
    holds = [seconds for seconds, _ in held]
    assert all(0.03 - 1e-4 <= h <= 0.07 + 1e-4 for h in holds)
    assert len({round(h, 4) for h in holds}) > 10  # spread, not one fixed value
    assert held_for(config, *(f"j{i}" for i in range(20))) == held  # and seeded


async def stats_ready(session: aiohttp.ClientSession, total: int) -> None:
    """Poll until the server has seen ``total`` API requests, for at most 5 s."""
    async with asyncio.timeout(5):
        while (await stats_of(session))["total"] < total:
            await asyncio.sleep(0.005)


# --- auth and validation ------------------------------------------------------


@pytest.mark.asyncio
async def test_401_without_key_and_with_wrong_required_key() -> None:
    async with serving() as (_, session):
        status, raw, _ = await post(session, chat_body("a"), headers={})
        assert status == 401 and orjson.loads(raw)["object"] == "error"
        async with session.get("/v1/models") as resp:
            assert resp.status == 401
    async with serving(require_key="secret") as (_, session):
        assert (await post(session, chat_body("a")))[0] == 401
        good = {"Authorization": "Bearer secret"}
        assert (await post(session, chat_body("a"), headers=good))[0] == 200


@pytest.mark.asyncio
async def test_400_for_unknown_model_and_non_json_body() -> None:
    async with serving() as (_, session):
        status, raw, _ = await post(session, {"model": "gpt-9", "messages": []})
        assert status == 400
        assert orjson.loads(raw) == {
            "object": "error",
            "message": "Invalid model: gpt-9",
            "type": "invalid_model",
            "param": None,
            "code": "1500",
        }
        assert (await post(session, b"not json"))[0] == 400
        assert (await post(session, b"[1, 2]"))[0] == 400


@pytest.mark.asyncio
async def test_422_missing_field_parses_as_sdk_validation_error() -> None:
    async with (
        serving() as (server, session),
        Mistral(api_key="k", server_url=server.url) as client,
    ):
        status, raw, _ = await post(session, {"model": "mistral-small-latest"})
        assert status == 422
        data = errors.HTTPValidationErrorData.model_validate_json(raw)
        assert data.detail is not None and data.detail[0].loc == ["body", "messages"]
        assert (await post(session, {"messages": []}))[0] == 422  # no model
        assert (await post(session, {"model": "mistral-embed"}, "/v1/embeddings"))[0] == 422
        assert (await post(session, {"model": "codestral-latest"}, "/v1/fim/completions"))[0] == 422
        with pytest.raises(errors.HTTPValidationError):
            await client.chat.complete_async(
                model="mistral-small-latest",
                messages=[{"role": "user", "content": "v [[mock:422]]"}],
            )


# --- limits, random faults, latency ---------------------------------------------


@pytest.mark.asyncio
async def test_limit_rps_answers_429_beyond_the_limit() -> None:
    async with serving(limit_rps=5, retry_after_ms=250) as (server, session):
        results = await asyncio.gather(*(post(session, chat_body(f"n{i}")) for i in range(12)))
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [200] * 5 + [429] * 7
        limited = next(headers for status, _, headers in results if status == 429)
        assert limited["Retry-After"] == "1" and limited["retry-after-ms"] == "250"
        stats = await stats_of(session)
        assert stats["rate_limited"] == 7 and stats["max_1s_window"] == 12
        assert server.stats.total == 12


@pytest.mark.asyncio
async def test_limit_tpm_counts_prompt_and_completion_tokens() -> None:
    # "x" * 40 -> 10 prompt tokens; "echo: " + 40 chars -> 11 completion tokens.
    async with serving(limit_tpm=50) as (_, session):
        first = await post(session, chat_body("x" * 40))
        second = await post(session, chat_body("y" * 40))
        third = await post(session, chat_body("z" * 40))
    assert (first[0], second[0], third[0]) == (200, 200, 429)
    assert orjson.loads(third[1])["message"] == "Tokens per minute limit exceeded"
    assert orjson.loads(third[1])["type"] == "rate_limited"


@pytest.mark.asyncio
async def test_random_faults_follow_the_seed() -> None:
    async def sequence(seed: int) -> list[int]:
        async with serving(error_rates={"503": 0.5}, seed=seed) as (_, session):
            return [(await post(session, chat_body(f"r{i}")))[0] for i in range(30)]

    first, again, other = await sequence(7), await sequence(7), await sequence(8)
    assert first == again != other
    assert set(first) == {200, 503}


# --- stats and log -------------------------------------------------------------


@pytest.mark.asyncio
async def test_stats_count_requests_statuses_paths_and_resends(tmp_path: Path) -> None:
    log = tmp_path / "mock.jsonl"
    async with serving(log_path=str(log)) as (_, session):
        await post(session, chat_body("one"))
        await post(session, chat_body("one"))
        await post(session, chat_body("two [[mock:500]]"))
        await post(session, chat_body("two [[mock:500]]"))
        await post(session, {"model": "mistral-embed", "input": "e"}, "/v1/embeddings")
        stats = await stats_of(session)
        assert (await stats_of(session))["total"] == 5  # /_mock/stats itself is not counted
    assert stats["by_status"] == {"200": 4, "500": 1}
    assert stats["by_path"] == {CHAT: 4, "/v1/embeddings": 1}
    assert stats["resent"] == 2 and stats["by_body_hash_repeats"] == 2
    assert stats["rate_limited"] == 0 and stats["max_1s_window"] == 5
    assert stats["first_arrival"] <= stats["last_arrival"]
    assert stats["tokens"]["prompt"] > 0 and stats["tokens"]["completion"] > 0
    lines = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    assert [line["status"] for line in lines] == [200, 200, 500, 200, 200]
    assert lines[0]["custom"] == "one" and lines[0]["body_hash"] == lines[1]["body_hash"]
    assert len(lines[0]["body_hash"]) == 16


# --- the subprocess ---------------------------------------------------------------


def start_process(*args: str) -> subprocess.Popen[str]:
    require_e2e("the mock server")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "batchrunner.mock", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
    )


def first_line(proc: subprocess.Popen[str], timeout: float = 20.0) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout), "the mock server printed nothing"
    return proc.stdout.readline()


@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_subprocess_prints_url_and_exits_0_on_signal(sig: signal.Signals) -> None:
    proc = start_process("--port", "0", "--latency-ms", "0")
    try:
        line = first_line(proc)
        assert line.startswith("mock server listening on http://127.0.0.1:")
        url = line.strip().removeprefix("mock server listening on ")
        request = urllib.request.Request(url + "/v1/models", headers=AUTH)
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert out == "" and err == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.e2e
def test_subprocess_bad_option_exits_2_with_one_line() -> None:
    proc = start_process("--error-rate", "429=2")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert out == "" and err.count("\n") == 1 and "429" in err
