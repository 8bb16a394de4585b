"""The bulk load's receipt path, made cheaper, keeps its exact results: a receipt movement's
inlined ledger step, the movement built by position, the string tables' numbering."""

from __future__ import annotations

import dataclasses

from adapters.nats.snapshot_columns import Reader, Strings
from engine.domain.ledger import Ledger
from engine.domain.model import External, Lot, Movement, MovementKind, Quant, QuantKey


def test_the_cell_builds_movements_in_their_field_order() -> None:
    """engine.domain.cell.Cell._emit passes Movement's fields by position: a field added
    or moved must change it too, and this test says so."""
    names = tuple(f.name for f in dataclasses.fields(Movement))
    assert names == (
        "seq",
        "kind",
        "sku",
        "site",
        "lot_id",
        "qty",
        "src",
        "dst",
        "held_key",
        "held_delta",
        "hold_id",
        "request_id",
        "doc_ref",
        "at_ms",
        "lot",
        "expires_at_ms",
        "provenance",
    )


def _receipt(seq: int, key: QuantKey, qty: int, at_ms: int, lot: Lot | None = None) -> Movement:
    return Movement(seq, MovementKind.RECEIVE, "A", "X", key.lot_id, qty, External.SUPPLIER, key, lot=lot, at_ms=at_ms)


def test_a_receipt_adds_to_its_quant_and_takes_from_the_supplier() -> None:
    ledger = Ledger()
    key = QuantKey("L1", "A/01", "available", "own")
    ledger.apply(_receipt(1, key, 5, 10, Lot("L1", 10, 99)))
    ledger.apply(_receipt(2, key, 3, 20))
    assert ledger.quants == {key: Quant(qty=8)}
    assert ledger.externals == {External.SUPPLIER: -8}
    assert ledger.lots == {"L1": Lot("L1", 10, 99)}
    assert ledger.live == {"L1": 1}
    assert ledger.seq == 2


def test_a_receipt_that_brings_a_quant_to_zero_removes_it_as_any_movement_does() -> None:
    """A status that allows negative stock can leave a quant below zero; a receipt that
    makes it zero removes it and marks the lot out of stock, as the general path does."""
    key = QuantKey("L1", "", "damaged", "own")
    ledger = Ledger(quants={key: Quant(qty=-4)}, live={"L1": 1}, seq=7)
    ledger.apply(_receipt(8, key, 4, 50))
    assert ledger.quants == {}
    assert ledger.live == {}
    assert ledger.zeroed == {"L1": 50}
    assert ledger.externals == {External.SUPPLIER: -4}


def test_strings_are_numbered_in_the_order_they_first_appear() -> None:
    strings = Strings()
    first = strings.column(["b", "a", "b", "c"])
    second = strings.column(["c", "d", "a"])
    assert list(strings.index) == ["b", "a", "c", "d"]
    reader = Reader(strings.table() + first + second)
    reader.strings = reader.string_table()
    assert reader.strs() == ["b", "a", "b", "c"]
    assert reader.strs() == ["c", "d", "a"]
