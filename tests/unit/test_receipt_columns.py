"""Journal v5: an entry of receipts only travels as columns (adapters/nats/receipt_columns.py)
and decodes to the very entry; any other entry keeps its Avro records."""

from __future__ import annotations

import dataclasses

import pytest

from adapters.nats import receipt_columns
from adapters.nats.codec import decode_entry, encode_entry
from engine.domain.catalog import Site, Sku
from engine.domain.commands import Receive
from engine.domain.model import External, Finance
from engine.domain.ports import JournalEntry
from engine.domain.shard import PutSite, PutSku, ReceiveBulk, ShardCore, journaled


def test_the_columns_follow_receive() -> None:
    """Receive's fields are written by name and read by position: a field added to it must
    be a new journal version, and this test says so."""
    names = tuple(f.name for f in dataclasses.fields(Receive))
    assert names == (*receipt_columns.RECEIPT_FIELDS, "finance")


def bulk_entry(now_ms: int = 1_000) -> tuple[ShardCore, JournalEntry]:
    """A bulk receipt as a shard journals it: new lots, a lot received again (no lot on
    its movement), a refused receipt (no movement), bins, statuses, owners, sources."""
    core = ShardCore("s")
    core.apply_batch([PutSku(Sku("A")), PutSku(Sku("B")), PutSite(Site("X"))], 0)
    core.drain()
    receipts = (
        Receive("r1", "A", "X", "L1", 5, "A/01", "available", "own", 2_000_000, 900, 0, "PO-1"),
        Receive("r2", "B", "X", "L2", 3, source=External.CUSTOMER),
        Receive("r3", "A", "X", "L1", 2, "B/02", "qc_hold", "consignment:acme", 2_000_000),
        Receive("r4", "A", "X", "L1", 1, expires_at_ms=7),  # refused: the lot's dates differ
        Receive("r5", "A", "X", "L3", 1, opened_at_ms=800),
    )
    [results] = core.apply_batch([ReceiveBulk(receipts)], now_ms)
    assert isinstance(results, list)
    assert [r is None for r in results] == [True, True, True, False, True]
    return core, JournalEntry("s", 1, now_ms, tuple(journaled(ReceiveBulk(receipts))), tuple(core.drain()))


def test_an_entry_of_receipts_travels_as_columns_and_replays() -> None:
    _, entry = bulk_entry()
    data = encode_entry(entry)
    assert receipt_columns.encode(entry.ops, entry.movements) is not None
    decoded = decode_entry(data)
    assert decoded == entry
    as_records = encode_entry(entry, columns=False)  # as v4 wrote it: same entry, larger
    assert decode_entry(as_records) == entry
    assert len(data) < len(as_records)
    replay = ShardCore("s")
    replay.apply_batch([PutSku(Sku("A")), PutSku(Sku("B")), PutSite(Site("X"))], 0)
    replay.drain()
    replay.apply_batch(decoded.ops, decoded.now_ms)
    assert tuple(replay.drain()) == entry.movements


def test_any_other_entry_keeps_its_records() -> None:
    _, entry = bulk_entry()
    financed = Receive("r9", "A", "X", "L9", 1, finance=Finance(currency="EUR", unit_cost="2"))
    for ops in ((*entry.ops, financed), (*entry.ops, PutSku(Sku("C"))), ()):
        assert receipt_columns.encode(ops, entry.movements) is None
        mixed = dataclasses.replace(entry, ops=ops)
        assert decode_entry(encode_entry(mixed)) == mixed
    held = dataclasses.replace(entry.movements[0], hold_id="H1")
    assert receipt_columns.encode(entry.ops, (held,)) is None


def test_damaged_columns_are_refused() -> None:
    _, entry = bulk_entry()
    data = receipt_columns.encode(entry.ops, entry.movements)
    assert data is not None
    for cut in (4, 9, len(data) // 2, len(data) - 1):
        with pytest.raises((ValueError, IndexError, KeyError)):
            receipt_columns.decode(data[:cut])
    with pytest.raises(ValueError, match="left over"):
        receipt_columns.decode(data + b"\x00")
