"""Classification of HTTP answers: retry or set aside, and how long the server asked to wait."""

from __future__ import annotations

import email.utils

import orjson
import pytest
from multidict import CIMultiDict

from batchrunner.clients.base import usage_of
from batchrunner.clients.classify import (
    classify_status,
    connection_failure,
    error_message,
    internal_error,
    invalid_response,
    parse_retry_after,
    read_ok,
    safe_text,
    timeout_failure,
)
from batchrunner.vocabulary import Failure, Success

NOW = 1_750_000_000.0  # a fixed "current time" for HTTP-date tests


@pytest.mark.parametrize(
    ("status", "type_"),
    [
        (400, "bad_request"),
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "not_found"),
        (422, "validation_error"),
        (418, "client_error"),
    ],
)
def test_client_errors_are_not_retryable(status: int, type_: str) -> None:
    f = classify_status(status, {"retry-after": "5"}, b'{"message": "nope"}')
    assert f == Failure(type=type_, status_code=status, message="nope")


def test_429_is_retryable_and_carries_retry_after() -> None:
    f = classify_status(429, {"retry-after": "3"}, b'{"message": "Requests rate limit exceeded"}')
    assert f.retryable
    assert f.status_code == 429
    assert f.type == "rate_limited"
    assert f.retry_after == 3.0
    assert f.message == "Requests rate limit exceeded"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_are_retryable(status: int) -> None:
    f = classify_status(status, {}, b"")
    assert f.retryable
    assert f.status_code == status
    assert f.type == "server_error"
    assert f.retry_after is None
    assert f.message == f"HTTP {status}"  # empty body: the status stands in


def test_503_retry_after_is_honoured() -> None:
    assert classify_status(503, {"retry-after": "7"}, b"").retry_after == 7.0


def test_real_header_mappings_are_case_insensitive() -> None:
    # aiohttp hands classify_status a CIMultiDictProxy; servers send "Retry-After".
    headers = CIMultiDict({"Retry-After": "2", "Retry-After-Ms": "2500"})
    assert classify_status(429, headers, b"").retry_after == 2.5


def test_other_failures() -> None:
    t = timeout_failure(2.5)
    assert (t.retryable, t.status_code, t.type) == (True, None, "timeout")
    assert "2.5 s" in t.message
    c = connection_failure(ConnectionResetError())
    assert (c.retryable, c.type, c.message) == (True, "connection_error", "ConnectionResetError")
    i = invalid_response("x" * 1000)
    assert (i.retryable, i.status_code, i.type) == (True, 200, "invalid_response")
    assert len(i.message) == 501


# --- Retry-After ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("5", 5.0), (" 12 ", 12.0), ("1.5", 1.5), ("0.25", 0.25), ("120", 120.0)],
)
def test_retry_after_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after({"retry-after": value}) == seconds


def test_retry_after_http_date_relative_to_now() -> None:
    future = email.utils.formatdate(NOW + 30, usegmt=True)
    assert parse_retry_after({"retry-after": future}, now=NOW) == pytest.approx(30.0)
    assert parse_retry_after({"retry-after": future}, now=NOW + 10) == pytest.approx(20.0)


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    past = email.utils.formatdate(NOW - 60, usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=NOW) == 0.0


def test_retry_after_ms_is_preferred() -> None:
    headers = {"retry-after-ms": "1500", "retry-after": "10"}
    assert parse_retry_after(headers) == 1.5
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25


@pytest.mark.parametrize("ms", ["junk", "", "nan", "inf", "-5"])
def test_unusable_retry_after_ms_falls_back_to_retry_after(ms: str) -> None:
    assert parse_retry_after({"retry-after-ms": ms, "retry-after": "4"}) == 4.0
    assert parse_retry_after({"retry-after-ms": ms}) is None


@pytest.mark.parametrize("value", ["soon", "", "nan", "inf", "-inf", "1e999", "Wed, 99 Foo"])
def test_junk_retry_after_is_none(value: str) -> None:
    assert parse_retry_after({"retry-after": value}, now=NOW) is None


@pytest.mark.parametrize("value", ["-1", "-0.5", "-3600"])
def test_negative_retry_after_is_zero(value: str) -> None:
    assert parse_retry_after({"retry-after": value}) == 0.0


def test_no_retry_after_is_none() -> None:
    assert parse_retry_after({}) is None
    assert parse_retry_after({"content-type": "application/json"}) is None


# --- error_message ----------------------------------------------------------------------------


def test_message_from_mistral_error_body() -> None:
    body = {
        "object": "error",
        "message": "Invalid model: mistral-huge",
        "type": "invalid_model",
        "param": None,
        "code": "1500",
    }
    assert error_message(orjson.dumps(body)) == "Invalid model: mistral-huge"
    assert error_message(orjson.dumps(body).decode()) == "Invalid model: mistral-huge"


def test_message_from_fastapi_422_detail() -> None:
    body = {
        "detail": [
            {"type": "missing", "loc": ["body", "messages"], "msg": "Field required"},
            {"type": "missing", "loc": ["body", "model"], "msg": "Field required"},
        ]
    }
    assert error_message(orjson.dumps(body)) == "body.messages: Field required"
    assert error_message(b'{"detail": [{"loc": [], "msg": "bad"}]}') == "bad"
    assert error_message(b'{"detail": "Not Found"}') == "Not Found"


def test_message_from_non_json_text() -> None:
    assert error_message(b"<html>502 Bad Gateway</html>\n") == "<html>502 Bad Gateway</html>"
    assert error_message("  upstream timeout  ") == "upstream timeout"
    assert error_message(b"bad \xff bytes") == "bad \ufffd bytes"


