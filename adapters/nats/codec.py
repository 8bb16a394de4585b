"""Avro encoding of journal entries (schemas/journal_batch.avsc).

Evolution rule (the journal is read back for years, by newer code):
- never remove or rename a field, a record or a union branch, and never change a type;
- add a field only with a default, at the end of its record; add an op only as a new
  union branch at the end of `ops`;
- a message is the Avro body followed by its CRC32 (4 bytes, big-endian);
- bump `SCHEMA_VERSION` with every change and keep every older schema file, so a reader
  decodes each message with the schema it was written with (schemaless messages carry
  no schema: the version field, always first, says which one).

Versions: 1 (journal_batch.v1.avsc); 2 (journal_batch.avsc) adds `finance` to every
command, `source` to Receive, `destination` and `status` to Consume. A v1 message is
decoded with the v1 schema, and the fields it lacks take the dataclasses' defaults.
"""

from __future__ import annotations

import io
import json
import zlib
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

from engine.domain.catalog import Site, Sku
from engine.domain.commands import (
    Adjust,
    ChangeStatus,
    Commit,
    Consume,
    Move,
    Receive,
    Release,
    Reserve,
    ReserveLine,
    Strategy,
)
from engine.domain.model import External, Finance, Lot, Movement, MovementKind, QuantKey
from engine.domain.ports import JournalEntry
from engine.domain.shard import Adopt, Expect, HandOff, HoldHeader, PutSite, PutSku, RegisterHold, Sweep

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # every version ever written; a reader decodes all of them
SCHEMA_DIR = Path(__file__).with_name("schemas")
_NS = "lotwise.journal.v1."
_PLAIN_OPS: dict[type, str] = {
    Receive: "Receive",
    Move: "Move",
    ChangeStatus: "ChangeStatus",
    Release: "Release",
    Commit: "Commit",
    Adjust: "Adjust",
    Expect: "Expect",
    HandOff: "HandOff",
    Sweep: "Sweep",
}
_PLAIN_BY_NAME = {name: cls for cls, name in _PLAIN_OPS.items()}


@cache
def schema(version: int = SCHEMA_VERSION) -> Any:
    path = SCHEMA_DIR / ("journal_batch.avsc" if version == SCHEMA_VERSION else f"journal_batch.v{version}.avsc")
    return fastavro.parse_schema(json.loads(path.read_text()))


def encode_entry(entry: JournalEntry) -> bytes:
    record = {
        "schema_version": SCHEMA_VERSION,
        "shard": entry.shard,
        "batch_seq": entry.batch_seq,
        "now_ms": entry.now_ms,
        "ops": [_op_out(op) for op in entry.ops],
        "movements": [_movement_out(m) for m in entry.movements],
    }
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema(), record)
    body = out.getvalue()
    return body + zlib.crc32(body).to_bytes(4, "big")


def decode_entry(data: bytes) -> JournalEntry:
    """Raise ValueError when `data` is not an intact journal entry of a known schema version.

    A CRC32 trailer guards the Avro body: random corruption can otherwise parse as a
    different, valid-looking entry."""
    if len(data) < 5:
        raise ValueError(f"message too short ({len(data)} bytes)")
    data, crc = data[:-4], int.from_bytes(data[-4:], "big")
    if zlib.crc32(data) != crc:
        raise ValueError("checksum mismatch (truncated or corrupted message)")
    version = _zigzag_int(data)
    if version not in READABLE_VERSIONS:
        raise ValueError(f"unknown journal schema version {version}")
    try:
        record = fastavro.schemaless_reader(io.BytesIO(data), schema(version), return_record_name=True)
        return JournalEntry(
            shard=record["shard"],
            batch_seq=record["batch_seq"],
            now_ms=record["now_ms"],
            ops=tuple(_op_in(name, value) for name, value in record["ops"]),
            movements=tuple(_movement_in(m) for m in record["movements"]),
        )
    except (EOFError, KeyError, TypeError, IndexError, UnicodeDecodeError, OverflowError) as exc:
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


# ---- ops ----


def _op_out(op: Any) -> tuple[str, dict[str, Any]]:
    name = _PLAIN_OPS.get(type(op))
    if name is not None:
        return _NS + name, _command_out(op)
    match op:
        case Reserve():
            value = _command_out(op)
            value["lines"] = [_fields(line) for line in op.lines]
            return _NS + "Reserve", value
        case Consume():
            return _NS + "Consume", _command_out(op)
        case PutSku():
            return _NS + "PutSku", {"sku": _fields(op.sku)}
        case PutSite():
            return _NS + "PutSite", {"site": _fields(op.site)}
        case RegisterHold():
            header = _fields(op.header)
            header["pairs"] = [{"sku": sku, "site": site} for sku, site in op.header.pairs]
            return _NS + "RegisterHold", header
        case Adopt():
            return _NS + "Adopt", {
                "sku": op.sku,
                "site": op.site,
                "cell_blob": op.cell_blob,
                "skus": [_fields(s) for s in op.skus],
                "sites": [_fields(s) for s in op.sites],
            }
    raise TypeError(f"{type(op).__name__} is not a journaled op")


