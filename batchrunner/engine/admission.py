"""Which input lines still need sending: the done ones are skipped, the bad ones written to
the dead-letter file as they come; dead ids that failed for no fault of their own
(``TRANSIENT``), and with ``--retry-dead`` the selected ones, let through again. What is
done or dead is the ledger's decision (:class:`LedgerState`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from batchrunner.config import RunConfig
from batchrunner.engine.stats import RunStats
from batchrunner.input.lines import BadLine, Item, read_input
from batchrunner.ledger.manifest import implicit_id_prefix, read_manifest
from batchrunner.ledger.records import input_dead_line
from batchrunner.ledger.state import Decision, LedgerState
from batchrunner.vocabulary import TRANSIENT, failure_key

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
    state.send_again(TRANSIENT)
    if config.retry_dead:
        state.retry_dead(config.retry_statuses)
    not_sent = 0
    inp, endpoint, model = config.input_path, config.endpoint, config.model
    prefix = implicit_id_prefix(read_manifest(config.manifest_path))
    for entry in read_input(inp, endpoint, model, state.decided, check_bodies, prefix):
        stats.read += 1
        if isinstance(entry, Item) and not _already_done(entry, state, stats):
            yield entry
            continue
        if not isinstance(entry, Item):
            decision = state.decide(entry)
            if isinstance(entry, BadLine) and decision is None:
                _new_bad_line(entry, stats, write_dead)
            else:
                _skipped(decision, stats)
        not_sent += 1
        if not_sent % _BREATHE_EVERY == 0:
            yield None
    stats.blank = max(stats.total_lines - stats.read, 0)


def _new_bad_line(bad: BadLine, stats: RunStats, write_dead: Callable[[bytes], None]) -> None:
    write_dead(input_dead_line(bad))
    stats.dead += 1
    stats.dead_input += 1
    stats.dead_by_status[failure_key(None, bad.type)] += 1


def _skipped(decision: Decision, stats: RunStats) -> None:
    """Count a line an earlier run decided (done, or still dead)."""
    stats.skipped_done += 1
    stats.skipped_dead += decision != "done"


def _already_done(item: Item, state: LedgerState, stats: RunStats) -> bool:
    if not state.decided(item.custom_id):
        return False
    stats.skipped_done += 1
    stats.skipped_dead += state.dead_entry(item.custom_id) is not None
    old_fp = state.sent_fp(item.custom_id)
    if old_fp is not None and old_fp != item.fp:
        stats.changed_done += 1
    return True
