"""``batchrunner dlq``: summary, show and requeue over a dead-letter file made by a real run.

The dead-letter file comes from the real ``batchrunner run`` against the real mock server:
``[[mock:CODE]]`` in a prompt makes the server answer CODE, unknown models get a 400, and a
few input lines are broken on purpose. Commands are driven in-process through click's
runner for speed, and through the real CLI (``python -m batchrunner dlq``) where what
matters is the real process: exit codes, one-line errors, the round trip through ``run``.
Every test that reads that file is marked ``e2e`` (its fixture is a real run); the tests that
build their dead-letter files by hand are in the fast tier.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from conftest import (
    TEST_KEY,
    CliResult,
    MockProc,
    cli_env,
    read_jsonl,
    run_cli,
    start_mock,
    stop_mock,
    write_jsonl,
)

from batchrunner.cli.dlq import dlq
from batchrunner.dlq.entries import DlqError, find_run, live_entries
from batchrunner.dlq.requeue import build_requeue, write_requeue
from batchrunner.dlq.summary import normalise
from batchrunner.errors import DlqWriteError, LedgerError
from batchrunner.ledger import table
from batchrunner.ledger.shards import find_shards
from batchrunner.ledger.status import run_status

MODEL = "mistral-small-latest"
# The breaker is off: these runs are meant to dead-letter 401s and 404s, not to stop on them.
FAST = ("--backoff-base", "0.01", "--backoff-max", "0.05", "--breaker", "0", "--quiet")
Row = dict[str, Any]

ROWS: list[Row] = [
    {"custom_id": "ok1", "prompt": "hello"},  # line 1: a result
    {"custom_id": "b1", "prompt": "[[mock:400]] one"},
    {"custom_id": "n1", "prompt": "[[mock:404]] where"},
    {"custom_id": "n2", "body": {"messages": [{"role": "user", "content": "[[mock:404]] Gone"}]}},
    {"prompt": "[[mock:404]] no id"},  # line 5: its id is "#5"
    {"custom_id": "v1", "prompt": "[[mock:422]] bad"},
    {"custom_id": "u1", "prompt": "[[mock:401]] auth"},
    {"custom_id": "m1", "prompt": "model a", "model": "foo-1"},
    {"custom_id": "m2", "prompt": "model b", "model": "bar-22"},
    {"custom_id": "nr"},  # line 10: no request at all
    {"custom_id": "ok2", "prompt": "fine too"},
]
BROKEN = b'{"custom_id": "x",\n[1, 2]\n\xff\xfe{}\n'  # lines 12-14
DEAD_STATUS = {"b1": 400, "n1": 404, "n2": 404, "#5": 404, "v1": 422, "u1": 401}
DEAD_STATUS |= {"m1": 400, "m2": 400}
INPUT_TYPES = {10: "no_request", 12: "invalid_json", 13: "not_an_object", 14: "invalid_utf8"}


@dataclass(frozen=True)
class Run:
    dir: Path
    input: Path
    results: Path
    dead: Path


def run_args(inp: Path, out: Path, dead: Path, mock: MockProc, *extra: str) -> list[str | Path]:
    files = ("-o", out, "--dead-letter", dead)
    return ["run", inp, *files, "--server-url", mock.url, "--model", MODEL, *FAST, *extra]


@pytest.fixture(scope="module")
def dead_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One real run for the module; tests copy its files before changing anything."""
    d = tmp_path_factory.mktemp("run")
    inp = d / "in.jsonl"
    inp.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in ROWS) + BROKEN)
    run = Run(d, inp, d / "out.jsonl", d / "dead.jsonl")
    mock = start_mock()
    try:
        res = run_cli(*run_args(inp, run.results, run.dead, mock))
    finally:
        stop_mock(mock)
    assert res.code == 1, res.stderr
    return run


def invoke(*args: str | Path) -> Result:
    """``batchrunner dlq ARGS`` in-process."""
    return CliRunner().invoke(dlq, [str(a) for a in args], env={"COLUMNS": "200"})


def dlq_cli(*args: str | Path, env: dict[str, str] | None = None) -> CliResult:
    """``python -m batchrunner dlq ARGS``: the real command."""
    res = run_cli("dlq", *args, env=env)
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    return res


