"""One pass over the input before a run: its fingerprint, its number of lines, and whether
an earlier run's input is a prefix of it (lines only appended since)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["InputScan", "scan_input"]

#: Bytes hashed per read: large enough that the calls cost nothing beside the hashing,
#: small enough to be no memory.
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class InputScan:
    fingerprint: str
    size: int
    lines: int
    #: The fingerprint of the first ``prefix_size`` bytes, when one was asked for and
    #: those bytes still end a line (else what was appended changed the last one).
    prefix_fingerprint: str | None


def scan_input(path: Path, prefix_size: int | None = None) -> InputScan:
    """Hash and count ``path`` in 1 MiB chunks; memory does not grow with the file."""
    whole = hashlib.blake2b(digest_size=16)
    prefix = hashlib.blake2b(digest_size=16) if prefix_size is not None else None
    size = lines = 0
    last = b"\n"
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            whole.update(chunk)
            if prefix is not None and prefix_size is not None and size < prefix_size:
                prefix.update(chunk[: prefix_size - size])
            size += len(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    prefix_fp = None
    if prefix is not None and prefix_size is not None and size >= prefix_size:
        prefix_fp = prefix.hexdigest() if _ends_a_line(path, prefix_size) else None
    return InputScan(whole.hexdigest(), size, lines, prefix_fp)


def _ends_a_line(path: Path, offset: int) -> bool:
    """Whether the first ``offset`` bytes end a line as the file reads now: they end in a
    newline, or the bytes after them start with one (lines were appended to a file that
    lacked its final newline, leaving its last line as it was)."""
    if offset == 0:
        return True
    with path.open("rb") as f:
        f.seek(offset - 1)
        around = f.read(3)
    return around[:1] == b"\n" or around[1:2] == b"\n" or around[1:3] == b"\r\n"
