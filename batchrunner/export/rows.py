"""One export row per input line: the id, what was asked, what came back, and how it ended.

The columns are the same for every format (:data:`COLUMNS`); a value that is not there is
None (an empty cell in CSV).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchrunner.config import manifest_path
from batchrunner.errors import LedgerError
from batchrunner.export.answers import answer_of, prompt_of
from batchrunner.export.join import Joined, RunFiles
from batchrunner.ledger.manifest import implicit_id_prefix, read_manifest
from batchrunner.ledger.status import manifest_shard

__all__ = ["COLUMNS", "row", "run_files"]

#: The endpoint of a run whose manifest does not say (RunConfig's default).
_CHAT = "/v1/chat/completions"

#: Every row's keys, in order.
COLUMNS = (
    "custom_id",
    "line",
    "status",
    "endpoint",
    "prompt",
    "messages",
    "answer",
    "embedding",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "error_type",
    "error_status_code",
    "error_message",
)


def row(j: Joined) -> dict[str, Any]:
    """The export row of one joined input line."""
    asked = j.body if j.body is not None else _body_of(j.request)
    messages = asked.get("messages") if isinstance(asked, dict) else None
    record = j.record or {}
    response = record.get("response") if j.status == "ok" else None
    answer = answer_of(response.get("body") if isinstance(response, dict) else None)
    error = record.get("error") if j.status == "dead" else None
    error = error if isinstance(error, dict) else {}
    return {
        "custom_id": j.custom_id,
        "line": j.line,
        "status": j.status,
        "endpoint": j.endpoint,
        "prompt": prompt_of(asked),
        "messages": messages if isinstance(messages, list) else None,
        "answer": answer.text,
        "embedding": answer.embedding,
        "finish_reason": answer.finish_reason,
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "error_type": error.get("type"),
        "error_status_code": error.get("status_code"),
        "error_message": error.get("message"),
    }


def _body_of(request: Any) -> Any:
    """What a line that could not be sent asked, as far as it says."""
    if isinstance(request, dict) and isinstance(request.get("body"), dict):
        return request["body"]
    return request


def run_files(
    results: Path, input_path: Path | None = None, dead_letter: Path | None = None
) -> RunFiles:
    """The run whose results file is ``results``: its input, dead-letter file, endpoint,
    model, id form and shard from its manifest; ``input_path`` / ``dead_letter`` when given win
    (and are needed when there is no manifest)."""
    manifest = read_manifest(manifest_path(results)) or {}
    named_input, named_dead = manifest.get("input"), manifest.get("dead_letter")
    if input_path is None and not isinstance(named_input, str):
        raise LedgerError(
            f"no run manifest beside {results} names its input: give --input", path=results
        )
    inp = input_path or Path(str(named_input))
    if dead_letter is None:
        stem = results.name.removesuffix(".results.jsonl")
        beside = results.with_name(f"{stem}.dead.jsonl")
        dead_letter = Path(named_dead) if isinstance(named_dead, str) else beside
    endpoint, model = manifest.get("endpoint"), manifest.get("model")
    return RunFiles(
        input=inp,
        results=results,
        dead_letter=dead_letter,
        endpoint=endpoint if isinstance(endpoint, str) else _CHAT,
        model=model if isinstance(model, str) else None,
        implicit_prefix=implicit_id_prefix(manifest or None),
        shard=manifest_shard(manifest),
    )