def copy_run(run: Run, to: Path, dead_name: str, results_name: str | None) -> Path:
    """The run's files under other names (the manifest stays behind); returns the DLQ."""
    shutil.copy(run.dead, to / dead_name)
    if results_name is not None:
        shutil.copy(run.results, to / results_name)
    return to / dead_name


def summary_json(*args: str | Path) -> Any:
    res = invoke("summary", *args, "--json")
    assert res.exit_code == 0, res.output
    return orjson.loads(res.stdout)


# -- which entries count ----------------------------------------------------------------


@pytest.mark.e2e
def test_the_run_dead_letters_what_the_tests_expect(dead_run: Run) -> None:
    dead = read_jsonl(dead_run.dead)
    requests = [r for r in dead if r["batchrunner"]["kind"] == "request"]
    lines = [r for r in dead if r["batchrunner"]["kind"] == "input"]
    assert {r["custom_id"]: r["error"]["status_code"] for r in requests} == DEAD_STATUS
    assert {r["line"]: r["error"]["type"] for r in lines} == INPUT_TYPES


def test_last_entry_wins_and_a_result_supersedes(tmp_path: Path) -> None:
    def dead(cid: str | None, line: int, status: int | None, type_: str, kind: str) -> Row:
        error = {"status_code": status, "type": type_, "message": f"m{line}"}
        return {
            "custom_id": cid,
            "line": line,
            "request": {"prompt": "p"},
            "error": error,
            "attempts": 1,
            "ts": "t",
            "batchrunner": {"kind": kind},
        }

    dlq_path = write_jsonl(
        tmp_path / "x.dead.jsonl",
        [
            dead("a", 1, 500, "server_error", "request"),
            dead("b", 2, 404, "not_found", "request"),
            dead("a", 1, 400, "bad_request", "request"),  # the last entry for "a" wins
            dead(None, 3, None, "invalid_json", "input"),
            dead(None, 3, None, "invalid_utf8", "input"),  # the last entry for line 3 wins
            dead("c", 4, None, "duplicate_custom_id", "input"),  # kept although "c" has a result
            dead("c", 5, 429, "rate_limited", "request"),
            "not an entry",
        ],
    )
    results = write_jsonl(tmp_path / "x.results.jsonl", [{"custom_id": "b"}, {"custom_id": "c"}])
    warnings: list[str] = []
    got = live_entries(dlq_path, results, warnings)
    assert [(e.custom_id, e.line, e.type) for e in got] == [
        ("a", 1, "bad_request"),
        (None, 3, "invalid_utf8"),
        ("c", 4, "duplicate_custom_id"),
    ]
    assert len(warnings) == 1 and ":8:" in warnings[0]
    assert len(live_entries(dlq_path)) == 5  # no results file: b and c count too


def test_live_entries_stream_in_line_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def dead(cid: str | None, line: int | None, kind: str = "request") -> Row:
        error = {"status_code": 400, "type": "bad_request", "message": f"m {cid}"}
        return {"custom_id": cid, "line": line, "error": error, "batchrunner": {"kind": kind}}

    rows = [dead("c", 9), dead("x", None), dead("a", 2), dead(None, 5, "input"), dead("b", 2)]
    rows += [dead(f"n{i}", 100 - i) for i in range(10)]
    dlq_path = write_jsonl(tmp_path / "x.dead.jsonl", rows)
    monkeypatch.setattr(table, "_SORT_CHUNK", 3)  # several sorted runs, merged
    entries = live_entries(dlq_path)
    in_order = [(e.custom_id, e.line) for e in entries]
    assert in_order[:5] == [("a", 2), ("b", 2), (None, 5), ("c", 9), ("n9", 91)]
    assert in_order[-1] == ("x", None)  # no line: last
    assert len(entries) == len(rows) == len(list(entries))  # read again, the same
    assert [e.custom_id for e in entries.in_file_order()] == [r["custom_id"] for r in rows]
    with dlq_path.open("ab") as f:  # a run appending while dlq reads: not counted
        f.write(orjson.dumps(dead("late", 1)) + b"\n")
    assert len(list(entries)) == len(list(entries.in_file_order())) == len(rows)


