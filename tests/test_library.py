"""The library as a script or a notebook uses it: ``RunConfig`` from plain values, ``run``
and ``await arun``, the embedded mock as an option, and a list of prompts in, results out."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

import batchrunner
from batchrunner import ConfigError, RunConfig, RunStats, arun, arun_list, run, run_list

MODEL = "mistral-small-latest"
EMBED = "mistral-embed"
FAST: dict[str, Any] = {"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 5}


def write(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


# -- RunConfig from plain values ----------------------------------------------------------


def test_paths_may_be_strings_and_the_outputs_default_beside_the_input(tmp_path: Path) -> None:
    c = RunConfig(input_path=str(tmp_path / "in.jsonl"), dead_letter_path=str(tmp_path / "d.jsonl"))
    assert c.input_path == tmp_path / "in.jsonl" and isinstance(c.input_path, Path)
    assert c.output_path == tmp_path / "in.results.jsonl"
    assert c.dead_letter_path == tmp_path / "d.jsonl" and isinstance(c.dead_letter_path, Path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rps": "5"}, "rps must be a number, not '5'"),
        ({"concurrency": 0}, "concurrency must be at least 1, not 0"),
        ({"input_path": 5}, "input_path must be a path (str or Path), not 5"),
        ({"endpoint": "/v1/nope"}, "endpoint must be one of /v1/chat/completions"),
    ],
)
def test_values_are_checked_with_messages_naming_the_setting(
    changes: dict[str, Any], message: str
) -> None:
    settings = {"input_path": "in.jsonl"} | changes
    with pytest.raises(ConfigError) as info:
        RunConfig(**settings)
    assert str(info.value).startswith(message)


def test_the_key_comes_from_the_environment_when_not_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", " sk-from-env ")
    assert RunConfig(input_path="in.jsonl").api_key == "sk-from-env"
    assert RunConfig(input_path="in.jsonl", api_key="given").api_key == "given"
    assert "sk-from-env" not in repr(RunConfig(input_path="in.jsonl"))
    monkeypatch.delenv("MISTRAL_API_KEY")
    assert RunConfig(input_path="in.jsonl").api_key is None


def test_no_key_is_refused_before_anything_after_the_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="does not exist"):
        run(RunConfig(input_path=tmp_path / "nope.jsonl"))
    inp = write(tmp_path / "in.jsonl", [{"prompt": "x"}])
    with pytest.raises(ConfigError, match="MISTRAL_API_KEY is not set"):
        run(RunConfig(input_path=inp, model=MODEL))
    assert not (tmp_path / "in.results.jsonl").exists()


def test_sync_run_inside_a_running_loop_says_to_await(tmp_path: Path) -> None:
    config = RunConfig(input_path=tmp_path / "in.jsonl")

    async def cell() -> None:
        with pytest.raises(RuntimeError, match=r"await batchrunner\.arun\(config\)"):
            run(config)
        with pytest.raises(RuntimeError, match=r"await batchrunner\.arun_list"):
            run_list(["x"])

    asyncio.run(cell())


def test_run_list_refuses_what_it_cannot_take() -> None:
    with pytest.raises(ConfigError, match=r"requests\[1\] must be a prompt \(str\) or a request"):
        run_list(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="did you mean rps"):
        run_list(["ok"], rsp=5)
    with pytest.raises(ConfigError, match="run_list writes its own files"):
        run_list(["ok"], output_path="x.jsonl")


def test_the_package_is_typed() -> None:
    assert (Path(batchrunner.__file__).parent / "py.typed").is_file()


# -- with the embedded mock server ----------------------------------------------------------


@pytest.mark.e2e
def test_run_with_mock_needs_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    inp = write(
        tmp_path / "in.jsonl", [{"custom_id": f"r{i}", "prompt": f"p{i}"} for i in range(5)]
    )
    stats = run(RunConfig(input_path=str(inp), model=MODEL, mock=True, **FAST))
    assert (stats.ok, stats.dead) == (5, 0)
    assert len((tmp_path / "in.results.jsonl").read_bytes().splitlines()) == 5


@pytest.mark.e2e
def test_arun_in_a_running_loop_with_progress(tmp_path: Path) -> None:
    inp = write(tmp_path / "in.jsonl", [{"prompt": f"p{i}"} for i in range(20)])
    seen: list[int] = []
    config = RunConfig(
        input_path=inp, model=MODEL, mock=True, mock_server={"latency_ms": 20}, rps=100, **FAST
    )

    stats = asyncio.run(arun(config, progress=lambda s: seen.append(s.done), every=0.05))

    assert isinstance(stats, RunStats) and stats.ok == 20
    assert seen[-1] == 20 and len(seen) >= 2  # while it ran, and once at the end


@pytest.mark.e2e
def test_a_list_in_results_out_in_order(tmp_path: Path) -> None:
    requests: list[Any] = [
        "first",
        {"messages": [{"role": "user", "content": "[[mock:429]] second"}]},
        {
            "custom_id": "e",
            "url": "/v1/embeddings",
            "body": {"model": "mistral-embed", "input": "x"},
        },
        "[[mock:400]] refused",
        {"custom_id": "e", "prompt": "a duplicate id"},
        "last",
    ]

    results = run_list(requests, model=MODEL, mock=True, workdir=tmp_path / "w", **FAST)

    assert [r.request for r in results] == requests
    assert [r.status for r in results] == ["ok", "ok", "ok", "dead", "dead", "ok"]
    assert results[0].text == "echo: first" and results[5].text == "echo: last"
    assert results[1].text == "echo: [[mock:429]] second"  # retried, then answered
    assert results[2].embedding and results[2].text is None
    assert results[3].error is not None and results[3].error["status_code"] == 400
    assert results[4].error is not None and results[4].error["type"] == "duplicate_custom_id"
    assert [r.custom_id for r in results[:2]] == ["#1", "#2"]
    # The files stay in workdir, and the same list there resumes: nothing is sent again.
    again = run_list(requests, model=MODEL, mock=True, workdir=tmp_path / "w", **FAST)
    assert again == results
    (results_file,) = (tmp_path / "w").glob("*.results.jsonl")
    assert len(results_file.read_bytes().splitlines()) == 4


@pytest.mark.e2e
def test_arun_list_without_files_left_behind(tmp_path: Path) -> None:
    results = asyncio.run(arun_list(["a", "b"], model=MODEL, mock=True, **FAST))
    assert [r.text for r in results] == ["echo: a", "echo: b"] and all(r.ok for r in results)
