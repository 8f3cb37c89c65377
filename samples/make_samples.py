#!/usr/bin/env python3
"""Regenerate the sample inputs used by the README demo and by the job files in ``jobs/``.

Deterministic (seeded, no network, stdlib only): running it twice writes identical bytes.

    python samples/make_samples.py            # writes the files next to this script
    python samples/make_samples.py --out DIR  # writes them somewhere else

Files written:

* ``prompts.jsonl``      300 lines for /v1/chat/completions, with deliberate faults (see below)
* ``batch_format.jsonl``  50 lines in the Mistral Batch form ``{"custom_id", "body": {...}}``
* ``embeddings.jsonl``   100 lines for /v1/embeddings (``input`` is a string or a short list)
* ``fim.jsonl``           30 lines for /v1/fim/completions (``prompt`` + ``suffix``)

``prompts.jsonl`` carries, at the fixed line numbers in the tables below, retry markers
(``[[mock:429]]`` ...: the mock server fails the first attempts, then succeeds), permanent
markers (``[[mock:400]]`` ...: dead-lettered at once), five bad input lines (dead-lettered
without being sent), two blank lines (skipped) and a few lines without a ``custom_id``.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

SEED = 20240917

Json = dict[str, Any]
Message = dict[str, str]

# --------------------------------------------------------------------------------------
# Layout of prompts.jsonl: special lines sit at fixed 1-based line numbers, spread out.
# --------------------------------------------------------------------------------------

PROMPTS_LINES = 300
BLANK_LINES = frozenset({77, 188})
BAD_LINES: dict[int, str] = {
    31: "invalid_json",  # a truncated object
    96: "not_object",  # a JSON array (holding a request) instead of an object
    152: "no_request",  # {"custom_id": ...} and nothing to send
    203: "duplicate_id",  # re-uses the custom_id of DUPLICATE_OF
    257: "invalid_utf8",  # Latin-1 bytes in the middle of the line
}
DUPLICATE_OF = 42
#: Succeed after the listed faults (each list is shorter than any sensible max_attempts).
RETRY_MARKERS: dict[int, str] = {
    9: "429",
    27: "500",
    50: "503,429",
    84: "reset",
    110: "garbage",
    131: "429",
    160: "500",
    177: "503,429",
    199: "reset",
    232: "429",
    266: "garbage",
    295: "500",
}
#: Fail with a permanent status on the first attempt: dead-lettered, never retried.
PERMANENT_MARKERS: dict[int, str] = {58: "400", 139: "422", 221: "404", 290: "401"}
#: Good lines without a custom_id: their id is the line number ("19", ...).
NO_ID_LINES = frozenset({19, 64, 145, 214, 273})
#: Multi-turn ``messages`` lines with a system prompt (177 also carries a retry marker).
MULTI_TURN_LINES = frozenset({15, 38, 88, 117, 166, 177, 209, 244, 281})
#: Lines that name their own model instead of taking the job's default.
MODEL_OVERRIDES: dict[int, str] = {70: "mistral-large-latest", 250: "ministral-8b-latest"}

# --------------------------------------------------------------------------------------
# Content banks.
# --------------------------------------------------------------------------------------

CONCEPTS = [
    "the CAP theorem",
    "how HTTPS certificates are validated",
    "what a vector embedding is",
    "compound interest",
    "photosynthesis",
    "the difference between TCP and UDP",
    "exponential backoff with jitter",
    "how a Bloom filter works",
    "why inflation erodes savings",
    "what a database index does",
    "the greenhouse effect",
    "reference counting in CPython",
    "the token bucket rate limiter",
    "idempotency keys in payment APIs",
    "how vaccines train the immune system",
    "the Monty Hall problem",
    "eventual consistency",
    "how a transformer model uses attention",
    "what a Content Delivery Network is for",
    "the difference between a process and a thread",
]
AUDIENCES = [
    "a ten-year-old",
    "a new backend engineer",
    "a product manager",
    "a high-school student",
    "a non-technical executive",
    "a first-year computer science student",
]
LANGUAGES = ["French", "German", "Spanish", "Italian", "Portuguese", "Dutch", "Japanese", "Polish"]
TO_TRANSLATE = [
    "Your order has shipped and should arrive within three business days.",
    "We are sorry for the inconvenience; a full refund has been issued to your card.",
    "Please restart the router and wait two minutes before trying again.",
    "The meeting has been moved to Thursday at 10 am.",
    "Click 'Forgot password' on the sign-in page to receive a reset link.",
    "This jacket is waterproof, breathable and packs into its own pocket.",
    "Our support team is available every weekday from 9 am to 6 pm.",
    "The invoice is attached; payment is due within 30 days.",
    "Free returns are accepted within 60 days of delivery.",
    "Scheduled maintenance will take place on Sunday night between 1 and 3 am.",
]
FOREIGN_TO_ENGLISH = [
    "Où se trouve la gare la plus proche, s'il vous plaît ?",
    "Können Sie mir bitte die Rechnung per E-Mail schicken?",
    "¿Cuánto tarda el envío a Canarias?",
    "Il prodotto è arrivato danneggiato, vorrei un rimborso.",
    "配送状況を確認したいのですが、注文番号はどこにありますか?",
]
REVIEWS = [
    "Battery lasts two full days and the screen is gorgeous. Best phone I've owned.",
    "Arrived a week late and the box was crushed, but the blender itself works fine.",
    "Stopped charging after three weeks. Support never answered my emails.",
    "It's a kettle. It boils water. Nothing more to say.",
    "The fit is perfect and the fabric feels premium. Ordering another colour.",
    "Instructions were useless; took me two hours to assemble a simple shelf.",
    "Decent headphones for the price, though the bass is a bit muddy.",
    "Absolutely love it! The app setup took less than a minute.",
    "Smells strongly of plastic even after a week of airing out.",
    "Does what it says. Not amazing, not terrible.",
    "The customer service rep went above and beyond to fix my billing issue.",
    "Cancelled my subscription: the price doubled with no new features.",
]
CLASSIFY_LABELS = [
    ("sentiment", "positive, negative or neutral"),
    ("topic", "shipping, product quality, customer service, pricing or other"),
    ("urgency", "low, medium or high"),
]
CODE_TASKS = [
    ("Python", "parses an ISO 8601 date string and returns the weekday name"),
    ("Python", "deduplicates a list while preserving the original order"),
    ("Python", "reads a CSV file and returns the average of a named numeric column"),
    ("Python", "retries an async callable with exponential backoff and full jitter"),
    ("TypeScript", "debounces a function call by a given number of milliseconds"),
    ("TypeScript", "validates an email address and returns a typed result object"),
    ("Go", "fans out HTTP GET requests to a list of URLs with a concurrency limit"),
    ("Rust", "counts word frequencies in a string and returns the top N words"),
    ("SQL", "returns the five customers with the highest total order value in 2023"),
    ("Bash", "finds files larger than 100 MB under a directory and prints their sizes"),
    ("Python", "chunks a long text into pieces of at most N tokens on sentence boundaries"),
    ("Java", "implements an LRU cache with a fixed capacity"),
]
CODE_EXTRAS = [
    "Include type hints and a short docstring.",
    "Add two unit tests.",
    "Keep it under 30 lines.",
    "Explain the time complexity afterwards.",
    "Handle the empty-input case explicitly.",
    "",
]
NAMES = [
    "Amélie Durand",
    "Jonas Becker",
    "Priya Raman",
    "Carlos Mendoza",
    "Hannah O'Brien",
    "Kenji Watanabe",
    "Fatima Zahra",
    "Lukas Novak",
    "Grace Mwangi",
    "Tom Fischer",
]
PRODUCTS = [
    ("TrailLite 2 hiking backpack", ["28 L capacity", "recycled nylon", "rain cover", "1.1 kg"]),
    (
        "Aurora smart desk lamp",
        ["adjustable colour temperature", "USB-C charging port", "app and voice control"],
    ),
    ("BrewMaster 900 espresso machine", ["15-bar pump", "built-in grinder", "milk frother"]),
    (
        "QuietPods Pro earbuds",
        ["active noise cancelling", "30 h battery with case", "IPX5 water resistance"],
    ),
    (
        "Nimbus memory-foam pillow",
        ["cooling gel layer", "washable bamboo cover", "adjustable height"],
    ),
    (
        "Voltix 65 W GaN charger",
        ["three ports", "foldable plug", "charges a laptop and phone at once"],
    ),
    ("EcoSpin cordless vacuum", ["45-minute runtime", "HEPA filter", "wall-mounted dock"]),
    (
        "Pixel Garden indoor herb kit",
        ["full-spectrum LED", "self-watering tank", "six seed pods included"],
    ),
]
TONES = ["playful", "premium", "concise", "friendly", "technical", "eco-conscious"]
ISSUES = [
    "it arrived with a cracked screen",
    "I was charged twice",
    "the tracking link has not updated for six days",
    "the wrong size was delivered",
    "the discount code was not applied at checkout",
    "it stopped working after a week",
    "I never received the confirmation email",
]
COMPLAINTS = [
    "I've been waiting 40 minutes on hold and nobody picks up. This is ridiculous.",
    "Your app logged me out and now it says my account doesn't exist.",
    "I cancelled my plan last month and you still charged me. I want my money back.",
    "The package says delivered but there is nothing at my door.",
    "Why did my monthly price go up without any notice?",
    "The replacement part you sent is the same faulty model as the original.",
    "I can't download my invoices from the billing page, it just spins forever.",
]
DOC_SENTENCES: dict[str, list[str]] = {
    "meeting notes": [
        "The team agreed to move the launch from 3 June to 17 June.",
        "Marketing still needs final screenshots for the landing page.",
        "QA reported 14 open bugs, three of them blocking.",
        "Finance approved the extra budget for the load-testing environment.",
        "Sara will own the migration runbook and share a draft by Friday.",
        "Several people raised concerns about on-call coverage during the holidays.",
        "The customer beta produced mostly positive feedback on the new search.",
        "Action item: Ben to confirm the data-retention policy with legal.",
        "The next sync is on Tuesday; please update the tracker before then.",
        "It was decided to deprecate the v1 export API by the end of the quarter.",
    ],
    "incident report": [
        "At 02:14 UTC the primary database ran out of connections.",
        "Error rates on the checkout service rose to 38% for about 22 minutes.",
        "The on-call engineer was paged at 02:16 and acknowledged at 02:19.",
        "The root cause was a connection leak introduced in release 4.12.0.",
        "A rollback to 4.11.3 restored normal service at 02:36.",
        "Roughly 1,900 orders failed and customers saw a generic error page.",
        "Monitoring did alert, but the threshold was set too high to fire earlier.",
        "Follow-ups include a pool-size alarm and a canary stage for database changes.",
        "No data was lost; failed orders were retried automatically by customers.",
        "The status page was updated late, which drew complaints on social media.",
    ],
    "customer email": [
        "I bought the annual plan in January for our team of twelve.",
        "Since the last update, exports to PDF cut off the final page.",
        "We rely on these exports for our monthly client reports.",
        "I contacted support twice but only received automated replies.",
        "Our renewal is coming up next month and this is making us reconsider.",
        "Apart from this, the product has been really useful for us.",
        "Could you tell me whether a fix is planned and roughly when?",
        "If not, is there a workaround we could use in the meantime?",
    ],
    "news article": [
        "The city council voted on Tuesday to expand the bike-lane network by 40 km.",
        "Construction is expected to start in spring and last about two years.",
        "Supporters argue the plan will cut traffic and improve air quality.",
        "Some shop owners worry about losing parking spaces in front of their stores.",
        "The project is funded partly by a national grant for sustainable transport.",
        "A similar scheme in a neighbouring city increased cycling by 30% in three years.",
        "Opposition members called the timeline unrealistic.",
        "Public consultations will be held in each district over the summer.",
    ],
}
FIELDS_TO_EXTRACT = [
    "name, email, order_number and issue",
    "customer_name, order_number, product and requested_action",
    "name, email and a one-sentence summary of the problem",
]
MISC_PROMPTS = [
    "Suggest five names for a podcast about remote work. One line each, no explanations.",
    "Write a regular expression that matches UK postcodes and explain each part.",
    "Rewrite this sentence in plain English: 'Pursuant to the aforementioned "
    "stipulations, remittance shall be effectuated forthwith.'",
    "Give me a 3-day itinerary for Lisbon on a moderate budget.",
    "What are three good questions to ask at the end of a job interview?",
    "Draft a polite email asking a colleague to review my pull request by Thursday.",
    "List the pros and cons of using SQLite in a small web application.",
    "Write a haiku about a server that never goes down.",
    "Turn these notes into a short status update: deploy done, 2 bugs left, demo Friday.",
    "Propose a JSON schema for a support ticket with priority, status and tags.",
    "What is the difference between 'affect' and 'effect'? Give two examples each.",
    "Write a commit message for a change that adds retries to the HTTP client.",
]
SYSTEM_PROMPTS = [
    "You are a concise support assistant for Acme Cloud. Answer in at most three sentences.",
    "You are a senior Python reviewer. Point out bugs first, then style issues.",
    "You are a friendly travel assistant. Always suggest one budget option.",
    "You are a helpful assistant that answers in British English.",
    "You are an e-commerce copywriter. Keep the brand voice warm and direct.",
]
CONVERSATIONS: list[list[tuple[str, str]]] = [
    [
        ("user", "My VM won't start after I resized the disk."),
        ("assistant", "Sorry about that. Did the resize finish, and which region is the VM in?"),
        ("user", "It finished, region eu-west-2. The console just says 'pending'."),
    ],
    [
        ("user", "Can you review this?\n\ndef avg(xs):\n    return sum(xs) / len(xs)"),
        ("assistant", "It raises ZeroDivisionError on an empty list. What should it return?"),
        ("user", "Return None for an empty list. Can you rewrite it with type hints?"),
    ],
    [
        ("user", "I have a free weekend in October. Somewhere warm in Europe?"),
        ("assistant", "Malta, the Algarve or Crete are usually still warm then. From where?"),
        ("user", "From Berlin, and I don't want more than a 4-hour flight."),
    ],
    [
        ("user", "What's the best way to store user passwords?"),
        ("assistant", "Hash them with a slow, salted algorithm such as Argon2id or bcrypt."),
        ("user", "And what parameters should I pick for Argon2id?"),
    ],
    [
        ("user", "Write a tagline for our new oat-milk latte."),
        ("assistant", "'Smooth by nature, bold by choice.'"),
        ("user", "Nice. Now three shorter options, under five words each."),
    ],
]

# --------------------------------------------------------------------------------------
# Builders for one chat request (each returns the body fields: prompt or messages).
# --------------------------------------------------------------------------------------


def _summarise(rng: random.Random) -> str:
    kind = rng.choice(sorted(DOC_SENTENCES))
    sentences = DOC_SENTENCES[kind]
    text = " ".join(rng.sample(sentences, rng.randint(3, len(sentences))))
    style = rng.choice(
        [
            f"in {rng.randint(2, 5)} bullet points",
            "in one sentence",
            "for a busy executive",
            "in under 50 words",
            "and list any action items",
        ]
    )
    return f"Summarise the following {kind} {style}.\n\n{text}"


def _translate(rng: random.Random) -> str:
    if rng.random() < 0.25:
        return f'Translate into English: "{rng.choice(FOREIGN_TO_ENGLISH)}"'
    return f'Translate into {rng.choice(LANGUAGES)}: "{rng.choice(TO_TRANSLATE)}"'


def _explain(rng: random.Random) -> str:
    return (
        f"Explain {rng.choice(CONCEPTS)} to {rng.choice(AUDIENCES)} "
        f"in {rng.randint(2, 6)} sentences."
    )


def _classify(rng: random.Random) -> str:
    label, choices = rng.choice(CLASSIFY_LABELS)
    return (
        f"Classify the {label} of this customer review as {choices}. "
        f"Reply with the label only.\n\nReview: {rng.choice(REVIEWS)}"
    )


def _code(rng: random.Random) -> str:
    language, task = rng.choice(CODE_TASKS)
    noun = "query" if language == "SQL" else "script" if language == "Bash" else "function"
    return f"Write a {language} {noun} that {task}. {rng.choice(CODE_EXTRAS)}".rstrip()


def _support_message(rng: random.Random) -> str:
    name = rng.choice(NAMES)
    first = name.split()[0].lower().replace("é", "e").replace("'", "")
    email = f"{first}.{rng.randint(10, 99)}@example.com"
    order = f"{rng.choice('ABCDEFGH')}{rng.randint(100000, 999999)}"
    product = rng.choice(PRODUCTS)[0]
    issue = rng.choice(ISSUES)
    return rng.choice(
        [
            f"Hi, this is {name}. I ordered the {product} (order #{order}) and {issue}. "
            f"You can reach me at {email}. Thanks!",
            f"Order {order} - {product}. {issue.capitalize()}. Please sort this out. "
            f"-- {name} <{email}>",
            f"Hello support team,\n\nmy name is {name} and {issue} with my {product}. "
            f"The order number is {order}. Could you send me a replacement or refund?\n\n"
            f"Best regards,\n{name}\n{email}",
        ]
    )


def _extract(rng: random.Random) -> str:
    fields = rng.choice(FIELDS_TO_EXTRACT)
    return (
        f"Extract the fields {fields} from this message and return them as a JSON object. "
        f"Use null for anything missing.\n\n{_support_message(rng)}"
    )


def _support_reply(rng: random.Random) -> str:
    return (
        "You work in customer support. Write a short, empathetic reply to this customer "
        f"that offers a concrete next step.\n\nCustomer: {rng.choice(COMPLAINTS)}"
    )


def _product_description(rng: random.Random) -> str:
    product, features = rng.choice(PRODUCTS)
    words = rng.choice([40, 60, 80, 120])
    tone = rng.choice(TONES)
    article = "an" if tone[0] in "aeiou" else "a"
    return (
        f"Write {article} {tone} product description of about {words} words for the "
        f"{product}. Key features: {', '.join(features)}."
    )


def _misc(rng: random.Random) -> str:
    return rng.choice(MISC_PROMPTS)


PROMPT_BUILDERS: list[tuple[Callable[[random.Random], str], int]] = [
    (_summarise, 5),
    (_translate, 4),
    (_explain, 4),
    (_classify, 4),
    (_code, 4),
    (_extract, 3),
    (_support_reply, 3),
    (_product_description, 3),
    (_misc, 3),
]


def _prompt(rng: random.Random) -> str:
    builders = [b for b, _ in PROMPT_BUILDERS]
    weights = [w for _, w in PROMPT_BUILDERS]
    return rng.choices(builders, weights)[0](rng)


def _conversation(rng: random.Random) -> list[Message]:
    messages = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}]
    messages += [{"role": r, "content": c} for r, c in rng.choice(CONVERSATIONS)]
    return messages


def _sampling_params(rng: random.Random) -> Json:
    params: Json = {}
    if rng.random() < 0.2:
        params["temperature"] = rng.choice([0.0, 0.2, 0.3, 0.7, 1.0])
    if rng.random() < 0.25:
        params["max_tokens"] = rng.choice([64, 128, 256, 512])
    return params


def _with_marker(text: str, marker: str | None) -> str:
    return f"[[mock:{marker}]] {text}" if marker else text


# --------------------------------------------------------------------------------------
# File generators.
# --------------------------------------------------------------------------------------


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _custom_id(line_no: int) -> str:
    return f"req-{line_no:04d}"


def _bad_line(kind: str, line_no: int, rng: random.Random) -> bytes:
    cid = _custom_id(line_no)
    if kind == "invalid_json":
        whole = json.dumps({"custom_id": cid, "prompt": _summarise(rng)}, ensure_ascii=False)
        # Cut mid-string (on a character, so the bytes stay valid UTF-8): no closing brace.
        return whole[: len(whole) // 2].encode("utf-8")
    if kind == "not_object":
        return _dumps([{"custom_id": cid, "prompt": _explain(rng)}])
    if kind == "no_request":
        return _dumps({"custom_id": cid})
    if kind == "duplicate_id":
        return _dumps({"custom_id": _custom_id(DUPLICATE_OF), "prompt": _translate(rng)})
    if kind == "invalid_utf8":
        text = "Translate into English: « Le café est fermé le lundi, désolé. »"
        return json.dumps({"custom_id": cid, "prompt": text}, ensure_ascii=False).encode("latin-1")
    raise ValueError(f"unknown bad-line kind {kind!r}")


def _check_layout() -> None:
    special = [BLANK_LINES, set(BAD_LINES), set(PERMANENT_MARKERS), set(NO_ID_LINES)]
    special += [set(RETRY_MARKERS) | set(MODEL_OVERRIDES)]
    seen: set[int] = set()
    for group in special:
        assert not (seen & group), f"overlapping special lines: {sorted(seen & group)}"
        seen |= group
    assert DUPLICATE_OF not in seen
    dup_line = next(n for n, kind in BAD_LINES.items() if kind == "duplicate_id")
    assert dup_line > DUPLICATE_OF, "the duplicate must come after the original"
    assert not set(RETRY_MARKERS) & set(MODEL_OVERRIDES)
    assert all(1 <= n <= PROMPTS_LINES for n in seen | MULTI_TURN_LINES)
    assert not MULTI_TURN_LINES & (BLANK_LINES | set(BAD_LINES) | set(PERMANENT_MARKERS))


def make_prompts(rng: random.Random) -> list[bytes]:
    """prompts.jsonl: mostly shorthand chat requests, with deliberate faults."""
    _check_layout()
    lines: list[bytes] = []
    for n in range(1, PROMPTS_LINES + 1):
        if n in BLANK_LINES:
            lines.append(b"")
            continue
        if n in BAD_LINES:
            lines.append(_bad_line(BAD_LINES[n], n, rng))
            continue
        marker = RETRY_MARKERS.get(n) or PERMANENT_MARKERS.get(n)
        obj: Json = {} if n in NO_ID_LINES else {"custom_id": _custom_id(n)}
        if n in MULTI_TURN_LINES:
            messages = _conversation(rng)
            messages[-1]["content"] = _with_marker(messages[-1]["content"], marker)
            obj["messages"] = messages
        else:
            obj["prompt"] = _with_marker(_prompt(rng), marker)
        if n in MODEL_OVERRIDES:
            obj["model"] = MODEL_OVERRIDES[n]
        obj.update(_sampling_params(rng))
        lines.append(_dumps(obj))
    return lines


def make_batch_format(rng: random.Random, count: int = 50) -> list[bytes]:
    """batch_format.jsonl: the Mistral Batch API form, body with or without a model."""
    lines: list[bytes] = []
    for i in range(1, count + 1):
        body: Json = {}
        if rng.random() < 0.6:
            body["model"] = rng.choice(["mistral-small-latest"] * 3 + ["mistral-large-latest"])
        if i % 7 == 0:
            body["messages"] = _conversation(rng)
        elif i % 5 == 0:
            body["messages"] = [
                {"role": "system", "content": rng.choice(SYSTEM_PROMPTS)},
                {"role": "user", "content": _prompt(rng)},
            ]
        else:
            body["messages"] = [{"role": "user", "content": _prompt(rng)}]
        body["max_tokens"] = rng.choice([64, 128, 256])
        if rng.random() < 0.3:
            body["temperature"] = rng.choice([0.0, 0.3, 0.7])
        lines.append(_dumps({"custom_id": f"batch-{i:04d}", "body": body}))
    return lines


EMBED_TEMPLATES = [
    "How do I reset my password on the {product}?",
    "{product}: {feature}.",
    "Customer reports a problem with the {product}: {issue}.",
    "Refund request: {issue}.",
    "Review of the {product}: {review}",
    "FAQ - Does the {product} come with {feature}?",
    "Support ticket: {complaint}",
    "Knowledge base: {sentence}",
]


def _embed_text(rng: random.Random) -> str:
    product, features = rng.choice(PRODUCTS)
    return rng.choice(EMBED_TEMPLATES).format(
        product=product,
        feature=rng.choice(features),
        issue=rng.choice(ISSUES),
        review=rng.choice(REVIEWS),
        complaint=rng.choice(COMPLAINTS),
        sentence=rng.choice(rng.choice(list(DOC_SENTENCES.values()))),
    )


def make_embeddings(rng: random.Random, count: int = 100) -> list[bytes]:
    """embeddings.jsonl: shorthand with "input" (mostly one string, a few short lists)."""
    seen: set[str] = set()

    def fresh() -> str:
        while True:
            text = _embed_text(rng)
            if text not in seen:
                seen.add(text)
                return text

    lines: list[bytes] = []
    for i in range(1, count + 1):
        inp: str | list[str] = (
            [fresh() for _ in range(rng.choice([2, 3]))] if i % 12 == 0 else fresh()
        )
        lines.append(_dumps({"custom_id": f"emb-{i:04d}", "input": inp}))
    return lines


FIM_SNIPPETS: list[tuple[str, str]] = [
    ("def fibonacci(n: int) -> int:\n", "\n\nprint(fibonacci(10))\n"),
    (
        "def is_palindrome(s: str) -> bool:\n    cleaned = ",
        "\n    return cleaned == cleaned[::-1]\n",
    ),
    (
        "import json\n\n\ndef load_config(path: str) -> dict:\n",
        "\n\nconfig = load_config('app.json')\n",
    ),
    (
        "def binary_search(items: list[int], target: int) -> int:\n"
        "    lo, hi = 0, len(items) - 1\n",
        "\n    return -1\n",
    ),
    (
        "class Stack:\n    def __init__(self) -> None:\n        self._items = []\n\n"
        "    def push(self, x):\n",
        "\n\n    def pop(self):\n        return self._items.pop()\n",
    ),
    (
        "def word_count(text: str) -> dict[str, int]:\n    counts: dict[str, int] = {}\n",
        "\n    return counts\n",
    ),
    ("async def fetch_all(session, urls):\n", "\n    return results\n"),
    (
        "def celsius_to_fahrenheit(c: float) -> float:\n",
        "\n\nassert celsius_to_fahrenheit(100) == 212\n",
    ),
    (
        "import re\n\nEMAIL_RE = ",
        "\n\ndef is_email(s: str) -> bool:\n    return bool(EMAIL_RE.fullmatch(s))\n",
    ),
    ("def flatten(nested: list) -> list:\n    out = []\n", "\n    return out\n"),
    (
        "def merge_sorted(a: list[int], b: list[int]) -> list[int]:\n",
        "\n\nprint(merge_sorted([1, 4], [2, 3]))\n",
    ),
    (
        "from dataclasses import dataclass\n\n\n@dataclass\nclass Invoice:\n",
        "\n\n    @property\n    def total(self) -> float:\n"
        "        return self.net * (1 + self.vat_rate)\n",
    ),
    (
        'def chunks(seq, size):\n    """Yield successive size-long chunks of seq."""\n',
        "\n\nlist(chunks(range(10), 3))\n",
    ),
    ("def read_lines(path):\n    with open(path, encoding='utf-8') as f:\n", "\n"),
    (
        "import sqlite3\n\n\ndef create_users_table(conn: sqlite3.Connection) -> None:\n",
        "\n    conn.commit()\n",
    ),
    (
        "def gcd(a: int, b: int) -> int:\n",
        "\n\ndef lcm(a: int, b: int) -> int:\n    return a * b // gcd(a, b)\n",
    ),
    ("function debounce(fn, ms) {\n  let timer;\n", "\n}\n\nexport default debounce;\n"),
    ("export function formatPrice(cents: number, currency = 'EUR'): string {\n", "\n}\n"),
    (
        "const express = require('express');\nconst app = express();\n\napp.get('/health', ",
        "\n\napp.listen(3000);\n",
    ),
    ("func Reverse(s string) string {\n", "\n}\n"),
    ("func (c *Cache) Get(key string) (string, bool) {\n\tc.mu.RLock()\n", "\n}\n"),
    (
        "fn factorial(n: u64) -> u64 {\n",
        '\n}\n\nfn main() {\n    println!("{}", factorial(5));\n}\n',
    ),
    ("impl Point {\n    fn distance(&self, other: &Point) -> f64 {\n", "\n    }\n}\n"),
    (
        "SELECT c.name, SUM(o.total) AS revenue\nFROM customers c\n",
        "\nORDER BY revenue DESC\nLIMIT 5;\n",
    ),
    (
        '#!/usr/bin/env bash\nset -euo pipefail\n\nbackup_dir="/var/backups/$(date +%F)"\n',
        '\necho "backup written to $backup_dir"\n',
    ),
    (
        "def retry(fn, attempts=3, delay=0.5):\n    for attempt in range(attempts):\n",
        "\n    raise RuntimeError('all attempts failed')\n",
    ),
    (
        "class TokenBucket:\n    def __init__(self, rate: float, capacity: int) -> None:\n",
        "\n\n    def take(self) -> bool:\n        self._refill()\n",
    ),
    (
        'def parse_duration(s: str) -> int:\n    """\'1h30m\' -> 5400 seconds."""\n',
        "\n\nassert parse_duration('1h30m') == 5400\n",
    ),
    ("public static boolean isPrime(int n) {\n", "\n}\n"),
    (
        "def transpose(matrix: list[list[int]]) -> list[list[int]]:\n",
        "\n\nprint(transpose([[1, 2], [3, 4]]))\n",
    ),
]