def test_other_json_is_shown_compactly() -> None:
    assert error_message(b'{"error": {"code": 7}}') == '{"error":{"code":7}}'
    assert error_message(b'{"message": ""}') == '{"message":""}'


def test_long_text_is_clipped() -> None:
    text = "e" * 5000
    msg = error_message(text.encode())
    assert len(msg) == 501
    assert msg == "e" * 500 + "…"
    long_json = error_message(orjson.dumps({"message": "m" * 800}))
    assert long_json == "m" * 500 + "…"
    assert error_message("e" * 500) == "e" * 500  # exactly at the limit: untouched


def test_the_key_is_taken_out_of_a_message() -> None:
    key = "sk-0123456789abcdef"
    failure = classify_status(429, {}, orjson.dumps({"message": f"quota spent for key {key}"}), key)
    assert failure.message == "quota spent for key [redacted]"
    assert failure.type == "quota_exceeded"
    assert failure.status_code == 429
    # A too-short key would mangle words: it is not looked for.
    assert safe_text("mock: injected 422", "k") == "mock: injected 422"


KEY = "sk-live-0123456789abcdefghijklmnopq"  # 35 characters


@pytest.mark.parametrize("before", [480, 490, 495, 499, 500])
def test_a_key_straddling_the_cut_leaves_nothing_of_itself(before: int) -> None:
    body = orjson.dumps({"message": "x" * before + f"key {KEY} refused"})
    message = classify_status(401, {}, body, KEY).message
    assert len(message) <= 501
    for n in range(9, len(KEY) + 1):
        assert KEY[:n] not in message, n


def test_a_key_the_server_cut_is_taken_out_of_the_tail() -> None:
    assert safe_text("refused: " + KEY[:12], KEY) == "refused: [redacted]"
    assert safe_text("refused: " + KEY[:8], KEY) == "refused: " + KEY[:8]  # 8: too short to tell
    assert error_message(b"x" * 600 + KEY.encode(), KEY) == "x" * 500 + "\u2026"


def test_an_internal_error_names_the_exception_and_where_without_the_key() -> None:
    try:
        raise ValueError(f"header {KEY} refused")
    except ValueError as exc:
        failure = internal_error(exc, KEY)
    assert failure.type == "internal_error"
    assert failure.action == "dead_letter"
    assert failure.message.startswith("ValueError: header [redacted] refused (at test_classify.py:")


# --- a 200: one reading for both clients ------------------------------------------------------

CHAT = "/v1/chat/completions"


def test_a_200_answer_is_a_success_kept_as_sent() -> None:
    raw = b'{"id":"a","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4},"n":1}\n'
    ok = read_ok(raw, CHAT, {})
    assert ok == Success(orjson.loads(raw), 3, 4, raw.strip())
    pretty = b'{\n  "choices": [],\r\n  "s": "a\\nb"\n}\n'
    assert read_ok(pretty, CHAT, {}).raw == b'{  "choices": [],  "s": "a\\nb"}'  # type: ignore[union-attr]


def test_the_key_is_taken_out_of_a_200_body() -> None:
    raw = b'{"choices":[{"message":{"content":"your key is ' + KEY.encode() + b'"}}]}'
    ok = read_ok(raw, CHAT, {}, KEY)
    assert isinstance(ok, Success)
    assert KEY.encode() not in ok.raw
    assert ok.body["choices"][0]["message"]["content"] == "your key is [redacted]"


@pytest.mark.parametrize(
    ("raw", "type_", "retryable"),
    [
        (b"<html><body>sign in</body></html>", "invalid_response", True),
        (b"[1, 2]", "invalid_response", True),
        (b'{"foo": 1}', "invalid_response", True),
        (b'{"data": []}', "invalid_response", True),  # an embeddings answer, not a chat one
        (b'{"object":"error","message":"Rate limit exceeded","type":"rate_limited","code":"1300"}',
         "rate_limited", True),
        (b'{"object":"error","message":"Service unavailable","code":"503"}', "server_error", True),
        (b'{"object":"error","message":"You have exceeded your monthly quota"}',
         "quota_exceeded", False),
        (b'{"object":"error","message":"Unauthorized","type":"unauthorized","code":"1000"}',
         "unauthorized", False),
        (b'{"object":"error","message":"Invalid model: x","type":"invalid_model"}',
         "invalid_model", False),
        (b'{"error":{"message":"bad input","type":"invalid_request_error"}}', "bad_request", False),
        (b'{"error":{"message":"slow down","status":429}}', "rate_limited", True),
        (b'{"object":"error","message":"something odd"}', "invalid_response", True),
        (b'{"object":"error","choices":[]}', "invalid_response", True),
    ],
)  # fmt: skip
def test_a_200_that_is_not_an_answer_is_a_failure(raw: bytes, type_: str, retryable: bool) -> None:
    failure = read_ok(raw, CHAT, {})
    assert isinstance(failure, Failure)
    assert (failure.type, failure.status_code, failure.retryable) == (type_, 200, retryable)
    assert failure.message.startswith("200 ")


def test_an_error_body_nested_past_what_orjson_writes_still_has_a_message() -> None:
    raw = b'{"object":"error","detail":' + b"[" * 300 + b"]" * 300 + b"}"
    failure = classify_status(500, {}, raw)
    assert failure.type == "server_error"
    assert failure.message.startswith('{"object":"error","detail":[[[')
    assert len(failure.message) == 501


def test_usage_counts_below_zero_or_not_whole_count_as_zero() -> None:
    body = {"choices": [], "usage": {"prompt_tokens": -5, "completion_tokens": True}}
    assert usage_of(body) == Success(body, 0, 0)
    assert (
        usage_of({"usage": {"prompt_tokens": 2.5, "completion_tokens": 7}}).completion_tokens == 7
    )
