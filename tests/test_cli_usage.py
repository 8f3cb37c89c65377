"""``batchrunner run`` refusing what it cannot do, in words that name the real cause, and
``--dry-run``: in-process, nothing is sent (the server URL points nowhere)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from batchrunner.cli.main import cli

NOWHERE = "http://127.0.0.1:9"
EMBED = "mistral-embed"
MODEL = "mistral-small-latest"  # discard port: a run that sent anything would fail on it


def invoke(*args: str | Path, key: str | None = "k", stdin: str | None = None) -> Result:
    env = {"COLUMNS": "200", "MISTRAL_API_KEY": key} if key else {"COLUMNS": "200"}
    return CliRunner().invoke(
        cli, [str(a) for a in args], env=env | {"MISTRAL_SERVER_URL": NOWHERE}, input=stdin
    )


def one_line_error(res: Result, code: int = 2) -> str:
    assert res.exit_code == code, res.output
    assert res.stderr.count("\n") == 1, res.stderr
    assert res.stdout == ""
    return res.stderr


def write(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


# -- errors that name the real cause ------------------------------------------------------


def test_missing_input_is_reported_before_a_missing_key(tmp_path: Path) -> None:
    err = one_line_error(invoke("run", tmp_path / "nope.jsonl", key=None))
    assert f"input file {tmp_path / 'nope.jsonl'} does not exist" in err
    assert "MISTRAL_API_KEY" not in err


def test_a_folder_as_input_says_it_is_a_folder(tmp_path: Path) -> None:
    write(tmp_path / "prompts.jsonl", [{"prompt": "x"}])
    err = one_line_error(invoke("run", tmp_path))
    assert f"input {tmp_path} is a folder, not a JSONL file; it holds prompts.jsonl" in err


def test_stdin_as_input_is_refused_with_the_reason(tmp_path: Path) -> None:
    err = one_line_error(invoke("run", "-", stdin='{"prompt": "x"}\n'))
    assert "INPUT cannot be - (stdin)" in err and "save it to a file first" in err


def test_a_pipe_as_input_is_refused_with_the_reason(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    err = one_line_error(invoke("run", fifo))
    assert "is a pipe or a device, not a file" in err and "save it to a file first" in err


@pytest.mark.parametrize(
    ("flag", "shown"), [("-o", "-o/--output"), ("--dead-letter", "--dead-letter")]
)
def test_stdout_for_the_run_files_is_refused(tmp_path: Path, flag: str, shown: str) -> None:
    inp = write(tmp_path / "in.jsonl", [{"prompt": "x"}])
    err = one_line_error(invoke("run", inp, flag, "-"))
    assert f"{shown} cannot be - (stdout)" in err and "--json" in err
    assert not (tmp_path / "-").exists()


def test_output_in_a_missing_folder_is_refused_not_created(tmp_path: Path) -> None:
    inp = write(tmp_path / "in.jsonl", [{"prompt": "x"}])
    target = tmp_path / "no" / "such" / "out.jsonl"
    err = one_line_error(invoke("run", inp, "-o", target))
    assert f"--output must be in an existing folder: {target.parent} does not exist" in err
    assert not (tmp_path / "no").exists()


def test_job_file_values_are_named_by_their_key(tmp_path: Path) -> None:
    write(tmp_path / "in.jsonl", [{"prompt": "x"}])
    job = tmp_path / "job.toml"
    job.write_text('input = "in.jsonl"\nrps = -1\n')
    err = one_line_error(invoke("run", job))
    assert f"job file {job}: 'rps' must be a positive number, not -1" in err
    assert err.rstrip().endswith("(on the command line: --rps)")  # only as the way round
    job.write_text('input = "in.jsonl"\ndead_letter = "gone/dead.jsonl"\n')
    err = one_line_error(invoke("run", job))
    assert f"job file {job}: 'dead_letter' must be in an existing folder" in err
    # A flag given over the job file is named as the flag.
    err = one_line_error(invoke("run", job, "--dead-letter", tmp_path / "gone" / "d.jsonl"))
    assert "--dead-letter must be in an existing folder" in err


# -- --dry-run ------------------------------------------------------------------------------


def test_dry_run_counts_estimates_and_sends_nothing(tmp_path: Path) -> None:
    rows = [
        {"custom_id": "a", "prompt": "Say hello to the world", "max_tokens": 100},
        {"custom_id": "b", "prompt": "Another one", "max_tokens": 50},
        {
            "custom_id": "e",
            "url": "/v1/embeddings",
            "body": {"input": "x", "model": "mistral-embed"},
        },
        {"custom_id": "a", "prompt": "a duplicate"},
        "not an object",
    ]
    inp = write(tmp_path / "in.jsonl", rows)

    res = invoke(
        "run", inp, "--model", "mistral-small-latest", "--rps", "0.5", "--dry-run", "--json"
    )

    assert res.exit_code == 1, res.output  # two lines would be dead-lettered
    plan = orjson.loads(res.stdout)
    assert (plan["lines"], plan["requests"]) == (5, 3)
    assert plan["bad_lines"] == {"duplicate_custom_id": 1, "not_an_object": 1}
    assert plan["endpoints"] == {"/v1/chat/completions": 2, "/v1/embeddings": 1}
    assert plan["completion_tokens_max"] == 150  # max_tokens, the worst case
    assert plan["requests_without_max_tokens"] == 0
    assert 0 < plan["prompt_tokens"] < 40
    assert plan["cost_usd_max"] > 0 and plan["unpriced_models"] == []
    assert plan["seconds_at_rps"] == 6.0 and plan["seconds"] == 6.0
    assert plan["settings"]["server_url"] == NOWHERE
    assert not (tmp_path / "in.results.jsonl").exists()  # nothing written either


def test_dry_run_needs_no_key_and_shows_a_table(tmp_path: Path) -> None:
    inp = write(tmp_path / "in.jsonl", [{"prompt": "x"}])
    res = invoke(
        "run", inp, "--model", "mistral-small-latest", "--tpm", "600", "--dry-run", key=None
    )
    assert res.exit_code == 0, res.output
    assert "dry run: nothing sent" in res.stdout
    assert "1 requests, 0 would be dead-lettered" in res.stdout
    assert "no max_tokens" in res.stdout and "s at --tpm" in res.stdout


# -- help -----------------------------------------------------------------------------------


def test_help_shows_examples_exit_codes_and_whole_summaries() -> None:
    top = invoke("--help").stdout
    for command in ("run", "status", "dlq", "mock-server", "demo", "export"):
        assert f"  {command} " in top, command
    words = " ".join(top.split())  # the help wraps wherever it likes
    assert "Where a run stands (done, dead-lettered, pending), without sending anything." in words
    commands = top.split("Commands:", 1)[1]
    assert "..." not in commands  # nothing cut short
    run_help = invoke("run", "--help").stdout
    assert "Examples:" in run_help and "batchrunner run prompts.jsonl --dry-run" in run_help
    assert "Exit codes:" in run_help
    for code in ("0", "1", "2", "3", "4", "5", "130"):
        assert re.search(rf"^ +{code} +\w", run_help, re.MULTILINE), code


# -- job files -----------------------------------------------------------------------------

JOBS = Path(__file__).resolve().parent.parent / "jobs"


def test_an_unknown_job_key_suggests_the_closest(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text('input = "in.jsonl"\nrsp = 5\n')
    err = one_line_error(invoke("run", job))
    assert f"job file {job}: unknown key(s) rsp; did you mean 'rps'?" in err
    job.write_text('input = "in.jsonl"\nrsp = 5\nconcurency = 2\nzzz = 1\n')
    err = one_line_error(invoke("run", job))
    assert "did you mean 'concurrency' for 'concurency', 'rps' for 'rsp'?" in err


def test_an_api_key_in_a_job_file_says_where_the_key_comes_from(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text('input = "in.jsonl"\napi_key = "sk-secret-in-a-file"\n')
    err = one_line_error(invoke("run", job))
    assert "the key is read only from MISTRAL_API_KEY" in err
    assert "sk-secret-in-a-file" not in err


@pytest.mark.parametrize("job", sorted(JOBS.glob("*.toml")), ids=lambda p: p.name)
def test_each_job_file_says_how_to_run_it_and_loads(job: Path) -> None:
    text = job.read_text()
    assert "job-file option" not in text
    assert f"batchrunner run jobs/{job.name}" in text
    res = invoke("run", job, "--dry-run", "--json", key=None)
    assert res.exit_code in (0, 1), res.output
    assert orjson.loads(res.stdout)["requests"] > 0


# -- the wrong one of a run's files ---------------------------------------------------------

RESULT = {"custom_id": "a", "response": {"status_code": 200, "body": {}}, "error": None}
DEAD = {"custom_id": "b", "line": 2, "request": {"prompt": "x"}, "error": {"type": "x"}}


def test_status_given_an_input_or_dead_letter_file_says_what_it_is(tmp_path: Path) -> None:
    inp = write(tmp_path / "in.jsonl", [{"custom_id": "a", "prompt": "x"}])
    err = one_line_error(invoke("status", inp))
    assert f"{inp} is an input file (its lines are requests), not a results file" in err
    assert "run it first" in err
    write(tmp_path / "in.results.jsonl", [RESULT])
    assert f"its results are in {tmp_path / 'in.results.jsonl'}" in invoke("status", inp).stderr
    dead = write(tmp_path / "in.dead.jsonl", [DEAD])
    err = one_line_error(invoke("status", dead))
    assert f"{dead} is a dead-letter file, not a results file" in err
    assert f"batchrunner dlq summary {dead}" in err


def test_dlq_given_a_results_or_input_file_says_what_it_is(tmp_path: Path) -> None:
    results = write(tmp_path / "in.results.jsonl", [RESULT])
    dead = write(tmp_path / "in.dead.jsonl", [DEAD])
    err = one_line_error(invoke("dlq", "summary", results))
    assert f"{results} is a results file, not a dead-letter file" in err
    assert f"the run's dead letters are in {dead}" in err
    inp = write(tmp_path / "in.jsonl", [{"custom_id": "a", "prompt": "x"}])
    for command in ("summary", "show"):
        err = one_line_error(invoke("dlq", command, inp))
        assert f"{inp} is an input file (its lines are requests), not a dead-letter file" in err
