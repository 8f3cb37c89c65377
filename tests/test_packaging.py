"""The wheel a user installs: every subpackage and module, the type information (PEP 561's
``py.typed``), the command; none of the repository's tests, samples or benchmarks."""

from __future__ import annotations

import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "batchrunner"


def test_the_wheel_ships_the_whole_package_typed_and_nothing_else(built_wheel: Path) -> None:
    with zipfile.ZipFile(built_wheel) as wheel:
        names = wheel.namelist()
        (info,) = {n.split("/", 1)[0] for n in names if ".dist-info/" in n}
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert "batchrunner/py.typed" in names
    modules = {p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("*.py")}
    assert {n for n in names if n.endswith(".py")} == modules  # every subpackage, every module
    assert len({m.rsplit("/", 1)[0] for m in modules}) >= 9  # the subpackages are found at all
    assert {n.split("/", 1)[0] for n in names} == {"batchrunner", info}  # no tests/, samples/
    assert "[console_scripts]\nbatchrunner = " in entry_points  # the command
