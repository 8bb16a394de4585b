"""Stock health inside the cell over a real grpc.aio server on Gateway.local() (no Ray):
Count (racing POS sales), ExpireLots, OpenLot and the freshness refusal with substitutes,
ScrapOverAge (issue 15 items 1, 2, 3)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2

from engine.api.autobatch import BatchPolicy
from engine.api.client import DeviceOperation, LotwiseClient, device_operation_to_pb
from engine.api.errors import rich_status
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import Adjust, Consume
from engine.domain.errors import FailedPrecondition, InvalidArgument
from engine.domain.freshness import parse_substitutes
from engine.domain.model import MS_PER_DAY, MS_PER_HOUR
from engine.runtime.gateway import Gateway


@pytest_asyncio.fixture
async def stub(local_gateway: Gateway, client: LotwiseClient) -> AsyncIterator[pb_grpc.InventoryStub]:
    await local_gateway.put_sku(
        Sku("tallow", "Tallow base", "bag", opened_shelf_life_hours=24, substitutes=("tallow-pack", "tallow-jar"))
    )
    await local_gateway.put_sku(Sku("tallow-pack", "Pre-packed tallow base", "bag"))
    await local_gateway.put_sku(Sku("tallow-jar", "Tallow jar", "jar"))
    await local_gateway.put_sku(Sku("strip", "Glucose test strips", "box"))
    await local_gateway.put_site(Site("hotpot-7", "chain/sh", "store"))
    yield pb_grpc.InventoryStub(client.channel)


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rich_status(err.code(), err.details(), err.trailing_metadata())
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError(f"no ErrorInfo in {status}")


async def receive(
    stub: pb_grpc.InventoryStub, rid: str, sku: str, lot: str, qty: int, bin_: str = "", **kw: int
) -> None:
    await stub.Receive(
        pb.ReceiveRequest(
            request_id=rid, sku=sku, site="hotpot-7", lot_id=lot, qty=qty, bin=bin_, status="available", **kw
        )
    )


async def available(stub: pb_grpc.InventoryStub, sku: str) -> int:
    return (await stub.GetAvailability(pb.GetAvailabilityRequest(sku=sku, site="hotpot-7"))).available


async def test_a_count_sets_the_books_and_says_which_holds_it_cut(stub: pb_grpc.InventoryStub) -> None:
    await receive(stub, "r1", "strip", "L1", 10, "A/1")
    await stub.Reserve(
        pb.ReserveRequest(
            request_id="h1", hold_id="h1", ttl_ms=60_000, lines=[pb.ReserveLine(sku="strip", site="hotpot-7", qty=6)]
        )
    )
    request = pb.CountRequest(
        request_id="c1",
        sku="strip",
        site="hotpot-7",
        bin="A/1",
        lines=[pb.CountLine(lot_id="L1", qty=4)],
        source=pb.COUNT_SOURCE_RFID,
        confidence=0.9,
    )
    reply = await stub.Count(request)
    assert [(c.lot_id, c.previous_qty, c.counted_qty) for c in reply.lots] == [("L1", 10, 4)]
    assert reply.variance == -6
    assert [(c.hold_id, c.qty) for c in reply.holds_cut] == [("h1", 2)]
    again = await stub.Count(request)
    assert again == reply  # the same request id: the first answer, nothing changed
    assert await available(stub, "strip") == 0
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.Count(pb.CountRequest(request_id="c2", sku="strip", site="hotpot-7", confidence=2.0))
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_counts_racing_sales_never_oversell_or_break_the_books(stub: pb_grpc.InventoryStub) -> None:
    """Counts are absolute and applied inside the cell, so no sale can slip between a count's
    read and its write: the books reconcile exactly — receipts + every count's reported
    variance − every unit sold = what is left — and nothing goes below zero or stays held."""
    await receive(stub, "r1", "strip", "L1", 200, "A/1")

    async def sell(i: int) -> int:
        req = pb.SellRequest(request_id=f"s{i}", lines=[pb.ReserveLine(sku="strip", site="hotpot-7", qty=3)])
        try:
            return (await stub.Sell(req)).sold_qty
        except grpc.aio.AioRpcError as err:
            if err.code() is not grpc.StatusCode.FAILED_PRECONDITION:
                raise
            return 0

    async def count(i: int) -> int:
        line = pb.CountLine(lot_id="L1", qty=40 + i)
        req = pb.CountRequest(request_id=f"c{i}", sku="strip", site="hotpot-7", bin="A", whole_bin=True, lines=[line])
        return (await stub.Count(req)).variance

    results = await asyncio.gather(*(sell(i) for i in range(80)), *(count(i) for i in range(8)))
    sold, variance = sum(results[:80]), sum(results[80:])
    rows = (await stub.QueryStock(pb.QueryStockRequest(skus=["strip"], sites=["hotpot-7"]))).rows
    left = sum(r.row.qty for r in rows)
    assert left == 200 + variance - sold
    assert left >= 0
    assert all(r.row.held == 0 for r in rows)
    assert await available(stub, "strip") == left
    assert sold > 0  # the race was real: sales got through between counts


async def test_expired_lots_leave_atp_by_a_journaled_move_once(
    stub: pb_grpc.InventoryStub, manual_clock: ManualClock
) -> None:
    now = manual_clock.now_ms()
    await receive(stub, "r1", "strip", "OLD", 5, expires_at_ms=now + MS_PER_DAY)
    await receive(stub, "r2", "strip", "NEW", 7, expires_at_ms=now + 9 * MS_PER_DAY)
    with pytest.raises(grpc.aio.AioRpcError) as early:
        await stub.ExpireLots(pb.ExpireLotsRequest(request_id="e0", sku="strip", site="hotpot-7", lot_id="OLD"))
    assert early.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(early.value).reason == "LOT_NOT_EXPIRED"
    manual_clock.advance(MS_PER_DAY)
    reply = await stub.ExpireLots(pb.ExpireLotsRequest(request_id="e1", sku="strip", site="hotpot-7"))
    assert (reply.qty, list(reply.lot_ids)) == (5, ["OLD"])
    again = await stub.ExpireLots(pb.ExpireLotsRequest(request_id="e2", sku="strip", site="hotpot-7"))
    assert again.qty == 0
    assert await available(stub, "strip") == 7
    rows = await stub.GetAvailability(
        pb.GetAvailabilityRequest(sku="strip", site="hotpot-7", group_by=[pb.DIMENSION_STATUS])
    )
    assert {r.group[0].value: r.qty for r in rows.rows} == {"available": 7, "expired": 5}


async def test_the_station_refuses_over_age_tallow_and_offers_the_substitute(
    stub: pb_grpc.InventoryStub, manual_clock: ManualClock
) -> None:
    await receive(stub, "r1", "tallow", "TB-1", 4)
    await receive(stub, "r2", "tallow-pack", "PK-1", 12)
    opened = await stub.OpenLot(pb.OpenLotRequest(request_id="o1", sku="tallow", site="hotpot-7", lot_id="TB-1"))
    assert opened.fresh_until_ms == opened.opened_at_ms + 24 * MS_PER_HOUR
    assert (
        await stub.OpenLot(pb.OpenLotRequest(request_id="o2", sku="tallow", site="hotpot-7", lot_id="TB-1"))
    ).already_open
    manual_clock.advance(25 * MS_PER_HOUR)
    for call in (
        stub.Consume(pb.ConsumeRequest(request_id="u1", sku="tallow", site="hotpot-7", qty=1)),
        stub.Sell(pb.SellRequest(request_id="u2", lines=[pb.ReserveLine(sku="tallow", site="hotpot-7", qty=1)])),
        stub.Reserve(
            pb.ReserveRequest(
                request_id="u3",
                hold_id="u3",
                ttl_ms=60_000,
                lines=[pb.ReserveLine(sku="tallow", site="hotpot-7", qty=1)],
            )
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        info = error_info(refused.value)
        assert info.reason == "FRESHNESS_EXPIRED"
        assert info.metadata["lot_ids"] == "TB-1"
        assert parse_substitutes(info.metadata["substitutes"]) == [("tallow-pack", 12)]  # the jar has none
    scrapped = await stub.ScrapOverAge(pb.ScrapOverAgeRequest(request_id="x1", sku="tallow", site="hotpot-7"))
    assert (scrapped.qty, list(scrapped.lot_ids)) == (4, ["TB-1"])
    assert await available(stub, "tallow") == 0
    assert await available(stub, "tallow-pack") == 12


async def test_out_of_stock_stays_visible_and_is_a_query(
    stub: pb_grpc.InventoryStub, manual_clock: ManualClock
) -> None:
    await receive(stub, "r1", "strip", "L1", 2)
    await receive(stub, "r2", "tallow-pack", "PK-1", 5)
    ran_out_ms = manual_clock.now_ms()
    await stub.Consume(pb.ConsumeRequest(request_id="c1", sku="strip", site="hotpot-7", qty=2))
    reply = await stub.GetAvailability(pb.GetAvailabilityRequest(sku="strip", site="hotpot-7"))
    assert [(r.qty, r.out_of_stock_since_ms) for r in reply.rows] == [(0, ran_out_ms)]
    by_lot = await stub.GetAvailability(
        pb.GetAvailabilityRequest(sku="strip", site="hotpot-7", group_by=[pb.DIMENSION_LOT])
    )
    assert [(r.group[0].value, r.qty, r.out_of_stock_since_ms) for r in by_lot.rows] == [("L1", 0, ran_out_ms)]
    listed = await stub.QueryStock(
        pb.QueryStockRequest(sites=["hotpot-7"], filter=pb.SliceFilter(out_of_stock_only=True))
    )
    assert [(r.sku, r.row.qty, r.row.out_of_stock_since_ms) for r in listed.rows] == [("strip", 0, ran_out_ms)]


async def test_offline_ops_apply_once_in_order_with_their_own_time(
    stub: pb_grpc.InventoryStub, manual_clock: ManualClock
) -> None:
    await receive(stub, "r1", "strip", "L1", 10)
    sold_at = manual_clock.now_ms() - 5 * MS_PER_HOUR

    def sale(seq: int, qty: int) -> pb.DeviceOperation:
        return pb.DeviceOperation(
            seq=seq, at_ms=sold_at + seq, consume=pb.ConsumeRequest(sku="strip", site="hotpot-7", qty=qty)
        )

    upload = pb.ApplyDeviceOpsRequest(device_id="POS-9", ops=[sale(1, 2), sale(2, 3)])
    first = await stub.ApplyDeviceOps(upload)
    assert [(r.seq, r.already_applied, r.refusal_reason) for r in first.results] == [(1, False, ""), (2, False, "")]
    manual_clock.advance(2 * MS_PER_DAY)  # uploaded again two days later: past every request-id window
    later = await stub.ApplyDeviceOps(
        pb.ApplyDeviceOpsRequest(device_id="POS-9", ops=[sale(1, 2), sale(2, 3), sale(3, 1)])
    )
    assert [(r.seq, r.already_applied) for r in later.results] == [(1, True), (2, True), (3, False)]
    assert await available(stub, "strip") == 4
    with pytest.raises(grpc.aio.AioRpcError) as gap:
        await stub.ApplyDeviceOps(pb.ApplyDeviceOpsRequest(device_id="POS-9", ops=[sale(4, 1), sale(6, 1)]))
    assert gap.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "seq 5 is missing" in (gap.value.details() or "")
    assert await available(stub, "strip") == 4  # nothing of a bad upload is applied


async def test_a_gap_between_two_uploads_is_refused_naming_the_missing_seq(
    stub: pb_grpc.InventoryStub, client: LotwiseClient
) -> None:
    """Each op says the device's previous seq on its pair: an upload whose op follows one
    the cell never saw is refused DEVICE_OPS_MISSING naming it, and nothing of that op (or
    after it) applies; uploading the missing op first lets the rest through."""
    await receive(stub, "r1", "strip", "L1", 10)
    await receive(stub, "r2", "tallow-pack", "P1", 10)
    at = 1_000

    def sale(seq: int, prev: int, sku: str = "strip") -> DeviceOperation:
        return DeviceOperation(seq, at + seq, Consume("", sku, "hotpot-7", 1), prev_seq=prev)

    done = await client.apply_device_ops("POS-4", [sale(1, 0), sale(2, 0, "tallow-pack")])
    assert [(d.seq, d.already_applied, d.refusal_reason) for d in done] == [(1, False, ""), (2, False, "")]
    # seq 3 (strip) was recorded but never uploaded; the next upload starts at 4.
    with pytest.raises(FailedPrecondition) as gap:
        await client.apply_device_ops("POS-4", [sale(4, 2, "tallow-pack"), sale(5, 3)])
    assert gap.value.reason == "DEVICE_OPS_MISSING"
    assert (gap.value.metadata["missing_seq"], gap.value.metadata["applied_seq"]) == ("3", "1")
    assert await available(stub, "strip") == 9  # seq 5 did not apply
    assert await available(stub, "tallow-pack") == 8  # seq 4 (its own pair had no gap) did
    done = await client.apply_device_ops("POS-4", [sale(3, 1), sale(4, 2, "tallow-pack"), sale(5, 3)])
    # seq 4 within the request-id window: its first answer again, and applied once only.
    assert [(d.seq, d.refusal_reason) for d in done] == [(3, ""), (4, ""), (5, "")]
    assert await available(stub, "strip") == 7
    assert await available(stub, "tallow-pack") == 8


@pytest.mark.parametrize("batching", [True, False])
async def test_device_ops_travel_in_an_execute_batch_and_through_the_client(
    stub: pb_grpc.InventoryStub, grpc_server_port: int, batching: bool
) -> None:
    await receive(stub, "r1", "strip", "L1", 10)
    ops = [
        DeviceOperation(1, 10, Consume("", "strip", "hotpot-7", 2), prev_seq=0),
        DeviceOperation(2, 20, Adjust("", "strip", "hotpot-7", "L1", 0, status="available", delta_qty=-1), prev_seq=1),
        # Refused (more than is free): once and for all.
        DeviceOperation(3, 30, Adjust("", "strip", "hotpot-7", "L1", 0, status="available", delta_qty=-50)),
    ]
    policy = BatchPolicy() if batching else None
    async with LotwiseClient(f"127.0.0.1:{grpc_server_port}", timeout_s=10.0, batching=policy) as c:
        results = await asyncio.gather(
            c.apply_device_ops("POS-1", ops), c.apply_device_ops("POS-2", ops[:1]), c.apply_device_ops("POS-1", ops)
        )
    assert [(d.seq, d.refusal_reason) for d in results[0]] == [(1, ""), (2, ""), (3, "INSUFFICIENT_STOCK")]
    assert results[2] == results[0]  # the same upload again: its first answers, applied once
    assert await available(stub, "strip") == 10 - 2 - 1 - 2
    # The same upload as a command of an Execute batch, beside another command.
    batch = pb.CommandBatch(
        commands=[
            pb.Command(
                apply_device_ops=pb.ApplyDeviceOpsRequest(device_id="POS-1", ops=[device_operation_to_pb(ops[0])])
            ),
            pb.Command(get_availability=pb.GetAvailabilityRequest(sku="strip", site="hotpot-7")),
        ]
    )
    reply = await stub.Execute(batch)
    assert reply.replies[0].WhichOneof("reply") == "apply_device_ops"
    assert [r.seq for r in reply.replies[0].apply_device_ops.results] == [1]
    assert reply.replies[1].get_availability.available == 5  # applied once, however often uploaded


async def test_a_relative_adjustment_over_grpc_keeps_what_was_sold_meanwhile(
    stub: pb_grpc.InventoryStub, client: LotwiseClient
) -> None:
    await client.receive("strip", "hotpot-7", "L1", 10, status="available")
    await client.consume("strip", "hotpot-7", 4)  # sold after a person saw 10 and counted 8
    adjusted = await client.adjust("strip", "hotpot-7", "L1", 0, delta_qty=-2, reason="reconciliation")
    assert (adjusted.previous_qty, adjusted.counted_qty, adjusted.variance) == (6, 4, -2)
    with pytest.raises(FailedPrecondition) as short:
        await client.adjust("strip", "hotpot-7", "L1", 0, delta_qty=-5)
    assert short.value.reason == "INSUFFICIENT_STOCK"
    assert short.value.metadata["available"] == "4"
    with pytest.raises(InvalidArgument) as bad:
        await client.adjust("strip", "hotpot-7", "L1", 3, delta_qty=-1)
    assert [v.field for v in bad.value.violations] == ["counted_qty"]
