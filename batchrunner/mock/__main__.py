"""``python -m batchrunner.mock [options]``: run a mock Mistral server in the foreground.

Prints ``mock server listening on http://HOST:PORT`` as its first stdout line and
serves until SIGINT/SIGTERM (exit 0). A bad option value exits 2 with a one-line
message on stderr; a port that cannot be bound exits 1.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence

from batchrunner.mock.config import MockConfig, parse_error_rates
from batchrunner.mock.serve import serve_forever


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, not argparse's usage block: callers show stderr verbatim.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(
    kind: Callable[[str], float], minimum: float, strict: bool = False
) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        too_small = value <= minimum if strict else value < minimum
        if too_small or math.isnan(value) or math.isinf(value):
            bound = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"must be finite and {bound} {minimum:g}: {text!r}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


def _rates(text: str) -> dict[str, float]:
    try:
        return parse_error_rates(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m batchrunner.mock``."""
    d = MockConfig()
    p = _OneLineParser(
        prog="python -m batchrunner.mock", description="Run a mock Mistral API server."
    )
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=_number(int, 0), default=d.port, help="0 picks a free port")
    p.add_argument("--latency-ms", type=_number(float, 0), default=d.latency_ms)
    p.add_argument("--jitter-ms", type=_number(float, 0), default=d.jitter_ms)
    p.add_argument(
        "--error-rate",
        type=_rates,
        default={},
        metavar="429=0.1,500=0.05,...",
        help="random faults: HTTP statuses, timeout, reset, garbage",
    )
    p.add_argument("--limit-rps", type=_number(float, 0, strict=True), default=None)
    p.add_argument("--limit-tpm", type=_number(int, 0, strict=True), default=None)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--retry-after-ms", type=_number(int, 0), default=d.retry_after_ms)
    p.add_argument("--require-key", default=None)
    p.add_argument("--hang-s", type=_number(float, 0), default=d.hang_s)
    p.add_argument("--embedding-dim", type=_number(int, 1), default=d.embedding_dim)
    p.add_argument("--log", dest="log_path", default=None, metavar="PATH")
    return p


def config_from_args(argv: Sequence[str] | None = None) -> MockConfig:
    """Parse command-line options into a :class:`MockConfig` (exits 2 on bad input)."""
    ns = build_parser().parse_args(argv)
    if ns.port > 65535:
        build_parser().error(f"argument --port: must be <= 65535: {ns.port}")
    return MockConfig(
        host=ns.host,
        port=int(ns.port),
        latency_ms=ns.latency_ms,
        jitter_ms=ns.jitter_ms,
        error_rates=ns.error_rate,
        limit_rps=ns.limit_rps,
        limit_tpm=None if ns.limit_tpm is None else int(ns.limit_tpm),
        seed=ns.seed,
        retry_after_ms=int(ns.retry_after_ms),
        require_key=ns.require_key,
        hang_s=ns.hang_s,
        embedding_dim=int(ns.embedding_dim),
        log_path=ns.log_path,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server; returns the process exit code."""
    config = config_from_args(argv)
    try:
        serve_forever(config)
    except OSError as exc:  # e.g. the port is taken, or the log path is unwritable
        print(f"mock server: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
