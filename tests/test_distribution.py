"""What a user gets besides the code: the licence, a demo that runs from a wheel, backups that
git ignores, and the wheel's contents."""

from __future__ import annotations

import fnmatch
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import read_jsonl, run_cli

from batchrunner.cli.jobfile import load_job
from batchrunner.config import RunConfig
from batchrunner.ledger.manifest import move_aside

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "batchrunner" / "demo"


def test_the_licence_is_mit_in_the_file_and_the_metadata() -> None:
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]


def test_restart_backups_are_ignored_by_git(tmp_path: Path) -> None:
    config = RunConfig(input_path=tmp_path / "in.jsonl")
    for path in (config.output_path, config.dead_letter_path, config.manifest_path):
        path.write_text("x\n")
    first = move_aside(config)
    for path in (config.output_path, config.dead_letter_path, config.manifest_path):
        path.write_text("x\n")
    second = move_aside(config)  # within the same second: the -2 form
    patterns = [
        p for p in (REPO / ".gitignore").read_text().splitlines() if p and not p.startswith("#")
    ]
    moved = [p.name for p in first + second]
    assert len(moved) == 6
    for name in moved:
        assert any(fnmatch.fnmatch(name, p) for p in patterns), name


def test_the_demo_is_the_quickstart(tmp_path: Path) -> None:
    assert (DEMO / "prompts.jsonl").read_bytes() == (
        REPO / "samples" / "prompts.jsonl"
    ).read_bytes()
    shipped, shipped_mock = load_job(DEMO / "quickstart.toml")
    clone, clone_mock = load_job(REPO / "jobs" / "quickstart.toml")
    assert Path(shipped.pop("input")).name == Path(clone.pop("input")).name == "prompts.jsonl"
    assert (shipped, shipped_mock) == (clone, clone_mock)


@pytest.mark.e2e
def test_demo_runs_the_quickstart_in_a_folder_and_resumes(tmp_path: Path) -> None:
    folder = tmp_path / "try"
    first = run_cli("demo", folder, "-q")
    assert first.code == 1, first.stderr  # some lines are broken on purpose
    assert len(read_jsonl(folder / "prompts.results.jsonl")) == 289
    assert len(read_jsonl(folder / "prompts.dead.jsonl")) == 9
    again = run_cli("demo", folder, "-q")
    assert again.code == 1 and "289 results" in again.stdout
    assert len(read_jsonl(folder / "prompts.results.jsonl")) == 289  # nothing sent twice


def test_the_wheel_ships_the_demo_and_the_licence(built_wheel: Path) -> None:
    with zipfile.ZipFile(built_wheel) as z:
        names = set(z.namelist())
        (metadata,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        meta = z.read(metadata).decode()
    assert {"batchrunner/demo/prompts.jsonl", "batchrunner/demo/quickstart.toml"} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in meta
