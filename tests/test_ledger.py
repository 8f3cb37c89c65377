"""The ledger read back from the files: what is done, what is still dead, and which
dead-letter entry is in force (the one rule the run, ``status`` and ``dlq`` share)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from batchrunner.input.lines import DUPLICATE, NEW, BadLine, Done, Item, parse_line
from batchrunner.ledger import records
from batchrunner.ledger.records import (
    dead_fields,
    dead_line,
    input_dead_line,
    loads_object,
    read_dead,
    read_records,
    read_results,
    result_line,
)
from batchrunner.ledger.state import LedgerState, scan, scan_readonly
from batchrunner.vocabulary import Failure

CHAT = "/v1/chat/completions"


def make_item(cid: str, prompt: str = "hi", line: int = 1) -> Item:
    parsed = parse_line(orjson.dumps({"custom_id": cid, "prompt": prompt}), line, CHAT, "m")
    assert isinstance(parsed, Item)
    return parsed


def bad_line(line: int, cid: str | None = None) -> BadLine:
    bad = parse_line(orjson.dumps({"custom_id": cid or "x", "prompt": "p"}), line, CHAT, None)
    assert isinstance(bad, BadLine)  # no model anywhere
    return bad


def rejected(status: int = 400, type_: str = "bad_request") -> Failure:
    return Failure(type=type_, status_code=status, message="nope")


def write(path: Path, *lines: bytes) -> Path:
    with path.open("ab") as f:
        for line in lines:
            f.write(line)
    return path


def claimed(state: LedgerState, cid: str) -> Done | None:
    """The :class:`Done` a read of the input makes of a line naming ``cid`` (once per id:
    a second line naming it is a duplicate); ``None`` for an id to send."""
    (outcome,) = state.claim([cid])
    assert outcome != DUPLICATE
    return None if outcome == NEW else Done(cid, 1, outcome)


def decided(state: LedgerState, cid: str) -> bool:
    return claimed(state, cid) is not None


def failure_of(state: LedgerState, cid: str) -> tuple[int | None, str] | None:
    """(status, type) of the entry in force for a dead id; ``None`` if done or to send."""
    done = claimed(state, cid)
    entry = state.decide(done) if done is not None else None
    return None if entry is None or entry == "done" else (entry.status_code, entry.type)


def sent_fp(state: LedgerState, cid: str) -> str | None:
    done = claimed(state, cid)
    assert done is not None
    return state.sent_fp(done)


def in_force(state: LedgerState, dead: Path) -> list[tuple[str | None, int | None, str]]:
    """The (id, line, type) of every entry of ``dead`` in force, in file order."""
    live = []
    for offset, _, raw in read_records(dead):
        obj = loads_object(raw)
        fields = read_dead(obj) if obj is not None else None
        if fields is not None and state.in_force(offset, fields):
            live.append((fields.custom_id, fields.line, fields.type))
    return live


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "results.jsonl", tmp_path / "dead.jsonl"


def test_scan_missing_files_is_empty(files: tuple[Path, Path]) -> None:
    state = scan(*files)
    assert not decided(state, "a")
    assert state.decide(bad_line(1)) is None
    assert state.warnings == []
    assert not any(p.exists() for p in files)


def test_scan_results_ids_with_fingerprints(files: tuple[Path, Path]) -> None:
    results, dead = files
    a, b = make_item("a", "one"), make_item("b", "two")
    write(results, result_line(a, {"id": "x"}, 1, 0.1), b"\n", result_line(b, {}, 2, 0.2))
    state = scan(results, dead)
    assert (sent_fp(state, "a"), sent_fp(state, "b"), decided(state, "c")) == (a.fp, b.fp, False)
    assert state.claim(["a"]) == [DUPLICATE]  # a second line naming it
    assert state.warnings == []
    light = scan(results, dead, with_fp=False)
    done = claimed(light, "a")
    assert done is not None and light.decide(done) == "done"
    assert light.sent_fp(done) is None  # the lighter scan keeps no fingerprints


def test_scan_dead_entries_by_kind(files: tuple[Path, Path]) -> None:
    results, dead = files
    c = make_item("c")
    write(dead, dead_line(c, rejected(422, "validation_error"), 1), input_dead_line(bad_line(7)))
    state = scan(results, dead)
    done = claimed(state, "c")
    assert done is not None and state.sent_fp(done) == c.fp
    decision = state.decide(done)
    assert decision not in ("done", None) and decision.key == "422"
    assert (decision.status_code, decision.type) == (422, "validation_error")
    # An input line is recorded by its line number, not by the id it may carry.
    line7 = state.decide(bad_line(7))
    assert line7 is not None and line7 != "done" and line7.key == "no_model"
    assert state.decide(bad_line(8)) is None
    assert not decided(state, "x")


@pytest.mark.parametrize("dead_first", [True, False])
def test_scan_result_supersedes_dead_entry(files: tuple[Path, Path], dead_first: bool) -> None:
    results, dead = files
    a, b = make_item("a"), make_item("b")
    steps = [
        (dead, dead_line(a, rejected(500, "server_error"), 8)),
        (results, result_line(a, {}, 1, 0.1)),
    ]
    for path, line in steps if dead_first else reversed(steps):
        write(path, line)
    write(dead, dead_line(b, rejected(), 1))
    state = scan(results, dead)
    done = claimed(state, "a")
    assert done is not None and state.decide(done) == "done"  # the result wins
    assert failure_of(state, "b") == (400, "bad_request")
    assert in_force(state, dead) == [("b", 1, "bad_request")]


def test_scan_last_dead_entry_for_an_id_wins(files: tuple[Path, Path]) -> None:
    results, dead = files
    c = make_item("c")
    write(dead, dead_line(c, rejected(429, "rate_limited"), 8), dead_line(c, rejected(), 1))
    state = scan(results, dead)
    assert failure_of(state, "c") == (400, "bad_request")
    assert in_force(state, dead) == [("c", 1, "bad_request")]
    dead.unlink()
    write(dead, dead_line(c, rejected(), 1), dead_line(c, rejected(429, "rate_limited"), 8))
    assert failure_of(scan(results, dead), "c") == (429, "rate_limited")


def test_an_input_line_fixed_and_sent_is_no_longer_dead(files: tuple[Path, Path]) -> None:
    results, dead = files
    write(dead, dead_line(make_item("c", line=6), rejected(), 1))  # line 6 sent, then broken
    write(dead, *(input_dead_line(bad_line(n)) for n in (3, 5, 6)))
    # Line 3 fixed and sent: a result names it. Line 5 fixed, sent and refused: a request
    # entry after its input entry names it. Line 6's request entry came before its input one.
    write(results, result_line(make_item("a", line=3), {}, 1, 0.1))
    write(dead, dead_line(make_item("b", line=5), rejected(), 1))
    state = scan(results, dead)
    assert state.decide(bad_line(3)) == "done"  # broken again since: its result stands
    assert state.decide(bad_line(5)) is None  # broken again since: to dead-letter anew
    six = state.decide(bad_line(6))
    assert six not in (None, "done")
    live = [("c", 6, "bad_request"), ("x", 6, "no_model"), ("b", 5, "bad_request")]
    assert in_force(state, dead) == live
    write(dead, dead_line(make_item("d", line=6), rejected(), 1))  # line 6 fixed again
    assert in_force(scan(results, dead), dead) == [live[0], live[2], ("d", 6, "bad_request")]


def test_retry_dead_selects_by_status(files: tuple[Path, Path]) -> None:
    results, dead = files
    a, b = make_item("a"), make_item("b")
    write(dead, dead_line(a, rejected(400), 1), dead_line(b, rejected(500, "server_error"), 8))
    state = scan(results, dead)
    state.retry_dead([500])
    assert (decided(state, "a"), decided(state, "b")) == (True, False)
    state = scan(results, dead)
    state.retry_dead([])
    assert (decided(state, "a"), decided(state, "b")) == (False, False)


def test_scan_invalid_lines_are_warnings_not_fatal(files: tuple[Path, Path]) -> None:
    results, dead = files
    a = make_item("a")
    write(results, b"garbage\n", result_line(a, {}, 1, 0.1), b"[1, 2]\n", b'{"no": "id"}\n')
    write(dead, b"{oops\n", dead_line(make_item("d"), rejected(), 1), b"\n")
    write(dead, b'{"custom_id": null, "batchrunner": {"kind": "request"}}\n')
    state = scan(results, dead)
    assert decided(state, "a") and decided(state, "d")
    assert sorted(state.warnings) == sorted(
        [
            f"{results}:1: not a result line; ignored",
            f"{results}:3: not a result line; ignored",
            f"{results}:4: not a result line; ignored",
            f"{dead}:1: not a dead-letter line; ignored",
            f"{dead}:4: not a dead-letter line; ignored",
        ]
    )


def test_scan_repairs_a_torn_tail_with_a_warning(files: tuple[Path, Path]) -> None:
    results, dead = files
    a = make_item("a")
    torn_result = result_line(make_item("z"), {}, 1, 0.1)[:30]
    torn_dead = dead_line(make_item("y"), rejected(), 1)[:-5]
    whole = result_line(a, {}, 1, 0.1)
    write(results, whole, torn_result)
    write(dead, torn_dead)
    assert len(scan_readonly(results, dead).warnings) == 2  # read-only: reported, kept
    state = scan(results, dead)
    assert decided(state, "a") and not decided(state, "z") and not decided(state, "y")
    assert len(state.warnings) == 2
    assert f"repaired {results}" in state.warnings[0]
    assert f"{len(torn_result)} bytes" in state.warnings[0]
    assert f"repaired {dead}" in state.warnings[1]
    assert results.read_bytes() == whole
    assert dead.read_bytes() == b""


def result_rows(path: Path) -> list[tuple[bytes, int, bytes | None] | int]:
    """What :func:`read_results` finds, block after block: (id, line, fp) of each result, in
    order, and the line number of each line that is not one, after its block's results."""
    rows: list[tuple[bytes, int, bytes | None] | int] = []
    for got in read_results(path):
        rows.extend(zip(got.ids, got.lines, got.fps, strict=True))
        rows.extend(got.not_results)
    return rows


