"""A run's files, through the real CLI against the real mock server: a file is a file
whatever its spelling, a file that is not ours is never written, one run writes one set of
files at a time, the files of a run belong together, and the dead-letter file read alone
holds only what is still dead."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from conftest import MockProc, cli_env, read_jsonl, run_cli, write_jsonl

pytestmark = pytest.mark.e2e

MODEL = "mistral-small-latest"
FAST = ("--backoff-base", "0.01", "--backoff-max", "0.05", "--timeout", "5", "--quiet")
MockFactory = Callable[..., MockProc]


def prompts(n: int, tag: str = "p") -> list[dict[str, str]]:
    return [{"custom_id": f"{tag}{i}", "prompt": f"prompt {tag}{i}"} for i in range(n)]


def run_args(inp: Path, mock: MockProc, *extra: str | Path) -> list[str | Path]:
    return ["run", inp, "--server-url", mock.url, "--model", MODEL, *FAST, *extra]


def chat_requests(mock: MockProc) -> int:
    """Chat completions the server received (the preflight's GET /v1/models not counted)."""
    return int(mock.stats()["by_path"].get("/v1/chat/completions", 0))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (symlinks as their target's name) and its content."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            found[str(path)] = os.readlink(path).encode()
        elif path.is_file():
            found[str(path)] = path.read_bytes()
    return found


def one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


# -- 1. a path is a file, not a spelling ------------------------------------------------------


def _other_spelling(path: Path) -> Path:
    """``path`` by way of a sibling folder and ``..``: another text, the same file."""
    (path.parent / "sub").mkdir(exist_ok=True)
    return path.parent / "sub" / ".." / path.name


def _symlink_to(target: Path) -> Path:
    link = target.with_name("link.jsonl")
    link.symlink_to(target.name)
    return link


def _hard_link_to(target: Path) -> Path:
    link = target.with_name("hard.jsonl")
    os.link(target, link)
    return link


def _results(inp: Path) -> Path:
    return inp.with_name("out.jsonl")


SAME_FILE_CASES: dict[str, Callable[[Path], list[str | Path]]] = {
    "dead letters into the input": lambda inp: ["--dead-letter", _other_spelling(inp)],
    "results onto the input": lambda inp: ["-o", _other_spelling(inp)],
    "results onto a symlink to the input": lambda inp: ["-o", _symlink_to(inp)],
    "results onto a hard link to the input": lambda inp: ["-o", _hard_link_to(inp)],
    "summary onto the input": lambda inp: ["--summary-json", _other_spelling(inp)],
    "summary onto the results": lambda inp: [
        *("-o", _results(inp)),
        *("--summary-json", _other_spelling(_results(inp))),
    ],
    "dead letters onto the results' manifest": lambda inp: [
        *("-o", _results(inp)),
        *("--dead-letter", inp.with_name("out.jsonl.manifest.json")),
    ],
    "dead letters onto the results": lambda inp: [
        *("-o", _results(inp)),
        *("--dead-letter", _other_spelling(_results(inp))),
    ],
}


@pytest.mark.parametrize("case", list(SAME_FILE_CASES))
def test_one_file_under_two_names_is_refused_before_anything_is_touched(
    tmp_path: Path, mock_server: MockFactory, case: str
) -> None:
    mock = mock_server()
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(3))
    with inp.open("ab") as f:
        f.write(b"{not json\n")  # a bad line: what would be dead-lettered
    extra = SAME_FILE_CASES[case](inp)
    before = snapshot(tmp_path)
    # Bounded: before the fix, dead letters written into the input fed the run for ever.
    res = run_cli(*run_args(inp, mock, *extra), timeout=30)
    assert res.code == 2, res.stderr
    assert "must be a file other than" in one_line_error(res.stderr)
    assert snapshot(tmp_path) == before  # nothing written, created, cut or moved
    assert chat_requests(mock) == 0


NOT_OURS_CASES: dict[str, tuple[str, bytes]] = {
    "a note as results": ("-o", b"my notes\nthe last line has no newline"),
    "another run's input as results": ("-o", b"".join(orjson.dumps(r) + b"\n" for r in prompts(3))),
    "a note as dead letters": ("--dead-letter", b"not a dead letter\n"),
    "results as dead letters": (
        "--dead-letter",
        b'{"custom_id":"p0","response":{"status_code":200,"body":{}},"error":null}\n',
    ),
}


@pytest.mark.parametrize("case", list(NOT_OURS_CASES))
def test_an_existing_file_that_is_not_ours_is_never_written(
    tmp_path: Path, mock_server: MockFactory, case: str
) -> None:
    mock = mock_server()
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(3))
    flag, content = NOT_OURS_CASES[case]
    theirs = tmp_path / "theirs.jsonl"
    theirs.write_bytes(content)
    before = snapshot(tmp_path)
    res = run_cli(*run_args(inp, mock, flag, theirs))
    assert res.code == 2, res.stderr
    message = one_line_error(res.stderr)
    assert str(theirs) in message and f"choose another {flag}" in message
    assert snapshot(tmp_path) == before  # its last line not cut, nothing appended
    assert chat_requests(mock) == 0  # its ids were not taken as done either: none was sent


