"""The mock server's request limiters (``--limit-algo``), its capacity 429s, and how the
client tells a capacity 429 from a rate limit by its body."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import pytest
from click.testing import CliRunner

from batchrunner.clients.classify import classify_status
from batchrunner.mock.cli import mock_server
from batchrunner.mock.config import MockConfig, parse_error_rates
from batchrunner.mock.decide import Decider
from batchrunner.mock.endpoints import ENDPOINTS
from batchrunner.mock.limits import (
    FixedWindow,
    RequestBucket,
    RequestLimit,
    RequestWindow,
    request_limit,
)
from batchrunner.mock.replies import capacity_reply, quota_reply, rate_limited_reply
from batchrunner.mock.stats import Stats

# -- the limiters --------------------------------------------------------------------------


def admitted(limiter: RequestLimit, times: list[float]) -> list[float]:
    return [t for t in times if limiter.admit(t)]


def test_a_sliding_window_counts_any_second() -> None:
    times = [k / 100 for k in range(300)]  # 100 a second for 3 s
    got = admitted(RequestWindow(40), times)
    assert all(sum(1 for u in got if t - 1 < u <= t) <= 40 for t in got)
    assert len(got) == 120


def test_a_fixed_window_starts_again_at_each_whole_second() -> None:
    times = [10.5 + k / 100 for k in range(150)]  # 10.50 .. 11.99
    got = admitted(FixedWindow(40), times)
    assert len([t for t in got if t < 11]) == 40 and len([t for t in got if t >= 11]) == 40
    # Two full windows meet at the boundary: 80 within a second, which a sliding one refuses.
    assert sum(1 for t in got if 10.5 <= t < 11.5) == 80


def test_a_bucket_spends_its_burst_then_its_refill() -> None:
    bucket = RequestBucket(40)
    assert sum(bucket.admit(0.0) for _ in range(60)) == 40  # a full second's burst at once
    assert not bucket.admit(0.01)
    later = [0.02 + k / 100 for k in range(100)]  # then 100 a second: the refill, 40/s
    assert 39 <= len(admitted(bucket, later)) <= 41
    assert sum(bucket.admit(5.0) for _ in range(60)) == 40  # idle: the burst is back


def test_request_limit_names_the_three() -> None:
    assert isinstance(request_limit("sliding", 5), RequestWindow)
    assert isinstance(request_limit("fixed", 5), FixedWindow)
    assert isinstance(request_limit("bucket", 5), RequestBucket)


def test_the_cli_takes_the_algorithm() -> None:
    runner = CliRunner()
    res = runner.invoke(mock_server, ["--limit-algo", "leaky"])
    assert res.exit_code == 2 and "sliding" in res.output and "bucket" in res.output
    assert "--limit-algo" in runner.invoke(mock_server, ["--help"]).output


def test_the_decider_uses_the_configured_limiter() -> None:
    chat = ENDPOINTS["/v1/chat/completions"]
    body = {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "x"}]}

    def labels(algo: str) -> list[str]:
        decider = Decider(MockConfig(limit_rps=2, limit_algo=algo), Stats())  # type: ignore[arg-type]
        return [decider.decide(chat, body, b"", b"0" * 16, t).label for t in (0.9, 0.95, 1.0)]

    assert labels("sliding") == ["200", "200", "429"]
    assert labels("fixed") == ["200", "200", "200"]  # 1.0 opens a new window


# -- capacity 429s -------------------------------------------------------------------------


def test_the_capacity_fault_is_a_random_fault_with_mistrals_body() -> None:
    assert parse_error_rates("capacity=0.2,429=0.1") == {"capacity": 0.2, "429": 0.1}
    chat = ENDPOINTS["/v1/chat/completions"]
    body = {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "x"}]}
    decider = Decider(MockConfig(error_rates={"capacity": 1.0}, retry_after_ms=500), Stats())
    decision = decider.decide(chat, body, b"", b"0" * 16, 0.0)
    assert decision.label == "429" and decision.reply is not None
    error = orjson.loads(decision.reply.body)
    assert error["type"] == "service_tier_capacity_exceeded" and error["code"] == "3505"
    assert decision.reply.headers["retry-after-ms"] == "500"


def body(message: str, type_: str | None, code: str | None, **extra: object) -> bytes:
    error = {"object": "error", "message": message, "type": type_, "param": None, "code": code}
    return orjson.dumps(error | extra)


@pytest.mark.parametrize(
    ("raw", "type_"),
    [
        (capacity_reply(1000).body, "capacity_exceeded"),
        (
            body("Not enough capacity available for this request, please retry later.",
                 "backend_out_of_capacity", "3505"),
            "capacity_exceeded",
        ),
        (  # the older form: only the message says so
            body("Service tier capacity exceeded for this model.", "invalid_request_error", None),
            "capacity_exceeded",
        ),
        (body("Something", "unknown", "3505"), "capacity_exceeded"),  # by its code
        (rate_limited_reply(1000).body, "rate_limited"),
        (body("Rate limit exceeded", "rate_limited", "1300", raw_status_code=429), "rate_limited"),
        (body("Requests rate limit exceeded", None, "1300"), "rate_limited"),
        # "rate limited" by its type wins over a message that says capacity
        (body("rate limited: capacity of your tier", "rate_limited", "1300"), "rate_limited"),
        (body("Too many requests", None, None), "rate_limited"),  # unknown: a rate limit
        (b"<html>429 Too Many Requests</html>", "rate_limited"),
        (quota_reply().body, "quota_exceeded"),
    ],
)  # fmt: skip
def test_a_429_is_told_by_its_body(raw: bytes, type_: str) -> None:
    headers: Mapping[str, str] = {"retry-after": "2"}
    failure = classify_status(429, headers, raw)
    assert failure.type == type_ and failure.status_code == 429
    if type_ != "quota_exceeded":
        assert failure.retryable and failure.retry_after == 2.0
