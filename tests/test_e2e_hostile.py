"""Whatever the server sends and whatever the user types (issue 9, sections 3, 4, 5, 10 and
the big integers of 11): through the real CLI, against the real mock server, or against the
small servers of :mod:`servers` for answers the mock cannot give (one quoting the key).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import TEST_KEY, CliResult, cli_env, read_jsonl, require_e2e, run_cli
from servers import NEGATIVE_USAGE, QUOTE_KEY_200, QUOTE_KEY_400, counting_proxy, hostile_server
from test_e2e_run import (
    FAST,
    MockFactory,
    Outcome,
    Row,
    assert_clean,
    assert_same_outcomes,
    by_id,
    chat,
    posts,
    run_batch,
    write_lines,
)

pytestmark = pytest.mark.e2e

CLIENTS = pytest.mark.parametrize("client", ["http", "sdk"])
RETRY_3 = ("--max-attempts", "3")


def marked(custom_id: str, faults: str) -> Row:
    """A chat line whose attempts get ``faults`` from the mock, one by one."""
    return chat(custom_id, f"{custom_id} [[mock:{faults}]]")


def depth(value: Any) -> int:
    """How many arrays and objects deep ``value`` goes."""
    level, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            level = max(level, d)
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return level


def files_text(*paths: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in paths if p.exists())


# -- 3. a poison answer never blocks a run ---------------------------------------------


@CLIENTS
def test_a_poison_answer_never_blocks_a_run(
    mock_server: MockFactory, tmp_path: Path, client: str
) -> None:
    mock = mock_server("--retry-after-ms", "20")
    lines: list[Row | None] = [
        chat("plain-1", "one"),
        marked("deep", "deep"),  # a 200 nested 300 levels: past what orjson writes
        marked("deep-error", "deeperror"),  # a 500 like it, without a message
        marked("deep-error-always", ",".join(["deeperror"] * 6)),  # two runs' attempts
        chat("plain-2", "two"),
    ]
    write_lines(tmp_path / "in.jsonl", lines)
    args = (mock, tmp_path, tmp_path / "in.jsonl", client, *RETRY_3)

    res, results, dead, summary = run_batch(*args)

    assert res.code == 1, res.stderr  # one item dead-lettered, and nothing else went wrong
    ok, gone = by_id(results), by_id(dead)
    assert set(ok) == {"plain-1", "plain-2", "deep", "deep-error"}
    assert set(gone) == {"deep-error-always"}
    assert depth(ok["deep"]["response"]["body"]["nested"]) == 300  # kept as it was sent
    assert ok["deep-error"]["batchrunner"]["attempts"] == 2
    error = gone["deep-error-always"]["error"]
    assert (error["status_code"], error["type"]) == (500, "retries_exhausted")
    assert '{"object":"error","detail":[[[' in error["message"]
    assert summary["dead_lettered"] == 1

    sent = posts(mock.stats())
    again, *_ = run_batch(*args)  # every rerun used to crash at the same item
    assert again.code == 1, again.stderr
    # Its retries ran out (no fault of its own): the rerun sends it again, meets the same
    # poison three times, and dead-letters it again.
    assert posts(mock.stats()) == sent + 3

    dead_file = tmp_path / "dead.jsonl"
    for command in (["show"], ["show", "--json"], ["requeue", "-o", tmp_path / "again.jsonl"]):
        shown = run_cli("dlq", *command, dead_file, "--results", tmp_path / "out.jsonl")
        assert shown.code == 0, shown.stderr
        assert_clean(shown)
    assert [r["custom_id"] for r in read_jsonl(tmp_path / "again.jsonl")] == ["deep-error-always"]


#: Run the CLI with two steps of one item's handling broken, as a bug would break them.
_BROKEN_CLI = """
import sys
from batchrunner.engine.accounting import Accounting

answered, admit = Accounting.answered, Accounting.admit

def broken_answered(self, item, reply):
    if item.custom_id == "bug-after":
        raise ValueError("injected: cannot count this answer")
    return answered(self, item, reply)

def broken_admit(self, item):
    if item.custom_id == "bug-before":
        raise KeyError("injected: cannot estimate this item")
    return admit(self, item)

