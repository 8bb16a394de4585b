"""Transfers and the org tree over real gRPC: in-process shards, a real nats-server for
the documents (JetStream key-value), tokens and grants checked (issue 13 items 1–2).

The flow end to end (create → approve → ship → partial receipt → final receipt), the stock
at each step (held at the source, in transit at the destination, received), self-approval
refused, a second approval level by quantity, a cancel after shipping refused, a cancel
that releases the hold, idempotent retries of every step, and org nodes moved with their
sites so roll-ups follow.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from prometheus_client import CollectorRegistry

from adapters.auth.files import WatchedFile, load_policy, load_secret, write_private
from adapters.nats.bus import engine_transfer_bus_config, start_transfer_events, transfer_event_from_record
from adapters.nats.documents import DocumentsConfig, JetStreamDocuments, connect_documents
from adapters.nats.ingest.config import IngestConfig, Wms
from adapters.nats.ingest.consumer import IngestMetrics
from adapters.nats.journal import JournalConfig, NatsLink
from adapters.nats.server import EmbeddedNats
from engine.api.auth import AuthMetrics, Authorizer, ServerAuth, TokenSettings, TokenVerifier, mint_token
from engine.api.client import LotwiseClient, RetryPolicy
from engine.api.errors import status_of_rpc_error
from engine.api.gen.lotwise.v1 import admin_pb2 as apb
from engine.api.gen.lotwise.v1 import admin_pb2_grpc as apb_grpc
from engine.api.gen.lotwise.v1 import transfers_pb2 as tpb
from engine.api.gen.lotwise.v1 import transfers_pb2_grpc as tpb_grpc
from engine.api.server import ApiMetrics, start_server
from engine.bootstrap.documents import WmsTransferSteps
from engine.bootstrap.ingest import start_ingest
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension
from engine.domain.clock import ManualClock
from engine.domain.documents import RevisionMismatch, Stored
from engine.domain.inventory import StockQuery
from engine.domain.transfer_flow import ReceiptLine, Transfer, TransferLine, default_flow
from engine.runtime.gateway import Gateway
from engine.runtime.gateway.orgtree import OrgDesk
from engine.runtime.gateway.transfers import Actor, TransferDesk

SECRET = b"t" * 48
POLICY = """
[roles]
admin = ["read", "read_cost", "reserve", "receive", "move", "adjust", "count", "admin", "approve_transfer"]
store = ["read", "receive", "move"]
approver = ["read", "approve_transfer"]

[[grants]]
group = "admin"
role = "admin"
org = ""

[[grants]]
group = "store"
role = "store"
org = "acme"

[[grants]]
group = "site_manager"
role = "approver"
site = "DC"

