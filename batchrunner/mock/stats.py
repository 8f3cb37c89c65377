"""What the mock server saw: counters for ``GET /_mock/stats`` and the JSONL request log."""

from __future__ import annotations

import asyncio
import contextlib
from array import array
from typing import IO, Any

import orjson


class Stats:
    """Live counters of API requests (``/_mock/*`` is not counted).

    ``by_status`` keys are the status as a string, or the labels "reset",
    "timeout" and "garbage" for those faults. Arrival times are
    ``time.monotonic()`` values, kept so the busiest 1 s window can be computed.
    """

    __slots__ = (
        "arrivals",
        "by_path",
        "by_status",
        "completion_tokens",
        "prompt_tokens",
        "rate_limited",
        "repeated_bodies",
        "seen_bodies",
        "total",
        "with_body",
    )

    def __init__(self) -> None:
        self.total = 0
        self.by_status: dict[str, int] = {}
        self.by_path: dict[str, int] = {}
        self.arrivals = array("d")
        self.rate_limited = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.with_body = 0
        # 8-byte body hashes as ints: ~70 bytes each, fine up to a few million.
        self.seen_bodies: set[int] = set()
        self.repeated_bodies: set[int] = set()

    def record(self, now: float, path: str, label: str, body_hash: int | None) -> None:
        """Count one request that arrived at ``now`` and got ``label`` as its outcome."""
        self.total += 1
        self.arrivals.append(now)
        self.by_path[path] = self.by_path.get(path, 0) + 1
        self.by_status[label] = self.by_status.get(label, 0) + 1
        if label == "429":
            self.rate_limited += 1
        if body_hash is not None:
            self.with_body += 1
            if body_hash in self.seen_bodies:
                self.repeated_bodies.add(body_hash)
            else:
                self.seen_bodies.add(body_hash)

    def add_tokens(self, prompt: int, completion: int) -> None:
        """Count the usage of an answered request."""
        self.prompt_tokens += prompt
        self.completion_tokens += completion

    def max_window(self, width: float = 1.0) -> int:
        """Most arrivals within any sliding window of ``width`` seconds (O(n))."""
        times = self.arrivals
        best = 0
        start = 0
        # Arrivals are appended in time order, so a two-pointer sweep suffices.
        for end, t in enumerate(times):
            while t - times[start] >= width:
                start += 1
            best = max(best, end - start + 1)
        return best

    def snapshot(self) -> dict[str, Any]:
        """The JSON document served at ``GET /_mock/stats``."""
        return {
            "total": self.total,
            "by_status": dict(self.by_status),
            "by_path": dict(self.by_path),
            "max_1s_window": self.max_window(1.0),
            "first_arrival": self.arrivals[0] if self.arrivals else None,
            "last_arrival": self.arrivals[-1] if self.arrivals else None,
            "rate_limited": self.rate_limited,
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "by_body_hash_repeats": len(self.repeated_bodies),
            "resent": self.with_body - len(self.seen_bodies),
        }


class RequestLog:
    """Buffered JSONL request log, flushed every second and on close."""

    __slots__ = ("_buffer", "_file", "_task")

    def __init__(self, path: str) -> None:
        # One log per server run: an old file from a previous run is replaced.
        self._file: IO[bytes] = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._buffer: list[bytes] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the once-a-second flusher in the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._flush_every_second())

    def write(self, t: float, path: str, status: int | str, body_hash: str, custom: str) -> None:
        """Queue one line; it reaches the file at the next flush."""
        line = {"t": t, "path": path, "status": status, "body_hash": body_hash, "custom": custom}
        self._buffer.append(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))

    def flush(self) -> None:
        """Write everything queued so far."""
        if self._buffer:
            self._file.write(b"".join(self._buffer))
            self._buffer.clear()
            self._file.flush()

    async def _flush_every_second(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.flush()

    async def close(self) -> None:
        """Stop the flusher, write the rest and close the file."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()
        self._file.close()