Accounting.answered, Accounting.admit = broken_answered, broken_admit
from batchrunner.cli.main import main
main()
"""


def test_an_unexpected_error_dead_letters_its_item_and_the_run_goes_on(
    mock_server: MockFactory, tmp_path: Path
) -> None:
    require_e2e("the CLI")
    mock = mock_server()
    ids = ["ok-1", "bug-before", "ok-2", "bug-after", "ok-3"]
    write_lines(tmp_path / "in.jsonl", [chat(i, f"text of {i}") for i in ids])
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    args = ["run", tmp_path / "in.jsonl", "--server-url", mock.url, "-o", out]
    proc = subprocess.run(
        [sys.executable, "-c", _BROKEN_CLI, *map(str, [*args, "--dead-letter", dead, *FAST])],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    res = CliResult(proc.returncode, proc.stdout, proc.stderr)
    assert_clean(res)
    assert res.code == 1, res.stderr
    assert set(by_id(read_jsonl(out))) == {"ok-1", "ok-2", "ok-3"}
    entries = by_id(read_jsonl(dead))
    assert set(entries) == {"bug-before", "bug-after"}
    after, before = entries["bug-after"], entries["bug-before"]
    assert after["error"]["type"] == before["error"]["type"] == "internal_error"
    assert after["error"]["message"].startswith("ValueError: injected: cannot count this answer")
    assert before["error"]["message"].startswith("KeyError: 'injected: cannot estimate this")
    assert (after["attempts"], before["attempts"]) == (1, 0)


def test_dlq_show_and_requeue_read_entries_nested_past_what_orjson_writes(
    tmp_path: Path,
) -> None:
    nest = "[" * 300 + "]" * 300
    deep_body = (
        '{"model":"mistral-small-latest","messages":[{"role":"user","content":"deep"}],'
        f'"meta":{nest}}}'
    )
    lines = [
        '{"custom_id":"deep","line":1,"request":{"custom_id":"deep","body":' + deep_body + "},"
        '"error":{"status_code":400,"type":"bad_request","message":"no"},"attempts":1,'
        '"ts":"2026-01-01T00:00:00Z","batchrunner":{"kind":"request","fp":"0"}}',
        '{"custom_id":null,"line":2,"request":' + nest + ","
        '"error":{"status_code":null,"type":"not_an_object","message":"a list"},"attempts":0,'
        '"ts":"2026-01-01T00:00:00Z","batchrunner":{"kind":"input"}}',
        orjson.dumps(
            {
                "custom_id": "plain",
                "line": 3,
                "request": chat("plain", "fine"),
                "error": {"status_code": 400, "type": "bad_request", "message": "no"},
                "attempts": 1,
                "ts": "2026-01-01T00:00:00Z",
                "batchrunner": {"kind": "request", "fp": "0"},
            }
        ).decode(),
    ]
    dead = tmp_path / "another-tool.dead.jsonl"
    dead.write_text("\n".join(lines) + "\n")

    table = run_cli("dlq", "show", dead)
    as_json = run_cli("dlq", "show", dead, "--json")
    requeue = run_cli("dlq", "requeue", dead, "-o", tmp_path / "again.jsonl")

    for res in (table, as_json, requeue):
        assert_clean(res)
        assert res.code == 0, res.stderr
    assert "nested too deeply to show" in table.stdout
    assert as_json.stdout.splitlines() == lines  # each line as written
    assert [r["custom_id"] for r in read_jsonl(tmp_path / "again.jsonl")] == ["plain"]
    assert "nested deeper than a request can be sent" in requeue.stdout + requeue.stderr


# -- 4. the key never leaks, even in part -----------------------------------------------


def assert_no_part_of_the_key(text: str) -> None:
    for n in range(9, len(TEST_KEY) + 1):  # every prefix longer than 8 characters
        assert TEST_KEY[:n] not in text, f"{n} characters of the key: {text[:2000]}"


@CLIENTS
def test_a_key_at_the_cut_of_a_message_or_in_a_200_is_never_written(
    tmp_path: Path, client: str
) -> None:
    lines: list[Row | None] = [
        chat("at-the-cut", QUOTE_KEY_400),  # the key straddles the 500-character cut
        chat("in-a-200", QUOTE_KEY_200),
        chat("plain", "hello"),
    ]
    write_lines(tmp_path / "in.jsonl", lines)
    out, dead, summary = tmp_path / "out.jsonl", tmp_path / "dead.jsonl", tmp_path / "s.json"
    with hostile_server() as server:
        res = run_cli(
            "run", tmp_path / "in.jsonl", "--server-url", server.url, "--client", client,
            "-o", out, "--dead-letter", dead, "--summary-json", summary, *FAST,
        )  # fmt: skip
        shown = run_cli("dlq", "show", dead)
        shown_json = run_cli("dlq", "show", dead, "--json")

    assert res.code == 1, res.stderr
    assert_clean(res)
    ok, gone = by_id(read_jsonl(out)), by_id(read_jsonl(dead))
    assert set(ok) == {"in-a-200", "plain"}
    content = ok["in-a-200"]["response"]["body"]["choices"][0]["message"]["content"]
    assert content == "your key is [redacted]"
    assert gone["at-the-cut"]["error"]["status_code"] == 400
    assert " key [redacted] is not" in gone["at-the-cut"]["error"]["message"]
    outputs = [res.stdout, res.stderr, shown.stdout, shown.stderr, shown_json.stdout]
    manifest = out.with_name(out.name + ".manifest.json")
    assert_no_part_of_the_key("\n".join(outputs) + files_text(out, dead, summary, manifest))


@pytest.mark.parametrize(
    "key",
    ["sk-SECRETPART-0123\n456789", "sk-SECRETPART-cl\u00e9-0123", "sk-SECRETPART 0123456789"],
    ids=["newline", "non-ascii", "space"],
)
def test_a_key_that_cannot_be_a_header_is_refused_without_being_shown(
    mock_server: MockFactory, tmp_path: Path, key: str
) -> None:
    mock = mock_server()
    write_lines(tmp_path / "in.jsonl", [chat("a", "hello")])
    out = tmp_path / "out.jsonl"
    res = run_cli(
        "run", tmp_path / "in.jsonl", "--server-url", mock.url, "--client", "sdk",
        "--no-preflight", "-o", out, env=cli_env(MISTRAL_API_KEY=key),
    )  # fmt: skip

    assert res.code == 2, res.stderr
    assert_clean(res)
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "MISTRAL_API_KEY" in res.stderr
    assert "SECRETPART" not in res.stdout + res.stderr
    assert mock.stats()["total"] == 0, "a request was sent"
    assert not out.exists()


@CLIENTS
def test_credentials_in_the_server_url_are_refused_without_being_shown(
    mock_server: MockFactory, tmp_path: Path, client: str
) -> None:
    mock = mock_server()
    write_lines(tmp_path / "in.jsonl", [chat("a", "hello")])
    out = tmp_path / "out.jsonl"
    url = mock.url.replace("http://", "http://someone:hunter2-SECRET@")
    res = run_cli("run", tmp_path / "in.jsonl", "--server-url", url, "--client", client, "-o", out)

    assert res.code == 2, res.stderr
    assert_clean(res)
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "--server-url" in res.stderr
    assert "hunter2" not in res.stdout + res.stderr
    assert mock.stats()["total"] == 0, "a request was sent"
    assert list(tmp_path.iterdir()) == [tmp_path / "in.jsonl"]  # no manifest, no results


def test_token_counts_below_zero_count_as_zero(tmp_path: Path) -> None:
    write_lines(tmp_path / "in.jsonl", [chat("a", NEGATIVE_USAGE), chat("b", "hello")])
    out, summary = tmp_path / "out.jsonl", tmp_path / "s.json"
    with hostile_server() as server:
        res = run_cli(
            "run", tmp_path / "in.jsonl", "--server-url", server.url, "--max-cost", "5",
            "-o", out, "--summary-json", summary, *FAST,
        )  # fmt: skip

    assert res.code == 0, res.stderr
    assert_clean(res)
    assert set(by_id(read_jsonl(out))) == {"a", "b"}
    counts = orjson.loads(summary.read_bytes())
    assert (counts["prompt_tokens"], counts["completion_tokens"]) == (3, 2)  # b's alone


# -- 5. both clients, one answer, one outcome -------------------------------------------


def test_both_clients_write_the_same_files_for_hostile_answers(
    mock_server: MockFactory, tmp_path: Path
) -> None:
    lines: list[Row | None] = [
        marked("html", "html"),  # a 200 HTML page (a proxy's sign-in page)
        marked("shapeless", "shapeless"),  # a 200 {"foo": 1}
        marked("error200", "error200"),  # a 200 whose body is a 503 error object
        marked("garbage", "garbage"),  # a 200 cut mid-JSON
        marked("deep", "deep"),  # a 200 answer nested 300 levels
        marked("html-always", "html,html,html"),
        marked("error200-always", "error200,error200,error200"),
        chat("plain", "hello"),
    ]
    outcomes = []
    for client in ("http", "sdk"):
        mock = mock_server("--retry-after-ms", "20")
        work = tmp_path / client
        work.mkdir()
        write_lines(work / "in.jsonl", lines)
        res, results, dead, _ = run_batch(
            mock, work, work / "in.jsonl", client, "--max-attempts", "3"
        )
        outcomes.append(Outcome(res.code, by_id(results), by_id(dead)))
    http, sdk = outcomes

    assert http.code == 1
    attempts = {cid: r["batchrunner"]["attempts"] for cid, r in http.ok.items()}
    assert attempts == {
        "html": 2,
        "shapeless": 2,
        "error200": 2,
        "garbage": 2,
        "deep": 1,
        "plain": 1,
    }
    verdicts = {
        cid: (d["error"]["status_code"], d["error"]["type"]) for cid, d in http.dead.items()
    }
    assert verdicts == {
        "html-always": (200, "retries_exhausted"),
        "error200-always": (200, "retries_exhausted"),
    }
    assert (
        "last error: server_error: 200 with an error body, read as a 503"
        in (http.dead["error200-always"]["error"]["message"])
    )
    assert_same_outcomes(http, sdk)


# -- 10. proxies ------------------------------------------------------------------------


@CLIENTS
def test_every_request_goes_through_the_proxy_the_environment_names(
    mock_server: MockFactory, tmp_path: Path, client: str
) -> None:
    mock = mock_server()
    write_lines(tmp_path / "in.jsonl", [chat(f"p{n}", f"via the proxy {n}") for n in range(3)])
    # A name only the proxy can reach (it sends every request to 127.0.0.1).
    url = mock.url.replace("127.0.0.1", "batchrunner-behind-a-proxy.invalid")
    with counting_proxy() as proxy:
        env = cli_env(HTTP_PROXY=proxy.url, NO_PROXY="")
        res = run_cli(
            "run", tmp_path / "in.jsonl", "--server-url", url, "--client", client,
            "-o", tmp_path / "out.jsonl", *FAST, env=env,
        )  # fmt: skip

    assert res.code == 0, res.stderr
    assert_clean(res)
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 3
    went = [(method, path) for method, path, _ in proxy.requests]
    assert went.count(("POST", "/v1/chat/completions")) == 3
    assert went.count(("GET", "/v1/models")) == 2  # the preflight and the warm-up
    assert mock.stats()["total"] == len(went)  # the server got nothing the proxy did not pass


@CLIENTS
def test_no_proxy_keeps_a_host_off_the_proxy(
    mock_server: MockFactory, tmp_path: Path, client: str
) -> None:
    mock = mock_server()
    write_lines(tmp_path / "in.jsonl", [chat("a", "straight there")])
    host = "batchrunner-no-proxy.invalid"  # reachable only through the proxy
    url = mock.url.replace("127.0.0.1", host)
    with counting_proxy() as proxy:
        env = cli_env(HTTP_PROXY=proxy.url, NO_PROXY=f"example.org,{host}")
        res = run_cli(
            "run", tmp_path / "in.jsonl", "--server-url", url, "--client", client,
            "--no-preflight", "--max-attempts", "2", "-o", tmp_path / "out.jsonl",
            "--dead-letter", tmp_path / "dead.jsonl", *FAST, env=env,
        )  # fmt: skip

    assert res.code == 1, res.stderr  # tried straight there, where the name does not resolve
    assert_clean(res)
    assert proxy.requests == []
    (entry,) = read_jsonl(tmp_path / "dead.jsonl")
    assert entry["error"]["type"] == "retries_exhausted"
    assert "last error: connection_error" in entry["error"]["message"]


@CLIENTS
def test_a_server_on_the_loopback_is_never_proxied(tmp_path: Path, client: str) -> None:
    # `run --mock` behind a proxy: no proxy can reach this machine's 127.0.0.1.
    write_lines(tmp_path / "in.jsonl", [chat(f"m{n}", f"local {n}") for n in range(3)])
    env = cli_env(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    args = ("--mock", "--client", client, "--quiet", *FAST)
    res = run_cli("run", tmp_path / "in.jsonl", *args, env=env)

    assert res.code == 0, res.stderr
    assert len(read_jsonl(tmp_path / "in.results.jsonl")) == 3


# -- 11. integers past 64 bits ----------------------------------------------------------

_BIG = 18446744073709551617  # 2**64 + 1
_SMALL = -9223372036854775809  # -2**63 - 1
_HUGE = 123456789012345678901234567890


@CLIENTS
def test_integers_past_64_bits_are_sent_as_written(tmp_path: Path, client: str) -> None:
    line = (
        '{"custom_id":"big","body":{"model":"mistral-small-latest",'
        f'"random_seed":{_BIG},"metadata":{{"low":{_SMALL},"huge":{_HUGE}}},'
        '"messages":[{"role":"user","content":"count 18446744073709551617"}]}}\n'
    )
    (tmp_path / "in.jsonl").write_text(line)
    with hostile_server() as server:
        res = run_cli(
            "run", tmp_path / "in.jsonl", "--server-url", server.url, "--client", client,
            "-o", tmp_path / "out.jsonl", *FAST,
        )  # fmt: skip

    assert res.code == 0, res.stderr
    (sent,) = server.posts()
    body = json.loads(sent)  # the stdlib reads every integer exactly
    assert body["random_seed"] == _BIG
    assert body["metadata"] == {"low": _SMALL, "huge": _HUGE}
    assert body["messages"][0]["content"] == "count 18446744073709551617"
