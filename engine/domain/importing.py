"""Bulk load: one row of an import file → one catalog put or one Receive (DESIGN.md §3, §4).

Pure: a row is a mapping of column names to the values a CSV or JSONL reader found
(strings, integers or nothing); the answer is the command it stands for, or every field
violation found in it. Which rows a file holds is told by a `record` column (`sku`,
`site`, `lot`) or, without one, by the file's columns (see `infer_kind`).

A lot row becomes a Receive whose request id is derived from the row's content and its
occurrence number among identical rows: importing the same file again sends the same ids,
so the engine answers the first answers and changes nothing; fixing a refused row and
importing again applies just that row (its content, hence its id, is new).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import NamedTuple, cast

from engine.domain.catalog import Site, Sku
from engine.domain.commands import RECEIVE_SOURCES, Receive, check_id, receive_fields
from engine.domain.errors import FieldViolation
from engine.domain.model import External
from engine.domain.statuses import DEFAULT_DICTIONARY, Role
from engine.domain.vague_dates import vague_reason, vague_word

RowValue = str | int | None
RECORD_COLUMN = "record"  # names each row's kind when a file mixes them
REQUEST_ID_PREFIX = "imp:"  # ids the importer derives; a file may give its own instead


class RowKind(StrEnum):
    SKU = "sku"
    SITE = "site"
    LOT = "lot"


COLUMNS: dict[RowKind, frozenset[str]] = {
    RowKind.SKU: frozenset({"sku", "name", "unit", "opened_shelf_life_days"}),
    RowKind.SITE: frozenset({"site", "org_path", "kind", "name"}),
    RowKind.LOT: frozenset(
        {
            "sku",
            "site",
            "lot_id",
            "qty",
            "bin",
            "status",
            "owner",
            "expires_at",
            "received_at",
            "opened_at",
            "doc_ref",
            "source",
            "request_id",
        }
    ),
}
REQUIRED: dict[RowKind, frozenset[str]] = {
    RowKind.SKU: frozenset({"sku"}),
    RowKind.SITE: frozenset({"site"}),
    RowKind.LOT: frozenset({"sku", "site", "lot_id", "qty"}),
}
ALL_COLUMNS = frozenset({RECORD_COLUMN}).union(*COLUMNS.values())
_ALLOWED = {kind: columns | {RECORD_COLUMN} for kind, columns in COLUMNS.items()}

Command = Sku | Site | Receive


@dataclass(frozen=True, slots=True)
class ParsedRow:
    line: int
    command: Command

    @property
    def kind(self) -> RowKind:
        match self.command:
            case Sku():
                return RowKind.SKU
            case Site():
                return RowKind.SITE
            case _:
                return RowKind.LOT


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that stands for no command: what is wrong with it, field by field."""

    line: int
    violations: tuple[FieldViolation, ...]

    @property
    def message(self) -> str:
        return "; ".join(f"{v.field}: {v.description}" for v in self.violations)


class HeaderError(ValueError):
    """A file whose columns cannot be imported at all (nothing of it is sent)."""


def infer_kind(columns: frozenset[str]) -> RowKind | None:
    """The kind of every row of a file with these columns; None when a `record` column
    says it row by row. Raises HeaderError when the columns fit no kind."""
    if RECORD_COLUMN in columns:
        return None
    if "lot_id" in columns or "qty" in columns:
        return RowKind.LOT
    if "site" in columns and "sku" not in columns:
        return RowKind.SITE
    if "sku" in columns and "site" not in columns:
        return RowKind.SKU
    raise HeaderError(
        f"cannot tell what the rows are from the columns {sorted(columns)}: give a '{RECORD_COLUMN}' column "
        "(sku, site or lot), or the columns of one kind (lots need lot_id and qty)"
    )


def header_problems(columns: frozenset[str]) -> list[str]:
    """Why a file with these columns cannot be imported ([] when it can)."""
    problems = [f"unknown column {c!r}" for c in sorted(columns - ALL_COLUMNS)]
    try:
        kind = infer_kind(columns)
    except HeaderError as exc:
        return [*problems, str(exc)]
    if kind is not None:
        others = columns & ALL_COLUMNS - COLUMNS[kind]
        problems += [f"column {c!r} is not a column of {kind} rows" for c in sorted(others)]
        missing = REQUIRED[kind] - columns
        problems += [f"missing column {c!r} (required for {kind} rows)" for c in sorted(missing)]
    return problems


