"""``batchrunner run`` in scripts and pipes, through the real CLI and the real mock server:
``--json`` is the only thing on stdout, ``-`` is stdout for the summary, ``-q`` keeps a
one-line verdict, ``-qq``/``--silent`` print nothing, and the summary ends with what to do
after dead letters."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from conftest import CliResult, MockProc, run_cli, write_jsonl

pytestmark = pytest.mark.e2e

MockFactory = Callable[..., MockProc]
FAST = ("--backoff-base", "0.01", "--backoff-max", "0.05", "--timeout", "5")
ROWS = [
    {"custom_id": "ok", "prompt": "hello"},
    {"custom_id": "bad", "prompt": "[[mock:400]] refused"},
]


def run(mock: MockProc, tmp: Path, *extra: str | Path) -> tuple[CliResult, Path]:
    inp = write_jsonl(tmp / "in.jsonl", ROWS)
    res = run_cli(
        "run", inp, "--server-url", mock.url, "--model", "mistral-small-latest", *FAST, *extra
    )
    assert "Traceback" not in res.stderr, res.stderr
    return res, tmp / "in.dead.jsonl"


def test_json_is_the_only_thing_on_stdout(mock_server: MockFactory, tmp_path: Path) -> None:
    res, dead = run(mock_server(), tmp_path, "--json")
    assert res.code == 1
    summary = orjson.loads(res.stdout)  # the whole of stdout is one JSON object
    assert isinstance(summary, dict)
    assert (summary["results_total"], summary["dead_lettered_total"]) == (1, 1)
    assert summary["dead_letter"] == str(dead) and summary["exit_code"] == 1


def test_summary_json_dash_is_stdout(mock_server: MockFactory, tmp_path: Path) -> None:
    res, _ = run(mock_server(), tmp_path, "--summary-json", "-", "-q")
    assert orjson.loads(res.stdout)["results_total"] == 1
    assert not (tmp_path / "-").exists()


def test_quiet_keeps_a_one_line_verdict(mock_server: MockFactory, tmp_path: Path) -> None:
    res, dead = run(mock_server(), tmp_path, "-q")
    assert res.code == 1
    (line,) = res.stdout.splitlines()
    assert "1 results" in line and "1 dead-lettered" in line
    assert line.endswith(f"next: batchrunner dlq summary {shlex.quote(str(dead))}")
    assert "progress" not in res.stderr


@pytest.mark.parametrize("flags", [("-qq",), ("--silent",), ("-q", "-q")])
def test_very_quiet_prints_nothing(
    mock_server: MockFactory, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    res, _ = run(mock_server(), tmp_path, *flags)
    assert res.code == 1
    assert (res.stdout, res.stderr) == ("", "")


def test_the_summary_ends_with_what_to_do_about_dead_letters(
    mock_server: MockFactory, tmp_path: Path
) -> None:
    res, dead = run(mock_server(), tmp_path)
    assert res.code == 1
    last = res.stdout.strip().splitlines()[-1]
    assert last == f"next: batchrunner dlq summary {shlex.quote(str(dead))}"
