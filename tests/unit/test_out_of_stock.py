"""Out of stock stays visible: a lot or pair that reaches zero still answers at quantity 0
with when it ran out, until the cell's retention compacts it (issue 15 item 7)."""

from __future__ import annotations

from engine.domain.catalog import Site, Sku
from engine.domain.cell import CellLimits, Dimension, SliceFilter
from engine.domain.commands import Receive
from engine.domain.shard import PutSite, PutSku, ReadSlice, ScanCells, ShardCore
from engine.domain.state import export_cell, import_cell
from tests.unit.conftest import HOUR_MS, SITE, SKU, CellDriver, DriverFactory


def test_a_lot_that_runs_out_answers_at_zero_with_when(driver: CellDriver) -> None:
    driver.receive("L1", 3)
    driver.receive("L2", 2)
    driver.advance(HOUR_MS)
    ran_out_ms = driver.now_ms
    driver.consume(3, lot_id="L1")
    rows = {r.group: r for r in driver.cell.slice(driver.now_ms, (Dimension.LOT,))}
    assert (rows[(("lot", "L1"),)].qty, rows[(("lot", "L1"),)].out_of_stock_since_ms) == (0, ran_out_ms)
    assert (rows[(("lot", "L2"),)].qty, rows[(("lot", "L2"),)].out_of_stock_since_ms) == (2, 0)
    only = driver.cell.slice(driver.now_ms, (Dimension.LOT,), SliceFilter(out_of_stock_only=True))
    assert [r.group for r in only] == [(("lot", "L1"),)]
    assert driver.cell.slice(driver.now_ms, (Dimension.LOT,), SliceFilter(statuses=frozenset({"available"}))) != []
    assert all(r.qty for r in driver.cell.slice(driver.now_ms, (Dimension.LOT,), SliceFilter(bin_prefix="A")))


def test_the_pair_answers_at_zero_once_it_has_nothing_and_again_in_stock_clears_it(driver: CellDriver) -> None:
    driver.receive("L1", 3)
    assert driver.cell.slice(driver.now_ms, ())[0].out_of_stock_since_ms == 0
    driver.consume(3)
    [row] = driver.cell.slice(driver.now_ms, ())
    assert (row.qty, row.out_of_stock_since_ms) == (0, driver.now_ms)
    driver.receive("L1", 1)
    [row] = driver.cell.slice(driver.now_ms, ())
    assert (row.qty, row.out_of_stock_since_ms) == (1, 0)
    assert driver.cell.slice(driver.now_ms, (), SliceFilter(out_of_stock_only=True)) == []


def test_zero_rows_are_compacted_after_the_retention(make_driver: DriverFactory) -> None:
    d = make_driver(limits=CellLimits(out_of_stock_retention_ms=2 * HOUR_MS))
    d.receive("L1", 1)
    d.consume(1)
    d.advance(HOUR_MS)
    d.receive("L2", 1)  # any command lets the cell compact what is past the retention
    assert "L1" in d.ledger.zeroed
    d.advance(2 * HOUR_MS)
    d.receive("L2", 1)
    assert "L1" not in d.ledger.zeroed
    assert [r.group for r in d.cell.slice(d.now_ms, (Dimension.LOT,))] == [(("lot", "L2"),)]


def test_the_marks_survive_a_snapshot(driver: CellDriver) -> None:
    driver.receive("L1", 1)
    driver.consume(1)
    driver.drain()
    again = import_cell(export_cell(driver.cell), driver.cell.statuses, driver.cell.limits)
    assert again.ledger.zeroed == driver.ledger.zeroed
    assert again.slice(driver.now_ms, (Dimension.LOT,)) == driver.cell.slice(driver.now_ms, (Dimension.LOT,))
    again.handle(Receive("r9", SKU, SITE, "L1", 2, status="available"), driver.now_ms)
    assert "L1" not in again.ledger.zeroed  # its quant counts were rebuilt on import


def test_a_scan_sums_zero_rows_only_where_nothing_has_stock() -> None:
    core = ShardCore("s")
    core.apply_batch([PutSku(Sku("A")), PutSku(Sku("B")), PutSite(Site("X"))], 0)
    core.apply_batch(
        [Receive("r1", "A", "X", "L1", 1, status="available"), Receive("r2", "B", "X", "L1", 1, status="available")],
        0,
    )
    from engine.domain.commands import Consume

    core.apply_batch([Consume("c1", "A", "X", 1)], 5)
    scan = ScanCells(frozenset(), frozenset({"X"}), "", (), SliceFilter(), 0, 100)
    rows = {(sku, site): row for sku, site, row in core.apply(scan, 10)}
    assert (rows[("A", "X")].qty, rows[("A", "X")].out_of_stock_since_ms) == (0, 5)
    assert rows[("B", "X")].out_of_stock_since_ms == 0
    by_site = ScanCells(frozenset(), frozenset({"X"}), "", (), SliceFilter(), 0, 100, by_sku=False)
    [(_, _, total)] = core.apply(by_site, 10)
    assert (total.qty, total.out_of_stock_since_ms) == (1, 0)  # the site still has stock
    oos = ScanCells(frozenset(), frozenset({"X"}), "", (), SliceFilter(out_of_stock_only=True), 0, 100)
    assert [(sku, r.qty) for sku, _, r in core.apply(oos, 10)] == [("A", 0)]
    _, [row] = core.apply(ReadSlice("A", "X"), 10)
    assert row.out_of_stock_since_ms == 5
