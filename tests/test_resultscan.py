"""A large results file is cut into ids by a child process: the same blocks as a read here,
a resume that decides the same, and a clean error when the child stops early."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

from batchrunner import RunConfig, run
from batchrunner.errors import LedgerError
from batchrunner.input.lines import Item, parse_line
from batchrunner.ledger import records, resultscan
from batchrunner.ledger.records import read_results, result_line
from batchrunner.ledger.resultscan import read_results_aside

pytestmark = pytest.mark.e2e  # each test starts a process

CHAT = "/v1/chat/completions"
MODEL = "mistral-small-latest"


def item(raw: bytes, line: int) -> Item:
    parsed = parse_line(raw, line, CHAT, "m")
    assert isinstance(parsed, Item)
    return parsed


def results_file(path: Path) -> Path:
    """Lines of every kind, over several blocks: ours, one naming its own endpoint, an
    escaped id, a blank line, lines that are not results, a last line without a newline."""
    lines = [
        result_line(item(b'{"custom_id":"r%d","prompt":"p"}' % i, i), {}, 1, 0.1)
        for i in range(3000)
    ]
    lines[10] = result_line(
        item(b'{"custom_id":"e","url":"/v1/embeddings","input":"x"}', 11), {}, 1, 0.1
    )
    lines[20] = result_line(item(b'{"custom_id":"q\\"d","prompt":"p"}', 21), {}, 1, 0.1)
    lines[30:30] = [b"\n", b"not json\n", orjson.dumps({"custom_id": 5}) + b"\n"]
    path.write_bytes(b"".join(lines) + b'{"custom_id":"last","response":{}}')
    return path


def flat(blocks: object) -> list[tuple[object, ...]]:
    got = []
    for block in blocks:  # type: ignore[attr-defined]
        got += zip(block.ids, block.lines, block.fps, strict=True)
        got += [("not a result", n) for n in block.not_results]
    return got


@pytest.mark.parametrize("with_fp", [True, False])
def test_the_child_cuts_the_blocks_a_read_here_cuts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_fp: bool
) -> None:
    monkeypatch.setattr(records, "_BLOCK", 1 << 16)  # several blocks (the child's default)
    path = results_file(tmp_path / "r.jsonl")
    here = flat(read_results(path, with_fp))
    monkeypatch.setattr(resultscan, "MIN_SIZE", 0)
    aside = flat(read_results_aside(path, with_fp))
    assert sorted(aside, key=repr) == sorted(here, key=repr)  # blocks cut elsewhere
    assert len(aside) == 3000 + 2 + 1  # every result, the two odd lines, the last line


def test_a_child_that_stops_early_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = results_file(tmp_path / "r.jsonl")
    monkeypatch.setattr(resultscan, "MIN_SIZE", 0)
    monkeypatch.setattr(sys, "executable", "/bin/false")  # starts, writes nothing, exits 1
    with pytest.raises(LedgerError, match="stopped before its end"):
        flat(read_results_aside(path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no such interpreter"))
    assert len(flat(read_results_aside(path))) == 3003  # none to start: read here


def test_a_resume_with_the_child_decides_as_one_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [{"custom_id": f"r{i}", "prompt": f"p{i}"} for i in range(300)]
    rows[7] = {"custom_id": "r7", "prompt": "[[mock:400]]"}
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    config = RunConfig(input_path=inp, model=MODEL, mock=True, backoff_base=0.01)
    first = run(config)
    assert (first.ok, first.dead) == (299, 1)
    monkeypatch.setattr(resultscan, "MIN_SIZE", 0)
    frames = []
    real = resultscan._frames
    monkeypatch.setattr(resultscan, "_frames", lambda *a: frames.append(1) or real(*a))
    again = run(config)
    assert frames  # the child read the results
    assert (again.ok, again.dead, again.sent) == (0, 0, 0)
    assert (again.skipped_done, again.skipped_dead) == (300, 1)
