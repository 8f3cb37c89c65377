"""A run stopped before the end of its input: the outcomes the files hold for the lines it
did not read are counted from the ledger (:func:`batchrunner.engine.admission.count_unread`),
without reading those lines."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from batchrunner.config import RunConfig
from batchrunner.engine.admission import count_unread
from batchrunner.engine.stats import RunStats
from batchrunner.input.lines import BadLine, Item, parse_line
from batchrunner.ledger.records import dead_line, input_dead_line, result_line
from batchrunner.ledger.state import LedgerState, scan
from batchrunner.vocabulary import TRANSIENT, Failure

CHAT = "/v1/chat/completions"


def item(cid: str, line: int) -> Item:
    parsed = parse_line(orjson.dumps({"custom_id": cid, "prompt": "p"}), line, CHAT, "m")
    assert isinstance(parsed, Item)
    return parsed


def bad(line: int) -> BadLine:
    parsed = parse_line(b"{not json", line, CHAT, "m")
    assert isinstance(parsed, BadLine)
    return parsed


def failed(type_: str, status: int | None = None) -> Failure:
    return Failure(type=type_, status_code=status, message="no")


@pytest.fixture
def config(tmp_path: Path) -> RunConfig:
    """Files of an earlier run over lines 1-8: results for a (1), b (4) and z (an id the
    input no longer has); dead: c (5, for good), d (6, retries exhausted: sent again), e
    (superseded by its result), bad line 2 and bad line 7."""
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    e = item("e", 8)
    with dead.open("wb") as f:
        f.write(dead_line(item("c", 5), failed("bad_request", 400), 1))
        f.write(dead_line(item("d", 6), failed("retries_exhausted", 500), 8))
        f.write(dead_line(e, failed("timeout"), 8))
        f.write(input_dead_line(bad(2)) + input_dead_line(bad(7)))
    with out.open("wb") as f:
        for done in (item("a", 1), item("b", 4), item("z", 3), e):
            f.write(result_line(done, {}, 1, 0.1) + b"\n")
    return RunConfig(
        input_path=tmp_path / "in.jsonl", output_path=out, dead_letter_path=dead, model="m"
    )


def test_the_ledger_counts_what_the_scan_found_in_force(config: RunConfig) -> None:
    state = scan(config.output_path, config.dead_letter_path)
    assert state.results_found == 4
    assert state.dead_found(0) == (2, 2)  # c, d; lines 2, 7
    state.send_again(TRANSIENT)
    assert state.dead_found(0) == (1, 2)
    assert state.dead_found(2) == (1, 1)  # line 2 is passed
    # Entries written after the scan are this run's: counted by the run, not here.
    with config.dead_letter_path.open("ab") as f:
        f.write(dead_line(item("f", 9), failed("bad_request", 400), 1))
    assert state.dead_found(2) == (1, 1)


def test_no_dead_letters_need_no_read(tmp_path: Path) -> None:
    assert LedgerState(with_fp=False).dead_found(0) == (0, 0)


def test_the_unread_lines_get_the_outcomes_the_reader_did_not_pass(config: RunConfig) -> None:
    state = scan(config.output_path, config.dead_letter_path)
    stats = RunStats(total_lines=10, read=1, position=1, skipped_done=1)  # passed a only
    count_unread(config, state, stats)
    # b, z, e are results; c and bad lines 2 and 7 dead; d is pending (sent again).
    assert (stats.unread_done, stats.unread_dead) == (3, 3)
    assert (stats.total_ok, stats.total_dead, stats.pending) == (4, 3, 3)


def test_outcomes_never_outnumber_the_unread_lines(config: RunConfig) -> None:
    """z is not in the input: a stopped run cannot tell without reading the lines, but
    it never counts more outcomes than lines are left."""
    state = scan(config.output_path, config.dead_letter_path)
    stats = RunStats(total_lines=10, read=6, position=8, skipped_done=3, skipped_dead=2)
    count_unread(config, state, stats)
    assert (stats.unread_done, stats.unread_dead) == (2, 0)
    assert stats.total_ok + stats.total_dead + stats.pending == stats.to_decide == 10


def test_a_whole_read_counts_nothing_more(config: RunConfig) -> None:
    state = scan(config.output_path, config.dead_letter_path)
    stats = RunStats(total_lines=10, read=10, position=10, skipped_done=3)
    count_unread(config, state, stats)
    assert (stats.unread_done, stats.unread_dead) == (0, 0)


def test_ids_other_shards_lines_named_are_passed_not_counted(config: RunConfig) -> None:
    """A shard's files holding another shard's id (a hand-merged file): once the reader has
    passed its line, it is neither this shard's result nor one of its unread lines'."""
    state = scan(config.output_path, config.dead_letter_path)
    stats = RunStats(total_lines=10, read=3, position=3, shards=2, other_shards=1)
    stats.skipped_done, stats.other_shards_results = 1, 1  # a skipped; z another shard's
    count_unread(config, state, stats)
    assert stats.unread_done == 2  # b, e
    assert stats.total_ok == 3
