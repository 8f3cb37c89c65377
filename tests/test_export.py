"""``batchrunner export``: a run's results joined back to its input, one row per input line
in input order, as JSONL, CSV and Parquet, read through an offset index (not the results
file in memory)."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from conftest import MockProc, read_jsonl, run_cli, start_mock, stop_mock, write_jsonl

from batchrunner.cli.main import cli
from batchrunner.export import join
from batchrunner.export.index import OffsetIndex
from batchrunner.export.join import joined
from batchrunner.export.rows import COLUMNS, run_files

MODEL = "mistral-small-latest"
EMBED = "mistral-embed"
PART = {"type": "text", "text": "parts"}
ROWS: list[Any] = [
    {"custom_id": "a", "prompt": "hello", "max_tokens": 20},  # 1 ok
    {"custom_id": "b", "prompt": "[[mock:400]] refused"},  # 2 dead, 400
    {"prompt": "no id"},  # 3 ok, "#3"
    {"custom_id": "e", "url": "/v1/embeddings", "body": {"model": EMBED, "input": ["x", "y"]}},
    {"custom_id": "a", "prompt": "a duplicate"},  # 5 dead, an input line
    {"custom_id": "m", "messages": [{"role": "user", "content": [PART]}]},
]  # fmt: skip
LATER = {"custom_id": "z", "prompt": "appended after the run"}  # 7 pending


@pytest.fixture(scope="module")
def done_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run (module-wide), then a line appended that no run has sent yet."""
    d = tmp_path_factory.mktemp("run")
    inp = write_jsonl(d / "in.jsonl", ROWS)
    mock = start_mock()
    try:
        res = run_cli("run", inp, "--server-url", mock.url, "--model", MODEL, "-q",
                      "--backoff-base", "0.01")  # fmt: skip
    finally:
        stop_mock(mock)
    assert res.code == 1, res.stderr
    with inp.open("ab") as f:
        f.write(orjson.dumps(LATER) + b"\n")
    return d / "in.results.jsonl"


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["export", *map(str, args)], env={"COLUMNS": "200"})


def check_rows(rows: list[dict[str, Any]]) -> None:
    """What every format holds (as JSON values; CSV and Parquet are decoded first)."""
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]  # input order, every line
    assert [r["custom_id"] for r in rows] == ["a", "b", "#3", "e", "a", "m", "z"]
    assert [r["status"] for r in rows] == ["ok", "dead", "ok", "ok", "dead", "ok", "pending"]
    a, b, no_id, e, dup, parts, later = rows
    assert (a["prompt"], a["answer"], a["finish_reason"]) == ("hello", "echo: hello", "stop")
    assert a["prompt_tokens"] > 0 and a["completion_tokens"] > 0
    assert a["messages"] == [{"role": "user", "content": "hello"}]
    assert (b["error_status_code"], b["error_type"]) == (400, "bad_request")
    assert b["answer"] is None and b["prompt"] == "[[mock:400]] refused"
    assert no_id["answer"] == "echo: no id"
    assert e["endpoint"] == "/v1/embeddings" and e["prompt"] == ["x", "y"]
    assert len(e["embedding"]) == 2 and all(isinstance(v, float) for v in e["embedding"][0])
    assert dup["error_type"] == "duplicate_custom_id" and dup["prompt"] == "a duplicate"
    assert parts["prompt"] == "parts" and parts["answer"] == "echo: parts"
    assert later["answer"] is None and later["error_type"] is None
    assert all(list(r) == list(COLUMNS) for r in rows)


@pytest.mark.e2e
def test_jsonl_to_stdout(done_run: Path) -> None:
    res = invoke(done_run)
    assert res.exit_code == 0, res.output
    check_rows([orjson.loads(line) for line in res.stdout.splitlines()])
    assert "exported 7 rows (jsonl) to stdout" in res.stderr


