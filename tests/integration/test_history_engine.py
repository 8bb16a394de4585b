"""History inside the whole engine: Ray shards → JetStream journal → sink → chDB → History gRPC."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest

from engine.api.client import LotwiseClient
from engine.api.gen.lotwise.v1 import history_pb2 as hpb
from engine.api.gen.lotwise.v1 import history_pb2_grpc as hpb_grpc
from engine.bootstrap import RunningEngine
from engine.domain.catalog import Site, Sku
from engine.domain.commands import ReserveLine
from engine.runtime.types import HoldLine
from tests.conftest import authed_channel

pytestmark = [pytest.mark.ray, pytest.mark.asyncio(loop_scope="session")]


async def caught_up(stub: hpb_grpc.HistoryStub, wait_s: float = 30.0) -> None:
    """Until the sink has acked everything the journal holds (bounded wait)."""
    deadline = time.monotonic() + wait_s
    while True:
        status = await stub.GetSinkStatus(hpb.GetSinkStatusRequest(), timeout=10)
        if status.running and status.acked_position >= status.stream_position:
            return
        assert time.monotonic() < deadline, f"history sink did not catch up: {status}"
        await asyncio.sleep(0.2)


async def test_history_follows_the_live_engine(ray_engine: RunningEngine, ray_client: LotwiseClient) -> None:
    c = ray_client
    tag = uuid.uuid4().hex[:8]
    sku, here, there = f"strip-{tag}", f"cab-{tag}", f"dc-{tag}"
    await c.put_sku(Sku(sku))
    for site in (here, there):
        await c.put_site(Site(site, f"org-{tag}"))
    await c.receive(sku, there, f"LOT-{tag}", 30, status="available", doc_ref="ASN-1")
    await c.receive(sku, here, f"LOT-{tag}", 12, status="available", doc_ref="ASN-2")
    hold = await c.reserve([HoldLine(sku, here, ReserveLine(5))], 60_000, doc_ref="SO-1")
    await c.commit(hold.hold_id, doc_ref="SO-1")
    await c.consume(sku, here, 2, doc_ref="SCAN-1")
    await c.reserve([HoldLine(sku, there, ReserveLine(4))], 60_000)  # still held

    async with authed_channel(ray_engine.grpc_address) as channel:
        stub = hpb_grpc.HistoryStub(channel)
        await caught_up(stub)
        now_ms = int(time.time() * 1000) + 1
        request = hpb.GetBalanceAsOfRequest(as_of_ms=now_ms, skus=[sku])
        request.group_by.extend([hpb.HISTORY_DIMENSION_SITE])
        rows = (await stub.GetBalanceAsOf(request, timeout=10)).rows
        history = {r.group[0].value: (r.qty, r.held) for r in rows}
        for site in (here, there):
            live = (await c.get_availability(sku, site)).rows
            assert history[site] == (sum(r.qty for r in live), sum(r.held for r in live))
        trace = await stub.TraceLot(hpb.TraceLotRequest(lot_id=f"LOT-{tag}", sku=sku), timeout=10)
        assert {s.site for s in trace.stops} == {here, there}
        assert {"ASN-1", "ASN-2", "SO-1", "SCAN-1"} <= {d.doc_ref for d in trace.documents}
        bad = hpb.GetBalanceAsOfRequest(as_of_ms=-5)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetBalanceAsOf(bad, timeout=10)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
