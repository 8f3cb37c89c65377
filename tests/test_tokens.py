"""Token estimates before sending: prompt per endpoint, the fallback counter, completions."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchrunner.limits import tokens
from batchrunner.limits.tokens import (
    CHAT,
    EMBEDDING_INPUT_OVERHEAD_TOKENS,
    EMBEDDINGS,
    EXACT_MAX_CHARS,
    FIM,
    FIM_OVERHEAD_TOKENS,
    PER_MESSAGE_OVERHEAD_TOKENS,
    CompletionEstimator,
    estimate_prompt_tokens,
    estimate_text_tokens,
    fallback_text_tokens,
)

# Realistic prompts: instructions, prose, an e-mail, code, JSON, markdown with links.
SAMPLES = [
    "Summarise the following customer review in one sentence and classify its sentiment "
    "as positive, negative or neutral: The delivery was two days late, but the blender "
    "itself is powerful, quiet and easy to clean. Support answered within an hour.",
    "You are a helpful assistant that extracts structured data. Return only valid JSON "
    "with the keys name, date and amount; use null for anything that is missing.",
    "Hi Sam,\n\nThanks for sending the quarterly figures. Could you double-check the "
    "numbers for March? Revenue looks about 12% higher than in the dashboard, and I want "
    "to be sure before Thursday's board meeting.\n\nBest,\nAlex",
    "def merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:\n"
    "    merged: list[tuple[int, int]] = []\n"
    "    for start, end in sorted(intervals):\n"
    "        if merged and start <= merged[-1][1]:\n"
    "            merged[-1] = (merged[-1][0], max(merged[-1][1], end))\n"
    "        else:\n"
    "            merged.append((start, end))\n"
    "    return merged\n",
    '{"order_id": 48213, "items": [{"sku": "BLX-200", "qty": 2, "price": 49.99}, '
    '{"sku": "CUP-12", "qty": 1, "price": 7.5}], "shipped": false, "eta": "2025-03-14"}',
    "## Installation\n\nRun `pip install batchrunner`, then see "
    "[the usage guide](https://example.com/docs/usage#jobs) for job files. Version 0.1.0 "
    "needs Python 3.11 or newer.",
    "SELECT c.name, COUNT(o.id) AS orders FROM customers c LEFT JOIN orders o "
    "ON o.customer_id = c.id WHERE o.created_at >= '2024-01-01' GROUP BY c.name "
    "ORDER BY orders DESC LIMIT 10;",
    "Translate into French, keeping the tone informal: Hey! We're running a bit late, "
    "grab a table on the terrace and order whatever you like, we'll be there in ten.",
]


@pytest.fixture
def fallback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the estimates use the calibrated fallback whether or not mistral-common is
    installed, so the expected numbers below do not depend on the environment."""
    monkeypatch.setattr(tokens, "load_exact_tokenizer", lambda: None)


@pytest.fixture
def fresh_loader() -> Iterator[None]:
    """Forget the cached tokenizer before and after a test that loads it differently."""
    tokens.load_exact_tokenizer.cache_clear()
    yield
    tokens.load_exact_tokenizer.cache_clear()


def fb(*texts: str) -> int:
    return sum(fallback_text_tokens(t) for t in texts)


# --- prompt estimates per endpoint --------------------------------------------------


@pytest.mark.usefixtures("fallback_only")
def test_chat_counts_each_message_plus_its_overhead() -> None:
    body = {
        "model": "mistral-small-latest",
        "messages": [
            {"role": "system", "content": SAMPLES[1]},
            {"role": "user", "content": SAMPLES[0]},
        ],
    }
    assert estimate_prompt_tokens(body, CHAT) == fb(SAMPLES[1], SAMPLES[0]) + (
        2 * PER_MESSAGE_OVERHEAD_TOKENS
    )


@pytest.mark.usefixtures("fallback_only")
def test_chat_list_content_counts_text_parts_only() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": SAMPLES[0]},
                    {"type": "image_url", "image_url": "https://example.com/a.png"},
                    {"type": "text", "text": SAMPLES[2]},
                    {"text": SAMPLES[3]},  # no type: a text part
                    {"type": "text", "text": None},
                    "stray string",
                    42,
                ],
            }
        ]
    }
    expected = fb(SAMPLES[0], SAMPLES[2], SAMPLES[3]) + PER_MESSAGE_OVERHEAD_TOKENS
    assert estimate_prompt_tokens(body, CHAT) == expected


