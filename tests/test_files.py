"""The files: append-only output, the manifest, the input scan and job files (the ledger
read back from them: test_ledger.py)."""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import time
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from batchrunner.cli.jobfile import load_job
from batchrunner.config import RunConfig
from batchrunner.errors import ConfigError, LedgerError, OutputWriteError
from batchrunner.input.lines import BadLine, read_input
from batchrunner.input.scan import scan_input
from batchrunner.ledger import manifest
from batchrunner.ledger.appendfile import AppendFile, repair_torn_tail
from batchrunner.ledger.manifest import (
    check_manifest,
    move_aside,
    previous_input_size,
    write_manifest,
)

CHAT = "/v1/chat/completions"

# --- repair_torn_tail -------------------------------------------------------------------------


def test_repair_cuts_to_the_last_newline(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": ')
    assert repair_torn_tail(path) == len(b'{"c": ')
    assert path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'


def test_repair_single_torn_line_leaves_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"custom_id": "a", "resp')
    assert repair_torn_tail(path) == 24
    assert path.exists()
    assert path.read_bytes() == b""


def test_repair_torn_tail_longer_than_one_read_chunk(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"kept\n" + b"x" * 200_000)
    assert repair_torn_tail(path) == 200_000
    assert path.read_bytes() == b"kept\n"
    path.write_bytes(b"y" * 150_000)
    assert repair_torn_tail(path) == 150_000
    assert path.read_bytes() == b""


@pytest.mark.parametrize("content", [b"", b"\n", b'{"a": 1}\n', b'{"a": 1}\n{"b": 2}\n'])
def test_repair_leaves_an_intact_file_alone(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(content)
    before = path.stat()
    assert repair_torn_tail(path) == 0
    assert path.read_bytes() == content
    assert path.stat().st_mtime_ns == before.st_mtime_ns


def test_repair_missing_file_is_zero_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "absent.jsonl"
    assert repair_torn_tail(path) == 0
    assert not path.exists()


# --- AppendFile -------------------------------------------------------------------------------


def test_append_file_writes_whole_lines_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "out.jsonl"  # parents are created
    f = AppendFile(path)
    f.write(b'{"n": 1}\n')
    f.write(b'{"n": 2}\n')
    f.sync()
    f.close()
    g = AppendFile(path)  # reopening appends, never truncates
    g.write(b'{"n": 3}\n')
    g.close()
    assert path.read_bytes() == b'{"n": 1}\n{"n": 2}\n{"n": 3}\n'


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_append_file_read_only_directory(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputWriteError) as info:
            AppendFile(folder / "out.jsonl")
    finally:
        folder.chmod(0o700)
    assert info.value.path == str(folder / "out.jsonl")
    assert str(folder / "out.jsonl") in _one_line(info.value)


@pytest.mark.parametrize(
    ("err", "reason"),
    [(errno.EACCES, "Permission denied"), (errno.EROFS, "Read-only file system")],
)
def test_append_file_open_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int, reason: str
) -> None:
    """What a read-only directory or file system does to ``open``, also when run as root."""
    path = tmp_path / "out.jsonl"
    real_open = os.open

    def refuse(p: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if Path(p) == path:
            raise OSError(err, os.strerror(err), str(p))
        return real_open(p, flags, mode)

    monkeypatch.setattr(os, "open", refuse)  # the one appendfile calls
    with pytest.raises(OutputWriteError) as info:
        AppendFile(path)
    message = _one_line(info.value)
    assert info.value.path == str(path)
    assert str(path) in message
    assert reason in message
    assert info.value.cause.errno == err


def test_append_file_parent_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    with pytest.raises(OutputWriteError) as info:
        AppendFile(blocker / "out.jsonl")
    assert str(blocker / "out.jsonl") in _one_line(info.value)


WriteFn = Callable[[int, bytes], int]


def _patch_write(monkeypatch: pytest.MonkeyPatch, fd: int, fake: WriteFn) -> None:
    """Replace ``os.write`` for ``fd`` only; every other descriptor writes for real."""
    real_write = os.write

    def write(target: int, data: bytes) -> int:
        return fake(target, data) if target == fd else real_write(target, data)

    monkeypatch.setattr(os, "write", write)  # the one appendfile calls


def test_append_file_write_error_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.jsonl"
    f = AppendFile(path)
    f.write(b'{"n": 1}\n')

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    _patch_write(monkeypatch, f._fd, full)
    with pytest.raises(OutputWriteError) as info:
        f.write(b'{"n": 2}\n')
    assert "No space left on device" in _one_line(info.value)
    assert str(path) in str(info.value)
    monkeypatch.undo()
    f.close()
    assert path.read_bytes() == b'{"n": 1}\n'


@pytest.mark.parametrize("rest_fails", [True, False])
def test_append_file_short_write_is_cut_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rest_fails: bool
) -> None:
    path = tmp_path / "out.jsonl"
    f = AppendFile(path)
    f.write(b'{"n": 1}\n')
    size_before = path.stat().st_size
    calls: list[bytes] = []
    real_write = os.write

    def short(fd: int, data: bytes) -> int:
        calls.append(data)
        if len(calls) == 1:  # the line: only its first half reaches the file
            return real_write(fd, data[: len(data) // 2])
        if rest_fails:  # the rest: the real cause
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        return real_write(fd, data)

    _patch_write(monkeypatch, f._fd, short)
    line = b'{"custom_id": "torn", "response": {"status_code": 200}}\n'
    with pytest.raises(OutputWriteError) as info:
        f.write(line)
    message = _one_line(info.value)
    assert str(path) in message
    assert ("File too large" if rest_fails else "short write") in message
    # The half line is gone: the file is back to its size before the write.
    assert path.stat().st_size == size_before
    assert path.read_bytes() == b'{"n": 1}\n'
    monkeypatch.undo()
    f.write(b'{"n": 3}\n')  # the file stays usable, and whole
    f.close()
    assert path.read_bytes() == b'{"n": 1}\n{"n": 3}\n'


# --- manifest ---------------------------------------------------------------------------------


def make_config(tmp_path: Path, **changes: object) -> RunConfig:
    inp = tmp_path / "in.jsonl"
    if not inp.exists():
        inp.write_bytes(b'{"prompt": "a"}\n{"prompt": "b"}\n')
    config = RunConfig(
        input_path=inp,
        output_path=tmp_path / "out.jsonl",
        dead_letter_path=tmp_path / "dead.jsonl",
        model="m",
    )
    return dataclasses.replace(config, **changes) if changes else config


def started(config: RunConfig) -> RunConfig:
    write_manifest(config, scan_input(config.input_path), None)
    assert config.manifest_path.exists()
    return config


def test_no_manifest_is_a_fresh_start(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert check_manifest(config, scan_input(config.input_path)) == ("new", None)
    assert previous_input_size(config) is None


def test_same_input_is_accepted(tmp_path: Path) -> None:
    config = started(make_config(tmp_path))
    scanned = scan_input(config.input_path, previous_input_size(config))
    change, old = check_manifest(config, scanned)
    assert change == "same"
    assert old is not None
    assert old["input_fingerprint"] == scanned.fingerprint
    assert old["endpoint"] == CHAT


def test_same_input_by_relative_path_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = started(make_config(tmp_path))
    monkeypatch.chdir(tmp_path)
    relative = dataclasses.replace(config, input_path=Path("in.jsonl"))
    assert check_manifest(relative, scan_input(relative.input_path))[0] == "same"


def test_different_input_file_is_refused(tmp_path: Path) -> None:
    config = started(make_config(tmp_path))
    other = tmp_path / "other.jsonl"
    other.write_bytes(config.input_path.read_bytes())  # same content, another file
    changed = dataclasses.replace(config, input_path=other)
    with pytest.raises(LedgerError) as info:
        check_manifest(changed, scan_input(other))
    message = _one_line(info.value)
    assert "input file" in message
    assert str(config.input_path) in message
    assert str(other) in message
    assert "`restart`" in message


def test_different_endpoint_is_refused(tmp_path: Path) -> None:
    config = started(make_config(tmp_path))
    changed = dataclasses.replace(config, endpoint="/v1/embeddings")
    with pytest.raises(LedgerError) as info:
        check_manifest(changed, scan_input(config.input_path))
    message = _one_line(info.value)
    assert f"endpoint {CHAT}" in message
    assert "/v1/embeddings" in message
    assert "`restart`" in message
    assert "input file" not in message


def test_appended_lines_are_reported(tmp_path: Path) -> None:
    config = started(make_config(tmp_path))
    with config.input_path.open("ab") as f:
        f.write(b'{"prompt": "c"}\n')
    scanned = scan_input(config.input_path, previous_input_size(config))
    change, old = check_manifest(config, scanned)
    assert change == "grown"
    assert old is not None
    assert old["input_size"] < scanned.size


@pytest.mark.parametrize(
    "edited",
    [
        b'{"prompt": "A"}\n{"prompt": "b"}\n',  # a changed line, same size
        b'{"prompt": "a"}\n',  # lines removed
        b'{"prompt": "0"}\n{"prompt": "a"}\n{"prompt": "b"}\n',  # a line inserted at the top
    ],
    ids=["changed", "shrunk", "inserted"],
)
def test_edited_input_is_refused_unless_allowed(tmp_path: Path, edited: bytes) -> None:
    config = started(make_config(tmp_path))
    config.input_path.write_bytes(edited)
    scanned = scan_input(config.input_path, previous_input_size(config))
    with pytest.raises(LedgerError) as info:
        check_manifest(config, scanned)
    message = _one_line(info.value)
    assert "edited" in message
    assert str(config.input_path) in message
    assert "`allow_changed_input`" in message
    assert "`restart`" in message
    allowed = dataclasses.replace(config, allow_changed_input=True)
    change, old = check_manifest(allowed, scanned)
    assert change == "edited"
    assert old is not None


def test_appending_to_an_unterminated_last_line_is_an_edit(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(
        b'{"custom_id": "a", "prompt": "x"}\n{"custom_id": "b", "prompt": "y"}'
    )
    config = started(make_config(tmp_path))
    with config.input_path.open("ab") as f:  # e.g. echo '...' >> in.jsonl
        f.write(b'{"custom_id": "c", "prompt": "z"}\n')
    # Line 2 is no longer the line that was sent as "b": it is now invalid JSON.
    line2 = list(read_input(config.input_path, CHAT, "m"))[1]
    assert isinstance(line2, BadLine)
    assert line2.type == "invalid_json"
    scanned = scan_input(config.input_path, previous_input_size(config))
    with pytest.raises(LedgerError):
        check_manifest(config, scanned)


def test_corrupt_manifest_is_a_one_line_error(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    config.manifest_path.write_bytes(b"{not json")
    with pytest.raises(LedgerError) as info:
        check_manifest(config, scan_input(config.input_path))
    assert "`restart`" in _one_line(info.value)


BAK = re.compile(r"^(?P<name>.+)\.(?P<stamp>\d{8}T\d{6})\.bak$")


def test_move_aside_renames_with_a_timestamp_and_deletes_nothing(tmp_path: Path) -> None:
    config = started(make_config(tmp_path))
    config.output_path.write_bytes(b"results\n")
    config.dead_letter_path.write_bytes(b"dead\n")
    originals = {
        p.name: p.read_bytes()
        for p in (config.output_path, config.dead_letter_path, config.manifest_path)
    }
    moved = move_aside(config)
    assert len(moved) == 3
    for target in moved:
        m = BAK.match(target.name)
        assert m is not None, target.name
        assert target.parent == tmp_path
        assert target.read_bytes() == originals[m["name"]]
        time.strptime(m["stamp"], "%Y%m%dT%H%M%S")
    assert not config.output_path.exists()
    assert not config.dead_letter_path.exists()
    assert not config.manifest_path.exists()
    assert config.input_path.exists()
    assert len(list(tmp_path.iterdir())) == 4  # input + 3 backups


def test_move_aside_skips_missing_files(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert move_aside(config) == []
    config.output_path.write_bytes(b"r\n")
    moved = move_aside(config)
    assert len(moved) == 1
    m = BAK.match(moved[0].name)
    assert m is not None
    assert m["name"] == "out.jsonl"
    assert moved[0].read_bytes() == b"r\n"


def test_move_aside_twice_in_one_second_keeps_both_backups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen = types.SimpleNamespace(strftime=lambda *_: "20260101T120000")
    monkeypatch.setattr(manifest, "time", frozen)
    config = make_config(tmp_path)
    config.output_path.write_bytes(b"first run\n")
    move_aside(config)
    config.output_path.write_bytes(b"second run\n")
    move_aside(config)
    kept = sorted(p.read_bytes() for p in tmp_path.iterdir() if p.name.endswith(".bak"))
    assert kept == [b"first run\n", b"second run\n"]


# --- prepare.scan_input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "lines"),
    [
        (b"", 0),
        (b"a\n", 1),
        (b"a", 1),
        (b"a\nb", 2),
        (b"a\nb\n", 2),
        (b"\n\n", 2),
        (b"a\n\nb\n", 3),
        (b"a\r\nb\r\n", 2),
    ],
)
def test_scan_input_counts_physical_lines(tmp_path: Path, content: bytes, lines: int) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(content)
    scanned = scan_input(path)
    assert scanned.lines == lines
    assert scanned.size == len(content)
    assert scanned.prefix_fingerprint is None


def test_scan_input_line_count_matches_read_input_numbering(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    body = b"\n".join(b'{"prompt": "%d"}' % i for i in range(1, 6))
    for content in (body, body + b"\n"):
        path.write_bytes(content)
        assert [e.line for e in read_input(path, CHAT, "m")][-1] == scan_input(path).lines == 5


def test_scan_input_fingerprint_tracks_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(b"x\ny\n")
    b.write_bytes(b"x\ny\n")
    assert scan_input(a).fingerprint == scan_input(b).fingerprint
    b.write_bytes(b"x\nz\n")
    assert scan_input(a).fingerprint != scan_input(b).fingerprint


def test_scan_input_across_chunks_and_prefix(tmp_path: Path) -> None:
    mib = 1 << 20
    content = b"x" * (mib - 1) + b"\n" + b"y" * 100 + b"\n" + b"z" * (mib // 2)
    path = tmp_path / "big.jsonl"
    path.write_bytes(content)
    line_end = mib + 101  # the prefix ends right after the second line's newline
    scanned = scan_input(path, prefix_size=line_end)
    assert scanned.lines == 3
    assert scanned.size == len(content)
    prefix = tmp_path / "prefix.jsonl"
    prefix.write_bytes(content[:line_end])
    assert scanned.prefix_fingerprint == scan_input(prefix).fingerprint
    # A prefix that ends inside a line is no prefix of whole lines: appending changed a line.
    assert scan_input(path, prefix_size=mib + 50).prefix_fingerprint is None
    assert scan_input(path, prefix_size=len(content)).prefix_fingerprint is None
    assert scan_input(path, prefix_size=len(content) + 1).prefix_fingerprint is None


# --- jobfile.load_job -------------------------------------------------------------------------


def job(tmp_path: Path, text: str | bytes) -> Path:
    folder = tmp_path / "jobs"
    folder.mkdir(exist_ok=True)
    path = folder / "job.toml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_job_paths_resolve_against_the_job_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = job(
        tmp_path,
        'input = "data/in.jsonl"\n'
        'output = "../out/results.jsonl"\n'
        'dead_letter = "/abs/dead.jsonl"\n'
        'model = "mistral-small-latest"\n'
        "rps = 5\n"
        "[mock_server]\n"
        "latency_ms = 20\n",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run, mock = load_job(path)
    assert run == {
        "input": str(tmp_path / "jobs" / "data" / "in.jsonl"),
        "output": str(tmp_path / "out" / "results.jsonl"),
        "dead_letter": "/abs/dead.jsonl",
        "model": "mistral-small-latest",
        "rps": 5,
    }
    assert mock == {"latency_ms": 20}


def test_job_relative_job_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job(tmp_path, 'input = "in.jsonl"\n')
    monkeypatch.chdir(tmp_path)
    run, mock = load_job(Path("jobs/job.toml"))
    assert Path(run["input"]).resolve() == tmp_path / "jobs" / "in.jsonl"
    assert mock == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('input = "a"\nbogus = 1\nzeta = 2\n', "unknown key(s) bogus, zeta"),
        ('input = "a"\n[mock_server]\nlatency = 5\n', "unknown key(s) mock_server.latency"),
        ('input = "a"\n[extra]\nx = 1\n', "unknown key(s) extra"),
        ('input = "a"\nmock_server = 3\n', "[mock_server] must be a table"),
        ('model = "m"\n', "has no 'input'"),
        ("input = 5\n", "'input' must be a string path"),
        ('input = "a"\nsummary_json = ["x"]\n', "'summary_json' must be a string path"),
        ('input = "a\nrps = 5\n', "is not valid TOML"),
        ("input = \n", "is not valid TOML"),
        ('input = "a"\ninput = "b"\n', "is not valid TOML"),
        (b'input = "\xff"\n', "is not valid TOML"),
    ],
)
def test_job_errors_are_one_line(tmp_path: Path, text: str | bytes, expected: str) -> None:
    path = job(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_job(path)
    message = _one_line(info.value)
    assert expected in message
    assert str(path) in message


def test_job_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_job(tmp_path / "nope.toml")
    assert _one_line(info.value) == f"job file {tmp_path / 'nope.toml'} does not exist"