@pytest.mark.e2e
def test_the_results_file_is_found_by_option_manifest_or_name(
    dead_run: Run, tmp_path: Path
) -> None:
    by_manifest = find_run(dead_run.dead)
    assert (by_manifest.results, by_manifest.source) == (dead_run.results.resolve(), "manifest")
    assert by_manifest.manifest is not None and by_manifest.manifest["model"] == MODEL
    dlq_path = copy_run(dead_run, tmp_path, "job.dead.jsonl", "job.results.jsonl")
    assert find_run(dlq_path).results == tmp_path / "job.results.jsonl"  # beside, by name
    assert find_run(dlq_path, dead_run.results).source == "option"
    alone = copy_run(dead_run, tmp_path, "alone.jsonl", None)
    assert find_run(alone).results is None
    with pytest.raises(DlqError, match="does not exist"):
        find_run(alone, tmp_path / "missing.jsonl")


# -- summary ------------------------------------------------------------------------------


@pytest.mark.e2e
def test_summary_counts_match_the_file(dead_run: Run) -> None:
    data = summary_json(dead_run.dead)
    assert data["results"] == str(dead_run.results.resolve())
    assert data["total"] == len(DEAD_STATUS) + len(INPUT_TYPES) == len(read_jsonl(dead_run.dead))
    by = {(r["status_code"], r["type"]): r["count"] for r in data["by_status"]}
    errors = [r["error"] for r in read_jsonl(dead_run.dead)]
    expected = Counter((e["status_code"], e["type"]) for e in errors)
    assert by == dict(expected)
    assert by[(404, "not_found")] == 3 and by[(400, "invalid_model")] == 2
    groups = {g["pattern"]: g for g in data["messages"]}
    assert groups["Not found"]["count"] == 3
    assert (groups["Not found"]["first_line"], groups["Not found"]["last_line"]) == (3, 5)
    # "Invalid model: foo-1" and "Invalid model: bar-22" differ only by the id: one group.
    model = groups["Invalid model: <id>"]
    assert (model["count"], model["first_line"], model["last_line"]) == (2, 8, 9)
    assert model["example"] == "Invalid model: foo-1"


@pytest.mark.e2e
def test_summary_leaves_out_ids_that_later_got_a_result(dead_run: Run, tmp_path: Path) -> None:
    dlq_path = copy_run(dead_run, tmp_path, "in.dead.jsonl", "in.results.jsonl")
    before = summary_json(dlq_path)
    with (tmp_path / "in.results.jsonl").open("ab") as f:  # n1 re-sent and succeeded
        f.write(orjson.dumps({"custom_id": "n1", "response": {"status_code": 200}}) + b"\n")
    after = summary_json(dlq_path)
    assert after["total"] == before["total"] - 1
    assert {(r["status_code"], r["count"]) for r in after["by_status"]} >= {(404, 2)}
    assert "n1" not in invoke("show", dlq_path, "--json").stdout
    # Without the results file every entry counts again.
    assert summary_json(dlq_path, "--results", dead_run.results)["total"] == before["total"]


@pytest.mark.e2e
def test_summary_table(dead_run: Run) -> None:
    res = invoke("summary", dead_run.dead)
    assert res.exit_code == 0, res.output
    total = len(DEAD_STATUS) + len(INPUT_TYPES)
    for text in ("not_found", "Invalid model: <id>", "invalid_json", f"{total} still dead"):
        assert text in res.stdout


ALIKE = [
    ("Invalid model: foo-1", "Invalid model: bar-22"),
    ("no answer within 30 s", "no answer within 120 s"),
    ("job 3f2b9c1e-1234-4abc-9def-0123456789ab failed", "job 00000000-aaaa-bbbb-cccc-d1 failed"),
    ("request req_8f3a2b91c0 refused", "request req_0000000001 refused"),
    (
        "duplicate custom_id 'a7'; only its first line",
        "duplicate custom_id 'item-12'; only its first line",
    ),
    (
        "body.messages.0.content: Input should be a string",
        "body.messages.3.content: Input should be a string",
    ),
    ("Cannot connect to host 127.0.0.1:8000", "Cannot connect to host 10.0.0.7:443"),
]


@pytest.mark.parametrize(("a", "b"), ALIKE)
def test_normalise_groups_messages_that_differ_only_by_ids_or_numbers(a: str, b: str) -> None:
    assert normalise(a) == normalise(b)


def test_normalise_keeps_words_that_are_not_ids() -> None:
    assert normalise("line is not valid UTF-8 (byte 3)") == "line is not valid UTF-8 (byte <n>)"
    assert normalise("/v1/chat/completions needs 'messages'") == "/v1/chat/completions needs '<s>'"
    assert normalise("Not found") != normalise("Bad request")