@pytest.mark.usefixtures("fallback_only")
def test_chat_counts_tool_definitions_and_tool_calls() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    call = {"function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    plain = {"messages": [{"role": "user", "content": "Weather in Paris?"}]}
    with_tools = {**plain, "tools": tools}
    with_call = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
        ]
    }
    base = estimate_prompt_tokens(plain, CHAT)
    assert estimate_prompt_tokens(with_tools, CHAT) > base + 10
    assert estimate_prompt_tokens(with_call, CHAT) == (
        base + PER_MESSAGE_OVERHEAD_TOKENS + fb("get_weather", '{"city": "Paris"}')
    )
    # Arguments given as an object are counted as their JSON text.
    as_object = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    with_call["messages"][1]["tool_calls"] = [as_object]  # type: ignore[index]
    assert estimate_prompt_tokens(with_call, CHAT) > base + PER_MESSAGE_OVERHEAD_TOKENS


@pytest.mark.usefixtures("fallback_only")
def test_embeddings_input_string_or_list() -> None:
    one = estimate_prompt_tokens({"model": "mistral-embed", "input": SAMPLES[0]}, EMBEDDINGS)
    assert one == fb(SAMPLES[0]) + EMBEDDING_INPUT_OVERHEAD_TOKENS
    many = estimate_prompt_tokens({"input": [SAMPLES[0], SAMPLES[2], 7, None]}, EMBEDDINGS)
    assert many == fb(SAMPLES[0], SAMPLES[2]) + 2 * EMBEDDING_INPUT_OVERHEAD_TOKENS


@pytest.mark.usefixtures("fallback_only")
def test_fim_prompt_plus_suffix() -> None:
    prompt, suffix = SAMPLES[3][:120], SAMPLES[3][120:]
    both = estimate_prompt_tokens({"prompt": prompt, "suffix": suffix}, FIM)
    assert both == fb(prompt, suffix) + FIM_OVERHEAD_TOKENS
    assert estimate_prompt_tokens({"prompt": prompt}, FIM) == fb(prompt) + FIM_OVERHEAD_TOKENS
    assert estimate_prompt_tokens({"prompt": prompt, "suffix": None}, FIM) == (
        fb(prompt) + FIM_OVERHEAD_TOKENS
    )


@pytest.mark.parametrize(
    ("body", "endpoint"),
    [
        ({}, CHAT),
        ({"messages": None}, CHAT),
        ({"messages": "hello"}, CHAT),
        ({"messages": []}, CHAT),
        ({}, EMBEDDINGS),
        ({"input": None}, EMBEDDINGS),
        ({"input": 12}, EMBEDDINGS),
        ({"input": []}, EMBEDDINGS),
        ({}, FIM),
        ({"prompt": None, "suffix": "x = 1"}, FIM),
        ({"prompt": ["a"]}, FIM),
    ],
)
def test_missing_or_mistyped_fields_count_zero(body: dict[str, Any], endpoint: str) -> None:
    assert estimate_prompt_tokens(body, endpoint) == 0


@pytest.mark.usefixtures("fallback_only")
def test_odd_messages_count_only_their_overhead() -> None:
    body = {"messages": [None, "text", {"role": "user"}, {"role": "user", "content": 5}]}
    assert estimate_prompt_tokens(body, CHAT) == 2 * PER_MESSAGE_OVERHEAD_TOKENS


def test_unknown_endpoint_is_an_error() -> None:
    with pytest.raises(ValueError, match="/v1/ocr"):
        estimate_prompt_tokens({"messages": []}, "/v1/ocr")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
_bodies = st.dictionaries(
    st.sampled_from(["messages", "input", "prompt", "suffix", "tools", "max_tokens", "x"]),
    _json
    | st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "role": st.text(max_size=8),
                "content": _json,
                "tool_calls": _json,
            },
        ),
        max_size=4,
    ),
)


# No deadline: the first example may load the optional tokenizer (~1 s).
@settings(deadline=None)
@given(body=_bodies, endpoint=st.sampled_from([CHAT, EMBEDDINGS, FIM]))
def test_any_json_body_gets_an_estimate_without_crashing(
    body: dict[str, Any], endpoint: str
) -> None:
    assert estimate_prompt_tokens(body, endpoint) >= 0
    assert CompletionEstimator(endpoint).estimate(body) >= 0