def test_a_last_line_missing_only_its_newline_is_completed_not_cut(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    mock = mock_server()
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(5))
    out = tmp_path / "out.jsonl"
    assert run_cli(*run_args(inp, mock, "-o", out)).code == 0
    whole = out.read_bytes()
    out.write_bytes(whole[:-1])  # killed between a record and its newline
    again = run_cli(*run_args(inp, mock, "-o", out))
    assert again.code == 0, again.stderr
    assert out.read_bytes() == whole  # the record kept, its newline added
    assert chat_requests(mock) == 5  # and its item not sent again
    assert not out.with_name("out.jsonl.torn").exists()


def test_the_bytes_a_repair_cuts_are_kept_beside_the_file(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    mock = mock_server()
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(5))
    out = tmp_path / "out.jsonl"
    assert run_cli(*run_args(inp, mock, "-o", out)).code == 0
    lines = out.read_bytes().splitlines(keepends=True)
    torn = lines[-1][:40]
    out.write_bytes(b"".join(lines[:-1]) + torn)  # a kill in mid-write
    again = run_cli(*run_args(inp, mock, "-o", out))
    assert again.code == 0, again.stderr
    kept = out.with_name("out.jsonl.torn")
    assert kept.read_bytes() == torn + b"\n"
    assert str(kept) in again.stderr
    assert sorted(r["custom_id"] for r in read_jsonl(out)) == [f"p{i}" for i in range(5)]


# -- 2. one run, one writer -------------------------------------------------------------------


