"""One pass over the input before a run: its fingerprint and its number of lines."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["fingerprint_and_count"]


def fingerprint_and_count(path: Path) -> tuple[str, int]:
    """(hash of the content, number of physical lines); streamed in 1 MiB chunks."""
    h = hashlib.blake2b(digest_size=16)
    lines = 0
    last = b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    return h.hexdigest(), lines
