"""Files of the Files API, kept on disk in a temporary directory the server owns.

Uploads are streamed to disk and job outputs are written there line by line, so a
million-line job costs disk, not memory. :meth:`FileStore.close` removes the directory.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Purposes the upload accepts (the SDK's ``FilePurpose``).
PURPOSES = ("fine-tune", "batch", "ocr", "agentic_safety")


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file: its metadata as the API shows it, and where its bytes are."""

    id: str
    path: Path
    filename: str
    purpose: str
    sample_type: str  # "batch_request" for uploads, "batch_result"/"batch_error" for outputs
    source: str  # "upload" or "mistral"
    size: int
    num_lines: int
    created_at: int
    mimetype: str | None

    def to_json(self, *, with_deleted: bool = False) -> dict[str, Any]:
        """The ``CreateFileResponse`` body (``GetFileResponse`` with ``with_deleted``)."""
        document: dict[str, Any] = {
            "id": self.id,
            "object": "file",
            "bytes": self.size,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "sample_type": self.sample_type,
            "source": self.source,
            "num_lines": self.num_lines,
            "mimetype": self.mimetype,
            "signature": None,
            "expires_at": None,
            "visibility": "workspace",
        }
        if with_deleted:
            document["deleted"] = False
        return document


class LineCounter:
    """Counts non-blank lines of a stream fed in chunks (a line may span chunks)."""

    __slots__ = ("_open_has_text", "lines")

    def __init__(self) -> None:
        self.lines = 0
        self._open_has_text = False

    def feed(self, chunk: bytes) -> None:
        """Count the lines ``chunk`` ends; remember whether the open one has text."""
        *ended, tail = chunk.split(b"\n")
        for part in ended:
            if self._open_has_text or part.strip():
                self.lines += 1
            self._open_has_text = False
        self._open_has_text = self._open_has_text or bool(tail.strip())

    def close(self) -> int:
        """The total, counting a last line without a newline."""
        if self._open_has_text:
            self.lines += 1
            self._open_has_text = False
        return self.lines


class FileStore:
    """The server's files by id, under one temporary directory."""

    __slots__ = ("_files", "root")

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="batchrunner-mock-"))
        self._files: dict[str, StoredFile] = {}

    def new_path(self) -> tuple[str, Path]:
        """A fresh file id and the path its bytes go to."""
        file_id = str(uuid.uuid4())
        return file_id, self.root / file_id

    def add(self, stored: StoredFile) -> None:
        """Make a fully written file visible."""
        self._files[stored.id] = stored

    def get(self, file_id: str) -> StoredFile | None:
        """The file with this id, if it exists."""
        return self._files.get(file_id)

    def all(self) -> list[StoredFile]:
        """Every file, oldest first."""
        return list(self._files.values())

    def delete(self, file_id: str) -> bool:
        """Forget the file and remove its bytes; False when there is no such file.

        A job already reading it keeps its open handle (POSIX keeps the bytes).
        """
        stored = self._files.pop(file_id, None)
        if stored is None:
            return False
        stored.path.unlink(missing_ok=True)
        return True

    def close(self) -> None:
        """Remove the directory and everything in it."""
        self._files.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def now_s() -> int:
    """Wall-clock Unix seconds, as the API's ``created_at`` fields carry."""
    return int(time.time())
