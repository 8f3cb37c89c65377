"""Which input lines still need sending: the done ones are skipped, the bad ones written to
the dead-letter file as they come, and with ``--retry-dead`` the selected dead ids let
through again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from batchrunner.config import RunConfig
from batchrunner.engine.stats import RunStats
from batchrunner.input.lines import BadLine, Done, Item, read_input
from batchrunner.ledger.manifest import implicit_id_prefix, read_manifest
from batchrunner.ledger.records import input_dead_line
from batchrunner.ledger.state import DeadEntry, LedgerState

__all__ = ["admit"]

_BREATHE_EVERY = 512


def admit(
    config: RunConfig,
    state: LedgerState,
    stats: RunStats,
    write_dead: Callable[[bytes], None],
    check_bodies: bool,
) -> Iterator[Item | None]:
    """Items to send, in input order. Yields ``None`` every few hundred lines that need no
    sending, so that a caller resuming a long, mostly done file can let the loop breathe.

    ``check_bodies`` compares each done id's request with what was sent (an edited input);
    otherwise a done line is skipped after one JSON parse.
    """
    results, dead = state.results, state.dead
    if config.retry_dead:
        dead = {k: v for k, v in dead.items() if not _retry(config, v)}

    def done(cid: str) -> bool:
        return cid in results or cid in dead

    not_sent = 0
    inp, endpoint, model = config.input_path, config.endpoint, config.model
    prefix = implicit_id_prefix(read_manifest(config.manifest_path))
    for entry in read_input(inp, endpoint, model, done, check_bodies, prefix):
        stats.read += 1
        if isinstance(entry, Item) and not _already_done(entry, results, dead, stats):
            yield entry
            continue
        if isinstance(entry, BadLine):
            _bad_line(entry, state, stats, write_dead)
        elif isinstance(entry, Done):
            stats.skipped_done += 1
            stats.skipped_dead += entry.custom_id not in results
        not_sent += 1
        if not_sent % _BREATHE_EVERY == 0:
            yield None
    stats.blank = max(stats.total_lines - stats.read, 0)


def _retry(config: RunConfig, entry: DeadEntry) -> bool:
    """Whether ``--retry-dead`` sends this dead item again."""
    return not config.retry_statuses or entry.status_code in config.retry_statuses


def _bad_line(
    bad: BadLine, state: LedgerState, stats: RunStats, write_dead: Callable[[bytes], None]
) -> None:
    if bad.line in state.dead_lines:
        stats.skipped_done += 1
        stats.skipped_dead += 1
        return
    write_dead(input_dead_line(bad))
    stats.dead += 1
    stats.dead_input += 1
    stats.dead_by_status[bad.type] += 1


def _already_done(
    item: Item, results: dict[str, Any], dead: dict[str, DeadEntry], stats: RunStats
) -> bool:
    if item.custom_id in results:
        old_fp = results[item.custom_id]
    elif item.custom_id in dead:
        old_fp = dead[item.custom_id].fp
        stats.skipped_dead += 1
    else:
        return False
    stats.skipped_done += 1
    if old_fp is not None and old_fp != item.fp:
        stats.changed_done += 1
    return True