# --- the fallback counter -----------------------------------------------------------


def test_fallback_is_zero_only_for_empty_text() -> None:
    assert fallback_text_tokens("") == 0
    assert fallback_text_tokens("a") == 1
    assert fallback_text_tokens(" ") == 1


@given(st.text())
def test_fallback_takes_any_string(text: str) -> None:
    assert fallback_text_tokens(text) >= (1 if text else 0)


def test_a_lone_surrogate_does_not_crash_the_estimate() -> None:
    # json.loads accepts "\ud800", and UTF-8 cannot encode it.
    text = "caf\u00e9 \ud800 ok"
    assert fallback_text_tokens(text) >= 3
    assert estimate_text_tokens(text) >= 3
    assert estimate_prompt_tokens({"messages": [{"role": "user", "content": text}]}, CHAT) > 3


@given(st.text(max_size=200), st.text(max_size=200))
def test_fallback_never_shrinks_when_text_is_added(a: str, b: str) -> None:
    assert fallback_text_tokens(a + b) >= max(fallback_text_tokens(a), fallback_text_tokens(b))


def test_fallback_is_conservative_against_a_quarter_of_the_characters() -> None:
    # len/4 is the usual rule of thumb. Plain English prose needs fewer tokens than that
    # under Tekken (~4.5 characters each), code, JSON and markup more, so per text the
    # fallback may sit a little under len/4 on prose, but never far, and over in total.
    for text in SAMPLES:
        assert fallback_text_tokens(text) >= 0.8 * len(text) / 4, text[:40]
    quarter = sum(len(t) for t in SAMPLES) / 4
    assert quarter <= fb(*SAMPLES) <= 1.5 * quarter


def test_fallback_counts_digits_and_cjk_as_dearer() -> None:
    # Tekken splits numbers into single digits; CJK runs ~1 token per 1-2 characters.
    assert fallback_text_tokens("1234567890") >= 10
    assert fallback_text_tokens("日本語のテキストを翻訳してください") >= 12


# --- the exact counter and how it is chosen -----------------------------------------


def _use_counter(monkeypatch: pytest.MonkeyPatch, counter: Callable[[str], int]) -> None:
    monkeypatch.setattr(tokens, "load_exact_tokenizer", lambda: counter)


