"""The whole engine for real: Ray shard actors + gateway + gRPC server on a free port.

Each test makes its own sku and sites (fresh names), so tests share one engine per session
and stay independent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from engine.api.client import NO_RETRY, LotwiseClient
from engine.api.errors import from_rpc_error
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc
from engine.bootstrap import RunningEngine, running_engine
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension, SliceFilter
from engine.domain.commands import ReserveLine, Strategy
from engine.domain.errors import (
    DomainError,
    FailedPrecondition,
    InsufficientStock,
    InvalidArgument,
    NotFound,
    Overloaded,
    RequestConflict,
)
from engine.domain.inventory import CommitLine, StockQuery
from engine.runtime.types import AggregateState, HoldLine
from tests.conftest import authed_channel, engine_settings

pytestmark = [pytest.mark.ray, pytest.mark.asyncio(loop_scope="session")]

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Place:
    """A fresh sku stocked at fresh sites, all under one fresh org node."""

    sku: str
    sites: tuple[str, ...]
    org: str


async def fresh_place(client: LotwiseClient, n_sites: int = 2) -> Place:
    tag = uuid.uuid4().hex[:8]
    place = Place(f"sku-{tag}", tuple(f"site-{tag}-{i}" for i in range(n_sites)), f"org-{tag}")
    await client.put_sku(Sku(place.sku, "Glucose test strips x50", "box"))
    for i, site in enumerate(place.sites):
        await client.put_site(Site(site, f"{place.org}/region-{i % 2}", "cabinet"))
    return place


async def receive_available(client: LotwiseClient, sku: str, site: str, lot: str, qty: int, days: int) -> None:
    expires = int(time.time() * 1000) + days * DAY_MS
    await client.receive(sku, site, lot, qty, status="available", expires_at_ms=expires, bin="A/01/P1")


async def available(client: LotwiseClient, sku: str, site: str) -> int:
    return (await client.get_availability(sku, site)).available


async def test_whole_api_end_to_end(ray_client: LotwiseClient) -> None:
    c = ray_client
    p = await fresh_place(c, 2)
    here, there = p.sites
    # Lot numbers not in expiry order: FEFO must really sort by date.
    await receive_available(c, p.sku, here, "LOT-A", 5, days=300)
    await receive_available(c, p.sku, here, "LOT-B", 5, days=30)
    await c.receive(
        p.sku, here, "LOT-C", 8, status="qc_hold", bin="Q/01", expires_at_ms=int(time.time() * 1000) + DAY_MS * 90
    )
    assert await available(c, p.sku, here) == 10  # QC stock is not sellable
    await c.change_status(p.sku, here, "LOT-C", 8, "qc_hold", "available", bin="Q/01")
    await c.move(p.sku, here, "LOT-C", 8, "Q/01", "A/02/P7", status="available")
    assert await available(c, p.sku, here) == 18

    hold = await c.reserve([HoldLine(p.sku, here, ReserveLine(7))], ttl_ms=60_000)
    lots = [a.lot_id for a in hold.parts[0].allocations]
    assert lots[0] == "LOT-B"  # the earliest expiry goes first
    assert hold.held_qty == 7
    assert (await c.get_hold(hold.hold_id)).state is AggregateState.ACTIVE

    done = await c.commit(hold.hold_id, [CommitLine(p.sku, here, 4)])
    assert (done.committed_qty, done.released_qty) == (4, 3)
    assert await available(c, p.sku, here) == 14

    consumed = await c.consume(p.sku, here, 20, bin_prefix="A")
    assert (consumed.consumed_qty, consumed.shortfall_qty) == (14, 6)  # a discrepancy, not a refusal
    assert await available(c, p.sku, here) == 0

    adjusted = await c.adjust(p.sku, here, "LOT-A", 3, bin="A/01/P1", status="available", reason="cycle-count")
    assert adjusted.variance == 3
    by_lot = await c.get_availability(p.sku, here, group_by=[Dimension.LOT, Dimension.STATUS])
    assert [(r.group, r.available) for r in by_lot.rows] == [((("lot", "LOT-A"), ("status", "available")), 3)]

    await receive_available(c, p.sku, there, "LOT-D", 9, days=60)
    roll_up = await c.query_stock(StockQuery(org_prefix=p.org, by_site=False))
    assert [(r.sku, r.row.qty) for r in roll_up] == [(p.sku, 12)]
    held = await c.reserve([HoldLine(p.sku, there, ReserveLine(2))], ttl_ms=60_000)
    released = await c.release(held.hold_id)
    assert released.state is AggregateState.RELEASED
    assert await available(c, p.sku, there) == 9


async def test_64_clients_race_for_10_units(ray_engine: RunningEngine) -> None:
    clients = [LotwiseClient(ray_engine.grpc_address, timeout_s=30) for _ in range(64)]
    try:
        p = await fresh_place(clients[0], 1)
        site = p.sites[0]
        await receive_available(clients[0], p.sku, site, "L1", 10, days=100)

        async def buy(client: LotwiseClient) -> str:
            try:
                hold = await client.reserve([HoldLine(p.sku, site, ReserveLine(1))], ttl_ms=60_000)
            except InsufficientStock:
                return "refused"
            await client.commit(hold.hold_id)
            return "bought"

        outcomes = await asyncio.gather(*(buy(c) for c in clients))
        assert outcomes.count("bought") == 10
        assert outcomes.count("refused") == 54
        rows = (await clients[0].get_availability(p.sku, site)).rows
        assert sum(r.qty for r in rows) == 0  # exactly the 10 units left, none more
        assert await available(clients[0], p.sku, site) == 0
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_multi_line_hold_with_a_short_line_holds_nothing_anywhere(ray_client: LotwiseClient) -> None:
    c = ray_client
    p = await fresh_place(c, 3)
    for site in p.sites[:2]:
        await receive_available(c, p.sku, site, "L1", 10, days=100)
    await receive_available(c, p.sku, p.sites[2], "L1", 1, days=100)
    lines = [HoldLine(p.sku, p.sites[0], ReserveLine(5)), HoldLine(p.sku, p.sites[1], ReserveLine(5))]
    lines.append(HoldLine(p.sku, p.sites[2], ReserveLine(2)))
    with pytest.raises(InsufficientStock) as err:
        await c.reserve(lines, ttl_ms=60_000)
    assert err.value.available == 1
    assert [await available(c, p.sku, s) for s in p.sites] == [10, 10, 1]


async def test_hold_expires_after_its_ttl(ray_client: LotwiseClient) -> None:
    c = ray_client
    p = await fresh_place(c, 1)
    site = p.sites[0]
    await receive_available(c, p.sku, site, "L1", 10, days=100)
    hold = await c.reserve([HoldLine(p.sku, site, ReserveLine(6))], ttl_ms=400)
    assert await available(c, p.sku, site) == 4
    await asyncio.sleep(0.5)
    assert await available(c, p.sku, site) == 10  # stops counting at once, sweep or not
    assert (await c.get_hold(hold.hold_id)).state is AggregateState.EXPIRED
    with pytest.raises(FailedPrecondition) as err:
        await c.commit(hold.hold_id)
    assert err.value.reason == "HOLD_EXPIRED"
    await asyncio.sleep(0.5)  # the sweeper (200 ms here) has turned it into release movements
    rows = (await c.get_availability(p.sku, site)).rows
    assert sum(r.held for r in rows) == 0


async def test_reserve_constraints_over_ray(ray_client: LotwiseClient) -> None:
    c = ray_client
    p = await fresh_place(c, 1)
    site = p.sites[0]
    await receive_available(c, p.sku, site, "SHORT", 5, days=3)
    await receive_available(c, p.sku, site, "LONG", 5, days=200)
    await c.receive(p.sku, site, "CONS", 5, status="available", owner="consignment:acme", bin="C/01")
    fresh = await c.reserve([HoldLine(p.sku, site, ReserveLine(5, min_shelf_life_days=30, owner="own"))], 60_000)
    assert [a.lot_id for a in fresh.parts[0].allocations] == ["LONG"]
    consigned = await c.reserve([HoldLine(p.sku, site, ReserveLine(2, owner="consignment"))], 60_000)
    assert [a.owner for a in consigned.parts[0].allocations] == ["consignment:acme"]
    named = await c.reserve([HoldLine(p.sku, site, ReserveLine(1, strategy=Strategy.LOT, lot_id="SHORT"))], 60_000)
    assert [a.lot_id for a in named.parts[0].allocations] == ["SHORT"]
    near = await c.get_availability(p.sku, site, filt=SliceFilter(max_shelf_life_days=10))
    assert near.available == 4


BadCall = Callable[[LotwiseClient, Place], Awaitable[object]]


async def _reserve(c: LotwiseClient, p: Place, qty: int, status_line: str = "") -> object:
    return await c.reserve([HoldLine(p.sku, p.sites[0], ReserveLine(qty))], ttl_ms=60_000)


BAD_INPUTS: dict[str, tuple[BadCall, type[DomainError], str]] = {
    "zero qty": (lambda c, p: _reserve(c, p, 0), InvalidArgument, "lines[0].qty"),
    "negative qty": (lambda c, p: c.receive(p.sku, p.sites[0], "L9", -3), InvalidArgument, "qty"),
    "unknown status": (
        lambda c, p: c.change_status(p.sku, p.sites[0], "L1", 1, "available", "sold_out"),
        InvalidArgument,
        "to_status",
    ),
    "unknown sku": (lambda c, p: c.receive("no-such-sku", p.sites[0], "L1", 1), NotFound, "sku"),
    "unknown site": (lambda c, p: c.receive(p.sku, "no-such-site", "L1", 1), NotFound, "site"),
    "oversize lot id": (lambda c, p: c.receive(p.sku, p.sites[0], "L" * 129, 1), InvalidArgument, "lot_id"),
    "bad owner": (lambda c, p: c.receive(p.sku, p.sites[0], "L1", 1, owner="me"), InvalidArgument, "owner"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
async def test_bad_input_gets_its_code_and_changes_nothing(ray_client: LotwiseClient, case: str) -> None:
    call, error, detail = BAD_INPUTS[case]
    p = await fresh_place(ray_client, 1)
    await receive_available(ray_client, p.sku, p.sites[0], "L1", 10, days=100)
    before = await ray_client.query_stock(StockQuery(skus=(p.sku,), group_by=(Dimension.LOT,)))
    with pytest.raises(error) as err:
        await call(ray_client, p)
    if isinstance(err.value, InvalidArgument):
        assert detail in {v.field for v in err.value.violations}
    elif isinstance(err.value, NotFound):
        assert err.value.resource_type == detail
    assert await ray_client.query_stock(StockQuery(skus=(p.sku,), group_by=(Dimension.LOT,))) == before


async def test_commit_beyond_hold_and_reused_request_id_change_nothing(ray_client: LotwiseClient) -> None:
    c = ray_client
    p = await fresh_place(c, 1)
    site = p.sites[0]
    await receive_available(c, p.sku, site, "L1", 10, days=100)
    hold = await c.reserve([HoldLine(p.sku, site, ReserveLine(3))], 60_000, request_id="order-1")
    with pytest.raises(FailedPrecondition) as err:
        await c.commit(hold.hold_id, [CommitLine(p.sku, site, 4)])
    assert err.value.reason == "COMMIT_EXCEEDS_HOLD"
    with pytest.raises(RequestConflict):
        await c.reserve([HoldLine(p.sku, site, ReserveLine(5))], 60_000, request_id="order-1", hold_id="order-1")
    again = await c.reserve([HoldLine(p.sku, site, ReserveLine(3))], 60_000, request_id="order-1")
    assert again.hold_id == hold.hold_id  # the retry returns the first answer
    assert await available(c, p.sku, site) == 7


async def test_empty_and_oversize_ids_on_the_wire(ray_engine: RunningEngine) -> None:
    # The typed client always sets ids, so speak protobuf directly, as any integrator may.
    async with authed_channel(ray_engine.grpc_address) as channel:
        stub = pb_grpc.InventoryStub(channel)
        for request_id, hold_id in (("", "h"), ("r" * 129, "h"), ("ok", "h" * 129)):
            req = pb.ReserveRequest(request_id=request_id, hold_id=hold_id, ttl_ms=1000)
            req.lines.add(sku="x", site="y", qty=1)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Reserve(req, timeout=10)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            refusal = from_rpc_error(err.value)
            assert isinstance(refusal, InvalidArgument)
            assert {v.field for v in refusal.violations} & {"request_id", "hold_id"}


async def test_health_and_reflection(ray_engine: RunningEngine) -> None:
    async with grpc.aio.insecure_channel(ray_engine.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "lotwise.v1.Inventory"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    sync_channel = grpc.insecure_channel(ray_engine.grpc_address)
    try:
        services = await asyncio.to_thread(lambda: ProtoReflectionDescriptorDatabase(sync_channel).get_services())
        assert "lotwise.v1.Inventory" in services
    finally:
        sync_channel.close()


async def test_hot_pair_pinned_under_load_loses_nothing(ray_engine: RunningEngine, ray_client: LotwiseClient) -> None:
    c = ray_client
    p = await fresh_place(c, 1)
    site = p.sites[0]
    await receive_available(c, p.sku, site, "L1", 10_000, days=100)

    async def order(i: int) -> int:
        hold = await c.reserve([HoldLine(p.sku, site, ReserveLine(1 + i % 3))], 60_000)
        await c.commit(hold.hold_id)
        return hold.committed_qty + hold.held_qty

    first = asyncio.gather(*(order(i) for i in range(150)))
    await asyncio.sleep(0.05)
    target = await ray_engine.gateway.pin(p.sku, site)
    rest = asyncio.gather(*(order(i) for i in range(150, 300)))
    sold = sum(await first) + sum(await rest)
    assert ray_engine.gateway.directory.shard_for(p.sku, site) == target
    assert await available(c, p.sku, site) == 10_000 - sold


async def test_overload_is_answered_resource_exhausted(ray_session: None) -> None:
    settings = engine_settings(queue_max=4, max_in_flight=1, batch_max=2)
    async with (
        running_engine(settings) as running,
        LotwiseClient(running.grpc_address, timeout_s=30, retry=NO_RETRY) as c,
    ):
        p = await fresh_place(c, 1)
        site = p.sites[0]
        await receive_available(c, p.sku, site, "L1", 1_000_000, days=100)
        results = await asyncio.gather(
            *(c.reserve([HoldLine(p.sku, site, ReserveLine(1))], 60_000) for _ in range(300)),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, Exception)]
        assert refused, "a 4-deep queue under 300 concurrent orders must overflow"
        assert all(isinstance(r, Overloaded) for r in refused)
        held = len(results) - len(refused)
        # Read the books with another client: this one's adaptive throttle, after so many
        # refusals, may refuse a call locally (typed Throttled) for a while.
        async with LotwiseClient(running.grpc_address, timeout_s=30) as reader:
            assert await available(reader, p.sku, site) == 1_000_000 - held  # refused ones held nothing


async def test_batches_reach_a_shard_on_this_node_over_its_channel(
    ray_engine: RunningEngine, ray_client: LotwiseClient
) -> None:
    """Once a shard's socket is open, the gateway's batches go there, not through Ray."""

    async def channel_calls() -> int:
        return sum(int(s.get("channel_calls", 0)) for s in await ray_engine.gateway.shard_stats())

    p = await fresh_place(ray_client, 1)
    before = await channel_calls()
    for n in range(8):
        await receive_available(ray_client, p.sku, p.sites[0], f"LOT-{n}", 1, days=100)
    assert await available(ray_client, p.sku, p.sites[0]) == 8
    assert await channel_calls() - before >= 6  # the first call or two may go as Ray calls