def _op_in(name: str, value: dict[str, Any]) -> Any:
    short = name.removeprefix(_NS)
    plain = _PLAIN_BY_NAME.get(short)
    if plain is not None:
        return plain(**_command_in(value))
    match short:
        case "Reserve":
            lines = tuple(ReserveLine(**{**line, "strategy": Strategy(line["strategy"])}) for line in value["lines"])
            return Reserve(**{**_command_in(value), "lines": lines})
        case "Consume":
            return Consume(**{**_command_in(value), "strategy": Strategy(value["strategy"])})
        case "PutSku":
            return PutSku(Sku(**value["sku"]))
        case "PutSite":
            return PutSite(Site(**value["site"]))
        case "RegisterHold":
            pairs = tuple((p["sku"], p["site"]) for p in value["pairs"])
            return RegisterHold(HoldHeader(**{**value, "pairs": pairs}))
        case "Adopt":
            return Adopt(
                value["sku"],
                value["site"],
                value["cell_blob"],
                tuple(Sku(**s) for s in value["skus"]),
                tuple(Site(**s) for s in value["sites"]),
            )
    raise ValueError(f"unknown op {name}")


def _fields(obj: Any) -> dict[str, Any]:
    """A slotted dataclass's fields as a dict (shallow; StrEnums stay str-compatible)."""
    return {name: getattr(obj, name) for name in obj.__slots__}


def _command_out(op: Any) -> dict[str, Any]:
    """An op's fields; a command's finance context as its branch of the Avro union."""
    value = _fields(op)
    if "finance" in value:
        finance = value["finance"]
        value["finance"] = None if finance is None else (_NS + "Finance", _fields(finance))
    return value


def _command_in(value: dict[str, Any]) -> dict[str, Any]:
    """An op's decoded fields as its dataclass takes them: the finance record and the
    external buckets (Receive.source, Consume.destination) back to their types. Fields a
    v1 message lacks are simply absent, so the dataclass defaults apply."""
    out = dict(value)
    finance = out.get("finance")
    if finance is not None:
        out["finance"] = Finance(**finance[1])
    for name in ("source", "destination"):
        if name in out:
            out[name] = External(out[name])
    return out


# ---- movements ----


def _bucket_out(bucket: QuantKey | External) -> Any:
    if isinstance(bucket, QuantKey):
        return (_NS + "QuantKey", _fields(bucket))
    return bucket.value


def _bucket_in(value: Any) -> QuantKey | External:
    if isinstance(value, tuple):
        return QuantKey(**value[1])
    return External(value)


def _movement_out(m: Movement) -> dict[str, Any]:
    return {
        "seq": m.seq,
        "kind": m.kind.value,
        "sku": m.sku,
        "site": m.site,
        "lot_id": m.lot_id,
        "qty": m.qty,
        "src": _bucket_out(m.src),
        "dst": _bucket_out(m.dst),
        "held_key": None if m.held_key is None else (_NS + "QuantKey", _fields(m.held_key)),
        "held_delta": m.held_delta,
        "hold_id": m.hold_id,
        "request_id": m.request_id,
        "doc_ref": m.doc_ref,
        "at_ms": m.at_ms,
        "lot": None if m.lot is None else (_NS + "Lot", _fields(m.lot)),
        "expires_at_ms": m.expires_at_ms,
    }


def _movement_in(value: dict[str, Any]) -> Movement:
    held_key = value["held_key"]
    lot = value["lot"]
    return Movement(
        seq=value["seq"],
        kind=MovementKind(value["kind"]),
        sku=value["sku"],
        site=value["site"],
        lot_id=value["lot_id"],
        qty=value["qty"],
        src=_bucket_in(value["src"]),
        dst=_bucket_in(value["dst"]),
        held_key=None if held_key is None else QuantKey(**held_key[1]),
        held_delta=value["held_delta"],
        hold_id=value["hold_id"],
        request_id=value["request_id"],
        doc_ref=value["doc_ref"],
        at_ms=value["at_ms"],
        lot=None if lot is None else Lot(**lot[1]),
        expires_at_ms=value["expires_at_ms"],
    )
