"""The three POST endpoints: how each is validated, searched for markers and answered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from batchrunner.mock import content as c
from batchrunner.mock.catalog import MODEL_IDS
from batchrunner.mock.replies import (
    Reply,
    error_reply,
    invalid_model_reply,
    missing,
    validation_reply,
    wrong_type,
)

Body = dict[str, Any]
CUSTOM_CHARS = 80


class Answer(NamedTuple):
    """A successful answer, computed before any limit or fault is applied."""

    body: bytes
    prompt_tokens: int
    completion_tokens: int


class Endpoint(NamedTuple):
    """Per-endpoint behaviour, looked up by path."""

    #: 422/400 reply for a bad body, None when the body is acceptable.
    validate: Callable[[Body], Reply | None]
    #: Texts searched for a ``[[mock:...]]`` marker (tolerates malformed bodies).
    texts: Callable[[Body], list[str]]
    #: The request's "custom" text for the log (first user message / input / prompt).
    custom: Callable[[Body], str]
    #: The success body; only called on a validated body.
    answer: Callable[[Body, bytes, int], Answer]


def _check_model(body: Body) -> Reply | None:
    model = body.get("model")
    if model is None:
        return validation_reply([missing("model")])
    if not isinstance(model, str):
        return validation_reply([wrong_type("model", "string", model)])
    if model not in MODEL_IDS:
        return invalid_model_reply(model)
    return None


def _check_common(body: Body) -> Reply | None:
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)):
        return validation_reply([wrong_type("max_tokens", "integer", max_tokens)])
    if body.get("stream") is True:
        return error_reply(400, "mock: streaming is not supported", "invalid_request_error")
    return _check_model(body)


# --- chat ------------------------------------------------------------------


def _chat_validate(body: Body) -> Reply | None:
    messages = body.get("messages")
    if messages is None:
        return validation_reply([missing("messages")])
    if not isinstance(messages, list):
        return validation_reply([wrong_type("messages", "list", messages)])
    return _check_common(body)


def _chat_answer(body: Body, digest: bytes, _dim: int) -> Answer:
    messages: list[Any] = body["messages"]
    text = "echo: " + c.last_user_text(messages)[: c.ECHO_CHARS]
    prompt = c.prompt_tokens(c.message_texts(messages))
    completion = c.completion_tokens(text, body.get("max_tokens"))
    return Answer(
        c.completion_body(digest, body["model"], text, prompt, completion), prompt, completion
    )


def _chat_custom(body: Body) -> str:
    messages = body.get("messages")
    return c.first_user_text(messages)[:CUSTOM_CHARS] if isinstance(messages, list) else ""


CHAT = Endpoint(
    _chat_validate, lambda b: c.message_texts(b.get("messages")), _chat_custom, _chat_answer
)


# --- embeddings ------------------------------------------------------------


def _emb_validate(body: Body) -> Reply | None:
    value = body.get("input")
    if value is None:
        return validation_reply([missing("input")])
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, str):
                bad = wrong_type("input", "string", item)
                bad["loc"] = ["body", "input", i]
                return validation_reply([bad])
    elif not isinstance(value, str):
        return validation_reply([wrong_type("input", "list", value)])
    return _check_model(body)


def _emb_answer(body: Body, digest: bytes, dim: int) -> Answer:
    inputs = c.embedding_inputs(body["input"])
    prompt = c.prompt_tokens(inputs)
    return Answer(c.embeddings_body(digest, body["model"], inputs, dim, prompt), prompt, 0)


def _emb_custom(body: Body) -> str:
    inputs = c.embedding_inputs(body.get("input"))
    return inputs[0][:CUSTOM_CHARS] if inputs else ""


EMBEDDINGS = Endpoint(
    _emb_validate, lambda b: c.embedding_inputs(b.get("input")), _emb_custom, _emb_answer
)


# --- FIM -------------------------------------------------------------------


def _fim_validate(body: Body) -> Reply | None:
    prompt = body.get("prompt")
    if prompt is None:
        return validation_reply([missing("prompt")])
    if not isinstance(prompt, str):
        return validation_reply([wrong_type("prompt", "string", prompt)])
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        return validation_reply([wrong_type("suffix", "string", suffix)])
    return _check_common(body)


def _fim_answer(body: Body, digest: bytes, _dim: int) -> Answer:
    prompt_text: str = body["prompt"]
    text = "echo: " + prompt_text[: c.ECHO_CHARS]
    prompt = c.prompt_tokens([prompt_text, body.get("suffix") or ""])
    completion = c.completion_tokens(text, body.get("max_tokens"))
    return Answer(
        c.completion_body(digest, body["model"], text, prompt, completion), prompt, completion
    )


def _prompt(body: Body) -> str:
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else ""


FIM = Endpoint(
    _fim_validate, lambda b: [_prompt(b)], lambda b: _prompt(b)[:CUSTOM_CHARS], _fim_answer
)

#: Path -> endpoint for the POST routes.
ENDPOINTS: dict[str, Endpoint] = {
    "/v1/chat/completions": CHAT,
    "/v1/embeddings": EMBEDDINGS,
    "/v1/fim/completions": FIM,
}
