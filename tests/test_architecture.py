"""The package's shape, as ARCHITECTURE.md draws it: who may import whom, and no circles."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "batchrunner"

_CORE = {"vocabulary", "errors", "runfiles", "config"}
#: Each part of the package and the parts it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "vocabulary": set(),
    "errors": set(),
    "runfiles": {"errors"},
    "config": {"errors", "vocabulary", "runfiles"},
    "input": _CORE,
    "clients": _CORE,
    "limits": _CORE | {"input"},
    "ledger": _CORE | {"input"},
    "engine": _CORE | {"input", "clients", "limits", "ledger"},
    "batch": _CORE | {"input", "clients", "limits", "ledger", "engine"},
    "dlq": _CORE | {"input", "ledger"},
    "mock": {"errors"},
    "export": _CORE | {"input", "ledger"},
    "demo": set(),
    "dryrun": _CORE | {"input", "limits"},
    "api": _CORE | {"engine", "batch", "mock"},
    "notebook": _CORE | {"input", "ledger", "export", "api"},
    "cli": set(),  # every part: filled in below
    "__init__": _CORE | {"engine", "ledger", "mock", "api", "dryrun", "notebook"},
    "__main__": {"cli"},
}
ALLOWED["cli"] = set(ALLOWED) - {"cli", "__init__", "__main__"}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"] or ["__init__"]
        yield ".".join(parts), path


def _imports(path: Path) -> Iterator[str]:
    """The ``batchrunner.*`` modules a file imports, wherever the import stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import; use batchrunner.*"
            if node.module.startswith("batchrunner"):
                module = node.module.removeprefix("batchrunner").lstrip(".")
                for alias in node.names:  # ``from batchrunner.mock import content``
                    sub = f"{module}.{alias.name}".lstrip(".")
                    yield (
                        sub
                        if (PACKAGE / sub.replace(".", "/")).with_suffix(".py").is_file()
                        else (module or "__init__")
                    )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("batchrunner."):
                    yield alias.name.removeprefix("batchrunner.")


def _part(module: str) -> str:
    return module.split(".")[0]


def test_every_part_imports_only_what_it_may() -> None:
    wrong = []
    for module, path in _modules():
        part = _part(module)
        assert part in ALLOWED, f"{module}: a part ARCHITECTURE.md does not name"
        for target in _imports(path):
            other = _part(target)
            if other != part and other not in ALLOWED[part]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_circle() -> None:
    # Every import counts, lazy and TYPE_CHECKING ones too: a circle hidden in a function
    # is still two modules that cannot be understood apart.
    graph = {m: set(_imports(p)) for m, p in _modules()}
    # Importing a package's submodule runs the package's __init__ first.
    for module in list(graph):
        graph[module] = {t for t in graph[module] if t in graph and t != module}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target] if target in path else [target]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


#: The parts that are one module, not a folder, and say what they may import all the same.
_MODULE_PARTS = ("api", "notebook", "dryrun")


def test_every_subpackage_says_its_job_and_what_it_may_import() -> None:
    parts = set(ALLOWED) - {"__init__", "__main__"}
    inits = sorted(PACKAGE.glob("*/__init__.py"))
    for init in [*inits, *(PACKAGE / f"{name}.py" for name in _MODULE_PARTS)]:
        part = init.parent.name if init.name == "__init__.py" else init.stem
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc, f"{init}: no docstring"
        said = next((p for p in doc.split("\n\n") if p.startswith("May import:")), None)
        assert said is not None, f"{init}: say what it may import"
        named = set(re.findall(r"``(\w+)``", said))
        if "every package but" in said:
            named = parts - {part} - named
        elif "every package" in said:
            named = parts - {part}
        assert named == ALLOWED[part], f"{init}: says {sorted(named)}, the table {ALLOWED[part]}"


def test_architecture_md_names_only_modules_that_exist() -> None:
    # ``engine/run.py`` from the package (or the repository); a bare ``state.py``, named in
    # its package's row, anywhere in the package.
    root = PACKAGE.parent
    text = (root / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\b([a-z_]+(?:/[a-z_]+)*\.py)\b", text))
    assert named, "ARCHITECTURE.md names no module"
    known = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    known |= {p.name for p in PACKAGE.rglob("*.py")}
    missing = sorted(n for n in named if n not in known and not (root / n).is_file())
    assert not missing, f"ARCHITECTURE.md names modules that do not exist: {missing}"
