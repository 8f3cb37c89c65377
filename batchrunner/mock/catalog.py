"""The model catalogue served by ``GET /v1/models`` and used to reject unknown models."""

from __future__ import annotations

from typing import Any

import orjson

from batchrunner.mock.content import CREATED

_CHAT = {"completion_chat": True, "function_calling": True}

# id -> (capabilities, max_context_length). Any listed model is accepted on any
# endpoint; the mock does not check that e.g. embeddings go to mistral-embed.
_MODELS: dict[str, tuple[dict[str, bool], int]] = {
    "mistral-small-latest": ({**_CHAT, "vision": True}, 131072),
    "mistral-medium-latest": ({**_CHAT, "vision": True}, 131072),
    "mistral-large-latest": (_CHAT, 131072),
    "open-mistral-nemo": (_CHAT, 131072),
    "ministral-8b-latest": (_CHAT, 131072),
    "ministral-3b-latest": (_CHAT, 131072),
    "codestral-latest": ({**_CHAT, "completion_fim": True}, 262144),
    "mistral-embed": ({}, 8192),
}

MODEL_IDS: frozenset[str] = frozenset(_MODELS)


def _card(model_id: str, capabilities: dict[str, bool], context: int) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": CREATED,
        "owned_by": "mistralai",
        "capabilities": {
            "completion_chat": False,
            "completion_fim": False,
            "function_calling": False,
            "fine_tuning": False,
            "vision": False,
            "classification": False,
            **capabilities,
        },
        "name": model_id,
        "description": f"Mock of {model_id}",
        "max_context_length": context,
        "aliases": [],
        "deprecation": None,
        "default_model_temperature": 0.3,
        "type": "base",
    }


#: The ``ModelList`` body, built once: it never changes.
MODELS_BODY: bytes = orjson.dumps(
    {"object": "list", "data": [_card(m, caps, ctx) for m, (caps, ctx) in _MODELS.items()]}
)
