"""Ids and the lines people bring, through the real CLI against the real mock server: a
byte-order mark on line 1, a number id next to the same string, a line without custom_id
next to an explicit id of the same text, runs begun under bare line numbers, and OpenAI /
Mistral batch lines that carry their own ``url``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import MockProc, read_jsonl, run_cli, write_jsonl

from batchrunner.dlq.entries import DeadLetter
from batchrunner.dlq.requeue import build_requeue

pytestmark = pytest.mark.e2e

MODEL = "mistral-small-latest"
FAST = ("--backoff-base", "0.01", "--backoff-max", "0.05", "--timeout", "5", "--quiet")
MockFactory = Callable[..., MockProc]
Row = dict[str, Any]


def run(mock: MockProc, inp: Path, *extra: str | Path) -> tuple[int, list[Row], list[Row]]:
    out, dead = inp.with_suffix(".out.jsonl"), inp.with_suffix(".dead.jsonl")
    res = run_cli(
        "run", inp, "--server-url", mock.url, "-o", out, "--dead-letter", dead, "--model",
        MODEL, *FAST, *extra,
    )  # fmt: skip
    assert "Traceback" not in res.stderr, res.stderr
    return res.code, read_jsonl(out), read_jsonl(dead)


def posts(mock: MockProc) -> dict[str, int]:
    by_path: dict[str, int] = mock.stats()["by_path"]
    return {k: v for k, v in by_path.items() if k != "/v1/models"}


def test_byte_order_mark_on_line_one_is_not_content(
    mock_server: MockFactory, tmp_path: Path
) -> None:
    mock = mock_server()
    inp = tmp_path / "in.jsonl"
    lines = [{"custom_id": "a", "prompt": "one"}, {"custom_id": "b", "prompt": "two"}]
    inp.write_bytes(b"\xef\xbb\xbf" + b"".join(orjson.dumps(r) + b"\r\n" for r in lines))

    code, results, dead = run(mock, inp)

    assert code == 0 and dead == []
    assert sorted(r["custom_id"] for r in results) == ["a", "b"]


def test_number_id_next_to_the_same_string_says_why_it_is_refused(
    mock_server: MockFactory, tmp_path: Path
) -> None:
    mock = mock_server()
    inp = write_jsonl(
        tmp_path / "in.jsonl",
        [{"custom_id": 1, "prompt": "number"}, {"custom_id": "1", "prompt": "string"}],
    )

    code, results, dead = run(mock, inp)

    assert code == 1
    assert [(r["custom_id"], r["batchrunner"]["line"]) for r in results] == [("1", 1)]
    (entry,) = dead
    assert (entry["line"], entry["error"]["type"]) == (2, "duplicate_custom_id")
    assert 'the number 1 and the string "1" are the same id' in entry["error"]["message"]


def test_line_without_id_does_not_collide_with_an_explicit_id(
    mock_server: MockFactory, tmp_path: Path
) -> None:
    mock = mock_server()
    inp = write_jsonl(
        tmp_path / "in.jsonl",
        [{"custom_id": "2", "prompt": "explicit two"}, {"prompt": "line two, no id"}],
    )

    code, results, dead = run(mock, inp)

    assert code == 0 and dead == []
    ids = {r["custom_id"]: r["batchrunner"]["line"] for r in results}
    assert ids == {"2": 1, "#2": 2}


def test_implicit_id_taken_by_an_explicit_one_is_explained(
    mock_server: MockFactory, tmp_path: Path
) -> None:
    mock = mock_server()
    inp = write_jsonl(
        tmp_path / "in.jsonl", [{"custom_id": "#2", "prompt": "claims #2"}, {"prompt": "no id"}]
    )

    code, results, dead = run(mock, inp)

    assert code == 1
    assert [r["custom_id"] for r in results] == ["#2"]
    (entry,) = dead
    assert entry["line"] == 2 and entry["error"]["type"] == "duplicate_custom_id"
    assert "has no custom_id" in entry["error"]["message"]
    assert "give this line a custom_id" in entry["error"]["message"]


def test_a_run_begun_with_bare_line_ids_resumes_under_them(
    mock_server: MockFactory, tmp_path: Path
) -> None:
    """Files written before ids were "#N" (results under "1", "2", ..., a manifest without
    the prefix): a resume sends only what is missing, under the old ids, and stays old."""
    mock = mock_server()
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p{n}"} for n in range(1, 5)])
    out = inp.with_suffix(".out.jsonl")
    manifest_path = out.with_name(out.name + ".manifest.json")
    assert run(mock, inp)[0] == 0
    # What the version before "#N" left after a kill: two results, bare numbers.
    old = read_jsonl(out)[:2]
    for row in old:
        row["custom_id"] = row["custom_id"].removeprefix("#")
    write_jsonl(out, old)
    manifest = orjson.loads(manifest_path.read_bytes())
    del manifest["implicit_id_prefix"]
    manifest_path.write_bytes(orjson.dumps(manifest))
    before = sum(posts(mock).values())

    code, results, dead = run(mock, inp)

    assert code == 0 and dead == []
    assert sum(posts(mock).values()) - before == 2  # only the two missing lines
    assert sorted(r["custom_id"] for r in results) == ["1", "2", "3", "4"]
    assert orjson.loads(manifest_path.read_bytes())["implicit_id_prefix"] == ""  # stays old
    status = orjson.loads(run_cli("status", out, "--json").stdout)
    assert (status["done"], status["pending"], status["dead_lettered"]) == (4, 0, 0)


def test_batch_lines_are_sent_to_their_own_url(mock_server: MockFactory, tmp_path: Path) -> None:
    """OpenAI/Mistral batch files: each line's url routes it (over --endpoint); results say
    where each went; a url or method this tool cannot send is dead-lettered naming it."""
    mock = mock_server()
    rows = [
        {"custom_id": "c", "method": "POST", "url": "/v1/chat/completions",
         "body": {"messages": [{"role": "user", "content": "hi"}]}},
        {"custom_id": "e", "method": "POST", "url": "/v1/embeddings",
         "body": {"model": "mistral-embed", "input": ["to embed"]}},
        {"custom_id": "f", "url": "/v1/fim/completions", "prompt": "def f(", "suffix": "1"},
        {"custom_id": "r", "method": "POST", "url": "/v1/responses", "body": {"input": "x"}},
        {"custom_id": "g", "method": "GET", "url": "/v1/embeddings", "body": {"input": "x"}},
        {"custom_id": "m", "url": "/v1/embeddings", "body": {"messages": []}},
    ]  # fmt: skip
    inp = write_jsonl(tmp_path / "in.jsonl", rows)

    code, results, dead = run(mock, inp, "--endpoint", "/v1/fim/completions")

    assert code == 1
    went = {r["custom_id"]: r["batchrunner"]["url"] for r in results}
    assert went == {"c": "/v1/chat/completions", "e": "/v1/embeddings", "f": "/v1/fim/completions"}
    answer = {r["custom_id"]: r["response"]["body"] for r in results}
    assert answer["e"]["data"][0]["embedding"] and answer["c"]["choices"]
    assert posts(mock) == {"/v1/chat/completions": 1, "/v1/embeddings": 1, "/v1/fim/completions": 1}
    why = {d["custom_id"]: (d["error"]["type"], d["error"]["message"]) for d in dead}
    assert why["r"][0] == why["g"][0] == "invalid_request"
    assert "'url' '/v1/responses' is not an endpoint" in why["r"][1]
    assert "'method' must be POST" in why["g"][1]
    assert why["m"] == ("no_request", "no usable request: /v1/embeddings (the line's 'url') "
                        "needs a non-empty 'input'")  # fmt: skip


def test_requeue_keeps_a_batch_line_url() -> None:
    request = {"custom_id": "e", "url": "/v1/embeddings", "body": {"input": ["x"]}}
    entry = DeadLetter("e", 1, 500, "server_error", "boom", 8, None, request, "request", {})
    (line,) = build_requeue([entry], "/v1/chat/completions", "mistral-embed").lines
    assert orjson.loads(line) == {
        "custom_id": "e",
        "body": {"input": ["x"], "model": "mistral-embed"},
        "url": "/v1/embeddings",
    }
