"""Count as a cell command: an absolute count applied in one cell step (issue 15 item 3)."""

from __future__ import annotations

import pytest

from engine.domain.commands import Count, Counted, CountLine, CountSource, HoldCut, LotCount, ReserveLine
from engine.domain.errors import InvalidArgument
from engine.domain.ledger import replay, same_balances
from engine.domain.model import External, MovementKind
from tests.unit.conftest import SITE, SKU, CellDriver, key, violated_fields


def count(driver: CellDriver, bin_: str, *lines: CountLine, **kw: object) -> Counted:
    reply = driver.run(Count(driver.rid(), SKU, SITE, bin_, tuple(lines), **kw))  # type: ignore[arg-type]
    assert isinstance(reply, Counted)
    return reply


def invariants(driver: CellDriver, all_movements: list) -> None:
    driver.ledger.check_invariants(driver.cell.statuses)
    assert same_balances(replay(all_movements), driver.ledger)


def test_a_quant_count_sets_the_quant_and_records_source_and_confidence(driver: CellDriver) -> None:
    driver.receive("L1", 10, bin="A/1")
    log = driver.drain()
    reply = count(driver, "A/1", CountLine("L1", 7), source=CountSource.RFID, confidence=0.93)
    assert reply == Counted((LotCount("L1", 10, 7),), ())
    assert reply.variance == -3
    [m] = driver.drain()
    log.append(m)
    assert (m.kind, m.src, m.dst, m.qty, m.source, m.confidence) == (
        MovementKind.COUNT,
        key("L1", "A/1"),
        External.COUNT_VARIANCE,
        3,
        "rfid",
        0.93,
    )
    invariants(driver, log)


def test_a_count_of_an_unknown_lot_receives_it_from_count_variance(driver: CellDriver) -> None:
    reply = count(driver, "A/1", CountLine("NEW", 4, expires_at_ms=123))
    assert reply.lots == (LotCount("NEW", 0, 4),)
    [m] = driver.drain()
    assert (m.src, m.dst, m.qty, m.lot and m.lot.expires_at_ms) == (External.COUNT_VARIANCE, key("NEW", "A/1"), 4, 123)
    assert count(driver, "A/1", CountLine("GONE", 0)).lots == (LotCount("GONE", 0, 0),)
    assert driver.drain() == []


def test_a_count_below_held_cuts_the_newest_hold_and_says_so(driver: CellDriver) -> None:
    driver.receive("L1", 10)
    driver.reserve("h-old", ReserveLine(4))
    driver.advance(1)
    driver.reserve("h-new", ReserveLine(3))
    log = driver.drain()
    reply = count(driver, "", CountLine("L1", 5))
    assert reply.holds_cut == (HoldCut("h-new", "L1", "", "available", 2),)
    log += driver.drain()
    assert (driver.qty(key("L1")), driver.held(key("L1"))) == (5, 5)
    assert driver.available() == 0
    invariants(driver, log)


def test_a_whole_bin_count_takes_missing_units_from_free_stock_first(driver: CellDriver) -> None:
    driver.receive("L1", 5, bin="A/1")
    driver.receive("L1", 5, bin="A/1/P2")
    driver.receive("L2", 3, bin="A/1")
    driver.receive("L3", 2, bin="B/1")  # outside the bin: untouched
    driver.reserve("h", ReserveLine(4, lot_id="L1", bin_prefix="A/1/P2"))
    log = driver.drain()
    reply = count(driver, "A/1", CountLine("L1", 6), whole_bin=True)
    assert reply.lots == (LotCount("L1", 10, 6), LotCount("L2", 3, 0))
    assert reply.holds_cut == ()  # 4 missing came from the 6 free units
    log += driver.drain()
    assert driver.held(key("L1", "A/1/P2")) == 4
    assert driver.qty(key("L1", "A/1")) + driver.qty(key("L1", "A/1/P2")) == 6
    assert driver.qty(key("L2", "A/1")) == 0
    assert driver.qty(key("L3", "B/1")) == 2
    invariants(driver, log)


def test_a_whole_bin_count_adds_found_units_to_the_bins_ready_quant(driver: CellDriver) -> None:
    driver.receive("L1", 2, bin="A/1", status="qc_hold")
    log = driver.drain()
    reply = count(driver, "A/1", CountLine("L1", 5), whole_bin=True)
    assert reply.lots == (LotCount("L1", 2, 5),)
    log += driver.drain()
    assert driver.qty(key("L1", "A/1", "qc_hold")) == 2
    assert driver.qty(key("L1", "A/1")) == 3
    invariants(driver, log)


def test_a_repeated_count_is_answered_once(driver: CellDriver) -> None:
    driver.receive("L1", 10)
    driver.drain()
    cmd = Count("c-1", SKU, SITE, "", (CountLine("L1", 4),))
    first = driver.run(cmd)
    driver.drain()
    driver.receive("L1", 1)  # a write after the count: the retry must not undo it
    assert driver.run(cmd) == first
    assert driver.qty(key("L1")) == 5


@pytest.mark.parametrize(
    ("cmd", "fields"),
    [
        (Count("r", SKU, SITE, "", ()), {"lines"}),
        (Count("r", SKU, SITE, "", (CountLine("L1", -1),)), {"lines[0].qty"}),
        (Count("r", SKU, SITE, "", (CountLine("L1", 1),), confidence=1.5), {"confidence"}),
        (Count("r", SKU, SITE, "", (CountLine("L1", 1, status="nope"),)), {"lines[0].status"}),
        (Count("r", SKU, SITE, "", (CountLine("L1", 1, status="in_transit_in"),)), {"lines[0].status"}),
        (Count("r", SKU, SITE, "", (CountLine("L1", 1, status="available"),), whole_bin=True), {"lines[0].status"}),
        (Count("r", SKU, SITE, "", (CountLine("L1", 1), CountLine("L1", 2))), {"lines[1]"}),
        (Count("r", SKU, SITE, "a b", (CountLine("L1", 1),)), {"bin"}),
    ],
)
def test_bad_counts_are_refused_and_change_nothing(driver: CellDriver, cmd: Count, fields: set[str]) -> None:
    driver.receive("L1", 1)
    err = driver.refuse(cmd, InvalidArgument)
    assert violated_fields(err) == fields
