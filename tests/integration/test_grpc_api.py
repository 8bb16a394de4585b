"""lotwise.v1.Inventory end to end: a real grpc.aio server over Gateway.local() (no Ray).

Through LotwiseClient (typed values and exceptions) and through raw stubs (the wire:
status codes and google.rpc details as any gRPC client in any language sees them).
Every refusal is checked three ways: its code, its detail, and that it changed nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf.descriptor_pool import DescriptorPool
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from prometheus_client import CollectorRegistry

from engine.api.client import NO_RETRY, LotwiseClient, RetryPolicy, new_request_id
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc
from engine.api.server import ApiMetrics, LotwiseServer, ServerOptions, start_metrics_http, start_server
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension, SliceFilter, SliceRow
from engine.domain.clock import ManualClock
from engine.domain.commands import Adjusted, Consumed, ReserveLine, Strategy
from engine.domain.errors import (
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    InsufficientStock,
    Internal,
    InvalidArgument,
    NotFound,
    Overloaded,
    RequestConflict,
    Unavailable,
)
from engine.domain.inventory import CommitLine, StockQuery, StockRow
from engine.domain.model import MS_PER_DAY, HoldState
from engine.runtime.gateway import Gateway
from engine.runtime.types import AggregateState, HoldLine

ROOT = Path(__file__).resolve().parents[2]
T0_MS = ManualClock().now_ms()  # 2026-01-01T00:00Z
TTL_MS = 60_000
EVERY_DIMENSION = (Dimension.LOT, Dimension.BIN, Dimension.STATUS, Dimension.OWNER)


# ---- the stocked world every test starts from ----
#   strip@ward1: L-OLD 4 in A/01/P1 (expires day 10), L-NEW 6 in A/02/P1 (day 100)
#   strip@ward2: L-W2 5 (day 50)
#   cath@ward1:  L-C 7 consignment:medsupply in B/01 (day 200)


@pytest_asyncio.fixture
async def stocked(client: LotwiseClient) -> LotwiseClient:
    await client.put_sku(Sku("strip", "Glucose test strips", "box"))
    await client.put_sku(Sku("cath", "IV catheter 20G"))
    for site, org in (("cw", "acme/central"), ("ward1", "acme/east/boston"), ("ward2", "acme/east/salem")):
        await client.put_site(Site(site, org, "cabinet"))
    for sku, site, lot, qty, bin_, days, owner in (
        ("strip", "ward1", "L-OLD", 4, "A/01/P1", 10, "own"),
        ("strip", "ward1", "L-NEW", 6, "A/02/P1", 100, "own"),
        ("strip", "ward2", "L-W2", 5, "", 50, "own"),
        ("cath", "ward1", "L-C", 7, "B/01", 200, "consignment:medsupply"),
    ):
        await client.receive(
            sku, site, lot, qty, bin=bin_, status="available", owner=owner, expires_at_ms=T0_MS + days * MS_PER_DAY
        )
    return client


@pytest.fixture
def stub(client: LotwiseClient) -> pb_grpc.InventoryStub:
    return pb_grpc.InventoryStub(client.channel)


async def available(client: LotwiseClient, sku: str, site: str) -> int:
    return (await client.get_availability(sku, site)).available


async def snapshot(client: LotwiseClient) -> list[StockRow]:
    """Every quant of every pair with its qty and held: what a refusal must not change."""
    return await client.query_stock(StockQuery(group_by=EVERY_DIMENSION))


def line(sku: str, site: str, qty: int, **kw: Any) -> HoldLine:
    return HoldLine(sku, site, ReserveLine(qty, **kw))


def pb_line(sku: str, site: str, qty: int, **kw: Any) -> pb.ReserveLine:
    return pb.ReserveLine(sku=sku, site=site, qty=qty, **kw)


def groups(rows: tuple[SliceRow, ...]) -> dict[tuple[str, ...], int]:
    return {tuple(v for _, v in r.group): r.available for r in rows}


# ---- the wire: a refusal as a raw gRPC client sees it ----


@dataclass
class Refusal:
    code: grpc.StatusCode
    message: str
    fields: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    resource: tuple[str, str] | None = None
    retry_delay_s: float | None = None


async def refused(call: Awaitable[Any]) -> Refusal:
    """Await a raw stub call that must fail; parse its google.rpc.Status trailer by hand."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    err = info.value
    blobs = [v for k, v in err.trailing_metadata() or () if k == "grpc-status-details-bin"]
    out = Refusal(err.code(), err.details() or "")
    if not blobs:
        return out
    status = status_pb2.Status.FromString(blobs[0])
    assert status.code == err.code().value[0]
    assert status.message == err.details()
    for any_ in status.details:
        if any_.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            any_.Unpack(bad)
            out.fields = {v.field: v.description for v in bad.field_violations}
        elif any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info_ = error_details_pb2.ErrorInfo()
            any_.Unpack(info_)
            out.reason, out.domain, out.metadata = info_.reason, info_.domain, dict(info_.metadata)
        elif any_.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            res = error_details_pb2.ResourceInfo()
            any_.Unpack(res)
            out.resource = (res.resource_type, res.resource_name)
        elif any_.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            any_.Unpack(retry)
            out.retry_delay_s = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    return out


async def refused_unchanged(client: LotwiseClient, call: Callable[[], Awaitable[Any]]) -> Refusal:
    """The refusal of `call`, after checking that no balance or hold changed."""
    before = await snapshot(client)
    refusal = await refused(call())
    assert await snapshot(client) == before, "a refused request changed stock"
    return refusal


def receive_req(**kw: Any) -> pb.ReceiveRequest:
    fields: dict[str, Any] = {
        "request_id": new_request_id(),
        "sku": "strip",
        "site": "ward1",
        "lot_id": "L-NEW",
        "qty": 1,
        "bin": "A/02/P1",
        "status": "available",
    }
    fields.update(kw)
    return pb.ReceiveRequest(**fields)


# =====================================================================================
# Every RPC, end to end
# =====================================================================================


