"""The words every layer shares: what one attempt returns, the failure types, what each
failure leads to, and why a run stops.

Imports nothing from the package, so every layer may import it.

What a failure leads to is decided here and nowhere else (:data:`ACTIONS`):

======================  =============================================================
action                  failure types
======================  =============================================================
``retry``               rate_limited, capacity_exceeded, server_error, timeout,
                        connection_error, invalid_response: back off and try again,
                        up to the attempts
``hold``                unauthorized, forbidden, not_found, invalid_model: parked by
                        the circuit breaker; a streak of one cause stops the run
``pause``               quota_exceeded: the run stops, the item stays pending
``dead_letter``         everything else: written to the dead-letter file at once
======================  =============================================================

Both ``rate_limited`` and ``capacity_exceeded`` are 429s. The first says the client is too
fast (slow down); the second that the server's side is full (Mistral's
``service_tier_capacity_exceeded``, ``backend_out_of_capacity``): sending slower would not
help, so only ``rate_limited`` moves the adaptive rate.

A retried failure that runs out of attempts is dead-lettered as ``retries_exhausted`` (or
``retry_after_too_long``): :data:`TRANSIENT`, sent again by the next run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "ACTIONS",
    "TRANSIENT",
    "Action",
    "Failure",
    "FailureType",
    "InputProblem",
    "StopReason",
    "Success",
    "action_of",
    "failure_key",
]

#: Why one request failed (an attempt's answer, or the verdict after its attempts).
FailureType = Literal[
    # the server's answer or the transport
    "rate_limited",
    "capacity_exceeded",
    "server_error",
    "timeout",
    "connection_error",
    "invalid_response",
    "quota_exceeded",
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "validation_error",
    "client_error",
    "invalid_model",
    "invalid_request",
    # decided by the runner
    "retries_exhausted",
    "retry_after_too_long",
    "too_large",
    "internal_error",
]

#: Why an input line cannot be sent at all (dead-lettered by line number).
InputProblem = Literal[
    "invalid_json",
    "invalid_utf8",
    "not_an_object",
    "invalid_custom_id",
    "duplicate_custom_id",
    "no_request",
    "no_model",
    "invalid_request",
]

#: What a final failure leads to.
Action = Literal["retry", "hold", "pause", "dead_letter"]

#: Why a run stopped before its input was exhausted (``unanswered``: batch jobs ended
#: without answering every id they were sent).
StopReason = Literal["interrupted", "fatal", "quota", "budget", "write_error", "unanswered"]

ACTIONS: Final[dict[FailureType, Action]] = {
    "rate_limited": "retry",
    "capacity_exceeded": "retry",
    "server_error": "retry",
    "timeout": "retry",
    "connection_error": "retry",
    "invalid_response": "retry",
    "unauthorized": "hold",
    "forbidden": "hold",
    "not_found": "hold",
    "invalid_model": "hold",
    "quota_exceeded": "pause",
}

#: Dead-letter types that say nothing against the request: its attempts ran out on 429s,
#: 5xx, timeouts, dropped connections or garbage 200s, or the server asked to wait longer
#: than allowed. A re-run sends them again (after an outage, that is what a user wants);
#: every other dead item waits for ``--retry-dead``.
TRANSIENT: Final[frozenset[FailureType]] = frozenset({"retries_exhausted", "retry_after_too_long"})


def action_of(type_: FailureType) -> Action:
    """What a failure of ``type_`` leads to (a type the table leaves out is dead-lettered)."""
    return ACTIONS.get(type_, "dead_letter")


@dataclass(frozen=True, slots=True)
class Success:
    """A 200 with a JSON object body; tokens from its ``usage``. ``raw`` is the body as the
    server sent it, on one line (empty when there is none): the results keep it as it is,
    which no re-serialization could (numbers past 64 bits, nesting past 254 levels)."""

    body: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int
    raw: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """Why one attempt (or, after the last one, the item) failed."""

    type: FailureType
    status_code: int | None
    message: str
    retry_after: float | None = None

    @property
    def action(self) -> Action:
        return action_of(self.type)

    @property
    def retryable(self) -> bool:
        return self.action == "retry"


def failure_key(status_code: int | None, type_: str) -> str:
    """The one key a failure is counted under, in the run summary, ``status`` and ``dlq``:
    its HTTP status, or its type when there is no status or the status is a 200 (an
    unusable 200 says nothing by its code)."""
    if status_code is not None and status_code != 200:
        return str(status_code)
    return type_
