"""Every command a cell accepts, its constraints, and every refusal (DESIGN.md §1–5, §12).

Each refusal is checked to change nothing: the ledger's quants, external buckets, lots and
holds are compared before and after, and the outbox must have no new movement.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from importlib import resources
from typing import cast

import pytest

from engine.domain.cell import CellLimits, Dimension, SliceFilter, SliceRow, bin_matches
from engine.domain.commands import (
    MAX_QTY,
    Adjusted,
    Command,
    Consume,
    Consumed,
    Moved,
    Receive,
    Received,
    Released,
    ReserveLine,
    StatusChanged,
    Strategy,
    owner_matches,
)
from engine.domain.errors import (
    FailedPrecondition,
    InsufficientStock,
    InvalidArgument,
    InvariantViolation,
    NotFound,
    RequestConflict,
)
from engine.domain.holds import MAX_LINES, MAX_TTL_MS
from engine.domain.ledger import replay, same_balances
from engine.domain.model import (
    NO_EXPIRY_MS,
    External,
    HoldState,
    HoldView,
    Lot,
    Movement,
    MovementKind,
    shelf_life_left_days,
)
from engine.domain.statuses import DEFAULT_DICTIONARY, StatusDictionary, parse_dictionary
from tests.unit.conftest import (
    DAY_MS,
    HOUR_MS,
    SITE,
    SKU,
    T0_MS,
    TTL_MS,
    CellDriver,
    DriverFactory,
    key,
    ledger_state,
    violated_fields,
)

RECEIVABLE = sorted(s.name for s in DEFAULT_DICTIONARY.statuses.values() if s.receivable)
NOT_RECEIVABLE = sorted(s.name for s in DEFAULT_DICTIONARY.statuses.values() if not s.receivable)


def line(qty: int, **kw: object) -> ReserveLine:
    return ReserveLine(qty, **kw)  # type: ignore[arg-type]


def picks(hold: HoldView) -> list[tuple[str, int]]:
    """(lot, qty) of each allocation, in removal order."""
    return [(a.lot_id, a.qty) for a in hold.allocations]


def kinds(movements: list[Movement]) -> list[MovementKind]:
    return [m.kind for m in movements]


def stock_three_lots(d: CellDriver) -> None:
    """Three lots of 5, each first by a different strategy:
    FEFO → L-B (expires first), FIFO → L-A (received first), LIFO → L-C (received last)."""
    d.receive("L-A", 5, expires_at_ms=T0_MS + 10 * DAY_MS)
    d.advance(HOUR_MS)
    d.receive("L-B", 5, expires_at_ms=T0_MS + 5 * DAY_MS)
    d.advance(HOUR_MS)
    d.receive("L-C", 5, expires_at_ms=T0_MS + 60 * DAY_MS)
    d.drain()


# ---------------------------------------------------------------- Receive


def test_receive_books_a_quant_from_the_supplier(driver: CellDriver) -> None:
    expires = T0_MS + 30 * DAY_MS
    reply = driver.receive("L1", 10, bin="A/01", expires_at_ms=expires, doc_ref="ASN-7")

    k = key("L1", "A/01")
    assert reply == Received("L1", 10)
    assert driver.qty(k) == 10
    assert driver.ledger.externals[External.SUPPLIER] == -10
    assert driver.ledger.lots["L1"] == Lot("L1", T0_MS, expires)
    assert driver.available() == 10
    [m] = driver.drain()
    assert (m.seq, m.kind, m.src, m.dst, m.qty) == (1, MovementKind.RECEIVE, External.SUPPLIER, k, 10)
    assert (m.lot, m.at_ms, m.doc_ref, m.sku, m.site) == (Lot("L1", T0_MS, expires), T0_MS, "ASN-7", SKU, SITE)
    assert m.request_id.startswith("req-")


def test_receive_defaults_to_receiving_which_is_not_sellable(driver: CellDriver) -> None:
    driver.run(Receive(driver.rid(), SKU, SITE, "L1", 5))
    assert driver.qty(key("L1", status="receiving")) == 5
    assert driver.available() == 0


def test_receive_keeps_explicit_received_and_opened_dates(driver: CellDriver) -> None:
    driver.receive("L1", 1, received_at_ms=T0_MS - DAY_MS, opened_at_ms=T0_MS - HOUR_MS)
    assert driver.ledger.lots["L1"] == Lot("L1", T0_MS - DAY_MS, NO_EXPIRY_MS, T0_MS - HOUR_MS)


def test_receive_more_of_a_known_lot_keeps_its_first_dates(driver: CellDriver) -> None:
    expires = T0_MS + 30 * DAY_MS
    driver.receive("L1", 4, expires_at_ms=expires)
    driver.advance(HOUR_MS)
    driver.receive("L1", 6, expires_at_ms=expires)
    driver.receive("L1", 1)  # no date given: the lot's dates stand

    assert driver.qty(key("L1")) == 11
    assert driver.ledger.lots["L1"] == Lot("L1", T0_MS, expires)
    movements = driver.drain()
    assert movements[0].lot is not None
    assert [m.lot for m in movements[1:]] == [None, None]


def test_receive_with_another_expiry_is_lot_dates_conflict(driver: CellDriver) -> None:
    expires = T0_MS + 30 * DAY_MS
    driver.receive("L1", 4, expires_at_ms=expires)
    err = driver.refuse(driver.receive_cmd("L1", 1, expires_at_ms=expires + DAY_MS), FailedPrecondition)
    assert err.reason == "LOT_DATES_CONFLICT"
    assert err.metadata == {"lot_id": "L1", "expires_at_ms": str(expires)}


def test_receive_an_expiry_for_a_lot_known_without_one_is_lot_dates_conflict(driver: CellDriver) -> None:
    driver.receive("L1", 4)
    err = driver.refuse(driver.receive_cmd("L1", 1, expires_at_ms=T0_MS + DAY_MS), FailedPrecondition)
    assert err.reason == "LOT_DATES_CONFLICT"


@pytest.mark.parametrize("status", RECEIVABLE)
def test_receive_into_every_receivable_status(driver: CellDriver, status: str) -> None:
    driver.receive("L1", 3, status=status)
    assert driver.qty(key("L1", status=status)) == 3
    driver.ledger.check_invariants(driver.cell.statuses)


@pytest.mark.parametrize("status", NOT_RECEIVABLE)
def test_receive_into_a_non_receivable_status_is_invalid(driver: CellDriver, status: str) -> None:
    err = driver.refuse(driver.receive_cmd("L1", 3, status=status), InvalidArgument)
    assert violated_fields(err) == {"status"}


def test_default_dictionary_has_statuses_that_cannot_be_received() -> None:
    assert {"picking", "packed", "in_transit_out", "expired"} <= set(NOT_RECEIVABLE)


# ---------------------------------------------------------------- Move


def test_move_takes_free_qty_from_one_bin_to_another(driver: CellDriver) -> None:
    driver.receive("L1", 10, bin="A/01")
    driver.drain()

    assert driver.move("L1", 4, "A/01", "B/02") == Moved(4)

    assert (driver.qty(key("L1", "A/01")), driver.qty(key("L1", "B/02"))) == (6, 4)
    assert driver.available() == 10
    [m] = driver.drain()
    assert (m.kind, m.src, m.dst, m.qty) == (MovementKind.MOVE, key("L1", "A/01"), key("L1", "B/02"), 4)


def test_move_of_a_whole_quant_leaves_no_empty_row(driver: CellDriver) -> None:
    driver.receive("L1", 3, bin="A")
    driver.move("L1", 3, "A", "")
    assert key("L1", "A") not in driver.ledger.quants
    assert driver.qty(key("L1")) == 3


def test_move_cannot_take_held_stock(driver: CellDriver) -> None:
    driver.receive("L1", 10, bin="A/01")
    driver.reserve("h1", line(8))
    err = driver.refuse(driver.move_cmd("L1", 5, "A/01", "B/02"), InsufficientStock)
    assert (err.requested, err.available, err.sku, err.site) == (5, 2, SKU, SITE)
    assert err.reason == "INSUFFICIENT_STOCK"
    assert err.metadata["available"] == "2"


def test_move_of_an_unknown_lot_is_not_found(driver: CellDriver) -> None:
    driver.receive("L1", 10, bin="A")
    err = driver.refuse(driver.move_cmd("nope", 1, "A", "B"), NotFound)
    assert err.resource_type == "lot"
    assert err.resource_name == f"{SKU}@{SITE}/nope"
    assert err.code == "NOT_FOUND"


def test_move_from_a_bin_where_a_known_lot_is_not_is_insufficient(driver: CellDriver) -> None:
    driver.receive("L1", 5, bin="A")
    err = driver.refuse(driver.move_cmd("L1", 1, "B", "C"), InsufficientStock)
    assert err.available == 0


def test_move_of_another_owners_stock_is_insufficient(driver: CellDriver) -> None:
    driver.receive("L1", 5, bin="A", owner="consignment:acme")
    err = driver.refuse(driver.move_cmd("L1", 1, "A", "B"), InsufficientStock)  # owner defaults to own
    assert err.available == 0
    driver.move("L1", 2, "A", "B", owner="consignment:acme")
    assert driver.qty(key("L1", "B", owner="consignment:acme")) == 2


# ---------------------------------------------------------------- ChangeStatus


def test_change_status_moves_qty_between_statuses(driver: CellDriver) -> None:
    driver.receive("L1", 10, status="receiving")
    driver.drain()
    assert driver.available() == 0

    assert driver.change_status("L1", 10, "receiving", "qc_hold") == StatusChanged(10)
    assert driver.change_status("L1", 6, "qc_hold", "available") == StatusChanged(6)

    assert driver.available() == 6
    assert driver.qty(key("L1", status="qc_hold")) == 4
    movements = driver.drain()
    assert kinds(movements) == [MovementKind.CHANGE_STATUS] * 2
    assert (movements[1].src, movements[1].dst) == (key("L1", status="qc_hold"), key("L1", status="available"))


def test_change_status_outside_the_dictionary_is_transition_not_allowed(driver: CellDriver) -> None:
    driver.receive("L1", 5, status="damaged")
    err = driver.refuse(driver.change_status_cmd("L1", 1, "damaged", "available"), FailedPrecondition)
    assert err.reason == "TRANSITION_NOT_ALLOWED"
    assert err.metadata == {"from_status": "damaged", "to_status": "available"}


def test_change_status_to_itself_is_transition_not_allowed(driver: CellDriver) -> None:
    driver.receive("L1", 5)
    err = driver.refuse(driver.change_status_cmd("L1", 1, "available", "available"), FailedPrecondition)
    assert err.reason == "TRANSITION_NOT_ALLOWED"


def test_change_status_of_held_stock_is_insufficient(driver: CellDriver) -> None:
    driver.receive("L1", 5)
    driver.reserve("h1", line(4))
    err = driver.refuse(driver.change_status_cmd("L1", 2, "available", "damaged"), InsufficientStock)
    assert err.available == 1


def test_change_status_of_an_unknown_lot_is_not_found(driver: CellDriver) -> None:
    err = driver.refuse(driver.change_status_cmd("nope", 1, "available", "damaged"), NotFound)
    assert err.resource_type == "lot"


# ---------------------------------------------------------------- Reserve: strategies


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (Strategy.FEFO, [("L-B", 5), ("L-A", 2)]),
        (Strategy.FIFO, [("L-A", 5), ("L-B", 2)]),
        (Strategy.LIFO, [("L-C", 5), ("L-B", 2)]),
    ],
)
def test_reserve_allocates_in_removal_order(
    driver: CellDriver, strategy: Strategy, expected: list[tuple[str, int]]
) -> None:
    stock_three_lots(driver)
    hold = driver.reserve("h1", line(7, strategy=strategy))
    assert picks(hold) == expected
    assert (hold.state, hold.held_qty, hold.committed_qty, hold.released_qty) == (HoldState.ACTIVE, 7, 0, 0)
    assert driver.available() == 15 - 7


def test_reserve_is_fefo_by_default_and_takes_lots_without_expiry_last(driver: CellDriver) -> None:
    driver.receive("L-none", 5)
    driver.receive("L-late", 5, expires_at_ms=T0_MS + 90 * DAY_MS)
    hold = driver.reserve("h1", line(7))
    assert picks(hold) == [("L-late", 5), ("L-none", 2)]


def test_reserve_named_lot_takes_only_that_lot(driver: CellDriver) -> None:
    stock_three_lots(driver)
    hold = driver.reserve("h1", line(3, strategy=Strategy.LOT, lot_id="L-C"))
    assert picks(hold) == [("L-C", 3)]
    err = driver.refuse(driver.reserve_cmd("h2", line(3, strategy=Strategy.LOT, lot_id="L-C")), InsufficientStock)
    assert (err.requested, err.available) == (3, 2)


def test_reserve_named_lot_that_does_not_exist_is_insufficient(driver: CellDriver) -> None:
    stock_three_lots(driver)
    err = driver.refuse(driver.reserve_cmd("h1", line(1, strategy=Strategy.LOT, lot_id="L-Z")), InsufficientStock)
    assert err.available == 0


def test_reserve_lot_id_filters_other_strategies_too(driver: CellDriver) -> None:
    stock_three_lots(driver)
    hold = driver.reserve("h1", line(2, strategy=Strategy.FIFO, lot_id="L-C"))
    assert picks(hold) == [("L-C", 2)]


def test_reserve_records_reserve_movements_and_the_ttl(driver: CellDriver) -> None:
    stock_three_lots(driver)
    hold = driver.reserve("h1", line(7), ttl_ms=90_000)
    now = driver.now_ms
    assert (hold.hold_id, hold.sku, hold.site) == ("h1", SKU, SITE)
    assert (hold.created_at_ms, hold.expires_at_ms) == (now, now + 90_000)
    assert [(a.lot_id, a.bin, a.status, a.owner, a.qty) for a in hold.allocations] == [
        ("L-B", "", "available", "own", 5),
        ("L-A", "", "available", "own", 2),
    ]
    assert hold.allocations[0].expires_at_ms == T0_MS + 5 * DAY_MS
    movements = driver.drain()
    assert kinds(movements) == [MovementKind.RESERVE] * 2
    for m, (lot_id, qty) in zip(movements, picks(hold), strict=True):
        assert (m.qty, m.src, m.dst, m.held_key) == (0, key(lot_id), key(lot_id), key(lot_id))
        assert (m.held_delta, m.hold_id, m.expires_at_ms) == (qty, "h1", now + 90_000)
    assert driver.held(key("L-B")) == 5


def test_reserve_never_takes_held_stock_twice(driver: CellDriver) -> None:
    driver.receive("L1", 10)
    driver.reserve("h1", line(7))
    err = driver.refuse(driver.reserve_cmd("h2", line(4)), InsufficientStock)
    assert err.available == 3
    assert picks(driver.reserve("h3", line(3))) == [("L1", 3)]
    assert driver.available() == 0


# ---------------------------------------------------------------- Reserve: constraints


def test_reserve_takes_only_sellable_statuses(driver: CellDriver) -> None:
    driver.receive("L1", 5)
    for status in ("qc_hold", "receiving", "returned_pending", "damaged"):
        driver.receive("L1", 5, status=status)
    err = driver.refuse(driver.reserve_cmd("h1", line(6)), InsufficientStock)
    assert err.available == 5
    hold = driver.reserve("h2", line(5))
    assert {a.status for a in hold.allocations} == {"available"}


def stock_every_owner(d: CellDriver) -> None:
    d.receive("L1", 2, owner="own")
    d.receive("L1", 3, owner="consignment:acme")
    d.receive("L1", 4, owner="consignment:zed")
    d.receive("L1", 5, owner="custody:clinic")


@pytest.mark.parametrize(
    ("owner_filter", "free", "owners"),
    [
        ("", 14, {"own", "consignment:acme", "consignment:zed", "custody:clinic"}),
        ("own", 2, {"own"}),
        ("consignment", 7, {"consignment:acme", "consignment:zed"}),
        ("consignment:acme", 3, {"consignment:acme"}),
        ("custody", 5, {"custody:clinic"}),
        ("custody:clinic", 5, {"custody:clinic"}),
        ("consignment:other", 0, set()),
    ],
)
def test_reserve_owner_filter(driver: CellDriver, owner_filter: str, free: int, owners: set[str]) -> None:
    stock_every_owner(driver)
    err = driver.refuse(driver.reserve_cmd("h1", line(free + 1, owner=owner_filter)), InsufficientStock)
    assert err.available == free
    if free:
        hold = driver.reserve("h2", line(free, owner=owner_filter))
        assert {a.owner for a in hold.allocations} == owners


@pytest.mark.parametrize(
    ("owner", "owner_filter", "matches"),
    [
        ("own", "", True),
        ("own", "own", True),
        ("consignment:acme", "consignment", True),
        ("consignment:acme", "consignment:acme", True),
        ("consignment:acme", "consignment:ac", False),
        ("consignment:acme", "own", False),
        ("own", "consignment", False),
        ("custody:clinic", "custody", True),
    ],
)
def test_owner_matches(owner: str, owner_filter: str, matches: bool) -> None:
    assert owner_matches(owner, owner_filter) is matches


def test_reserve_min_shelf_life_days(driver: CellDriver) -> None:
    driver.receive("L-2d", 5, expires_at_ms=T0_MS + 2 * DAY_MS)
    driver.receive("L-3d", 5, expires_at_ms=T0_MS + 3 * DAY_MS)  # exactly 3 days left: qualifies
    driver.receive("L-none", 5)  # no expiry: unlimited shelf life
    err = driver.refuse(driver.reserve_cmd("h1", line(11, min_shelf_life_days=3)), InsufficientStock)
    assert err.available == 10
    hold = driver.reserve("h2", line(10, min_shelf_life_days=3))
    assert picks(hold) == [("L-3d", 5), ("L-none", 5)]


def test_reserve_min_shelf_life_counts_from_engine_time(driver: CellDriver) -> None:
    driver.receive("L-3d", 5, expires_at_ms=T0_MS + 3 * DAY_MS)
    driver.advance(1)  # now less than three days are left
    err = driver.refuse(driver.reserve_cmd("h1", line(1, min_shelf_life_days=3)), InsufficientStock)
    assert err.available == 0


def test_reserve_bin_prefix_takes_whole_path_levels(driver: CellDriver) -> None:
    driver.receive("L1", 1, bin="A/03")
    driver.receive("L1", 2, bin="A/03/P12")
    driver.receive("L1", 4, bin="A/030")
    driver.receive("L1", 8, bin="B/03")
    err = driver.refuse(driver.reserve_cmd("h1", line(4, bin_prefix="A/03")), InsufficientStock)
    assert err.available == 3
    hold = driver.reserve("h2", line(3, bin_prefix="A/03"))
    assert {a.bin for a in hold.allocations} == {"A/03", "A/03/P12"}


@pytest.mark.parametrize(
    ("bin_", "prefix", "matches"),
    [("A/03", "", True), ("", "", True), ("A/03", "A/03", True), ("A/03/P1", "A/03", True), ("A/030", "A/03", False)],
)
def test_bin_matches(bin_: str, prefix: str, matches: bool) -> None:
    assert bin_matches(bin_, prefix) is matches


def test_reserve_never_promises_expired_lots(driver: CellDriver) -> None:
    driver.receive("L-old", 5, expires_at_ms=T0_MS + HOUR_MS)
    driver.receive("L-new", 2, expires_at_ms=T0_MS + 10 * DAY_MS)
    driver.advance(HOUR_MS)  # L-old expires exactly now
    assert driver.available() == 2
    err = driver.refuse(driver.reserve_cmd("h1", line(3)), InsufficientStock)
    assert err.available == 2


# ---------------------------------------------------------------- Reserve: many lines, hold ids


def test_reserve_multi_line_is_all_or_nothing(driver: CellDriver) -> None:
    driver.receive("L1", 5)
    driver.receive("L2", 5, bin="B", owner="consignment:acme")
    driver.drain()
    # Line 0 takes 4 of L1; line 1 then finds only 1 own unit left.
    cmd = driver.reserve_cmd("h1", line(4, owner="own"), line(1, owner="consignment"), line(3, owner="own"))
    err = driver.refuse(cmd, InsufficientStock)
    assert (err.requested, err.available) == (3, 1)
    assert driver.ledger.hold("h1") is None
    assert driver.available() == 10


def test_reserve_multi_line_lines_that_share_a_quant_add_up(driver: CellDriver) -> None:
    driver.receive("L1", 5)
    driver.receive("L2", 5, bin="B", owner="consignment:acme")
    driver.drain()
    hold = driver.reserve("h1", line(2), line(3, lot_id="L1"), line(4, owner="consignment:acme"))
    assert picks(hold) == [("L1", 5), ("L2", 4)]
    assert hold.held_qty == 9
    assert kinds(driver.drain()) == [MovementKind.RESERVE] * 3
    assert driver.held(key("L1")) == 5


def test_reserve_with_an_active_hold_id_is_request_conflict(driver: CellDriver) -> None:
    driver.receive("L1", 10)
    driver.reserve("h1", line(1))
    err = driver.refuse(driver.reserve_cmd("h1", line(2)), RequestConflict)
    assert (err.request_id, err.what, err.code) == ("h1", "hold id", "ALREADY_EXISTS")
    assert err.differs == "request_id"  # a new request id under the hold id: said, not "a different payload"


def test_reserve_with_a_resolved_hold_id_is_request_conflict(driver: CellDriver) -> None:
    driver.receive("L1", 10)
    driver.reserve("h1", line(1))
    driver.commit("h1")
    err = driver.refuse(driver.reserve_cmd("h1", line(1)), RequestConflict)
    assert err.what == "hold id"


# ---------------------------------------------------------------- Commit


def test_commit_all_that_is_held(driver: CellDriver) -> None:
    driver.receive("L1", 10)
    driver.reserve("h1", line(6))
    driver.drain()

    reply = driver.commit("h1")

    assert (reply.committed_qty, reply.released_qty) == (6, 0)
    assert (reply.hold.state, reply.hold.held_qty, reply.hold.committed_qty) == (HoldState.COMMITTED, 0, 6)
    assert (driver.qty(key("L1")), driver.held(key("L1"))) == (4, 0)
    assert driver.ledger.externals[External.CUSTOMER] == 6
    [m] = driver.drain()
    assert (m.kind, m.qty, m.src, m.dst) == (MovementKind.COMMIT, 6, key("L1"), External.CUSTOMER)
    assert (m.held_key, m.held_delta, m.hold_id) == (key("L1"), -6, "h1")
    assert "h1" not in driver.ledger.active
    assert driver.ledger.resolved["h1"].state is HoldState.COMMITTED


def test_commit_partial_releases_the_rest_in_the_same_step(driver: CellDriver) -> None:
    driver.receive("L-A", 3, expires_at_ms=T0_MS + 5 * DAY_MS)
    driver.receive("L-B", 5, expires_at_ms=T0_MS + 10 * DAY_MS)
    assert picks(driver.reserve("h1", line(6))) == [("L-A", 3), ("L-B", 3)]
    driver.drain()

    reply = driver.commit("h1", 4)

    assert (reply.committed_qty, reply.released_qty) == (4, 2)
    assert (reply.hold.state, reply.hold.committed_qty, reply.hold.released_qty) == (HoldState.COMMITTED, 4, 2)
    movements = driver.drain()  # one batch: commit in removal order, then the remainder released
    assert [(m.kind, m.lot_id, m.qty, m.held_delta) for m in movements] == [
        (MovementKind.COMMIT, "L-A", 3, -3),
        (MovementKind.COMMIT, "L-B", 1, -1),
        (MovementKind.RELEASE, "L-B", 0, -2),
    ]
    assert (driver.held(key("L-A")), driver.held(key("L-B"))) == (0, 0)
    assert driver.available() == 8 - 4


def test_commit_of_zero_releases_everything(driver: CellDriver) -> None:
    driver.receive("L1", 10)
    driver.reserve("h1", line(6))
    driver.drain()
    reply = driver.commit("h1", 0)
    assert (reply.committed_qty, reply.released_qty, reply.hold.state) == (0, 6, HoldState.RELEASED)
    assert kinds(driver.drain()) == [MovementKind.RELEASE]
    assert driver.available() == 10


def test_commit_more_than_held_is_commit_exceeds_hold(driver: CellDriver) -> None:
    driver.receive("L1", 10)
    driver.reserve("h1", line(6))
    err = driver.refuse(driver.commit_cmd("h1", 7), FailedPrecondition)
    assert err.reason == "COMMIT_EXCEEDS_HOLD"
    assert err.metadata == {"hold_id": "h1", "held": "6", "requested": "7"}


def test_commit_of_an_unknown_hold_is_not_found(driver: CellDriver) -> None:
    driver.receive("L1", 10)
    err = driver.refuse(driver.commit_cmd("nope"), NotFound)
    assert (err.resource_type, err.resource_name) == ("hold", "nope")


def test_commit_or_release_after_commit_is_hold_not_active(driver: CellDriver) -> None:
    driver.receive("L1", 10)
    driver.reserve("h1", line(6))
    driver.commit("h1", 2)
    for cmd in (driver.commit_cmd("h1"), driver.release_cmd("h1")):
        err = driver.refuse(cmd, FailedPrecondition)
        assert err.reason == "HOLD_NOT_ACTIVE"
        assert err.metadata == {"hold_id": "h1", "state": "committed"}


def test_commit_after_release_is_hold_not_active(driver: CellDriver) -> None:
    driver.receive("L1", 10)
    driver.reserve("h1", line(6))
    driver.release("h1")
    err = driver.refuse(driver.commit_cmd("h1"), FailedPrecondition)
    assert (err.reason, err.metadata["state"]) == ("HOLD_NOT_ACTIVE", "released")


def test_commit_or_release_of_a_swept_hold_is_hold_expired(driver: CellDriver) -> None:
    driver.receive("L1", 10)
    driver.reserve("h1", line(6), ttl_ms=1_000)
    driver.advance(1_000)
    assert kinds(driver.cell.expire_due(driver.now_ms)) == [MovementKind.EXPIRE]
    driver.drain()
    for cmd in (driver.commit_cmd("h1"), driver.release_cmd("h1")):
        err = driver.refuse(cmd, FailedPrecondition)
        assert (err.reason, err.metadata["state"]) == ("HOLD_EXPIRED", "expired")


def test_commit_after_the_ttl_is_hold_expired_even_before_the_sweep(driver: CellDriver) -> None:
    driver.receive("L1", 10)
    driver.reserve("h1", line(6), ttl_ms=1_000)
    driver.drain()
    driver.advance(1_000)
    with pytest.raises(FailedPrecondition) as info:
        driver.run(driver.commit_cmd("h1"))
    assert info.value.reason == "HOLD_EXPIRED"
    assert kinds(driver.drain()) == [MovementKind.EXPIRE]  # the sweep ran first; the commit added nothing
    assert driver.ledger.externals.get(External.CUSTOMER, 0) == 0


# ---------------------------------------------------------------- Release


def test_release_gives_all_held_stock_back(driver: CellDriver) -> None:
    stock_three_lots(driver)
    driver.reserve("h1", line(7))
    driver.drain()
    reply = driver.release("h1")
    assert reply.released_qty == 7
    assert (reply.hold.state, reply.hold.held_qty, reply.hold.released_qty) == (HoldState.RELEASED, 0, 7)
    movements = driver.drain()
    assert [(m.kind, m.qty, m.held_delta) for m in movements] == [
        (MovementKind.RELEASE, 0, -5),
        (MovementKind.RELEASE, 0, -2),
    ]
    assert driver.available() == 15
    assert reply == Released(reply.hold, 7)


def test_release_twice_is_hold_not_active(driver: CellDriver) -> None:
    driver.receive("L1", 10)
    driver.reserve("h1", line(6))
    driver.release("h1")
    err = driver.refuse(driver.release_cmd("h1"), FailedPrecondition)
    assert err.reason == "HOLD_NOT_ACTIVE"


def test_release_of_an_unknown_hold_is_not_found(driver: CellDriver) -> None:
    err = driver.refuse(driver.release_cmd("nope"), NotFound)
    assert err.resource_type == "hold"


# ---------------------------------------------------------------- Consume


def test_consume_takes_free_stock_in_fefo_order(driver: CellDriver) -> None:
    driver.receive("L-B", 5, expires_at_ms=T0_MS + 10 * DAY_MS)
    driver.receive("L-A", 3, expires_at_ms=T0_MS + 5 * DAY_MS)
    driver.drain()
    reply = driver.consume(4)
    assert (reply.consumed_qty, reply.shortfall_qty) == (4, 0)
    assert [(a.lot_id, a.qty) for a in reply.allocations] == [("L-A", 3), ("L-B", 1)]
    movements = driver.drain()
    assert [(m.kind, m.src, m.dst, m.qty) for m in movements] == [
        (MovementKind.CONSUME, key("L-A"), External.CUSTOMER, 3),
        (MovementKind.CONSUME, key("L-B"), External.CUSTOMER, 1),
    ]


def test_consume_never_takes_held_stock_and_records_the_shortfall(driver: CellDriver) -> None:
    driver.receive("L1", 5)
    driver.reserve("h1", line(4))
    driver.drain()
    reply = driver.consume(3)
    assert (reply.consumed_qty, reply.shortfall_qty) == (1, 2)
    movements = driver.drain()
    assert [(m.kind, m.src, m.dst, m.qty) for m in movements] == [
        (MovementKind.CONSUME, key("L1"), External.CUSTOMER, 1),
        (MovementKind.DISCREPANCY, External.COUNT_VARIANCE, External.CUSTOMER, 2),
    ]
    assert driver.held(key("L1")) == 4
    assert driver.ledger.active["h1"].allocations == {key("L1"): 4}
    assert driver.ledger.externals[External.COUNT_VARIANCE] == -2


def test_consume_without_book_stock_is_all_shortfall(driver: CellDriver) -> None:
    reply = driver.consume(3, lot_id="L9", strategy=Strategy.LOT)
    assert reply == Consumed(0, 3, ())
    [m] = driver.drain()
    assert (m.kind, m.lot_id, m.qty) == (MovementKind.DISCREPANCY, "L9", 3)
    driver.ledger.check_invariants(driver.cell.statuses)


def test_consume_takes_expired_stock_physically(driver: CellDriver) -> None:
    driver.receive("L-old", 2, expires_at_ms=T0_MS + HOUR_MS)
    driver.receive("L-new", 5, expires_at_ms=T0_MS + 10 * DAY_MS)
    driver.advance(2 * HOUR_MS)
    assert driver.available() == 5  # the expired lot is not promised...
    reply = driver.consume(3)  # ...but a scan-take of it is a fact
    assert [(a.lot_id, a.qty) for a in reply.allocations] == [("L-old", 2), ("L-new", 1)]
    assert reply.shortfall_qty == 0
    assert driver.qty(key("L-old")) == 0


def test_consume_honours_owner_bin_and_lot_filters(driver: CellDriver) -> None:
    driver.receive("L1", 5, bin="A/01")
    driver.receive("L1", 5, bin="B/01", owner="consignment:acme")
    driver.receive("L2", 5, bin="A/02")
    assert [(a.bin, a.owner) for a in driver.consume(2, owner="consignment").allocations] == [
        ("B/01", "consignment:acme")
    ]
    assert [(a.lot_id, a.bin) for a in driver.consume(1, bin_prefix="A/02").allocations] == [("L2", "A/02")]
    assert [(a.lot_id, a.bin) for a in driver.consume(1, lot_id="L1", owner="own").allocations] == [("L1", "A/01")]
    assert [(a.lot_id, a.qty) for a in driver.consume(9, strategy=Strategy.LOT, lot_id="L2").allocations] == [("L2", 4)]


# ---------------------------------------------------------------- Adjust


def test_adjust_up_records_a_positive_variance(driver: CellDriver) -> None:
    driver.receive("L1", 5)
    driver.drain()
    assert driver.adjust("L1", 8) == Adjusted(5, 8, 3)
    [m] = driver.drain()
    assert (m.kind, m.src, m.dst, m.qty) == (MovementKind.ADJUST, External.COUNT_VARIANCE, key("L1"), 3)
    assert driver.qty(key("L1")) == 8


def test_adjust_down_records_a_negative_variance(driver: CellDriver) -> None:
    driver.receive("L1", 5)
    driver.drain()
    assert driver.adjust("L1", 2, reason="cycle-count") == Adjusted(5, 2, -3)
    [m] = driver.drain()
    assert (m.kind, m.src, m.dst, m.qty) == (MovementKind.ADJUST, key("L1"), External.COUNT_VARIANCE, 3)
    assert driver.ledger.externals[External.COUNT_VARIANCE] == 3


def test_adjust_to_the_booked_qty_emits_nothing(driver: CellDriver) -> None:
    driver.receive("L1", 5)
    driver.drain()
    assert driver.adjust("L1", 5) == Adjusted(5, 5, 0)
    assert driver.drain() == []


def test_adjust_finds_a_known_lot_in_a_new_place(driver: CellDriver) -> None:
    driver.receive("L1", 5)
    assert driver.adjust("L1", 4, bin="Z/9", status="damaged") == Adjusted(0, 4, 4)
    assert driver.qty(key("L1", "Z/9", "damaged")) == 4


def test_adjust_to_zero_removes_the_quant(driver: CellDriver) -> None:
    driver.receive("L1", 5)
    assert driver.adjust("L1", 0) == Adjusted(5, 0, -5)
    assert key("L1") not in driver.ledger.quants


def test_adjust_below_held_shrinks_the_newest_holds_first(driver: CellDriver) -> None:
    driver.receive("L1", 10)
    driver.reserve("h-old", line(4))
    driver.advance(1)
    driver.reserve("h-new", line(3))
    driver.drain()

    assert driver.adjust("L1", 5) == Adjusted(10, 5, -5)  # held 7 > 5: cut h-new by 2
    assert [(m.kind, m.hold_id, m.held_delta, m.qty) for m in driver.drain()] == [
        (MovementKind.ADJUST, "h-new", -2, 0),
        (MovementKind.ADJUST, "", 0, 5),
    ]
    assert (driver.qty(key("L1")), driver.held(key("L1"))) == (5, 5)
    assert driver.ledger.active["h-new"].allocations == {key("L1"): 1}
    assert driver.ledger.active["h-old"].allocations == {key("L1"): 4}

    driver.adjust("L1", 3)  # held 5 > 3: h-new loses its last unit, h-old one unit
    assert (driver.qty(key("L1")), driver.held(key("L1"))) == (3, 3)
    gone = driver.ledger.resolved["h-new"]
    assert (gone.state, gone.released_qty, gone.committed_qty) == (HoldState.RELEASED, 3, 0)
    assert driver.ledger.active["h-old"].allocations == {key("L1"): 3}
    assert driver.ledger.active["h-old"].released_qty == 1
    assert driver.commit("h-old").committed_qty == 3


def test_adjust_below_held_shrinks_the_newest_hold_of_the_same_instant_first(driver: CellDriver) -> None:
    # The runtime applies a micro-batch at one engine time, so holds often share created_at_ms.
    driver.receive("L1", 10)
    driver.reserve("h-first", line(4))
    driver.reserve("h-second", line(4))
    driver.adjust("L1", 7)
    assert driver.ledger.active["h-first"].allocations == {key("L1"): 4}
    assert driver.ledger.active["h-second"].allocations == {key("L1"): 3}


def test_adjust_of_an_unknown_lot_is_not_found(driver: CellDriver) -> None:
    driver.receive("L1", 5)
    err = driver.refuse(driver.adjust_cmd("nope", 1), NotFound)
    assert (err.resource_type, err.resource_name) == ("lot", f"{SKU}@{SITE}/nope")


# ---------------------------------------------------------------- InvalidArgument

Build = Callable[[CellDriver], Command]


def _replace(build: Build, **changes: object) -> Build:
    return lambda d: dataclasses.replace(build(d), **changes)  # type: ignore[type-var]


_receive: Build = lambda d: d.receive_cmd("L1", 1)  # noqa: E731
_reserve: Build = lambda d: d.reserve_cmd("h9", line(1))  # noqa: E731
_consume: Build = lambda d: d.consume_cmd(1)  # noqa: E731
_adjust: Build = lambda d: d.adjust_cmd("L1", 1)  # noqa: E731

INVALID: list[tuple[str, Build, set[str]]] = [
    ("receive-qty-zero", _replace(_receive, qty=0), {"qty"}),
    ("receive-qty-negative", _replace(_receive, qty=-5), {"qty"}),
    ("receive-qty-too-big", _replace(_receive, qty=MAX_QTY + 1), {"qty"}),
    ("receive-qty-bool", _replace(_receive, qty=True), {"qty"}),
    ("request-id-empty", _replace(_receive, request_id=""), {"request_id"}),
    ("request-id-oversize", _replace(_receive, request_id="r" * 129), {"request_id"}),
    ("request-id-with-space", _replace(_receive, request_id="a b"), {"request_id"}),
    ("sku-empty", _replace(_receive, sku=""), {"sku"}),
    ("site-oversize", _replace(_receive, site="s" * 129), {"site"}),
    ("lot-id-empty", _replace(_receive, lot_id=""), {"lot_id"}),
    ("lot-id-oversize", _replace(_receive, lot_id="l" * 129), {"lot_id"}),
    ("bin-empty-level", _replace(_receive, bin="A//P1"), {"bin"}),
    ("bin-trailing-slash", _replace(_receive, bin="A/"), {"bin"}),
    ("bin-too-deep", _replace(_receive, bin="/".join("abcdefghi")), {"bin"}),
    ("bin-bad-character", _replace(_receive, bin="A/0 3"), {"bin"}),
    ("bin-oversize", _replace(_receive, bin="A" * 129), {"bin"}),
    ("owner-unknown-kind", _replace(_receive, owner="vendor"), {"owner"}),
    ("owner-consignment-without-supplier", _replace(_receive, owner="consignment"), {"owner"}),
    ("owner-empty-supplier", _replace(_receive, owner="consignment:"), {"owner"}),
    ("owner-custody-with-space", _replace(_receive, owner="custody:a b"), {"owner"}),
    ("status-unknown", _replace(_receive, status="bogus"), {"status"}),
    ("status-not-receivable", _replace(_receive, status="picking"), {"status"}),
    ("expires-at-negative", _replace(_receive, expires_at_ms=-1), {"expires_at_ms"}),
    ("received-at-negative", _replace(_receive, received_at_ms=-1), {"received_at_ms"}),
    ("doc-ref-oversize", _replace(_receive, doc_ref="d" * 257), {"doc_ref"}),
    ("move-same-bin", lambda d: d.move_cmd("L1", 1, "A", "A"), {"to_bin"}),
    ("move-bad-from-bin", lambda d: d.move_cmd("L1", 1, "A//B", "C"), {"from_bin"}),
    ("move-qty-zero", lambda d: d.move_cmd("L1", 0, "A", "B"), {"qty"}),
    ("move-unknown-status", lambda d: d.move_cmd("L1", 1, "A", "B", status="bogus"), {"status"}),
    ("move-bad-owner", lambda d: d.move_cmd("L1", 1, "A", "B", owner="x"), {"owner"}),
    ("change-status-unknown-target", lambda d: d.change_status_cmd("L1", 1, "available", "sold"), {"to_status"}),
    ("change-status-unknown-source", lambda d: d.change_status_cmd("L1", 1, "gone", "available"), {"from_status"}),
    ("change-status-qty-negative", lambda d: d.change_status_cmd("L1", -1, "available", "damaged"), {"qty"}),
    ("reserve-ttl-zero", lambda d: d.reserve_cmd("h9", line(1), ttl_ms=0), {"ttl_ms"}),
    ("reserve-ttl-negative", lambda d: d.reserve_cmd("h9", line(1), ttl_ms=-1), {"ttl_ms"}),
    ("reserve-ttl-too-long", lambda d: d.reserve_cmd("h9", line(1), ttl_ms=MAX_TTL_MS + 1), {"ttl_ms"}),
    ("reserve-no-lines", lambda d: d.reserve_cmd("h9"), {"lines"}),
    ("reserve-too-many-lines", lambda d: d.reserve_cmd("h9", *[line(1)] * (MAX_LINES + 1)), {"lines"}),
    ("reserve-hold-id-empty", _replace(_reserve, hold_id=""), {"hold_id"}),
    ("reserve-hold-id-oversize", _replace(_reserve, hold_id="h" * 129), {"hold_id"}),
    ("reserve-line-qty-zero", lambda d: d.reserve_cmd("h9", line(0)), {"lines[0].qty"}),
    ("reserve-second-line-bad-owner", lambda d: d.reserve_cmd("h9", line(1), line(1, owner="x")), {"lines[1].owner"}),
    ("reserve-line-bad-bin-prefix", lambda d: d.reserve_cmd("h9", line(1, bin_prefix="A//")), {"lines[0].bin_prefix"}),
    (
        "reserve-line-named-lot-missing",
        lambda d: d.reserve_cmd("h9", line(1, strategy=Strategy.LOT)),
        {"lines[0].lot_id"},
    ),
    (
        "reserve-line-bad-strategy",
        lambda d: d.reserve_cmd("h9", line(1, strategy=cast(Strategy, "random"))),
        {"lines[0].strategy"},
    ),
    (
        "reserve-line-shelf-life-negative",
        lambda d: d.reserve_cmd("h9", line(1, min_shelf_life_days=-1)),
        {"lines[0].min_shelf_life_days"},
    ),
    (
        "reserve-line-shelf-life-nan",
        lambda d: d.reserve_cmd("h9", line(1, min_shelf_life_days=float("nan"))),
        {"lines[0].min_shelf_life_days"},
    ),
    (
        "reserve-line-shelf-life-too-long",
        lambda d: d.reserve_cmd("h9", line(1, min_shelf_life_days=36_501)),
        {"lines[0].min_shelf_life_days"},
    ),
    ("commit-qty-negative", lambda d: d.commit_cmd("h9", -1), {"qty"}),
    ("commit-hold-id-oversize", lambda d: d.commit_cmd("h" * 129), {"hold_id"}),
    ("release-hold-id-empty", lambda d: d.release_cmd(""), {"hold_id"}),
    ("release-hold-id-bad-character", lambda d: d.release_cmd("h 1"), {"hold_id"}),
    ("consume-qty-zero", _replace(_consume, qty=0), {"qty"}),
    ("consume-named-lot-missing", _replace(_consume, strategy=Strategy.LOT), {"lot_id"}),
    ("consume-bad-owner-filter", _replace(_consume, owner="vendor"), {"owner"}),
    ("consume-bad-bin-prefix", _replace(_consume, bin_prefix="/A"), {"bin_prefix"}),
    ("adjust-counted-negative", _replace(_adjust, counted_qty=-1), {"counted_qty"}),
    ("adjust-reason-empty", _replace(_adjust, reason=""), {"reason"}),
    ("adjust-reason-oversize", _replace(_adjust, reason="r" * 65), {"reason"}),
    ("adjust-unknown-status", _replace(_adjust, status="bogus"), {"status"}),
    ("adjust-lot-id-empty", _replace(_adjust, lot_id=""), {"lot_id"}),
    (
        "every-violation-at-once",
        lambda d: Receive("", "", "", "", 0, bin="//", owner="x", status="bogus"),
        {"request_id", "sku", "site", "lot_id", "qty", "bin", "owner", "status"},
    ),
]


@pytest.mark.parametrize(("build", "fields"), [(b, f) for _, b, f in INVALID], ids=[n for n, _, _ in INVALID])
def test_invalid_argument_names_the_fields_and_changes_nothing(
    driver: CellDriver, build: Build, fields: set[str]
) -> None:
    driver.receive("L1", 10, bin="A")
    driver.reserve("h1", line(2))
    err = driver.refuse(build(driver), InvalidArgument)
    assert violated_fields(err) == fields
    assert err.code == "INVALID_ARGUMENT"
    assert all(f in err.message for f in fields)


def test_invalid_command_is_not_remembered_under_its_request_id(driver: CellDriver) -> None:
    bad = driver.receive_cmd("L1", 0)
    driver.refuse(bad, InvalidArgument)
    assert driver.run(dataclasses.replace(bad, qty=3)) == Received("L1", 3)


def test_a_command_for_another_cell_is_an_invariant_violation(driver: CellDriver) -> None:
    driver.receive("L1", 5)
    before = ledger_state(driver.ledger)
    with pytest.raises(InvariantViolation):
        driver.run(Receive(driver.rid(), "OTHER-SKU", SITE, "L1", 1, status="available"))
    assert ledger_state(driver.ledger) == before


# ---------------------------------------------------------------- idempotency


def _setup_hold(d: CellDriver) -> None:
    d.reserve("h1", line(4))


SAME_PAYLOAD: list[tuple[str, Callable[[CellDriver], None], Build]] = [
    ("receive", lambda d: None, lambda d: d.receive_cmd("L1", 5)),
    ("move", lambda d: None, lambda d: d.move_cmd("L1", 2, "A", "B")),
    ("change-status", lambda d: None, lambda d: d.change_status_cmd("L1", 2, "available", "damaged", bin="A")),
    ("reserve", lambda d: None, lambda d: d.reserve_cmd("h2", line(3))),
    ("commit", _setup_hold, lambda d: d.commit_cmd("h1", 3)),
    ("release", _setup_hold, lambda d: d.release_cmd("h1")),
    ("consume", lambda d: None, lambda d: d.consume_cmd(30)),
    ("adjust", lambda d: None, lambda d: d.adjust_cmd("L1", 1, bin="A")),
]


@pytest.mark.parametrize(("setup", "build"), [(s, b) for _, s, b in SAME_PAYLOAD], ids=[n for n, _, _ in SAME_PAYLOAD])
def test_retry_with_the_same_payload_returns_the_first_answer_and_changes_nothing(
    driver: CellDriver, setup: Callable[[CellDriver], None], build: Build
) -> None:
    driver.receive("L1", 10, bin="A")
    setup(driver)
    cmd = build(driver)
    first = driver.run(cmd)
    assert driver.drain() != []
    before = ledger_state(driver.ledger)

    driver.advance(1_000)
    assert driver.run(cmd) == first
    assert driver.run(dataclasses.replace(cmd)) == first  # an equal value, not the same object

    assert ledger_state(driver.ledger) == before
    assert driver.drain() == []


def test_retry_of_a_refusal_returns_the_same_refusal(driver: CellDriver) -> None:
    cmd = driver.reserve_cmd("h1", line(5))
    first = driver.refuse(cmd, InsufficientStock)
    assert first.available == 0
    driver.receive("L1", 10)  # stock arrives, but the answer to this request id stands
    driver.drain()
    again = driver.refuse(cmd, InsufficientStock)
    assert again == first
    assert again.available == 0
    assert driver.ledger.hold("h1") is None


def _traceback_depth(err: BaseException) -> int:
    depth, tb = 0, err.__traceback__
    while tb is not None:
        depth, tb = depth + 1, tb.tb_next
    return depth


def test_retries_of_a_cached_refusal_do_not_grow_its_traceback(driver: CellDriver) -> None:
    # A cached refusal is re-raised on every retry; if the stored exception kept its
    # traceback, each raise would chain more frames onto it (unbounded memory).
    cmd = driver.reserve_cmd("h1", line(5))
    depths = []
    for _ in range(20):
        with pytest.raises(InsufficientStock) as info:
            driver.run(cmd)
        depths.append(_traceback_depth(info.value))
    first, retries = depths[0], depths[1:]
    assert len(set(retries)) == 1, depths
    assert retries[0] <= first


def test_reused_request_id_with_another_payload_is_request_conflict(driver: CellDriver) -> None:
    cmd = driver.receive_cmd("L1", 5)
    first = driver.run(cmd)
    err = driver.refuse(dataclasses.replace(cmd, qty=6), RequestConflict)
    assert (err.request_id, err.what, err.code) == (cmd.request_id, "request id", "ALREADY_EXISTS")
    assert err.differs == "qty"
    assert "with a different qty" in err.message
    other = driver.refuse(Consume(cmd.request_id, SKU, SITE, 5), RequestConflict)  # another command entirely
    assert other.differs == "command"
    assert driver.run(cmd) == first  # the conflict did not replace the first answer


def test_reused_request_id_of_a_refusal_with_another_payload_is_request_conflict(driver: CellDriver) -> None:
    cmd = driver.reserve_cmd("h1", line(5))
    driver.refuse(cmd, InsufficientStock)
    driver.receive("L1", 10)
    driver.refuse(dataclasses.replace(cmd, ttl_ms=TTL_MS + 1), RequestConflict)


def test_dedupe_window_is_bounded_by_age(make_driver: DriverFactory) -> None:
    d = make_driver(limits=CellLimits(dedupe_window_ms=1_000))
    cmd = d.receive_cmd("L1", 5)
    d.run(cmd)
    d.advance(1_000)
    d.refuse(dataclasses.replace(cmd, qty=6), RequestConflict)  # still inside the window
    d.advance(1)
    assert d.run(dataclasses.replace(cmd, qty=6)) == Received("L1", 6)  # forgotten: a new request
    assert d.qty(key("L1")) == 11


def test_dedupe_window_is_bounded_by_count(make_driver: DriverFactory) -> None:
    d = make_driver(limits=CellLimits(dedupe_max_entries=3))
    cmds = [d.receive_cmd("L1", 1) for _ in range(4)]
    for cmd in cmds:
        d.run(cmd)
    for cmd in cmds[1:]:  # the newest three are remembered
        d.refuse(dataclasses.replace(cmd, qty=2), RequestConflict)
    assert d.run(dataclasses.replace(cmds[0], qty=2)) == Received("L1", 2)  # the oldest is not
    assert d.qty(key("L1")) == 6


# ---------------------------------------------------------------- hold expiry and retention


def test_an_expired_hold_stops_counting_on_read_without_any_write(driver: CellDriver) -> None:
    driver.receive("L1", 10)
    driver.reserve("h1", line(4), ttl_ms=1_000)
    driver.drain()
    before = ledger_state(driver.ledger)

    driver.advance(999)
    assert driver.available() == 6
    view = driver.cell.hold_view("h1", driver.now_ms)
    assert view is not None
    assert (view.state, view.held_qty) == (HoldState.ACTIVE, 4)

    driver.advance(1)
    assert driver.available() == 10
    [row] = driver.cell.slice(driver.now_ms, ())
    assert (row.qty, row.held, row.available) == (10, 0, 10)
    view = driver.cell.hold_view("h1", driver.now_ms)
    assert view is not None
    assert (view.state, view.held_qty, view.committed_qty, view.released_qty) == (HoldState.EXPIRED, 0, 0, 0)

    assert ledger_state(driver.ledger) == before  # reads only: the sweep has not run
    assert "h1" in driver.ledger.active
    assert driver.cell.outbox == []


def test_expire_due_sweeps_expired_holds_into_expire_movements(driver: CellDriver) -> None:
    driver.receive("L1", 5, bin="A")
    driver.receive("L2", 5, bin="B")
    driver.reserve("h1", line(8), ttl_ms=1_000)
    driver.reserve("h2", line(1), ttl_ms=5_000)
    driver.drain()
    assert driver.cell.expire_due(driver.now_ms + 999) == []

    driver.advance(1_000)
    swept = driver.cell.expire_due(driver.now_ms)

    assert {m.kind for m in swept} == {MovementKind.EXPIRE}
    assert {m.hold_id for m in swept} == {"h1"}
    assert sum(m.held_delta for m in swept) == -8
    assert all(m.qty == 0 and m.src == m.dst and m.request_id == "" for m in swept)
    assert driver.drain() == swept
    part = driver.ledger.resolved["h1"]
    assert (part.state, part.released_qty, part.committed_qty) == (HoldState.EXPIRED, 8, 0)
    assert "h2" in driver.ledger.active
    assert driver.cell.expire_due(driver.now_ms) == []

    driver.advance(4_000)
    assert [m.hold_id for m in driver.cell.expire_due(driver.now_ms)] == ["h2"]
    assert driver.ledger.active == {}
    assert driver.available() == 10


def test_a_command_after_expiry_sweeps_first(driver: CellDriver) -> None:
    driver.receive("L1", 5)
    driver.reserve("h1", line(5), ttl_ms=1_000)
    driver.drain()
    driver.advance(1_000)
    driver.receive("L2", 1)
    assert kinds(driver.drain()) == [MovementKind.EXPIRE, MovementKind.RECEIVE]


def test_resolved_holds_are_pruned_after_retention(make_driver: DriverFactory) -> None:
    d = make_driver(limits=CellLimits(resolved_hold_retention_ms=10_000))
    d.receive("L1", 10)
    d.reserve("h1", line(2))
    d.commit("h1")
    d.advance(10_000)
    d.receive("L1", 1)  # pruning happens as commands arrive
    assert d.cell.hold_view("h1", d.now_ms) is not None
    d.advance(1)
    d.receive("L1", 1)
    assert d.cell.hold_view("h1", d.now_ms) is None
    d.refuse(d.commit_cmd("h1"), NotFound)
    assert d.reserve("h1", line(1)).state is HoldState.ACTIVE  # the id is free again


def test_resolved_holds_are_bounded_by_count(make_driver: DriverFactory) -> None:
    d = make_driver(limits=CellLimits(resolved_hold_max=1))
    d.receive("L1", 10)
    for hold_id in ("h1", "h2"):
        d.reserve(hold_id, line(1))
        d.release(hold_id)
    d.receive("L1", 1)
    assert list(d.ledger.resolved) == ["h2"]
    assert d.cell.hold_view("h1", d.now_ms) is None


def test_hold_view_of_an_unknown_hold_is_none(driver: CellDriver) -> None:
    assert driver.cell.hold_view("nope", driver.now_ms) is None


# ---------------------------------------------------------------- slices


def stock_for_slices(d: CellDriver) -> None:
    d.receive("L-a", 10, bin="A/01/P1", expires_at_ms=T0_MS + 10 * DAY_MS)
    d.receive("L-a", 5, bin="A/01/P2", owner="consignment:acme", expires_at_ms=T0_MS + 10 * DAY_MS)
    d.receive("L-b", 7, bin="A/02", status="qc_hold", expires_at_ms=T0_MS + 2 * DAY_MS)
    d.receive("L-c", 4, bin="B/01", owner="custody:clinic", received_at_ms=T0_MS - 3 * DAY_MS)  # no expiry
    d.receive("L-d", 3, bin="B/01", status="in_transit_in", expires_at_ms=T0_MS + 40 * DAY_MS)
    d.receive("L-x", 6, bin="C", expires_at_ms=T0_MS + HOUR_MS)
    d.drain()


def rows_by(d: CellDriver, *dims: Dimension, bin_depth: int = 0, **filt: object) -> dict[tuple[str, ...], SliceRow]:
    rows = d.cell.slice(d.now_ms, dims, SliceFilter(**filt), bin_depth)  # type: ignore[arg-type]
    return {tuple(v for _, v in row.group): row for row in rows}


def qty_by(d: CellDriver, *dims: Dimension, bin_depth: int = 0, **filt: object) -> dict[tuple[str, ...], int]:
    return {g: r.qty for g, r in rows_by(d, *dims, bin_depth=bin_depth, **filt).items()}


@pytest.mark.parametrize(
    ("bin_depth", "expected"),
    [
        (0, {("A/01/P1",): 10, ("A/01/P2",): 5, ("A/02",): 7, ("B/01",): 7, ("C",): 6}),
        (1, {("A",): 22, ("B",): 7, ("C",): 6}),
        (2, {("A/01",): 15, ("A/02",): 7, ("B/01",): 7, ("C",): 6}),
        (9, {("A/01/P1",): 10, ("A/01/P2",): 5, ("A/02",): 7, ("B/01",): 7, ("C",): 6}),
    ],
)
def test_slice_by_bin_cut_at_depth(driver: CellDriver, bin_depth: int, expected: dict[tuple[str, ...], int]) -> None:
    stock_for_slices(driver)
    assert qty_by(driver, Dimension.BIN, bin_depth=bin_depth) == expected


def test_slice_by_status_counts_on_hand_and_available(driver: CellDriver) -> None:
    stock_for_slices(driver)
    driver.advance(2 * HOUR_MS)  # L-x has expired
    rows = rows_by(driver, Dimension.STATUS)
    assert set(rows) == {("available",), ("qc_hold",), ("in_transit_in",)}
    avail = rows[("available",)]
    assert (avail.qty, avail.held, avail.available, avail.on_hand) == (25, 0, 19, 25)
    assert avail.earliest_expiry_ms == T0_MS + HOUR_MS
    assert (rows[("qc_hold",)].available, rows[("qc_hold",)].on_hand) == (0, 7)
    assert (rows[("in_transit_in",)].qty, rows[("in_transit_in",)].on_hand) == (3, 0)
    assert driver.available() == 19


def test_slice_by_owner_lot_and_days(driver: CellDriver) -> None:
    stock_for_slices(driver)
    assert qty_by(driver, Dimension.OWNER) == {("own",): 26, ("consignment:acme",): 5, ("custody:clinic",): 4}
    lots = rows_by(driver, Dimension.LOT)
    assert {g: r.qty for g, r in lots.items()} == {
        ("L-a",): 15,
        ("L-b",): 7,
        ("L-c",): 4,
        ("L-d",): 3,
        ("L-x",): 6,
    }
    assert lots[("L-c",)].earliest_expiry_ms == 0  # never expires
    assert lots[("L-b",)].earliest_expiry_ms == T0_MS + 2 * DAY_MS
    assert qty_by(driver, Dimension.EXPIRY_DAY) == {
        ("",): 4,
        ("2026-01-01",): 6,
        ("2026-01-03",): 7,
        ("2026-01-11",): 15,
        ("2026-02-10",): 3,
    }
    assert qty_by(driver, Dimension.RECEIVED_DAY) == {("2025-12-29",): 4, ("2026-01-01",): 31}


def test_slice_groups_by_several_dimensions_in_order(driver: CellDriver) -> None:
    stock_for_slices(driver)
    rows = driver.cell.slice(driver.now_ms, (Dimension.STATUS, Dimension.OWNER))
    assert [(r.group, r.qty) for r in rows] == [
        ((("status", "available"), ("owner", "consignment:acme")), 5),
        ((("status", "available"), ("owner", "custody:clinic")), 4),
        ((("status", "available"), ("owner", "own")), 16),
        ((("status", "in_transit_in"), ("owner", "own")), 3),
        ((("status", "qc_hold"), ("owner", "own")), 7),
    ]


@pytest.mark.parametrize(
    ("filt", "lots"),
    [
        ({"statuses": frozenset({"qc_hold", "in_transit_in"})}, {"L-b", "L-d"}),
        ({"owner": "consignment"}, {"L-a"}),
        ({"owner": "custody:clinic"}, {"L-c"}),
        ({"owner": "own"}, {"L-a", "L-b", "L-d", "L-x"}),
        ({"bin_prefix": "A/01"}, {"L-a"}),
        ({"bin_prefix": "A/0"}, set()),
        ({"bin_prefix": "B"}, {"L-c", "L-d"}),
        ({"lot_id": "L-c"}, {"L-c"}),
        ({"sellable_only": True}, {"L-a", "L-c", "L-x"}),
        ({"min_shelf_life_days": 5.0}, {"L-a", "L-c", "L-d"}),
        ({"max_shelf_life_days": 5.0}, {"L-b", "L-x"}),
        ({"min_shelf_life_days": 1.0, "max_shelf_life_days": 20.0}, {"L-a", "L-b"}),
        ({"sellable_only": True, "owner": "own", "bin_prefix": "A"}, {"L-a"}),
    ],
)
def test_slice_filter(driver: CellDriver, filt: dict[str, object], lots: set[str]) -> None:
    stock_for_slices(driver)
    assert {g[0] for g in qty_by(driver, Dimension.LOT, **filt)} == lots


def test_slice_held_and_available_exclude_held_qty(driver: CellDriver) -> None:
    stock_for_slices(driver)
    driver.reserve("h1", line(3, lot_id="L-a", owner="own"))
    rows = rows_by(driver, Dimension.LOT, Dimension.OWNER)
    assert (rows[("L-a", "own")].held, rows[("L-a", "own")].available) == (3, 7)
    assert (rows[("L-a", "consignment:acme")].held, rows[("L-a", "consignment:acme")].available) == (0, 5)
    assert driver.available() == 10 + 5 + 4 + 6 - 3


def test_slice_is_a_pure_read(driver: CellDriver) -> None:
    stock_for_slices(driver)
    driver.reserve("h1", line(3), ttl_ms=1_000)
    driver.drain()
    driver.advance(DAY_MS)
    before = ledger_state(driver.ledger)
    for dim in Dimension:
        driver.cell.slice(driver.now_ms, (dim,), SliceFilter(min_shelf_life_days=0.5), bin_depth=1)
    driver.available()
    assert ledger_state(driver.ledger) == before
    assert driver.cell.outbox == []


def test_opened_lot_expires_at_opened_plus_opened_shelf_life(make_driver: DriverFactory) -> None:
    d = make_driver(opened_shelf_life_ms=2 * DAY_MS)
    d.receive("L-open", 5, expires_at_ms=T0_MS + 30 * DAY_MS, opened_at_ms=T0_MS - DAY_MS)
    d.receive("L-sealed", 3, expires_at_ms=T0_MS + 30 * DAY_MS)
    d.receive("L-open-soon", 2, expires_at_ms=T0_MS + HOUR_MS, opened_at_ms=T0_MS)  # its own date is earlier
    rows = rows_by(d, Dimension.LOT)
    assert rows[("L-open",)].earliest_expiry_ms == T0_MS + DAY_MS
    assert rows[("L-sealed",)].earliest_expiry_ms == T0_MS + 30 * DAY_MS
    assert rows[("L-open-soon",)].earliest_expiry_ms == T0_MS + HOUR_MS
    assert qty_by(d, Dimension.EXPIRY_DAY)[("2026-01-02",)] == 5
    assert qty_by(d, Dimension.LOT, max_shelf_life_days=1.0) == {("L-open",): 5, ("L-open-soon",): 2}

    assert picks(d.reserve("h1", line(2))) == [("L-open-soon", 2)]  # FEFO by effective expiry
    assert picks(d.reserve("h2", line(1))) == [("L-open", 1)]
    d.advance(DAY_MS)  # the opened lot is now past its effective expiry
    assert d.available() == 3
    d.cell.expire_due(d.now_ms)  # sweep the holds' TTLs first, so the refusal below is all there is
    d.drain()
    # Only an over-age opened lot could serve: refused as such, not as plain shortage (issue 15).
    err = d.refuse(d.reserve_cmd("h3", line(1, lot_id="L-open")), FailedPrecondition)
    assert (err.reason, err.metadata["fresh_qty"]) == ("FRESHNESS_EXPIRED", "0")


def test_opened_lot_without_an_opened_shelf_life_keeps_its_expiry(driver: CellDriver) -> None:
    driver.receive("L-open", 5, expires_at_ms=T0_MS + 30 * DAY_MS, opened_at_ms=T0_MS - DAY_MS)
    assert rows_by(driver, Dimension.LOT)[("L-open",)].earliest_expiry_ms == T0_MS + 30 * DAY_MS


def test_lot_effective_expiry_and_shelf_life_left() -> None:
    assert Lot("L", 0).effective_expiry_ms(DAY_MS) == NO_EXPIRY_MS
    assert Lot("L", 0, opened_at_ms=T0_MS).effective_expiry_ms(DAY_MS) == T0_MS + DAY_MS
    assert Lot("L", 0, T0_MS + 5, T0_MS).effective_expiry_ms(DAY_MS) == T0_MS + 5
    assert shelf_life_left_days(NO_EXPIRY_MS, T0_MS) == float("inf")
    assert shelf_life_left_days(T0_MS + 3 * DAY_MS, T0_MS + DAY_MS) == 2.0
    assert shelf_life_left_days(T0_MS, T0_MS + DAY_MS) == -1.0


# ---------------------------------------------------------------- movements


def test_replaying_every_drained_movement_rebuilds_the_cell(driver: CellDriver) -> None:
    journal: list[Movement] = []
    driver.receive("L1", 10, bin="A", expires_at_ms=T0_MS + 3 * DAY_MS)
    driver.receive("L2", 4, bin="B")
    driver.reserve("h1", line(7), ttl_ms=1_000)
    driver.reserve("h2", line(2))
    journal += driver.drain()
    driver.commit("h2", 1)
    driver.move("L2", 1, "B", "C")
    driver.change_status("L2", 1, "available", "damaged", bin="C")
    driver.consume(20)
    journal += driver.drain()
    driver.advance(1_000)
    journal += driver.cell.expire_due(driver.now_ms)
    driver.drain()  # the swept movements are already in the journal
    driver.adjust("L1", 9, bin="A")
    journal += driver.drain()

    assert [m.seq for m in journal] == list(range(1, len(journal) + 1))
    rebuilt = replay(journal)
    assert same_balances(rebuilt, driver.ledger)
    assert {h: p.state for h, p in rebuilt.resolved.items()} == {h: p.state for h, p in driver.ledger.resolved.items()}
    rebuilt.check_invariants(driver.cell.statuses)


# ---------------------------------------------------------------- statuses that allow negative balances


def negative_allowed(*names: str) -> StatusDictionary:
    """The packaged dictionary with `allow_negative` switched on for `names`."""
    raw = json.loads(resources.files("engine.domain").joinpath("statuses.json").read_text())
    for name in names:
        raw["statuses"][name]["allow_negative"] = True
    return parse_dictionary(raw)


def test_a_status_that_allows_negative_may_go_below_zero(make_driver: DriverFactory) -> None:
    d = make_driver(statuses=negative_allowed("in_transit_in"))
    d.receive("L1", 5, bin="A", status="in_transit_in")
    assert d.move("L1", 8, "A", "B", status="in_transit_in") == Moved(8)
    assert (d.qty(key("L1", "A", "in_transit_in")), d.qty(key("L1", "B", "in_transit_in"))) == (-3, 8)
    d.ledger.check_invariants(d.cell.statuses)


def test_a_status_that_allows_negative_still_needs_a_known_lot(make_driver: DriverFactory) -> None:
    d = make_driver(statuses=negative_allowed("in_transit_in"))
    d.receive("L1", 5, bin="A", status="in_transit_in")
    d.refuse(d.move_cmd("nope", 1, "A", "B", status="in_transit_in"), NotFound)
    d.refuse(d.change_status_cmd("nope", 1, "in_transit_in", "receiving"), NotFound)
    d.ledger.check_invariants(d.cell.statuses)
    assert {row.qty for row in d.cell.slice(d.now_ms, (Dimension.LOT,))} == {5}


def test_a_status_that_allows_negative_still_cannot_take_held_stock(make_driver: DriverFactory) -> None:
    d = make_driver(statuses=negative_allowed("available"))
    d.receive("L1", 5, bin="A")
    d.reserve("h1", line(5))
    err = d.refuse(d.move_cmd("L1", 3, "A", "B"), InsufficientStock)
    assert err.available == 0
    d.refuse(d.change_status_cmd("L1", 1, "available", "damaged", bin="A"), InsufficientStock)
    d.ledger.check_invariants(d.cell.statuses)
