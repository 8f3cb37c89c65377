"""A run's files, in process: identity whatever the spelling, whether a file is ours, the
lock, the torn-tail repair, the dead-letter rewrite and the manifest's body settings (the
same promises through the CLI: test_e2e_files.py)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import orjson
import pytest

from batchrunner.config import RunConfig, Shard, default_paths
from batchrunner.dlq.entries import live_entries
from batchrunner.errors import ConfigError, LedgerError
from batchrunner.input.lines import Item, parse_line
from batchrunner.input.scan import scan_input
from batchrunner.ledger.appendfile import repair_torn_tail
from batchrunner.ledger.claim import check_ours
from batchrunner.ledger.lock import RunLock
from batchrunner.ledger.manifest import check_manifest, read_manifest, write_manifest
from batchrunner.ledger.records import dead_line, input_dead_line, result_line
from batchrunner.ledger.rewrite import drop_superseded
from batchrunner.ledger.state import scan
from batchrunner.runfiles import dead_letter_beside, same_file
from batchrunner.vocabulary import Failure

CHAT = "/v1/chat/completions"
REFUSED = Failure(type="bad_request", status_code=400, message="no")


def item(cid: str, line: int = 1) -> Item:
    parsed = parse_line(orjson.dumps({"custom_id": cid, "prompt": "p"}), line, CHAT, "m")
    assert isinstance(parsed, Item)
    return parsed


def config(tmp_path: Path, **changes: object) -> RunConfig:
    inp = tmp_path / "in.jsonl"
    if not inp.exists():
        inp.write_bytes(b'{"prompt": "a"}\n')
    settings: dict[str, object] = {
        "input_path": inp,
        "output_path": tmp_path / "out.jsonl",
        "dead_letter_path": tmp_path / "out.dead.jsonl",
        "model": "m",
    }
    return RunConfig(**(settings | changes))  # type: ignore[arg-type]


# --- paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("results", "dead"),
    [
        ("in.results.jsonl", "in.dead.jsonl"),
        ("B/res.jsonl", "B/res.dead.jsonl"),
        ("out.txt", "out.txt.dead.jsonl"),
    ],
)
def test_dead_letters_go_beside_the_results(results: str, dead: str) -> None:
    assert dead_letter_beside(Path(results)) == Path(dead)


def test_default_paths_put_the_dead_letters_beside_the_results() -> None:
    assert default_paths(Path("d/in.jsonl")) == (
        Path("d/in.results.jsonl"),
        Path("d/in.dead.jsonl"),
    )
    assert default_paths(Path("d/in.jsonl"), Shard(2, 8))[1] == Path("d/in.shard-2-of-8.dead.jsonl")


def test_same_file_by_identity_or_resolved_path(tmp_path: Path) -> None:
    real = tmp_path / "real.jsonl"
    real.write_bytes(b"x\n")
    (tmp_path / "link.jsonl").symlink_to("real.jsonl")
    os.link(real, tmp_path / "hard.jsonl")
    (tmp_path / "sub").mkdir()
    assert same_file(real, tmp_path / "link.jsonl")
    assert same_file(real, tmp_path / "hard.jsonl")
    assert same_file(real, tmp_path / "sub" / ".." / "real.jsonl")
    missing = tmp_path / "new.jsonl"
    (tmp_path / "dangling.jsonl").symlink_to("new.jsonl")
    assert same_file(missing, tmp_path / "sub" / ".." / "new.jsonl")  # neither exists yet
    assert same_file(missing, tmp_path / "dangling.jsonl")
    assert not same_file(real, missing)


def test_a_config_refuses_one_file_under_two_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config(tmp_path, dead_letter_path=tmp_path / "sub" / ".." / "out.jsonl")
    assert info.value.setting == "dead_letter_path"
    assert str(info.value).startswith("dead_letter_path must be a file other than output_path (")
    with pytest.raises(ConfigError) as info:
        config(tmp_path, dead_letter_path=tmp_path / "out.jsonl.lock")
    assert info.value.expected == "a file other than output_path's lock"
    with pytest.raises(ConfigError):
        config(tmp_path).check_apart("summary_json", tmp_path / "out.jsonl.manifest.json")
    config(tmp_path).check_apart("summary_json", tmp_path / "summary.json")


# --- whose file -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"", "results"),
        (b"\n\n", "dead-letter"),
        (result_line(item("a"), {}, 1, 0.1), "results"),
        (b"\n" + result_line(item("a"), {}, 1, 0.1)[:-1], "results"),  # missing its newline
        (b'{"custom_id":"a","resp', "results"),  # only a torn write
        (b'{"custom', "results"),
        (dead_line(item("a"), REFUSED, 1), "dead-letter"),
        (b'{"custom_id":null,"line":3,"request":"x","error":{}}\n', "dead-letter"),
    ],
)
def test_our_files_are_ours(tmp_path: Path, content: bytes, kind: str) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(content)
    check_ours(path, kind)  # type: ignore[arg-type]
    check_ours(tmp_path / "missing.jsonl", kind)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"notes\n", "results"),
        (b"notes", "results"),
        (b'{"custom_id": "a", "prompt": "an input line"}\n', "results"),
        (b'{"custom_id": "a", "prompt": "an input line"}', "results"),
        (b"[1, 2]\n", "results"),
        (result_line(item("a"), {}, 1, 0.1), "dead-letter"),
        (b'{"custom_id": "a", "body": {}}\n', "dead-letter"),
    ],
)
def test_other_files_are_refused_and_left_alone(tmp_path: Path, content: bytes, kind: str) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(content)
    with pytest.raises(LedgerError) as info:
        check_ours(path, kind)  # type: ignore[arg-type]
    assert str(path) in str(info.value)
    assert path.read_bytes() == content


# --- the lock ---------------------------------------------------------------------------------


def test_a_second_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    out, dead = tmp_path / "out.jsonl", tmp_path / "out.dead.jsonl"
    first = RunLock(out, dead)
    assert (tmp_path / "out.jsonl.lock").read_text() == f"{os.getpid()}\n"
    with pytest.raises(LedgerError) as info:
        RunLock(tmp_path / "other.jsonl", dead)  # shares only the dead-letter file
    assert f"(pid {os.getpid()})" in str(info.value) and str(dead) in str(info.value)
    assert not (tmp_path / "other.jsonl.lock").exists()  # nothing kept of a refused lock
    first.release()
    assert not (tmp_path / "out.jsonl.lock").exists()
    RunLock(out, dead).release()


def test_a_lock_file_left_behind_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    (tmp_path / "out.jsonl.lock").write_text("999999\n")  # its holder died: no flock on it
    lock = RunLock(out)
    assert (tmp_path / "out.jsonl.lock").read_text() == f"{os.getpid()}\n"
    lock.release()


# --- the torn tail ----------------------------------------------------------------------------


def test_a_whole_last_record_missing_its_newline_is_completed(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}')
    assert repair_torn_tail(path) == 0
    assert path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    assert not (tmp_path / "r.jsonl.torn").exists()


def test_the_bytes_cut_are_kept_beside_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": ')
    assert repair_torn_tail(path) == 6
    path.write_bytes(b'{"a": 1}\n[1, 2]')  # whole JSON, but not a record: cut too
    assert repair_torn_tail(path) == 6
    assert (tmp_path / "r.jsonl.torn").read_bytes() == b'{"b": \n[1, 2]\n'


# --- the dead-letter rewrite ------------------------------------------------------------------


@pytest.mark.parametrize("run_state", [False, True], ids=["rescan", "run-state"])
def test_the_rewrite_keeps_only_what_is_still_dead(tmp_path: Path, run_state: bool) -> None:
    """The same rewrite from a new scan, or from the state a run that wrote nothing holds
    (its scan keeps the done ids and fingerprints: another way to the same decisions)."""
    results, dead = tmp_path / "out.jsonl", tmp_path / "out.dead.jsonl"
    exhausted = Failure(type="retries_exhausted", status_code=503, message="gave up")
    bad = parse_line(b"{broken", 4, CHAT, "m")
    fixed = parse_line(b"{broken", 5, CHAT, "m")
    assert bad is not None and fixed is not None and not isinstance(bad, Item)
    assert not isinstance(fixed, Item)
    lines = [
        dead_line(item("a", 1), REFUSED, 1),  # superseded by a's result
        dead_line(item("b", 2), exhausted, 2),  # superseded by b's later entry
        b"a line that is not ours\n",
        dead_line(item("b", 2), REFUSED, 1),
        dead_line(item("c", 3), REFUSED, 1),
        input_dead_line(bad),
        input_dead_line(fixed),  # line 5 fixed and sent since: its result names it
    ]
    dead.write_bytes(b"".join(lines))
    dead.chmod(0o600)
    results.write_bytes(
        result_line(item("a", 1), {}, 1, 0.1) + result_line(item("f", 5), {}, 1, 0.1)
    )
    before = _live(results, dead)
    assert before == [("b", 2, "bad_request"), ("c", 3, "bad_request"), (None, 4, "invalid_json")]
    state = scan(results, dead) if run_state else None
    assert drop_superseded(results, dead, state) == 3
    assert dead.read_bytes() == b"".join([lines[2], lines[3], lines[4], lines[5]])
    assert _live(results, dead) == before  # the same decisions, from the file alone
    assert dead.stat().st_mode & 0o777 == 0o600
    inode = dead.stat().st_ino
    assert drop_superseded(results, dead) == 0  # nothing more: the file is left as it is
    assert dead.stat().st_ino == inode
    assert not (tmp_path / "out.dead.jsonl.rewrite").exists()


def _live(results: Path, dead: Path) -> list[tuple[str | None, int | None, str]]:
    """The (id, line, type) of every entry in force, as ``dlq`` reads them."""
    return [(e.custom_id, e.line, e.type) for e in live_entries(dead, results)]


def test_no_dead_letter_file_nothing_to_rewrite(tmp_path: Path) -> None:
    assert drop_superseded(tmp_path / "out.jsonl", tmp_path / "none.jsonl") == 0
    assert not (tmp_path / "none.jsonl").exists()


# --- the manifest and the input ---------------------------------------------------------------


def test_the_model_recorded_is_kept_and_another_refused(tmp_path: Path) -> None:
    none = config(tmp_path, model=None)
    write_manifest(none, scan_input(none.input_path), None)
    first = config(tmp_path, model="m")  # a model where none was given: added
    _, old = check_manifest(first, scan_input(first.input_path))
    write_manifest(first, scan_input(first.input_path), old)
    _, old = check_manifest(none, scan_input(none.input_path))  # no model now: kept
    write_manifest(none, scan_input(none.input_path), old)
    manifest = read_manifest(first.manifest_path)
    assert manifest is not None and manifest["model"] == "m"
    other = dataclasses.replace(first, model="other")
    with pytest.raises(LedgerError) as info:
        check_manifest(other, scan_input(other.input_path))
    assert "model m" in str(info.value) and "other" in str(info.value)


def test_lines_appended_after_a_missing_final_newline_are_growth(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"prompt": "a"}\n{"prompt": "b"}')
    old = path.stat().st_size
    old_fp = scan_input(path).fingerprint
    for appended in (b'\n{"prompt": "c"}\n', b'\r\n{"prompt": "c"}\r\n'):
        path.write_bytes(b'{"prompt": "a"}\n{"prompt": "b"}' + appended)
        assert scan_input(path, old).prefix_fingerprint == old_fp
    path.write_bytes(b'{"prompt": "a"}\n{"prompt": "b"}{"prompt": "c"}\n')  # glued on: an edit
    assert scan_input(path, old).prefix_fingerprint is None
