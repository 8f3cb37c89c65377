"""``dlq summary``: what is still dead, counted by status and type, messages grouped."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from batchrunner.dlq.entries import DeadLetter
from batchrunner.vocabulary import failure_key

__all__ = ["MessageGroup", "StatusCount", "Summary", "normalise", "summarise"]

# Order matters: quoted strings first (their insides are not looked at again), then
# uuids and long hex runs, then words holding digits.
_QUOTED = re.compile(r"\"[^\"\n]*\"|(?<!\w)'[^'\n]*'(?!\w)")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b")
_WORD = re.compile(r"[\w-]*\d[\w-]*")
_NUMBER = re.compile(r"[-+]?\d+")
_DIGITS = re.compile(r"\d+")
_VERSION = re.compile(r"v\d+")
_HEX = re.compile(r"(?=.*\d)[0-9a-fA-F]{8,}")


@functools.lru_cache(maxsize=4096)  # a large file repeats a few messages many times
def normalise(message: str) -> str:
    """A message with its variable parts replaced, so alike messages group together.

    Quoted strings become ``'<s>'``, numbers ``<n>``, and uuids, long hex runs and words
    that mix lowercase letters and digits (ids, model names such as ``foo-1``) ``<id>``.
    Upper-case names such as ``UTF-8`` and API versions (``v1``) are kept: they are not ids.
    """
    text = _QUOTED.sub("'<s>'", " ".join(message.split()))
    text = _UUID.sub("<id>", text)
    return _WORD.sub(_word, text)


def _word(match: re.Match[str]) -> str:
    word = match.group(0)
    if _NUMBER.fullmatch(word):
        return "<n>"
    if _VERSION.fullmatch(word):  # /v1/chat/completions names an API, not an item
        return word
    if _HEX.fullmatch(word) or any(c.islower() for c in word):
        return "<id>"
    if any(c.isupper() for c in word):
        return word
    return _DIGITS.sub("<n>", word)  # digits and separators only, e.g. 12-34


@dataclass(frozen=True, slots=True)
class StatusCount:
    status_code: int | None
    type: str
    count: int


@dataclass(frozen=True, slots=True)
class MessageGroup:
    """Messages alike once normalised; ``example`` is the first one seen."""

    pattern: str
    example: str
    count: int
    first_line: int | None
    last_line: int | None


@dataclass(frozen=True, slots=True)
class Summary:
    total: int
    by_status: list[StatusCount]
    #: Counts by failure key, as the run summary and ``status`` count them.
    by_key: dict[str, int]
    messages: list[MessageGroup]
    #: Message groups beyond the ``top`` shown.
    more_messages: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class _Group:
    example: str
    count: int = 0
    first: int | None = None
    last: int | None = None

    def add(self, line: int | None) -> None:
        self.count += 1
        if line is not None:
            self.first = line if self.first is None else min(self.first, line)
            self.last = line if self.last is None else max(self.last, line)


def summarise(entries: Iterable[DeadLetter], top: int = 10) -> Summary:
    """Counts by (status code, type) and the ``top`` most common normalised messages."""
    total = 0
    by_status: Counter[tuple[int | None, str]] = Counter()
    groups: dict[str, _Group] = {}
    for e in entries:
        total += 1
        by_status[(e.status_code, e.type)] += 1
        groups.setdefault(normalise(e.message), _Group(e.message)).add(e.line)
    statuses = [StatusCount(s, t, n) for (s, t), n in by_status.items()]
    statuses.sort(key=lambda s: (-s.count, s.status_code or 0, s.type))
    by_key: Counter[str] = Counter()
    for c in statuses:
        by_key[failure_key(c.status_code, c.type)] += c.count
    ranked = sorted(groups.items(), key=lambda kv: (-kv[1].count, kv[0]))
    shown = [MessageGroup(p, g.example, g.count, g.first, g.last) for p, g in ranked[:top]]
    return Summary(total, statuses, dict(by_key), shown, max(len(ranked) - top, 0))
