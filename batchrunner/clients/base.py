"""The protocol both clients implement, reading token usage from an answer, and which
servers are reached without a proxy."""

from __future__ import annotations

import ipaddress
from typing import Any, Protocol
from urllib.parse import urlsplit

from batchrunner.vocabulary import Failure, Success

__all__ = ["Client", "on_loopback", "usage_of"]


class Client(Protocol):
    async def send(self, endpoint: str, body: dict[str, Any]) -> Success | Failure:
        """One attempt, bounded by the run's timeout. Never raises for a failed request."""
        ...

    async def warm_up(self) -> None:
        """Make the first connection, so the first paced sends are not held up together."""
        ...

    async def aclose(self) -> None: ...


def usage_of(body: dict[str, Any], raw: bytes = b"") -> Success:
    """A success of ``body`` (sent as ``raw``), with the tokens its ``usage`` reports. A
    count that is not a whole number of at least 0 counts as 0: whatever a server reports,
    the run's counters and cost stay sane."""
    usage = body.get("usage")
    prompt = completion = 0
    if isinstance(usage, dict):
        prompt = _count(usage.get("prompt_tokens"))
        completion = _count(usage.get("completion_tokens"))
    return Success(body, prompt, completion, raw)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def on_loopback(server_url: str) -> bool:
    """Whether ``server_url`` is on this machine's loopback (``localhost``, 127.0.0.0/8,
    ``::1``): no proxy can reach it, so no proxy is asked, whatever the environment names
    (Go's ``net/http`` does the same). That keeps ``run --mock`` working behind a proxy."""
    try:
        host = urlsplit(server_url).hostname or ""
        return host == "localhost" or host.endswith(".localhost") or _loopback_ip(host)
    except ValueError:  # not a URL: nothing to reach
        return False


def _loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, not an address
        return False
