"""Encoding of shard snapshots: a shard's state as the typed records of
engine.domain.state, never a pickle of live objects.

Version 2 (tag `LWSB`, written today): the tag, a u16 version (little-endian), the body
of adapters/nats/snapshot_columns.py — the quants, lots and idempotency window as
per-field arrays, the rest (catalog, holds, window entries no table holds) as the Avro of
version 1 — and a CRC32 of everything after the tag (4 bytes, big-endian). Decoding 10⁶
quants is a few array conversions instead of millions of Avro records.

Version 1 (tag `LWSA`, still read): the tag, the Avro body (schemas/shard_snapshot.avsc;
its first field, `format_version`, says which schema wrote it) and a CRC32 of the body.

The batch, position and time a snapshot was taken at travel beside it (the store's
metadata). The evolution rule is the journal's (adapters/nats/codec.py): Avro fields only
added, at the end of a record, with a default; `SNAPSHOT_VERSION` bumped per change, every
older schema file kept (shard_snapshot.vN.avsc), an upcaster for an older record whose
meaning changed, and a committed sample per version (tests/data/journal/). The columnar
layout changes only with a new version (its decoder kept); window tables carry their field
names, so a command or reply that gained a field with a default reads without one. The
snapshot schema names the cell, catalog and hold types of one journal schema version
(`JOURNAL_TYPES`): a change to those is a new journal version and a new snapshot version.

Versions: `LWS1` (releases up to journal v2: a pickle of the shard core; read once through
the allowlist of adapters/nats/legacy.py); 1 (`LWSA`, journal v3's types); 2 (`LWSB`,
columnar, journal v3's types in its rest); 3 (`LWSB`, the same layout, its rest in
Avro version 2: journal v4's types — the cell commands of issue 15 and the sku's
freshness fields); 4 (`LWSB`, the same layout, its rest in Avro version 3: journal v6's
types — Adjust's `delta_qty`, DeviceOp's `prev_seq`); 5 (`LWSB`, the same layout, its rest in
Avro version 4: journal v7's types — Finance's typed attributes, held by the commands of the
idempotency window). Anything else raises `UnsupportedFormat` naming
the tag or version; the store adds the shard and position.
"""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import replace
from functools import cache
from typing import Any

import fastavro

from adapters.nats import legacy
from adapters.nats import snapshot_columns as columns
from adapters.nats.codec import SCHEMA_DIR
from adapters.nats.codec import schema_path as journal_schema_path
from adapters.nats.records import cell_out, shard_in, shard_out
from engine.domain.formats import UnsupportedFormat
from engine.domain.state import CellState, ShardState, window_of

FORMAT = "shard snapshot"
AVRO_TAG = b"LWSA"  # version 1: all Avro
TAG = b"LWSB"  # version 2 on: columnar (adapters/nats/snapshot_columns.py)
LEGACY_TAG = b"LWS1"  # a pickle of ShardCore, written by releases up to journal schema v2
SNAPSHOT_VERSION = 5
AVRO_VERSION = 4  # the Avro schema version a snapshot's rest is written in today
READABLE_VERSIONS = (1, 2, 3, 4, 5)
# Avro schema version → the journal schema version whose named types it uses. The Avro body
# (a version-1 snapshot, a columnar one's rest) starts with its own `format_version`.
JOURNAL_TYPES = {1: 3, 2: 4, 3: 6, 4: 7}  # journal v5 changed no type a snapshot holds (only the entry)
_COLUMNAR_REST = {2: 1, 3: 2, 4: 3, 5: 4}  # columnar snapshot version → the Avro version of its rest
_VERSION = struct.Struct("<H")


@cache
def schema(version: int = AVRO_VERSION) -> Any:
    """The Avro schema of a version-1 snapshot (and of a version-2 snapshot's rest)."""
    named: dict[str, Any] = {}
    fastavro.parse_schema(json.loads(journal_schema_path(JOURNAL_TYPES[version]).read_text()), named_schemas=named)
    name = "shard_snapshot.avsc" if version == AVRO_VERSION else f"shard_snapshot.v{version}.avsc"
    return fastavro.parse_schema(json.loads((SCHEMA_DIR / name).read_text()), named_schemas=named)