@pytest.mark.e2e
def test_csv_from_the_suffix(done_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "joined.csv"
    assert invoke(done_run, "-o", out).exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    check_rows([_from_csv(r) for r in rows])


@pytest.mark.e2e
def test_parquet(done_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "joined.parquet"
    res = invoke(done_run, "--format", "parquet", "-o", out)
    assert res.exit_code == 0, res.output
    rows = pq.read_table(out).to_pylist()
    for r in rows:
        for c in ("prompt", "messages"):
            r[c] = _json_or_text(r[c])
    assert rows[0]["embedding"] is None  # in Parquet, always a list of vectors (or none)
    check_rows(rows)


@pytest.mark.e2e
def test_a_job_file_or_explicit_files_name_the_run(done_run: Path, tmp_path: Path) -> None:
    job = done_run.with_name("job.toml")
    job.write_text(f'input = "in.jsonl"\nmodel = "{MODEL}"\n')
    by_job = invoke(job)
    assert by_job.exit_code == 0, by_job.output
    given = invoke(done_run, "--input", done_run.with_name("in.jsonl"))
    assert by_job.stdout == given.stdout and len(given.stdout.splitlines()) == 7


@pytest.mark.e2e
def test_rows_are_read_where_the_index_says_and_checked(
    done_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every result is read at its offset; an offset that points at another id (two ids
    with one hash) is noticed and the right line found anyway."""
    run = run_files(done_run)
    right = [j.record for j in joined(run)]
    monkeypatch.setattr(join.OffsetIndex, "get", lambda self, key: 0)  # all at line 1
    assert [j.record for j in joined(run)] == right


def test_offset_index() -> None:
    index = OffsetIndex()
    for n in range(20_000):
        index.put(f"id-{n}", 10 * n)
    index.put("id-7", 1)  # a later line of the same id replaces it
    assert len(index) == 20_000
    assert index.get("id-7") == 1 and index.get("id-19999") == 199_990
    assert index.get("id-20000") is None


def test_parquet_without_pyarrow_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    results = write_jsonl(tmp_path / "x.results.jsonl", [])
    res = invoke(results, "-o", tmp_path / "x.parquet")
    assert res.exit_code == 2
    assert "pip install 'batchrunner[parquet]'" in res.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_refusals_name_the_cause(tmp_path: Path) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "x"}])
    assert "is an input file" in invoke(inp).stderr
    assert "does not exist" in invoke(tmp_path / "nope.results.jsonl").stderr
    results = write_jsonl(tmp_path / "in.results.jsonl", [])
    assert "binary file: give -o FILE.parquet" in invoke(results, "--format", "parquet").stderr
    assert "names its input: give --input" in invoke(results).stderr
    res = invoke(results, "--input", inp, "-o", inp)
    assert res.exit_code == 2 and "one of the run's files" in res.stderr
    assert read_jsonl(inp) == [{"prompt": "x"}]


def _from_csv(r: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in r.items():
        if v == "":
            out[k] = None
        elif k in ("line", "prompt_tokens", "completion_tokens", "error_status_code"):
            out[k] = int(v)
        else:
            out[k] = _json_or_text(v)
    return out


def _json_or_text(value: str | None) -> Any:
    """A cell that holds JSON (a list, an object) decoded; plain text as it is."""
    if value is None or value[:1] not in "[{":
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


@pytest.mark.e2e
def test_one_shards_files_export_that_shards_lines_only(
    tmp_path: Path, mock_server: Callable[..., MockProc]
) -> None:
    inp = write_jsonl(
        tmp_path / "in.jsonl", [{"custom_id": f"p{i}", "prompt": f"{i}"} for i in range(30)]
    )
    url = mock_server().url
    res = run_cli("run", inp, "--server-url", url, "--model", MODEL, "-q", "--shard", "1/3")
    assert res.code == 0, res.stderr
    results = tmp_path / "in.shard-1-of-3.results.jsonl"
    mine = sorted(r["custom_id"] for r in read_jsonl(results))
    assert 0 < len(mine) < 30  # a shard's share of the lines, not all of them

    out = run_cli("export", results)

    assert out.code == 0, out.stderr
    rows = [orjson.loads(line) for line in out.stdout.splitlines()]
    assert sorted(r["custom_id"] for r in rows) == mine  # no other shard's line, as pending
    assert {r["status"] for r in rows} == {"ok"}
    assert f"exported {len(mine)} rows" in out.stderr
