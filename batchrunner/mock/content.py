"""Deterministic answer bodies: same canonical request, byte-identical answer.

Nothing here looks at the clock, the attempt number or any random state: ids are
hashes of the canonical request body and ``created`` is a constant, so a test can
tell which request a result belongs to and a retried request gets the same bytes.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import orjson

CREATED = 1_700_000_000
ECHO_CHARS = 200
DEFAULT_MAX_TOKENS = 16

# Top-level fields the SDK always sends with their default value but a plain
# HTTP client usually omits; dropping them makes both spellings one request.
_DEFAULTS_DROPPED: dict[str, object] = {"stream": False}


def canonical_body(obj: dict[str, Any]) -> bytes:
    """Request body re-dumped with sorted keys, nulls and SDK defaults dropped.

    The SDK also adds ``"prefix": false`` to assistant messages; that is dropped too, so
    both clients' spellings of one request are one request.
    """
    slim = {
        k: v
        for k, v in obj.items()
        if v is not None and not (k in _DEFAULTS_DROPPED and v is _DEFAULTS_DROPPED[k])
    }
    for k, v in slim.items():  # the SDK sends `temperature: 1` as 1.0
        if isinstance(v, float) and v.is_integer():
            slim[k] = int(v)
    messages = slim.get("messages")
    if isinstance(messages, list):
        slim["messages"] = [_slim_message(m) for m in messages]
    return orjson.dumps(slim, option=orjson.OPT_SORT_KEYS)


def _slim_message(message: object) -> object:
    if not isinstance(message, dict):
        return message
    return {
        k: v for k, v in message.items() if v is not None and not (k == "prefix" and v is False)
    }


def body_digest(data: bytes) -> bytes:
    """16-byte blake2b digest; the first 8 bytes are the stats/log body hash."""
    return hashlib.blake2b(data, digest_size=16).digest()


def chunk_text(content: object) -> str:
    """Text of a message ``content``: a string, or the text parts of a chunk list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            c["text"] for c in content if isinstance(c, dict) and isinstance(c.get("text"), str)
        )
    return ""


def message_texts(messages: object) -> list[str]:
    """The text of every message, in order; malformed entries count as empty."""
    if not isinstance(messages, list):
        return []
    return [chunk_text(m.get("content")) if isinstance(m, dict) else "" for m in messages]


def last_user_text(messages: list[Any]) -> str:
    """Text of the last ``role: user`` message ("" when there is none)."""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            return chunk_text(m.get("content"))
    return ""


def first_user_text(messages: list[Any]) -> str:
    """Text of the first ``role: user`` message ("" when there is none)."""
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "user":
            return chunk_text(m.get("content"))
    return ""


def embedding_inputs(value: object) -> list[str]:
    """``input`` of an embeddings request as a list (a bare string is one input)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def prompt_tokens(texts: list[str]) -> int:
    """Token estimate of a prompt: a quarter of its characters, at least 1."""
    return max(1, sum(len(t) for t in texts) // 4)


def completion_tokens(content: str, max_tokens: object) -> int:
    """Token estimate of a completion, capped by the request's ``max_tokens``."""
    cap = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else DEFAULT_MAX_TOKENS
    return min(cap, max(1, len(content) // 4))


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion_body(digest: bytes, model: str, content: str, prompt: int, completion: int) -> bytes:
    """A chat/FIM ``ChatCompletionResponse`` body echoing ``content``."""
    return orjson.dumps(
        {
            "id": "cmpl-" + digest.hex(),
            "object": "chat.completion",
            "model": model,
            "created": CREATED,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": content,
                        "tool_calls": None,
                        "prefix": False,
                    },
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(prompt, completion),
        }
    )


def embed(text: str, dim: int) -> list[float]:
    """A vector in [-1, 1]^dim derived only from ``text`` (blake2b in counter mode)."""
    raw = b""
    counter = 0
    seed = text.encode("utf-8", "surrogatepass")
    while len(raw) < 2 * dim:
        raw += hashlib.blake2b(seed, digest_size=64, salt=counter.to_bytes(16, "little")).digest()
        counter += 1
    shorts = struct.unpack_from(f"<{dim}H", raw)
    return [round(s / 32767.5 - 1.0, 6) for s in shorts]


def embeddings_body(digest: bytes, model: str, inputs: list[str], dim: int, prompt: int) -> bytes:
    """An ``EmbeddingResponse`` body with one hash-derived vector per input."""
    return orjson.dumps(
        {
            "id": digest.hex(),
            "object": "list",
            "data": [
                {"object": "embedding", "embedding": embed(t, dim), "index": i}
                for i, t in enumerate(inputs)
            ],
            "model": model,
            "usage": _usage(prompt, 0),
        }
    )
