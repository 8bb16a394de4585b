"""Reading import files: CSV, JSONL and (when pyarrow is installed) Parquet, row by row.

The reader only turns bytes into rows of named values with their line numbers; what a
row means is engine.domain.importing's business. A file that cannot be read as a whole
(not UTF-8, no header, unknown or missing columns) raises ImportFileError before any row
is read, so nothing of it is sent; a row that cannot be read on its own (a CSV row with
too many fields, a JSONL line that is not an object) comes back with its problem, and
the others go on.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine.domain.importing import HeaderError, RowValue, header_problems

ENCODING_CHECK_CHUNK_BYTES = 1 << 20  # the encoding pass reads this much at a time
PARQUET_BATCH_ROWS = 4_096
MAX_FIELD_CHARS = 64 * 1024  # a CSV field longer than this is a broken file, not data
csv.field_size_limit(MAX_FIELD_CHARS)


class FileFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"


SUFFIXES = {
    ".csv": FileFormat.CSV,
    ".jsonl": FileFormat.JSONL,
    ".ndjson": FileFormat.JSONL,
    ".parquet": FileFormat.PARQUET,
}


class ImportFileError(Exception):
    """The file cannot be imported at all: which file, and why."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path}: {'; '.join(problems)}")
        self.path = path
        self.problems = problems


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One row as read: its line (the row number in a Parquet file), its values, and
    what made it unreadable ("" when it was read)."""

    line: int
    values: dict[str, RowValue] = field(default_factory=dict)
    problem: str = ""


def file_format(path: Path, given: FileFormat | None = None) -> FileFormat:
    if given is not None:
        return given
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise ImportFileError(path, [f"cannot tell the format from {path.suffix!r}: use .csv, .jsonl or .parquet"])
    return found


@dataclass(frozen=True, slots=True)
class CsvLine:
    """One CSV row as read: its line, its cells in the header's order (a short row has
    fewer), or what made it unreadable ("" when it was read)."""

    line: int
    cells: list[str]
    problem: str = ""


@dataclass(frozen=True, slots=True)
class RowSource:
    """A file's rows, and its columns when the file has a header (CSV, Parquet); a JSONL
    file's rows each name their own (`columns` is None).

    A CSV file also offers its rows as they are read (`lines`, with `header`): the same
    rows, in order, without a mapping built per row, for a parse that works by position.
    Both iterate the one file: a reader takes `rows` or `lines`, not both."""

    rows: Iterator[SourceRow]
    columns: frozenset[str] | None
    header: tuple[str, ...] | None = None
    lines: Iterator[CsvLine] | None = None


def read_rows(path: Path, fmt: FileFormat | None = None) -> RowSource:
    """The file's rows, in order. Raises ImportFileError (before the first row) when the
    file cannot be read or its columns cannot be imported."""
    fmt = file_format(path, fmt)
    if not path.is_file():
        raise ImportFileError(path, ["no such file"])
    if fmt is FileFormat.PARQUET:
        return _parquet_rows(path)
    check_utf8(path)
    return _csv_rows(path) if fmt is FileFormat.CSV else RowSource(_jsonl_rows(path), None)


def check_utf8(path: Path) -> None:
    """Raise ImportFileError naming the line of the first byte that is not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as f:
        while chunk := f.read(ENCODING_CHECK_CHUNK_BYTES):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line += chunk.count(b"\n", 0, exc.start)
                raise ImportFileError(
                    path, [f"line {line} is not UTF-8 ({exc.reason}): save the file as UTF-8 and import it again"]
                ) from None
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ImportFileError(path, [f"line {line} ends in a truncated UTF-8 character"]) from None


def _check_columns(path: Path, columns: list[str]) -> None:
    problems = [f"column {c!r} appears twice" for c in sorted({c for c in columns if columns.count(c) > 1})]
    problems += header_problems(frozenset(columns))
    if problems:
        raise ImportFileError(path, problems)


def _csv_rows(path: Path) -> RowSource:
    # utf-8-sig: spreadsheets write a byte-order mark that would stick to the first column.
    f = path.open(encoding="utf-8-sig", newline="")
    try:
        reader = csv.reader(f)
        try:
            header = [c.strip() for c in next(reader)]
        except StopIteration:
            raise ImportFileError(path, ["is empty: a CSV file starts with a header row"]) from None
        except csv.Error as exc:
            raise ImportFileError(path, [f"line 1: {exc}"]) from None
        _check_columns(path, header)
    except BaseException:
        f.close()
        raise
    lines = _csv_lines(f, reader, len(header))
    return RowSource(_csv_body(lines, header), frozenset(header), tuple(header), lines)


def _csv_lines(f: Any, reader: Any, width: int) -> Iterator[CsvLine]:
    with f:
        while True:
            line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield CsvLine(line, [], f"unreadable CSV: {exc}")
                continue
            if not "".join(cells).strip():
                continue  # blank lines carry nothing (every cell blank: so is their concatenation)
            if len(cells) > width:
                yield CsvLine(line, [], f"has {len(cells)} fields; the header has {width}")
                continue
            yield CsvLine(line, cells)


def _csv_body(lines: Iterator[CsvLine], header: list[str]) -> Iterator[SourceRow]:
    for row in lines:
        if row.problem:
            yield SourceRow(row.line, problem=row.problem)
        else:
            yield SourceRow(row.line, dict(zip(header, row.cells, strict=False)))


def _jsonl_rows(path: Path) -> Iterator[SourceRow]:
    with path.open(encoding="utf-8-sig") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield SourceRow(line, problem=f"not JSON: {exc.msg} at column {exc.colno}")
                continue
            if not isinstance(obj, dict):
                yield SourceRow(line, problem=f"must be a JSON object (got {type(obj).__name__})")
                continue
            values, problem = _plain(obj)
            yield SourceRow(line, values, problem)


def _plain(obj: dict[str, Any]) -> tuple[dict[str, RowValue], str]:
    """JSON values as row values: text, whole numbers or nothing."""
    values: dict[str, RowValue] = {}
    for name, value in obj.items():
        if value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            values[name] = value
        elif isinstance(value, float) and value.is_integer():
            values[name] = int(value)
        elif isinstance(value, float):
            values[name] = repr(value)  # refused by the field's own check, with the value shown
        else:
            return {}, f"field {name!r} must be text or a number (got {type(value).__name__})"
    return values, ""


def _parquet_rows(path: Path) -> RowSource:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]  # optional: only when installed
    except ImportError:
        raise ImportFileError(path, ["reading Parquet needs pyarrow: pip install pyarrow"]) from None
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own error types for every broken file
        raise ImportFileError(path, [f"not a readable Parquet file: {exc}"]) from None
    columns = list(parquet.schema_arrow.names)
    _check_columns(path, columns)
    return RowSource(_parquet_body(parquet), frozenset(columns))


def _parquet_body(parquet: Any) -> Iterator[SourceRow]:
    line = 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        for record in batch.to_pylist():
            line += 1
            values, problem = _plain({k: _parquet_value(v) for k, v in record.items()})
            yield SourceRow(line, values, problem)


def _parquet_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


__all__ = [
    "CsvLine",
    "FileFormat",
    "HeaderError",
    "ImportFileError",
    "RowSource",
    "SourceRow",
    "check_utf8",
    "file_format",
    "read_rows",
]
