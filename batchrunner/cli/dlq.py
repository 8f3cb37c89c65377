"""``batchrunner dlq``: look into a dead-letter file and re-queue what is still dead.

Only entries still dead count (see :mod:`batchrunner.dlq.entries`). Library errors become
one-line messages and exit codes in :class:`batchrunner.cli.exits.Group`: a missing file or
a refused overwrite exits 2, a failed write 3.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from batchrunner.cli.exits import Group
from batchrunner.cli.files import check_dead_letter_file
from batchrunner.config import DEFAULT_ENDPOINT, ENDPOINTS
from batchrunner.dlq.entries import (
    DeadLetter,
    LiveEntries,
    RunFiles,
    find_run,
    json_text,
    live_entries,
    select,
)
from batchrunner.dlq.requeue import Requeue, build_requeue, write_requeue
from batchrunner.dlq.summary import Summary, summarise
from batchrunner.errors import DlqError

__all__ = ["dlq"]

_STDOUT = Path("-")
#: Characters of a request ``dlq show`` shows: enough to recognise a prompt, short enough
#: that the table keeps room for the message beside it.
_PREVIEW = 60
F = TypeVar("F", bound=Callable[..., Any])


def _common(f: F) -> F:
    """The DLQ argument and --results, shared by every command."""
    f = click.option(
        "--results",
        type=click.Path(path_type=Path),
        help="The run's results file (default: found from the run manifest or the name).",
    )(f)
    return click.argument("dead_letter", metavar="DLQ", type=click.Path(path_type=Path))(f)


def _filters(f: F) -> F:
    """--status, --type and --grep, shared by show and requeue."""
    f = click.option("--grep", help="Case-insensitive text in the message or the request.")(f)
    f = click.option("--type", "type_", help="Error type, exactly (e.g. not_found).")(f)
    return click.option(
        "--status",
        "statuses",
        type=int,
        multiple=True,
        help="HTTP status code; repeat for several.",
    )(f)


@click.group(
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="\b\nExamples:\n  batchrunner dlq summary samples/prompts.dead.jsonl\n"
    "  batchrunner dlq show samples/prompts.dead.jsonl --status 400 --grep model\n"
    "  batchrunner dlq requeue samples/prompts.dead.jsonl -o retry.jsonl --status 503",
)
def dlq() -> None:
    """Inspect and re-queue a dead-letter file; only what is still dead counts.

    An entry no longer counts once its custom_id has a result in the run's results file
    (--results, else the file named by the run manifest or <stem>.results.jsonl beside it).
    """


def _load(dead_letter: Path, results: Path | None) -> tuple[LiveEntries, RunFiles]:
    warnings: list[str] = []
    check_dead_letter_file(dead_letter)
    run = find_run(dead_letter, results)
    entries = live_entries(dead_letter, run.results, warnings)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    return entries, run


def _nothing(dead_letter: Path, err: bool = False) -> None:
    click.echo(f"nothing is dead-lettered in {dead_letter}", err=err)


@dlq.command(
    epilog="\b\nExamples:\n  batchrunner dlq summary out.dead.jsonl\n"
    "  batchrunner dlq summary out.dead.jsonl --json | jq .total"
)
@_common
@click.option(
    "--top",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Kinds of message to list.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def summary(dead_letter: Path, results: Path | None, top: int, as_json: bool) -> None:
    """Count what is still dead by status and type, and its most common messages."""
    entries, run = _load(dead_letter, results)
    s = summarise(entries.in_file_order(), top)
    if as_json:
        results_used = str(run.results) if run.results else None
        data = {"dead_letter": str(dead_letter), "results": results_used} | s.as_dict()
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    elif not s.total:
        _nothing(dead_letter)
    else:
        console = Console()
        for table in _summary_tables(s):
            console.print(table)
        where = f" (results: {run.results})" if run.results else ""
        console.print(Text(f"{s.total:,} still dead in {dead_letter}{where}"))


def _summary_tables(s: Summary) -> list[Table]:
    by = Table(title="by status", title_justify="left")
    for col in ("status", "type"):
        by.add_column(col)
    by.add_column("count", justify="right")
    for c in s.by_status:
        by.add_row(_status(c.status_code), Text(c.type), f"{c.count:,}")
    msgs = Table(title="most common messages", title_justify="left")
    msgs.add_column("count", justify="right")
    msgs.add_column("message (normalised)")
    msgs.add_column("first line", justify="right")
    msgs.add_column("last line", justify="right")
    for g in s.messages:
        msgs.add_row(f"{g.count:,}", Text(g.pattern), _str(g.first_line), _str(g.last_line))
    if s.more_messages:
        msgs.caption = f"{s.more_messages:,} more kinds of message; see --top"
    return [by, msgs]


@dlq.command(
    epilog="\b\nExamples:\n  batchrunner dlq show out.dead.jsonl --status 429 --limit 5\n"
    "  batchrunner dlq show out.dead.jsonl --type not_found --json | jq .request"
)
@_common
@_filters
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per entry, as written.")
def show(
    dead_letter: Path,
    results: Path | None,
    statuses: tuple[int, ...],
    type_: str | None,
    grep: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """The entries still dead that match every filter given."""
    entries, _ = _load(dead_letter, results)
    if not entries:
        _nothing(dead_letter, err=as_json)
        return
    matching, shown = 0, []
    for e in select(entries, statuses, type_, grep):  # streamed: only the table is held
        matching += 1
        if limit is not None and matching > limit:
            continue  # counted for the title, not shown
        if as_json:
            click.echo(e.text)
        else:
            shown.append(e)
    if not matching:
        click.echo(f"no entry matches, of {len(entries):,} still dead", err=True)
    elif not as_json:
        Console().print(_entries_table(shown, matching, len(entries)))


def _entries_table(shown: list[DeadLetter], matching: int, total: int) -> Table:
    title = f"{len(shown):,} of {matching:,} matching ({total:,} still dead)"
    t = Table(title=title, title_justify="left")
    for col in ("id", "line", "status", "type", "message", "request"):
        t.add_column(col, justify="right" if col == "line" else "left")
    for e in shown:
        t.add_row(
            Text(e.custom_id or "—"),
            _str(e.line),
            _status(e.status_code),
            Text(e.type),
            Text(e.message),
            Text(preview(e.request)),
        )
    return t


@dlq.command(
    epilog="\b\nExamples:\n  batchrunner dlq requeue out.dead.jsonl -o retry.jsonl --status 503\n"
    "  batchrunner dlq requeue out.dead.jsonl -o - --type timeout | head"
)
@_common
@_filters
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="The file to write (-: stdout).",
)
@click.option(
    "--endpoint", type=click.Choice(list(ENDPOINTS)), help="Bodies for [the run's, else chat]."
)
@click.option("--model", help="Model for requests that name none [from the manifest].")
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
def requeue(
    dead_letter: Path,
    results: Path | None,
    output: Path,
    endpoint: str | None,
    model: str | None,
    force: bool,
    **filters: Any,
) -> None:
    """Write the requests still dead to a new input file for `batchrunner run`.

    Bodies are built as `run` builds them, for --endpoint, else the run's endpoint (from its
    manifest), else chat: shorthand lines become Batch API lines. Lines that cannot be sent
    as they are (not JSON, not an object, no request) are left out and counted.
    """
    entries, run = _load(dead_letter, results)
    to_stdout = output == _STDOUT
    if not to_stdout:
        _check_target(output, dead_letter, run.results, _manifest_str(run.manifest or {}, "input"))
    if not entries:
        _nothing(dead_letter, err=to_stdout)
        return
    manifest = run.manifest or {}
    endpoint = endpoint or _manifest_str(manifest, "endpoint") or DEFAULT_ENDPOINT
    model = model or _manifest_str(manifest, "model")
    rq = build_requeue(select(entries, **filters), endpoint, model)
    write = _to_stdout if to_stdout else lambda lines: write_requeue(output, lines, force=force)
    written = write(rq.lines)
    _report(rq, written, output, endpoint, to_stdout)


def _to_stdout(lines: Iterable[bytes]) -> int:
    """Write the lines, and nothing else, on stdout; how many."""
    written = 0
    for line in lines:
        sys.stdout.buffer.write(line)
        written += 1
    sys.stdout.flush()
    return written


def _report(rq: Requeue, written: int, output: Path, endpoint: str, to_stdout: bool) -> None:
    if rq.left_out:
        n = sum(rq.left_out.values())
        click.echo(f"left out {n:,} entries that cannot be re-queued:", err=True)
        for type_, count in rq.left_out.most_common():
            click.echo(f"  {count:,} {type_}: {rq.reasons[type_]}", err=True)
    if not written:
        why = "every matching entry was left out" if rq.left_out else "no entry matches"
        click.echo(f"nothing to re-queue: {why}", err=True)
        return
    hint = "" if endpoint == DEFAULT_ENDPOINT else f" --endpoint {endpoint}"
    where = "stdout" if to_stdout else str(output)
    click.echo(f"re-queued {written:,} requests to {where}", err=to_stdout)
    if not to_stdout:
        click.echo(f"send them with: batchrunner run {output}{hint}")


def _check_target(
    output: Path, dead_letter: Path, results: Path | None, run_input: str | None
) -> None:
    """Never write over the files being read, nor the run's own input, --force or not."""
    keep_all = (dead_letter, results, Path(run_input) if run_input else None)
    for keep in keep_all:
        if keep is not None and output.resolve() == keep.resolve():
            raise DlqError(
                f"-o {output} is one of the files being read (or the run's input); "
                "choose another file",
                path=output,
            )


def _manifest_str(manifest: dict[str, Any], key: str) -> str | None:
    value = manifest.get(key)
    return value if isinstance(value, str) else None


def _status(code: int | None) -> str:
    return "—" if code is None else str(code)


def _str(value: object) -> str:
    return "" if value is None else str(value)


# -- request preview ------------------------------------------------------------------


def preview(request: Any, width: int = _PREVIEW) -> str:
    """A short view of a request: its last user message, prompt or input, or its text."""
    text = _request_text(request)
    if text is None:
        text = request if isinstance(request, str) else json_text(request)
        text = "(nested too deeply to show)" if text is None else text
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _request_text(request: Any) -> str | None:
    if not isinstance(request, dict):
        return None
    body = request.get("body")
    body = body if isinstance(body, dict) else request
    messages = body.get("messages")
    if isinstance(messages, list):
        for m in reversed(messages):
            if isinstance(m, dict) and m.get("role") == "user":
                return _content_text(m.get("content"))
    for key in ("prompt", "input"):
        value = body.get(key)
        if isinstance(value, list) and value and isinstance(value[0], str):
            value = value[0]
        if isinstance(value, str):
            return value
    return None


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if isinstance(p, str)) or None
    return None
