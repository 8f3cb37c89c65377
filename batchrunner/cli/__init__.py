"""The ``batchrunner`` command: options into a frozen config, library errors into one-line
messages and exit codes, progress and summaries on the terminal.

May import: every package.
"""

from batchrunner.cli.main import main

__all__ = ["main"]