def start_run(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchrunner", *map(str, args)],
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_runs_on_the_same_files_one_is_refused_naming_the_other(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    mock = mock_server("--latency-ms", "500")  # 24 items, 4 at a time: about 3 s
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(24))
    out = tmp_path / "out.jsonl"
    args = run_args(inp, mock, "-o", out, "--concurrency", "4")
    first, second = start_run(*args), start_run(*args)
    ended = {p.pid: (*p.communicate(timeout=60), p.returncode) for p in (first, second)}
    codes = sorted(code for _, _, code in ended.values())
    assert codes == [0, 2], ended
    [(loser, (_, err, _))] = [(pid, e) for pid, e in ended.items() if e[2] == 2]
    [winner] = [pid for pid in ended if pid != loser]
    assert f"pid {winner}" in one_line_error(err)
    results = [r["custom_id"] for r in read_jsonl(out)]
    assert sorted(results) == sorted(f"p{i}" for i in range(24))  # every id once
    assert chat_requests(mock) == 24  # every request sent once
    assert not out.with_name("out.jsonl.lock").exists()  # let go at the end


def test_a_killed_run_leaves_no_lock_and_readers_need_none(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    mock = mock_server("--latency-ms", "200")
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(40))
    out, dead = tmp_path / "out.jsonl", tmp_path / "out.dead.jsonl"
    args = run_args(inp, mock, "-o", out, "--concurrency", "2")
    proc = start_run(*args)
    deadline = time.monotonic() + 30
    while not (out.exists() and out.read_bytes().count(b"\n") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    lock = out.with_name("out.jsonl.lock")
    assert lock.read_text().strip() == str(proc.pid)
    # Readers only read: they work while the run holds its lock.
    st = run_cli("status", out, "--json")
    assert st.code == 0, st.stderr
    assert orjson.loads(st.stdout)["done"] >= 2
    assert run_cli("dlq", "summary", dead).code == 0
    proc.kill()
    proc.communicate()
    assert lock.exists()  # the file stays, but the kernel let go of the lock with the process
    final = run_cli(*args)
    assert final.code == 0, final.stderr
    assert sorted(r["custom_id"] for r in read_jsonl(out)) == sorted(f"p{i}" for i in range(40))
    assert not lock.exists()


# -- 8. a run's files belong together ---------------------------------------------------------


def test_dead_letters_default_beside_the_results(tmp_path: Path, mock_server: MockFactory) -> None:
    mock = mock_server()  # a [[mock:400]] request succeeds when sent again
    rows = [{"custom_id": "ok", "prompt": "x"}, {"custom_id": "bad", "prompt": "[[mock:400]] y"}]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    a, b = tmp_path / "A" / "res.jsonl", tmp_path / "B" / "res.jsonl"
    a.parent.mkdir(), b.parent.mkdir()
    assert run_cli(*run_args(inp, mock, "-o", a)).code == 1
    assert [d["custom_id"] for d in read_jsonl(tmp_path / "A" / "res.dead.jsonl")] == ["bad"]
    # A second experiment is its own: it sends everything, its dead letters beside it.
    second = run_cli(*run_args(inp, mock, "-o", b))
    assert second.code == 0, second.stderr
    assert sorted(r["custom_id"] for r in read_jsonl(b)) == ["bad", "ok"]
    assert chat_requests(mock) == 4
    assert not (tmp_path / "in.dead.jsonl").exists()


def test_a_resumed_run_keeps_the_dead_letter_file_its_manifest_names(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    mock = mock_server()
    rows = [{"custom_id": "ok", "prompt": "x"}, {"custom_id": "bad", "prompt": "[[mock:400]] y"}]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    out, old_default = tmp_path / "B" / "res.jsonl", tmp_path / "in.dead.jsonl"
    out.parent.mkdir()
    # Files written where the dead letters used to go by default: beside the input.
    assert run_cli(*run_args(inp, mock, "-o", out, "--dead-letter", old_default)).code == 1
    again = run_cli(*run_args(inp, mock, "-o", out))
    assert again.code == 1, again.stderr
    assert chat_requests(mock) == 2  # "bad" is still dead: not sent again
    assert [d["custom_id"] for d in read_jsonl(old_default)] == ["bad"]
    assert not (tmp_path / "B" / "res.dead.jsonl").exists()
    # Another dead-letter file would orphan those entries: refused like another input.
    moved = run_cli(*run_args(inp, mock, "-o", out, "--dead-letter", tmp_path / "new.jsonl"))
    assert moved.code == 2 and "--restart" in one_line_error(moved.stderr)
    assert chat_requests(mock) == 2


def test_another_model_onto_existing_files_is_refused(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    mock = mock_server()
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(3))
    out = tmp_path / "out.jsonl"
    assert run_cli(*run_args(inp, mock, "-o", out)).code == 0
    manifest = out.with_name("out.jsonl.manifest.json")
    before = manifest.read_bytes()
    with inp.open("ab") as f:
        f.write(orjson.dumps({"custom_id": "new", "prompt": "z"}) + b"\n")
    res = run_cli(
        "run", inp, "--server-url", mock.url, "--model", "mistral-large-latest", *FAST, "-o", out
    )
    assert res.code == 2, res.stderr
    message = one_line_error(res.stderr)
    assert MODEL in message and "mistral-large-latest" in message and "--restart" in message
    assert manifest.read_bytes() == before
    assert chat_requests(mock) == 3
    # The same model resumes, and --restart starts over with the other one.
    assert run_cli(*run_args(inp, mock, "-o", out)).code == 0
    assert orjson.loads(manifest.read_bytes())["model"] == MODEL
    restarted = run_cli(
        "run",
        inp,
        "--server-url",
        mock.url,
        "--model",
        "mistral-large-latest",
        *FAST,
        "-o",
        out,
        "--restart",
    )
    assert restarted.code == 0, restarted.stderr
    assert orjson.loads(manifest.read_bytes())["model"] == "mistral-large-latest"


def lines_in(inp: Path, out: Path, dead: Path) -> dict[int, list[str]]:
    """Input line -> the files whose entries name it (a result, a dead letter)."""
    where: dict[int, list[str]] = {}
    for r in read_jsonl(out):
        where.setdefault(r["batchrunner"]["line"], []).append("results")
    for d in read_jsonl(dead):
        where.setdefault(d["line"], []).append("dead")
    return where


def test_the_dead_letter_file_alone_holds_only_what_is_still_dead(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    mock = mock_server()  # scripts count attempts across runs: [[mock:400]] then succeeds
    rows = [
        {"custom_id": "ok", "prompt": "a"},
        {"custom_id": "d400", "prompt": "[[mock:400]] b"},
        {"custom_id": "d422", "prompt": "[[mock:422,422,422]] c"},
        {"custom_id": "flaky", "prompt": "[[mock:503,503]] d"},
    ]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    with inp.open("ab") as f:
        f.write(b"{broken\n")
    out, dead = tmp_path / "out.jsonl", tmp_path / "out.dead.jsonl"
    assert run_cli(*run_args(inp, mock, "-o", out, "--max-attempts", "2")).code == 1
    assert sorted(str(d["custom_id"]) for d in read_jsonl(dead)) == [
        "None",
        "d400",
        "d422",
        "flaky",
    ]
    # Send the 400s again: d400 now succeeds; flaky (retries ran out) goes with any re-run.
    again = run_cli(*run_args(inp, mock, "-o", out, "--retry-dead", "--status", "400"))
    assert again.code == 1, again.stderr
    still_dead = read_jsonl(dead)  # read alone, as jq or pandas would
    assert sorted((d["custom_id"], d["error"]["type"]) for d in still_dead if d["custom_id"]) == [
        ("d422", "validation_error")
    ]
    assert [d["error"]["type"] for d in still_dead if d["custom_id"] is None] == ["invalid_json"]
    assert lines_in(inp, out, dead) == {
        1: ["results"],
        2: ["results"],
        3: ["dead"],
        4: ["results"],
        5: ["dead"],
    }
    st = orjson.loads(run_cli("status", out, "--json").stdout)
    assert (st["done"], st["dead_lettered"], st["pending"]) == (3, 2, 0)


# -- 11. smaller ones -------------------------------------------------------------------------


def test_a_plain_rerun_sends_again_what_failed_for_no_fault_of_its_own(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    mock = mock_server()  # an outage: 503s, dropped connections, garbage; then all is well
    rows = [
        {"custom_id": "a", "prompt": "[[mock:503,503]] a"},
        {"custom_id": "b", "prompt": "[[mock:reset,reset]] b"},
        {"custom_id": "c", "prompt": "[[mock:garbage,garbage]] c"},
        {"custom_id": "refused", "prompt": "[[mock:400,400]] d"},
        {"custom_id": "ok", "prompt": "e"},
    ]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    out, dead = tmp_path / "out.jsonl", tmp_path / "out.dead.jsonl"
    args = run_args(inp, mock, "-o", out, "--max-attempts", "2")
    assert run_cli(*args).code == 1
    types = {d["custom_id"]: d["error"]["type"] for d in read_jsonl(dead)}
    assert types == {
        "a": "retries_exhausted",
        "b": "retries_exhausted",
        "c": "retries_exhausted",
        "refused": "bad_request",
    }
    sent = chat_requests(mock)
    again = run_cli(*args)  # the same command, nothing added
    assert again.code == 1, again.stderr
    assert chat_requests(mock) == sent + 3  # a, b and c; not the request the API refused
    assert sorted(r["custom_id"] for r in read_jsonl(out)) == ["a", "b", "c", "ok"]
    assert [d["custom_id"] for d in read_jsonl(dead)] == ["refused"]


def test_lines_appended_to_an_input_without_a_final_newline_resume(
    tmp_path: Path, mock_server: MockFactory
) -> None:
    mock = mock_server()
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b"\n".join(orjson.dumps(r) for r in prompts(3)))  # no final newline
    out = tmp_path / "out.jsonl"
    assert run_cli(*run_args(inp, mock, "-o", out)).code == 0
    with inp.open("ab") as f:  # the last line as it was, then more lines
        f.write(b"\n" + b"".join(orjson.dumps(r) + b"\n" for r in prompts(2, "q")))
    st = run_cli("status", out)
    assert st.code == 0 and "resume with" in st.stdout, st
    again = run_cli(*run_args(inp, mock, "-o", out))
    assert again.code == 0, again.stderr
    assert chat_requests(mock) == 5  # only the two new lines were sent
    ids = sorted(r["custom_id"] for r in read_jsonl(out))
    assert ids == ["p0", "p1", "p2", "q0", "q1"]
