"""Avro encoding of journal entries (schemas/journal_batch.avsc) and its evolution rule.

Evolution rule (the journal is read back for years, by newer code):
- never remove or rename a field, a record or a union branch, and never change a type;
- add a field only with a default, at the end of its record; add an op only as a new
  union branch at the end of `ops`;
- bump `SCHEMA_VERSION` with every change and keep every older schema file
  (journal_batch.vN.avsc), so a reader decodes each message with the schema it was written
  with (schemaless messages carry no schema: the version field, always first, says which);
- when an older version's record means something a newer one says differently, an
  upcaster (`_UPCASTERS`) rewrites the old record into the current shape before it becomes
  a domain value — the domain only ever sees today's types;
- commit a sample of every version (tests/data/journal/) and keep the test that decodes them;
- a message is the Avro body followed by its CRC32 (4 bytes, big-endian). A version this
  release does not know raises `UnsupportedFormat` naming it; the journal adds the shard
  and the position (`UnreadableFormat`), and recovery stops there.

Versions: 1 (journal_batch.v1.avsc); 2 (journal_batch.v2.avsc) adds `finance` to every
command, `source` to Receive, `destination` and `status` to Consume — fields a v1 message
lacks take the dataclasses' defaults; 3 (journal_batch.v3.avsc) adds `cell` to Adopt, the
handed-off cell as a typed record (engine.domain.state.CellState). v1 and v2 carried that
cell as a pickle in `cell_blob` (empty since v3); their upcaster reads it once, through
an allowlist (adapters/nats/legacy.py); 4 (journal_batch.v4.avsc) adds the cell commands
Count, ExpireLots, ScrapOverAge, OpenLot and FreezeStock (ops, and remembered commands at the end of
their union) with their answers, `source` and `confidence` to Movement, and
`opened_shelf_life_hours` and `substitutes` to Sku — all with defaults, so a v3 record
needs no upcaster; 5 (journal_batch.v5.avsc) adds `receipts` (bytes, default empty) to the
entry: an entry of receipts only (a bulk load's) is written as columns there
(adapters/nats/receipt_columns.py), its `ops` and `movements` empty; decoded, it is the
same entry; 6 (journal_batch.v6.avsc) adds `delta_qty` to Adjust (≠ 0: a relative
adjustment applied inside the cell) and `prev_seq` to DeviceOp (the device's previous seq
on the cell: a gap between uploads is seen) — their defaults, 0 and -1 (absolute; not
said), are what a v5 record meant, so it needs no upcaster either; 7 (journal_batch.avsc)
adds the typed attributes to Finance (customer_tier, sales_channel, tax_attribute, gift,
return_of, to_site, to_company) — "" / false, what a v6 Finance said (its attributes, if
any, rode on the doc_ref after "?", which the finance follower still reads). Snapshots:
adapters/nats/snapshot_codec.py.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

from adapters.nats import legacy, receipt_columns
from adapters.nats.entry_writer import EntryWriter
from adapters.nats.records import NS, cell_out, movement_in, movement_out, op_in, op_out
from engine.domain.formats import UnsupportedFormat
from engine.domain.model import QuantKey
from engine.domain.ports import JournalEntry

FORMAT = "journal batch (Avro)"
SCHEMA_VERSION = 7
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7)  # every version ever written; a reader decodes all of them
SCHEMA_DIR = Path(__file__).with_name("schemas")


def schema_path(version: int = SCHEMA_VERSION) -> Path:
    return SCHEMA_DIR / ("journal_batch.avsc" if version == SCHEMA_VERSION else f"journal_batch.v{version}.avsc")


@cache
def schema(version: int = SCHEMA_VERSION) -> Any:
    return fastavro.parse_schema(json.loads(schema_path(version).read_text()))


@cache
def _entry_writer() -> EntryWriter:
    return EntryWriter(json.loads(schema_path().read_text()))


def encode_entry(entry: JournalEntry, columns: bool = True) -> bytes:
    """`columns=False`: records even for receipts only (as v4 wrote them; benches, tests).

    The order path's entries (reserves, commits, releases and their movements) are written
    by adapters/nats/entry_writer.py, ~3x cheaper than fastavro and byte for byte the same;
    every other entry goes through fastavro (`encode_entry_fastavro`)."""
    receipts = receipt_columns.encode(entry.ops, entry.movements) if columns else None  # None: records
    if receipts is None:
        body = _entry_writer().write(
            SCHEMA_VERSION, entry.shard, entry.batch_seq, entry.now_ms, entry.ops, entry.movements
        )
        if body is not None:
            return body + zlib.crc32(body).to_bytes(4, "big")
    return _encode_fastavro(entry, receipts)


def encode_entry_fastavro(entry: JournalEntry, columns: bool = True) -> bytes:
    """encode_entry through fastavro alone: the reference the direct writer must match."""
    receipts = receipt_columns.encode(entry.ops, entry.movements) if columns else None
    return _encode_fastavro(entry, receipts)


def _encode_fastavro(entry: JournalEntry, receipts: bytes | None) -> bytes:
    record = {
        "schema_version": SCHEMA_VERSION,
        "shard": entry.shard,
        "batch_seq": entry.batch_seq,
        "now_ms": entry.now_ms,
        "ops": [op_out(op) for op in entry.ops] if receipts is None else [],
        "movements": [movement_out(m) for m in entry.movements] if receipts is None else [],
        "receipts": receipts or b"",
    }
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema(), record)
    body = out.getvalue()
    return body + zlib.crc32(body).to_bytes(4, "big")


def decode_entry(data: bytes) -> JournalEntry:
    """Raise ValueError when `data` is not an intact journal entry, UnsupportedFormat (a
    ValueError) when it is one of a schema version this release cannot read.

    A CRC32 trailer guards the Avro body: random corruption can otherwise parse as a
    different, valid-looking entry."""
    if len(data) < 5:
        raise ValueError(f"message too short ({len(data)} bytes)")
    data, crc = data[:-4], int.from_bytes(data[-4:], "big")
    if zlib.crc32(data) != crc:
        raise ValueError("checksum mismatch (truncated or corrupted message)")
    version = _zigzag_int(data)
    if version not in READABLE_VERSIONS:
        raise UnsupportedFormat(FORMAT, version, f"unknown journal schema version {version}")
    try:
        record = fastavro.schemaless_reader(io.BytesIO(data), schema(version), return_record_name=True)
        if not isinstance(record, dict):
            raise TypeError(f"a journal entry decodes to a {type(record).__name__}")
        upcast = _UPCASTERS.get(version, _as_is)
        ops = tuple(op_in(name, upcast(name, value, version)) for name, value in record["ops"])
        keys: dict[tuple[str, ...], QuantKey] = {}  # one QuantKey per quant named in the entry
        movements = tuple(movement_in(m, keys) for m in record["movements"])
        if record.get("receipts"):  # v5 on: receipts only, as columns
            if ops or movements:
                raise ValueError("an entry with receipt columns and records besides")
            ops, movements = receipt_columns.decode(record["receipts"])
        return JournalEntry(
            shard=record["shard"], batch_seq=record["batch_seq"], now_ms=record["now_ms"], ops=ops, movements=movements
        )
    except UnsupportedFormat:
        raise
    except (EOFError, KeyError, TypeError, IndexError, UnicodeDecodeError, OverflowError, ValueError) as exc:
        raise ValueError(f"undecodable journal entry: {type(exc).__name__}: {exc}") from None


def _zigzag_int(data: bytes) -> int:
    """The first field (schema_version) as Avro writes it: a zig-zag varint."""
    shift, value = 0, 0
    for i, byte in enumerate(data[:5]):
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1)
        shift += 7
        if i == 4:
            break
    raise ValueError("truncated schema version")


# ---- upcasters: an older version's op record → the current shape ----

Upcaster = Callable[[str, dict[str, Any], int], dict[str, Any]]


def _as_is(name: str, value: dict[str, Any], version: int) -> dict[str, Any]:
    return value


def _pickled_cell_to_record(name: str, value: dict[str, Any], version: int) -> dict[str, Any]:
    """v1/v2: an Adopt's cell was a pickle in `cell_blob`; v3 carries it as `cell`. (The
    fields v2 added with defaults need no upcaster: absent, the dataclass defaults apply.)"""
    if name != NS + "Adopt":
        return value
    cell = legacy.cell_from_pickle(value["cell_blob"], version)
    return {**value, "cell_blob": b"", "cell": (NS + "CellState", cell_out(cell))}


_UPCASTERS: dict[int, Upcaster] = {1: _pickled_cell_to_record, 2: _pickled_cell_to_record}  # v3 → v7: defaults
