"""Shards in process: the stable partition (a fixture catches a change of hash), ``auto/N``
from each orchestrator's variable, the default names, and four shard runs of the real
Engine merged back into what one run gives, with the merge's checks."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import read_jsonl
from test_engine_inprocess import FakeClient, fail, make_config, run

from batchrunner.cli.exits import message
from batchrunner.config import RunConfig, Shard, default_paths
from batchrunner.errors import ConfigError, LedgerError
from batchrunner.input.lines import Done
from batchrunner.input.shard import resolve_shard, shard_key, shard_of
from batchrunner.ledger.merge import merge_shards
from batchrunner.ledger.shards import find_shards, shard_pattern
from batchrunner.ledger.state import scan_readonly
from batchrunner.ledger.status import run_status

#: (custom_id, its shard of 4, of 8): blake2b-64 of the UTF-8 id, big-endian, modulo N. A
#: change of hash (or of byte order, or of encoding) moves lines between the shards of a
#: run under way: this must never change.
ID_SHARDS = [
    ("a1", 3, 3),
    ("a2", 2, 2),
    ("req-0", 3, 3),
    ("req-1", 3, 3),
    ("req-2", 1, 5),
    ("req-3", 2, 6),
    ("user/42", 1, 1),
    ("émoji-🙂", 3, 3),
    ("0", 1, 5),
    ("17", 0, 4),
    ("#17x", 2, 6),
    ("x" * 300, 1, 5),
]
#: (line number of a line without custom_id, its shard of 4, of 8).
LINE_SHARDS = [(1, 2, 6), (2, 0, 4), (17, 0, 4), (1_000_000, 0, 4)]


@pytest.mark.parametrize(("custom_id", "of4", "of8"), ID_SHARDS)
def test_an_id_always_falls_in_the_same_shard(custom_id: str, of4: int, of8: int) -> None:
    assert (shard_of(custom_id, 999, 4), shard_of(custom_id, 999, 8)) == (of4, of8)
    assert shard_of(custom_id, 5, 4) == of4  # the line does not matter for a given id


@pytest.mark.parametrize(("line", "of4", "of8"), LINE_SHARDS)
def test_a_line_without_id_falls_by_its_line_number(line: int, of4: int, of8: int) -> None:
    assert (shard_of(None, line, 4), shard_of(None, line, 8)) == (of4, of8)
    # However the implicit id is spelt, it is the line number that is hashed.
    for implicit in (str(line), f"#{line}"):
        assert shard_key(implicit, line) == str(line).encode()
        assert shard_of(implicit, line, 8) == of8
    assert shard_key(f"#{line}", line + 1) == f"#{line}".encode()  # not its own line: an id


def test_the_shards_share_ids_evenly() -> None:
    sizes = Counter(shard_of(f"id-{i}", 0, 8) for i in range(40_000))
    assert set(sizes) == set(range(8))
    assert all(4_700 < n < 5_300 for n in sizes.values()), sizes


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("2/8", {}, Shard(2, 8)),
        (" 0 / 1 ", {}, Shard(0, 1)),
        ("auto/8", {"JOB_COMPLETION_INDEX": "5"}, Shard(5, 8)),
        ("/8", {"BATCHRUNNER_SHARD": "7"}, Shard(7, 8)),
        ("auto/4", {"SLURM_ARRAY_TASK_ID": "3"}, Shard(3, 4)),
        ("auto/4", {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1"}, Shard(3, 4)),
        # Ours first: it can override an orchestrator's by hand.
        ("auto/4", {"BATCHRUNNER_SHARD": "1", "JOB_COMPLETION_INDEX": "2"}, Shard(1, 4)),
    ],
)
def test_resolve_shard(text: str, env: dict[str, str], expected: Shard) -> None:
    assert resolve_shard(text, env) == expected


@pytest.mark.parametrize(
    ("text", "env", "says"),
    [
        ("auto/8", {}, "no shard index in the environment: set BATCHRUNNER_SHARD (0 to 7)"),
        ("auto/8", {"JOB_COMPLETION_INDEX": "8"}, "JOB_COMPLETION_INDEX=8 is shard 8, not one"),
        ("auto/4", {"SLURM_ARRAY_TASK_ID": "x"}, "SLURM_ARRAY_TASK_ID='x' is not a whole"),
        ("auto/0", {"BATCHRUNNER_SHARD": "0"}, "the N of auto/N must be a whole number above 0"),
        ("8/8", {}, "K/N with whole numbers 0 <= K < N"),
        ("1/-2", {}, "K/N with whole numbers"),
        ("three", {}, "K/N with whole numbers"),
    ],
)
def test_resolve_shard_refuses_in_one_line(text: str, env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        resolve_shard(text, env)
    assert says in str(refused.value) and "\n" not in str(refused.value)
    assert refused.value.setting == "shard"
    # The library names the setting; the command line spells it as the flag.
    text = str(refused.value)
    assert "--shard" not in text
    assert message(refused.value) == text.replace("`shard`", "--shard")


def test_the_library_takes_k_of_n_only(tmp_path: Path) -> None:
    for bad in ("auto/4", "4/4", "1"):
        with pytest.raises(ConfigError, match="shard must be K/N"):
            make_config(tmp_path, 1, shard=bad)
    assert make_config(tmp_path, 1, shard="1/4").shard_spec == Shard(1, 4)


def test_default_names_carry_the_shard() -> None:
    out, dead = default_paths(Path("d/prompts.jsonl"), Shard(2, 8))
    assert (out, dead) == (
        Path("d/prompts.shard-2-of-8.results.jsonl"),
        Path("d/prompts.shard-2-of-8.dead.jsonl"),
    )
    assert default_paths(Path("p.jsonl")) == (Path("p.results.jsonl"), Path("p.dead.jsonl"))
    assert shard_pattern(Path("d/prompts.jsonl")) == Path("d/prompts.shard-*-of-*.results.jsonl")


# -- four shard runs of the real engine, merged ---------------------------------------------

ROWS: list[Any] = [{"custom_id": f"p{i}", "prompt": f"p{i}"} for i in range(120)]
ROWS[7] = {"prompt": "p7"}  # no custom_id: keyed by its line number (8)
ROWS[9] = {"custom_id": "p3", "prompt": "again"}  # a duplicate of p3: its shard's bad line
ROWS[11] = {"custom_id": "p11"}  # no request
#: p5 refused (400); p6 a 500 every time: dead after its two attempts.
SCRIPT = {"p5": [fail("bad_request", 400)], "p6": [fail("server_error", 500)]}


def shard_config(tmp_path: Path, k: int | None, n: int = 4, **changes: Any) -> RunConfig:
    base = make_config(tmp_path, ROWS, **changes)
    shard = None if k is None else Shard(k, n)
    out, dead = default_paths(base.input_path, shard)
    return RunConfig(
        **{f: getattr(base, f) for f in ("input_path", "model", "preflight", "backoff_base")},
        output_path=out,
        dead_letter_path=dead,
        shard=None if shard is None else str(shard),
        max_attempts=2,
        fsync_interval=3600.0,
    )


def outcomes(results: Path, dead: Path) -> dict[str, str]:
    """Each id (or bad line) -> ok / its error type; fails on a doubled one."""
    seen: dict[str, str] = {}
    for r in read_jsonl(results):
        assert r["custom_id"] not in seen
        seen[r["custom_id"]] = "ok"
    for d in read_jsonl(dead):
        key = d["custom_id"] if d["batchrunner"]["kind"] == "request" else f"line {d['line']}"
        assert key not in seen
        seen[key] = d["error"]["type"]
    return seen


def run_shards(tmp_path: Path, ks: range | list[int] = range(4)) -> None:
    for k in ks:
        stats = run(shard_config(tmp_path, k), FakeClient(dict(SCRIPT)))
        assert stats.shards == 4 and stats.pending == 0


def test_four_shards_merge_into_what_one_run_gives(tmp_path: Path) -> None:
    single = tmp_path / "single"
    single.mkdir()
    one = shard_config(single, None)
    run(one, FakeClient(dict(SCRIPT)))
    run_shards(tmp_path)
    inp = tmp_path / "in.jsonl"
    shards = find_shards(inp, [])
    assert [str(f.shard) for f in shards] == ["0/4", "1/4", "2/4", "3/4"]
    out, dead = tmp_path / "merged.jsonl", tmp_path / "merged.dead.jsonl"

    report = merge_shards(inp, shards, out, dead)

    assert report.complete, report.verdict()
    assert report.verdict().startswith("complete: 120 lines from 4 shards: 116 results")
    assert outcomes(out, dead) == outcomes(one.output_path, one.dead_letter_path)
    assert sum(t.lines for t in report.by_shard) == 120
    st = run_status(out)  # the merged pair is a run's files to status (and dlq)
    assert (st.done, st.dead, st.pending, st.shard) == (116, 4, 0, None)
    shard_st = run_status(shards[1].results)
    assert shard_st.shard == "1/4" and shard_st.input_lines == report.by_shard[1].lines
    assert shard_st.pending == 0


def test_merge_names_a_missing_shard_and_an_incomplete_one(tmp_path: Path) -> None:
    run_shards(tmp_path, [0, 1, 3])
    inp = tmp_path / "in.jsonl"
    results = default_paths(inp, Shard(3, 4))[0]
    lines = results.read_bytes().splitlines(keepends=True)
    results.write_bytes(b"".join(lines[:-2]))  # shard 3 lost its last two results

    report = merge_shards(inp, find_shards(inp, []), tmp_path / "m.jsonl", tmp_path / "d.jsonl")

    assert not report.complete
    missing = report.by_shard[2].lines
    assert report.missing == [2] and report.incomplete == [3]
    verdict = report.verdict()
    assert verdict.startswith(f"incomplete: {missing + 2} of 120 lines have no outcome")
    assert "shard 2/4 missing (no files); shard 3/4 has 2 pending" in verdict
    detail = report.as_dict()
    assert detail["missing"] == ["2/4"] and detail["pending"] == missing + 2
    assert [s["state"] for s in detail["by_shard"]] == [
        "complete", "complete", "missing", "incomplete",
    ]  # fmt: skip


def test_merge_leaves_out_doubled_misplaced_and_foreign_outcomes(tmp_path: Path) -> None:
    run_shards(tmp_path)
    inp = tmp_path / "in.jsonl"
    r0, r1 = (default_paths(inp, Shard(k, 4))[0] for k in (0, 1))
    first = r0.read_bytes().splitlines(keepends=True)[0]
    stranger = orjson.loads(first) | {"custom_id": "zz-not-in-input"}
    home = shard_of("zz-not-in-input", 0, 4)
    with default_paths(inp, Shard(home, 4))[0].open("ab") as f:
        f.write(orjson.dumps(stranger) + b"\n")
    with r0.open("ab") as f:
        f.write(first)  # the same result twice
    with r1.open("ab") as f:
        f.write(first)  # shard 0's result in shard 1's files

    report = merge_shards(inp, find_shards(inp, []), tmp_path / "m.jsonl", tmp_path / "d.jsonl")

    assert not report.complete
    assert (report.doubled.count, report.foreign.count, report.misplaced.count) == (1, 1, 1)
    assert report.foreign.examples == ["'zz-not-in-input'"]
    assert "1 outcomes doubled" in report.verdict()
    assert report.results_written == 116  # each id once, none from outside


def test_merge_refuses_what_it_must_not_overwrite(tmp_path: Path) -> None:
    run_shards(tmp_path, [0, 1])
    inp = tmp_path / "in.jsonl"
    shards = find_shards(inp, [])
    with pytest.raises(LedgerError, match="one of the files being merged"):
        merge_shards(inp, shards, shards[0].results, tmp_path / "d.jsonl")
    (tmp_path / "mine.jsonl").write_text("precious\n")
    with pytest.raises(LedgerError, match="not the output of a merge"):
        merge_shards(inp, shards, tmp_path / "mine.jsonl", tmp_path / "d.jsonl")
    out = tmp_path / "m.jsonl"
    merge_shards(inp, shards, out, tmp_path / "d.jsonl")
    merge_shards(inp, shards, out, tmp_path / "d.jsonl")  # its own output: written again
    copy = tmp_path / "copy.results.jsonl"
    shutil.copy(shards[0].results, copy)
    shutil.copy(shards[0].results.with_name(shards[0].results.name + ".manifest.json"),
                copy.with_name(copy.name + ".manifest.json"))  # fmt: skip
    with pytest.raises(LedgerError, match="shard 0/4 comes twice"):
        find_shards(inp, [str(tmp_path / "*.results.jsonl")])


def test_a_shard_does_not_resume_another_shards_files(tmp_path: Path) -> None:
    run(shard_config(tmp_path, 1), FakeClient())
    one = shard_config(tmp_path, 1)
    other = RunConfig(**{**_fields(one), "shard": "2/4"})
    with pytest.raises(LedgerError, match=r"holds shard 1/4 and this run is for shard 2/4"):
        run(other, FakeClient())
    whole = RunConfig(**{**_fields(one), "shard": None})
    with pytest.raises(LedgerError, match=r"holds shard 1/4 and this run is for the whole"):
        run(whole, FakeClient())


def _fields(config: RunConfig) -> dict[str, Any]:
    return {f: getattr(config, f) for f in config.__dataclass_fields__}


def test_retry_dead_sends_again_only_the_shards_own_dead(tmp_path: Path) -> None:
    home = shard_of("p5", 0, 4)  # p5 is refused once (400), then answered
    run(shard_config(tmp_path, home), FakeClient(dict(SCRIPT)))
    again = RunConfig(**{**_fields(shard_config(tmp_path, home)), "retry_dead": True})
    client = FakeClient()
    run(again, client)
    assert "p5" in client.sent
    assert all(shard_of(p, 0, 4) == home for p in client.sent)  # the shard's own dead only
    state = scan_readonly(again.output_path, again.dead_letter_path)
    (outcome,) = state.claim(["p5"])
    assert outcome > 0  # decided, and by its result, which supersedes the 400
    assert state.decide(Done("p5", 0, outcome)) == "done"
