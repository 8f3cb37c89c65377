"""What durability costs: appending result-sized lines with batchrunner's AppendFile (one
write(2) per line, fsync once a second) against an fsync after every line.

    python benchmarks/durability.py [--lines N] [--dir PATH]

Prints lines/s and microseconds per line for both, and their ratio. Run it on the disk the
results will live on: fsync cost is the disk's, not Python's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from batchrunner.ledger.appendfile import AppendFile

LINE = b'{"custom_id":"req-0000001","response":{"status_code":200,"body":{}}}' + b" " * 380 + b"\n"


def appends(path: Path, n: int, sync_every_line: bool) -> float:
    """Seconds to append ``n`` lines; syncing each line, or once a second as runs do."""
    out = AppendFile(path)
    start = last_sync = time.perf_counter()
    for _ in range(n):
        out.write(LINE)
        now = time.perf_counter()
        if sync_every_line or now - last_sync >= 1.0:
            out.sync()
            last_sync = now
    out.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--dir", type=Path, default=None, help="where to write [a temp dir]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        n = args.lines
        periodic = appends(Path(tmp) / "a.jsonl", n, sync_every_line=False)
        each = appends(Path(tmp) / "b.jsonl", max(n // 10, 100), sync_every_line=True)
        each_per_line = each / max(n // 10, 100)
        print(f"durability cost on {os.path.realpath(tmp)} ({len(LINE)}-byte lines)")
        print(f"  write + fsync every second: {n / periodic:>10,.0f} lines/s "
              f"({periodic / n * 1e6:.1f} us/line)")  # fmt: skip
        print(f"  write + fsync every line:   {1 / each_per_line:>10,.0f} lines/s "
              f"({each_per_line * 1e6:.1f} us/line)")  # fmt: skip
        print(f"  per-line fsync is {each_per_line / (periodic / n):.0f}x the cost per line")


if __name__ == "__main__":
    main()
