"""The Avro body of a business event, written by hand for its one schema
(schemas/business_event.avsc, version 3): the bytes `fastavro.schemaless_writer` writes
for the same record, at a fraction of its cost (bench/README.md, "Followers that cost
little").

fastavro interprets the schema for every record, and picks a union's branch by
validating the value against each branch: for the event's `lot` and `finance` unions that
is a second walk over the nested record. The event bus writes one Avro body per movement,
so that interpretation was the largest single part of its own CPU. Here the schema's
fields are written in their order by straight-line code:
- int and long: zig-zag varints, refused outside 64 bits (OverflowError, as fastavro);
- string: the UTF-8 length as a long, then the bytes; double: 8 bytes little-endian;
  boolean: one byte;
- a `["null", T]` union: the branch index as a long (0 for null, else 1), then T. A value
  fastavro could not place in the union (an `int` outside 32 bits) is refused with
  ValueError, as there.

`tests/unit/test_event_avro.py` holds it equal to fastavro for any record of the schema,
and `FIELDS` to the schema's fields: a new schema version fails that test until this
writer follows it.
"""

from __future__ import annotations

import struct
from typing import Any

# The schema's fields, in order, as this writer writes them (checked against the file).
FIELDS = (
    "schema_version",
    "event_id",
    "kind",
    "sku",
    "site",
    "seq",
    "lot_id",
    "qty",
    "from",
    "to",
    "held_delta",
    "hold_id",
    "request_id",
    "doc_ref",
    "at_ms",
    "lot",
    "hold_expires_at_ms",
    "shard",
    "batch_seq",
    "index",
    "stream_seq",
    "finance",
    "source",
    "confidence",
    "business_at_ms",
)
PLACE_FIELDS = ("external", "bin", "status", "owner")
LOT_FIELDS = ("received_at_ms", "expires_at_ms", "opened_at_ms")
FINANCE_FIELDS = (
    "currency",
    "unit_cost",
    "unit_price",
    "tax_rate",
    "terms",
    "discount_pct",
    "discount_days",
    "net_days",
    "extended_cost",
    "extended_price",
    "tax_amount",
    "customer_tier",
    "sales_channel",
    "tax_attribute",
    "gift",
    "return_of",
    "to_site",
    "to_company",
)

_MIN_LONG, _MAX_LONG = -(2**63), 2**63 - 1
_MIN_INT, _MAX_INT = -(2**31), 2**31 - 1
_NULL, _SECOND = 0, 2  # a union's branch index 0 and 1, zig-zag encoded
_double = struct.Struct("<d").pack


_LONG_CACHE_MAX = 4_096  # distinct large values kept encoded (then the cache starts again)
_long_cache: dict[int, bytes] = {}  # times repeat within a batch: at_ms, a lot's dates, expiries


def _long(buf: bytearray, n: int) -> None:
    if 0 <= n < 64:  # most quantities, indexes, versions: one byte
        buf.append(n << 1)
        return
    data = _long_cache.get(n)
    if data is None:
        data = _varint(n)
        if len(_long_cache) >= _LONG_CACHE_MAX:
            _long_cache.clear()
        _long_cache[n] = data
    buf += data


def _varint(n: int) -> bytes:
    if not _MIN_LONG <= n <= _MAX_LONG:
        raise OverflowError(f"{n} does not fit an Avro long")
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _strings(buf: bytearray, texts: tuple[str, ...]) -> None:
    """Consecutive string fields (one loop, not a call per field: this is the hot part)."""
    for text in texts:
        if not text:  # most optional strings: one byte
            buf.append(0)
            continue
        data = text.encode()
        size = len(data)
        if size < 64:
            buf.append(size << 1)
        else:
            _long(buf, size)
        buf += data


def _lot(buf: bytearray, lot: dict[str, int] | None) -> None:
    if lot is None:
        buf.append(_NULL)
        return
    buf.append(_SECOND)
    _long(buf, lot["received_at_ms"])
    _long(buf, lot["expires_at_ms"])
    _long(buf, lot["opened_at_ms"])


def _optional_int(buf: bytearray, n: int | None) -> None:
    if n is None:
        buf.append(_NULL)
        return
    if not _MIN_INT <= n <= _MAX_INT:  # fastavro finds no branch of ["null", "int"] for it
        raise ValueError(f"{n} is not in the union ['null', 'int']")
    buf.append(_SECOND)
    _long(buf, n)


def _finance(buf: bytearray, f: dict[str, Any] | None) -> None:
    if f is None:
        buf.append(_NULL)
        return
    buf.append(_SECOND)
    _strings(buf, (f["currency"], f["unit_cost"], f["unit_price"], f["tax_rate"], f["terms"]))
    pct = f["discount_pct"]
    if pct is None:
        buf.append(_NULL)
    else:
        buf.append(_SECOND)
        _strings(buf, (pct,))
    _optional_int(buf, f["discount_days"])
    _optional_int(buf, f["net_days"])
    _strings(
        buf,
        (
            f["extended_cost"],
            f["extended_price"],
            f["tax_amount"],
            f["customer_tier"],
            f["sales_channel"],
            f["tax_attribute"],
        ),
    )
    buf.append(1 if f["gift"] else 0)
    _strings(buf, (f["return_of"], f["to_site"], f["to_company"]))


def event_avro(r: dict[str, Any]) -> bytes:
    """The schemaless Avro body of a business event record (bus.event_record's shape)."""
    buf = bytearray()
    _long(buf, r["schema_version"])
    _strings(buf, (r["event_id"], r["kind"], r["sku"], r["site"]))
    _long(buf, r["seq"])
    _strings(buf, (r["lot_id"],))
    _long(buf, r["qty"])
    src, dst = r["from"], r["to"]
    _strings(
        buf,
        (
            src["external"],
            src["bin"],
            src["status"],
            src["owner"],
            dst["external"],
            dst["bin"],
            dst["status"],
            dst["owner"],
        ),
    )
    _long(buf, r["held_delta"])
    _strings(buf, (r["hold_id"], r["request_id"], r["doc_ref"]))
    _long(buf, r["at_ms"])
    _lot(buf, r["lot"])
    _long(buf, r["hold_expires_at_ms"])
    _strings(buf, (r["shard"],))
    _long(buf, r["batch_seq"])
    _long(buf, r["index"])
    _long(buf, r["stream_seq"])
    _finance(buf, r["finance"])
    _strings(buf, (r["source"],))
    buf += _double(r["confidence"])
    _long(buf, r["business_at_ms"])
    return bytes(buf)