[[grants]]
group = "regional_manager"
role = "approver"
org = "acme"
"""
DAY_MS = 86_400_000
S = TypeVar("S")


@dataclass
class Engine:
    address: str
    gateway: Gateway
    documents: JetStreamDocuments


@pytest_asyncio.fixture
async def engine(
    tmp_path: Path, local_gateway: Gateway, nats_server: EmbeddedNats, manual_clock: ManualClock
) -> AsyncIterator[Engine]:
    secret_file, policy_file = tmp_path / "signing.key", tmp_path / "policy.toml"
    write_private(secret_file, SECRET)
    policy_file.write_text(POLICY)
    metrics = AuthMetrics(CollectorRegistry())
    verifier = TokenVerifier([WatchedFile(secret_file, load_secret, check_interval_s=0.0)], TokenSettings())
    authorizer = Authorizer(WatchedFile(policy_file, load_policy, check_interval_s=0.0).current, metrics)
    documents = await connect_documents(DocumentsConfig(nats_server.url, bucket=f"docs-{uuid.uuid4().hex[:8]}"))
    server, port = await start_server(
        local_gateway,
        "127.0.0.1",
        0,
        metrics=ApiMetrics(CollectorRegistry()),
        admin=local_gateway,
        auth=ServerAuth(verifier, authorizer),
        org=OrgDesk(documents, local_gateway),
        transfers=TransferDesk(local_gateway, documents, default_flow(), manual_clock.now_ms),
    )
    address = f"127.0.0.1:{port}"
    now = manual_clock.now_ms()
    async with as_user(address, "root", ["admin"]) as admin:
        await admin.put_sku(Sku("GLU"))
        await admin.put_sku(Sku("IVC"))
        for site in (Site("DC", "acme/east"), Site("BOS", "acme/east"), Site("NYC", "acme/east")):
            await admin.put_site(site)
        await admin.receive("GLU", "DC", "L-late", 300, status="available", expires_at_ms=now + 400 * DAY_MS)
        await admin.receive("GLU", "DC", "L-early", 100, status="available", expires_at_ms=now + 200 * DAY_MS)
        await admin.receive("IVC", "DC", "V1", 1_000, status="available", expires_at_ms=now + 300 * DAY_MS)
    yield Engine(address, local_gateway, documents)
    await server.stop(grace_s=1.0)
    await documents.close()


def authed(stub_class: Callable[[grpc.aio.Channel], S], client: LotwiseClient) -> S:
    """A stub on the client's channel whose every call carries the client's token (the
    client sends it per call, not on the channel)."""
    return cast(S, _WithMetadata(stub_class(client.channel), client.metadata))


class _WithMetadata:
    def __init__(self, stub: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self._stub, self._metadata = stub, metadata

    def __getattr__(self, name: str) -> Any:
        return functools.partial(getattr(self._stub, name), metadata=self._metadata)


def as_user(address: str, subject: str, groups: list[str]) -> LotwiseClient:
    token = mint_token(SECRET, subject, groups)
    return LotwiseClient(address, token=token, retry=RetryPolicy(max_attempts=1), timeout_s=10)


@pytest_asyncio.fixture
async def people(engine: Engine) -> AsyncIterator[dict[str, tpb_grpc.TransfersStub]]:
    clients = {
        "store": as_user(engine.address, "sam", ["store"]),
        "manager": as_user(engine.address, "maya", ["site_manager"]),
        "regional": as_user(engine.address, "rita", ["regional_manager"]),
        "admin": as_user(engine.address, "root", ["admin"]),
    }
    for c in clients.values():
        await c.__aenter__()
    yield {name: authed(tpb_grpc.TransfersStub, c) for name, c in clients.items()}
    for c in clients.values():
        await c.__aexit__(None, None, None)


def reason(err: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    for any_ in status_of_rpc_error(err).details:
        info = error_details_pb2.ErrorInfo()
        if any_.Unpack(info):
            return info.reason, dict(info.metadata)
    return "", {}


async def stock(gateway: Gateway, sku: str, site: str) -> dict[str, tuple[int, int]]:
    """status → (qty, held) of one pair."""
    seen = await gateway.get_availability(sku, site, (Dimension.STATUS,))
    return {dict(r.group)["status"]: (r.qty, r.held) for r in seen.rows if r.qty}


def create(transfer_id: str, qty: int, request_id: str = "", lot: str = "") -> tpb.CreateTransferRequest:
    return tpb.CreateTransferRequest(
        request_id=request_id or f"{transfer_id}-create",
        transfer_id=transfer_id,
        from_site="DC",
        to_site="BOS",
        lines=[tpb.TransferLine(sku="GLU", qty=qty, lot_id=lot)],
    )


def act(transfer_id: str, request_id: str) -> tpb.TransferActionRequest:
    return tpb.TransferActionRequest(request_id=request_id, transfer_id=transfer_id)


async def test_the_flow_end_to_end_with_a_partial_receipt(
    engine: Engine, people: dict[str, tpb_grpc.TransfersStub]
) -> None:
    store, manager = people["store"], people["manager"]
    created = (await store.CreateTransfer(create("T1", 120))).transfer
    assert (created.state, created.requested_by) == ("requested", "sam")

    approved = (await manager.ApproveTransfer(act("T1", "T1-ok"))).transfer
    assert approved.state == "approved"
    assert await stock(engine.gateway, "GLU", "DC") == {"available": (400, 120)}  # held, FEFO over both lots

    shipped = (
        await store.ShipTransfer(tpb.ShipTransferRequest(request_id="T1-ship", transfer_id="T1", eta_ms=5))
    ).transfer
    assert (shipped.state, shipped.eta_ms) == ("shipped", 5)
    assert {(lot.lot_id, lot.shipped_qty) for lot in shipped.lots} == {("L-early", 100), ("L-late", 20)}
    assert await stock(engine.gateway, "GLU", "DC") == {"available": (280, 0)}
    assert await stock(engine.gateway, "GLU", "BOS") == {"in_transit_in": (120, 0)}
    rows = await engine.gateway.query_stock(StockQuery(skus=("GLU",), group_by=(Dimension.STATUS,)))
    assert {(r.site, dict(r.row.group)["status"]): r.row.qty for r in rows} == {
        ("DC", "available"): 280,
        ("BOS", "in_transit_in"): 120,
    }

    receipt = tpb.ReceiveTransferRequest(
        request_id="T1-r1", transfer_id="T1", lines=[tpb.ReceiptLine(sku="GLU", qty=90, damaged_qty=5)]
    )
    partial = (await store.ReceiveTransfer(receipt)).transfer
    assert partial.state == "shipped"  # 25 still on the way
    assert await stock(engine.gateway, "GLU", "BOS") == {
        "available": (90, 0),
        "damaged": (5, 0),
        "in_transit_in": (25, 0),
    }
    again = (await store.ReceiveTransfer(receipt)).transfer  # a retry changes nothing
    assert again == partial
    assert await stock(engine.gateway, "GLU", "BOS") == {
        "available": (90, 0),
        "damaged": (5, 0),
        "in_transit_in": (25, 0),
    }

    final = tpb.ReceiveTransferRequest(
        request_id="T1-r2", transfer_id="T1", lines=[tpb.ReceiptLine(sku="GLU", lot_id="L-late", qty=15)], final=True
    )
    done = (await store.ReceiveTransfer(final)).transfer
    assert done.state == "received"
    assert sum(lot.short_qty for lot in done.lots) == 10
    assert await stock(engine.gateway, "GLU", "BOS") == {"available": (105, 0), "damaged": (5, 0)}
    assert [t.state for t in done.state_times] == ["requested", "approved", "shipped", "received"]
    assert all(t.left_at_ms >= t.entered_at_ms for t in done.state_times[:-1])
    assert [s.actor for s in done.steps] == ["sam", "maya", "sam", "sam", "sam"]


async def test_self_approval_is_refused_with_details(engine: Engine, people: dict[str, tpb_grpc.TransfersStub]) -> None:
    async with as_user(engine.address, "maya", ["site_manager", "store"]) as maya:
        stub = authed(tpb_grpc.TransfersStub, maya)
        await stub.CreateTransfer(create("T2", 10))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ApproveTransfer(act("T2", "T2-ok"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(err.value) == ("SELF_APPROVAL", {"requested_by": "maya", "actor": "maya", "action": "approve"})
    assert await stock(engine.gateway, "GLU", "DC") == {"available": (400, 0)}


async def test_a_large_transfer_needs_a_second_level_and_the_right_role(
    engine: Engine, people: dict[str, tpb_grpc.TransfersStub]
) -> None:
    await people["store"].CreateTransfer(
        tpb.CreateTransferRequest(
            request_id="T3-c",
            transfer_id="T3",
            from_site="DC",
            to_site="NYC",
            lines=[tpb.TransferLine(sku="IVC", qty=600)],
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await people["regional"].ApproveTransfer(act("T3", "T3-a0"))  # the first level is the site manager's
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason(err.value)[1]["roles"] == "site_manager"
    first = (await people["manager"].ApproveTransfer(act("T3", "T3-a1"))).transfer
    assert first.state == "pending_regional"
    assert await stock(engine.gateway, "IVC", "DC") == {"available": (1_000, 0)}  # nothing held yet
    second = (await people["regional"].ApproveTransfer(act("T3", "T3-a2"))).transfer
    assert second.state == "approved"
    assert await stock(engine.gateway, "IVC", "DC") == {"available": (1_000, 600)}


async def test_cancel_releases_before_shipping_and_is_refused_after(
    engine: Engine, people: dict[str, tpb_grpc.TransfersStub]
) -> None:
    store, manager = people["store"], people["manager"]
    await store.CreateTransfer(create("T4", 30))
    await manager.ApproveTransfer(act("T4", "T4-ok"))
    assert await stock(engine.gateway, "GLU", "DC") == {"available": (400, 30)}
    cancelled = (await store.CancelTransfer(act("T4", "T4-x"))).transfer
    assert cancelled.state == "cancelled"
    assert await stock(engine.gateway, "GLU", "DC") == {"available": (400, 0)}

    await store.CreateTransfer(create("T5", 30))
    await manager.ApproveTransfer(act("T5", "T5-ok"))
    await store.ShipTransfer(tpb.ShipTransferRequest(request_id="T5-ship", transfer_id="T5"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await store.CancelTransfer(act("T5", "T5-x"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(err.value)[0] == "TRANSFER_SHIPPED"
    assert await stock(engine.gateway, "GLU", "BOS") == {"in_transit_in": (30, 0)}


async def test_every_step_is_idempotent_and_a_reused_id_is_refused(
    engine: Engine, people: dict[str, tpb_grpc.TransfersStub]
) -> None:
    store, manager = people["store"], people["manager"]
    first = await store.CreateTransfer(create("T6", 40))
    assert await store.CreateTransfer(create("T6", 40)) == first
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await store.CreateTransfer(create("T6", 41))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    approved = await manager.ApproveTransfer(act("T6", "T6-ok"))
    assert await manager.ApproveTransfer(act("T6", "T6-ok")) == approved
    ship = tpb.ShipTransferRequest(request_id="T6-ship", transfer_id="T6", eta_ms=9)
    shipped = await store.ShipTransfer(ship)
    assert await store.ShipTransfer(ship) == shipped
    assert await stock(engine.gateway, "GLU", "DC") == {"available": (360, 0)}
    assert await stock(engine.gateway, "GLU", "BOS") == {"in_transit_in": (40, 0)}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await store.ShipTransfer(tpb.ShipTransferRequest(request_id="T6-ship", transfer_id="T6", eta_ms=10))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_bad_input_and_missing_grants_are_typed(
    engine: Engine, people: dict[str, tpb_grpc.TransfersStub]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await people["store"].CreateTransfer(
            tpb.CreateTransferRequest(request_id="r", transfer_id="T7", from_site="DC", to_site="DC")
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await people["store"].CreateTransfer(create("T7", 450))  # more than DC has unheld
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await people["manager"].ApproveTransfer(act("T7", "T7-ok"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(err.value)[0] == "INSUFFICIENT_STOCK"
    assert (await people["store"].GetTransfer(tpb.GetTransferRequest(transfer_id="T7"))).transfer.state == "requested"
    assert await stock(engine.gateway, "GLU", "DC") == {"available": (400, 0)}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await people["store"].GetTransfer(tpb.GetTransferRequest(transfer_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    await people["store"].CreateTransfer(create("T8", 10))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await people["regional"].ShipTransfer(tpb.ShipTransferRequest(request_id="s", transfer_id="T8"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_org_nodes_move_with_their_sites(engine: Engine) -> None:
    async with as_user(engine.address, "root", ["admin"]) as admin:
        org = authed(apb_grpc.AdminStub, admin)
        await org.PutOrgNode(apb.PutOrgNodeRequest(node=apb.OrgNode(node_id="acme", legal_entity=True)))
        for node_id in ("east", "west"):
            await org.PutOrgNode(apb.PutOrgNodeRequest(node=apb.OrgNode(node_id=node_id, parent_id="acme")))
        await org.PutOrgNode(apb.PutOrgNodeRequest(node=apb.OrgNode(node_id="metro", parent_id="east")))
        await admin.put_site(Site("MET", "acme/east/metro"))
        await admin.receive("GLU", "MET", "M1", 7, status="available")
        moved = await org.MoveOrgNode(apb.MoveOrgNodeRequest(node_id="metro", new_parent_id="west"))
        assert (moved.node.path, moved.sites_moved) == ("acme/west/metro", 1)
        listed = await org.ListOrgNodes(apb.ListOrgNodesRequest(org_prefix="acme/west"))
        assert [n.path for n in listed.nodes] == ["acme/west", "acme/west/metro"]
        west = await engine.gateway.query_stock(StockQuery(skus=("GLU",), org_prefix="acme/west"))
        assert sum(r.row.qty for r in west) == 7
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await org.MoveOrgNode(apb.MoveOrgNodeRequest(node_id="acme", new_parent_id="metro"))
        assert reason(err.value)[0] == "ORG_CYCLE"
    async with as_user(engine.address, "sam", ["store"]) as sam:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await authed(apb_grpc.AdminStub, sam).PutOrgNode(apb.PutOrgNodeRequest(node=apb.OrgNode(node_id="x")))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


class FailingOnce:
    """The real document store, whose next write is lost as if the gateway died before it."""

    def __init__(self, inner: JetStreamDocuments) -> None:
        self.inner = inner
        self.fail_next = False

    async def get(self, key: str) -> Stored | None:
        return await self.inner.get(key)

    async def put(self, key: str, value: dict[str, Any], expected_revision: int) -> int:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("the gateway died before the step was recorded")
        return await self.inner.put(key, value, expected_revision)

    async def close(self) -> None:
        return None


async def test_a_crash_between_the_stock_and_the_record_loses_and_doubles_nothing(
    engine: Engine, manual_clock: ManualClock
) -> None:
    store = FailingOnce(engine.documents)
    desk = TransferDesk(engine.gateway, store, default_flow(), manual_clock.now_ms)
    sam, maya = Actor("sam", ("store",)), Actor("maya", ("site_manager",))
    await desk.create(sam, "c", "T9", "DC", "BOS", [TransferLine("GLU", 50)])
    for step in ("approve", "ship", "receive"):
        store.fail_next = True
        with pytest.raises(ConnectionError):
            await run_step(desk, step, sam, maya)
        done = await run_step(desk, step, sam, maya)  # the caller's retry, same request id
    assert done.state == "received"
    assert await stock(engine.gateway, "GLU", "DC") == {"available": (350, 0)}
    assert await stock(engine.gateway, "GLU", "BOS") == {"available": (50, 0)}
    assert [s.action for s in done.steps] == ["create", "approve", "ship", "receive"]


async def run_step(desk: TransferDesk, step: str, sam: Actor, maya: Actor) -> Transfer:
    if step == "approve":
        return await desk.approve(maya, "a", "T9")
    if step == "ship":
        return await desk.ship(sam, "s", "T9")
    return await desk.receive(sam, "r", "T9", [ReceiptLine("GLU", 50)])


async def test_documents_refuse_a_write_based_on_a_stale_revision(engine: Engine) -> None:
    docs = engine.documents
    first = await docs.put("race", {"n": 1}, 0)
    with pytest.raises(RevisionMismatch):
        await docs.put("race", {"n": 2}, 0)  # created meanwhile
    second = await docs.put("race", {"n": 2}, first)
    with pytest.raises(RevisionMismatch):
        await docs.put("race", {"n": 3}, first)  # another writer got there first
    stored = await docs.get("race")
    assert stored == Stored("race", {"n": 2}, second)
    assert await docs.get("never-written") is None


async def test_list_transfers_filters_pages_and_shows_only_what_the_caller_may_read(
    engine: Engine, people: dict[str, tpb_grpc.TransfersStub], manual_clock: ManualClock
) -> None:
    admin, store, manager = people["admin"], people["store"], people["manager"]
    async with as_user(engine.address, "root", ["admin"]) as root:
        await root.put_site(Site("FAR", "other/west"))  # outside every grant but the admin's
        await root.put_site(Site("FAR2", "other/west"))
    start = manual_clock.now_ms()
    for i in range(5):
        await store.CreateTransfer(create(f"L{i}", 1 + i))
        manual_clock.advance(1_000)
    far = tpb.CreateTransferRequest(
        request_id="far",
        transfer_id="LFAR",
        from_site="FAR",
        to_site="FAR2",
        lines=[tpb.TransferLine(sku="GLU", qty=1)],
    )
    await admin.CreateTransfer(far)
    await manager.ApproveTransfer(act("L1", "L1-ok"))

    async def ids(stub: tpb_grpc.TransfersStub, **kw: Any) -> list[str]:
        return [t.transfer_id for t in (await stub.ListTransfers(tpb.ListTransfersRequest(**kw))).transfers]

    assert await ids(admin) == ["L0", "L1", "L2", "L3", "L4", "LFAR"]  # oldest request first
    assert await engine.documents.keys("nothing.") == []  # an empty listing ends too
    assert await ids(store) == ["L0", "L1", "L2", "L3", "L4"]  # FAR is not in the store's org
    assert await ids(admin, site="FAR2") == ["LFAR"]  # a destination matches too
    assert await ids(admin, state="approved") == ["L1"]
    assert await ids(admin, created_after_ms=start + 1_000, created_before_ms=start + 3_000) == ["L1", "L2"]

    pages: list[list[str]] = []
    token = ""
    while True:
        page = await store.ListTransfers(tpb.ListTransfersRequest(page_size=2, page_token=token))
        pages.append([t.transfer_id for t in page.transfers])
        token = page.next_page_token
        if not token:
            break
    assert pages == [["L0", "L1"], ["L2", "L3"], ["L4"]]

    for bad in (tpb.ListTransfersRequest(page_size=501), tpb.ListTransfersRequest(page_token="nonsense")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await store.ListTransfers(bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_every_step_is_a_business_event_once_even_when_retried(
    engine: Engine, nats_server: EmbeddedNats, manual_clock: ManualClock
) -> None:
    config = engine_transfer_bus_config(f"t{uuid.uuid4().hex[:8]}", nats_server.url)
    events = await start_transfer_events(config)
    desk = TransferDesk(engine.gateway, engine.documents, default_flow(), manual_clock.now_ms, events=events)
    sam, maya, rita = Actor("sam"), Actor("maya", ("site_manager",)), Actor("rita", ("regional_manager",))
    try:
        await desk.create(sam, "c", "E1", "DC", "BOS", [TransferLine("IVC", 600)])
        await desk.approve(maya, "a1", "E1")  # to pending_regional: no stock moves
        await desk.approve(maya, "a1", "E1")  # a retry: the same event, stored once
        await desk.approve(rita, "a2", "E1")
        await desk.ship(sam, "s", "E1", eta_ms=7)
        await desk.receive(sam, "r", "E1", [ReceiptLine("IVC", 600)], final=True)
        await desk.create(sam, "c", "E2", "DC", "NYC", [TransferLine("GLU", 5)])
        await desk.reject(maya, "x", "E2", note="not this week")
        await desk.create(sam, "c", "E3", "DC", "BOS", [TransferLine("GLU", 5)])
        await desk.cancel(sam, "k", "E3")
        got = await read_stream(nats_server.url, config.stream)
    finally:
        await events.close()
    assert [(r["transfer_id"], r["kind"], r["state"]) for _, r in got] == [
        ("E1", "transfer_created", "requested"),
        ("E1", "transfer_approved", "pending_regional"),
        ("E1", "transfer_approved", "approved"),
        ("E1", "transfer_shipped", "shipped"),
        ("E1", "transfer_received", "received"),
        ("E2", "transfer_created", "requested"),
        ("E2", "transfer_rejected", "rejected"),
        ("E3", "transfer_created", "requested"),
        ("E3", "transfer_cancelled", "cancelled"),
    ]
    subject, rejected = got[6]
    assert subject == f"{config.subject_prefix}.transfer_rejected.DC.NYC"
    assert (rejected["actor"], rejected["note"], rejected["previous_state"]) == ("maya", "not this week", "requested")
    assert transfer_event_from_record(got[3][1]).eta_ms == 7


async def read_stream(url: str, stream: str) -> list[tuple[str, dict[str, Any]]]:
    """Every message of the stream, in order: (subject, JSON body), headers checked."""
    link = NatsLink(JournalConfig(url=url, client_name="test-reader"))
    await link.connect()
    try:
        _, js = await link.client()
        last = int((await js.stream_info(stream)).state.last_seq or 0)
        out = []
        for seq in range(1, last + 1):
            msg = await js.get_msg(stream, seq)
            headers = msg.headers or {}
            assert headers["Lotwise-Event-Kind"] == json.loads(msg.data or b"{}")["kind"]
            out.append((msg.subject, json.loads(msg.data or b"{}")))
        return out
    finally:
        await link.close()


async def test_wms_events_over_nats_ship_and_receive_the_transfer_they_name(
    engine: Engine, nats_server: EmbeddedNats, manual_clock: ManualClock
) -> None:
    namespace = f"x{uuid.uuid4().hex[:8]}"
    desk = TransferDesk(engine.gateway, engine.documents, default_flow(), manual_clock.now_ms)
    fast = {"backoff_s": (0.05, 0.1), "ack_wait_s": 1.0, "idle_wait_s": 0.2}
    config = IngestConfig(wms=Wms(sites={}), consumer=fast).with_defaults(namespace)
    ingest = await start_ingest(
        engine.gateway,
        config,
        namespace=namespace,
        nats_url=nats_server.url,
        metrics=IngestMetrics(registry=CollectorRegistry()),
        transfers=WmsTransferSteps(desk),
    )
    link = NatsLink(JournalConfig(url=nats_server.url, client_name="test-wms"))
    await link.connect()
    try:
        await desk.create(Actor("sam"), "c", "W1", "DC", "BOS", [TransferLine("GLU", 30)])
        await desk.approve(Actor("maya", ("site_manager",)), "a", "W1")
        _, js = await link.client()
        subject = f"lotwise.{namespace}.in.wms.WH"
        out = {"event_id": "wms-out-1", "type": "transfer_out", "site": "DC", "to_site": "BOS", "transfer_id": "W1"}
        out["lines"] = [{"sku": "GLU", "qty": 30}]
        await js.publish(subject, json.dumps(out).encode())
        await ingest.consumer.wait_idle(timeout_s=30)
        letters = await ingest.dead_letters.list(limit=10)
        assert (await desk.get("W1")).state == "shipped", (letters, await ingest.consumer.lag())
        assert await stock(engine.gateway, "GLU", "BOS") == {"in_transit_in": (30, 0)}
        arrive = {"event_id": "wms-in-1", "type": "transfer_in", "site": "BOS", "transfer_id": "W1"}
        arrive["lines"] = [{"sku": "GLU", "lot": "L-early", "qty": 30}]
        await js.publish(subject, json.dumps(arrive).encode())
        await ingest.consumer.wait_idle(timeout_s=30)
        done = await desk.get("W1")
        assert (done.state, [s.actor for s in done.steps]) == ("received", ["sam", "maya", "wms", "wms"])
        assert await stock(engine.gateway, "GLU", "DC") == {"available": (370, 0)}  # shipped once, not twice
        assert await stock(engine.gateway, "GLU", "BOS") == {"available": (30, 0)}
        assert await ingest.dead_letters.list(limit=10) == []
    finally:
        await link.close()
        await ingest.stop()


async def test_replenishment_counts_units_in_transit_by_the_ship_steps_eta(
    engine: Engine, people: dict[str, tpb_grpc.TransfersStub], manual_clock: ManualClock
) -> None:
    """Two transfers shipped over gRPC to BOS: 60 GLU due in 40 days, 20 with no ETA. The
    desk lists both with their ETAs; replenishment at BOS (7-day lead times) counts the 20
    in its position and only shows the 60, which arrive after an order placed today would."""
    from adapters.memory.replenish import InMemoryReplenishStore
    from engine.replenish.planning import PolicyPlanner
    from engine.replenish.service import ReplenishService
    from engine.replenish.store import LeadTimeSample
    from engine.replenish.store import SupplierTerms as ReplenishTerms

    store, manager = people["store"], people["manager"]
    eta = manual_clock.now_ms() + 40 * DAY_MS
    for transfer_id, qty, eta_ms in (("T-far", 60, eta), ("T-now", 20, 0)):
        await store.CreateTransfer(create(transfer_id, qty))
        await manager.ApproveTransfer(act(transfer_id, f"{transfer_id}-ok"))
        ship = tpb.ShipTransferRequest(request_id=f"{transfer_id}-ship", transfer_id=transfer_id, eta_ms=eta_ms)
        assert (await store.ShipTransfer(ship)).transfer.eta_ms == eta_ms
    assert await stock(engine.gateway, "GLU", "BOS") == {"in_transit_in": (80, 0)}

    desk = TransferDesk(engine.gateway, engine.documents, default_flow(), manual_clock.now_ms)
    assert sorted(await desk.arriving("GLU", "BOS")) == [(20, 0), (60, eta)]
    assert await desk.arriving("GLU", "DC") == []  # the source: nothing arrives there
    assert await desk.arriving("IVC", "BOS") == []

    service = ReplenishService(InMemoryReplenishStore(), engine.gateway, PolicyPlanner(), manual_clock, transit=desk)
    leads = tuple(LeadTimeSample(7, manual_clock.now_ms() - i * DAY_MS) for i in (1, 2, 3))
    await service.put_supplier(ReplenishTerms("GLU", "BOS", "acme-dc", lead_times=leads))
    panel = (await service.recompute("GLU", "BOS", "schedule")).panel
    assert (panel.in_transit_within, panel.in_transit_beyond, panel.inventory_position) == (20, 60, 20)
