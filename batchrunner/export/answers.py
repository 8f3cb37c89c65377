"""What people want from a request and its answer, read from the bodies the API uses:
the prompt's text, the answer's text or embedding, why it finished, its tokens. Pure
functions of JSON values; anything of another shape gives None."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Answer", "answer_of", "prompt_of"]


@dataclass(frozen=True, slots=True)
class Answer:
    """The useful part of a 200 body (chat, FIM or embeddings)."""

    text: str | None = None
    #: The first input's vector, or every vector when the request embedded several.
    embedding: list[float] | list[list[float]] | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def answer_of(body: Any) -> Answer:
    """The answer in a response body; an empty :class:`Answer` for anything else."""
    if not isinstance(body, dict):
        return Answer()
    usage = body.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    tokens = (_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")))
    data = body.get("data")
    if isinstance(data, list):
        vectors = [d.get("embedding") for d in data if isinstance(d, dict)]
        embedding: Any = vectors[0] if len(vectors) == 1 else vectors or None
        return Answer(embedding=embedding, prompt_tokens=tokens[0], completion_tokens=tokens[1])
    choices = body.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else {}
    first = first if isinstance(first, dict) else {}
    message = first.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    reason = first.get("finish_reason")
    return Answer(
        text=_text(content),
        finish_reason=reason if isinstance(reason, str) else None,
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
    )


def prompt_of(body: Any) -> str | list[Any] | None:
    """What was asked: the last user message's text, a FIM prompt, or the embeddings input."""
    if not isinstance(body, dict):
        return None
    messages = body.get("messages")
    if isinstance(messages, list):
        for m in reversed(messages):
            if isinstance(m, dict) and m.get("role") == "user":
                return _text(m.get("content"))
        return None
    for key in ("prompt", "input"):
        value = body.get(key)
        if isinstance(value, str | list):
            return value
    return None


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: the text ones, in order
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return "".join(p for p in parts if isinstance(p, str)) or None
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
