"""A large results file read by a second process, on the machine's other core.

Cutting ten million result lines into ids and line numbers is a fifth of a resume's work, and
hashing and filing them another: the first is done here in a child process
(``python -m batchrunner.ledger.resultscan PATH``) while this one files what the child has
cut. The child writes each block's :class:`~batchrunner.ledger.records.ResultLines` to its
stdout as one ``marshal`` frame (a length, then the frame; 0 ends the file); it reads the file
and nothing else, writes nothing else, and stops when its reader goes away (a broken pipe).

A small file, a single core, or a child that cannot start is read in this process: the
lines and the answers are the same either way (:func:`batchrunner.ledger.records.read_results`
cuts them in both).
"""

from __future__ import annotations

import marshal
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from batchrunner.errors import LedgerError
from batchrunner.ledger.records import ResultLines, read_results

__all__ = ["read_results_aside"]

#: Files smaller than this are read in this process: the child's start-up (~0.3 s, mostly
#: imports) would cost more than the ~20 % of the reading it takes over (~140,000 results).
MIN_SIZE = 64 << 20
_LENGTH = struct.Struct("<Q")


def read_results_aside(path: Path, with_fp: bool = True) -> Iterator[ResultLines]:
    """:func:`~batchrunner.ledger.records.read_results`, its lines cut by a child process
    when the file is large and there is a core to spare."""
    try:
        large = path.stat().st_size >= MIN_SIZE
    except FileNotFoundError:
        large = False
    if not large or (os.cpu_count() or 1) < 2:
        yield from read_results(path, with_fp)
        return
    with path.open("rb"):  # unreadable: the same error as a read here
        pass
    command = [sys.executable, "-m", __name__, str(path), "1" if with_fp else "0"]
    try:
        child = subprocess.Popen(  # its own session: a Ctrl-C is ours to act on, not its
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:  # no process to be had: read it here
        yield from read_results(path, with_fp)
        return
    assert child.stdout is not None
    try:
        yield from _frames(child.stdout, path)
    finally:
        child.kill()  # done, or we stopped reading: it has nothing more to do
        child.wait()
        child.stdout.close()


def _frames(pipe: IO[bytes], path: Path) -> Iterator[ResultLines]:
    while True:
        head = pipe.read(_LENGTH.size)
        size = _LENGTH.unpack(head)[0] if len(head) == _LENGTH.size else -1
        frame = pipe.read(size) if size > 0 else b""
        if size == 0:
            return
        if size < 0 or len(frame) != size:
            raise LedgerError(f"the process reading {path} stopped before its end", path=path)
        ids, lines, fps, not_results = marshal.loads(frame)
        yield ResultLines(ids, lines, fps, not_results)


def _main(path: str, with_fp: str) -> None:
    out = sys.stdout.buffer
    try:
        for got in read_results(Path(path), with_fp == "1"):
            frame = marshal.dumps((got.ids, got.lines, got.fps, got.not_results))
            out.write(_LENGTH.pack(len(frame)) + frame)
        out.write(_LENGTH.pack(0))
        out.flush()
    except OSError:  # the reader stopped (a broken pipe), or the file went: no end frame
        os._exit(1)


if __name__ == "__main__":
    _main(*sys.argv[1:3])
