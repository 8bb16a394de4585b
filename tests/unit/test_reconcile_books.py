"""The books a snapshot is compared with: history's balance as of the snapshot's instant
and its window of ± skew (the in-memory history store is the reference the ClickHouse one
passes the contract suite against), and the cells now."""

from __future__ import annotations

import pytest

from adapters.memory.history import InMemoryHistoryStore
from engine import bootstrap
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import Receive
from engine.domain.history import HistoryBatch, HistoryRecord
from engine.domain.model import External, Lot, Movement, MovementKind, QuantKey
from engine.health import books as books_module
from engine.health.books import CellBooks, HistoryBooks
from engine.health.reconcile import BookWindow, SnapshotLine, Tolerance, classify

pytestmark = pytest.mark.asyncio

READY = QuantKey("L1", "A/1", "available", "own")
ON_HAND = frozenset({"available", "qc_hold"})


def movement(seq: int, kind: MovementKind, qty: int, at_ms: int, src: object, dst: object) -> Movement:
    lot = Lot("L1", received_at_ms=100, expires_at_ms=10**13) if kind is MovementKind.RECEIVE else None
    return Movement(seq, kind, "SKU", "S1", "L1", qty, src, dst, at_ms=at_ms, lot=lot)  # type: ignore[arg-type]


async def test_history_books_as_of_the_snapshot_with_its_timing_window() -> None:
    store = InMemoryHistoryStore()
    moves = (
        movement(1, MovementKind.RECEIVE, 10, 100, External.SUPPLIER, READY),
        movement(2, MovementKind.CONSUME, 3, 3_000, READY, External.CUSTOMER),  # a sale in flight
        movement(3, MovementKind.CONSUME, 1, 9_000, READY, External.CUSTOMER),  # long after
    )
    await store.insert(HistoryBatch(tuple(HistoryRecord("s0", i + 1, i + 1, m) for i, m in enumerate(moves))))
    books = HistoryBooks(store, ON_HAND)
    lines = [
        SnapshotLine("S1", "SKU", 8, "L1"),
        SnapshotLine("S1", "SKU", 8, "L1", "A/1", "available"),
        SnapshotLine("S1", "SKU", 8),
    ]
    window = await books.window(lines, as_of_ms=2_000, skew_ms=1_500)
    assert window[("S1", "SKU", "L1", "", "")] == BookWindow(10, 7, 10)
    assert window[("S1", "SKU", "L1", "A/1", "available")] == BookWindow(10, 7, 10)
    assert window[("S1", "SKU", "", "", "")] == BookWindow(10, 7, 10)
    assert classify(8, window[("S1", "SKU", "", "", "")], Tolerance(), 0.0) == "timing"
    # the window runs from the balance as of (as of − skew) through every movement to (as of + skew)
    before = await books.window(lines, as_of_ms=600, skew_ms=550)
    assert before[("S1", "SKU", "", "", "")] == BookWindow(10, 0, 10)  # not received yet at 50 ms
    later = await books.window(lines, as_of_ms=5_000, skew_ms=1_000)
    assert later[("S1", "SKU", "", "", "")] == BookWindow(7, 7, 7)
    assert classify(8, later[("S1", "SKU", "", "", "")], Tolerance(), 0.0) == "real"


async def test_cell_books_are_the_cells_now() -> None:
    gw = bootstrap.local_gateway(shards=1, clock=ManualClock(), sweep_interval_ms=0)
    try:
        await gw.put_sku(Sku("SKU"))
        await gw.put_site(Site("S1"))
        await gw.execute(Receive("r1", "SKU", "S1", "L1", 5, bin="A/1", status="available"))
        await gw.execute(Receive("r2", "SKU", "S1", "L2", 4, bin="B/1", status="qc_hold"))
        await gw.execute(Receive("r3", "SKU", "S1", "L3", 9, bin="B/1", status="damaged"))  # not on hand here
        books = CellBooks(gw, ON_HAND)
        lines = [SnapshotLine("S1", "SKU", 0), SnapshotLine("S1", "SKU", 0, "L2", "B/1", "qc_hold")]
        window = await books.window(lines, as_of_ms=1, skew_ms=0)
        assert window[("S1", "SKU", "", "", "")] == BookWindow(9, 9, 9)
        assert window[("S1", "SKU", "L2", "B/1", "qc_hold")] == BookWindow(4, 4, 4)
    finally:
        await gw.close()


async def test_the_window_is_every_balance_between_its_ends_not_three_instants(monkeypatch: pytest.MonkeyPatch) -> None:
    """A receipt and a sale both inside the window, between the instants: the WMS saw 15
    (between the two), which no single instant of as_of − skew, as_of, as_of + skew shows."""
    store = InMemoryHistoryStore()
    moves = (
        movement(1, MovementKind.RECEIVE, 10, 100, External.SUPPLIER, READY),
        movement(2, MovementKind.RECEIVE, 5, 2_200, External.SUPPLIER, READY),
        movement(3, MovementKind.CONSUME, 5, 2_800, READY, External.CUSTOMER),
        movement(4, MovementKind.CONSUME, 2, 2_900, READY, External.CUSTOMER),
    )
    await store.insert(HistoryBatch(tuple(HistoryRecord("s0", i + 1, i + 1, m) for i, m in enumerate(moves))))
    books = HistoryBooks(store, ON_HAND)
    lines = [SnapshotLine("S1", "SKU", 15), SnapshotLine("S1", "SKU", 15, "L1", "A/1", "available")]
    window = await books.window(lines, as_of_ms=2_000, skew_ms=1_000)
    assert window[("S1", "SKU", "", "", "")] == BookWindow(10, 8, 15)
    assert window[("S1", "SKU", "L1", "A/1", "available")] == BookWindow(10, 8, 15)
    assert classify(15, window[("S1", "SKU", "", "", "")], Tolerance(), 0.0) == "timing"
    monkeypatch.setattr(books_module, "MAX_WINDOW_MOVEMENTS", 1)  # too busy to walk: three instants
    narrow = await books.window(lines, as_of_ms=2_000, skew_ms=1_000)
    assert narrow[("S1", "SKU", "", "", "")] == BookWindow(10, 8, 10)
    assert classify(15, narrow[("S1", "SKU", "", "", "")], Tolerance(), 0.0) == "real"