# -- show ---------------------------------------------------------------------------------


def shown_ids(*args: str | Path) -> list[str | None]:
    res = invoke("show", *args, "--json")
    assert res.exit_code == 0, res.output
    return [orjson.loads(line)["custom_id"] for line in res.stdout.splitlines()]


@pytest.mark.e2e
def test_show_filters(dead_run: Run) -> None:
    dead = dead_run.dead
    either = ["b1", "n1", "n2", "#5", "m1", "m2"]
    assert shown_ids(dead, "--status", "400", "--status", "404") == either
    assert shown_ids(dead, "--type", "not_found") == ["n1", "n2", "#5"]
    assert shown_ids(dead, "--type", "not_found", "--status", "400") == []
    assert shown_ids(dead, "--grep", "INVALID model") == ["m1", "m2"]  # in the message
    assert shown_ids(dead, "--grep", "gone") == ["n2"]  # in the request's text
    assert shown_ids(dead, "--grep", "not an object") == [None]  # an input line
    assert shown_ids(dead, "--status", "404", "--limit", "2") == ["n1", "n2"]
    assert len(shown_ids(dead)) == len(DEAD_STATUS) + len(INPUT_TYPES)


@pytest.mark.e2e
def test_show_json_lines_are_the_records_as_written(dead_run: Run) -> None:
    res = invoke("show", dead_run.dead, "--json")
    shown = [orjson.loads(line) for line in res.stdout.splitlines()]
    written = read_jsonl(dead_run.dead)
    key = lambda r: (r["line"], r["custom_id"] or "")  # noqa: E731
    assert sorted(shown, key=key) == sorted(written, key=key)


@pytest.mark.e2e
def test_show_table(dead_run: Run) -> None:
    res = invoke("show", dead_run.dead, "--status", "404")
    assert res.exit_code == 0, res.output
    assert "[[mock:404]] Gone" in res.stdout  # the request's user text, not its JSON
    assert "3 of 3 matching" in res.stdout
    none = invoke("show", dead_run.dead, "--type", "no_such_type")
    assert none.exit_code == 0 and "no entry matches" in none.stderr


# -- requeue ------------------------------------------------------------------------------


@pytest.mark.e2e
def test_requeue_writes_batch_lines_and_reports_what_it_left_out(
    dead_run: Run, tmp_path: Path
) -> None:
    out = tmp_path / "again.jsonl"
    res = invoke("requeue", dead_run.dead, "-o", out)
    assert res.exit_code == 0, res.output
    rows = {r["custom_id"]: r for r in read_jsonl(out)}
    assert set(rows) == set(DEAD_STATUS)
    assert all(list(r) == ["custom_id", "body"] for r in rows.values())
    # The prompt shorthand became messages, and the run's model was added.
    messages = [{"role": "user", "content": "[[mock:404]] no id"}]
    assert rows["#5"]["body"] == {"messages": messages, "model": MODEL}
    assert rows["n2"]["body"]["messages"][0]["content"] == "[[mock:404]] Gone"
    assert rows["m1"]["body"]["model"] == "foo-1"  # a body's own model is kept
    assert "left out 4 entries" in res.stderr
    for type_ in ("invalid_json", "invalid_utf8", "not_an_object", "no_request"):
        assert f"1 {type_}:" in res.stderr
    assert f"re-queued {len(DEAD_STATUS)} requests" in res.stdout


@pytest.mark.e2e
def test_requeue_to_stdout_writes_only_the_lines_there(dead_run: Run) -> None:
    res = invoke("requeue", dead_run.dead, "-o", "-", "--status", "404")
    assert res.exit_code == 0, res.output
    assert [orjson.loads(line)["custom_id"] for line in res.stdout.splitlines()] == [
        "n1",
        "n2",
        "#5",
    ]
    assert "re-queued 3 requests to stdout" in res.stderr
    assert not Path("-").exists()


@pytest.mark.e2e
def test_requeue_refuses_to_overwrite_without_force(dead_run: Run, tmp_path: Path) -> None:
    out = tmp_path / "again.jsonl"
    out.write_text("keep me\n")
    res = invoke("requeue", dead_run.dead, "-o", out, "--status", "404")
    assert res.exit_code == 2 and "--force" in res.output and len(res.output.splitlines()) == 1
    assert out.read_text() == "keep me\n"
    res = invoke("requeue", dead_run.dead, "-o", out, "--status", "404", "--force")
    assert res.exit_code == 0, res.output
    assert [r["custom_id"] for r in read_jsonl(out)] == ["n1", "n2", "#5"]
    mine = invoke("requeue", dead_run.dead, "-o", dead_run.dead, "--force")
    assert mine.exit_code == 2 and "being read" in mine.output