@cache
def _parts_schemas() -> tuple[Any, Any]:
    """The snapshot record without its last field (`cells`), and an array of cells: the
    pieces encode_state_parts writes the very same bytes with."""
    named: dict[str, Any] = {}
    fastavro.parse_schema(json.loads(journal_schema_path(JOURNAL_TYPES[AVRO_VERSION]).read_text()), named_schemas=named)
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
    """The encoded snapshot (version 2) in pieces of about `budget_s` seconds of work each
    (None: as few pieces as it comes in), so a caller on an event loop can serve between
    them; pieces may be empty (a turn without output). The longest piece is one column of
    one block (BLOCK_QUANTS values) or one cell's Avro."""
    keys: list[list[columns.TableKey | None]] = []
    rest_cells: list[CellState] = []
    turn = _Turns(budget_s)
    if any(cell.deferred is not None for cell in state.cells):  # a decoded state, written again
        state = replace(state, cells=tuple(map(window_of, state.cells)))
    blocker = _Blocker()
    for cell in state.cells:  # which window entries go to tables, and the blocks: µs per entry
        cell_keys = [columns.table_key(r) for r in cell.remembered]
        keys.append(cell_keys)
        blocker.add(cell, cell_keys)
        if turn.over():
            yield b""
    blocks = blocker.done()
    for cell, cell_keys in zip(state.cells, keys, strict=True):
        rest_cells.append(_rest_cell(cell, cell_keys))
        if turn.over():
            yield b""
    rest_parts = []
    for piece in _avro_parts(replace(state, cells=tuple(rest_cells)), budget_s):
        rest_parts.append(piece)
        yield b""
    rest = b"".join(rest_parts)
    head = _VERSION.pack(SNAPSHOT_VERSION) + struct.pack("<I", len(rest)) + rest + struct.pack("<I", len(blocks))
    crc = zlib.crc32(head)
    yield TAG + head
    for first, last in blocks:
        for piece in columns.block_bytes(state.cells[first:last], keys[first:last]):
            crc = zlib.crc32(piece, crc)
            yield piece
    yield crc.to_bytes(4, "big")


class PartsReader(io.BufferedIOBase):
    """An encoded snapshot's pieces read as one stream (what the object store's `put`
    reads its chunks from): no `b"".join` of the whole — at 10⁶ quants a copy of ~90 MB in
    one go, which stopped the shard for tens of ms. Read from one thread at a time."""

    def __init__(self, parts: list[bytes]) -> None:
        super().__init__()
        self._parts = [memoryview(p) for p in parts if p]
        self._next, self._offset = 0, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(out) and self._next < len(self._parts):
            part = self._parts[self._next]
            n = min(len(out) - filled, len(part) - self._offset)
            out[filled : filled + n] = part[self._offset : self._offset + n]
            filled += n
            self._offset += n
            if self._offset == len(part):
                self._next, self._offset = self._next + 1, 0
        return filled


class _Turns:
    """Says when about `budget_s` seconds of work have passed since it last said so."""

    def __init__(self, budget_s: float | None) -> None:
        self.budget_s = budget_s
        self.since = time.perf_counter()

    def over(self) -> bool:
        if self.budget_s is None or time.perf_counter() - self.since < self.budget_s:
            return False
        self.since = time.perf_counter()
        return True


class _Blocker:
    """Cuts consecutive cells into blocks of about BLOCK_QUANTS quants and window entries,
    a cell at a time (the caller serves between cells: a pass over 10⁶ entries at once was a
    stall of its own); a window entry whose table would be a block's 256th stays in the
    rest (its key set to None in place)."""

    def __init__(self) -> None:
        self.blocks: list[tuple[int, int]] = []
        self.first, self.size, self.at = 0, 0, 0
        self.seen: set[columns.TableKey] = set()

    def add(self, cell: CellState, cell_keys: list[columns.TableKey | None]) -> None:
        if self.size >= columns.BLOCK_QUANTS:
            self.blocks.append((self.first, self.at))
            self.first, self.size, self.seen = self.at, 0, set()
        self.size += len(cell.quants) + len(cell.remembered)
        seen = self.seen
        for j, key in enumerate(cell_keys):
            if key is not None and key not in seen:
                if len(seen) == 255:
                    cell_keys[j] = None
                else:
                    seen.add(key)
        self.at += 1

    def done(self) -> list[tuple[int, int]]:
        if self.first < self.at:
            self.blocks.append((self.first, self.at))
        return self.blocks


def _rest_cell(cell: CellState, keys: list[columns.TableKey | None]) -> CellState:
    """The cell without what the columns carry: quants, lots, window entries in tables."""
    return replace(
        cell,
        quants=(),
        lots=(),
        remembered=tuple(r for r, key in zip(cell.remembered, keys, strict=True) if key is None),
    )


def encode_avro(state: ShardState, version: int = 1) -> bytes:
    """An all-Avro (`LWSA`) snapshot in Avro schema `version`: what releases before snapshot
    version 2 wrote (1; tests, samples), or the same layout with today's types (2)."""
    state = replace(state, cells=tuple(map(window_of, state.cells)))
    out = io.BytesIO()
    record = {"format_version": version, "shard": state.name, **shard_out(state)}
    fastavro.schemaless_writer(out, schema(version), record)
    body = out.getvalue()
    return AVRO_TAG + body + zlib.crc32(body).to_bytes(4, "big")


