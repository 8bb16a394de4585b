"""Overload through the real gRPC server (issue 19): every refusal is typed and retryable,
commits pass while reserves are shed, and the books are exact afterwards."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, generate_latest

from engine.api.admission import AdmissionLimits, AdmissionMetrics
from engine.api.client import NO_RETRY, AdaptiveThrottle, ConcurrencyLimit, LotwiseClient, Throttled, new_request_id
from engine.api.errors import REASON_OVERLOADED, retry_delay_s, status_of_rpc_error
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc
from engine.api.gradient import GradientLimit
from engine.api.server import ApiMetrics, start_server
from engine.api.timeout_header import TIMEOUT_HEADER
from engine.domain.catalog import Site, Sku
from engine.domain.commands import ReserveLine
from engine.domain.errors import Overloaded
from engine.runtime.gateway import Gateway
from engine.runtime.types import HoldLine

# Reserves may fill 80% of the cost bound: 8 of 10. Loop-lag and wire-wait shedding off:
# these tests control the load by hand, a busy machine must not add refusals of its own.
LIMITS = AdmissionLimits(max_calls=100, max_cost=10, target_loop_lag_ms=1e9, wire_shedding=False)
GATED_RESERVES = 8


@dataclass
class GatedReserves:
    """A gateway whose reserves wait at a gate once it is closed: they hold their door slots."""

    inner: Gateway
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0
    service_s: float = 0.0  # how long each reserve takes once through the gate (a busy shard)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def reserve(self, *args: Any, **kwargs: Any) -> Any:
        self.waiting += 1
        await self.gate.wait()
        await asyncio.sleep(self.service_s)
        return await self.inner.reserve(*args, **kwargs)


@contextlib.asynccontextmanager
async def door_server(gateway: Any, metrics: AdmissionMetrics) -> AsyncIterator[int]:
    server, port = await start_server(
        gateway, metrics=ApiMetrics(CollectorRegistry()), admission=LIMITS, admission_metrics=metrics, admin=gateway
    )
    try:
        yield port
    finally:
        await server.stop(0)


async def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def reserve_request(sku: str = "strip") -> pb.ReserveRequest:
    request_id = new_request_id()
    line = pb.ReserveLine(sku=sku, site="ward1", qty=1)
    return pb.ReserveRequest(request_id=request_id, hold_id=request_id, lines=[line], ttl_ms=60_000)


async def test_overload_is_typed_commits_pass_and_the_books_stay_exact(local_gateway: Gateway) -> None:
    await local_gateway.put_sku(Sku("strip"))
    await local_gateway.put_site(Site("ward1"))
    gated = GatedReserves(local_gateway)
    gated.gate.set()
    metrics = AdmissionMetrics(CollectorRegistry())
    async with door_server(gated, metrics) as port, LotwiseClient(f"127.0.0.1:{port}", retry=NO_RETRY) as client:
        await client.receive("strip", "ward1", "L1", 100, status="available")
        earlier = await client.reserve([HoldLine("strip", "ward1", ReserveLine(5))], ttl_ms=60_000)

        gated.gate.clear()  # from now on reserves wait inside the door
        stub = pb_grpc.InventoryStub(client.channel)
        held = [asyncio.ensure_future(stub.Reserve(reserve_request(), timeout=30)) for _ in range(GATED_RESERVES)]
        await eventually(lambda: gated.waiting >= GATED_RESERVES)

        # A ninth reserve is refused (after its time in the waiting room, no slot freed): RESOURCE_EXHAUSTED,
        # OVERLOADED, which bound, RetryInfo.
        try:
            await stub.Reserve(reserve_request(), timeout=5)
        except grpc.aio.AioRpcError as err:
            refused = err
        else:
            raise AssertionError("the ninth reserve was admitted")
        assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        status = status_of_rpc_error(refused)
        info = error_details_pb2.ErrorInfo()
        next(d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)).Unpack(info)
        assert (info.reason, info.metadata["bound"], info.metadata["priority"]) == (
            REASON_OVERLOADED,
            "cost",
            "reserve",
        )
        assert retry_delay_s(status) is not None

        # Reads are shed before writes; a batch with a reserve is refused as a whole, typed too.
        with pytest.raises(grpc.aio.AioRpcError) as read_refused:
            await stub.GetAvailability(pb.GetAvailabilityRequest(sku="strip", site="ward1"), timeout=5)
        assert read_refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        batch = pb.CommandBatch(commands=[pb.Command(reserve=reserve_request())])
        with pytest.raises(grpc.aio.AioRpcError) as batch_refused:
            await stub.Execute(batch, timeout=5)
        assert batch_refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

        # The commit of an earlier hold frees stock: it is admitted while reserves are shed.
        committed = await client.commit(earlier.hold_id)
        assert committed.committed_qty == 5

        gated.gate.set()
        replies = await asyncio.gather(*held)
        assert all(r.hold.hold_id for r in replies)

    shed = metrics.refused.labels("cost", "reserve")._value.get()
    assert shed == 2  # the ninth Reserve and the batch
    assert metrics.refused.labels("cost", "read")._value.get() == 1
    # Books exact: 100 received, 5 committed, 8 units held by the admitted reserves.
    availability = await local_gateway.get_availability("strip", "ward1")
    assert availability.available == 100 - 5 - GATED_RESERVES
    assert all(check.live_hash == check.rebuilt_hash for check in await local_gateway.verify())


async def test_the_client_retries_an_overload_within_its_deadline(local_gateway: Gateway) -> None:
    """A call shed at the door succeeds on a later attempt once the door has room."""
    await local_gateway.put_sku(Sku("strip"))
    await local_gateway.put_site(Site("ward1"))
    gated = GatedReserves(local_gateway)
    metrics = AdmissionMetrics(CollectorRegistry())
    async with door_server(gated, metrics) as port, LotwiseClient(f"127.0.0.1:{port}", timeout_s=10) as client:
        gated.gate.set()
        await client.receive("strip", "ward1", "L1", 100, status="available")
        gated.gate.clear()
        stub = pb_grpc.InventoryStub(client.channel)
        held = [asyncio.ensure_future(stub.Reserve(reserve_request(), timeout=30)) for _ in range(GATED_RESERVES)]
        await eventually(lambda: gated.waiting >= GATED_RESERVES)
        late = asyncio.create_task(client.reserve([HoldLine("strip", "ward1", ReserveLine(1))], ttl_ms=60_000))
        await eventually(lambda: metrics.refused.labels("cost", "reserve")._value.get() >= 1)  # first attempt shed
        gated.gate.set()  # room again: the retry gets in
        hold = await late
        assert hold.hold_id
        await asyncio.gather(*held)
    assert (await local_gateway.get_availability("strip", "ward1")).available == 100 - GATED_RESERVES - 1


FLOOD = 200  # closed-loop reserve callers: many times what the door admits
# Reserves may fill 8 of 10. No wire-wait shedding: this test is about the cost bound, and
# the commits (which send the timeout header) must not be refused because the machine is busy.
FLOOD_LIMITS = AdmissionLimits(max_calls=64, max_cost=10, wire_shedding=False)
COMMITTERS = 2  # commit callers at once: they fit in the head room reserves leave


async def test_a_flood_of_reserves_is_shed_while_commits_and_health_get_through(local_gateway: Gateway) -> None:
    """A sustained flood saturates the door (each reserve takes 20 ms, as on a busy shard);
    commits (which free stock) and health checks are still admitted, reserves are shed
    typed, and the books are exact."""
    await local_gateway.put_sku(Sku("strip"))
    await local_gateway.put_site(Site("ward1"))
    slow = GatedReserves(local_gateway, service_s=0.02)
    slow.gate.set()
    registry = CollectorRegistry()
    metrics = AdmissionMetrics(registry)
    server, port = await start_server(
        slow, metrics=ApiMetrics(CollectorRegistry()), admission=FLOOD_LIMITS, admission_metrics=metrics, admin=slow
    )
    async with LotwiseClient(f"127.0.0.1:{port}", retry=NO_RETRY, timeout_s=30) as client:
        await client.receive("strip", "ward1", "L1", 100_000, status="available")
        holds = [await client.reserve([HoldLine("strip", "ward1", ReserveLine(1))], 600_000) for _ in range(40)]
        stub = pb_grpc.InventoryStub(client.channel)
        health = health_pb2_grpc.HealthStub(client.channel)
        flood_codes: list[grpc.StatusCode] = []
        done = asyncio.Event()

        async def flood() -> None:  # closed loop: a sustained overload, not one burst
            while not done.is_set():
                try:
                    await stub.Reserve(reserve_request(), timeout=30)
                    flood_codes.append(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as err:
                    flood_codes.append(err.code())

        async def committer(k: int) -> int:
            for hold in holds[k::COMMITTERS]:
                assert (await client.commit(hold.hold_id)).committed_qty == 1
            return len(holds[k::COMMITTERS])

        async def probe() -> list[int]:
            request = health_pb2.HealthCheckRequest(service="")
            return [(await health.Check(request, timeout=30)).status for _ in range(20)]

        flooding = [asyncio.ensure_future(flood()) for _ in range(FLOOD)]
        await eventually(lambda: grpc.StatusCode.RESOURCE_EXHAUSTED in flood_codes)  # saturated
        committed, statuses = await asyncio.gather(asyncio.gather(*(committer(k) for k in range(COMMITTERS))), probe())
        done.set()
        await asyncio.gather(*flooding)
    await server.stop(0)

    assert sum(committed) == len(holds)  # every commit admitted while the reserves were shed
    assert set(statuses) == {health_pb2.HealthCheckResponse.SERVING}
    assert set(flood_codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    shed = flood_codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert shed > 0
    assert metrics.refused.labels("cost", "critical")._value.get() == 0
    admitted = flood_codes.count(grpc.StatusCode.OK)
    availability = await local_gateway.get_availability("strip", "ward1")
    assert availability.available == 100_000 - len(holds) - admitted  # committed + held, nothing else
    assert all(check.live_hash == check.rebuilt_hash for check in await local_gateway.verify())
    # Every refusal is on /metrics, by bound and priority.
    text = generate_latest(registry).decode()
    counted = [line for line in text.splitlines() if line.startswith("lotwise_admission_refused_total{")]
    assert 'bound="cost",priority="reserve"' in "".join(counted)
    assert sum(float(line.rsplit(" ", 1)[1]) for line in counted if 'priority="reserve"' in line) == shed


# Wire target 100 ms: reserves that waited longer are shed once such waits stand for 1 s,
# commits only beyond 400 ms (a long interval: a busy machine must not break the run). The
# test makes a call look as if it waited before the door by sending a timeout header larger
# than the call's real timeout.
WIRE_LIMITS = AdmissionLimits(target_loop_lag_ms=1e9, wire_target_ms=100, wire_interval_ms=1_000, wire_max_wait_ms=0)


def claimed(sent_ms: int) -> tuple[tuple[str, str]]:
    return ((TIMEOUT_HEADER, str(sent_ms)),)


async def test_calls_that_waited_before_the_door_are_shed_typed_once_the_wait_stands(
    local_gateway: Gateway,
) -> None:
    await local_gateway.put_sku(Sku("strip"))
    await local_gateway.put_site(Site("ward1"))
    registry = CollectorRegistry()
    metrics = AdmissionMetrics(registry)
    server, port = await start_server(
        local_gateway,
        metrics=ApiMetrics(CollectorRegistry()),
        admission=WIRE_LIMITS,
        admission_metrics=metrics,
        admin=local_gateway,
    )
    async with LotwiseClient(f"127.0.0.1:{port}", retry=NO_RETRY, timeout_s=30) as client:
        await client.receive("strip", "ward1", "L1", 100, status="available")
        stub = pb_grpc.InventoryStub(client.channel)
        # Each waited ~25 s before the door: admitted until such waits have stood an interval.
        holds: list[str] = []
        shed: grpc.aio.AioRpcError | None = None
        for _ in range(30):
            try:
                reply = await stub.Reserve(reserve_request(), timeout=5, metadata=claimed(30_000))
            except grpc.aio.AioRpcError as err:
                shed = err
                break
            holds.append(reply.hold.hold_id)
            await asyncio.sleep(0.3)  # within the interval: the run of long waits goes on
        assert shed is not None
        assert holds  # the first long wait alone is not a standing queue
        assert shed.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        status = status_of_rpc_error(shed)
        info = error_details_pb2.ErrorInfo()
        next(d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)).Unpack(info)
        assert (info.reason, info.metadata["bound"], info.metadata["priority"]) == (
            REASON_OVERLOADED,
            "wire_wait",
            "reserve",
        )
        assert retry_delay_s(status) is not None
        # A commit that waited ~200 ms is within its share (4 × target): it frees stock.
        await stub.Commit(
            pb.CommitRequest(request_id=new_request_id(), hold_id=holds[0]),
            timeout=5,
            metadata=claimed(5_200),
        )
        # A malformed header is ignored, never a failed call.
        held = await stub.Reserve(reserve_request(), timeout=5, metadata=((TIMEOUT_HEADER, "soon"),))
        assert held.hold.hold_id
    await server.stop(0)

    assert metrics.refused.labels("wire_wait", "reserve")._value.get() == 1
    waits = registry.get_sample_value("lotwise_admission_wire_wait_seconds_count")
    assert waits is not None
    assert waits >= 3
    availability = await local_gateway.get_availability("strip", "ward1")
    assert availability.available == 100 - len(holds) - 1  # one committed, the rest held; the shed not applied
    assert all(check.live_hash == check.rebuilt_hash for check in await local_gateway.verify())


# The cap on the wait before the door (1 s for reserves, 4 s for commits here, so that a
# busy machine's own waits stay far within it): no standing queue needed. LotwiseClient's
# own metadata goes first, so a timeout header in it makes every call of that client look
# as if it had waited that long.
CAP_LIMITS = AdmissionLimits(target_loop_lag_ms=1e9, wire_interval_ms=10_000, wire_max_wait_ms=1_000)


async def test_calls_that_waited_beyond_the_cap_are_refused_and_the_client_throttles(
    local_gateway: Gateway,
) -> None:
    await local_gateway.put_sku(Sku("strip"))
    await local_gateway.put_site(Site("ward1"))
    registry = CollectorRegistry()
    metrics = AdmissionMetrics(registry)
    server, port = await start_server(
        local_gateway, metrics=ApiMetrics(CollectorRegistry()), admission=CAP_LIMITS, admission_metrics=metrics
    )
    target = f"127.0.0.1:{port}"
    line = HoldLine("strip", "ward1", ReserveLine(1))
    async with LotwiseClient(target, retry=NO_RETRY, timeout_s=30, batching=None) as fresh:
        await fresh.receive("strip", "ward1", "L1", 1_000, status="available")
        hold = await fresh.reserve([line], 60_000)  # no claimed wait: admitted
        # A first call that waited 6 s is refused at once: no queue has stood for 10 s.
        stub = pb_grpc.InventoryStub(fresh.channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Reserve(reserve_request(), timeout=5, metadata=claimed(11_000))
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        info = error_details_pb2.ErrorInfo()
        status = status_of_rpc_error(refused.value)
        next(d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)).Unpack(info)
        assert (info.reason, info.metadata["bound"], info.metadata["limit"]) == (REASON_OVERLOADED, "wire_wait", "1000")
        assert retry_delay_s(status) == 2.0  # its wait, clamped to the longest hint
        # A commit that waited 2 s is within its cap (4 × 1 s): it frees stock.
        await stub.Commit(
            pb.CommitRequest(request_id=new_request_id(), hold_id=hold.hold_id), timeout=5, metadata=claimed(7_000)
        )
    late = AdaptiveThrottle()
    async with LotwiseClient(target, retry=NO_RETRY, timeout_s=30, metadata=claimed(60_000), throttle=late) as slow:
        outcomes = {"shed": 0, "throttled": 0}
        for _ in range(60):
            try:
                await slow.reserve([line], 60_000)
            except Throttled:
                outcomes["throttled"] += 1
            except Overloaded:
                outcomes["shed"] += 1
        assert outcomes["shed"] + outcomes["throttled"] == 60
        assert outcomes["throttled"] == late.throttled > 30  # most never reached the engine
    await server.stop(0)
    refused_reserves = metrics.refused.labels("wire_wait", "reserve")._value.get()
    assert refused_reserves == 1 + outcomes["shed"]  # the engine saw only the calls that were sent
    availability = await local_gateway.get_availability("strip", "ward1")
    assert availability.available == 999  # one committed; nothing refused was applied
    assert all(check.live_hash == check.rebuilt_hash for check in await local_gateway.verify())


@pytest.mark.parametrize("kind", [ConcurrencyLimit, GradientLimit])
async def test_attempts_beyond_the_clients_concurrency_limit_never_reach_the_engine(
    local_gateway: Gateway, kind: type[ConcurrencyLimit | GradientLimit]
) -> None:
    """The limit (AIMD or gradient) fails the attempts beyond it at once, typed `Throttled`,
    before they queue anywhere; a commit passes a full limit (it frees stock); nothing
    refused is applied."""
    await local_gateway.put_sku(Sku("strip"))
    await local_gateway.put_site(Site("ward1"))
    gated = GatedReserves(local_gateway)
    gated.gate.set()
    metrics = AdmissionMetrics(CollectorRegistry())
    limit = kind(initial=4, min_limit=2)
    line = HoldLine("strip", "ward1", ReserveLine(1))
    async with (
        door_server(gated, metrics) as port,
        LotwiseClient(f"127.0.0.1:{port}", retry=NO_RETRY, batching=None, concurrency_limit=limit) as client,
    ):
        await client.receive("strip", "ward1", "L1", 100, status="available")
        earlier = await client.reserve([line], ttl_ms=60_000)
        gated.gate.clear()  # reserves now hold their slots at the gate
        held = [asyncio.ensure_future(client.reserve([line], ttl_ms=60_000)) for _ in range(4)]
        await eventually(lambda: gated.waiting == 1 + 4)
        for _ in range(6):
            with pytest.raises(Throttled, match="concurrency limit"):
                await client.reserve([line], ttl_ms=60_000)
        assert gated.waiting == 1 + 4  # the throttled reserves never reached the engine
        committed = await client.commit(earlier.hold_id)  # past a full limit
        assert committed.committed_qty == 1
        gated.gate.set()
        assert all(hold.hold_id for hold in await asyncio.gather(*held))
        assert limit.in_flight == 0
        assert limit.throttled == 6
    assert metrics.refused.labels("cost", "reserve")._value.get() == 0  # the engine refused nothing
    availability = await local_gateway.get_availability("strip", "ward1")
    assert availability.available == 100 - 1 - 4  # one committed, four held, the throttled never applied
    assert all(check.live_hash == check.rebuilt_hash for check in await local_gateway.verify())


async def test_a_client_whose_throttle_saw_refusals_completes_its_calls_once_the_engine_is_healthy(
    local_gateway: Gateway,
) -> None:
    """bench/console.py's symptom: a burst of calls right after the engine refused a run of
    others failed `Throttled` at once. The throttle still refuses most attempts locally (it
    saw nothing but refusals), but each refused attempt is waited out and asked again within
    the deadline, so all 300 consumptions are applied, once each."""
    await local_gateway.put_sku(Sku("strip"))
    await local_gateway.put_site(Site("ward1"))
    gated = GatedReserves(local_gateway)
    gated.gate.set()
    metrics = AdmissionMetrics(CollectorRegistry())
    throttle = AdaptiveThrottle()  # shared by both clients below, as by the calls of one client
    line = HoldLine("strip", "ward1", ReserveLine(1))
    async with door_server(gated, metrics) as port:
        target = f"127.0.0.1:{port}"
        async with LotwiseClient(target, retry=NO_RETRY, batching=None, throttle=throttle) as probe:
            await probe.receive("strip", "ward1", "L1", 1_000, status="available")
            gated.gate.clear()  # reserves now hold the door's reserve share: the next ones are shed
            held = [asyncio.ensure_future(probe.reserve([line], ttl_ms=60_000)) for _ in range(GATED_RESERVES)]
            await eventually(lambda: gated.waiting == GATED_RESERVES)
            for _ in range(60):
                with pytest.raises(Overloaded):
                    await probe.reserve([line], ttl_ms=60_000)
            assert throttle.reject_probability() > 0.8  # it saw little but refusals
            gated.gate.set()  # the engine is healthy again
            assert all(hold.hold_id for hold in await asyncio.gather(*held))
        throttled_before = throttle.throttled
        async with LotwiseClient(target, throttle=throttle, timeout_s=30) as client:  # default retries, batching
            consumed = await asyncio.gather(
                *(client.consume("strip", "ward1", 1, doc_ref=f"CASE-{k}") for k in range(300))
            )
        assert len(consumed) == 300
        assert throttle.throttled > throttled_before  # attempts were refused locally, and waited out
    availability = await local_gateway.get_availability("strip", "ward1")
    assert availability.available == 1_000 - GATED_RESERVES - 300  # each consumption applied once
    assert all(check.live_hash == check.rebuilt_hash for check in await local_gateway.verify())