def test_exact_counter_is_used_up_to_the_length_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    _use_counter(monkeypatch, lambda text: 7)
    assert estimate_text_tokens("x" * EXACT_MAX_CHARS) == 7
    long = "word " * (EXACT_MAX_CHARS // 5 + 1)
    assert estimate_text_tokens(long) == fallback_text_tokens(long)


def test_a_failing_exact_counter_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(text: str) -> int:
        raise RuntimeError("tokenizer rejected the text")

    _use_counter(monkeypatch, broken)
    assert estimate_text_tokens(SAMPLES[0]) == fallback_text_tokens(SAMPLES[0])


@pytest.mark.usefixtures("fresh_loader")
def test_missing_mistral_common_means_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_module(name: str, package: str | None = None) -> Any:
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(importlib, "import_module", no_such_module)
    assert tokens.load_exact_tokenizer() is None
    assert estimate_text_tokens(SAMPLES[0]) == fallback_text_tokens(SAMPLES[0])


def _mistral_common(module: str) -> Any:
    """A mistral-common module, or skip the test when the optional package is absent."""
    pytest.importorskip("mistral_common")
    return importlib.import_module(f"mistral_common.{module}")


def _tekken() -> Any:
    """mistral-common's own Tekken v3 instruct tokenizer (the same tekken_240718.json)."""
    return _mistral_common("tokens.tokenizers.mistral").MistralTokenizer.v3(is_tekken=True)


def test_exact_counter_matches_mistral_common_tekken() -> None:
    tekken = _tekken().instruct_tokenizer.tokenizer
    counter = tokens.load_exact_tokenizer()
    assert counter is not None
    for text in SAMPLES:
        assert counter(text) == len(tekken.encode(text, bos=False, eos=False))
    # Special-token strings in user text are plain text, not an error.
    assert counter("<s>[INST] hi [/INST]") > 3


def test_fallback_is_conservative_against_the_real_tokenizer() -> None:
    _mistral_common("tokens.tokenizers.tekken")
    counter = tokens.load_exact_tokenizer()
    assert counter is not None
    for text in SAMPLES:
        # Never much under on any one text...
        assert fallback_text_tokens(text) >= 0.9 * counter(text), text[:40]
    # ...over in total, but by a margin, not a multiple.
    exact = sum(counter(t) for t in SAMPLES)
    assert exact <= fb(*SAMPLES) <= 1.4 * exact


def test_chat_estimate_covers_the_real_chat_template() -> None:
    messages = _mistral_common("protocol.instruct.messages")
    request_type = _mistral_common("protocol.instruct.request").ChatCompletionRequest
    body = {
        "messages": [
            {"role": "system", "content": SAMPLES[1]},
            {"role": "user", "content": SAMPLES[4]},
            {"role": "assistant", "content": SAMPLES[1][:60]},
            {"role": "user", "content": SAMPLES[7]},
        ]
    }
    request = request_type(
        messages=[
            messages.SystemMessage(content=SAMPLES[1]),
            messages.UserMessage(content=SAMPLES[4]),
            messages.AssistantMessage(content=SAMPLES[1][:60]),
            messages.UserMessage(content=SAMPLES[7]),
        ]
    )
    real = len(_tekken().encode_chat_completion(request).tokens)
    estimate = estimate_prompt_tokens(body, CHAT)
    assert real <= estimate <= real + 4 * PER_MESSAGE_OVERHEAD_TOKENS


# --- completions --------------------------------------------------------------------


def test_default_completion_estimates_per_endpoint() -> None:
    assert CompletionEstimator(CHAT).estimate({}) == 256
    assert CompletionEstimator(FIM).estimate({}) == 256
    assert CompletionEstimator(EMBEDDINGS).estimate({}) == 0
    assert CompletionEstimator(CHAT, default=40).estimate({}) == 40


def test_max_tokens_wins() -> None:
    estimator = CompletionEstimator(CHAT)
    for _ in range(50):
        estimator.observe(10)
    assert estimator.estimate({"max_tokens": 1000}) == 1000
    assert estimator.estimate({"max_tokens": 0}) == 0
    # Not an int: ignored, the running average is used.
    assert estimator.estimate({"max_tokens": True}) == 10
    assert estimator.estimate({"max_tokens": "1000"}) == 10
    assert estimator.estimate({"max_tokens": None}) == 10


def test_embeddings_never_reserve_completion_tokens() -> None:
    estimator = CompletionEstimator(EMBEDDINGS)
    estimator.observe(0)
    assert estimator.estimate({"max_tokens": 100}) == 0


def test_first_observations_replace_the_default_quickly() -> None:
    estimator = CompletionEstimator(CHAT)
    estimator.observe(40)
    assert estimator.estimate({}) == 40
    estimator.observe(60)
    assert estimator.average == pytest.approx(50)


def test_running_average_converges_and_follows_a_drift() -> None:
    estimator = CompletionEstimator(CHAT, alpha=0.05)
    for i in range(400):
        estimator.observe(80 + (i % 5) * 10)  # mean 100
    assert estimator.average == pytest.approx(100, abs=5)
    for _ in range(150):
        estimator.observe(300)
    assert estimator.average == pytest.approx(300, abs=1)
    assert estimator.estimate({}) == math.ceil(estimator.average)


def test_one_long_answer_does_not_swing_the_estimate() -> None:
    estimator = CompletionEstimator(CHAT, alpha=0.05)
    for _ in range(100):
        estimator.observe(100)
    estimator.observe(4000)
    assert estimator.estimate({}) <= 100 + 0.05 * 3900 + 1


@pytest.mark.parametrize(
    "make",
    [
        lambda: CompletionEstimator("/v1/ocr"),
        lambda: CompletionEstimator(CHAT, alpha=0.0),
        lambda: CompletionEstimator(CHAT, alpha=1.5),
        lambda: CompletionEstimator(CHAT, default=-1),
        lambda: CompletionEstimator(CHAT, default=float("nan")),
        lambda: CompletionEstimator(CHAT).observe(-1),
    ],
)
def test_completion_estimator_rejects_bad_values(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()
