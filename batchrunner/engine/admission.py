"""Which input lines still need sending: the done ones are skipped, the bad ones written to
the dead-letter file as they come; dead ids that failed for no fault of their own
(``TRANSIENT``), and with ``--retry-dead`` the selected ones, let through again. What is
done or dead is the ledger's decision (:class:`LedgerState`).

With ``--shard K/N`` the lines of the other shards are passed over here, before anything
else looks at them (:mod:`batchrunner.input.shard`): every way of sending a run shares this
one selection, and a bad line is dead-lettered only by its own shard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from batchrunner.config import RunConfig, Shard
from batchrunner.engine.events import NO_EVENTS, Events
from batchrunner.engine.stats import RunStats
from batchrunner.input.lines import BadLine, Done, DoneLines, Item, read_input
from batchrunner.input.shard import in_shard
from batchrunner.ledger.manifest import implicit_id_prefix, read_manifest
from batchrunner.ledger.records import input_dead_line
from batchrunner.ledger.state import Decision, LedgerState
from batchrunner.vocabulary import TRANSIENT, failure_key

__all__ = ["admit", "count_unread"]

#: Lines that need no sending (done, dead, bad) between two turns given back to the loop:
#: resuming a long, mostly done file must not keep signals, progress and answers waiting.
#: Fewer turns the loop more often, at the cost of a pass through the workers' window.
_BREATHE_EVERY = 512


def admit(
    config: RunConfig,
    state: LedgerState,
    stats: RunStats,
    write_dead: Callable[[bytes], None],
    check_bodies: bool,
    events: Events = NO_EVENTS,
) -> Iterator[Item | None]:
    """Items to send, in input order. Yields ``None`` every few hundred lines that need no
    sending, so that a caller resuming a long, mostly done file can let the loop breathe.

    ``check_bodies`` compares each done id's request with what was sent (an edited input);
    otherwise a done line is skipped after one JSON parse and one look-up.
    """
    _send_again(config, state)
    shard = config.shard_spec
    stats.shards = shard.count if shard is not None else 1
    not_sent = 0
    inp, endpoint, model = config.input_path, config.endpoint, config.model
    prefix = implicit_id_prefix(read_manifest(config.manifest_path))
    for entry in read_input(inp, endpoint, model, state.claim, check_bodies, prefix):
        if isinstance(entry, DoneLines):  # most lines of a resumed run: a block at a time
            _skipped_lines(entry, state, shard, stats)
            yield None
            continue
        stats.read += 1
        stats.position = entry.line
        if shard is not None and _other_shard(entry, shard, stats):
            if isinstance(entry, Done):
                _passed_over(entry, state, stats)
        elif isinstance(entry, Done):
            _skipped(state.decide(entry), stats)
            if entry.item is not None:  # an edited input: was the same request sent?
                old_fp = state.sent_fp(entry)
                stats.changed_done += old_fp is not None and old_fp != entry.item.fp
        elif isinstance(entry, Item):
            yield entry
            continue
        else:
            _bad_line(entry, state, stats, write_dead, events)
        not_sent += 1
        if not_sent % _BREATHE_EVERY == 0:
            yield None
    stats.blank = max(stats.total_lines - stats.read, 0)
    stats.position = stats.total_lines


def _send_again(config: RunConfig, state: LedgerState) -> None:
    """Which dead ids are to send again: those that failed for no fault of their own, and
    with ``--retry-dead`` the selected ones."""
    state.send_again(TRANSIENT)
    if config.retry_dead:
        state.retry_dead(config.retry_statuses)


def count_unread(config: RunConfig, state: LedgerState, stats: RunStats) -> None:
    """After a run that stopped before the end of its input: count the outcomes the files
    hold for the lines the reader did not reach, so the totals are the files' whatever
    stopped the run (the budget, the breaker, Ctrl-C), without reading the rest.

    The rule: an outcome found at start whose id the reader has not passed is one of the
    unread lines' (a result; or a dead entry, unless it is to be sent again: then its line
    is pending), and so is a dead bad line after the last line read. The files are this
    input's and this shard's (the manifest refuses another input or shard), so its ids are
    this input's; ids it does not hold (an input edited since, a hand-merged file) are told
    apart only by reading the lines, which a run that reads to the end does: it never
    counts them. Here they are counted at most up to the number of unread lines, so the
    counts still add up to the input's.
    """
    unread = stats.total_lines - stats.position
    if unread <= 0:
        return
    _send_again(config, state)  # the rule of a full read, even if reading never began
    results, dead = stats.ids_passed
    dead_ids, dead_lines = state.dead_found(stats.position)
    stats.unread_done = min(max(state.results_found - results, 0), unread)
    stats.unread_dead = min(max(dead_ids - dead, 0) + dead_lines, unread - stats.unread_done)


def _skipped_lines(
    lines: DoneLines, state: LedgerState, shard: Shard | None, stats: RunStats
) -> None:
    """Count lines an earlier run decided (done, or still dead), those of other shards
    passed over."""
    stats.read += len(lines.outcomes)
    stats.position = lines.last
    outcomes = lines.outcomes
    if shard is not None:
        outcomes = []
        for done in lines.each():
            if _other_shard(done, shard, stats):
                _passed_over(done, state, stats)
            else:
                outcomes.append(done.outcome)
    stats.skipped_done += len(outcomes)
    stats.skipped_dead += state.dead_among(outcomes)


def _passed_over(done: Done, state: LedgerState, stats: RunStats) -> None:
    """Another shard's line whose id is in our files: passed over, and not counted as ours."""
    decided = state.decide(done) == "done"
    stats.other_shards_results += decided
    stats.other_shards_dead += not decided


def _other_shard(entry: Item | BadLine | Done, shard: Shard, stats: RunStats) -> bool:
    """Whether the line is another shard's (counted, and passed over)."""
    if in_shard(entry.custom_id, entry.line, shard):
        return False
    stats.other_shards += 1
    return True


def _bad_line(
    entry: BadLine,
    state: LedgerState,
    stats: RunStats,
    write_dead: Callable[[bytes], None],
    events: Events,
) -> None:
    """A new bad line is dead-lettered; one an earlier run decided is counted."""
    decision = state.decide(entry)
    if decision is not None:
        _skipped(decision, stats)
        stats.skipped_dead_lines += decision != "done"
        return
    write_dead(input_dead_line(entry))
    stats.dead += 1
    stats.dead_input += 1
    stats.dead_by_status[failure_key(None, entry.type)] += 1
    events.dead_letter(entry.custom_id, entry.line, None, entry.type)


def _skipped(decision: Decision, stats: RunStats) -> None:
    """Count a line an earlier run decided (done, or still dead)."""
    stats.skipped_done += 1
    stats.skipped_dead += decision != "done"
