"""Which shard an input line belongs to, and which shard this process is.

A line's shard is a stable hash of its key, the same on every machine, Python version and
run: the first 8 bytes of BLAKE2b (digest size 8) of the key's UTF-8, read big-endian,
modulo the number of shards. The key is the line's ``custom_id``; for a line without one, the
text of its 1-based line number (``"17"``), whatever the implicit id is spelt (``17`` or
``#17``), so that renaming implicit ids never moves a line to another shard. A
``custom_id`` that is its own line's implicit spelling cannot be told from a missing one and
is keyed the same way. Bad lines follow the same rule (a line that does not parse is keyed
by its line number), so each is dead-lettered by exactly one shard.

Shards are counted from 0: ``0/N`` … ``N-1/N``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from batchrunner.config import Shard
from batchrunner.errors import ConfigError
from batchrunner.input.lines import IMPLICIT_ID_PREFIX

__all__ = ["ENV_VARS", "in_shard", "resolve_shard", "shard_key", "shard_of"]

#: Where ``--shard auto/N`` finds K, in this order: our own variable (set it by hand, or
#: from a CI matrix), a Kubernetes Indexed Job's, a SLURM job array's.
ENV_VARS = ("BATCHRUNNER_SHARD", "JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID")


def shard_key(custom_id: str | None, line: int) -> bytes:
    """What a line is hashed by: its ``custom_id``, or its line number's text."""
    number = str(line)
    if custom_id is None or custom_id in (number, IMPLICIT_ID_PREFIX + number):
        return number.encode()
    return custom_id.encode("utf-8", "surrogatepass")


def shard_of(custom_id: str | None, line: int, count: int) -> int:
    """The shard (from 0) of ``count`` that the line belongs to."""
    digest = hashlib.blake2b(shard_key(custom_id, line), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def in_shard(custom_id: str | None, line: int, shard: Shard | None) -> bool:
    """Whether the line is ``shard``'s (every line is, without a shard)."""
    return shard is None or shard_of(custom_id, line, shard.count) == shard.index


def resolve_shard(text: str, env: Mapping[str, str]) -> Shard:
    """``--shard``'s value as a shard: ``K/N``, or ``auto/N`` (also ``/N``) with K from
    ``env`` (:data:`ENV_VARS`). Raises :class:`ConfigError` with a one-line reason."""
    head, slash, count_text = text.strip().partition("/")
    if slash and head.strip().lower() in ("", "auto"):
        count = Shard.parse(f"0/{count_text}")
        if count is None:
            raise _refused(text, "the N of auto/N must be a whole number above 0")
        return _from_env(count.count, env)
    shard = Shard.parse(text)
    if shard is None:
        raise _refused(text, "K/N with whole numbers 0 <= K < N (shards count from 0), or auto/N")
    return shard


def _from_env(count: int, env: Mapping[str, str]) -> Shard:
    for name in ENV_VARS:
        value = env.get(name, "").strip()
        if not value:
            continue
        index, given = _whole(value, name), f"{name}={value}"
        if name == "SLURM_ARRAY_TASK_ID":  # an array may start at any index: count from it
            low = env.get("SLURM_ARRAY_TASK_MIN", "").strip() or "0"
            index -= _whole(low, "SLURM_ARRAY_TASK_MIN")
            given += f" minus SLURM_ARRAY_TASK_MIN={low}"
        if not 0 <= index < count:
            message = f"`shard` auto/{count}: {given} is shard {index}, not one of 0 to {count - 1}"
            raise ConfigError(message, setting="shard")
        return Shard(index, count)
    raise ConfigError(
        f"`shard` auto/{count}: no shard index in the environment: set BATCHRUNNER_SHARD "
        f"(0 to {count - 1}), or run as a Kubernetes Indexed Job (JOB_COMPLETION_INDEX) or a "
        "SLURM job array (SLURM_ARRAY_TASK_ID)",
        setting="shard",
    )


def _whole(value: str, name: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise ConfigError(f"{name}={value!r} is not a whole number", setting="shard")
    return int(value)


def _refused(text: str, expected: str) -> ConfigError:
    return ConfigError(f"`shard` {text!r}: expected {expected}", setting="shard")
