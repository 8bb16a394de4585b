"""The columnar body of a version-2 snapshot (adapters/nats/snapshot_columns.py): the
pieces a snapshot of 10⁶ quants is made of, and the rules that keep it readable."""

from __future__ import annotations

import dataclasses
import zlib

import pytest

from adapters.nats import snapshot_columns as columns
from adapters.nats.snapshot_codec import decode_state, encode_state
from engine.domain.cell import CellLimits
from engine.domain.commands import Commit, Committed, Receive, Received, Reserve, ReserveLine
from engine.domain.errors import InsufficientStock, RequestConflict
from engine.domain.model import External, Finance, HoldState, HoldView, Lot, QuantKey
from engine.domain.state import (
    CellState,
    QuantBalance,
    Refusal,
    Remembered,
    ShardState,
    export_cell,
    import_cell,
    refusal_of,
    window_of,
)
from engine.domain.statuses import DEFAULT_DICTIONARY


def test_the_fixed_columns_follow_the_domain_types() -> None:
    """Quant keys and lots are written by field name and read by position: a field added
    to either type must be a new snapshot version, and this test says so."""
    assert columns.field_names(QuantKey) == ("lot_id", "bin", "status", "owner")
    assert columns.field_names(Lot) == ("lot_id", "received_at_ms", "expires_at_ms", "opened_at_ms")
    assert columns.field_names(QuantBalance) == ("key", "qty", "held")
    assert columns.field_names(Remembered) == ("request_id", "at_ms", "command", "answer")


def test_records_built_a_column_at_a_time_equal_the_constructors() -> None:
    expected = [Receive("r1", "A", "B", "L1", 3), Receive("r2", "A", "B", "L2", 4, bin="X/1", finance=None)]
    by_field = [[getattr(r, name) for r in expected] for name in columns.field_names(Receive)]
    made = columns.records(Receive, by_field)
    assert made == expected
    assert hash(made[0]) == hash(Receive("r1", "A", "B", "L1", 3))  # frozen records stay hashable by value
    with pytest.raises(dataclasses.FrozenInstanceError):
        made[0].qty = 9  # type: ignore[misc]  # the point: still frozen
    with pytest.raises(ValueError, match="columns"):
        columns.records(QuantKey, [["L1"], ["bin"]])


def test_a_window_table_of_another_release_is_read_by_field_name() -> None:
    """A release whose Receive lacked trailing fields wrote fewer columns: the fields it
    did not know take their defaults."""
    names = ["request_id", "sku", "site", "lot_id", "qty"]
    built = columns._build(Receive, names, [["r1"], ["A"], ["B"], ["L1"], [3]])
    assert built == [Receive("r1", "A", "B", "L1", 3)]


def entry(command: Receive | Commit | Reserve, answer: Received | Committed | Refusal) -> Remembered:
    return Remembered(command.request_id, 5, command, answer)


def test_only_flat_entries_go_to_tables_and_the_window_keeps_its_order() -> None:
    plain = entry(Receive("r1", "A", "B", "L1", 3), Received("L1", 3))
    financed = entry(
        Receive("r2", "A", "B", "L2", 1, finance=Finance(currency="EUR", unit_cost="1.50")), Received("L2", 1)
    )
    view = HoldView("H1", "A", "B", HoldState.COMMITTED, (), 0, 2, 0, 5, 6)
    partial = entry(Commit("r3", "A", "B", "H1", 2), Committed(view, 2, 0))
    refused = entry(Commit("r4", "A", "B", "H2"), refusal_of(InsufficientStock("A", "B", 1, 0)))
    reserve = entry(
        Reserve("r5", "A", "B", "H3", (ReserveLine(1),), 1000), refusal_of(InsufficientStock("A", "B", 1, 0))
    )
    assert columns.table_key(plain) == (
        "Receive",
        "Received",
        ("s", "s", "s", "s", "i", "s", "s", "s", "i", "i", "i", "s", "x", "z"),
        ("s", "i"),
    )
    assert [columns.table_key(e) for e in (financed, partial, refused, reserve)] == [None] * 4
    window = (
        plain,
        financed,
        partial,
        refused,
        reserve,
        entry(Receive("r6", "A", "B", "L1", 1, source=External.CUSTOMER), Received("L1", 1)),
    )
    cell = CellState("A", "B", 0, 6, (), (), (), (), (), window, 0)
    state = ShardState("s", (), (), (), (), (), (), (cell,))
    assert decode_state(encode_state(state)) == state


def test_a_deferred_window_builds_each_entry_only_when_asked() -> None:
    """Recovery leaves the window's tables encoded: a retry builds its own entry (the first
    answer, nothing changed), a retry with another payload is refused, an export builds
    them all — and the same entries as the eager decode, in the same order."""
    window = (
        entry(Receive("r1", "A", "B", "L1", 3), Received("L1", 3)),
        entry(Commit("r2", "A", "B", "H2"), refusal_of(InsufficientStock("A", "B", 1, 0))),  # the rest's
        entry(Receive("r3", "A", "B", "L2", 4, source=External.CUSTOMER), Received("L2", 4)),
    )
    quants = (QuantBalance(QuantKey("L1", "", "receiving", "own"), 3, 0),)
    cell = CellState("A", "B", 0, 2, quants, (), (Lot("L1", 5, 0, 0),), (), (), window, 0)
    blob = encode_state(ShardState("s", (), (), (), (), (), (), (cell,)))
    [deferred] = decode_state(blob, deferred_window=True).cells
    assert deferred.remembered == ()
    assert deferred.deferred is not None
    assert list(deferred.deferred.request_ids) == ["r1", "r2", "r3"]
    assert window_of(deferred) == cell
    restored = import_cell(deferred, DEFAULT_DICTIONARY, CellLimits())
    assert restored.handle(Receive("r3", "A", "B", "L2", 4, source=External.CUSTOMER), 6) == Received("L2", 4)
    with pytest.raises(InsufficientStock):
        restored.handle(Commit("r2", "A", "B", "H2"), 6)
    with pytest.raises(RequestConflict):
        restored.handle(Receive("r1", "A", "B", "L1", 5), 6)
    assert restored.drain() == []  # every answer came from the window
    assert export_cell(restored) == cell


def test_a_deferred_table_with_rows_no_cell_takes_is_damage() -> None:
    receipts = tuple(entry(Receive(f"r{i}", "A", "B", "L1", 1), Received("L1", 1)) for i in range(3))
    cell = CellState("A", "B", 0, 3, (), (), (), (), (), receipts, 0)
    blob = bytearray(encode_state(ShardState("s", (), (), (), (), (), (), (cell,))))
    counts = columns._ints([3]) + columns._U32.pack(3) + bytes([1, 1, 1])  # per-cell window count, where
    at = blob.index(counts)
    blob[at : at + len(counts)] = columns._ints([2]) + columns._U32.pack(2) + bytes([1, 1])
    body = bytes(blob[4:-4])
    damaged = b"LWSB" + body + zlib.crc32(body).to_bytes(4, "big")
    with pytest.raises(ValueError, match="rows no cell takes"):
        decode_state(damaged, deferred_window=True)