def make_fim(rng: random.Random) -> list[bytes]:
    """fim.jsonl: code prefix in "prompt", the code that follows in "suffix"."""
    lines: list[bytes] = []
    for i, (prefix, suffix) in enumerate(FIM_SNIPPETS, start=1):
        obj: Json = {"custom_id": f"fim-{i:04d}", "prompt": prefix, "suffix": suffix}
        if rng.random() < 0.4:
            obj["max_tokens"] = rng.choice([64, 128, 256])
        if rng.random() < 0.3:
            obj["temperature"] = 0.0
        lines.append(_dumps(obj))
    return lines


def write_jsonl(path: Path, lines: list[bytes]) -> None:
    """Binary write: keeps the deliberately invalid UTF-8 bytes and LF line endings."""
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    # One generator per file, so that changing one file never reshuffles the others.
    files = {
        "prompts.jsonl": make_prompts(random.Random(f"{SEED}-prompts")),
        "batch_format.jsonl": make_batch_format(random.Random(f"{SEED}-batch")),
        "embeddings.jsonl": make_embeddings(random.Random(f"{SEED}-embeddings")),
        "fim.jsonl": make_fim(random.Random(f"{SEED}-fim")),
    }
    for name, lines in files.items():
        write_jsonl(out / name, lines)
        print(f"wrote {out / name} ({len(lines)} lines)")


if __name__ == "__main__":
    main()