async def test_catalog_put_and_list(stocked: LotwiseClient) -> None:
    stored = await stocked.put_sku(Sku("gauze"))
    assert stored == Sku("gauze", "", "ea", 0)  # the unit defaults to "ea"
    assert [s.sku for s in await stocked.list_skus()] == ["cath", "gauze", "strip"]
    assert [s.site for s in await stocked.list_sites()] == ["cw", "ward1", "ward2"]
    east = await stocked.list_sites("acme/east")
    assert east == [Site("ward1", "acme/east/boston", "cabinet"), Site("ward2", "acme/east/salem", "cabinet")]
    assert await stocked.list_sites("acme/eas") == []  # org nodes match whole segments


async def test_put_sku_is_an_idempotent_upsert(stocked: LotwiseClient) -> None:
    await stocked.put_sku(Sku("strip", "Strips, renamed", "box", 30))
    await stocked.put_sku(Sku("strip", "Strips, renamed", "box", 30))
    assert [s for s in await stocked.list_skus() if s.sku == "strip"] == [Sku("strip", "Strips, renamed", "box", 30)]


async def test_availability_sliced_by_every_dimension(stocked: LotwiseClient) -> None:
    a = await stocked.get_availability("strip", "ward1")
    assert (a.sku, a.site, a.available) == ("strip", "ward1", 10)
    assert a.as_of_ms == T0_MS

    by_lot = await stocked.get_availability("strip", "ward1", [Dimension.LOT])
    assert groups(by_lot.rows) == {("L-NEW",): 6, ("L-OLD",): 4}
    old = next(r for r in by_lot.rows if r.group == (("lot", "L-OLD"),))
    assert (old.qty, old.held, old.on_hand, old.earliest_expiry_ms) == (4, 0, 4, T0_MS + 10 * MS_PER_DAY)

    by_zone = await stocked.get_availability("strip", "ward1", [Dimension.BIN], bin_depth=1)
    assert groups(by_zone.rows) == {("A",): 10}
    by_bin_status = await stocked.get_availability("strip", "ward1", [Dimension.BIN, Dimension.STATUS])
    assert groups(by_bin_status.rows) == {("A/01/P1", "available"): 4, ("A/02/P1", "available"): 6}
    by_day = await stocked.get_availability("strip", "ward1", [Dimension.EXPIRY_DAY, Dimension.RECEIVED_DAY])
    assert groups(by_day.rows) == {("2026-01-11", "2026-01-01"): 4, ("2026-04-11", "2026-01-01"): 6}
    by_owner = await stocked.get_availability("cath", "ward1", [Dimension.OWNER])
    assert groups(by_owner.rows) == {("consignment:medsupply",): 7}


async def test_availability_filters(stocked: LotwiseClient) -> None:
    fresh = await stocked.get_availability("strip", "ward1", filt=SliceFilter(min_shelf_life_days=30))
    assert fresh.available == 6
    soon = await stocked.get_availability("strip", "ward1", filt=SliceFilter(max_shelf_life_days=30))
    assert soon.available == 4
    assert (await stocked.get_availability("strip", "ward1", filt=SliceFilter(lot_id="L-OLD"))).available == 4
    assert (await stocked.get_availability("strip", "ward1", filt=SliceFilter(bin_prefix="A/02"))).available == 6
    owned = await stocked.get_availability("cath", "ward1", filt=SliceFilter(owner="consignment"))
    assert owned.available == 7
    assert (await stocked.get_availability("cath", "ward1", filt=SliceFilter(owner="own"))).available == 0
    held_back = await stocked.get_availability("strip", "ward1", filt=SliceFilter(statuses=frozenset({"qc_hold"})))
    assert (held_back.available, held_back.rows) == (0, ())


async def test_empty_pair_reads_as_zero(stocked: LotwiseClient) -> None:
    a = await stocked.get_availability("cath", "cw", [Dimension.LOT])
    assert (a.available, a.rows) == (0, ())


async def test_move_between_bins(stocked: LotwiseClient) -> None:
    moved = await stocked.move("strip", "ward1", "L-OLD", 3, "A/01/P1", "A/03")
    assert moved.qty == 3
    by_bin = await stocked.get_availability("strip", "ward1", [Dimension.BIN])
    assert groups(by_bin.rows) == {("A/01/P1",): 1, ("A/02/P1",): 6, ("A/03",): 3}


async def test_change_status(stocked: LotwiseClient) -> None:
    changed = await stocked.change_status("strip", "ward1", "L-NEW", 2, "available", "qc_hold", bin="A/02/P1")
    assert changed.qty == 2
    assert await available(stocked, "strip", "ward1") == 8
    rows = (await stocked.get_availability("strip", "ward1", [Dimension.STATUS])).rows
    assert {r.group: (r.qty, r.available) for r in rows} == {
        (("status", "available"),): (8, 8),
        (("status", "qc_hold"),): (2, 0),
    }


