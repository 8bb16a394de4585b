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
import zlib
from functools import cache
from typing import Any

import fastavro

from adapters.nats import legacy
from adapters.nats.codec import SCHEMA_DIR
from adapters.nats.codec import schema_path as journal_schema_path
from adapters.nats.records import shard_in, shard_out
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


def encode_state(state: ShardState) -> bytes:
    record = {"format_version": SNAPSHOT_VERSION, "shard": state.name, **shard_out(state)}
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema(), record)
    body = out.getvalue()
    return TAG + body + zlib.crc32(body).to_bytes(4, "big")


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
