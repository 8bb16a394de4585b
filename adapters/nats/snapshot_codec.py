"""Avro encoding of shard snapshots (schemas/shard_snapshot.avsc): a shard's state as the
typed records of engine.domain.state, never a pickle of live objects.

A snapshot is the tag `LWSA`, the Avro body (its first field, `format_version`, says which
schema wrote it) and a CRC32 of the body (4 bytes, big-endian). The batch, position and
time it was taken at travel beside it (the store's metadata). The evolution rule is the
journal's (adapters/nats/codec.py): fields only added, at the end of a record, with a
default; `SNAPSHOT_VERSION` bumped per change, every older schema file kept
(shard_snapshot.vN.avsc), an upcaster for an older record whose meaning changed, and a
committed sample per version. The snapshot schema names the cell, catalog and hold types
of one journal schema version (`JOURNAL_TYPES`): a change to those is a new journal
version and a new snapshot version.

Versions: `LWS1` (releases up to journal v2: a pickle of the shard core; read once through
the allowlist of adapters/nats/legacy.py); 1 (`LWSA`, journal v3's types). Anything else
raises `UnsupportedFormat` naming the tag or version; the store adds the shard and position.
"""

from __future__ import annotations

import io
import json
import time
import zlib
from collections.abc import Iterator
from functools import cache
from typing import Any

import fastavro

from adapters.nats import legacy
from adapters.nats.codec import SCHEMA_DIR
from adapters.nats.codec import schema_path as journal_schema_path
from adapters.nats.records import cell_out, shard_in, shard_out
from engine.domain.formats import UnsupportedFormat
from engine.domain.state import ShardState

FORMAT = "shard snapshot (Avro)"
TAG = b"LWSA"
LEGACY_TAG = b"LWS1"  # a pickle of ShardCore, written by releases up to journal schema v2
SNAPSHOT_VERSION = 1
READABLE_VERSIONS = (1,)
JOURNAL_TYPES = {1: 3}  # snapshot version → the journal schema version whose named types it uses


@cache
def schema(version: int = SNAPSHOT_VERSION) -> Any:
    named: dict[str, Any] = {}
    fastavro.parse_schema(json.loads(journal_schema_path(JOURNAL_TYPES[version]).read_text()), named_schemas=named)
    name = "shard_snapshot.avsc" if version == SNAPSHOT_VERSION else f"shard_snapshot.v{version}.avsc"
    return fastavro.parse_schema(json.loads((SCHEMA_DIR / name).read_text()), named_schemas=named)


@cache
def _parts_schemas() -> tuple[Any, Any]:
    """The snapshot record without its last field (`cells`), and an array of cells: the
    pieces encode_state_parts writes the very same bytes with."""
    named: dict[str, Any] = {}
    fastavro.parse_schema(
        json.loads(journal_schema_path(JOURNAL_TYPES[SNAPSHOT_VERSION]).read_text()), named_schemas=named
    )
    full = json.loads((SCHEMA_DIR / "shard_snapshot.avsc").read_text())
    if full["fields"][-1]["name"] != "cells":
        raise AssertionError("shard_snapshot.avsc: `cells` must stay the last field (encode_state_parts)")
    head = {**full, "name": "ShardSnapshotHead", "fields": full["fields"][:-1]}
    cells = dict(full["fields"][-1]["type"])
    if "." not in cells["items"] and full.get("namespace"):  # resolved in the record's namespace
        cells["items"] = f"{full['namespace']}.{cells['items']}"
    # A record of one field encodes as that field: the array of cells (a bare array schema
    # would not keep its named types through schemaless_writer).
    block = {
        "type": "record",
        "name": "CellsBlock",
        "namespace": full.get("namespace"),
        "fields": [{"name": "cells", "type": cells}],
    }
    return fastavro.parse_schema(head, named_schemas=dict(named)), fastavro.parse_schema(block, named_schemas=named)


def encode_state(state: ShardState) -> bytes:
    return b"".join(encode_state_parts(state, budget_s=None))


def encode_state_parts(state: ShardState, budget_s: float | None = 0.002) -> Iterator[bytes]:
    """The encoded snapshot in pieces of about `budget_s` seconds of work each (None: one
    piece), so a caller on an event loop can serve between them: encoding 10⁶ quants takes
    seconds, and fastavro holds the GIL throughout (a thread would stall the loop as much).

    Avro writes an array as blocks (a count, then that many items) ended by a zero count, so
    the cells go out a block at a time; any Avro reader reads them as one array (in one
    piece, the bytes are exactly one schemaless_writer call's). A block's size follows the
    measured cost per cell (a cell is the smallest piece)."""
    head_schema, cells_schema = _parts_schemas()
    out = io.BytesIO()
    head = {"format_version": SNAPSHOT_VERSION, "shard": state.name, **shard_out(_without_cells(state))}
    del head["cells"]
    fastavro.schemaless_writer(out, head_schema, head)
    body = out.getvalue()
    crc = zlib.crc32(body)
    cells, i, n = state.cells, 0, 1 if budget_s is not None else len(state.cells)
    while i < len(cells):
        started = time.perf_counter()
        block = [cell_out(c) for c in cells[i : i + n]]
        piece = io.BytesIO()
        fastavro.schemaless_writer(piece, cells_schema, {"cells": block})
        data = piece.getvalue()[:-1]  # a block: the array's closing zero count comes once, at the end
        crc = zlib.crc32(data, crc)
        yield TAG + body + data if i == 0 else data
        i += len(block)
        if budget_s is not None:
            elapsed = max(time.perf_counter() - started, 1e-6)
            n = max(1, min(2 * n, int(len(block) * budget_s / elapsed)))
    end = b"\x00"
    crc = zlib.crc32(end, crc)
    yield (end if cells else TAG + body + end) + crc.to_bytes(4, "big")


def _without_cells(state: ShardState) -> ShardState:
    return ShardState(
        state.name, state.skus, state.sites, state.headers, state.moved, state.expecting, state.with_holds, ()
    )


def decode_state(data: bytes) -> ShardState:
    """Raise UnsupportedFormat for a tag or version this release cannot read, ValueError
    for a damaged snapshot."""
    tag = data[: len(TAG)]
    if tag == LEGACY_TAG:
        return legacy.shard_from_pickle(data[len(LEGACY_TAG) :])
    if tag != TAG:
        raise UnsupportedFormat(f"shard snapshot tagged {tag!r}", None, "unknown snapshot format")
    body, crc = data[len(TAG) : -4], int.from_bytes(data[-4:], "big")
    if len(data) < len(TAG) + 5 or zlib.crc32(body) != crc:
        raise ValueError("snapshot checksum mismatch (truncated or corrupted)")
    version = _first_int(body)
    if version not in READABLE_VERSIONS:
        raise UnsupportedFormat(FORMAT, version, f"unknown snapshot schema version {version}")
    try:
        record = fastavro.schemaless_reader(io.BytesIO(body), schema(version), return_record_name=True)
        if not isinstance(record, dict):
            raise TypeError(f"a snapshot decodes to a {type(record).__name__}")
        return shard_in(record["shard"], record)
    except (EOFError, KeyError, TypeError, IndexError, UnicodeDecodeError, OverflowError, ValueError) as exc:
        raise ValueError(f"undecodable snapshot: {type(exc).__name__}: {exc}") from None


def _first_int(body: bytes) -> int:
    """The leading zig-zag varint (the format version)."""
    value, shift = 0, 0
    for byte in body[:5]:
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1)
        shift += 7
    raise ValueError("truncated snapshot version")
