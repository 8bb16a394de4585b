"""The one-call sale: domain shape and the gateway's fast and coordinated paths (no Ray)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from engine import bootstrap
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Cell
from engine.domain.clock import ManualClock
from engine.domain.commands import (
    MAX_ID_LEN,
    SALE_COMMIT_SUFFIX,
    SALE_HOLD_SUFFIX,
    SALE_TTL_MS,
    Commit,
    Receive,
    Received,
    ReserveLine,
    SaleLine,
    Sell,
    Strategy,
    derived_id,
    sale_parts,
    validate_sale,
)
from engine.domain.errors import FailedPrecondition, InsufficientStock, InvalidArgument, RequestConflict, Unavailable
from engine.domain.events import business_events
from engine.domain.model import External, Finance, HoldState, MovementKind
from engine.domain.ports import JournalEntry
from engine.domain.statuses import DEFAULT_DICTIONARY
from engine.runtime.gateway import Gateway
from engine.runtime.gateway.holds import HoldCoordinator
from engine.runtime.gateway.router import Router
from engine.runtime.gateway.sales import SaleDesk
from engine.runtime.host import HostState
from engine.runtime.routing import Directory
from engine.runtime.types import AggregateState, HoldLine

DAY_MS = 86_400_000


@dataclass
class World:
    gateway: Gateway
    clock: ManualClock


@pytest_asyncio.fixture
async def world() -> AsyncIterator[World]:
    clock = ManualClock()
    gateway = bootstrap.local_gateway(shards=3, clock=clock, sweep_interval_ms=0)
    await gateway.put_sku(Sku("strip", "Glucose test strips", "box"))
    await gateway.put_sku(Sku("cath", "IV catheter 20G"))
    for site, org in (("cw", "acme/central"), ("ward1", "acme/east/boston"), ("ward2", "acme/east/salem")):
        await gateway.put_site(Site(site, org, "cabinet"))
    yield World(gateway, clock)
    await gateway.close()


async def stock(w: World, sku: str, site: str, lot: str, qty: int, days: int = 100) -> None:
    expires = w.clock.now_ms() + days * DAY_MS
    await w.gateway.execute(
        Receive(f"rcv-{sku}-{site}-{lot}", sku, site, lot, qty, status="available", expires_at_ms=expires)
    )


async def on_hand(w: World, sku: str, site: str) -> tuple[int, int, int]:
    """(qty, held, available) of the pair."""
    rows = (await w.gateway.get_availability(sku, site)).rows
    return sum(r.qty for r in rows), sum(r.held for r in rows), sum(r.available for r in rows)


def line(sku: str, site: str, qty: int, **constraints: object) -> HoldLine:
    return HoldLine(sku, site, ReserveLine(qty, **constraints))  # type: ignore[arg-type]


async def verified(w: World) -> None:
    """Conservation: every shard rebuilt from its journal equals the live one."""
    assert all(check.ok for check in await w.gateway.verify())


# ---- domain ----


def test_a_sale_is_a_reserve_and_a_commit_per_pair_under_ids_of_the_engine() -> None:
    sale = Sell(
        "s1",
        (
            SaleLine("strip", "ward1", ReserveLine(2)),
            SaleLine("cath", "ward1", ReserveLine(1)),
            SaleLine("strip", "ward1", ReserveLine(1, Strategy.LOT, "L2")),
        ),
        "receipt-1",
    )
    parts = sale_parts(sale)
    assert [(p.reserve.sku, p.reserve.site) for p in parts] == [("strip", "ward1"), ("cath", "ward1")]
    assert parts[0].reserve.lines == (ReserveLine(2), ReserveLine(1, Strategy.LOT, "L2"))
    assert parts[0].reserve.hold_id == parts[0].reserve.request_id == "s1" + SALE_HOLD_SUFFIX
    assert parts[0].commit == Commit(
        "s1" + SALE_COMMIT_SUFFIX, "strip", "ward1", "s1" + SALE_HOLD_SUFFIX, None, "receipt-1"
    )
    assert sale_parts(sale) == parts  # a retry sends the very same parts


def test_derived_ids_stay_within_bounds_and_distinct() -> None:
    a, b = "x" * 126 + "a", "x" * 126 + "b"
    assert len(derived_id(a, SALE_HOLD_SUFFIX)) == MAX_ID_LEN
    assert derived_id(a, SALE_HOLD_SUFFIX) != derived_id(b, SALE_HOLD_SUFFIX)


def test_a_sale_is_validated_with_its_own_field_names() -> None:
    sale = Sell("s#sale", (SaleLine("", "ward1", ReserveLine(0)),))
    with pytest.raises(InvalidArgument) as err:
        validate_sale(sale)
    fields = {v.field for v in err.value.violations}
    assert fields == {"request_id", "lines[0].sku", "lines[0].qty"}
    with pytest.raises(InvalidArgument):
        validate_sale(Sell("s2", ()))


def test_at_one_cell_a_sale_leaves_commit_movements_and_no_open_hold() -> None:
    cell = Cell("strip", "ward1")
    cell.handle(Receive("r", "strip", "ward1", "L1", 5, status="available"), 0)
    cell.drain()
    sale = Sell("s1", (SaleLine("strip", "ward1", ReserveLine(3)),), "receipt-1")
    (part,) = sale_parts(sale)
    cell.handle(part.reserve, 1)
    committed = cell.handle(part.commit, 1)
    assert committed.hold.state is HoldState.COMMITTED  # type: ignore[union-attr]
    movements = cell.drain()
    sold = [m for m in movements if m.kind is MovementKind.COMMIT]
    assert sum(m.qty for m in sold) == 3
    assert all(m.dst is External.CUSTOMER for m in sold)
    assert all(m.doc_ref == "receipt-1" for m in movements)
    assert cell.available(2) == 2
    assert not cell.ledger.active


def test_a_sales_business_events_are_a_reserve_and_a_commit_with_its_document() -> None:
    cell = Cell("strip", "ward1")
    cell.handle(Receive("r", "strip", "ward1", "L1", 5, status="available"), 0)
    cell.drain()
    finance = Finance(currency="EUR", unit_price="2.50")
    sale = Sell("s1", (SaleLine("strip", "ward1", ReserveLine(3)),), "receipt-1", finance)
    (part,) = sale_parts(sale)
    cell.handle(part.reserve, 1)
    cell.handle(part.commit, 1)
    entry = JournalEntry("shard-0", 2, 1, (part.reserve, part.commit), tuple(cell.drain()))
    events = business_events(entry)
    assert [e.kind for e in events] == ["reserve", "commit"]
    assert {e.doc_ref for e in events} == {"receipt-1"}
    sold = events[1]
    assert (sold.qty, sold.to.external) == (3, "@customer")
    assert sold.finance is not None
    assert sold.finance.extended_price == "7.50"


# ---- gateway ----


async def test_one_pair_sells_in_one_call_and_a_retry_applies_once(world: World) -> None:
    await stock(world, "strip", "ward1", "L1", 10)
    first = await world.gateway.sell("s1", [line("strip", "ward1", 4)], "receipt-1")
    assert first.hold_id == "s1"
    assert first.state is AggregateState.COMMITTED
    assert first.committed_qty == 4
    assert first.held_qty == 0
    assert await on_hand(world, "strip", "ward1") == (6, 0, 6)
    again = await world.gateway.sell("s1", [line("strip", "ward1", 4)], "receipt-1")
    assert again == first
    assert await on_hand(world, "strip", "ward1") == (6, 0, 6)
    with pytest.raises(RequestConflict) as err:
        await world.gateway.sell("s1", [line("strip", "ward1", 5)], "receipt-1")
    assert err.value.request_id == "s1"
    await verified(world)


async def test_several_pairs_sell_all_or_nothing(world: World) -> None:
    await stock(world, "strip", "ward1", "L1", 10)
    await stock(world, "cath", "ward1", "C1", 10)
    await stock(world, "strip", "ward2", "L1", 1)
    lines = [line("strip", "ward1", 4), line("cath", "ward1", 2), line("strip", "ward2", 2)]
    with pytest.raises(InsufficientStock):
        await world.gateway.sell("s2", lines, "receipt-2")
    for sku, site, qty in (("strip", "ward1", 10), ("cath", "ward1", 10), ("strip", "ward2", 1)):
        assert await on_hand(world, sku, site) == (qty, 0, qty)  # nothing held, nothing sold
    sold = await world.gateway.sell("s3", lines[:2], "receipt-3")
    assert sold.state is AggregateState.COMMITTED
    assert sold.committed_qty == 6
    assert [(p.sku, p.site) for p in sold.parts] == [("strip", "ward1"), ("cath", "ward1")]
    assert await on_hand(world, "strip", "ward1") == (6, 0, 6)
    assert await world.gateway.sell("s3", lines[:2], "receipt-3") == sold
    with pytest.raises(RequestConflict):  # another pair under the same request id
        await world.gateway.sell("s3", lines[1:], "receipt-3")
    assert await on_hand(world, "strip", "ward2") == (1, 0, 1)
    await verified(world)


async def test_a_refused_single_pair_sale_holds_nothing(world: World) -> None:
    await stock(world, "strip", "ward1", "L1", 3)
    with pytest.raises(InsufficientStock):
        await world.gateway.sell("s4", [line("strip", "ward1", 4)])
    assert await on_hand(world, "strip", "ward1") == (3, 0, 3)
    with pytest.raises(InsufficientStock):  # the retry: the first answer
        await world.gateway.sell("s4", [line("strip", "ward1", 4)])
    await verified(world)


async def test_a_sale_interrupted_by_a_failed_shard_is_completed_by_its_retry(world: World) -> None:
    await stock(world, "strip", "ward1", "L1", 10)
    down = world.gateway.handles[world.gateway.directory.shard_for("strip", "ward1")]
    down.state, down._next_recovery_at = HostState.BROKEN, float("inf")  # answers UNAVAILABLE
    with pytest.raises(Unavailable):
        await world.gateway.sell("s5", [line("strip", "ward1", 4)])
    down.state = HostState.READY
    sold = await world.gateway.sell("s5", [line("strip", "ward1", 4)])
    assert sold.committed_qty == 4
    assert await on_hand(world, "strip", "ward1") == (6, 0, 6)


async def test_callers_cannot_take_a_sales_ids(world: World) -> None:
    await stock(world, "strip", "ward1", "L1", 10)
    with pytest.raises(InvalidArgument):
        await world.gateway.reserve("x" + SALE_HOLD_SUFFIX, "", [line("strip", "ward1", 1)], 60_000)
    with pytest.raises(InvalidArgument):
        await world.gateway.commit("c1", "s1" + SALE_HOLD_SUFFIX)
    with pytest.raises(InvalidArgument):
        await world.gateway.release("r1", "s1" + SALE_HOLD_SUFFIX)
    with pytest.raises(InvalidArgument):
        await world.gateway.sell("s1" + SALE_COMMIT_SUFFIX, [line("strip", "ward1", 1)])
    with pytest.raises(InvalidArgument):  # every caller command, not only holds
        await world.gateway.execute(Receive("r#void", "strip", "ward1", "L1", 1, status="available"))
    assert await on_hand(world, "strip", "ward1") == (10, 0, 10)


def test_a_cell_replays_caller_ids_written_before_the_suffixes_were_reserved() -> None:
    # The rule is the gateway's: a journal may hold such an id from before, and replay
    # must apply it as it was applied then.
    cell = Cell("strip", "ward1")
    assert cell.handle(Receive("old#sale", "strip", "ward1", "L1", 5, status="available"), 0) == Received("L1", 5)


async def test_concurrent_sellers_never_oversell(world: World) -> None:
    await stock(world, "strip", "ward1", "L1", 10)
    await stock(world, "strip", "ward2", "L1", 10)

    async def sale(i: int) -> bool:
        lines = [line("strip", "ward1", 1)] + ([line("strip", "ward2", 1)] if i % 2 else [])
        try:
            await world.gateway.sell(f"s-{i}", lines)
        except InsufficientStock:
            return False
        return True

    outcomes = await asyncio.gather(*(sale(i) for i in range(40)))
    assert sum(outcomes) == 10
    qty1, held1, _ = await on_hand(world, "strip", "ward1")
    qty2, held2, _ = await on_hand(world, "strip", "ward2")
    assert (qty1, held1, held2) == (0, 0, 0)
    assert qty2 == 10 - sum(1 for i, ok in enumerate(outcomes) if ok and i % 2)
    await verified(world)


def shard_work(w: World) -> tuple[int, int]:
    """(shard calls, ops) every shard has served so far."""
    hosts = w.gateway.handles.values()
    return sum(h.batches for h in hosts), sum(h.ops for h in hosts)


async def test_a_one_pair_sale_is_one_op_in_one_shard_call(world: World) -> None:
    await stock(world, "strip", "ward1", "L1", 10)
    calls, ops = shard_work(world)
    await world.gateway.sell("s1", [line("strip", "ward1", 2), line("strip", "ward1", 1, lot_id="L1")])
    assert shard_work(world) == (calls + 1, ops + 1)
    with pytest.raises(InsufficientStock):  # refused: still one op, and nothing held
        await world.gateway.sell("s2", [line("strip", "ward1", 8)])
    assert shard_work(world) == (calls + 2, ops + 2)
    assert await on_hand(world, "strip", "ward1") == (7, 0, 7)
    await verified(world)


async def test_a_one_pair_sale_whose_pair_moved_is_sold_where_it_went(world: World) -> None:
    await stock(world, "strip", "ward1", "L1", 10)
    stale = Directory(world.gateway.directory.shard_names)  # another gateway's, from before the pin
    await world.gateway.pin("strip", "ward1")
    router = world.gateway.router
    own = Router(stale, {}, router._factory, router._store)
    desk = SaleDesk(own, HoldCoordinator(own, DEFAULT_DICTIONARY), DEFAULT_DICTIONARY)
    sold = await desk.sell(Sell("s1", (SaleLine("strip", "ward1", ReserveLine(3)),)), None)
    assert sold.committed_qty == 3
    assert await desk.sell(Sell("s1", (SaleLine("strip", "ward1", ReserveLine(3)),)), None) == sold
    assert await on_hand(world, "strip", "ward1") == (7, 0, 7)
    await verified(world)


async def test_a_sale_whose_earlier_attempt_expired_is_refused_and_sells_nothing(world: World) -> None:
    # An engine before this one sent a one-pair sale's Reserve and Commit as two ops: one
    # that died between them left the part held until its TTL. The retry must not sell it.
    await stock(world, "strip", "ward1", "L1", 10)
    sale = Sell("s1", (SaleLine("strip", "ward1", ReserveLine(3)),))
    (part,) = sale_parts(sale)
    await world.gateway.router.to_pair("strip", "ward1", part.reserve, None)
    world.clock.advance(SALE_TTL_MS + 1)
    with pytest.raises(FailedPrecondition) as expired:
        await world.gateway.sell("s1", [line("strip", "ward1", 3)])
    assert expired.value.reason == "HOLD_EXPIRED"
    assert await on_hand(world, "strip", "ward1") == (10, 0, 10)
    await verified(world)
