"""The open results and dead-letter files of one run, and what they held when opened."""

from __future__ import annotations

from pathlib import Path

from batchrunner.ledger.appendfile import AppendFile
from batchrunner.ledger.state import scan

__all__ = ["Ledger"]


class Ledger:
    """The open results and dead-letter files of one run, plus what they already hold."""

    __slots__ = ("dead", "results", "state")

    def __init__(self, results_path: Path, dead_path: Path, with_fp: bool = True) -> None:
        self.state = scan(results_path, dead_path, with_fp)
        self.results = AppendFile(results_path)
        try:
            self.dead = AppendFile(dead_path)
        except BaseException:
            self.results.close()
            raise

    @property
    def unchanged(self) -> bool:
        """Whether neither file was written since the scan: :attr:`state` still tells them."""
        return not self.results.grew and not self.dead.grew

    def sync(self) -> None:
        self.results.sync()
        self.dead.sync()

    def close(self) -> None:
        try:
            self.results.close()
        finally:
            self.dead.close()
