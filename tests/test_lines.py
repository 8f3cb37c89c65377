"""Input parsing: one physical line in, one Item / BadLine / None out; never an exception."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from batchrunner.input.lines import (
    DUPLICATE,
    NEW,
    BadLine,
    Done,
    Item,
    fingerprint,
    parse_line,
    read_input,
)
from batchrunner.ledger.records import dead_line, input_dead_line
from batchrunner.vocabulary import Failure

CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"
FIM = "/v1/fim/completions"
ENDPOINTS = (CHAT, EMBED, FIM)


def item(raw: bytes, line: int = 1, endpoint: str = CHAT, model: str | None = "m") -> Item:
    parsed = parse_line(raw, line, endpoint, model)
    assert isinstance(parsed, Item), parsed
    return parsed


def bad(raw: bytes, line: int = 1, endpoint: str = CHAT, model: str | None = "m") -> BadLine:
    parsed = parse_line(raw, line, endpoint, model)
    assert isinstance(parsed, BadLine), parsed
    return parsed


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


# --- parse_line: the accepted shapes ---------------------------------------------------------


def test_batch_form_body_is_sent_as_is() -> None:
    body = {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "hi"}]}
    obj = {"custom_id": "req-1", "body": body}
    it = item(dumps(obj), line=3, model="other")
    assert it.custom_id == "req-1"
    assert it.line == 3
    assert it.body == body
    assert it.request == obj
    assert it.fp == fingerprint(body)


def test_prompt_shorthand_becomes_one_user_message_on_chat() -> None:
    it = item(dumps({"custom_id": "a", "prompt": "Say hi"}))
    assert it.body == {"messages": [{"role": "user", "content": "Say hi"}], "model": "m"}
    assert "prompt" not in it.body


def test_messages_shorthand_is_kept() -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    it = item(dumps({"custom_id": "a", "messages": messages}))
    assert it.body == {"messages": messages, "model": "m"}


def test_prompt_and_messages_together_keeps_messages_and_prompt() -> None:
    messages = [{"role": "user", "content": "from messages"}]
    it = item(dumps({"prompt": "p", "messages": messages}))
    assert it.body["messages"] == messages
    assert it.body["prompt"] == "p"


def test_extra_keys_of_shorthand_go_into_the_body() -> None:
    it = item(dumps({"custom_id": "a", "prompt": "x", "temperature": 0.2, "max_tokens": 5}))
    assert it.body["temperature"] == 0.2
    assert it.body["max_tokens"] == 5
    assert "custom_id" not in it.body


def test_embeddings_input() -> None:
    it = item(dumps({"custom_id": "e", "input": ["one", "two"]}), endpoint=EMBED)
    assert it.body == {"input": ["one", "two"], "model": "m"}
    assert item(dumps({"input": "single"}), endpoint=EMBED).body["input"] == "single"


def test_fim_prompt_and_suffix_stay_as_they_are() -> None:
    it = item(dumps({"custom_id": "f", "prompt": "def f(", "suffix": "return 1"}), endpoint=FIM)
    assert it.body == {"prompt": "def f(", "suffix": "return 1", "model": "m"}
    assert "messages" not in it.body


def test_prompt_shorthand_is_not_a_request_for_embeddings() -> None:
    b = bad(dumps({"custom_id": "e", "prompt": "x"}), endpoint=EMBED)
    assert b.type == "no_request"
    assert "'input'" in b.message


# --- ids --------------------------------------------------------------------------------------


def test_missing_custom_id_is_hash_and_the_line_number() -> None:
    assert item(dumps({"prompt": "x"}), line=17).custom_id == "#17"
    # A run begun before "#N" keeps bare numbers (its manifest says so): see test_ids.py.
    legacy = parse_line(dumps({"prompt": "x"}), 17, CHAT, "m", implicit_prefix="")
    assert isinstance(legacy, Item) and legacy.custom_id == "17"


def test_byte_order_mark_is_dropped_on_line_one_only() -> None:
    raw = b"\xef\xbb\xbf" + dumps({"custom_id": "a", "prompt": "x"})
    assert item(raw, line=1).custom_id == "a"
    assert bad(raw, line=2).type == "invalid_json"  # a BOM anywhere else is not one


def test_a_line_url_routes_it_and_stays_out_of_the_body() -> None:
    it = item(dumps({"custom_id": "e", "method": "POST", "url": EMBED, "input": "x"}))
    assert (it.endpoint, it.body) == (EMBED, {"input": "x", "model": "m"})
    assert item(dumps({"custom_id": "c", "prompt": "x"})).endpoint is None  # the run's


def test_number_and_string_ids_clash_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(dumps({"custom_id": "7", "prompt": "a"}) + b"\n")
    with path.open("ab") as f:
        f.write(dumps({"custom_id": 7, "prompt": "b"}) + b"\n")
    first, second = read_input(path, CHAT, "m")
    assert isinstance(first, Item) and isinstance(second, BadLine)
    assert second.type == "duplicate_custom_id"
    assert 'the number 7 and the string "7" are the same id' in second.message


def test_integer_custom_id_becomes_a_string() -> None:
    it = item(dumps({"custom_id": 42, "prompt": "x"}))
    assert it.custom_id == "42"
    assert isinstance(it.custom_id, str)


@pytest.mark.parametrize("cid", [True, "", None, 1.5, ["a"], {"a": 1}])
def test_unusable_custom_id_is_a_bad_line(cid: Any) -> None:
    b = bad(dumps({"custom_id": cid, "prompt": "x"}), line=4)
    assert b.type == "invalid_custom_id"
    assert b.line == 4
    assert b.custom_id is None


# --- the model --------------------------------------------------------------------------------


def test_default_model_is_injected_when_the_body_has_none() -> None:
    it = item(dumps({"custom_id": "a", "body": {"messages": [{"role": "user", "content": "x"}]}}))
    assert it.body["model"] == "m"
    # The original line (what a dead-letter entry shows) is not modified.
    assert "model" not in it.request["body"]


def test_default_model_does_not_override_the_line_model() -> None:
    assert item(dumps({"prompt": "x", "model": "own"}), model="default").body["model"] == "own"
    batch = {"body": {"model": "own", "messages": [{"role": "user", "content": "x"}]}}
    assert item(dumps(batch), model="default").body["model"] == "own"


def test_no_model_and_no_default_is_a_bad_line() -> None:
    b = bad(dumps({"custom_id": "a", "prompt": "x"}), line=9, model=None)
    assert b.type == "no_model"
    assert b.custom_id == "a"
    assert b.line == 9
    assert "--model" in b.message


def test_line_model_without_default_is_fine() -> None:
    assert item(dumps({"prompt": "x", "model": "own"}), model=None).body["model"] == "own"


# --- blank lines and line endings -------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"\n", b"\r\n", b"   \t  \r\n", b"\r", b" "])
def test_blank_lines_are_none(raw: bytes) -> None:
    assert parse_line(raw, 1, CHAT, "m") is None


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"", b"  \r\n"])
def test_line_endings_do_not_matter(ending: bytes) -> None:
    it = item(b'{"custom_id": "c", "prompt": "hi"}' + ending)
    assert it.custom_id == "c"
    assert it.body["messages"] == [{"role": "user", "content": "hi"}]


# --- bad lines --------------------------------------------------------------------------------


def test_invalid_json() -> None:
    b = bad(b'{"prompt": "unterminated\n', line=5)
    assert b.type == "invalid_json"
    assert b.line == 5
    assert b.custom_id is None
    assert b.request == '{"prompt": "unterminated'
    assert b.message.startswith("line is not valid JSON")


@pytest.mark.parametrize("raw", [b'{"prompt": "caf\xe9"}', b"\xff\xfe\xfd", b'{"prompt": "\xc3"}'])
def test_invalid_utf8(raw: bytes) -> None:
    b = bad(raw + b"\n", line=2)
    assert b.type == "invalid_utf8"
    assert b.line == 2
    assert "UTF-8" in b.message
    # What goes to the dead-letter file is text that can be written as JSON.
    assert isinstance(b.request, str)
    orjson.dumps(b.request)


@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"[1, 2]", "list"), (b'"text"', "str"), (b"42", "int"), (b"null", "NoneType")],
)
def test_not_an_object(raw: bytes, kind: str) -> None:
    b = bad(raw, line=6)
    assert b.type == "not_an_object"
    assert kind in b.message
    assert b.request == orjson.loads(raw)


@pytest.mark.parametrize(
    ("obj", "endpoint"),
    [
        ({"custom_id": "a"}, CHAT),
        ({"custom_id": "a", "messages": []}, CHAT),
        ({"custom_id": "a", "messages": {"role": "user"}}, CHAT),
        ({"custom_id": "a", "prompt": ""}, FIM),
        ({"custom_id": "a", "input": []}, EMBED),
        ({"custom_id": "a", "suffix": "only"}, FIM),
        ({"custom_id": "a", "body": {"model": "m"}}, CHAT),
    ],
)
def test_no_usable_request(obj: dict[str, Any], endpoint: str) -> None:
    b = bad(dumps(obj), endpoint=endpoint)
    assert b.type == "no_request"
    assert b.custom_id == "a"
    assert "no usable request" in b.message
    assert endpoint in b.message


@pytest.mark.parametrize("body", [[1], "text", None, 3])
def test_body_not_an_object(body: Any) -> None:
    b = bad(dumps({"custom_id": "a", "body": body}))
    assert b.type == "no_request"
    assert b.message == "'body' must be a JSON object"
    assert b.request == {"custom_id": "a", "body": body}


def test_body_nested_too_deep_to_send_is_a_bad_line() -> None:
    depth = 300  # orjson reads up to 1024 levels but writes only ~254
    raw = b'{"custom_id": "deep", "messages": ' + b"[" * depth + b"]" * depth + b"}"
    b = bad(raw, line=8)
    assert b.type == "invalid_request"
    assert b.custom_id == "deep"
    assert b.request == raw.decode()  # kept as text, which can be written
    assert b.line == 8
    input_dead_line(b)


DEEP = b"[" * 300 + b"]" * 300
NEAR_LIMIT = b"[" * 252 + b"]" * 252


@pytest.mark.parametrize(
    ("raw", "model"),
    [
        pytest.param(DEEP, "m", id="not_an_object"),
        pytest.param(b'{"custom_id": true, "x": ' + DEEP + b"}", "m", id="invalid_custom_id"),
        pytest.param(b'{"custom_id": "a", "x": ' + DEEP + b"}", "m", id="no_request"),
        pytest.param(b'{"custom_id": "a", "prompt": "p", "x": ' + DEEP + b"}", None, id="no_model"),
        pytest.param(
            b'{"custom_id": "a", "body": {"model": "m", "messages": ' + NEAR_LIMIT + b"}}",
            "m",
            id="item_near_limit",
        ),
    ],
)
def test_every_outcome_can_be_dead_lettered(raw: bytes, model: str | None) -> None:
    parsed = parse_line(raw, 1, CHAT, model)
    if isinstance(parsed, BadLine):
        record = orjson.loads(input_dead_line(parsed))
    else:
        assert isinstance(parsed, Item)
        record = orjson.loads(
            dead_line(parsed, Failure(type="bad_request", status_code=400, message="no"), 1)
        )
    assert record["line"] == 1


# --- fingerprint ------------------------------------------------------------------------------


def test_fingerprint_is_stable_across_key_order() -> None:
    a = {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 0}
    b = {"temperature": 0, "messages": [{"content": "x", "role": "user"}], "model": "m"}
    assert fingerprint(a) == fingerprint(b)
    line_a = item(dumps({"custom_id": "1", "body": a}))
    line_b = item(dumps({"body": b, "custom_id": "1"}))
    assert line_a.fp == line_b.fp


def test_fingerprint_differs_for_different_bodies() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert fingerprint(base) != fingerprint({**base, "model": "n"})
    assert fingerprint(base) != fingerprint(
        {**base, "messages": [{"role": "user", "content": "y"}]}
    )
    assert fingerprint(base) != fingerprint({**base, "temperature": 0})
    # The injected default model is part of what is fingerprinted.
    assert item(b'{"prompt": "x"}', model="a").fp != item(b'{"prompt": "x"}', model="b").fp


# --- read_input -------------------------------------------------------------------------------


def write_lines(path: Path, lines: list[bytes], trailing_newline: bool = True) -> Path:
    path.write_bytes(b"\n".join(lines) + (b"\n" if trailing_newline else b""))
    return path


def test_read_input_duplicate_custom_id_only_the_later_line_is_bad(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "in.jsonl",
        [
            b'{"custom_id": "a", "prompt": "first"}',
            b'{"custom_id": "b", "prompt": "other"}',
            b'{"custom_id": "a", "prompt": "second"}',
            b'{"custom_id": "a", "prompt": "third"}',
        ],
    )
    entries = list(read_input(path, CHAT, "m"))
    assert [type(e) for e in entries] == [Item, Item, BadLine, BadLine]
    first = entries[0]
    assert isinstance(first, Item)
    assert first.body["messages"][0]["content"] == "first"
    for dup, line in zip(entries[2:], (3, 4), strict=True):
        assert isinstance(dup, BadLine)
        assert dup.type == "duplicate_custom_id"
        assert dup.custom_id == "a"
        assert dup.line == line
        assert "'a'" in dup.message


def test_read_input_line_numbers_are_physical(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "in.jsonl",
        [b"", b'{"prompt": "one"}', b"   ", b"\r", b"not json", b"", b'{"prompt": "two"}'],
    )
    entries = list(read_input(path, CHAT, "m"))
    assert [e.line for e in entries] == [2, 5, 7]
    assert [e.custom_id for e in entries] == ["#2", None, "#7"]
    assert isinstance(entries[1], BadLine)
    assert entries[1].type == "invalid_json"


def test_read_input_crlf_file(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"custom_id": "x", "prompt": "a"}\r\n\r\n{"prompt": "b"}\r\n')
    entries = list(read_input(path, CHAT, "m"))
    assert all(isinstance(e, Item) for e in entries)
    assert [(e.custom_id, e.line) for e in entries] == [("x", 1), ("#3", 3)]


def test_read_input_truncated_last_line_without_newline(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "in.jsonl",
        [b'{"custom_id": "a", "prompt": "x"}', b'{"custom_id": "b", "prom'],
        trailing_newline=False,
    )
    entries = list(read_input(path, CHAT, "m"))
    assert len(entries) == 2
    assert isinstance(entries[0], Item)
    last = entries[1]
    assert isinstance(last, BadLine)
    assert last.type == "invalid_json"
    assert last.line == 2


def test_read_input_complete_last_line_without_newline(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "in.jsonl",
        [b'{"custom_id": "a", "prompt": "x"}', b'{"custom_id": "b", "prompt": "y"}'],
        trailing_newline=False,
    )
    entries = list(read_input(path, CHAT, "m"))
    assert [(type(e), e.custom_id, e.line) for e in entries] == [(Item, "a", 1), (Item, "b", 2)]


def test_read_input_first_line_claims_its_custom_id_even_when_bad(tmp_path: Path) -> None:
    # The first line to name an id claims it, sendable or not: otherwise whether a later
    # line is a duplicate would depend on --model or an edit, and change between runs.
    path = write_lines(
        tmp_path / "in.jsonl",
        [b'{"custom_id": "a", "messages": []}', b'{"custom_id": "a", "prompt": "ok"}'],
    )
    entries = list(read_input(path, CHAT, "m"))
    assert isinstance(entries[0], BadLine)
    assert entries[0].type == "no_request"
    assert isinstance(entries[1], BadLine)
    assert entries[1].type == "duplicate_custom_id"


def test_read_input_done_ids_are_skipped_or_compared(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "in.jsonl",
        [
            b'{"custom_id": "a", "prompt": "x"}',
            b'{"custom_id": "b", "body": 5}',
            b'{"prompt": "y"}',
            b'{"custom_id": "a", "prompt": "again"}',
            b'{"custom_id": "#3", "prompt": "z"}',  # line 3's implicit id
        ],
    )
    outcomes = {"a": 7, "b": 8}

    def claim(cids: list[str]) -> list[int]:  # each decided id once; the others are ours
        return [outcomes.pop(cid, DUPLICATE if cid in "ab" else NEW) for cid in cids]

    fast = list(read_input(path, CHAT, "m", claim))
    assert [type(e).__name__ for e in fast] == ["Done", "Done", "Item", "BadLine", "BadLine"]
    assert [e.outcome for e in fast[:2] if isinstance(e, Done)] == [7, 8]
    assert all(isinstance(e, Done) and e.item is None for e in fast[:2])
    assert [e.type for e in fast[3:] if isinstance(e, BadLine)] == ["duplicate_custom_id"] * 2
    outcomes.update(a=7, b=8)
    compared = list(read_input(path, CHAT, "m", claim, compare_done=True))
    # a done line that still makes a request carries it, to be compared; one that no longer
    # does is still done (its result stands), never dead-lettered
    a, b = compared[:2]
    assert isinstance(a, Done) and a.item is not None and a.item.custom_id == "a"
    assert isinstance(b, Done) and b.item is None


_BIG = b"18446744073709551617"  # 2**64 + 1: orjson alone would read it as a float


@pytest.mark.parametrize("compare_done", [False, True])
def test_read_input_keeps_long_integers_on_every_path_but_the_skip(
    tmp_path: Path, compare_done: bool
) -> None:
    """A done line is skipped on orjson's reading of its string id; every line whose object
    is used (sent, dead-lettered, compared) has its long integers as written."""
    path = write_lines(
        tmp_path / "in.jsonl",
        [
            b'{"custom_id": "a", "prompt": "x", "n": ' + _BIG + b"}",
            b'{"custom_id": "b", "prompt": "x", "n": ' + _BIG + b"}",
            b'{"custom_id": "b", "prompt": "y", "n": ' + _BIG + b"}",
            b'{"custom_id": ' + _BIG + b', "prompt": "x"}',
            b'{"prompt": "x", "n": ' + _BIG + b"}",
        ],
    )
    outcomes = {"a": 7}
    claim = lambda cids: [outcomes.pop(cid, NEW) for cid in cids]  # noqa: E731
    done, new, dup, bad_id, implicit = read_input(path, CHAT, "m", claim, compare_done)
    assert isinstance(done, Done) and done.outcome == 7
    if compare_done:
        assert done.item is not None and _BIG in orjson.dumps(done.item.body)
    else:
        assert done.item is None
    assert isinstance(new, Item) and _BIG in orjson.dumps(new.body)
    assert isinstance(dup, BadLine) and dup.type == "duplicate_custom_id"
    assert _BIG in orjson.dumps(dup.request)
    assert isinstance(bad_id, BadLine) and bad_id.type == "invalid_custom_id"
    assert isinstance(implicit, Item) and implicit.custom_id == "#5"
    assert _BIG in orjson.dumps(implicit.body)


# --- properties -------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)
request_keys = st.sampled_from(
    ["custom_id", "body", "prompt", "messages", "input", "suffix", "model", "temperature"]
)
# Objects that look like requests, so that the Item paths are exercised too.
request_like = st.dictionaries(request_keys, json_values, max_size=5) | st.fixed_dictionaries(
    {
        "custom_id": st.text(max_size=5) | st.integers(-(2**63), 2**63 - 1),
        "prompt": st.text(min_size=1, max_size=10),
    },
    optional={"model": st.text(max_size=5), "body": json_values},
)
json_lines = (json_values | request_like).map(orjson.dumps)
huge_lines = st.builds(
    lambda unit, n: unit * n,
    st.sampled_from([b"x", b'{"a": [', b"\xff", b" "]),
    st.integers(1, 300_000),
)
line_endings = st.sampled_from([b"", b"\n", b"\r\n", b"\r", b" \r\n"])


def with_ending(body: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(lambda b, e: b + e, body, line_endings)


any_line = with_ending(st.binary(max_size=200) | json_lines | huge_lines)


@settings(max_examples=300, deadline=None)
@given(raw=any_line, line=st.integers(1, 10**9), endpoint=st.sampled_from(ENDPOINTS))
def test_parse_line_never_raises_and_keeps_the_line_number(
    raw: bytes, line: int, endpoint: str
) -> None:
    for model in ("m", None):
        parsed = parse_line(raw, line, endpoint, model)
        if parsed is None:
            assert not raw.strip()
            continue
        assert parsed.line == line
        if isinstance(parsed, Item):
            assert isinstance(parsed.custom_id, str)
            assert parsed.custom_id
            assert "model" in parsed.body
            assert parsed.fp == fingerprint(parsed.body)
            record = orjson.loads(
                dead_line(parsed, Failure(type="bad_request", status_code=400, message="x"), 1)
            )
        else:
            assert parsed.type
            assert parsed.message
            assert "\n" not in parsed.message
            record = orjson.loads(input_dead_line(parsed))  # what the dead-letter file gets
        assert record["line"] == line


BOM = b"\xef\xbb\xbf"

# Physical lines: anything but the line feed that ends them.
physical_line = st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"")) | json_lines.filter(
    lambda b: b"\n" not in b
)


@settings(max_examples=150, deadline=None)
@example(lines=[BOM], trailing_newline=False, endpoint=CHAT)  # a BOM alone: a blank line
@given(
    lines=st.lists(with_ending(physical_line).map(lambda b: b.rstrip(b"\n")), max_size=30),
    trailing_newline=st.booleans(),
    endpoint=st.sampled_from(ENDPOINTS),
)
def test_read_input_one_entry_per_non_blank_line(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[bytes],
    trailing_newline: bool,
    endpoint: str,
) -> None:
    path = tmp_path_factory.getbasetemp() / "property-input.jsonl"
    path.write_bytes(b"\n".join(lines) + (b"\n" if trailing_newline and lines else b""))
    entries = list(read_input(path, endpoint, "m"))
    numbers = [e.line for e in entries]
    assert numbers == sorted(set(numbers))  # strictly increasing
    assert all(1 <= n <= len(lines) for n in numbers)
    content = [raw.removeprefix(BOM) if n == 1 else raw for n, raw in enumerate(lines, start=1)]
    expected = [n for n, raw in enumerate(content, start=1) if raw.strip()]  # a BOM is none
    assert numbers == expected
    sent = [e.custom_id for e in entries if isinstance(e, Item)]
    assert len(sent) == len(set(sent))