class RequestIds:
    """Derives each lot row's request id from its content and how often that content came
    before in the file, so identical rows stay distinct and a re-run repeats every id."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def derive(self, content: str) -> str:
        """The id of a row whose command fields, joined, are `content`."""
        occurrence = self._seen.get(content, 0)
        self._seen[content] = occurrence + 1
        digest = hashlib.blake2b(f"{content}\x1e{occurrence}".encode(), digest_size=16).hexdigest()
        return REQUEST_ID_PREFIX + digest


def parse_row(line: int, row: Mapping[str, RowValue], kind: RowKind | None, ids: RequestIds) -> ParsedRow | RowError:
    """The command a row stands for, or every violation found in it."""
    out: list[FieldViolation] = []
    if kind is None:
        kind = _row_kind(row, out)
        if kind is None:
            return RowError(line, tuple(out))
    # A file that mixes kinds has every kind's columns: only a value where none belongs is wrong.
    stray = sorted(name for name in row.keys() - _ALLOWED[kind] if not _blank(row[name]))
    out += [FieldViolation(name, f"is not a column of {kind} rows") for name in stray]
    out += [FieldViolation(name, "is required") for name in sorted(REQUIRED[kind]) if _blank(row.get(name))]
    if out:
        return RowError(line, tuple(out))
    match kind:
        case RowKind.SKU:
            command: Command | None = _sku(row, out)
        case RowKind.SITE:
            command = _site(row, out)
        case RowKind.LOT:
            command = _receive(row, out, ids)
    if out or command is None:
        return RowError(line, tuple(out))
    return ParsedRow(line, command)


def _row_kind(row: Mapping[str, RowValue], out: list[FieldViolation]) -> RowKind | None:
    value = row.get(RECORD_COLUMN)
    if _blank(value):
        try:
            return infer_kind(frozenset(k for k, v in row.items() if not _blank(v)))
        except HeaderError:
            out.append(FieldViolation(RECORD_COLUMN, "is required: sku, site or lot"))
            return None
    try:
        return RowKind(str(value).strip().lower())
    except ValueError:
        out.append(FieldViolation(RECORD_COLUMN, f"must be sku, site or lot (got {value!r})"))
        return None


def _blank(value: RowValue) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(row: Mapping[str, RowValue], name: str, out: list[FieldViolation], default: str = "") -> str:
    value = row.get(name)
    if type(value) is str:  # the common case first: a CSV cell
        return value.strip() or default
    if value is None:
        return default
    if isinstance(value, bool):
        out.append(FieldViolation(name, "must be text"))
        return default
    return value.strip() if isinstance(value, str) else str(value)


def _int(row: Mapping[str, RowValue], name: str, out: list[FieldViolation]) -> int:
    value = row.get(name)
    if type(value) is str and value.isdigit():  # the common case first: a CSV cell
        return int(value)
    if _blank(value):
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if not text.lstrip("-").isdigit():
        out.append(FieldViolation(name, f"must be a whole number (got {value!r})"))
        return 0
    return int(text)


def _time_ms(row: Mapping[str, RowValue], name: str, out: list[FieldViolation]) -> int:
    """A time as UTC epoch milliseconds, from epoch ms or an ISO 8601 date or date-time
    (a date-time without an offset is UTC; a date is its midnight, UTC)."""
    value = row.get(name)
    if _blank(value) or isinstance(value, int):
        return _int(row, name, out)
    ms = _time_text_ms(str(value).strip())
    if ms is None and vague_word(str(value)) is not None:
        out.append(FieldViolation(name, vague_reason(str(value))))
        return 0
    if ms is None:
        out.append(FieldViolation(name, f"must be a date (2027-03-31), a date-time or epoch ms (got {value!r})"))
        return 0
    return ms


@functools.lru_cache(maxsize=4096)  # a file repeats its dates: expiry days, receipt days
def _time_text_ms(text: str) -> int | None:
    if text.isdigit():
        return int(text)
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(moment.timestamp() * 1000)


def _sku(row: Mapping[str, RowValue], out: list[FieldViolation]) -> Sku:
    return Sku(
        sku=_text(row, "sku", out),
        name=_text(row, "name", out),
        unit=_text(row, "unit", out, "ea"),
        opened_shelf_life_days=_int(row, "opened_shelf_life_days", out),
    )


def _site(row: Mapping[str, RowValue], out: list[FieldViolation]) -> Site:
    return Site(
        site=_text(row, "site", out),
        org_path=_text(row, "org_path", out),
        kind=_text(row, "kind", out, "warehouse"),
        name=_text(row, "name", out),
    )


def _source(row: Mapping[str, RowValue], out: list[FieldViolation]) -> External:
    text = _text(row, "source", out)
    if not text:
        return External.SUPPLIER
    for source in RECEIVE_SOURCES:
        if text in (source.value, source.value.lstrip("@")):
            return source
    out.append(FieldViolation("source", f"must be one of {', '.join(s.value for s in RECEIVE_SOURCES)}"))
    return External.SUPPLIER


def _receive(row: Mapping[str, RowValue], out: list[FieldViolation], ids: RequestIds) -> Receive | None:
    sku, site, lot_id = _text(row, "sku", out), _text(row, "site", out), _text(row, "lot_id", out)
    qty = _int(row, "qty", out)
    bin_, doc_ref = _text(row, "bin", out), _text(row, "doc_ref", out)
    status = _text(row, "status", out, DEFAULT_DICTIONARY.role(Role.RECEIPT))
    owner = _text(row, "owner", out, "own")
    expires_at_ms = _time_ms(row, "expires_at", out)
    received_at_ms = _time_ms(row, "received_at", out)
    opened_at_ms = _time_ms(row, "opened_at", out)
    source = _source(row, out)
    given = _text(row, "request_id", out)
    if given:
        check_id(given, "request_id", out)
    if out:
        return None
    if not given:
        fields = (sku, site, lot_id, qty, bin_, status, owner, expires_at_ms, received_at_ms, opened_at_ms, doc_ref)
        given = ids.derive("\x1f".join(map(str, (*fields, source.value))))
    return Receive(
        given, sku, site, lot_id, qty, bin_, status, owner, expires_at_ms, received_at_ms, opened_at_ms, doc_ref, source
    )


_RECEIPT_STATUS = DEFAULT_DICTIONARY.role(Role.RECEIPT)
_LOT_TEXT = ("sku", "site", "lot_id", "qty", "bin", "status", "owner", "doc_ref")
_LOT_TIMES = ("expires_at", "received_at", "opened_at")
_LOT_PLAIN = ("source", "request_id")  # the fast path takes only rows that leave these blank


class LotRow(NamedTuple):
    """A parsed lot row as plain values, in the order of a Receive's fields (and of
    lotwise.v1.ImportLots' columns): what a bulk load carries per lot, without building
    a command object per row."""

    line: int
    request_id: str
    sku: str
    site: str
    lot_id: str
    qty: int
    bin: str
    status: str
    owner: str
    expires_at_ms: int
    received_at_ms: int
    opened_at_ms: int
    doc_ref: str
    source: str

    @classmethod
    def of(cls, line: int, cmd: Receive) -> LotRow:
        *fields, source, _finance = receive_fields(cmd)  # a lot row carries no finance
        return cls._make((line, *fields, source.value))

    @property
    def kind(self) -> RowKind:
        return RowKind.LOT

    @property
    def command(self) -> Receive:
        return Receive(*self[1:-1], External(self.source))


_new_lot_row = tuple.__new__  # LotRow(...) runs a Python-level __new__; this skips it


class LotRows:
    """`parse_row` for plain lot rows, a few times faster: compiled once for a file's
    columns, it parses a row whose values are all text, whose qty is plain digits, whose
    times are dates or blank and that gives no request id and no source — the rows a bulk
    load is made of — straight into a LotRow. Any other row answers None: `parse_row` then
    parses it (or says what is wrong with it). A row it parses gives the very same values
    as `parse_row`'s command (tests/unit/test_importing.py compares them)."""

    __slots__ = ("_ids", "_kind", "_others")

    def __init__(self, columns: frozenset[str], kind: RowKind | None, ids: RequestIds) -> None:
        self._kind = kind
        self._ids = ids
        # Columns of other kinds: a lot row must leave them blank (parse_row's stray check).
        self._others = (*sorted(columns - _ALLOWED[RowKind.LOT]), *_LOT_PLAIN)

    def parse(self, line: int, row: Mapping[str, RowValue]) -> LotRow | None:
        if not self._is_plain_lot(row):
            return None
        texts = [row.get(name, "") for name in _LOT_TEXT]
        if any(type(value) is not str for value in texts):
            return None
        sku, site, lot_id, qty_text, bin_, status, owner, doc_ref = cast(list[str], texts)
        sku, site, lot_id = sku.strip(), site.strip(), lot_id.strip()
        if not (sku and site and lot_id and qty_text.isdigit() and qty_text.isascii()):
            return None
        times = [self._time(row.get(name, "")) for name in _LOT_TIMES]
        if None in times:
            return None
        expires, received, opened = cast(list[int], times)
        qty, bin_, doc_ref = int(qty_text), bin_.strip(), doc_ref.strip()
        status, owner = status.strip() or _RECEIPT_STATUS, owner.strip() or "own"
        fields = (sku, site, lot_id, qty, bin_, status, owner, expires, received, opened, doc_ref, _SUPPLIER)
        request_id = self._ids.derive("\x1f".join(map(str, fields)))
        return _new_lot_row(LotRow, (line, request_id, *fields))

    def _is_plain_lot(self, row: Mapping[str, RowValue]) -> bool:
        if self._kind is None:
            record = row.get(RECORD_COLUMN)
            if type(record) is not str or record.strip().lower() != RowKind.LOT:
                return False
        elif self._kind is not RowKind.LOT:
            return False
        return all(_blank(row.get(name)) for name in self._others)

    @staticmethod
    def _time(value: RowValue) -> int | None:
        if type(value) is not str:
            return None
        text = value.strip()
        return _time_text_ms(text) if text else 0


_SUPPLIER = External.SUPPLIER.value