@pytest.mark.parametrize(
    "line",
    [
        {"custom_id": "a", "response": {}, "batchrunner": {"line": 4, "fp": "00ff"}},
        {"response": {}, "batchrunner": {"line": 4, "fp": "00ff"}, "custom_id": "a"},
        {"custom_id": 'a"b', "batchrunner": {"line": 4, "fp": "00ff"}},
    ],
)
def test_read_results_reads_lines_not_written_by_us(line: dict[str, Any], tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", orjson.dumps(line) + b"\n")
    assert result_rows(path) == [(line["custom_id"].encode(), 4, b"00ff")]


def test_read_results_reads_our_own_lines_without_a_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [make_item(f"r{i}", line=i) for i in range(1, 4)]
    path = write(tmp_path / "r.jsonl", *(result_line(it, {"n": 1}, 1, 0.5) for it in items))
    monkeypatch.setattr(records, "loads_object", None)  # any parse would fail
    assert result_rows(path) == [(it.custom_id.encode(), it.line, it.fp.encode()) for it in items]


def test_read_results_fast_path_agrees_with_a_parse(tmp_path: Path) -> None:
    item = make_item("é-1", line=12)
    raw = result_line(item, {"text": ',"batchrunner":{"line":99,'}, 3, 0.25)
    also = result_line(make_item("b\\c", line=13), {}, 1, 0.1)  # escaped: parsed
    path = write(tmp_path / "r.jsonl", raw, b"\n", also, b"[]\n", raw.rstrip(b"\n"))
    assert result_rows(path) == [
        ("é-1".encode(), 12, item.fp.encode()),
        (b"b\\c", 13, make_item("b\\c").fp.encode()),
        ("é-1".encode(), 12, item.fp.encode()),  # no newline: parsed
        4,  # not a result
    ]


def test_a_result_says_when_it_completed_and_is_still_read_without_a_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = make_item("a", line=3)
    raw = result_line(item, {"x": 1}, 2, 0.5)
    meta = orjson.loads(raw)["batchrunner"]
    assert list(meta) == ["line", "attempts", "latency_ms", "ts", "fp"]
    assert meta["ts"].endswith("Z") and len(meta["ts"]) == 20  # UTC, as dead-letter lines
    before = orjson.loads(raw) | {"batchrunner": {k: v for k, v in meta.items() if k != "ts"}}
    path = write(tmp_path / "r.jsonl", raw, orjson.dumps(before) + b"\n")
    monkeypatch.setattr(records, "loads_object", None)  # no parse allowed
    assert result_rows(path) == [(b"a", 3, item.fp.encode())] * 2


def _ours_and_others() -> list[bytes]:
    """Dead-letter lines as we write them, and lines shaped otherwise."""
    tricky = make_item("t", prompt='"error":{"status_code":1},"attempts":2,"batchrunner":{')
    broken = parse_line(b"{broken", 4, CHAT, "m")
    assert isinstance(broken, BadLine)
    input_entry = input_dead_line(broken)
    return [
        dead_line(make_item("a", line=2), rejected(), 1),
        dead_line(make_item("b", line=3), rejected(500, "server_error"), 8, batch_job="job-1"),
        dead_line(tricky, rejected(422, "validation_error"), 1),
        dead_line(make_item('q"\\uote', line=5), rejected(), 1),
        input_entry,
        input_dead_line(bad_line(6, "named")),
        orjson.dumps({"line": 7, "custom_id": "x", "error": {"type": "t"}}) + b"\n",
        orjson.dumps({"custom_id": "y", "line": 8, "request": {}, "error": {}}) + b"\n",
        b'{"custom_id":"z","line":9,"request":{},"error":{"status_code":400},"attempts":1,'
        b'"batchrunner":{"kind":"request"}\n',  # cut short: no whole line
        b"[1, 2]\n",
    ]


def test_dead_fields_reads_each_line_as_a_parse_does(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _ours_and_others()
    expected = [read_dead(o) if (o := loads_object(raw)) is not None else None for raw in lines]
    assert [dead_fields(raw) for raw in lines] == expected
    assert [f.kind if f else None for f in expected[:6]] == ["request"] * 4 + ["input"] * 2
    monkeypatch.setattr(records, "loads_object", None)  # our own lines: no whole parse
    assert [dead_fields(raw) for raw in lines[:6]] == expected[:6]


def test_results_that_name_their_endpoint_are_read_right_with_or_without_fingerprints(
    tmp_path: Path,
) -> None:
    routed = parse_line(b'{"custom_id":"e","url":"/v1/embeddings","input":"x"}', 2, CHAT, "m")
    assert isinstance(routed, Item) and routed.endpoint == "/v1/embeddings"
    plain = make_item("p", line=3)
    path = write(tmp_path / "r.jsonl", *(result_line(it, {}, 1, 0.1) for it in (routed, plain)))
    assert result_rows(path) == [(b"e", 2, routed.fp.encode()), (b"p", 3, plain.fp.encode())]
    rows = [zip(got.ids, got.lines, got.fps, strict=True) for got in read_results(path, False)]
    assert [r for block in rows for r in block] == [(b"e", 2, None), (b"p", 3, None)]
