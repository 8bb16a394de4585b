"""Opened freshness, lot expiry and scrapping inside the cell (issue 15 items 1, 2)."""

from __future__ import annotations

import pytest

from engine.domain.catalog import Sku, validate_sku
from engine.domain.commands import (
    ExpireLots,
    HoldCut,
    LotOpened,
    LotsExpired,
    OpenLot,
    ReserveLine,
    ScrapOverAge,
    Scrapped,
)
from engine.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from engine.domain.freshness import (
    FRESHNESS_EXPIRED,
    opened_shelf_life_ms,
    parse_substitutes,
    with_substitutes,
)
from engine.domain.ledger import replay, same_balances
from engine.domain.model import External, MovementKind
from tests.unit.conftest import DAY_MS, HOUR_MS, SITE, SKU, CellDriver, DriverFactory, key, violated_fields

LIFE_MS = 24 * HOUR_MS


@pytest.fixture
def station(make_driver: DriverFactory) -> CellDriver:
    return make_driver(opened_shelf_life_ms=LIFE_MS)


def open_lot(d: CellDriver, lot: str, at_ms: int = 0) -> LotOpened:
    reply = d.run(OpenLot(d.rid(), SKU, SITE, lot, at_ms))
    assert isinstance(reply, LotOpened)
    return reply


def test_opening_a_lot_is_journaled_once(station: CellDriver) -> None:
    station.receive("TB-1", 4)
    log = station.drain()
    first = open_lot(station, "TB-1")
    assert first == LotOpened("TB-1", station.now_ms, False, station.now_ms + LIFE_MS)
    [m] = station.drain()
    log.append(m)
    assert m.kind is MovementKind.OPEN
    assert m.lot is not None
    assert m.lot.opened_at_ms == station.now_ms
    station.advance(HOUR_MS)
    again = open_lot(station, "TB-1")
    assert again.already_open
    assert again.opened_at_ms == first.opened_at_ms
    assert station.drain() == []
    assert same_balances(replay(log), station.ledger)


def test_opening_refuses_unknown_and_empty_lots(station: CellDriver) -> None:
    station.refuse(OpenLot("o", SKU, SITE, "NOPE"), NotFound)
    station.receive("TB-1", 1)
    station.consume(1)
    err = station.refuse(OpenLot("o2", SKU, SITE, "TB-1"), FailedPrecondition)
    assert err.reason == "LOT_NOT_ON_HAND"


def test_an_over_age_opened_lot_is_refused_with_freshness_expired(station: CellDriver) -> None:
    station.receive("TB-1", 4, expires_at_ms=station.now_ms + 30 * DAY_MS)
    open_lot(station, "TB-1")
    station.advance(25 * HOUR_MS)
    err = station.refuse(station.reserve_cmd("h", ReserveLine(1)), FailedPrecondition)
    assert err.reason == FRESHNESS_EXPIRED
    assert err.metadata["lot_ids"] == "TB-1"
    assert err.metadata["fresh_qty"] == "0"
    err = station.refuse(station.consume_cmd(1), FailedPrecondition)
    assert err.reason == FRESHNESS_EXPIRED
    err = station.refuse(station.consume_cmd(1, lot_id="TB-1"), FailedPrecondition)
    assert err.reason == FRESHNESS_EXPIRED


def test_fefo_skips_over_age_opened_stock_when_fresh_stock_can_serve(station: CellDriver) -> None:
    station.receive("OPEN", 4, expires_at_ms=station.now_ms + 2 * DAY_MS)
    station.receive("SEALED", 4, expires_at_ms=station.now_ms + 30 * DAY_MS)
    open_lot(station, "OPEN")
    station.advance(HOUR_MS)
    hold = station.reserve("h1", ReserveLine(1))
    assert [a.lot_id for a in hold.allocations] == ["OPEN"]  # opened and fresh: used first
    station.advance(25 * HOUR_MS)
    hold = station.reserve("h2", ReserveLine(2))
    assert [a.lot_id for a in hold.allocations] == ["SEALED"]
    consumed = station.consume(2)
    assert [a.lot_id for a in consumed.allocations] == ["SEALED"]


def test_scrap_over_age_books_opened_stock_to_scrap_once(station: CellDriver) -> None:
    station.receive("TB-1", 4)
    station.receive("TB-2", 4)
    open_lot(station, "TB-1")
    station.advance(HOUR_MS)
    station.reserve("h", ReserveLine(1, lot_id="TB-1"), ttl_ms=3 * DAY_MS)
    station.refuse(ScrapOverAge("s0", SKU, SITE, "TB-1"), FailedPrecondition)
    station.advance(24 * HOUR_MS)
    log = station.drain()
    reply = station.run(ScrapOverAge("s1", SKU, SITE))
    assert reply == Scrapped(4, ("TB-1",), (HoldCut("h", "TB-1", "", "available", 1),))
    log += station.drain()
    assert station.ledger.externals[External.SCRAP] == 4
    assert station.run(ScrapOverAge("s2", SKU, SITE)) == Scrapped(0, (), ())
    station.ledger.check_invariants(station.cell.statuses)
    assert same_balances(replay(log), station.ledger)


def test_expire_lots_moves_expired_stock_out_of_atp_once(driver: CellDriver) -> None:
    driver.receive("OLD", 5, expires_at_ms=driver.now_ms + DAY_MS)
    driver.receive("NEW", 5, expires_at_ms=driver.now_ms + 9 * DAY_MS)
    driver.receive("OLD", 2, bin="P")
    driver.change_status("OLD", 2, "available", "picking", bin="P")  # may not become expired: stuck
    driver.reserve("h", ReserveLine(2, lot_id="OLD"), ttl_ms=3 * DAY_MS)
    driver.refuse(ExpireLots("e0", SKU, SITE, "OLD"), FailedPrecondition)
    driver.advance(DAY_MS)
    log = driver.drain()
    reply = driver.run(ExpireLots("e1", SKU, SITE))
    assert reply == LotsExpired(5, ("OLD",), (HoldCut("h", "OLD", "", "available", 2),), 2)
    log += driver.drain()
    assert driver.qty(key("OLD", status="expired")) == 5
    assert driver.available() == 5
    assert driver.run(ExpireLots("e2", SKU, SITE)) == LotsExpired(0, (), (), 2)
    assert driver.drain() == []
    driver.ledger.check_invariants(driver.cell.statuses)
    assert same_balances(replay(log), driver.ledger)


def test_sku_master_carries_hours_and_substitutes() -> None:
    sku = Sku("TALLOW", opened_shelf_life_days=2, opened_shelf_life_hours=24, substitutes=("TALLOW-PACK",))
    validate_sku(sku)
    assert opened_shelf_life_ms(sku) == LIFE_MS
    assert opened_shelf_life_ms(Sku("X", opened_shelf_life_days=2)) == 2 * DAY_MS
    with pytest.raises(InvalidArgument) as info:
        validate_sku(Sku("X", opened_shelf_life_hours=-1, substitutes=("X", "Y", "Y")))
    assert violated_fields(info.value) == {"opened_shelf_life_hours", "substitutes[0]", "substitutes"}


def test_substitutes_travel_in_the_refusals_metadata() -> None:
    err = FailedPrecondition(FRESHNESS_EXPIRED, "stale", {"sku": "TALLOW"})
    out = with_substitutes(err, [("TALLOW-PACK", 12), ("TALLOW-JAR", 0)])
    assert out.metadata["substitutes"] == "TALLOW-PACK=12"
    assert parse_substitutes(out.metadata["substitutes"]) == [("TALLOW-PACK", 12)]