@pytest.mark.e2e
def test_requeue_writes_integers_past_64_bits_with_their_digits(tmp_path: Path) -> None:
    # orjson reads 2**64 + 1 as a float: the re-queued line must keep the digits the
    # dead-letter file holds, as the input reader keeps them.
    huge, low = b"18446744073709551617", b"-9223372036854775809"
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(
        b'{"custom_id": "big", "prompt": "[[mock:404]] big", "seed": '
        + huge
        + b', "n": ['
        + low
        + b", 12345678901234567890]}\n"
    )
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    mock = start_mock()
    try:
        res = run_cli(*run_args(inp, out, dead, mock))
    finally:
        stop_mock(mock)
    assert res.code == 1, res.stderr
    assert huge in dead.read_bytes() and low in dead.read_bytes()  # the run kept them
    again = tmp_path / "again.jsonl"
    res = dlq_cli("requeue", dead, "-o", again)
    assert res.code == 0, res.stderr
    line = again.read_bytes()
    assert b'"seed":' + huge in line and b'"n":[' + low + b",12345678901234567890]" in line
    assert [r["custom_id"] for r in read_jsonl(again)] == ["big"]


def test_requeue_builds_bodies_for_the_runs_endpoint_and_model(tmp_path: Path) -> None:
    def entry(cid: str, request: Row) -> Row:
        return {
            "custom_id": cid,
            "line": 1,
            "request": request,
            "attempts": 1,
            "error": {"status_code": 404, "type": "not_found", "message": "Not found"},
            "batchrunner": {"kind": "request"},
        }

    dlq_path = write_jsonl(
        tmp_path / "fim.dead.jsonl",
        [
            entry("f1", {"custom_id": "f1", "prompt": "def f():", "suffix": "return 1"}),
            entry("f2", {"custom_id": "f2", "body": {"prompt": "x", "model": "codestral-latest"}}),
        ],
    )
    manifest = {
        "dead_letter": str(dlq_path.resolve()),
        "output": str(tmp_path / "fim.out"),
        "endpoint": "/v1/fim/completions",
        "model": "codestral-latest",
    }
    (tmp_path / "fim.out.manifest.json").write_bytes(orjson.dumps(manifest))
    out = tmp_path / "again.jsonl"
    res = invoke("requeue", dlq_path, "-o", out)
    assert res.exit_code == 0, res.output
    assert read_jsonl(out)[0]["body"] == {  # on FIM a prompt stays a prompt
        "prompt": "def f():",
        "suffix": "return 1",
        "model": "codestral-latest",
    }
    assert "--endpoint /v1/fim/completions" in res.stdout  # how to send it
    no_model = build_requeue(live_entries(dlq_path), "/v1/fim/completions", None)
    assert len(list(no_model.lines)) == 1 and no_model.left_out == Counter(no_model=1)


def test_requeue_writes_as_it_reads_and_leaves_no_half_file(tmp_path: Path) -> None:
    out = tmp_path / "again.jsonl"
    assert write_requeue(out, iter([])) == 0 and not out.exists()  # no line, no file

    def lines() -> Iterator[bytes]:
        yield b'{"custom_id": "a"}\n'
        assert out.exists()  # written as the lines come, not once all are built
        raise DlqError("the dead-letter file went away")

    with pytest.raises(DlqError):
        write_requeue(out, lines())
    assert not out.exists()


def test_unusable_files_are_errors_that_carry_their_path(tmp_path: Path) -> None:
    missing = tmp_path / "in.dead.jsonl"
    with pytest.raises(DlqError) as dead:
        live_entries(missing)
    assert dead.value.path == str(missing)
    with pytest.raises(DlqError) as results:
        find_run(missing, tmp_path / "nope.results.jsonl")
    assert results.value.path == str(tmp_path / "nope.results.jsonl")
    with pytest.raises(LedgerError) as status:
        run_status(tmp_path / "in.results.jsonl")
    assert status.value.path == str(tmp_path / "in.results.jsonl.manifest.json")
    with pytest.raises(LedgerError) as shard:
        find_shards(tmp_path / "in.jsonl", [str(tmp_path / "in.shard1of2.results.jsonl")])
    assert shard.value.path == str(tmp_path / "in.shard1of2.results.jsonl")


