"""The protocol both clients implement, and reading token usage from an answer."""

from __future__ import annotations

from typing import Any, Protocol

from batchrunner.vocabulary import Failure, Success

__all__ = ["Client", "usage_of"]


class Client(Protocol):
    async def send(self, endpoint: str, body: dict[str, Any]) -> Success | Failure:
        """One attempt, bounded by the run's timeout. Never raises for a failed request."""
        ...

    async def warm_up(self) -> None:
        """Make the first connection, so the first paced sends are not held up together."""
        ...

    async def aclose(self) -> None: ...


def usage_of(body: dict[str, Any]) -> Success:
    usage = body.get("usage")
    prompt = completion = 0
    if isinstance(usage, dict):
        p, c = usage.get("prompt_tokens"), usage.get("completion_tokens")
        prompt = p if isinstance(p, int) else 0
        completion = c if isinstance(c, int) else 0
    return Success(body, prompt, completion)