def _avro_parts(state: ShardState, budget_s: float | None) -> Iterator[bytes]:
    """The Avro body of `state` (schema version 1) in pieces of about `budget_s` seconds of
    work each (None: one piece).

    Avro writes an array as blocks (a count, then that many items) ended by a zero count, so
    the cells go out a block at a time; any Avro reader reads them as one array (in one
    piece, the bytes are exactly one schemaless_writer call's). A block's size follows the
    measured cost per cell (a cell is the smallest piece)."""
    head_schema, cells_schema = _parts_schemas()
    out = io.BytesIO()
    head = {"format_version": AVRO_VERSION, "shard": state.name, **shard_out(_without_cells(state))}
    del head["cells"]
    fastavro.schemaless_writer(out, head_schema, head)
    yield out.getvalue()
    cells, i, n = state.cells, 0, 1 if budget_s is not None else len(state.cells)
    while i < len(cells):
        started = time.perf_counter()
        block = [cell_out(c) for c in cells[i : i + n]]
        piece = io.BytesIO()
        fastavro.schemaless_writer(piece, cells_schema, {"cells": block})
        yield piece.getvalue()[:-1]  # a block: the array's closing zero count comes once, at the end
        i += len(block)
        if budget_s is not None:
            elapsed = max(time.perf_counter() - started, 1e-6)
            n = max(1, min(2 * n, int(len(block) * budget_s / elapsed)))
    yield b"\x00"


def _without_cells(state: ShardState) -> ShardState:
    return replace(state, cells=())


_DAMAGE = (EOFError, KeyError, TypeError, IndexError, UnicodeDecodeError, OverflowError, ValueError, RuntimeError)


def decode_state(data: bytes, deferred_window: bool = False) -> ShardState:
    """Raise UnsupportedFormat for a tag or version this release cannot read, ValueError
    for a damaged snapshot. `deferred_window`: the idempotency windows the columns hold
    stay encoded (CellState.deferred; a recovering shard: most are never asked for again)."""
    tag = data[: len(TAG)]
    if tag == LEGACY_TAG:
        return legacy.shard_from_pickle(data[len(LEGACY_TAG) :])
    if tag not in (TAG, AVRO_TAG):
        raise UnsupportedFormat(f"shard snapshot tagged {tag!r}", None, "unknown snapshot format")
    body, crc = data[len(TAG) : -4], int.from_bytes(data[-4:], "big")
    if len(data) < len(TAG) + 5 or zlib.crc32(body) != crc:
        raise ValueError("snapshot checksum mismatch (truncated or corrupted)")
    version = _first_int(body) if tag == AVRO_TAG else _VERSION.unpack(body[: _VERSION.size])[0]
    # An `LWSA` body's version is its Avro version: 1 as releases wrote it, 2 from tests'
    # encode_avro (a state holding journal v4's types).
    if version not in (JOURNAL_TYPES if tag == AVRO_TAG else _COLUMNAR_REST):
        raise UnsupportedFormat(FORMAT, version, f"unknown snapshot schema version {version}")
    try:
        if tag == AVRO_TAG:
            return _decode_avro(body)
        return _decode_columnar(body, deferred_window)
    except RuntimeError as exc:  # a StopIteration inside a generator: a table ran short
        raise ValueError(f"undecodable snapshot: {exc}") from None
    except _DAMAGE as exc:
        raise ValueError(f"undecodable snapshot: {type(exc).__name__}: {exc}") from None


def _decode_avro(body: bytes | memoryview) -> ShardState:
    version = _first_int(bytes(body[:5]))
    if version not in JOURNAL_TYPES:
        raise UnsupportedFormat(FORMAT, version, f"unknown snapshot Avro version {version}")
    record = fastavro.schemaless_reader(io.BytesIO(body), schema(version), return_record_name=True)
    if not isinstance(record, dict):
        raise TypeError(f"a snapshot decodes to a {type(record).__name__}")
    return shard_in(record["shard"], record)


def _decode_columnar(body: bytes, deferred_window: bool = False) -> ShardState:
    reader = columns.Reader(body, _VERSION.size)
    rest = _decode_avro(reader.take(reader.u32()))
    rest_cells = iter(rest.cells)
    cells: list[CellState] = []
    for _ in range(reader.u32()):
        cells.extend(columns.read_block(reader, rest_cells, deferred_window))
    if next(rest_cells, None) is not None or reader.at != len(body):
        raise ValueError("the columns and the rest hold different cells, or bytes are left over")
    return replace(rest, cells=tuple(cells))


def _first_int(body: bytes) -> int:
    """The leading zig-zag varint (the format version)."""
    value, shift = 0, 0
    for byte in body[:5]:
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1)
        shift += 7
    raise ValueError("truncated snapshot version")
