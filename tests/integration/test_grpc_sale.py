"""The one-call sale on the wire: unary Sell, a batch's `sell` slot and LotwiseClient.sell
over a real grpc.aio server on Gateway.local() (no Ray)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from engine.api import convert
from engine.api.client import LotwiseClient, RetryPolicy
from engine.api.errors import rich_status
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc
from engine.domain.catalog import Site, Sku
from engine.domain.commands import ReserveLine
from engine.domain.errors import InsufficientStock, InvalidArgument, RequestConflict
from engine.runtime.gateway import Gateway
from engine.runtime.types import HoldLine

STOCK = 50


@pytest_asyncio.fixture
async def stocked(local_gateway: Gateway, client: LotwiseClient) -> AsyncIterator[pb_grpc.InventoryStub]:
    await local_gateway.put_sku(Sku("strip", "Glucose test strips", "box"))
    for site in ("ward1", "ward2"):
        await local_gateway.put_site(Site(site, "acme/east", "cabinet"))
        await client.receive("strip", site, "L1", STOCK, status="available", request_id=f"rcv-{site}")
    yield pb_grpc.InventoryStub(client.channel)


async def _on_hand(stub: pb_grpc.InventoryStub, site: str = "ward1") -> tuple[int, int]:
    """(available, held) of strip at the site."""
    reply = await stub.GetAvailability(pb.GetAvailabilityRequest(sku="strip", site=site))
    return reply.available, sum(r.held for r in reply.rows)


def _sell(rid: str, *lines: tuple[str, int], doc_ref: str = "") -> pb.SellRequest:
    return pb.SellRequest(
        request_id=rid, lines=[pb.ReserveLine(sku="strip", site=s, qty=q) for s, q in lines], doc_ref=doc_ref
    )


async def test_unary_sell_sells_once_and_refuses_whole(stocked: pb_grpc.InventoryStub) -> None:
    reply = await stocked.Sell(_sell("u1", ("ward1", 3), ("ward2", 2), doc_ref="receipt-1"))
    assert reply.sold_qty == 5
    assert reply.sale.hold_id == "u1"
    assert reply.sale.state == pb.HOLD_STATE_COMMITTED
    assert [(p.sku, p.site, p.committed_qty) for p in reply.sale.parts] == [
        ("strip", "ward1", 3),
        ("strip", "ward2", 2),
    ]
    again = await stocked.Sell(_sell("u1", ("ward1", 3), ("ward2", 2), doc_ref="receipt-1"))
    assert again.SerializeToString(deterministic=True) == reply.SerializeToString(deterministic=True)
    with pytest.raises(grpc.aio.AioRpcError) as short:
        await stocked.Sell(_sell("u2", ("ward1", 1), ("ward2", STOCK)))
    assert short.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert await _on_hand(stocked, "ward1") == (STOCK - 3, 0)  # the refused sale left nothing held
    assert await _on_hand(stocked, "ward2") == (STOCK - 2, 0)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stocked.Sell(pb.SellRequest(request_id="u3"))
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_a_batched_sell_answers_what_the_unary_call_answers(stocked: pb_grpc.InventoryStub) -> None:
    commands = [
        pb.Command(sell=_sell("b1", ("ward1", 2))),
        pb.Command(sell=_sell("b2", ("ward1", STOCK * 2))),
        pb.Command(sell=_sell("b1", ("ward1", 3))),  # the same id, another payload
    ]
    replies = (await stocked.Execute(pb.CommandBatch(commands=commands))).replies
    assert [r.WhichOneof("reply") for r in replies] == ["sell", "error", "error"]
    unary = await stocked.Sell(commands[0].sell)
    assert unary.SerializeToString(deterministic=True) == replies[0].sell.SerializeToString(deterministic=True)
    for command, reply in zip(commands[1:], replies[1:], strict=True):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stocked.Sell(command.sell)
        expected = rich_status(err.value.code(), err.value.details(), err.value.trailing_metadata())
        status = convert.status_from_command_error(reply.error)
        assert (status.code, status.message) == (expected.code, expected.message)
    assert replies[1].error.reason == "INSUFFICIENT_STOCK"
    assert replies[2].error.reason == "REQUEST_ID_REUSED"
    assert await _on_hand(stocked) == (STOCK - 2, 0)


async def test_the_client_sells_batched_and_unary_with_typed_errors(
    stocked: pb_grpc.InventoryStub, client: LotwiseClient, grpc_server_port: int
) -> None:
    assert client.batching
    sold = await client.sell([HoldLine("strip", "ward1", ReserveLine(4))], doc_ref="r-9", request_id="c1")
    assert (sold.hold_id, sold.committed_qty, sold.held_qty) == ("c1", 4, 0)
    with pytest.raises(RequestConflict):
        await client.sell([HoldLine("strip", "ward1", ReserveLine(5))], doc_ref="r-9", request_id="c1")
    with pytest.raises(InsufficientStock):
        await client.sell([HoldLine("strip", "ward1", ReserveLine(STOCK))])
    with pytest.raises(InvalidArgument):
        await client.sell([HoldLine("strip", "ward1", ReserveLine(1))], request_id="c2#sale")
    async with LotwiseClient(f"127.0.0.1:{grpc_server_port}", batching=None) as unary:
        assert not unary.batching
        assert (await unary.sell([HoldLine("strip", "ward2", ReserveLine(1))])).committed_qty == 1
    assert await _on_hand(stocked) == (STOCK - 4, 0)


async def test_concurrent_selling_clients_cannot_oversell(
    stocked: pb_grpc.InventoryStub, grpc_server_port: int
) -> None:
    target = f"127.0.0.1:{grpc_server_port}"
    retry = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05)
    clients = [LotwiseClient(target, timeout_s=20.0, retry=retry) for _ in range(4)]

    async def sale(i: int) -> int:
        lines = [HoldLine("strip", "ward1", ReserveLine(1))]
        if i % 3 == 0:
            lines.append(HoldLine("strip", "ward2", ReserveLine(1)))
        try:
            return (await clients[i % 4].sell(lines)).committed_qty
        except InsufficientStock:
            return 0

    try:
        sold = await asyncio.gather(*(sale(i) for i in range(3 * STOCK)))
    finally:
        for c in clients:
            await c.close()
    assert sum(1 for qty in sold if qty) == STOCK
    assert await _on_hand(stocked) == (0, 0)
    assert (await _on_hand(stocked, "ward2"))[1] == 0