async def test_transition_the_dictionary_forbids(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    await stocked.change_status("strip", "ward1", "L-NEW", 2, "available", "qc_hold", bin="A/02/P1")
    req = pb.ChangeStatusRequest(
        request_id=new_request_id(),
        sku="strip",
        site="ward1",
        lot_id="L-NEW",
        qty=1,
        from_status="qc_hold",
        to_status="picking",
        bin="A/02/P1",
    )
    r = await refused_unchanged(stocked, lambda: stub.ChangeStatus(req))
    assert r.code is grpc.StatusCode.FAILED_PRECONDITION
    assert (r.reason, r.domain) == ("TRANSITION_NOT_ALLOWED", "lotwise.dev")
    assert r.metadata == {"from_status": "qc_hold", "to_status": "picking"}


async def test_reserve_fefo_get_hold_and_commit_all(stocked: LotwiseClient) -> None:
    hold = await stocked.reserve([line("strip", "ward1", 5)], ttl_ms=TTL_MS, doc_ref="order-1")
    assert hold.state is AggregateState.ACTIVE
    assert (hold.held_qty, hold.expires_at_ms) == (5, T0_MS + TTL_MS)
    (part,) = hold.parts
    assert (part.sku, part.site, part.state, part.hold_id) == ("strip", "ward1", HoldState.ACTIVE, hold.hold_id)
    # FEFO: the lot that expires first goes first.
    assert [(a.lot_id, a.bin, a.status, a.owner, a.qty) for a in part.allocations] == [
        ("L-OLD", "A/01/P1", "available", "own", 4),
        ("L-NEW", "A/02/P1", "available", "own", 1),
    ]
    assert part.allocations[0].expires_at_ms == T0_MS + 10 * MS_PER_DAY
    assert await available(stocked, "strip", "ward1") == 5
    assert await stocked.get_hold(hold.hold_id) == hold

    done = await stocked.commit(hold.hold_id)
    assert done.state is AggregateState.COMMITTED
    assert (done.committed_qty, done.released_qty, done.held_qty) == (5, 0, 0)
    a = await stocked.get_availability("strip", "ward1", [Dimension.LOT])
    assert a.available == 5
    # L-OLD ran out: it still answers, at 0, with when (issue 15: out of stock stays visible).
    assert {r.group: r.qty for r in a.rows} == {(("lot", "L-NEW"),): 5, (("lot", "L-OLD"),): 0}
    assert [r.out_of_stock_since_ms > 0 for r in a.rows] == [False, True]


async def test_reserve_with_a_strategy_and_constraints(stocked: LotwiseClient) -> None:
    fifo_new = await stocked.reserve([line("strip", "ward1", 2, strategy=Strategy.LOT, lot_id="L-NEW")], TTL_MS)
    assert [a.lot_id for a in fifo_new.parts[0].allocations] == ["L-NEW"]
    fresh = await stocked.reserve([line("strip", "ward1", 3, min_shelf_life_days=30)], TTL_MS)
    assert [(a.lot_id, a.qty) for a in fresh.parts[0].allocations] == [("L-NEW", 3)]
    consigned = await stocked.reserve([line("cath", "ward1", 1, owner="consignment:medsupply")], TTL_MS)
    assert consigned.parts[0].allocations[0].owner == "consignment:medsupply"


async def test_multi_site_hold_partial_commit_releases_the_rest(stocked: LotwiseClient) -> None:
    hold = await stocked.reserve(
        [line("strip", "ward1", 3), line("strip", "ward2", 2), line("cath", "ward1", 1)], TTL_MS, hold_id="basket-7"
    )
    assert hold.hold_id == "basket-7"
    assert [(p.sku, p.site, p.held_qty) for p in hold.parts] == [
        ("strip", "ward1", 3),
        ("strip", "ward2", 2),
        ("cath", "ward1", 1),
    ]
    done = await stocked.commit("basket-7", [CommitLine("strip", "ward1", 2)])
    assert done.state is AggregateState.COMMITTED
    assert {(p.sku, p.site): (p.state, p.committed_qty, p.released_qty) for p in done.parts} == {
        ("strip", "ward1"): (HoldState.COMMITTED, 2, 1),
        ("strip", "ward2"): (HoldState.RELEASED, 0, 2),  # a pair that commits nothing is released
        ("cath", "ward1"): (HoldState.RELEASED, 0, 1),
    }
    assert (done.committed_qty, done.released_qty) == (2, 4)
    assert [
        await available(stocked, *pair) for pair in (("strip", "ward1"), ("strip", "ward2"), ("cath", "ward1"))
    ] == [
        8,
        5,
        7,
    ]


async def test_commit_reply_carries_the_totals(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    await stocked.reserve([line("strip", "ward1", 4)], TTL_MS, hold_id="H-tot")
    reply = await stub.Commit(
        pb.CommitRequest(
            request_id=new_request_id(), hold_id="H-tot", lines=[pb.CommitLine(sku="strip", site="ward1", qty=3)]
        )
    )
    assert (reply.committed_qty, reply.released_qty) == (3, 1)
    assert reply.hold.state == pb.HOLD_STATE_COMMITTED
    assert (reply.hold.committed_qty, reply.hold.released_qty, reply.hold.held_qty) == (3, 1, 0)


async def test_release(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    hold = await stocked.reserve([line("strip", "ward1", 6), line("strip", "ward2", 1)], TTL_MS)
    assert await available(stocked, "strip", "ward1") == 4
    reply = await stub.Release(pb.ReleaseRequest(request_id=new_request_id(), hold_id=hold.hold_id))
    assert (reply.hold.state, reply.released_qty) == (pb.HOLD_STATE_RELEASED, 7)
    assert [await available(stocked, "strip", s) for s in ("ward1", "ward2")] == [10, 5]
    again = await stocked.get_hold(hold.hold_id)
    assert again.state is AggregateState.RELEASED
    # A resolved hold cannot be released or committed again.
    r = await refused_unchanged(
        stocked, lambda: stub.Commit(pb.CommitRequest(request_id=new_request_id(), hold_id=hold.hold_id))
    )
    assert (r.code, r.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "HOLD_NOT_ACTIVE")


async def test_hold_expires_on_engine_time(
    stocked: LotwiseClient, stub: pb_grpc.InventoryStub, manual_clock: ManualClock
) -> None:
    hold = await stocked.reserve([line("strip", "ward1", 7)], ttl_ms=TTL_MS)
    assert await available(stocked, "strip", "ward1") == 3
    manual_clock.advance(TTL_MS)
    # Expired holds stop counting at once, before any sweep.
    assert await available(stocked, "strip", "ward1") == 10
    expired = await stocked.get_hold(hold.hold_id)
    assert (expired.state, expired.held_qty) == (AggregateState.EXPIRED, 0)
    r = await refused(stub.Commit(pb.CommitRequest(request_id=new_request_id(), hold_id=hold.hold_id)))
    assert (r.code, r.reason, r.metadata["state"]) == (grpc.StatusCode.FAILED_PRECONDITION, "HOLD_EXPIRED", "expired")


async def test_consume_with_a_shortfall_flags_a_discrepancy(
    stocked: LotwiseClient, stub: pb_grpc.InventoryStub
) -> None:
    exact = await stocked.consume("strip", "ward1", 3)
    assert exact == Consumed(3, 0, exact.allocations)
    assert [(a.lot_id, a.qty) for a in exact.allocations] == [("L-OLD", 3)]
    reply = await stub.Consume(pb.ConsumeRequest(request_id=new_request_id(), sku="strip", site="ward1", qty=9))
    assert (reply.consumed_qty, reply.shortfall_qty, reply.discrepancy) == (7, 2, True)
    assert [(a.lot_id, a.qty) for a in reply.allocations] == [("L-OLD", 1), ("L-NEW", 6)]
    assert await available(stocked, "strip", "ward1") == 0


async def test_adjust_reports_the_variance(stocked: LotwiseClient) -> None:
    counted = await stocked.adjust("strip", "ward1", "L-NEW", 4, bin="A/02/P1", reason="cycle_count")
    assert counted == Adjusted(previous_qty=6, counted_qty=4, variance=-2)
    assert await available(stocked, "strip", "ward1") == 8
    found = await stocked.adjust("strip", "ward1", "L-NEW", 5, bin="A/02/P1")
    assert found.variance == 1


async def test_query_stock_pages_through_the_client(stocked: LotwiseClient) -> None:
    everything = [(r.sku, r.site) for r in await stocked.query_stock()]
    first, token = await stocked.query_stock_page(page_size=2)
    assert [(r.sku, r.site) for r in first] == everything[:2]
    assert token
    rest, last = await stocked.query_stock_page(page_size=2, page_token=token)
    assert [(r.sku, r.site) for r in rest] == everything[2:]
    assert last == ""
    pages = [[(r.sku, r.site) for r in page] async for page in stocked.stock_pages(page_size=1)]
    assert pages == [[pair] for pair in everything]
    one = [page async for page in stocked.stock_pages(StockQuery(skus=("cath",)), page_size=5)]
    assert [[(r.sku, r.site) for r in page] for page in one] == [[("cath", "ward1")]]
    with pytest.raises(InvalidArgument):
        await stocked.query_stock_page(page_size=2, page_token="not-a-token")
    with pytest.raises(InvalidArgument):
        await stocked.query_stock_page(page_size=0, page_token=token)


async def test_query_stock_over_many_pairs(stocked: LotwiseClient) -> None:
    rows = await stocked.query_stock()
    assert [(r.sku, r.site, r.row.available) for r in rows] == [
        ("cath", "ward1", 7),
        ("strip", "ward1", 10),
        ("strip", "ward2", 5),
    ]
    per_sku = await stocked.query_stock(StockQuery(by_site=False))
    assert [(r.sku, r.site, r.row.qty) for r in per_sku] == [("cath", "", 7), ("strip", "", 15)]
    per_site = await stocked.query_stock(StockQuery(skus=("strip",), by_sku=False))
    assert [(r.sku, r.site, r.row.qty) for r in per_site] == [("", "ward1", 10), ("", "ward2", 5)]
    salem = await stocked.query_stock(StockQuery(org_prefix="acme/east/salem"))
    assert [(r.sku, r.site) for r in salem] == [("strip", "ward2")]
    by_owner = await stocked.query_stock(StockQuery(sites=("ward1",), group_by=(Dimension.OWNER,), by_sku=False))
    assert [(r.row.group, r.row.qty) for r in by_owner] == [
        ((("owner", "consignment:medsupply"),), 7),
        ((("owner", "own"),), 10),
    ]
    # More groups than `limit` is refused, never silently cut (totals would come out short).
    with pytest.raises(FailedPrecondition) as too_many:
        await stocked.query_stock(StockQuery(limit=1))
    assert too_many.value.reason == "RESULT_TOO_LARGE"
    totals = await stocked.query_stock(StockQuery(by_sku=False, by_site=False, limit=1))
    assert [r.row.qty for r in totals] == [sum(r.row.qty for r in await stocked.query_stock())]


async def test_a_retried_request_is_applied_once(stocked: LotwiseClient) -> None:
    first = await stocked.receive("strip", "ward2", "L-W2", 3, status="available", request_id="rcv-retry-1")
    again = await stocked.receive("strip", "ward2", "L-W2", 3, status="available", request_id="rcv-retry-1")
    assert first == again
    assert await available(stocked, "strip", "ward2") == 8
    hold = await stocked.reserve([line("strip", "ward2", 2)], TTL_MS, request_id="rsv-retry-1")
    assert await stocked.reserve([line("strip", "ward2", 2)], TTL_MS, request_id="rsv-retry-1") == hold
    assert hold.hold_id == "rsv-retry-1"  # named after the request id, so the retry finds it
    assert await available(stocked, "strip", "ward2") == 6


# =====================================================================================
# Bad input: the documented code, the right detail, and nothing changed
# =====================================================================================


async def test_zero_qty(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    r = await refused_unchanged(stocked, lambda: stub.Receive(receive_req(qty=0)))
    assert r.code is grpc.StatusCode.INVALID_ARGUMENT
    assert r.fields == {"qty": "must be > 0 (got 0)"}


async def test_negative_qty_on_a_hold_line(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    req = pb.ReserveRequest(
        request_id=new_request_id(), lines=[pb_line("strip", "ward1", 1), pb_line("strip", "ward2", -3)], ttl_ms=TTL_MS
    )
    r = await refused_unchanged(stocked, lambda: stub.Reserve(req))
    assert r.code is grpc.StatusCode.INVALID_ARGUMENT
    assert set(r.fields) == {"lines[1].qty"}


async def test_negative_count_and_move_qty(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    adjust = pb.AdjustRequest(request_id=new_request_id(), sku="strip", site="ward1", lot_id="L-NEW", counted_qty=-1)
    r = await refused_unchanged(stocked, lambda: stub.Adjust(adjust))
    assert (r.code, set(r.fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"counted_qty"})
    move = pb.MoveRequest(
        request_id=new_request_id(), sku="strip", site="ward1", lot_id="L-OLD", qty=-2, from_bin="A/01/P1", to_bin="Z"
    )
    r = await refused_unchanged(stocked, lambda: stub.Move(move))
    assert (r.code, set(r.fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"qty"})


async def test_unknown_status(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    r = await refused_unchanged(stocked, lambda: stub.Receive(receive_req(status="sold_out")))
    assert r.code is grpc.StatusCode.INVALID_ARGUMENT
    assert r.fields == {"status": "unknown status 'sold_out'"}
    query = pb.GetAvailabilityRequest(sku="strip", site="ward1", filter=pb.SliceFilter(statuses=["availble"]))
    r = await refused(stub.GetAvailability(query))
    assert (r.code, set(r.fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"filter.statuses[0]"})


async def test_unknown_sku(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    r = await refused_unchanged(stocked, lambda: stub.Receive(receive_req(sku="no-such-sku")))
    assert r.code is grpc.StatusCode.NOT_FOUND
    assert r.resource == ("sku", "no-such-sku")
    assert r.reason == "SKU_NOT_FOUND"
    # A hold naming an unknown sku holds nothing on its other lines either.
    req = pb.ReserveRequest(
        request_id=new_request_id(),
        lines=[pb_line("strip", "ward1", 2), pb_line("no-such-sku", "ward1", 1)],
        ttl_ms=TTL_MS,
    )
    r = await refused_unchanged(stocked, lambda: stub.Reserve(req))
    assert (r.code, r.resource) == (grpc.StatusCode.NOT_FOUND, ("sku", "no-such-sku"))


async def test_unknown_site(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    r = await refused_unchanged(stocked, lambda: stub.Receive(receive_req(site="mars")))
    assert (r.code, r.resource) == (grpc.StatusCode.NOT_FOUND, ("site", "mars"))
    r = await refused(stub.GetAvailability(pb.GetAvailabilityRequest(sku="strip", site="mars")))
    assert (r.code, r.resource) == (grpc.StatusCode.NOT_FOUND, ("site", "mars"))


async def test_unknown_hold(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    r = await refused(stub.GetHold(pb.GetHoldRequest(hold_id="H-none")))
    assert (r.code, r.resource) == (grpc.StatusCode.NOT_FOUND, ("hold", "H-none"))
    r = await refused_unchanged(
        stocked, lambda: stub.Release(pb.ReleaseRequest(request_id=new_request_id(), hold_id="H-none"))
    )
    assert (r.code, r.resource) == (grpc.StatusCode.NOT_FOUND, ("hold", "H-none"))


async def test_empty_ids(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    r = await refused_unchanged(stocked, lambda: stub.Receive(receive_req(request_id="", lot_id="")))
    assert r.code is grpc.StatusCode.INVALID_ARGUMENT
    assert r.fields == {"request_id": "must not be empty", "lot_id": "must not be empty"}
    r = await refused(stub.Commit(pb.CommitRequest(request_id=new_request_id(), hold_id="")))
    assert (r.code, set(r.fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"hold_id"})
    r = await refused(stub.GetAvailability(pb.GetAvailabilityRequest(sku="", site="ward1")))
    assert (r.code, set(r.fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"sku"})


async def test_oversize_and_malformed_ids(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    long_id = "x" * 129
    r = await refused_unchanged(stocked, lambda: stub.Receive(receive_req(request_id=long_id, lot_id="bad lot")))
    assert r.code is grpc.StatusCode.INVALID_ARGUMENT
    assert r.fields["request_id"].startswith("must be at most 128 characters (got ")
    assert "lot_id" in r.fields
    req = pb.ReserveRequest(
        request_id=new_request_id(), hold_id=long_id, lines=[pb_line("strip", "ward1", 1)], ttl_ms=TTL_MS
    )
    r = await refused_unchanged(stocked, lambda: stub.Reserve(req))
    assert (r.code, set(r.fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"hold_id"})


async def test_bad_ttl_and_empty_hold(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    no_ttl = pb.ReserveRequest(request_id=new_request_id(), lines=[pb_line("strip", "ward1", 1)], ttl_ms=0)
    r = await refused_unchanged(stocked, lambda: stub.Reserve(no_ttl))
    assert (r.code, set(r.fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"ttl_ms"})
    no_lines = pb.ReserveRequest(request_id=new_request_id(), ttl_ms=TTL_MS)
    r = await refused(stub.Reserve(no_lines))
    assert (r.code, set(r.fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"lines"})


async def test_unknown_enum_values_name_their_field(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    req = pb.ReserveRequest(
        request_id=new_request_id(), lines=[pb_line("strip", "ward1", 1, strategy=99)], ttl_ms=TTL_MS
    )
    r = await refused_unchanged(stocked, lambda: stub.Reserve(req))
    assert r.code is grpc.StatusCode.INVALID_ARGUMENT
    assert set(r.fields) == {"lines[0].strategy"}
    r = await refused(stub.GetAvailability(pb.GetAvailabilityRequest(sku="strip", site="ward1", group_by=[1, 99])))
    assert (r.code, set(r.fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"group_by[1]"})
    r = await refused(stub.QueryStock(pb.QueryStockRequest(group_by=[pb.DIMENSION_UNSPECIFIED])))
    assert (r.code, set(r.fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"group_by[0]"})
    r = await refused_unchanged(
        stocked,
        lambda: stub.Consume(
            pb.ConsumeRequest(request_id=new_request_id(), sku="strip", site="ward1", qty=1, strategy=5)
        ),
    )
    assert (r.code, set(r.fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"strategy"})


async def test_put_without_a_body(stub: pb_grpc.InventoryStub) -> None:
    r = await refused(stub.PutSku(pb.PutSkuRequest(request_id=new_request_id())))
    assert (r.code, r.fields) == (grpc.StatusCode.INVALID_ARGUMENT, {"sku": "is required"})
    r = await refused(
        stub.PutSite(pb.PutSiteRequest(request_id=new_request_id(), site=pb.Site(site="s", org_path="a//b")))
    )
    assert (r.code, set(r.fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"org_path"})


async def test_commit_more_than_was_held(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    hold = await stocked.reserve([line("strip", "ward1", 3)], TTL_MS, hold_id="H-over")
    req = pb.CommitRequest(
        request_id=new_request_id(), hold_id="H-over", lines=[pb.CommitLine(sku="strip", site="ward1", qty=5)]
    )
    r = await refused_unchanged(stocked, lambda: stub.Commit(req))
    assert r.code is grpc.StatusCode.FAILED_PRECONDITION
    assert (r.reason, r.domain) == ("COMMIT_EXCEEDS_HOLD", "lotwise.dev")
    assert (r.metadata["held"], r.metadata["requested"]) == ("3", "5")
    assert await stocked.get_hold("H-over") == hold  # still active, still holding 3


async def test_a_multi_pair_commit_that_exceeds_one_pair_changes_nothing(
    stocked: LotwiseClient, stub: pb_grpc.InventoryStub
) -> None:
    await stocked.reserve([line("strip", "ward1", 3), line("strip", "ward2", 3)], TTL_MS, hold_id="H-two")
    req = pb.CommitRequest(
        request_id=new_request_id(),
        hold_id="H-two",
        lines=[pb.CommitLine(sku="strip", site="ward1", qty=2), pb.CommitLine(sku="strip", site="ward2", qty=5)],
    )
    r = await refused_unchanged(stocked, lambda: stub.Commit(req))
    assert (r.code, r.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "COMMIT_EXCEEDS_HOLD")


async def test_commit_naming_a_pair_outside_the_hold(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    await stocked.reserve([line("strip", "ward1", 3)], TTL_MS, hold_id="H-pair")
    req = pb.CommitRequest(
        request_id=new_request_id(), hold_id="H-pair", lines=[pb.CommitLine(sku="strip", site="ward2", qty=1)]
    )
    r = await refused_unchanged(stocked, lambda: stub.Commit(req))
    assert (r.code, set(r.fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"lines[0]"})


async def test_insufficient_stock_says_what_was_available(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    req = pb.ReserveRequest(request_id=new_request_id(), lines=[pb_line("strip", "ward1", 11)], ttl_ms=TTL_MS)
    r = await refused_unchanged(stocked, lambda: stub.Reserve(req))
    assert r.code is grpc.StatusCode.FAILED_PRECONDITION
    assert (r.reason, r.domain) == ("INSUFFICIENT_STOCK", "lotwise.dev")
    assert r.metadata == {"sku": "strip", "site": "ward1", "requested": "11", "available": "10"}


async def test_a_multi_site_hold_is_all_or_nothing(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    req = pb.ReserveRequest(
        request_id=new_request_id(),
        lines=[pb_line("strip", "ward1", 3), pb_line("cath", "ward1", 1), pb_line("strip", "ward2", 99)],
        ttl_ms=TTL_MS,
    )
    r = await refused_unchanged(stocked, lambda: stub.Reserve(req))
    assert (r.code, r.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_STOCK")
    assert (r.metadata["site"], r.metadata["available"]) == ("ward2", "5")


async def test_a_move_of_held_stock_is_refused(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    await stocked.reserve([line("strip", "ward1", 4, strategy=Strategy.LOT, lot_id="L-OLD")], TTL_MS)
    req = pb.MoveRequest(
        request_id=new_request_id(), sku="strip", site="ward1", lot_id="L-OLD", qty=1, from_bin="A/01/P1", to_bin="A/9"
    )
    r = await refused_unchanged(stocked, lambda: stub.Move(req))
    assert (r.code, r.reason, r.metadata["available"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_STOCK",
        "0",
    )


async def test_reused_request_id_with_another_payload(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    await stub.Receive(receive_req(request_id="rcv-dup", qty=1))
    r = await refused_unchanged(stocked, lambda: stub.Receive(receive_req(request_id="rcv-dup", qty=2)))
    assert r.code is grpc.StatusCode.ALREADY_EXISTS
    assert (r.reason, r.domain) == ("REQUEST_ID_REUSED", "lotwise.dev")
    assert r.metadata["request_id"] == "rcv-dup"


async def test_reused_hold_id_for_another_hold(stocked: LotwiseClient, stub: pb_grpc.InventoryStub) -> None:
    await stocked.reserve([line("strip", "ward1", 1)], TTL_MS, hold_id="H-dup")
    req = pb.ReserveRequest(
        request_id=new_request_id(), hold_id="H-dup", lines=[pb_line("strip", "ward1", 2)], ttl_ms=TTL_MS
    )
    r = await refused_unchanged(stocked, lambda: stub.Reserve(req))
    assert (r.code, r.reason) == (grpc.StatusCode.ALREADY_EXISTS, "HOLD_ID_REUSED")


async def test_bad_query_shapes(stub: pb_grpc.InventoryStub) -> None:
    r = await refused(stub.QueryStock(pb.QueryStockRequest(limit=100_001)))
    assert (r.code, set(r.fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"limit"})
    r = await refused(stub.QueryStock(pb.QueryStockRequest(bin_depth=9)))
    assert (r.code, set(r.fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"bin_depth"})
    r = await refused(stub.QueryStock(pb.QueryStockRequest(sites=["ok", "not ok"])))
    assert (r.code, set(r.fields)) == (grpc.StatusCode.INVALID_ARGUMENT, {"sites[1]"})


# ---- the same refusals through the client: typed exceptions with their data ----


async def test_client_raises_the_domain_exceptions(stocked: LotwiseClient) -> None:
    with pytest.raises(InsufficientStock) as short:
        await stocked.reserve([line("strip", "ward2", 6)], TTL_MS)
    assert (short.value.sku, short.value.site, short.value.requested, short.value.available) == (
        "strip",
        "ward2",
        6,
        5,
    )
    with pytest.raises(InvalidArgument) as bad:
        await stocked.receive("strip", "ward1", "L-NEW", 0, status="available")
    assert [v.field for v in bad.value.violations] == ["qty"]
    with pytest.raises(NotFound) as missing:
        await stocked.get_hold("H-none")
    assert (missing.value.resource_type, missing.value.resource_name) == ("hold", "H-none")
    await stocked.receive("strip", "ward1", "L-NEW", 1, status="available", bin="A/02/P1", request_id="r-x")
    with pytest.raises(RequestConflict) as reused:
        await stocked.receive("strip", "ward1", "L-NEW", 2, status="available", bin="A/02/P1", request_id="r-x")
    assert reused.value.request_id == "r-x"
    hold = await stocked.reserve([line("strip", "ward1", 1)], TTL_MS)
    with pytest.raises(FailedPrecondition) as over:
        await stocked.commit(hold.hold_id, [CommitLine("strip", "ward1", 2)])
    assert over.value.reason == "COMMIT_EXCEEDS_HOLD"
    with pytest.raises(ValueError, match="commit nothing"):
        await stocked.commit(hold.hold_id, [])


# =====================================================================================
# Deadlines, health, reflection, metrics
# =====================================================================================


async def test_a_tiny_deadline_is_deadline_exceeded(stocked: LotwiseClient) -> None:
    before = await snapshot(stocked)
    with pytest.raises(DeadlineExceeded):
        await stocked.receive("strip", "ward1", "L-NEW", 5, status="available", bin="A/02/P1", timeout_s=1e-6)
    with pytest.raises(DeadlineExceeded):
        await stocked.get_availability("strip", "ward1", timeout_s=0)
    assert await snapshot(stocked) == before


@dataclass
class Scripted:
    """A gateway that fails the next commands as told, then delegates; it records what it saw."""

    inner: Gateway
    failures: list[Exception] = field(default_factory=list)
    delay_s: float = 0.0  # stands for a long queue in front of the shard
    seen: list[tuple[str, float | None]] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def execute(self, cmd: Any, deadline: float | None = None) -> Any:
        self.seen.append((cmd.request_id, deadline))
        if self.failures:
            raise self.failures.pop(0)
        await asyncio.sleep(self.delay_s)
        return await self.inner.execute(cmd, deadline)


@contextlib.asynccontextmanager
async def serving(gateway: Any, **options: Any) -> AsyncIterator[tuple[LotwiseServer, int]]:
    """A second server over `gateway` (scripted or blocking), with its own metrics."""
    server, port = await start_server(
        gateway, options=ServerOptions(**options), metrics=ApiMetrics(CollectorRegistry())
    )
    try:
        yield server, port
    finally:
        await server.stop(0)


async def seed_catalog(gateway: Gateway) -> None:
    await gateway.put_sku(Sku("strip"))
    await gateway.put_site(Site("ward1"))


async def test_the_call_deadline_reaches_the_gateway(local_gateway: Gateway) -> None:
    await seed_catalog(local_gateway)
    scripted = Scripted(local_gateway)
    async with serving(scripted) as (_, port), LotwiseClient(f"127.0.0.1:{port}") as client:
        started = asyncio.get_running_loop().time()
        await client.receive("strip", "ward1", "L1", 1, timeout_s=3.0)
        ((_, deadline),) = scripted.seen
        assert deadline is not None
        # The server counts the timeout from when the call arrived, rounded to gRPC's resolution.
        assert started + 2.5 < deadline <= started + 3.0 + 0.1


async def test_a_request_whose_deadline_passes_on_the_way_is_never_applied(local_gateway: Gateway) -> None:
    """The server hands the caller's deadline to the gateway: late work is dropped, not done."""
    await seed_catalog(local_gateway)
    slow = Scripted(local_gateway, delay_s=0.3)
    async with serving(slow) as (_, port), LotwiseClient(f"127.0.0.1:{port}") as c:
        stub = pb_grpc.InventoryStub(c.channel)
        req = pb.ReceiveRequest(
            request_id=new_request_id(), sku="strip", site="ward1", lot_id="L1", qty=5, status="available"
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Receive(req, timeout=0.05)
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(DeadlineExceeded):
            await c.receive("strip", "ward1", "L1", 5, status="available", timeout_s=0.05)
        await asyncio.sleep(0.5)  # the slow gateway has passed both requests on by now
        assert (await c.get_availability("strip", "ward1")).available == 0
        assert len(slow.seen) == 2


async def test_unavailable_and_overload_are_retried_with_the_same_request_id(local_gateway: Gateway) -> None:
    await seed_catalog(local_gateway)
    scripted = Scripted(local_gateway, [Unavailable("shard-0 is recovering"), Overloaded("queue of shard-0", 1)])
    retry = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.01)
    async with serving(scripted, retry_delay_ms=5) as (_, port), LotwiseClient(f"127.0.0.1:{port}", retry=retry) as c:
        received = await c.receive("strip", "ward1", "L1", 4, status="available")
        assert received.qty == 4
        assert len(scripted.seen) == 3
        assert len({rid for rid, _ in scripted.seen}) == 1  # every attempt carried the same id
        assert (await c.get_availability("strip", "ward1")).available == 4


async def test_retries_are_bounded(local_gateway: Gateway) -> None:
    await seed_catalog(local_gateway)
    scripted = Scripted(local_gateway, [Unavailable("down")] * 10)
    retry = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.01)
    async with serving(scripted, retry_delay_ms=1) as (_, port), LotwiseClient(f"127.0.0.1:{port}", retry=retry) as c:
        with pytest.raises(Unavailable, match="down"):
            await c.receive("strip", "ward1", "L1", 1)
        assert len(scripted.seen) == 3
    scripted.seen.clear()
    async with serving(scripted) as (_, port), LotwiseClient(f"127.0.0.1:{port}", retry=NO_RETRY) as c:
        with pytest.raises(Unavailable):
            await c.receive("strip", "ward1", "L1", 1)
        assert len(scripted.seen) == 1


async def test_refusals_are_never_retried(local_gateway: Gateway) -> None:
    await seed_catalog(local_gateway)
    scripted = Scripted(local_gateway, [InsufficientStock("strip", "ward1", 3, 0)])
    async with serving(scripted) as (_, port), LotwiseClient(f"127.0.0.1:{port}") as c:
        with pytest.raises(InsufficientStock):
            await c.consume("strip", "ward1", 3)
        assert len(scripted.seen) == 1


async def test_a_bug_is_internal_and_leaks_nothing(local_gateway: Gateway) -> None:
    await seed_catalog(local_gateway)
    scripted = Scripted(local_gateway, [RuntimeError("password=hunter2 in a traceback")])
    async with serving(scripted) as (_, port), LotwiseClient(f"127.0.0.1:{port}") as c:
        with pytest.raises(Internal) as info:
            await c.receive("strip", "ward1", "L1", 1)
        assert "hunter2" not in info.value.message
        assert "incident" in info.value.message
        await c.receive("strip", "ward1", "L1", 1)  # the server keeps serving


@dataclass
class Blocking:
    """A gateway whose list_sites waits for the test: holds an RPC in flight."""

    inner: Gateway
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def list_sites(self, org_prefix: str = "") -> list[Site]:
        self.entered.set()
        await self.release.wait()
        return await self.inner.list_sites(org_prefix)


async def test_concurrency_is_bounded(local_gateway: Gateway) -> None:
    blocking = Blocking(local_gateway)
    server = serving(blocking, max_concurrent_rpcs=1)
    async with server as (_, port), LotwiseClient(f"127.0.0.1:{port}", retry=NO_RETRY) as c:
        first = asyncio.create_task(c.list_sites())
        await asyncio.wait_for(blocking.entered.wait(), 5)
        with pytest.raises(Overloaded):
            await c.list_skus()  # beyond the limit: refused at once, not queued
        blocking.release.set()
        assert await first == []


async def test_oversize_messages_are_refused_not_retried(local_gateway: Gateway) -> None:
    server = serving(local_gateway, max_message_bytes=1024)
    async with server as (_, port), LotwiseClient(f"127.0.0.1:{port}") as c:
        with pytest.raises(Overloaded):
            await c.put_sku(Sku("big", "x" * 4096))
        assert await c.list_skus() == []


async def test_health_is_serving(grpc_server: LotwiseServer, client: LotwiseClient) -> None:
    health = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", "lotwise.v1.Inventory"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_graceful_stop_reports_not_serving(local_gateway: Gateway) -> None:
    server, _ = await start_server(local_gateway, metrics=ApiMetrics(CollectorRegistry()))
    await server.stop(grace_s=0.1)
    for service in ("", "lotwise.v1.Inventory"):
        reply = await server.health.Check(health_pb2.HealthCheckRequest(service=service), None)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING


def _reflect(port: int) -> tuple[list[str], list[str]]:
    # The reflection client is synchronous: it runs in a thread so the server's loop stays free.
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = db.get_services()
        inventory = DescriptorPool(db).FindServiceByName("lotwise.v1.Inventory")
        return list(services), [m.name for m in inventory.methods]


async def test_reflection_lists_and_describes_the_service(grpc_server_port: int) -> None:
    services, methods = await asyncio.to_thread(_reflect, grpc_server_port)
    assert "lotwise.v1.Inventory" in services
    assert "grpc.health.v1.Health" in services
    assert set(methods) >= {
        "PutSku",
        "PutSite",
        "ListSites",
        "Receive",
        "Move",
        "ChangeStatus",
        "Reserve",
        "Commit",
        "Release",
        "Consume",
        "Adjust",
        "GetHold",
        "GetAvailability",
        "QueryStock",
    }


async def test_metrics_count_time_and_track_in_flight(
    stocked: LotwiseClient, metrics_registry: CollectorRegistry
) -> None:
    def sample(name: str, **labels: str) -> float:
        return metrics_registry.get_sample_value(name, labels) or 0.0

    method = "lotwise.v1.Inventory/ListSites"
    ok_before = sample("lotwise_grpc_requests_total", method=method, code="OK")
    await stocked.list_sites()
    await stocked.list_sites()
    assert sample("lotwise_grpc_requests_total", method=method, code="OK") == ok_before + 2
    assert sample("lotwise_grpc_request_duration_seconds_count", method=method) == ok_before + 2

    receive = "lotwise.v1.Inventory/Receive"
    # Metrics are per RPC method: a unary client (a batching one would call Execute).
    unary = LotwiseClient("unused", channel=stocked.channel, batching=None)
    with pytest.raises(InvalidArgument):
        await unary.receive("strip", "ward1", "L-NEW", 0)
    assert sample("lotwise_grpc_requests_total", method=receive, code="INVALID_ARGUMENT") == 1
    assert sample("lotwise_grpc_requests_in_flight", method=receive) == 0

    endpoint = start_metrics_http(0, metrics_registry)
    try:
        url = f"http://127.0.0.1:{endpoint.port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    finally:
        endpoint.stop()
    assert 'lotwise_grpc_requests_total{code="INVALID_ARGUMENT",method="lotwise.v1.Inventory/Receive"} 1.0' in body


# =====================================================================================
# Client helpers and the generated code
# =====================================================================================


def test_request_ids_are_uuid7_hex_and_time_ordered() -> None:
    ids = [new_request_id() for _ in range(50)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert all(i[12] == "7" for i in ids)  # the version nibble
    assert len(set(ids)) == len(ids)
    # Ids minted in a later millisecond sort after earlier ones.
    first = new_request_id()
    time.sleep(0.002)
    assert new_request_id() > first


def test_backoff_is_jittered_capped_and_honours_the_server_hint() -> None:
    policy = RetryPolicy(initial_backoff_s=0.1, max_backoff_s=0.4, multiplier=2.0)
    rng = random.Random(7)
    for attempt in range(1, 8):
        cap = min(0.4, 0.1 * 2 ** (attempt - 1))
        assert 0 <= policy.backoff_s(attempt, rng) <= cap
    assert policy.backoff_s(1, rng, server_hint_s=1.5) == 1.5


def test_generated_code_matches_the_protos() -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "check_protos.sh")], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_domain_error_type_is_reachable() -> None:
    """Guard: the errors module and the domain agree on the set of typed refusals."""
    from engine.domain import errors as domain_errors

    types = {
        obj
        for obj in vars(domain_errors).values()
        if isinstance(obj, type) and issubclass(obj, DomainError) and obj is not DomainError
    }
    assert {t.code for t in types} <= {c.name for c in grpc.StatusCode}
