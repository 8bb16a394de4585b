"""A journal entry of receipts only, as columns (journal schema v5's `receipts` field).

A bulk load journals up to 1,024 receipts per entry (engine.domain.shard.ReceiveBulk);
as Avro records — a record per Receive and per movement, built as dicts first — encoding
one cost ~20 µs per receipt in the shard, about half its work per lot. An entry whose ops
are all plain receipts (a Receive without finance context) and whose movements are all
receipt movements (engine.domain.cell.Cell._receive: External → quant, no hold, no
provenance) is written instead as per-field arrays with one string table (a lot id, a
request id appear in the op and its movement: stored once). Any other entry keeps the
Avro records; `encode` answers None for it. Decoding gives the very same ops and
movements (tests/unit/test_receipt_columns.py), so replay and the followers see no
difference.

Layout (the helpers of adapters/nats/snapshot_columns.py: `ints` = typecode + u32 count +
array bytes, `strs` = `ints` of indexes into the string table):

    u32 receipts, u32 movements, the string table
    receipts   strs request_id, sku, site, lot_id; ints qty; strs bin, status, owner;
               ints expires_at_ms, received_at_ms, opened_at_ms; strs doc_ref, source
    movements  ints seq; strs sku, site, lot_id; ints qty; strs src (External), bin,
               status, owner, request_id, doc_ref; ints at_ms; ints has_lot (0/1);
               ints lot received_at_ms, expires_at_ms, opened_at_ms (0 without a lot)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from adapters.nats.snapshot_columns import Reader, Strings, _ints, records
from engine.domain.commands import Receive
from engine.domain.model import External, Lot, Movement, MovementKind, QuantKey
from engine.domain.receipts import RECEIPT_FIELDS as ALL_RECEIPT_FIELDS

# Receive's fields in its order, but the last (finance: None in a bulk load's receipt; a test checks)
RECEIPT_FIELDS = ALL_RECEIPT_FIELDS[:-1]
_RECEIPT_KINDS = "ssssisssiiiss"  # per field above: s = string, i = integer
_receipt_values = attrgetter(*RECEIPT_FIELDS)
_U32 = struct.Struct("<I")
_EXTERNAL = {e.value: e for e in External}


def encode(ops: Sequence[Any], movements: Sequence[Movement]) -> bytes | None:
    """The entry as columns, or None when it is not receipts only."""
    if not ops or not all(type(op) is Receive and op.finance is None for op in ops):
        return None
    if not all(_plain_receipt(m) for m in movements):
        return None
    strings = Strings()
    parts: list[bytes] = []
    receipt_columns = zip(*map(_receipt_values, ops), strict=True)
    for kind, values in zip(_RECEIPT_KINDS, receipt_columns, strict=True):
        parts.append(_ints(values) if kind == "i" else strings.column(values))
    if movements:
        parts.append(_movement_columns(movements, strings))
    return _U32.pack(len(ops)) + _U32.pack(len(movements)) + strings.table() + b"".join(parts)


def _plain_receipt(m: Movement) -> bool:
    """A movement `decode` rebuilds from the columns it writes (everything else fixed)."""
    dst, lot = m.dst, m.lot
    return (
        m.kind is MovementKind.RECEIVE
        and type(m.src) is External
        and type(dst) is QuantKey
        and dst.lot_id == m.lot_id
        and m.held_key is None
        and m.held_delta == 0
        and m.hold_id == ""
        and m.expires_at_ms == 0
        and m.provenance is None
        and (lot is None or (type(lot) is Lot and lot.lot_id == m.lot_id))
    )


def _movement_columns(movements: Sequence[Movement], strings: Strings) -> bytes:
    # Rows to columns in C: each movement's values at once, then transposed.
    seq, sku, site, lot_id, qty, src, request_id, doc_ref, at_ms = zip(*map(_movement_values, movements), strict=True)
    bins, statuses, owners = zip(*map(_key_values, [m.dst for m in movements]), strict=True)
    lots = [m.lot for m in movements]
    with_lot = [_NO_LOT if lot is None else lot for lot in lots]
    received, expires, opened = zip(*map(_lot_dates, with_lot), strict=True)
    return b"".join(
        (
            _ints(seq),
            strings.column(sku),
            strings.column(site),
            strings.column(lot_id),
            _ints(qty),
            strings.column([e.value for e in src]),  # External: checked by _plain_receipt
            strings.column(bins),
            strings.column(statuses),
            strings.column(owners),
            strings.column(request_id),
            strings.column(doc_ref),
            _ints(at_ms),
            _ints([0 if lot is None else 1 for lot in lots]),
            _ints(received),
            _ints(expires),
            _ints(opened),
        )
    )


_movement_values = attrgetter("seq", "sku", "site", "lot_id", "qty", "src", "request_id", "doc_ref", "at_ms")
_key_values = attrgetter("bin", "status", "owner")  # a receipt movement's dst: a QuantKey (checked)
_lot_dates = attrgetter("received_at_ms", "expires_at_ms", "opened_at_ms")
_NO_LOT = Lot("", 0, 0, 0)


def decode(data: bytes) -> tuple[tuple[Receive, ...], tuple[Movement, ...]]:
    """The entry's ops and movements (ValueError, KeyError, IndexError: damaged)."""
    reader = Reader(data)
    n, moved = reader.u32(), reader.u32()
    reader.strings = reader.string_table()
    columns: list[list[Any]] = [reader.ints() if kind == "i" else reader.strs() for kind in _RECEIPT_KINDS]
    columns[-1] = list(map(_EXTERNAL.__getitem__, columns[-1]))
    if any(len(c) != n for c in columns):
        raise ValueError(f"receipt columns of {sorted({len(c) for c in columns})} rows for {n} receipts")
    ops = records(Receive, [*columns, [None] * n])
    movements = _movements(reader, moved) if moved else []
    if reader.at != len(reader.data):
        raise ValueError("bytes left over after the receipt columns")
    return tuple(ops), tuple(movements)


def _movements(reader: Reader, n: int) -> list[Movement]:
    seq, sku, site, lot_id, qty = reader.ints(), reader.strs(), reader.strs(), reader.strs(), reader.ints()
    src = list(map(_EXTERNAL.__getitem__, reader.strs()))
    bins, statuses, owners = reader.strs(), reader.strs(), reader.strs()
    request_id, doc_ref, at_ms, has_lot = reader.strs(), reader.strs(), reader.ints(), reader.ints()
    received, expires, opened = reader.ints(), reader.ints(), reader.ints()
    columns = (seq, sku, site, lot_id, qty, src, bins, statuses, owners, request_id, doc_ref, at_ms, has_lot)
    if any(len(c) != n for c in (*columns, received, expires, opened)):
        raise ValueError(f"movement columns of unequal length for {n} movements")
    dst = records(QuantKey, (lot_id, bins, statuses, owners))
    # Every lot built a column at a time; a movement without one (flag 0) gets None.
    lots: list[Lot | None] = records(Lot, (lot_id, received, expires, opened))
    if has_lot.count(1) != n:
        lots = [lot if flag else None for lot, flag in zip(lots, has_lot, strict=True)]
    kind, none, zero, empty = [MovementKind.RECEIVE] * n, [None] * n, [0] * n, [""] * n
    fixed = (none, zero, empty)  # held_key, held_delta, hold_id
    return records(
        Movement, (seq, kind, sku, site, lot_id, qty, src, dst, *fixed, request_id, doc_ref, at_ms, lots, zero, none)
    )
