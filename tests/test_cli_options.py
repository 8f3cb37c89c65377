"""``batchrunner run``'s options come from one list, and errors become exit codes in one place.

Parsing only: click's runner in-process (nothing is sent; every case fails or stops before
the engine starts), and the real processes where the exit code and stderr are the point.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
from click.testing import CliRunner, Result
from conftest import run_cli

from batchrunner.cli.exits import (
    ERROR_CODES,
    STOP_CODES,
    ExitCode,
    error_code,
    flags_for,
    message,
    stop_code,
)
from batchrunner.cli.jobfile import load_job
from batchrunner.cli.main import cli
from batchrunner.cli.options import FLAGS, JOB_SETTINGS, SETTINGS
from batchrunner.config import RunConfig, type_problem
from batchrunner.dlq import entries
from batchrunner.errors import (
    BatchRunnerError,
    ConfigError,
    DlqError,
    DlqWriteError,
    LedgerError,
    OutputWriteError,
    WriteError,
)
from batchrunner.mock import MockConfig
from batchrunner.mock.cli import JOB_KEYS, mock_server
from batchrunner.vocabulary import StopReason

#: The keys job files took before the list was derived: each must still be accepted.
JOB_KEYS_BEFORE = {
    "input", "output", "dead_letter", "endpoint", "model", "rps", "concurrency",
    "max_attempts", "timeout", "server_url", "client", "mock", "backoff_base",
    "backoff_max", "max_retry_after", "drain_timeout", "quiet", "summary_json",
    "allow_changed_input", "breaker", "preflight", "tpm", "ordered", "reorder_buffer",
    "max_tokens_total", "max_cost", "prices",
    # --via batch (issue 11)
    "via", "batch_max_requests", "batch_max_bytes", "batch_group_by_model", "batch_poll",
    "batch_poll_max",
    # issue 12: shards and following a run from a log
    "shard", "log_json", "progress_interval",
}  # fmt: skip
#: Set by the program, not by a user: no flag, no job-file key (a job file's
#: [mock_server] table is read by the job loader, which checks its keys itself).
NOT_OPTIONS = {"api_key", "fsync_interval", "command", "mock_server"}
#: A value of the wrong type for each kind a job file and the library both check.
WRONG = {"bool": "false", "int": 2.5, "number": "5", "str": 5}


def invoke(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    env = {"MISTRAL_API_KEY": "k", "COLUMNS": "200"} if env is None else env
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def config(tmp_path: Path, **changes: Any) -> RunConfig:
    return RunConfig(
        input_path=tmp_path / "in.jsonl",
        output_path=tmp_path / "out.jsonl",
        dead_letter_path=tmp_path / "dead.jsonl",
        **changes,
    )


# -- one list of options ---------------------------------------------------------------


def test_every_setting_has_a_flag_and_a_job_key() -> None:
    run_params = {p.name: p for p in cli.commands["run"].params}
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    described = {s.name for s in SETTINGS}
    assert fields - described == NOT_OPTIONS
    for s in SETTINGS:
        # Job files only: the per-model price tables. Command line only: what one
        # invocation does (start over, re-send the dead, print nothing, JSON, a dry run,
        # cancel the batch jobs).
        assert (s.key in run_params) == (s.name != "prices"), s.name
        once = s.name in {
            "restart", "retry_dead", "retry_statuses", "silent", "json", "dry_run", "cancel",
        }  # fmt: skip
        assert (s.key in JOB_SETTINGS) == (not once), s.name
    assert set(JOB_SETTINGS) == JOB_KEYS_BEFORE
    assert FLAGS["rps"] == "--rps" and FLAGS["retry_statuses"] == "--status"
    assert FLAGS["output_path"] == "--output" and FLAGS["input_path"] == "INPUT"


@pytest.mark.parametrize("key", sorted(k for k, s in JOB_SETTINGS.items() if s.kind in WRONG))
def test_job_file_and_library_refuse_the_same_wrong_type(tmp_path: Path, key: str) -> None:
    s = JOB_SETTINGS[key]
    value = WRONG[s.kind]
    expected = type_problem(s.kind, value)
    assert expected is not None
    toml_value = f'"{value}"' if isinstance(value, str) else str(value)
    job = tmp_path / "job.toml"
    job.write_text(f'input = "in.jsonl"\n{key} = {toml_value}\n')

    with pytest.raises(ConfigError) as from_job:
        load_job(job)

    assert str(from_job.value) == f"job file {job}: '{key}' must be {expected}, not {value!r}"
    assert (from_job.value.setting, from_job.value.expected) == (key, expected)
    assert from_job.value.found == value and from_job.value.path == str(job)
    if s.name in {f.name for f in dataclasses.fields(RunConfig)}:
        with pytest.raises(ConfigError) as from_library:
            config(tmp_path, **{s.name: value})
        assert str(from_library.value) == f"{s.name} must be {expected}, not {value!r}"


def test_help_lists_every_option_with_the_real_default(tmp_path: Path) -> None:
    res = invoke("run", "--help")
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())  # the help wraps lines wherever it likes
    real = config(tmp_path)
    for s in SETTINGS:
        if not s.option.flag or s.option.argument:
            continue
        assert s.flag in text, s.flag
        value = getattr(real, s.name, s.default)
        if isinstance(value, float):
            assert f"[{value:g}]" in text, s.name
        elif isinstance(value, int | str) and not isinstance(value, bool):
            assert f"[{value}" in text, s.name
    for shown in ("[8]", "[120]", "[0.5]", "[30]", "[300]", "[10]", "[1000]", "[http]", "[on]"):
        assert shown in text
    assert "[no cap]" in text  # --rps, whose default is None


# -- messages: the library names settings, the command line flags ---------------------


def test_library_message_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config(tmp_path, rps=-1)
    assert str(info.value) == "rps must be a positive number, not -1"
    assert info.value.setting == "rps"
    assert info.value.expected == "a positive number"
    assert info.value.found == -1


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--rps", "-1"], "Error: --rps must be a positive number, not -1.0"),
        (["--concurrency", "0"], "Error: --concurrency must be at least 1, not 0"),
        (["--status", "503"], "Error: --status must be given with --retry-dead"),
        (["--timeout", "0"], "Error: --timeout must be a positive number, not 0.0"),
    ],
)
def test_cli_message_names_the_flag(tmp_path: Path, args: list[str], line: str) -> None:
    (tmp_path / "in.jsonl").write_text('{"prompt": "a"}\n')
    res = invoke("run", tmp_path / "in.jsonl", *args)
    assert res.exit_code == 2
    assert res.stderr.splitlines() == [res.stderr.strip()]  # one line
    assert res.stderr.startswith(line), res.stderr


def test_settings_a_library_message_points_to_are_spelled_as_flags() -> None:
    # The library marks a setting between backticks; the CLI spells it as the flag, however
    # the flag differs from the field name, and leaves paths and other words alone.
    error = LedgerError("/data/restart/out.jsonl is taken; pass `restart` or choose another "
                        "`output_path`/`dead_letter_path`")  # fmt: skip
    assert message(error) == (
        "/data/restart/out.jsonl is taken; pass --restart or choose another --output/--dead-letter"
    )
    assert flags_for("would pass `max_tokens_total`") == "would pass --max-tokens-total"
    assert flags_for("pass `force` to overwrite it") == "pass --force to overwrite it"
    assert flags_for("no setting here: restart") == "no setting here: restart"
    assert flags_for("the server said `no_such_thing`") == "the server said `no_such_thing`"


def test_job_file_message_keeps_the_key(tmp_path: Path) -> None:
    (tmp_path / "job.toml").write_text('input = "in.jsonl"\nconcurrency = 2.5\n')
    res = invoke("run", tmp_path / "job.toml")
    assert res.exit_code == 2
    assert "'concurrency' must be a whole number, not 2.5" in res.stderr
    assert "--concurrency" not in res.stderr


# -- one table from errors and stop reasons to exit codes ----------------------------


def test_every_error_has_its_exit_code() -> None:
    assert error_code(ConfigError("x")) == error_code(LedgerError("x")) == ExitCode.USAGE == 2
    assert error_code(DlqError("x")) == ExitCode.USAGE
    assert error_code(OutputWriteError("f", OSError(28, "No space left"))) == ExitCode.ERROR
    assert error_code(DlqWriteError("x")) == ExitCode.ERROR == 3
    assert set(ERROR_CODES) == {BatchRunnerError, WriteError}


def test_every_stop_reason_has_its_exit_code() -> None:
    assert set(STOP_CODES) == set(get_args(StopReason))
    codes = {reason: int(stop_code(reason)) for reason in get_args(StopReason)}
    assert codes == {
        "interrupted": 130, "fatal": 3, "write_error": 3, "quota": 4, "budget": 5,
        "unanswered": 3,
    }  # fmt: skip


def test_errors_carry_their_context() -> None:
    assert str(ConfigError("plain")) == "plain"
    plain = ConfigError("plain")
    assert (plain.setting, plain.expected, plain.found, plain.path) == (None, None, None, None)
    cause = OSError(28, "No space left on device")
    written = OutputWriteError("/x/out.jsonl", cause)
    assert isinstance(written, WriteError) and written.cause is cause
    assert written.path == "/x/out.jsonl"
    # The dlq errors are the tree's, whichever module names them.
    assert entries.DlqError is DlqError and entries.DlqWriteError is DlqWriteError
    assert issubclass(DlqWriteError, WriteError) and issubclass(DlqError, BatchRunnerError)


# -- one mock-server command, two ways to start it -------------------------------------


def _mock(entry: str, *args: str) -> subprocess.CompletedProcess[str]:
    head = ["-m", "batchrunner.mock"] if entry == "module" else ["-m", "batchrunner", "mock-server"]
    return subprocess.run(
        [sys.executable, *head, *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


ENTRIES = pytest.mark.parametrize("entry", ["module", "batchrunner"])


@pytest.mark.e2e
@ENTRIES
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--port", "70000"], "'--port': 70000 is not in the range 0<=x<=65535"),
        (["--latency-ms", "-5"], "'--latency-ms': -5.0 is not in the range x>=0"),
        (["--jitter-ms", "nan"], "'--jitter-ms': 'nan' is not a finite number"),
        (["--error-rate", "429=2"], "error rate for '429' must be in [0, 1]"),
    ],
)
def test_mock_bad_option_is_one_line_exit_2(entry: str, args: list[str], words: str) -> None:
    proc = _mock(entry, *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr


@pytest.mark.e2e
@ENTRIES
def test_mock_port_in_use_is_one_line_exit_1(entry: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _mock(entry, "--port", str(port))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"cannot start the mock server on 127.0.0.1:{port}" in proc.stderr


@pytest.mark.e2e
def test_mock_unknown_host_is_one_line_exit_1() -> None:
    res = run_cli("mock-server", "--host", "no-such-host.invalid", "--port", "0", timeout=30)
    assert res.code == 1
    assert res.stderr.count("\n") == 1 and "cannot start the mock server" in res.stderr


def test_mock_job_keys_are_mock_server_options() -> None:
    options = {p.name for p in mock_server.params}
    before = {"latency_ms", "jitter_ms", "error_rate", "limit_rps", "limit_tpm", "seed"}
    assert before | {"retry_after_ms"} <= JOB_KEYS <= options
    assert not {"host", "port", "require_key"} & JOB_KEYS  # decided by `run --mock` itself


def test_mock_defaults_are_the_mock_configs() -> None:
    defaults = {p.name: p.default for p in mock_server.params}
    assert defaults["port"] == 8000  # a fixed port a person can point a client at
    library = MockConfig()
    for name in ("host", "latency_ms", "jitter_ms", "seed", "retry_after_ms", "hang_s"):
        assert defaults[name] == getattr(library, name), name
    assert defaults["embedding_dim"] == library.embedding_dim
