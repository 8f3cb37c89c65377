"""What one API body gets: the decision shared by online requests and batch-job lines."""

from __future__ import annotations

from typing import Any, NamedTuple

from batchrunner.mock.config import MockConfig
from batchrunner.mock.endpoints import Endpoint
from batchrunner.mock.faults import SLOW_S, RandomFaults, ScriptedFaults, find_marker, parse_marker
from batchrunner.mock.limits import TokenWindow, request_limit
from batchrunner.mock.replies import (
    POISON,
    Reply,
    capacity_reply,
    error_reply,
    quota_reply,
    rate_limited_reply,
    status_fault_reply,
)
from batchrunner.mock.stats import Stats

# A 200 whose body is cut mid-JSON: what a broken proxy or truncated read looks like.
GARBAGE = Reply(200, b'{"id":"cmpl-garbage","object":"chat.completion","choi')


class Decision(NamedTuple):
    """The outcome for one body, before any waiting."""

    label: str  # stats/log outcome: "200", "429", ..., "reset", "timeout", "garbage"
    reply: Reply | None  # None: drop the connection instead of answering
    extra_delay: float = 0.0  # seconds on top of the configured latency


class Decider:
    """Per-server fault and limit state, and the decision each body goes through.

    Order: JSON object (400) -> scripted marker -> validation (422/400) ->
    limit_rps (429) -> random fault -> limit_tpm (429) -> answer.
    A body carrying a marker skips limits and random faults entirely: it is a
    test fixture, and its outcome must not depend on other traffic.

    A batch-job line (``online=False``) goes through the same markers and
    validation, sharing the attempt counts with online requests, but meets no
    rate limit and no random fault (the Batch API runs outside the real-time
    limits) and its usage is not counted in :class:`Stats`, which describes
    HTTP requests.
    """

    __slots__ = ("config", "random_faults", "rps", "scripted", "stats", "tpm")

    def __init__(self, config: MockConfig, stats: Stats) -> None:
        self.config = config
        self.stats = stats
        self.scripted = ScriptedFaults()
        self.random_faults = RandomFaults(config.error_rates, config.seed)
        limit = config.limit_rps
        self.rps = request_limit(config.limit_algo, limit) if limit is not None else None
        self.tpm = TokenWindow(config.limit_tpm) if config.limit_tpm is not None else None

    def fault_decision(self, fault: str) -> Decision:
        """The decision for a fault that replaces the answer (not timeout/slow)."""
        if fault == "reset":
            return Decision("reset", None)
        if fault == "garbage":
            return Decision("garbage", GARBAGE)
        if fault == "quota":
            return Decision("429", quota_reply())
        if fault in POISON:
            return Decision(fault, POISON[fault])
        if fault == "capacity":
            return Decision("429", capacity_reply(self.config.retry_after_ms))
        return Decision(fault, status_fault_reply(int(fault), self.config.retry_after_ms))

    def decide(
        self,
        endpoint: Endpoint,
        body: dict[str, Any] | None,
        canonical: bytes,
        digest: bytes,
        now: float,
        *,
        online: bool = True,
    ) -> Decision:
        """Everything about the answer to ``body`` except the waiting; see the class docstring."""
        if body is None:
            return Decision("400", error_reply(400, "Request body must be a JSON object"))
        marker = find_marker(endpoint.texts(body))
        fault: str | None = None
        if marker is not None:
            scripted = self._scripted(marker, canonical)
            if isinstance(scripted, Decision):
                return scripted
            fault = scripted
        invalid = endpoint.validate(body)
        if invalid is not None:
            return Decision(str(invalid.status), invalid)
        limited = online and marker is None
        if limited:
            if self.rps is not None and not self.rps.admit(now):
                return Decision("429", rate_limited_reply(self.config.retry_after_ms))
            fault = self.random_faults.draw()
            if fault is not None and fault != "timeout":
                return self.fault_decision(fault)
        return self._answer(endpoint, body, digest, now, fault, limited, online)

    def _scripted(self, marker: str, canonical: bytes) -> Decision | str | None:
        """This attempt's scripted fault: a final decision, or "timeout"/"slow"/None."""
        try:
            faults = parse_marker(marker)
        except ValueError as exc:
            return Decision("400", error_reply(400, str(exc)))
        fault = self.scripted.next_fault(marker, faults, canonical)
        if fault is not None and fault not in ("timeout", "slow"):
            return self.fault_decision(fault)
        return fault

    def _answer(
        self,
        endpoint: Endpoint,
        body: dict[str, Any],
        digest: bytes,
        now: float,
        fault: str | None,
        limited: bool,
        online: bool,
    ) -> Decision:
        answer = endpoint.answer(body, digest, self.config.embedding_dim)
        tokens = answer.prompt_tokens + answer.completion_tokens
        if limited and self.tpm is not None and not self.tpm.admit(now, tokens):
            return Decision(
                "429",
                rate_limited_reply(self.config.retry_after_ms, "Tokens per minute limit exceeded"),
            )
        if online:
            self.stats.add_tokens(answer.prompt_tokens, answer.completion_tokens)
        reply = Reply(200, answer.body)
        if fault == "timeout":
            return Decision("timeout", reply, self.config.hang_s)
        return Decision("200", reply, SLOW_S if fault == "slow" else 0.0)
