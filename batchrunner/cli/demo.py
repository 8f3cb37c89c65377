"""``batchrunner demo``: the quickstart from the files shipped in the package, so that it runs
from a wheel as from a clone (``jobs/`` and ``samples/`` come with a clone only)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import click

from batchrunner.cli.run import run
from batchrunner.errors import ConfigError

__all__ = ["demo"]

_FILES = ("quickstart.toml", "prompts.jsonl")


@click.command(
    short_help="Run the quickstart on the embedded mock server (no key, no network).",
    epilog="\b\nExamples:\n  batchrunner demo\n  batchrunner demo /tmp/try-it -q",
)
@click.argument("folder", default="batchrunner-demo", type=click.Path(path_type=Path))
@click.option("-q", "--quiet", count=True, help="As run's -q: a verdict; -qq: nothing.")
@click.pass_context
def demo(ctx: click.Context, folder: Path, quiet: int) -> None:
    """Run the quickstart on the embedded mock server: its job file and 300-line input are
    copied into FOLDER [batchrunner-demo] and run there, as `batchrunner run
    FOLDER/quickstart.toml` would. Expect 289 results, 9 dead letters (some lines are broken
    on purpose) and exit code 1. Run it again: nothing is sent twice.
    """
    try:
        folder.mkdir(exist_ok=True)  # one level, under a folder that exists
    except OSError as exc:
        raise ConfigError(f"cannot make the folder {folder}: {exc.strerror}", path=folder) from None
    shipped = files("batchrunner.demo")
    for name in _FILES:
        target = folder / name
        if not target.exists():  # a copy already there is the one its results belong to
            target.write_bytes(shipped.joinpath(name).read_bytes())
    ctx.invoke(run, input=folder / "quickstart.toml", quiet=quiet or None)
