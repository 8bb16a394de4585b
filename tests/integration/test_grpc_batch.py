"""The batched wire end to end: Execute, Stream and the auto-batching LotwiseClient over a
real grpc.aio server on bootstrap.local_gateway() (no Ray).

A batch's command must answer exactly what its unary call answers (the same response
bytes, the same status and details), fail on its own, keep exactly-once on retry, and
never let concurrent batches oversell.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import CollectorRegistry

from engine import bootstrap
from engine.api import convert
from engine.api.batch import MAX_BATCH_COMMANDS, REASON_BATCH_TOO_LARGE, REASON_MALFORMED_REQUEST
from engine.api.client import LotwiseClient, RetryPolicy
from engine.api.errors import rich_status
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc
from engine.api.server import ApiMetrics, LotwiseServer, start_server
from engine.api.servicer import InventoryServicer, add_inventory_service
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import ReserveLine
from engine.domain.errors import DeadlineExceeded, InsufficientStock, InvalidArgument, NotFound, RequestConflict
from engine.runtime.gateway import Gateway
from engine.runtime.types import HoldLine

TTL_MS = 60_000
STOCK = 50


def _put_sku(rid: str, sku: str) -> pb.Command:
    return pb.Command(put_sku=pb.PutSkuRequest(request_id=rid, sku=pb.Sku(sku=sku, name=sku)))


def _put_site(rid: str, site: str) -> pb.Command:
    return pb.Command(put_site=pb.PutSiteRequest(request_id=rid, site=pb.Site(site=site, org_path="acme/east")))


def _receive(rid: str, qty: int, lot: str = "L1", sku: str = "strip", site: str = "ward1") -> pb.Command:
    return pb.Command(
        receive=pb.ReceiveRequest(request_id=rid, sku=sku, site=site, lot_id=lot, qty=qty, status="available")
    )


def _reserve(rid: str, qty: int, sku: str = "strip", site: str = "ward1") -> pb.Command:
    line = pb.ReserveLine(sku=sku, site=site, qty=qty)
    return pb.Command(reserve=pb.ReserveRequest(request_id=rid, lines=[line], ttl_ms=TTL_MS))


def _availability(sku: str = "strip", site: str = "ward1") -> pb.Command:
    return pb.Command(get_availability=pb.GetAvailabilityRequest(sku=sku, site=site))


# Every kind of command, refusals included, in an order where each step may depend on the last.
SCENARIO: list[pb.Command] = [
    _put_sku("r-sku", "strip"),
    _put_site("r-site", "ward1"),
    _receive("r-recv", 10),
    _receive("r-bad", 0),  # INVALID_ARGUMENT
    _receive("r-nosku", 3, sku="ghost"),  # NOT_FOUND
    _reserve("r-h1", 4),
    _reserve("r-h2", 99),  # INSUFFICIENT_STOCK
    _reserve("r-h1", 5),  # REQUEST_ID_REUSED (same id, another payload)
    pb.Command(
        commit=pb.CommitRequest(
            request_id="r-c1", hold_id="r-h1", lines=[pb.CommitLine(sku="strip", site="ward1", qty=3)]
        )
    ),
    _reserve("r-h3", 2),
    pb.Command(release=pb.ReleaseRequest(request_id="r-rel", hold_id="r-h3")),
    pb.Command(release=pb.ReleaseRequest(request_id="r-rel2", hold_id="no-such-hold")),
    pb.Command(
        move=pb.MoveRequest(
            request_id="r-mv",
            sku="strip",
            site="ward1",
            lot_id="L1",
            qty=2,
            from_bin="",
            to_bin="A/01",
            status="available",
        )
    ),
    pb.Command(
        change_status=pb.ChangeStatusRequest(
            request_id="r-cs",
            sku="strip",
            site="ward1",
            lot_id="L1",
            qty=1,
            from_status="available",
            to_status="damaged",
        )
    ),
    pb.Command(consume=pb.ConsumeRequest(request_id="r-cons", sku="strip", site="ward1", qty=2)),
    pb.Command(
        adjust=pb.AdjustRequest(
            request_id="r-adj", sku="strip", site="ward1", lot_id="L1", counted_qty=1, bin="A/01", status="available"
        )
    ),
    pb.Command(get_hold=pb.GetHoldRequest(hold_id="r-h1")),
    pb.Command(get_hold=pb.GetHoldRequest(hold_id="nope")),
    _availability(),
]

UNARY = {
    "put_sku": "PutSku",
    "put_site": "PutSite",
    "receive": "Receive",
    "move": "Move",
    "change_status": "ChangeStatus",
    "reserve": "Reserve",
    "commit": "Commit",
    "release": "Release",
    "consume": "Consume",
    "adjust": "Adjust",
    "get_hold": "GetHold",
    "get_availability": "GetAvailability",
}


async def _serve(clock: ManualClock, registry: CollectorRegistry | None = None) -> tuple[Gateway, LotwiseServer]:
    gateway = bootstrap.local_gateway(shards=2, clock=clock, sweep_interval_ms=0)
    metrics = ApiMetrics(registry or CollectorRegistry())
    server, _ = await start_server(gateway, "127.0.0.1", 0, metrics=metrics)
    return gateway, server


@pytest_asyncio.fixture
async def stub(client: LotwiseClient) -> pb_grpc.InventoryStub:
    return pb_grpc.InventoryStub(client.channel)


@pytest_asyncio.fixture
async def stocked(stub: pb_grpc.InventoryStub) -> pb_grpc.InventoryStub:
    reply = await stub.Execute(
        pb.CommandBatch(commands=[_put_sku("s1", "strip"), _put_site("s2", "ward1"), _put_site("s3", "ward2")])
    )
    assert [r.WhichOneof("reply") for r in reply.replies] == ["put_sku", "put_site", "put_site"]
    reply = await stub.Execute(pb.CommandBatch(commands=[_receive("s4", STOCK)]))
    assert reply.replies[0].receive.qty == STOCK
    return stub


async def _available(stub: pb_grpc.InventoryStub) -> int:
    return (await stub.GetAvailability(pb.GetAvailabilityRequest(sku="strip", site="ward1"))).available


def _unary_status(err: grpc.aio.AioRpcError) -> status_pb2.Status:
    return rich_status(err.code(), err.details(), err.trailing_metadata())


DETAIL_TYPES = (
    error_details_pb2.BadRequest,
    error_details_pb2.ErrorInfo,
    error_details_pb2.ResourceInfo,
    error_details_pb2.RetryInfo,
)


def _details(status: status_pb2.Status) -> list[tuple[str, bytes]]:
    """The details as comparable values (maps serialise in any order unless deterministic)."""
    out = []
    for any_ in status.details:
        kind = next(k for k in DETAIL_TYPES if any_.Is(k.DESCRIPTOR))
        msg = kind()
        any_.Unpack(msg)
        out.append((any_.type_url, msg.SerializeToString(deterministic=True)))
    return sorted(out)


# =====================================================================================
# A batch's command answers what its unary call answers
# =====================================================================================


async def test_every_command_answers_in_a_batch_what_it_answers_unary() -> None:
    """The same scenario on two identical engines: unary on one, one-command batches on the
    other; every reply is byte-equal, every refusal has the same code, message and details."""
    engines = [await _serve(ManualClock()), await _serve(ManualClock())]
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") for _, server in engines]
    try:
        unary, batched = (pb_grpc.InventoryStub(c) for c in channels)
        refused = 0
        for command in SCENARIO:
            kind = command.WhichOneof("command")
            assert kind is not None
            reply = (await batched.Execute(pb.CommandBatch(commands=[command]))).replies[0]
            try:
                expected = await getattr(unary, UNARY[kind])(getattr(command, kind))
            except grpc.aio.AioRpcError as err:
                refused += 1
                assert reply.WhichOneof("reply") == "error", kind
                status = convert.status_from_command_error(reply.error)
                unary_status = _unary_status(err)
                assert (status.code, status.message) == (unary_status.code, unary_status.message)
                assert _details(status) == _details(unary_status), kind
                continue
            assert reply.WhichOneof("reply") == kind
            assert getattr(reply, kind).SerializeToString(deterministic=True) == expected.SerializeToString(
                deterministic=True
            ), kind
        assert refused == 6  # the scenario's refusals all happened, on both paths
    finally:
        for channel in channels:
            await channel.close()
        for gateway, server in engines:
            await server.stop(grace_s=1.0)
            await gateway.close()


async def test_auto_batched_client_raises_the_unary_exceptions(
    stocked: pb_grpc.InventoryStub, client: LotwiseClient
) -> None:
    assert client.batching
    line = HoldLine("strip", "ward1", ReserveLine(STOCK + 1))
    with pytest.raises(InsufficientStock) as short:
        await client.reserve([line], TTL_MS)
    assert (short.value.requested, short.value.available) == (STOCK + 1, STOCK)
    with pytest.raises(InvalidArgument) as bad:
        await client.receive("strip", "ward1", "L2", 0)
    assert [v.field for v in bad.value.violations] == ["qty"]
    with pytest.raises(NotFound):
        await client.get_hold("no-such-hold")
    hold = await client.reserve([HoldLine("strip", "ward1", ReserveLine(3))], TTL_MS, request_id="h-x")
    with pytest.raises(RequestConflict):
        await client.reserve([HoldLine("strip", "ward1", ReserveLine(4))], TTL_MS, request_id="h-x")
    assert (await client.commit(hold.hold_id)).committed_qty == 3
    assert await _available(stocked) == STOCK - 3


# =====================================================================================
# Per-command errors, bounds, malformed batches
# =====================================================================================


async def test_one_bad_command_fails_alone_and_replies_keep_the_order(stocked: pb_grpc.InventoryStub) -> None:
    batch = pb.CommandBatch(
        batch_id=7,
        commands=[_reserve("b1", 5), _receive("b2", -1), _reserve("b3", STOCK), _availability(), _reserve("b4", 1)],
    )
    reply = await stocked.Execute(batch)
    assert reply.batch_id == 7
    kinds = [r.WhichOneof("reply") for r in reply.replies]
    assert kinds[1] == "error"
    assert reply.replies[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [v.field for v in reply.replies[1].error.field_violations] == ["qty"]
    # b3 wants everything: it either went first (and b1, b4 were refused) or was refused.
    held = [r.reserve.hold.held_qty for r in reply.replies if r.WhichOneof("reply") == "reserve"]
    refusals = [r.error for i, r in enumerate(reply.replies) if i in (0, 2, 4) and r.WhichOneof("reply") == "error"]
    assert all(e.reason == "INSUFFICIENT_STOCK" and e.domain == "lotwise.dev" for e in refusals)
    assert sum(held) <= STOCK
    assert len(held) + len(refusals) == 3
    assert await _available(stocked) == STOCK - sum(held)


async def test_an_oversize_batch_is_refused_whole_and_applies_nothing(stocked: pb_grpc.InventoryStub) -> None:
    commands = [_reserve(f"big-{i}", 1) for i in range(MAX_BATCH_COMMANDS + 1)]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stocked.Execute(pb.CommandBatch(commands=commands))
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    status = _unary_status(refused.value)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == REASON_BATCH_TOO_LARGE
    assert info.metadata["limit"] == str(MAX_BATCH_COMMANDS)
    assert await _available(stocked) == STOCK
    # At the bound it runs.
    reply = await stocked.Execute(pb.CommandBatch(commands=commands[:MAX_BATCH_COMMANDS]))
    assert sum(r.WhichOneof("reply") == "reserve" for r in reply.replies) == STOCK


async def test_a_slot_without_a_command_is_a_malformed_batch(stocked: pb_grpc.InventoryStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stocked.Execute(pb.CommandBatch(commands=[_reserve("m1", 1), pb.Command(timeout_ms=5)]))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = _unary_status(refused.value)
    kinds = {d.type_url.rsplit(".", 1)[-1]: d for d in status.details}
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert kinds["ErrorInfo"].Unpack(info)
    assert kinds["BadRequest"].Unpack(bad)
    assert info.reason == REASON_MALFORMED_REQUEST
    assert [v.field for v in bad.field_violations] == ["commands[1]"]
    assert await _available(stocked) == STOCK  # the good command did not run either
    assert len((await stocked.Execute(pb.CommandBatch())).replies) == 0  # an empty batch is fine


async def test_a_command_out_of_time_is_not_applied(local_gateway: Gateway) -> None:
    servicer = InventoryServicer(local_gateway)
    await local_gateway.put_sku(Sku("strip"))
    await local_gateway.put_site(Site("ward1"))
    reply = await servicer.batches.run(pb.CommandBatch(commands=[_receive("late", 5)]), time.monotonic() - 1)
    assert reply.replies[0].error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert (await local_gateway.get_availability("strip", "ward1")).available == 0


# =====================================================================================
# Exactly once, no oversell
# =====================================================================================


async def test_a_retried_batch_answers_the_first_answers_and_applies_nothing_twice(
    stocked: pb_grpc.InventoryStub,
) -> None:
    batch = pb.CommandBatch(commands=[_reserve("once-1", 3), _receive("once-2", 4, lot="L9"), _reserve("once-3", 999)])
    first = await stocked.Execute(batch)
    again = await stocked.Execute(batch)
    assert first.SerializeToString(deterministic=True) == again.SerializeToString(deterministic=True)
    assert await _available(stocked) == STOCK - 3 + 4
    # The unary call with the same request id sees the same hold too.
    hold = await stocked.Reserve(batch.commands[0].reserve)
    assert hold.hold.SerializeToString(deterministic=True) == first.replies[0].reserve.hold.SerializeToString(
        deterministic=True
    )


async def test_concurrent_batching_clients_cannot_oversell(
    stocked: pb_grpc.InventoryStub, grpc_server_port: int
) -> None:
    target = f"127.0.0.1:{grpc_server_port}"
    retry = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05)
    clients = [LotwiseClient(target, timeout_s=20.0, retry=retry) for _ in range(4)]
    line = HoldLine("strip", "ward1", ReserveLine(1))

    async def order(c: LotwiseClient) -> int:
        try:
            hold = await c.reserve([line], TTL_MS)
        except InsufficientStock:
            return 0
        return (await c.commit(hold.hold_id)).committed_qty

    try:
        sold = await asyncio.gather(*(order(clients[i % 4]) for i in range(3 * STOCK)))
    finally:
        for c in clients:
            await c.close()
    assert sum(sold) == STOCK
    assert await _available(stocked) == 0


async def test_a_stream_answers_each_batch_by_id_and_cannot_oversell(stocked: pb_grpc.InventoryStub) -> None:
    batches = [pb.CommandBatch(batch_id=i, commands=[_reserve(f"st-{i}-{j}", 1) for j in range(20)]) for i in range(5)]

    async def requests() -> AsyncIterator[pb.CommandBatch]:
        for batch in batches:
            yield batch

    replies = [reply async for reply in stocked.Stream(requests())]
    assert sorted(r.batch_id for r in replies) == list(range(5))
    assert all(len(r.replies) == 20 for r in replies)
    held = sum(r.WhichOneof("reply") == "reserve" for reply in replies for r in reply.replies)
    assert held == STOCK
    assert await _available(stocked) == 0


async def test_a_stream_refuses_an_oversize_batch(stocked: pb_grpc.InventoryStub) -> None:
    async def requests() -> AsyncIterator[pb.CommandBatch]:
        yield pb.CommandBatch(commands=[_availability()] * (MAX_BATCH_COMMANDS + 1))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        _ = [reply async for reply in stocked.Stream(requests())]
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


# =====================================================================================
# The auto-batcher coalesces, keeps deadlines, and falls back on old servers
# =====================================================================================


async def test_concurrent_calls_share_batches(
    stocked: pb_grpc.InventoryStub, client: LotwiseClient, metrics_registry: CollectorRegistry
) -> None:
    def executes() -> float:
        labels = {"method": "lotwise.v1.Inventory/Execute", "code": "OK"}
        return metrics_registry.get_sample_value("lotwise_grpc_requests_total", labels) or 0.0

    before = executes()
    results = await asyncio.gather(*(client.get_availability("strip", "ward1") for _ in range(64)))
    assert {r.available for r in results} == {STOCK}
    assert executes() - before <= 2  # one batch (two if the loop split the wave)


async def test_a_call_keeps_its_own_deadline(stocked: pb_grpc.InventoryStub, client: LotwiseClient) -> None:
    with pytest.raises(DeadlineExceeded):
        await client.get_availability("strip", "ward1", timeout_s=0.0001)
    assert (await client.get_availability("strip", "ward1", timeout_s=5.0)).available == STOCK


class _BeforeBatches(InventoryServicer):
    """A server from before batches: Execute is UNIMPLEMENTED."""

    async def Execute(self, request: pb.CommandBatch, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


async def test_a_client_falls_back_to_unary_on_a_server_without_execute(local_gateway: Gateway) -> None:
    server = grpc.aio.server()
    pb_grpc.add_InventoryServicer_to_server(_BeforeBatches(local_gateway), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with LotwiseClient(f"127.0.0.1:{port}") as c:
            assert c.batching
            await c.put_sku(Sku("strip"))
            assert not c.batching
            await c.put_site(Site("ward1"))
            assert (await c.receive("strip", "ward1", "L1", 3, status="available")).qty == 3
    finally:
        await server.stop(grace=1.0)


# =====================================================================================
# Bytes that do not decode
# =====================================================================================

# CommandBatch{commands: [Command{get_hold: GetHoldRequest{hold_id: b"\xff"}}]}: invalid UTF-8.
_BAD_HOLD = b"\x0a\x01\xff"
_BAD_COMMAND = b"\x5a" + bytes([len(_BAD_HOLD)]) + _BAD_HOLD
UNDECODABLE_BATCH = b"\x0a" + bytes([len(_BAD_COMMAND)]) + _BAD_COMMAND


def _raw(value: bytes) -> bytes:
    return value


@pytest_asyncio.fixture
async def lenient_port(local_gateway: Gateway) -> AsyncIterator[int]:
    """A server registered with add_inventory_service (lenient request decoding)."""
    server = grpc.aio.server()
    add_inventory_service(InventoryServicer(local_gateway), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port
    await server.stop(grace=1.0)


def _assert_malformed(err: grpc.aio.AioRpcError) -> None:
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = _unary_status(err)
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    info = error_details_pb2.ErrorInfo()
    assert infos[0].Unpack(info)
    assert info.reason == REASON_MALFORMED_REQUEST


@pytest.mark.parametrize(
    ("method", "payload"),
    [("Execute", UNDECODABLE_BATCH), ("GetHold", _BAD_HOLD)],
)
async def test_bytes_that_do_not_decode_are_invalid_argument(lenient_port: int, method: str, payload: bytes) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{lenient_port}") as channel:
        call = channel.unary_unary(
            f"/lotwise.v1.Inventory/{method}", request_serializer=_raw, response_deserializer=_raw
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(payload)
        _assert_malformed(refused.value)
        # The same server still answers well-formed calls.
        assert len((await pb_grpc.InventoryStub(channel).Execute(pb.CommandBatch())).replies) == 0


async def test_a_stream_batch_that_does_not_decode_is_invalid_argument(lenient_port: int) -> None:
    async def requests() -> AsyncIterator[bytes]:
        yield UNDECODABLE_BATCH

    async with grpc.aio.insecure_channel(f"127.0.0.1:{lenient_port}") as channel:
        call = channel.stream_stream(
            "/lotwise.v1.Inventory/Stream", request_serializer=_raw, response_deserializer=_raw
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            _ = [reply async for reply in call(requests())]
        _assert_malformed(refused.value)
