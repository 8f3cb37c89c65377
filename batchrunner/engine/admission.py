"""Which input lines still need sending: the done ones are skipped, the bad ones written to
the dead-letter file as they come, and with ``--retry-dead`` the selected dead ids let
through again. What is done or dead is the ledger's decision (:class:`LedgerState`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from batchrunner.config import RunConfig
from batchrunner.engine.stats import RunStats
from batchrunner.input.lines import BadLine, Done, Item, read_input
from batchrunner.ledger.manifest import implicit_id_prefix, read_manifest
from batchrunner.ledger.records import input_dead_line
from batchrunner.ledger.state import LedgerState
from batchrunner.vocabulary import failure_key

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
    otherwise a done line is skipped after one JSON parse and one look-up.
    """
    if config.retry_dead:
        state.retry_dead(config.retry_statuses)
    not_sent = 0
    inp, endpoint, model = config.input_path, config.endpoint, config.model
    prefix = implicit_id_prefix(read_manifest(config.manifest_path))
    for entry in read_input(inp, endpoint, model, state.claim, check_bodies, prefix):
        stats.read += 1
        if isinstance(entry, Done):  # first: most lines of a resumed run
            stats.skipped_done += 1
            stats.skipped_dead += state.decide(entry) != "done"
            if entry.item is not None:  # an edited input: was the same request sent?
                old_fp = state.sent_fp(entry)
                stats.changed_done += old_fp is not None and old_fp != entry.item.fp
        elif isinstance(entry, Item):
            yield entry
            continue
        elif (decision := state.decide(entry)) is None:
            _new_bad_line(entry, stats, write_dead)
        else:  # a bad line an earlier run decided: still dead, or done since
            stats.skipped_done += 1
            stats.skipped_dead += decision != "done"
        not_sent += 1
        if not_sent % _BREATHE_EVERY == 0:
            yield None
    stats.blank = max(stats.total_lines - stats.read, 0)


def _new_bad_line(bad: BadLine, stats: RunStats, write_dead: Callable[[bytes], None]) -> None:
    write_dead(input_dead_line(bad))
    stats.dead += 1
    stats.dead_input += 1
    stats.dead_by_status[failure_key(None, bad.type)] += 1
