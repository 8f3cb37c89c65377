"""The wheel a user installs: every subpackage and module, the type information (PEP 561's
``py.typed``), the command; none of the repository's tests, samples or benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "batchrunner"
#: Not part of the source tree: the build must not see (or be slowed by) them.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


def build_wheel(tmp_path: Path) -> zipfile.ZipFile:
    """Build the wheel from a copy of the repository, offline, and open it."""
    src, dist = tmp_path / "src", tmp_path / "dist"
    shutil.copytree(REPO, src, ignore=NOT_SOURCE)  # the build writes build/ and egg-info
    offline = ("--no-deps", "--no-build-isolation", "--no-index", "--quiet")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", *offline, "--wheel-dir", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = dist.glob("batchrunner-*.whl")
    return zipfile.ZipFile(wheel)


def test_the_wheel_ships_the_whole_package_typed_and_nothing_else(tmp_path: Path) -> None:
    with build_wheel(tmp_path) as wheel:
        names = wheel.namelist()
        (info,) = {n.split("/", 1)[0] for n in names if ".dist-info/" in n}
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert "batchrunner/py.typed" in names
    modules = {p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("*.py")}
    assert {n for n in names if n.endswith(".py")} == modules  # every subpackage, every module
    assert len({m.rsplit("/", 1)[0] for m in modules}) >= 9  # the subpackages are found at all
    assert {n.split("/", 1)[0] for n in names} == {"batchrunner", info}  # no tests/, samples/
    assert "[console_scripts]\nbatchrunner = " in entry_points  # the command
