"""Fault injection: scripted per-request sequences and seeded random faults.

A fault is a string: an HTTP status ("429", "500", ...) or one of ``timeout``
(hold ``hang_s``, then answer normally), ``reset`` (drop the connection without
a response), ``garbage`` (200 whose body is not JSON), ``capacity`` (a 429 whose
body says the server is out of capacity, not that the client is too fast), and, for
scripts only, ``slow`` (wait 0.3 s, then answer normally), ``quota`` (429 "monthly
quota exceeded" without Retry-After) and the answers a hostile or broken server sends
(:data:`~batchrunner.mock.replies.POISON`): ``deep`` (a 200 chat completion with a
field nested 300 levels), ``deeperror`` (a 500 nested like it, without a message),
``html`` (a 200 HTML page), ``shapeless`` (a 200 ``{"foo": 1}``) and ``error200`` (a
200 whose body is a 503 error object).

Script syntax: ``[[mock:F1,F2,...]]`` anywhere in the request's text. Attempt k
(1-based) of the same request gets Fk; once the list is spent it succeeds.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Mapping

from batchrunner.mock.config import RANDOM_FAULT_NAMES, is_error_status
from batchrunner.mock.replies import POISON

MARKER_PREFIX = "[[mock:"
_MARKER_RE = re.compile(r"\[\[mock:([^\]]*)\]\]")
SCRIPT_ONLY_NAMES: frozenset[str] = frozenset({"slow", "quota", *POISON})
SLOW_S = 0.3


def find_marker(texts: Iterable[str]) -> str | None:
    """The first ``[[mock:...]]`` marker (its full text) in ``texts``, if any."""
    for text in texts:
        # The substring test keeps the common no-marker case free of regex work.
        if MARKER_PREFIX in text and (match := _MARKER_RE.search(text)):
            return match.group(0)
    return None


def parse_marker(marker: str) -> list[str]:
    """Fault list of a marker; ValueError on an unknown fault name."""
    inner = marker[len(MARKER_PREFIX) : -2]
    faults = [f.strip().lower() for f in inner.split(",") if f.strip()]
    for fault in faults:
        if not (is_error_status(fault) or fault in RANDOM_FAULT_NAMES | SCRIPT_ONLY_NAMES):
            raise ValueError(f"mock: unknown fault {fault!r} in {marker}")
    return faults


class ScriptedFaults:
    """Counts attempts per (marker, canonical body) and hands out the scripted fault."""

    __slots__ = ("_attempts",)

    def __init__(self) -> None:
        self._attempts: dict[bytes, int] = {}

    def next_fault(self, marker: str, faults: list[str], canonical: bytes) -> str | None:
        """Fault for this attempt of the request, or None once the script is spent."""
        key = hashlib.blake2b(marker.encode() + b"\0" + canonical, digest_size=16).digest()
        attempt = self._attempts.get(key, 0)
        self._attempts[key] = attempt + 1
        return faults[attempt] if attempt < len(faults) else None


class RandomFaults:
    """Draws one fault (or None) per request from ``error_rates`` with a seeded RNG.

    One draw per call in arrival order, so a given seed and arrival order always
    produce the same fault sequence.
    """

    __slots__ = ("_rng", "_table")

    def __init__(self, rates: Mapping[str, float], seed: int) -> None:
        self._rng = random.Random(seed)
        # Sorted so the outcome does not depend on how the mapping was spelled.
        table: list[tuple[float, str]] = []
        edge = 0.0
        for name in sorted(rates):
            if rates[name] > 0:
                edge += rates[name]
                table.append((edge, name))
        self._table = table

    def draw(self) -> str | None:
        """The fault for the next request, or None for a normal answer."""
        if not self._table:
            return None
        x = self._rng.random()
        for edge, name in self._table:
            if x < edge:
                return name
        return None
