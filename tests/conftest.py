"""Shared fixtures: the real mock server in a subprocess on a free port, and the real CLI.

Two tiers: ``pytest -m "not e2e"`` runs the fast in-process tests in seconds; tests marked
``e2e`` run the real CLI or the real mock server as processes over loopback. Starting either
process from a test not marked ``e2e`` fails that test (:func:`require_e2e`), so the fast tier
stays fast as tests are added.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

PREFIX = "mock server listening on "
TEST_KEY = "sk-test-0123456789abcdef-SECRET"

#: Proxy settings a CI machine may have: kept out of every test's environment, so that
#: requests to the tests' loopback servers go straight there (a test of proxies sets its own).
PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})

#: Whether the test being set up or run carries the ``e2e`` marker.
_current_is_e2e = False


def pytest_configure(config: pytest.Config) -> None:
    """Keep compiled bytecode, in a cache outside the source tree, where the machine says not
    to write it (``PYTHONDONTWRITEBYTECODE``): the e2e tier starts some 500 CLI and mock-server
    interpreters, and each one compiled the package's ~100 modules from source again (about a
    third of its start-up), as this process did for every test module. The cache under the
    system's temporary folder keeps what the setting protects: nothing written beside the
    sources. A ``PYTHONPYCACHEPREFIX`` the machine names is used as it is."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return  # bytecode is cached as usual
    default = Path(tempfile.gettempdir()) / "batchrunner-tests-pycache"
    cache = os.environ.setdefault("PYTHONPYCACHEPREFIX", str(default))
    del os.environ["PYTHONDONTWRITEBYTECODE"]  # for every process a test starts
    sys.pycache_prefix, sys.dont_write_bytecode = cache, False  # for the imports still to come


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Remember the test's tier before its fixtures (module-scoped ones too) are set up."""
    global _current_is_e2e
    _current_is_e2e = item.get_closest_marker("e2e") is not None


def require_e2e(what: str) -> None:
    """Fail a test outside the ``e2e`` tier that starts ``what`` as a process."""
    if not _current_is_e2e:
        pytest.fail(f"this test starts {what} as a process: mark it @pytest.mark.e2e")


@pytest.fixture(autouse=True)
def _no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process clients (aiohttp, httpx) go straight to the loopback servers, whatever
    proxy the machine names; a test of proxies names its own."""
    for name in list(os.environ):
        if name.lower() in PROXY_VARIABLES:
            monkeypatch.delenv(name)


@dataclass
class MockProc:
    url: str
    proc: subprocess.Popen[str]

    def stats(self) -> dict[str, Any]:
        import urllib.request

        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
        with direct.open(self.url + "/_mock/stats", timeout=10) as resp:
            data: dict[str, Any] = orjson.loads(resp.read())
        return data


def start_mock(*args: str) -> MockProc:
    """``python -m batchrunner.mock --port 0 ARGS``; returns once it listens."""
    require_e2e("the mock server")
    cmd = [sys.executable, "-m", "batchrunner.mock", "--host", "127.0.0.1", "--port", "0", *args]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith(PREFIX):
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise RuntimeError(f"mock server did not start: {line!r} {err!r}")
    return MockProc(line.removeprefix(PREFIX), proc)


def stop_mock(mock: MockProc) -> None:
    mock.proc.terminate()
    try:
        mock.proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        mock.proc.kill()
        mock.proc.communicate()


@pytest.fixture
def mock_server() -> Iterator[Callable[..., MockProc]]:
    """Factory: ``mock_server("--latency-ms", "5")``; every server started is stopped."""
    started: list[MockProc] = []

    def factory(*args: str) -> MockProc:
        mock = start_mock(*args)
        started.append(mock)
        return mock

    yield factory
    for mock in started:
        stop_mock(mock)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MISTRAL_") and k.lower() not in PROXY_VARIABLES
    }
    env.update({"MISTRAL_API_KEY": TEST_KEY, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    env.update(extra)
    return env


def run_cli(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 120
) -> CliResult:
    """The real command, in a subprocess: ``python -m batchrunner ARGS``."""
    require_e2e("the CLI")
    proc = subprocess.run(
        [sys.executable, "-m", "batchrunner", *map(str, args)],
        env=cli_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of ``path`` parsed; fails the test on an invalid line."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


REPO = Path(__file__).resolve().parents[1]
#: Not part of the source tree: the build must not see (or be slowed by) them.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built once from a copy of the repository, offline: the tests of what it
    ships only read it, so one build of ~1.5 s serves them all."""
    tmp = tmp_path_factory.mktemp("wheel")
    src, dist = tmp / "src", tmp / "dist"
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
    return wheel
