"""Writing export rows as JSONL, CSV or Parquet, one row at a time (Parquet in row groups),
so that memory does not grow with the file.

Parquet needs the optional ``pyarrow`` (``pip install 'batchrunner[parquet]'``). In CSV a
list (messages, an embedding) is a JSON string; in Parquet ``embedding`` is a list of
vectors (one per input of the request) and ``prompt`` and ``messages`` are JSON strings
when they are not plain text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import IO, Any, Literal

import orjson

from batchrunner.errors import ConfigError
from batchrunner.export.rows import COLUMNS

__all__ = ["Format", "parquet_module", "write_rows"]

Format = Literal["jsonl", "csv", "parquet"]

#: Rows per Parquet row group: a few MB of text each, and one group in memory at a time.
_GROUP = 5000
_INSTALL = "parquet needs pyarrow: pip install 'batchrunner[parquet]' (or pip install pyarrow)"


def write_rows(rows: Iterable[dict[str, Any]], out: IO[bytes], fmt: Format) -> int:
    """Write ``rows`` to ``out`` in ``fmt``; how many were written."""
    if fmt == "jsonl":
        return _jsonl(rows, out)
    if fmt == "csv":
        return _csv(rows, out)
    return _parquet(rows, out)


def _jsonl(rows: Iterable[dict[str, Any]], out: IO[bytes]) -> int:
    n = 0
    for r in rows:
        out.write(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE))
        n += 1
    return n


def _csv(rows: Iterable[dict[str, Any]], out: IO[bytes]) -> int:
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(COLUMNS)
    n = 0
    for r in rows:
        writer.writerow([_cell(r[c]) for c in COLUMNS])
        n += 1
    text.detach()  # the caller owns ``out``
    return n


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return value


def parquet_module() -> Any:
    """pyarrow's parquet writer, or a one-line error that says how to install it."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(_INSTALL, setting="format") from None
    return pa, pq


def _parquet(rows: Iterable[dict[str, Any]], out: IO[bytes]) -> int:
    pa, pq = parquet_module()
    schema = _schema(pa)
    n = 0
    with pq.ParquetWriter(out, schema) as writer:
        group: list[dict[str, Any]] = []
        for r in rows:
            group.append(_arrow_row(r))
            if len(group) == _GROUP:
                writer.write_table(pa.Table.from_pylist(group, schema=schema))
                n, group = n + len(group), []
        if group or n == 0:
            writer.write_table(pa.Table.from_pylist(group, schema=schema))
            n += len(group)
    return n


def _schema(pa: Any) -> Any:
    ints = {"line", "prompt_tokens", "completion_tokens", "error_status_code"}
    fields = []
    for c in COLUMNS:
        if c == "embedding":
            kind = pa.list_(pa.list_(pa.float64()))
        else:
            kind = pa.int64() if c in ints else pa.string()
        fields.append(pa.field(c, kind))
    return pa.schema(fields)


def _arrow_row(r: dict[str, Any]) -> dict[str, Any]:
    row = dict(r)
    for c in ("prompt", "messages"):
        if row[c] is not None and not isinstance(row[c], str):
            row[c] = orjson.dumps(row[c]).decode()
    vectors = row["embedding"]
    if vectors and not isinstance(vectors[0], list):  # one input: one vector
        row["embedding"] = [vectors]
    return row
