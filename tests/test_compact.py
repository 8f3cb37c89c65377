"""The compact state: tables of 128-bit keys instead of dicts of ids, and the same decisions
as an exact model of the rule, even for ids whose hashes collide in the bits that place them."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchrunner.input.lines import (
    DUPLICATE,
    NEW,
    BadLine,
    Done,
    DoneLines,
    Item,
    parse_line,
    read_input,
)
from batchrunner.ledger import table
from batchrunner.ledger.records import (
    dead_line,
    input_dead_line,
    loads_object,
    read_dead,
    read_records,
    result_line,
)
from batchrunner.ledger.state import LedgerState, scan_readonly
from batchrunner.ledger.table import (
    MISSING,
    TAKEN,
    Keys,
    KeyTable,
    NumberSet,
    estimate_lines,
    key,
    keys,
    sorted_ints,
)
from batchrunner.vocabulary import Failure

CHAT = "/v1/chat/completions"
M64 = (1 << 64) - 1

# -- the structures ------------------------------------------------------------------------


@given(st.lists(st.tuples(st.binary(max_size=6), st.integers(0, M64)), max_size=300))
def test_key_table_behaves_like_a_dict(pairs: list[tuple[bytes, int]]) -> None:
    t, model = KeyTable(1), {}  # from 8 slots: several growths
    for data, value in pairs:
        t.put(t.insert(*key(data)), value)
        model[data] = value
    assert len(t) == len(model)
    for data, value in model.items():
        off = t.find(*key(data))
        assert off >= 0 and t.get(off) == value
    assert t.find(*key(b"never inserted, longer than six")) == -1


@given(
    st.lists(st.binary(max_size=4), max_size=200),
    st.lists(st.binary(max_size=4), max_size=200),
    st.integers(1, 50),
)
def test_key_table_in_blocks_marks_the_first_claim_of_each_key(
    stored: list[bytes], asked: list[bytes], block: int
) -> None:
    t = KeyTable(0)
    for i in range(0, len(stored), block):  # several growths, a block at a time
        t.insert_all(*keys(stored[i : i + block]))
    assert len(t) == len(set(stored))
    answers = []
    for i in range(0, len(asked), block):
        answers += t.find_all(*keys(asked[i : i + block]), mark=True)
    seen: set[bytes] = set()
    for data, off in zip(asked, answers, strict=True):
        if data not in stored:
            assert off == MISSING
        elif data in seen:
            assert off == TAKEN
        else:
            assert off >= 0 and off == t.find(*key(data))
        seen.add(data)


def test_key_table_sized_from_an_estimate_costs_under_40_bytes_an_id() -> None:
    n = 100_000
    for width, most in ((0, 24), (1, 35)):  # ids alone; ids and fingerprints
        t = KeyTable(width, expected=n)
        for i in range(n):
            t.insert(*key(b"req-%d" % i))
        assert len(t) == n
        assert t.nbytes / n <= most


@given(st.lists(st.binary(max_size=20), max_size=20))
def test_the_key_of_one_id_is_its_key_in_a_list(ids: list[bytes]) -> None:
    assert [key(i) for i in ids] == list(zip(*keys(ids), strict=True))


@pytest.mark.parametrize("block", [1, 3, 10])
def test_number_set_holds_what_was_added_near_and_far(block: int) -> None:
    numbers = NumberSet()
    members = [0, 7, 8, 1000, 123_457, -3, table._NEAR, table._NEAR + 5]
    for i in range(0, len(members), block):
        numbers.add_all(members[i : i + block])
    numbers.add_all([])
    asked = [*range(-5, 200_000), table._NEAR - 1, table._NEAR, table._NEAR + 5, 1 << 40]
    assert [n for n in asked if n in numbers] == sorted(members)


@pytest.mark.parametrize("values", [[], [5], [3, 1, 2], list(range(50, 0, -3)) * 3])
def test_sorted_ints_merges_sorted_runs(values: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table, "_SORT_CHUNK", 7)
    assert list(sorted_ints(iter(values))) == sorted(values)
    assert list(sorted_ints(array("Q", [M64, 0]))) == [0, M64]


def test_estimate_lines(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.write_bytes(b"a\nbb\nccc\n")
    assert estimate_lines(small) == 3
    big = tmp_path / "big"
    big.write_bytes(b"".join(b"%09d\n" % i for i in range(300_000)))  # 3 MB of 10-byte lines
    assert abs(estimate_lines(big) - 300_000) <= 10  # from the first MiB
    assert estimate_lines(tmp_path / "missing") == 0


# -- the same decisions as an exact model ------------------------------------------------------


def colliding_ids(n: int, bits: int = 12) -> list[str]:
    """``n`` ids whose keys share the top ``bits`` of their second word: the bits that pick
    the slot, so they all start at the same slot of a table of up to 2**bits slots."""
    want = key(b"id-0")[1] >> (64 - bits)
    ids, i = ["id-0"], 0
    while len(ids) < n:
        i += 1
        cid = f"id-{i}"
        if key(cid.encode())[1] >> (64 - bits) == want:
            ids.append(cid)
    return ids


def same_second_word(ids: list[bytes]) -> Keys:
    """Keys whose second word is the same for every id: only the first tells them apart."""
    return keys(ids)[0], [0x5EED] * len(ids)


def one(keying: Callable[[list[bytes]], Keys]) -> Callable[[bytes], tuple[int, int]]:
    """The key of one id, by ``keying``."""

    def key_of(data: bytes) -> tuple[int, int]:
        (hi,), (lo,) = keying([data])
        return hi, lo

    return key_of


def item(cid: str, line: int, prompt: str = "p") -> Item:
    parsed = parse_line(orjson.dumps({"custom_id": cid, "prompt": prompt}), line, CHAT, "m")
    assert isinstance(parsed, Item)
    return parsed


def refused(status: int, type_: str = "bad_request") -> Failure:
    return Failure(type=type_, status_code=status, message="no")


def write_run(folder: Path, ids: list[str]) -> tuple[Path, Path, Path]:
    """Input, results and dead-letter files of a run with every kind of decision among
    ``ids``: done, dead, dead then done, dead twice, duplicates, bad lines (one fixed and
    refused since, one fixed and done, both broken again) and ids still to send."""
    inp, res, dead = folder / "in.jsonl", folder / "in.results.jsonl", folder / "in.dead.jsonl"
    lines = [orjson.dumps({"custom_id": cid, "prompt": f"p{i}"}) for i, cid in enumerate(ids)]
    lines[5:5] = [b"{broken", orjson.dumps({"custom_id": ids[3], "prompt": "again"})]
    lines.append(b"[1, 2]")
    inp.write_bytes(b"\n".join(lines) + b"\n")
    line_of = {cid: n for n, cid in enumerate(ids, start=1)}
    line_of.update({cid: n + 2 for cid, n in line_of.items() if n > 5})
    with res.open("wb") as r, dead.open("wb") as d:
        for i, cid in enumerate(ids):
            it = item(cid, line_of[cid], f"p{i}")
            if 10 <= i < 25:
                d.write(dead_line(it, refused(400 + i % 3), 1))
            if 20 <= i < 25:
                d.write(dead_line(it, refused(500, "server_error"), 8))  # the last one wins
            if i < 15:
                r.write(result_line(it, {}, 1, 0.1))
        for bad in read_input(inp, CHAT, "m"):
            if isinstance(bad, BadLine):
                d.write(input_dead_line(bad))
        d.write(dead_line(item("fixed", 6), refused(422, "validation_error"), 1))  # line 6
        r.write(result_line(item("sent", len(lines)), {}, 1, 0.1))  # the last line, fixed
    return inp, res, dead


def lines(entries: Iterator[Item | BadLine | Done | DoneLines]) -> Iterator[Item | BadLine | Done]:
    """Each line of what :func:`read_input` gives (a :class:`DoneLines` is several)."""
    for e in entries:
        yield from e.each() if isinstance(e, DoneLines) else (e,)


def exact_decisions(inp: Path, res: Path, dead: Path) -> Iterator[tuple[object, ...]]:
    """The rule, written plainly with dicts and sets of ids."""
    done = {obj["custom_id"] for _, _, raw in read_records(res) if (obj := orjson.loads(raw))}
    result_lines = {orjson.loads(raw)["batchrunner"]["line"] for _, _, raw in read_records(res)}
    by_id: dict[str, tuple[int, int | None, str]] = {}
    by_line: dict[int, tuple[int, int | None, str]] = {}
    for offset, _, raw in read_records(dead):
        obj = orjson.loads(raw)
        what = (offset, obj["error"]["status_code"], obj["error"]["type"])
        if obj["batchrunner"]["kind"] == "input":
            by_line[obj["line"]] = what
        else:
            by_id[obj["custom_id"]] = what
            by_line.pop(obj["line"], None)
    named: set[str] = set()

    def claim_one(cid: str) -> int:
        if cid in named:
            return DUPLICATE
        named.add(cid)
        return 1 if cid in done or cid in by_id else NEW

    def claim(cids: list[str]) -> list[int]:
        return list(map(claim_one, cids))

    for e in lines(read_input(inp, CHAT, "m", claim)):
        if isinstance(e, Done):
            yield ("done",) if e.custom_id in done else by_id[e.custom_id]
        elif isinstance(e, BadLine):
            yield ("done",) if e.line in result_lines else by_line.get(e.line, ("send",))
        else:
            yield ("send",)
    for offset, _, raw in read_records(dead):
        obj = orjson.loads(raw)
        if obj["batchrunner"]["kind"] == "input":
            line = obj["line"]
            yield line not in result_lines and by_line.get(line, (None,))[0] == offset
        else:
            cid = obj["custom_id"]
            yield cid not in done and by_id[cid][0] == offset


def compact_decisions(inp: Path, res: Path, dead: Path) -> Iterator[tuple[object, ...]]:
    state: LedgerState = scan_readonly(res, dead, with_fp=False)
    for e in lines(read_input(inp, CHAT, "m", state.claim)):
        decision = None if isinstance(e, Item) else state.decide(e)
        if decision is None:
            yield ("send",)
        elif decision == "done":
            yield ("done",)
        else:
            yield decision.offset, decision.status_code, decision.type
    for_dlq = scan_readonly(res, dead, with_fp=False, done_ids=False)
    live = []
    for offset, _, raw in read_records(dead):
        obj = loads_object(raw)
        fields = read_dead(obj) if obj is not None else None
        assert fields is not None
        in_force = for_dlq.in_force(offset, fields)
        assert state.in_force(offset, fields) == in_force  # with the done ids kept, too
        live += [offset] if in_force else []
        yield in_force
    assert list(for_dlq.kept()) == list(state.kept()) == live  # all at once, as one by one
    superseded = for_dlq.dead_records - len(live)
    assert for_dlq.superseded() == state.superseded() == superseded > 0


KEYS: dict[str, Callable[[list[bytes]], Keys]] = {
    "siphash": keys,
    "same second word": same_second_word,
}


@pytest.mark.parametrize("block", [1 << 18, 100], ids=["one block", "blocks of a few lines"])
@pytest.mark.parametrize("keying", list(KEYS))
def test_compact_state_decides_as_the_exact_rule_when_keys_collide(
    keying: str, block: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = colliding_ids(40)
    monkeypatch.setattr("batchrunner.ledger.state.keys", KEYS[keying])
    monkeypatch.setattr("batchrunner.ledger.state.key", one(KEYS[keying]))
    # small blocks: most are read whole (ids claimed a block at a time), a few line by line
    monkeypatch.setattr("batchrunner.input.lines._BLOCK", block)
    files = write_run(tmp_path, ids)
    exact = list(exact_decisions(*files))
    assert exact == list(compact_decisions(*files))
    kinds = {d[0] if isinstance(d, tuple) and len(d) == 1 else type(d).__name__ for d in exact}
    assert kinds == {"done", "send", "tuple", "bool"}  # every kind of decision was made
    assert exact.count(("done",)) == 15 + 1  # 15 ids with results; the last line's result