def test_requeue_write_errors_carry_the_path_and_name_the_setting(tmp_path: Path) -> None:
    taken = tmp_path / "taken.jsonl"
    taken.write_text("keep me\n")
    with pytest.raises(DlqError) as refused:
        write_requeue(taken, [b"{}\n"])
    assert refused.value.path == str(taken) and "`force`" in str(refused.value)
    assert taken.read_text() == "keep me\n"
    nowhere = tmp_path / "missing" / "out.jsonl"
    with pytest.raises(DlqWriteError) as failed:
        write_requeue(nowhere, [b"{}\n"])
    assert failed.value.path == str(nowhere) and isinstance(failed.value.cause, OSError)
    assert str(failed.value).startswith(f"cannot write {nowhere}: ")


@pytest.mark.e2e
def test_requeued_404s_run_and_are_dead_lettered_again(dead_run: Run, tmp_path: Path) -> None:
    again = tmp_path / "again.jsonl"
    res = dlq_cli("requeue", dead_run.dead, "-o", again, "--status", "404")
    assert res.code == 0, res.stderr
    mock = start_mock()
    try:
        out, dead = tmp_path / "again.out.jsonl", tmp_path / "again.dead.jsonl"
        run = run_cli(*run_args(again, out, dead, mock))
    finally:
        stop_mock(mock)
    assert run.code == 1, run.stderr
    assert read_jsonl(out) == []
    assert {r["custom_id"]: r["error"]["status_code"] for r in read_jsonl(dead)} == {
        "n1": 404,
        "n2": 404,
        "#5": 404,
    }
    assert all(r["batchrunner"]["kind"] == "request" for r in read_jsonl(dead))


@pytest.mark.e2e
def test_requeued_401s_succeed_with_the_right_key(tmp_path: Path) -> None:
    mock = start_mock("--require-key", TEST_KEY)
    try:
        inp = write_jsonl(
            tmp_path / "in.jsonl",
            [{"custom_id": f"k{i}", "prompt": f"question {i}"} for i in range(6)],
        )
        out, dead = tmp_path / "in.out.jsonl", tmp_path / "in.dead.jsonl"
        wrong = cli_env(MISTRAL_API_KEY="sk-wrong-key-0000")
        first = run_cli(*run_args(inp, out, dead, mock, "--no-preflight"), env=wrong)
        assert first.code == 1, first.stderr
        summary = orjson.loads(dlq_cli("summary", dead, "--json").stdout)
        assert summary["by_status"] == [{"status_code": 401, "type": "unauthorized", "count": 6}]
        again = tmp_path / "again.jsonl"
        assert dlq_cli("requeue", dead, "-o", again).code == 0
        out2, dead2 = tmp_path / "again.out.jsonl", tmp_path / "again.dead.jsonl"
        second = run_cli(*run_args(again, out2, dead2, mock))
    finally:
        stop_mock(mock)
    assert second.code == 0, second.stderr
    assert sorted(r["custom_id"] for r in read_jsonl(out2)) == [f"k{i}" for i in range(6)]
    assert read_jsonl(dead2) == []


# -- errors and empty files ---------------------------------------------------------------


@pytest.mark.e2e
def test_errors_are_one_line(dead_run: Run, tmp_path: Path) -> None:
    for args in (
        ("summary", tmp_path / "missing.jsonl"),
        ("show", tmp_path),
        ("show", dead_run.dead, "--results", tmp_path / "missing.jsonl"),
        ("requeue", dead_run.dead, "-o", dead_run.input),
    ):
        res = dlq_cli(*args)
        assert res.code == 2, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_an_empty_file_says_nothing_is_dead(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dead.jsonl"
    empty.write_bytes(b"")
    for command in ("summary", "show"):
        res = invoke(command, empty)
        assert res.exit_code == 0 and "nothing is dead-lettered" in res.output
    res = invoke("requeue", empty, "-o", tmp_path / "again.jsonl")
    assert res.exit_code == 0 and "nothing is dead-lettered" in res.output
    assert not (tmp_path / "again.jsonl").exists()
    assert summary_json(empty)["total"] == 0
