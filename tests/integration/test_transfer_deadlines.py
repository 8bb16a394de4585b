"""Approval by declared value and org distance, and deadlines that escalate, over the real
gRPC API with the transfer documents in JetStream and the step events on their stream."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from adapters.auth.files import WatchedFile, load_policy, load_secret, write_private
from adapters.memory.documents import InMemoryDocuments
from adapters.nats.bus import engine_transfer_bus_config, start_transfer_events
from adapters.nats.documents import DocumentsConfig, connect_documents
from adapters.nats.server import EmbeddedNats
from engine.api.auth import AuthMetrics, Authorizer, ServerAuth, TokenSettings, TokenVerifier
from engine.api.gen.lotwise.v1 import transfers_pb2 as tpb
from engine.api.gen.lotwise.v1 import transfers_pb2_grpc as tpb_grpc
from engine.api.server import ApiMetrics, start_server
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import Receive
from engine.domain.errors import Unavailable
from engine.domain.transfer_flow import TransferLine, parse_flow
from engine.runtime.gateway import Gateway
from engine.runtime.gateway.orgtree import OrgDesk
from engine.runtime.gateway.transfers import Actor, TransferDesk
from tests.integration.test_transfers import POLICY, SECRET, act, as_user, authed, read_stream

HOUR_MS = 3_600_000
FLOW = parse_flow(
    {
        "format": 1,
        "transitions": [
            {"state": "requested", "action": "approve", "next_state": "approved", "role": "site_manager",
             "max_value": "1000", "max_org_distance": 0},
            {"state": "requested", "action": "approve", "next_state": "pending_regional", "role": "site_manager"},
            {"state": "pending_regional", "action": "approve", "next_state": "approved", "role": "regional_manager"},
            {"state": "requested", "action": "reject", "next_state": "rejected", "role": "site_manager"},
        ],
        "deadlines": [{"state": "requested", "within_ms": 4 * HOUR_MS, "escalate_to": "regional_manager"}],
    }
)  # fmt: skip


@dataclass
class Desk:
    address: str
    desk: TransferDesk
    stream: str
    url: str


@pytest_asyncio.fixture
async def desk(
    tmp_path: Path, local_gateway: Gateway, nats_server: EmbeddedNats, manual_clock: ManualClock
) -> AsyncIterator[Desk]:
    secret_file, policy_file = tmp_path / "signing.key", tmp_path / "policy.toml"
    write_private(secret_file, SECRET)
    policy_file.write_text(POLICY)
    verifier = TokenVerifier([WatchedFile(secret_file, load_secret, check_interval_s=0.0)], TokenSettings())
    authorizer = Authorizer(
        WatchedFile(policy_file, load_policy, check_interval_s=0.0).current, AuthMetrics(CollectorRegistry())
    )
    documents = await connect_documents(DocumentsConfig(nats_server.url, bucket=f"docs-{uuid.uuid4().hex[:8]}"))
    bus = engine_transfer_bus_config(f"t{uuid.uuid4().hex[:8]}", nats_server.url)
    events = await start_transfer_events(bus)
    transfers = TransferDesk(local_gateway, documents, FLOW, manual_clock.now_ms, events=events)
    server, port = await start_server(
        local_gateway,
        "127.0.0.1",
        0,
        metrics=ApiMetrics(CollectorRegistry()),
        admin=local_gateway,
        auth=ServerAuth(verifier, authorizer),
        org=OrgDesk(documents, local_gateway),
        transfers=transfers,
    )
    address = f"127.0.0.1:{port}"
    async with as_user(address, "root", ["admin"]) as admin:
        await admin.put_sku(Sku("GLU"))
        for site in (Site("DC", "acme/east"), Site("BOS", "acme/east"), Site("LA", "acme/west")):
            await admin.put_site(site)
        await admin.receive("GLU", "DC", "L1", 1_000, status="available")
    yield Desk(address, transfers, bus.stream, nats_server.url)
    await server.stop(grace_s=1.0)
    await events.close()
    await documents.close()


def create(transfer_id: str, to_site: str, qty: int, unit_value: str) -> tpb.CreateTransferRequest:
    line = tpb.TransferLine(sku="GLU", qty=qty, unit_value=unit_value)
    return tpb.CreateTransferRequest(
        request_id=f"{transfer_id}-c", transfer_id=transfer_id, from_site="DC", to_site=to_site, lines=[line]
    )


async def test_value_and_distance_choose_the_chain_over_the_api(desk: Desk) -> None:
    async with as_user(desk.address, "sam", ["store"]) as sam, as_user(desk.address, "maya", ["site_manager"]) as maya:
        store, manager = authed(tpb_grpc.TransfersStub, sam), authed(tpb_grpc.TransfersStub, maya)
        near = (await store.CreateTransfer(create("V1", "BOS", 10, "50"))).transfer
        assert (near.value, near.org_distance) == ("500", 0)
        assert (await manager.ApproveTransfer(act("V1", "V1-a"))).transfer.state == "approved"
        far = (await store.CreateTransfer(create("V2", "LA", 10, "50"))).transfer
        assert far.org_distance == 2
        assert (await manager.ApproveTransfer(act("V2", "V2-a"))).transfer.state == "pending_regional"
        dear = (await store.CreateTransfer(create("V3", "BOS", 10, "100.01"))).transfer
        assert dear.value == "1000.10"
        assert (await manager.ApproveTransfer(act("V3", "V3-a"))).transfer.state == "pending_regional"
        with pytest.raises(grpc.aio.AioRpcError) as err:  # the flow decides by value: the value is required
            await store.CreateTransfer(create("V4", "BOS", 10, ""))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "lines[0].unit_value" in (err.value.details() or "")


async def test_a_transfer_past_its_deadline_is_escalated_once_and_the_region_may_act(
    desk: Desk, manual_clock: ManualClock
) -> None:
    async with (
        as_user(desk.address, "sam", ["store"]) as sam,
        as_user(desk.address, "rita", ["regional_manager"]) as rita,
    ):
        store, regional = authed(tpb_grpc.TransfersStub, sam), authed(tpb_grpc.TransfersStub, rita)
        await store.CreateTransfer(create("D1", "BOS", 5, "10"))
        with pytest.raises(grpc.aio.AioRpcError) as err:  # not yet the region's
            await regional.ApproveTransfer(act("D1", "D1-early"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert await desk.desk.escalate_overdue() == 0
        manual_clock.advance(4 * HOUR_MS + 1)
        assert await desk.desk.escalate_overdue() == 1
        assert await desk.desk.escalate_overdue() == 0  # once per state entered
        got = (await store.GetTransfer(tpb.GetTransferRequest(transfer_id="D1"))).transfer
        assert got.escalated_to == "regional_manager"
        assert [(s.action, s.state, s.actor) for s in got.steps][-1] == ("escalate", "requested", "system:deadlines")
        approved = (await regional.ApproveTransfer(act("D1", "D1-late"))).transfer
        assert (approved.state, approved.escalated_to) == ("approved", "")
    kinds = [(r["transfer_id"], r["kind"]) for _, r in await read_stream(desk.url, desk.stream)]
    assert kinds == [("D1", "transfer_created"), ("D1", "transfer_escalated"), ("D1", "transfer_approved")]


class _FailingFirst:
    """The real event sink, except that its first `failures` publishes fail as a NATS outage would."""

    def __init__(self, real: Any, failures: int) -> None:
        self.real, self.failures = real, failures

    async def publish(self, event: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("nats away")
        await self.real.publish(event)

    async def close(self) -> None:
        await self.real.close()


async def test_a_step_whose_event_failed_is_told_by_the_relay_once(
    local_gateway: Gateway, nats_server: EmbeddedNats, manual_clock: ManualClock
) -> None:
    documents = await connect_documents(DocumentsConfig(nats_server.url, bucket=f"docs-{uuid.uuid4().hex[:8]}"))
    bus = engine_transfer_bus_config(f"t{uuid.uuid4().hex[:8]}", nats_server.url)
    events = _FailingFirst(await start_transfer_events(bus), failures=1)
    desk = TransferDesk(local_gateway, documents, FLOW, manual_clock.now_ms, events=events)
    try:
        await local_gateway.put_sku(Sku("GLU"))
        for site in (Site("DC", "acme/east"), Site("BOS", "acme/east")):
            await local_gateway.put_site(site)
        await local_gateway.execute(Receive("r", "GLU", "DC", "L1", 5, status="available"))
        with pytest.raises(Unavailable):  # recorded, not told; the caller never retries
            await desk.create(Actor("sam"), "c", "O1", "DC", "BOS", [TransferLine("GLU", 1, "", "5")])
        assert (await desk.get("O1")).told == 0
        assert await desk.relay_untold() == 1
        assert (await desk.get("O1")).told == 1
        assert await desk.relay_untold() == 0
        await desk.approve(Actor("maya", ("site_manager",)), "a", "O1")  # told by its call …
        assert await desk.relay_untold() == 1  # … and again by the relay: the stream keeps one
        got = await read_stream(nats_server.url, bus.stream)
    finally:
        await events.close()
        await documents.close()
    assert [(r["transfer_id"], r["kind"]) for _, r in got] == [("O1", "transfer_created"), ("O1", "transfer_approved")]


async def test_a_transfer_the_caller_may_not_see_is_not_found_like_a_missing_one(desk: Desk) -> None:
    async with (
        as_user(desk.address, "root", ["admin"]) as root,
        as_user(desk.address, "maya", ["site_manager"]) as maya,
    ):
        admin, manager = authed(tpb_grpc.TransfersStub, root), authed(tpb_grpc.TransfersStub, maya)
        request = create("H1", "BOS", 1, "1")
        request.from_site = "LA"  # maya reads DC only
        await admin.CreateTransfer(request)
        calls = [
            lambda: manager.GetTransfer(tpb.GetTransferRequest(transfer_id="H1")),
            lambda: manager.ApproveTransfer(act("H1", "H1-a")),
            lambda: manager.CancelTransfer(act("H1", "H1-x")),
        ]
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as hidden:
                await call()
            assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
            assert "transfer 'H1'" in (hidden.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await manager.GetTransfer(tpb.GetTransferRequest(transfer_id="H2"))
        assert missing.value.details() == (hidden.value.details() or "").replace("H1", "H2")


async def test_with_authentication_off_anyone_may_take_every_step(local_gateway: Gateway) -> None:
    documents = InMemoryDocuments()
    await local_gateway.put_sku(Sku("GLU"))
    for site in (Site("DC", "acme/east"), Site("BOS", "acme/east")):
        await local_gateway.put_site(site)
    await local_gateway.execute(Receive("r", "GLU", "DC", "L1", 5, status="available"))
    server, port = await start_server(
        local_gateway,
        "127.0.0.1",
        0,
        metrics=ApiMetrics(CollectorRegistry()),
        transfers=TransferDesk(local_gateway, documents, FLOW),
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = tpb_grpc.TransfersStub(channel)
            await stub.CreateTransfer(create("N1", "BOS", 2, "3"))
            approved = (await stub.ApproveTransfer(act("N1", "N1-a"))).transfer  # the same nobody asked
            assert (approved.state, approved.requested_by, approved.steps[-1].actor) == (
                "approved",
                "anonymous",
                "anonymous",
            )
    finally:
        await server.stop(grace_s=0.5)
