"""Bulk load from the caller's side: a file's rows → chunks on Admin.Import → a tally.

Rows are read and parsed here (engine.importfile, engine.domain.importing); a row that
does not parse is refused here, with its line, and never sent. The others go in chunks
(at most `chunk_rows` rows and about `chunk_bytes` bytes each) with at most
`window_chunks` chunks unanswered, so memory stays bounded however large the file is.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import cast

import grpc

from engine.api import convert
from engine.api.errors import from_rpc_error
from engine.api.gen.lotwise.v1 import admin_pb2 as apb
from engine.api.gen.lotwise.v1 import admin_pb2_grpc as apb_grpc
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.importer import IMPORT_MAX_CHUNK_ROWS, IMPORT_MAX_CHUNKS_IN_FLIGHT
from engine.domain.catalog import Site, Sku
from engine.domain.commands import RECEIVE_SOURCES, Receive
from engine.domain.importing import (
    ALL_COLUMNS,
    COLUMNS,
    RECORD_COLUMN,
    LotRow,
    LotRows,
    ParsedRow,
    RequestIds,
    RowError,
    RowKind,
    _time_text_ms,
    infer_kind,
    parse_row,
)
from engine.domain.statuses import DEFAULT_DICTIONARY, Role
from engine.importfile import CsvLine, FileFormat, RowSource, read_rows

DEFAULT_CHUNK_ROWS = 2_048
DEFAULT_CHUNK_BYTES = 1 << 20  # well under the server's 4 MiB message limit
# Chunks sent and not yet answered: the server applies IMPORT_MAX_CHUNKS_IN_FLIGHT at once;
# as many again wait in the pipe so it never idles between them.
DEFAULT_WINDOW_CHUNKS = 2 * IMPORT_MAX_CHUNKS_IN_FLIGHT
REJECTS_COLUMNS = ("file", "line", "code", "reason")


@dataclass(frozen=True, slots=True)
class Refused:
    """A row that changed nothing: where it is, and why."""

    line: int
    code: str
    reason: str


@dataclass(slots=True)
class ImportTally:
    rows: int = 0  # rows read (refused ones included)
    skus: int = 0
    sites: int = 0
    lots: int = 0
    units: int = 0
    refused: list[Refused] = field(default_factory=list)

    @property
    def applied(self) -> int:
        return self.skus + self.sites + self.lots

    def add(self, reply: apb.ImportChunkReply) -> None:
        self.skus += reply.skus
        self.sites += reply.sites
        self.lots += reply.lots
        self.units += reply.units
        self.refused.extend(Refused(r.line, r.code, r.message) for r in reply.refused)


def row_to_pb(row: ParsedRow) -> apb.ImportRow:
    match row.command:
        case Sku() as sku:
            return apb.ImportRow(line=row.line, sku=convert.sku_to_pb(sku))
        case Site() as site:
            return apb.ImportRow(line=row.line, site=convert.site_to_pb(site))
        case Receive() as cmd:
            return apb.ImportRow(line=row.line, lot=receive_to_pb(cmd))


def receive_to_pb(cmd: Receive) -> pb.ReceiveRequest:
    return pb.ReceiveRequest(
        request_id=cmd.request_id,
        sku=cmd.sku,
        site=cmd.site,
        lot_id=cmd.lot_id,
        qty=cmd.qty,
        bin=cmd.bin,
        status=cmd.status,
        owner=cmd.owner,
        expires_at_ms=cmd.expires_at_ms,
        received_at_ms=cmd.received_at_ms,
        opened_at_ms=cmd.opened_at_ms,
        doc_ref=cmd.doc_ref,
        source=cmd.source.value,
    )


def parse_rows(source: RowSource, tally: ImportTally) -> Iterator[ParsedRow | LotRow]:
    """The rows that parse (plain lot rows as LotRow values); the others are counted and
    refused into `tally`."""
    ids = RequestIds()
    # A header names one kind for every row, or (a `record` column) lets each row say it.
    kind = infer_kind(source.columns) if source.columns is not None else None
    header = source.header
    if source.lines is not None and header is not None and kind in (RowKind.LOT, None) and set(header) <= POSITIONAL:
        yield from _parse_lines(source.lines, header, kind, ids, tally)
        return
    # Plain lot rows take the fast path; the others (and JSONL, whose rows name their own
    # columns) the full parse.
    fast = LotRows(source.columns, kind, ids) if source.columns is not None else None
    for row in source.rows:
        tally.rows += 1
        if row.problem:
            tally.refused.append(Refused(row.line, "INVALID_ARGUMENT", row.problem))
            continue
        lot = fast.parse(row.line, row.values) if fast is not None else None
        if lot is not None:
            yield lot
            continue
        parsed = _parsed(parse_row(row.line, row.values, kind, ids), tally)
        if parsed is not None:
            yield parsed


def _parsed(parsed: ParsedRow | RowError, tally: ImportTally) -> ParsedRow | None:
    """The parsed row, or None once its refusal is in `tally`."""
    if isinstance(parsed, RowError):
        tally.refused.append(Refused(parsed.line, "INVALID_ARGUMENT", parsed.message))
        return None
    return parsed


def _parse_lines(
    lines: Iterator[CsvLine], header: tuple[str, ...], kind: RowKind | None, ids: RequestIds, tally: ImportTally
) -> Iterator[ParsedRow | LotRow]:
    """`parse_rows` for a CSV file of lot rows, by position (CsvLots); a line that is not
    plainly a lot takes the full parse of its mapping, in its turn (request ids count
    identical rows in file order)."""
    fast = CsvLots(header, kind, ids)
    for row in lines:
        tally.rows += 1
        if row.problem:
            tally.refused.append(Refused(row.line, "INVALID_ARGUMENT", row.problem))
            continue
        lot = fast.parse(row.line, row.cells)
        if lot is not None:
            yield lot
            continue
        values = dict(zip(header, row.cells, strict=False))
        parsed = _parsed(parse_row(row.line, cast(dict[str, str | int | None], values), kind, ids), tally)
        if parsed is not None:
            yield parsed


# Columns a CSV file may have for CsvLots: any but a request id or a source (a file that
# gives them takes the parse by mapping). With a `record` column, the lines of other kinds
# (and lot lines that fill other kinds' columns) take the full parse.
POSITIONAL = ALL_COLUMNS - {"request_id", "source"}
_LOT_ONLY = COLUMNS[RowKind.LOT] | {RECORD_COLUMN}
_POSITIONAL_ORDER = ("sku", "site", "lot_id", "qty", "bin", "status", "owner", "doc_ref")
_POSITIONAL_TIMES = ("expires_at", "received_at", "opened_at")
_TIMES_REMEMBERED = 4_096  # distinct time texts a file's parse keeps (dates repeat)
_RECEIPT = DEFAULT_DICTIONARY.role(Role.RECEIPT)
_SUPPLIER = RECEIVE_SOURCES[0].value


class CsvLots:
    """engine.domain.importing.LotRows for CSV lines, by position: the same LotRow for
    every line LotRows takes (and None for every other), without a mapping per line —
    a cell is picked by its index, a time text parsed once per file.
    tests/unit/test_import_positional.py compares the two."""

    __slots__ = ("_ids", "_others", "_pad", "_pick", "_record", "_times")

    def __init__(self, header: tuple[str, ...], kind: RowKind | None, ids: RequestIds) -> None:
        at = {name: i for i, name in enumerate(header)}  # a repeated name: its last cell, as a dict keeps
        missing = len(header)  # the index of the "" every line is padded with
        self._pick = itemgetter(*(at.get(name, missing) for name in _POSITIONAL_ORDER + _POSITIONAL_TIMES))
        self._pad = [""] * (missing + 1)
        # Without a kind for the file, a line says it (`record`); other kinds' columns stay blank.
        self._record = at[RECORD_COLUMN] if kind is None else None
        self._others = itemgetter(missing, missing, *(i for name, i in at.items() if name not in _LOT_ONLY))
        self._ids = ids
        self._times: dict[str, int] = {}

    def parse(self, line: int, cells: list[str]) -> LotRow | None:
        cells = cells + self._pad[len(cells) :]
        if self._record is not None and cells[self._record].strip().lower() != RowKind.LOT:
            return None
        if "".join(self._others(cells)).strip():
            return None
        sku, site, lot_id, qty_text, bin_, status, owner, doc_ref, *times = self._pick(cells)
        sku, site, lot_id = sku.strip(), site.strip(), lot_id.strip()
        if not (sku and site and lot_id and qty_text.isdigit() and qty_text.isascii()):
            return None
        known = self._times.get  # most lines' times were seen before: three dict lookups
        expires, received, opened = known(times[0]), known(times[1]), known(times[2])
        if expires is None or received is None or opened is None:
            expires, received, opened = self._time(times[0]), self._time(times[1]), self._time(times[2])
            if expires is None or received is None or opened is None:
                return None
        qty, bin_, doc_ref = int(qty_text), bin_.strip(), doc_ref.strip()
        status, owner = status.strip() or _RECEIPT, owner.strip() or "own"
        fields = (sku, site, lot_id, qty, bin_, status, owner, expires, received, opened, doc_ref, _SUPPLIER)
        request_id = self._ids.derive("\x1f".join(map(str, fields)))
        return _new_lot_row(LotRow, (line, request_id, *fields))

    def _time(self, text: str) -> int | None:
        ms = self._times.get(text)
        if ms is None:
            stripped = text.strip()
            ms = _time_text_ms(stripped) if stripped else 0
            if ms is not None:
                if len(self._times) >= _TIMES_REMEMBERED:
                    self._times.clear()
                self._times[text] = ms
        return ms


_new_lot_row = tuple.__new__  # LotRow(...) runs a Python-level __new__; this skips it


class LotColumns:
    """Lots gathered for one chunk, sent as columns (apb.ImportLots): no message per lot."""

    __slots__ = ("bytes", "rows")

    def __init__(self) -> None:
        self.rows: list[LotRow] = []
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, row: LotRow) -> None:
        self.rows.append(row)
        # About what it encodes to: its texts, plus tags, lengths and numbers (~40 bytes).
        self.bytes += 40 + len(row.request_id) + len(row.sku) + len(row.site) + len(row.lot_id) + len(row.bin)
        self.bytes += len(row.doc_ref)

    def message(self) -> apb.ImportLots:
        # A column every lot leaves at its default is left out (the server fills it in).
        columns = zip(LOT_FIELDS, zip(*self.rows, strict=True), _LOT_REQUIRED, strict=True)
        fields = {
            name: col
            for name, col, required in columns
            if required or col.count(_LOT_DEFAULTS.get(name, "")) != len(col)
        }
        return apb.ImportLots(**fields)


LOT_FIELDS = LotRow._fields  # the names of apb.ImportLots' columns too
_LOT_REQUIRED = tuple(name in ("line", "request_id", "sku", "site", "lot_id", "qty") for name in LOT_FIELDS)


# What the server takes for a column left out (apb.ImportLots); any other column: "".
_LOT_DEFAULTS: dict[str, object] = {
    "status": DEFAULT_DICTIONARY.role(Role.RECEIPT),
    "owner": "own",
    "expires_at_ms": 0,
    "received_at_ms": 0,
    "opened_at_ms": 0,
    "source": RECEIVE_SOURCES[0].value,
}


def as_lot(row: ParsedRow | LotRow) -> LotRow | None:
    if isinstance(row, LotRow):
        return row
    return LotRow.of(row.line, row.command) if isinstance(row.command, Receive) else None


def chunks(
    rows: Iterable[ParsedRow | LotRow], chunk_rows: int = DEFAULT_CHUNK_ROWS, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[apb.ImportChunk]:
    """Rows in chunks of at most `chunk_rows` rows and about `chunk_bytes` bytes: catalog
    rows as rows, lots as columns (apb.ImportLots).

    A catalog row never shares a chunk with a lot: a chunk with catalog rows is a barrier
    on the server, and lots in their own chunks keep running concurrently."""
    if not 1 <= chunk_rows <= IMPORT_MAX_CHUNK_ROWS:
        raise ValueError(f"chunk_rows must be in 1..{IMPORT_MAX_CHUNK_ROWS}")
    seq = 0
    catalog: list[apb.ImportRow] = []
    catalog_bytes = 0
    lots = LotColumns()
    for row in rows:
        lot = as_lot(row)
        if lot is not None:
            if catalog:
                yield apb.ImportChunk(chunk_seq=seq, rows=catalog)
                seq, catalog, catalog_bytes = seq + 1, [], 0
            lots.add(lot)
            if len(lots) >= chunk_rows or lots.bytes >= chunk_bytes:
                yield apb.ImportChunk(chunk_seq=seq, lots=lots.message())
                seq, lots = seq + 1, LotColumns()
            continue
        if len(lots):
            yield apb.ImportChunk(chunk_seq=seq, lots=lots.message())
            seq, lots = seq + 1, LotColumns()
        msg = row_to_pb(cast(ParsedRow, row))  # not a lot: a catalog row
        catalog.append(msg)
        catalog_bytes += msg.ByteSize()
        if len(catalog) >= chunk_rows or catalog_bytes >= chunk_bytes:
            yield apb.ImportChunk(chunk_seq=seq, rows=catalog)
            seq, catalog, catalog_bytes = seq + 1, [], 0
    if catalog:
        yield apb.ImportChunk(chunk_seq=seq, rows=catalog)
    elif len(lots):
        yield apb.ImportChunk(chunk_seq=seq, lots=lots.message())


async def send_chunks(
    channel: grpc.aio.Channel,
    parts: Iterable[apb.ImportChunk],
    tally: ImportTally,
    *,
    metadata: Sequence[tuple[str, str]] = (),
    window_chunks: int = DEFAULT_WINDOW_CHUNKS,
    on_reply: Callable[[apb.ImportChunkReply, int], None] | None = None,
    timeout_s: float | None = None,
) -> None:
    """Stream the chunks and add every reply to `tally`; `on_reply(reply, rows)` is told of
    each. Raises the typed error the stream ended with (nothing after it was applied)."""
    window = asyncio.Semaphore(window_chunks)
    sizes: dict[int, int] = {}

    async def requests() -> AsyncIterator[apb.ImportChunk]:
        for part in parts:
            await window.acquire()
            sizes[part.chunk_seq] = len(part.rows) + len(part.lots.line)
            yield part

    call = apb_grpc.AdminStub(channel).Import(requests(), metadata=tuple(metadata), timeout=timeout_s)
    try:
        async for reply in call:
            window.release()
            tally.add(reply)
            if on_reply is not None:
                on_reply(reply, sizes.pop(reply.chunk_seq, 0))
    except grpc.aio.AioRpcError as err:
        raise from_rpc_error(err) from None


async def import_file(
    channel: grpc.aio.Channel,
    path: Path,
    *,
    fmt: FileFormat | None = None,
    metadata: Sequence[tuple[str, str]] = (),
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    window_chunks: int = DEFAULT_WINDOW_CHUNKS,
    on_reply: Callable[[apb.ImportChunkReply, int], None] | None = None,
    timeout_s: float | None = None,
) -> ImportTally:
    """Import one file (raises ImportFileError before sending anything when it cannot be read)."""
    source = read_rows(path, fmt)
    return await import_source(
        channel,
        source,
        metadata=metadata,
        chunk_rows=chunk_rows,
        window_chunks=window_chunks,
        on_reply=on_reply,
        timeout_s=timeout_s,
    )


async def import_source(
    channel: grpc.aio.Channel,
    source: RowSource,
    *,
    metadata: Sequence[tuple[str, str]] = (),
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    window_chunks: int = DEFAULT_WINDOW_CHUNKS,
    on_reply: Callable[[apb.ImportChunkReply, int], None] | None = None,
    timeout_s: float | None = None,
) -> ImportTally:
    """Import the rows of an opened file; the tally's refusals come in line order. With
    `timeout_s`, the whole stream must end within it (DEADLINE_EXCEEDED otherwise)."""
    tally = ImportTally()
    parts = chunks(parse_rows(source, tally), chunk_rows)
    await send_chunks(
        channel, parts, tally, metadata=metadata, window_chunks=window_chunks, on_reply=on_reply, timeout_s=timeout_s
    )
    tally.refused.sort(key=lambda r: r.line)
    return tally


def write_rejects(path: Path, source: Path, refused: Iterable[Refused]) -> int:
    """Write the refused rows as CSV (file, line, code, reason); returns how many."""
    count = 0
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(REJECTS_COLUMNS)
        for r in refused:
            writer.writerow((str(source), r.line, r.code, r.reason))
            count += 1
    return count
