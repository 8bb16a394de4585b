"""The gateway over in-process shards: routing, multi-line holds, reads, pins (no Ray)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from engine import bootstrap
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension, SliceFilter
from engine.domain.clock import ManualClock
from engine.domain.commands import Receive, ReserveLine
from engine.domain.errors import (
    FailedPrecondition,
    FieldViolation,
    InsufficientStock,
    InvalidArgument,
    NotFound,
    RequestConflict,
    Unavailable,
)
from engine.domain.inventory import CommitLine, StockQuery
from engine.runtime.gateway import UNDO_SUFFIX, Gateway
from engine.runtime.host import HostState
from engine.runtime.routing import Directory, hold_home_index, shard_index
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


async def stock(w: World, sku: str, site: str, lot: str, qty: int, days: int = 100, owner: str = "own") -> None:
    expires = w.clock.now_ms() + days * DAY_MS
    await w.gateway.execute(
        Receive(f"rcv-{sku}-{site}-{lot}", sku, site, lot, qty, status="available", expires_at_ms=expires, owner=owner)
    )


async def available(w: World, sku: str, site: str) -> int:
    return (await w.gateway.get_availability(sku, site)).available


def line(sku: str, site: str, qty: int) -> HoldLine:
    return HoldLine(sku, site, ReserveLine(qty))


def test_routing_is_stable_and_spreads() -> None:
    # crc32-based: the same on every gateway and every run (unlike Python's hash()).
    assert shard_index("strip", "ward1", 8) == shard_index("strip", "ward1", 8)
    counts = [0] * 4
    for i in range(4000):
        counts[shard_index(f"sku{i}", "site", 4)] += 1
    assert min(counts) > 800
    directory = Directory(("a", "b"), {("hot", "s1"): "pin-x"})
    assert directory.shard_for("hot", "s1") == "pin-x"
    assert directory.all_shards() == ("a", "b", "pin-x")
    assert directory.home_for("H1") == ("a", "b")[hold_home_index("H1", 2)]


async def test_multi_line_hold_across_sites_then_partial_commit(world: World) -> None:
    await stock(world, "strip", "ward1", "L1", 10)
    await stock(world, "strip", "ward2", "L1", 5)
    hold = await world.gateway.reserve("o1", "H1", [line("strip", "ward1", 4), line("strip", "ward2", 2)], 60_000)
    assert hold.state is AggregateState.ACTIVE
    assert hold.held_qty == 6
    assert await available(world, "strip", "ward1") == 6
    done = await world.gateway.commit("c1", "H1", [CommitLine("strip", "ward1", 3)])
    # ward1 commits 3 and releases 1; ward2 is not listed, so its share is released.
    assert (done.committed_qty, done.released_qty) == (3, 3)
    assert done.state is AggregateState.COMMITTED
    assert await available(world, "strip", "ward1") == 7
    assert await available(world, "strip", "ward2") == 5


async def test_short_line_leaves_nothing_held_anywhere(world: World) -> None:
    await stock(world, "strip", "ward1", "L1", 10)
    await stock(world, "cath", "ward1", "C1", 10)
    await stock(world, "strip", "ward2", "L1", 1)
    lines = [line("strip", "ward1", 4), line("cath", "ward1", 2), line("strip", "ward2", 2)]
    with pytest.raises(InsufficientStock) as err:
        await world.gateway.reserve("o2", "H2", lines, 60_000)
    assert (err.value.requested, err.value.available) == (2, 1)
    for sku, site, qty in (("strip", "ward1", 10), ("cath", "ward1", 10), ("strip", "ward2", 1)):
        assert await available(world, sku, site) == qty
    # A retry with the same request id gives the same answer and still holds nothing.
    with pytest.raises(InsufficientStock):
        await world.gateway.reserve("o2", "H2", lines, 60_000)
    assert await available(world, "strip", "ward1") == 10
    assert (await world.gateway.get_hold("H2")).state is AggregateState.RELEASED


async def test_retried_reserve_and_commit_apply_once(world: World) -> None:
    await stock(world, "strip", "ward1", "L1", 10)
    first = await world.gateway.reserve("o3", "H3", [line("strip", "ward1", 4)], 60_000)
    again = await world.gateway.reserve("o3", "H3", [line("strip", "ward1", 4)], 60_000)
    assert again == first
    assert await available(world, "strip", "ward1") == 6
    await world.gateway.commit("c3", "H3")
    await world.gateway.commit("c3", "H3")
    assert await available(world, "strip", "ward1") == 6
    with pytest.raises(RequestConflict) as other_qty:
        await world.gateway.reserve("o3", "H3", [line("strip", "ward1", 5)], 60_000)
    assert other_qty.value.differs == "lines"  # the error names what differs
    with pytest.raises(RequestConflict) as new_request:  # hold id reused by another request
        await world.gateway.reserve("o4", "H3", [line("strip", "ward1", 1)], 60_000)
    assert new_request.value.differs == "request_id"
    assert "under another request id" in new_request.value.message
    assert await available(world, "strip", "ward1") == 6


async def test_concurrent_orders_never_oversell(world: World) -> None:
    await stock(world, "strip", "ward1", "L1", 10)

    async def order(i: int) -> bool:
        try:
            await world.gateway.reserve(f"r{i}", f"h{i}", [line("strip", "ward1", 1)], 60_000)
        except InsufficientStock:
            return False
        await world.gateway.commit(f"c{i}", f"h{i}")
        return True

    outcomes = await asyncio.gather(*(order(i) for i in range(64)))
    assert sum(outcomes) == 10
    assert await available(world, "strip", "ward1") == 0
    rows = (await world.gateway.get_availability("strip", "ward1")).rows
    assert sum(r.qty for r in rows) == 0


async def test_expired_hold_frees_stock_on_read_and_refuses_commit(world: World) -> None:
    await stock(world, "strip", "ward1", "L1", 10)
    await world.gateway.reserve("o5", "H5", [line("strip", "ward1", 7)], 1_000)
    assert await available(world, "strip", "ward1") == 3
    world.clock.advance(1_001)
    assert await available(world, "strip", "ward1") == 10  # before any sweep
    assert (await world.gateway.get_hold("H5")).state is AggregateState.EXPIRED
    with pytest.raises(FailedPrecondition) as err:
        await world.gateway.commit("c5", "H5")
    assert err.value.reason == "HOLD_EXPIRED"


async def test_sweeper_releases_expired_holds(world: World) -> None:
    await stock(world, "strip", "ward1", "L1", 10)
    await world.gateway.reserve("o6", "H6", [line("strip", "ward1", 2)], 1_000)
    world.clock.advance(5_000)
    hosts = world.gateway.handles
    swept = [await host.sweep() for host in hosts.values()]
    assert sum(swept) == 1  # one EXPIRE movement, on the cell's shard
    assert all(not host.core.with_holds for host in hosts.values())


async def test_bad_input_is_refused_before_any_shard(world: World) -> None:
    with pytest.raises(InvalidArgument) as err:
        await world.gateway.reserve("", "H7", [line("strip", "", 0)], 0)
    fields = {v.field for v in err.value.violations}
    assert {"request_id", "lines[0].site", "lines[0].qty"} <= fields
    with pytest.raises(NotFound) as missing:
        await world.gateway.reserve("o8", "H8", [line("nope", "ward1", 1)], 1_000)
    assert missing.value.resource_type == "sku"
    with pytest.raises(NotFound):
        await world.gateway.get_availability("strip", "mars")
    with pytest.raises(NotFound):
        await world.gateway.commit("c9", "no-such-hold")
    with pytest.raises(InvalidArgument):
        await world.gateway.put_sku(Sku("bad sku"))
    with pytest.raises(InvalidArgument):
        await world.gateway.commit("c10", "H1", [CommitLine("strip", "ward1", -1)])


async def test_commit_lines_must_name_pairs_of_the_hold(world: World) -> None:
    await stock(world, "strip", "ward1", "L1", 10)
    await world.gateway.reserve("o11", "H11", [line("strip", "ward1", 2)], 60_000)
    with pytest.raises(InvalidArgument) as err:
        await world.gateway.commit("c11", "H11", [CommitLine("cath", "ward1", 1)])
    assert err.value.violations[0].field == "lines[0]"
    assert await available(world, "strip", "ward1") == 8


async def test_query_stock_rolls_up_an_org_node(world: World) -> None:
    await stock(world, "strip", "cw", "L1", 100)
    await stock(world, "strip", "ward1", "L1", 10)
    await stock(world, "strip", "ward2", "L2", 5, owner="consignment:acme")
    east = await world.gateway.query_stock(StockQuery(skus=("strip",), org_prefix="acme/east", by_site=False))
    assert [(r.sku, r.row.qty) for r in east] == [("strip", 15)]
    by_owner = await world.gateway.query_stock(StockQuery(group_by=(Dimension.OWNER,), by_sku=False, by_site=False))
    assert {r.row.group: r.row.qty for r in by_owner} == {(("owner", "consignment:acme"),): 5, (("owner", "own"),): 110}
    consigned = await world.gateway.query_stock(StockQuery(filter=SliceFilter(owner="consignment")))
    assert [(r.site, r.row.qty) for r in consigned] == [("ward2", 5)]


async def test_pinned_pair_keeps_its_state_and_holds(world: World) -> None:
    await stock(world, "strip", "ward1", "L1", 10)
    await world.gateway.reserve("o12", "H12", [line("strip", "ward1", 3)], 60_000)
    target = await world.gateway.pin("strip", "ward1")
    assert world.gateway.directory.shard_for("strip", "ward1") == target
    assert await available(world, "strip", "ward1") == 7
    await world.gateway.commit("c12", "H12")  # the hold moved with the cell
    await world.gateway.reserve("o13", "H13", [line("strip", "ward1", 7)], 60_000)
    assert await available(world, "strip", "ward1") == 0
    assert await world.gateway.pin("strip", "ward1") == target  # pinning again is a no-op


def test_undo_suffix_is_a_valid_request_id_tail() -> None:
    from engine.domain.commands import check_id

    out: list[FieldViolation] = []
    check_id("x" * 120 + UNDO_SUFFIX, "request_id", out)
    assert out == []


async def test_a_retry_after_an_unknown_outcome_never_reports_rolled_back_stock(world: World) -> None:
    # Two sites on different shards; the second shard fails mid-call (outcome unknown).
    sites = ["ward1", "ward2", "cw"]
    a = sites[0]
    b = next(
        s
        for s in sites[1:]
        if world.gateway.directory.shard_for("strip", s) != world.gateway.directory.shard_for("strip", a)
    )
    await stock(world, "strip", a, "L1", 10)
    await stock(world, "strip", b, "L1", 10)
    down = world.gateway.handles[world.gateway.directory.shard_for("strip", b)]
    down.state, down._next_recovery_at = HostState.BROKEN, float("inf")  # answers UNAVAILABLE
    lines = [line("strip", a, 4), line("strip", b, 4)]
    with pytest.raises(Unavailable):
        await world.gateway.reserve("o20", "H20", lines, 60_000)
    down.state = HostState.READY
    assert await available(world, "strip", a) == 10  # the held line was aborted
    with pytest.raises(FailedPrecondition) as err:  # the client's retry, same request id
        await world.gateway.reserve("o20", "H20", lines, 60_000)
    assert err.value.reason == "HOLD_ABORTED"
    assert await available(world, "strip", a) == 10
    assert await available(world, "strip", b) == 10  # the retry's fresh line was aborted too
    placed = await world.gateway.reserve("o21", "H21", lines, 60_000)  # a new request id works
    assert placed.held_qty == 8


async def test_a_multi_cell_commit_is_refused_before_any_part_is_applied(world: World) -> None:
    await stock(world, "strip", "ward1", "L1", 10)
    await stock(world, "strip", "ward2", "L1", 10)
    await world.gateway.reserve("o30", "H30", [line("strip", "ward1", 4), line("strip", "ward2", 2)], 60_000)
    with pytest.raises(FailedPrecondition) as err:
        await world.gateway.commit("c30", "H30", [CommitLine("strip", "ward1", 4), CommitLine("strip", "ward2", 3)])
    # The cells' own rule, naming the cell it is about.
    assert err.value.reason == "COMMIT_EXCEEDS_HOLD"
    assert err.value.metadata == {"hold_id": "H30", "sku": "strip", "site": "ward2", "held": "2", "requested": "3"}
    assert (await world.gateway.get_hold("H30")).state is AggregateState.ACTIVE
    assert (await available(world, "strip", "ward1"), await available(world, "strip", "ward2")) == (6, 8)
    await world.gateway.release("r30", "H30")
    with pytest.raises(FailedPrecondition) as late:  # every part resolved: the cells answer themselves
        await world.gateway.commit("c31", "H30")
    assert (late.value.reason, late.value.metadata["state"]) == ("HOLD_NOT_ACTIVE", "released")
