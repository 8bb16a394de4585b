"""Stock health over real gRPC with tokens and grants: in-process shards, a real
nats-server for the alert bucket, the health stream and the documents (issue 15).

Expiry rules (the hospital cabinet's lot 30 days from expiry raises one promotion task
at the front warehouse; at expiry the stock moves to `expired` by a journaled movement),
alerts scoped by grants (a clerk sees and acknowledges only alerts of their site),
reconciliation (an alert and a proposal after two consecutive real differences), shelf
counts (lists for the sales rep, low confidence never proposes), and zero silent
adjustments: no path changes stock until another person approves.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from prometheus_client import CollectorRegistry

from adapters.auth.files import WatchedFile, load_policy, load_secret, write_private
from adapters.nats.documents import DocumentsConfig, JetStreamDocuments, connect_documents
from adapters.nats.health import HealthNats, HealthNatsConfig, connect_health
from adapters.nats.server import EmbeddedNats
from engine.api.auth import AuthMetrics, Authorizer, ServerAuth, TokenSettings, TokenVerifier, mint_token
from engine.api.client import LotwiseClient, RetryPolicy
from engine.api.errors import status_of_rpc_error
from engine.api.gen.lotwise.v1 import alerts_pb2 as apb
from engine.api.gen.lotwise.v1 import alerts_pb2_grpc as apb_grpc
from engine.api.gen.lotwise.v1 import health_pb2 as hpb
from engine.api.gen.lotwise.v1 import health_pb2_grpc as hpb_grpc
from engine.api.server import ApiMetrics, start_server
from engine.bootstrap.health import HealthMetrics, HealthParts, HealthRuntime, build_health
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension
from engine.domain.clock import ManualClock
from engine.domain.model import MS_PER_DAY
from engine.health.alerts import AlertScope, Condition
from engine.runtime.gateway import Gateway
from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"h" * 48
POLICY = """
[roles]
admin = ["read", "read_cost", "reserve", "receive", "move", "adjust", "count", "admin", "approve_transfer"]
clerk = ["read", "count"]
manager = ["read", "count", "adjust"]

[[grants]]
group = "admin"
role = "admin"
org = ""

[[grants]]
group = "fw_clerk"
role = "clerk"
site = "FW-BOS"

[[grants]]
group = "cw_clerk"
role = "clerk"
site = "CW-1"

[[grants]]
group = "fw_manager"
role = "manager"
site = "FW-BOS"
"""


@dataclass
class Engine:
    address: str
    gateway: Gateway
    health: HealthRuntime
    nats_url: str
    prefix: str  # of this test's alert and health subjects
    stream: str


@pytest_asyncio.fixture
async def engine(
    tmp_path: Path, local_gateway: Gateway, nats_server: EmbeddedNats, manual_clock: ManualClock
) -> AsyncIterator[Engine]:
    secret_file, policy_file = tmp_path / "signing.key", tmp_path / "policy.toml"
    write_private(secret_file, SECRET)
    policy_file.write_text(POLICY)
    verifier = TokenVerifier([WatchedFile(secret_file, load_secret, check_interval_s=0.0)], TokenSettings())
    authorizer = Authorizer(
        WatchedFile(policy_file, load_policy, check_interval_s=0.0).current, AuthMetrics(CollectorRegistry())
    )
    tag = uuid.uuid4().hex[:8]
    documents: JetStreamDocuments = await connect_documents(DocumentsConfig(nats_server.url, bucket=f"docs-{tag}"))
    config = HealthNatsConfig(
        url=nats_server.url,
        bucket=f"alerts-{tag}",
        stream=f"HEALTH_{tag}",
        alerts_prefix=f"t{tag}.alerts",
        events_prefix=f"t{tag}.health",
        bucket_max_bytes=8 << 20,
        stream_max_bytes=8 << 20,
    )
    nats_parts: HealthNats = await connect_health(config)
    settings = Settings(
        health_expiry_rules=ROOT / "engine/health/data/expiry_rules.example.json",
        health_tolerances=None,
        _env_file=None,  # type: ignore[call-arg]
    )
    runtime = build_health(
        settings,
        local_gateway,
        local_gateway.statuses,
        HealthParts(nats_parts.alerts, nats_parts.publisher, documents),
        clock=manual_clock,
        metrics=HealthMetrics(CollectorRegistry()),
    )
    server, port = await start_server(
        local_gateway,
        "127.0.0.1",
        0,
        metrics=ApiMetrics(CollectorRegistry()),
        auth=ServerAuth(verifier, authorizer),
        stock_health=runtime.desks(),
    )
    address = f"127.0.0.1:{port}"
    async with as_user(address, "root", ["admin"]) as admin:
        for sku in ("MED-STENT", "FOOD-MILK"):
            await admin.put_sku(Sku(sku))
        for site in (Site("FW-BOS", "medline/east", "front_warehouse"), Site("CW-1", "medline/east", "cabinet")):
            await admin.put_site(site)
    yield Engine(address, local_gateway, runtime, nats_server.url, f"t{tag}", config.stream)
    await server.stop(grace_s=1.0)
    await nats_parts.close()
    await documents.close()


def as_user(address: str, subject: str, groups: list[str]) -> LotwiseClient:
    return LotwiseClient(
        address, token=mint_token(SECRET, subject, groups), retry=RetryPolicy(max_attempts=1), timeout_s=10
    )


class Person:
    def __init__(self, client: LotwiseClient) -> None:
        self.client = client
        md = client.metadata
        self.alerts = _Bound(apb_grpc.AlertsStub(client.channel), md)
        self.health = _Bound(hpb_grpc.StockHealthStub(client.channel), md)


class _Bound:
    def __init__(self, stub: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self._stub, self._metadata = stub, metadata

    def __getattr__(self, name: str) -> Any:
        return functools.partial(getattr(self._stub, name), metadata=self._metadata)


@pytest_asyncio.fixture
async def people(engine: Engine) -> AsyncIterator[dict[str, Person]]:
    who = {
        "admin": ("root", ["admin"]),
        "fw_clerk": ("fay", ["fw_clerk"]),
        "cw_clerk": ("cal", ["cw_clerk"]),
        "fw_manager": ("max", ["fw_manager"]),
    }
    clients = {name: as_user(engine.address, sub, groups) for name, (sub, groups) in who.items()}
    for c in clients.values():
        await c.__aenter__()
    yield {name: Person(c) for name, c in clients.items()}
    for c in clients.values():
        await c.__aexit__(None, None, None)


def reason(err: grpc.aio.AioRpcError) -> str:
    for any_ in status_of_rpc_error(err).details:
        info = error_details_pb2.ErrorInfo()
        if any_.Unpack(info):
            return str(info.reason)
    return ""


async def stock(gateway: Gateway, sku: str, site: str) -> dict[str, int]:
    seen = await gateway.get_availability(sku, site, (Dimension.STATUS,))
    return {dict(r.group)["status"]: r.qty for r in seen.rows if r.qty}


async def published(engine: Engine, subject: str) -> list[dict[str, Any]]:
    nc = await nats.connect(engine.nats_url)
    try:
        sub = await nc.jetstream().subscribe(subject, stream=engine.stream, ordered_consumer=True)
        out: list[dict[str, Any]] = []
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            out.append(json.loads(msg.data))
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


async def test_a_lot_30_days_from_expiry_raises_one_promotion_task(
    engine: Engine, people: dict[str, Person], manual_clock: ManualClock
) -> None:
    admin = people["admin"]
    now = manual_clock.now_ms()
    await admin.client.receive(
        "MED-STENT", "FW-BOS", "LOT-30", 12, status="available", expires_at_ms=now + 30 * MS_PER_DAY
    )
    await admin.client.receive(
        "MED-STENT", "FW-BOS", "LOT-90", 5, status="available", expires_at_ms=now + 90 * MS_PER_DAY
    )
    first = await admin.health.RunExpirySweep(hpb.RunExpirySweepRequest())
    again = await admin.health.RunExpirySweep(hpb.RunExpirySweepRequest())
    assert (first.promotion_tasks, again.promotion_tasks) == (1, 0)  # once per lot and site
    tasks = await published(engine, f"{engine.prefix}.health.promotion_task.>")
    assert len(tasks) == 1
    body = tasks[0]["body"]
    assert tasks[0]["event_id"] == "promo:FW-BOS:MED-STENT:LOT-30"
    assert (body["qty"], body["days_left"], body["lot_id"]) == (12, 30.0, "LOT-30")
    assert body["suggested_action"].startswith("offer to the wards")
    assert await stock(engine.gateway, "MED-STENT", "FW-BOS") == {"available": 17}  # a task, not a move
    # LOT-30 is scheduled at its expiry; LOT-90 lies beyond the sweep's look ahead (the
    # journal follower schedules it when it is received, the daily sweep when it comes near)
    assert engine.health.watch.next_timer_ms() == now + 30 * MS_PER_DAY


async def test_expired_stock_moves_to_expired_and_alerts_are_scoped(
    engine: Engine, people: dict[str, Person], manual_clock: ManualClock
) -> None:
    admin, fay, cal = people["admin"], people["fw_clerk"], people["cw_clerk"]
    now = manual_clock.now_ms()
    await admin.client.receive("FOOD-MILK", "FW-BOS", "M1", 8, status="available", expires_at_ms=now + 2 * MS_PER_DAY)
    await admin.client.receive("FOOD-MILK", "CW-1", "M2", 3, status="available", expires_at_ms=now + 2 * MS_PER_DAY)
    swept = await admin.health.RunExpirySweep(hpb.RunExpirySweepRequest())
    # food: a 3-day window that moves the stock to promo_locked
    assert (swept.promotion_tasks, swept.status_moves) == (2, 2)
    assert await stock(engine.gateway, "FOOD-MILK", "FW-BOS") == {"promo_locked": 8}
    manual_clock.advance(2 * MS_PER_DAY)
    result = await engine.health.watch.run_due()  # the timers at expiry
    assert result.moves == 2
    assert await stock(engine.gateway, "FOOD-MILK", "FW-BOS") == {"expired": 8}
    assert await stock(engine.gateway, "FOOD-MILK", "CW-1") == {"expired": 3}

    fay_sees = (await fay.alerts.ListAlerts(apb.ListAlertsRequest())).alerts
    assert {(a.kind, a.scope.site) for a in fay_sees} == {("near_expiry", "FW-BOS"), ("expired", "FW-BOS")}
    cal_sees = (await cal.alerts.ListAlerts(apb.ListAlertsRequest(kinds=["expired"]))).alerts
    assert [(a.kind, a.scope.site) for a in cal_sees] == [("expired", "CW-1")]
    expired_fw = next(a for a in fay_sees if a.kind == "expired")
    assert expired_fw.evidence
    assert expired_fw.evidence[0].startswith("health:expiry:")
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await cal.alerts.AcknowledgeAlert(apb.AlertActionRequest(alert_id=expired_fw.alert_id))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await cal.alerts.ListAlerts(apb.ListAlertsRequest(site="FW-BOS"))
    assert hidden.value.code() == grpc.StatusCode.PERMISSION_DENIED
    acked = (
        await fay.alerts.AcknowledgeAlert(apb.AlertActionRequest(alert_id=expired_fw.alert_id, note="binned"))
    ).alert
    assert (acked.state, acked.acknowledged_by) == ("acknowledged", "fay")
    closed = (await fay.alerts.CloseAlert(apb.AlertActionRequest(alert_id=expired_fw.alert_id))).alert
    assert closed.state == "closed"
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await fay.alerts.AcknowledgeAlert(apb.AlertActionRequest(alert_id=expired_fw.alert_id))
    assert (late.value.code(), reason(late.value)) == (grpc.StatusCode.FAILED_PRECONDITION, "ALERT_CLOSED")
    on_nats = await published(engine, f"{engine.prefix}.alerts.expired.>")
    assert [m["state"] for m in on_nats if m["alert_id"] == expired_fw.alert_id] == ["opened", "acknowledged", "closed"]


async def test_bad_requests_are_typed(people: dict[str, Person]) -> None:
    admin = people["admin"]
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await admin.alerts.ListAlerts(apb.ListAlertsRequest(kinds=["weather"], limit=5000))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await admin.alerts.GetAlert(apb.GetAlertRequest(alert_id="al-expired-0123"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as snap:
        await admin.health.SubmitStockSnapshot(
            hpb.SubmitStockSnapshotRequest(
                snapshot_id="s", source="wms", as_of_ms=1, lines=[hpb.SnapshotLine(site="FW-BOS", sku="X", qty=-1)]
            )
        )
    assert snap.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as no_site:  # malformed before any grant is looked at
        await people["cw_clerk"].health.SubmitStockSnapshot(
            hpb.SubmitStockSnapshotRequest(
                snapshot_id="s", source="wms", as_of_ms=1, lines=[hpb.SnapshotLine(sku="X", qty=1)]
            )
        )
    assert no_site.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as shelf:
        await admin.health.SubmitShelfCounts(
            hpb.SubmitShelfCountsRequest(
                count_id="c", source="cam", counts=[hpb.ShelfCount(site="FW-BOS", sku="X", counted=1, confidence=2.0)]
            )
        )
    assert shelf.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def snapshot(sid: str, as_of_ms: int, qty: int) -> hpb.SubmitStockSnapshotRequest:
    return hpb.SubmitStockSnapshotRequest(
        snapshot_id=sid,
        source="wms:acme",
        as_of_ms=as_of_ms,
        lines=[
            hpb.SnapshotLine(site="FW-BOS", sku="MED-STENT", lot_id="S1", status="available", qty=qty),
            hpb.SnapshotLine(site="FW-BOS", sku="FOOD-MILK", qty=4),
        ],
    )


async def test_reconciliation_alerts_after_two_cycles_and_adjusts_only_on_approval(
    engine: Engine, people: dict[str, Person], manual_clock: ManualClock
) -> None:
    admin, fay, max_ = people["admin"], people["fw_clerk"], people["fw_manager"]
    far = manual_clock.now_ms() + 400 * MS_PER_DAY
    await admin.client.receive("MED-STENT", "FW-BOS", "S1", 20, status="available", expires_at_ms=far)
    await admin.client.receive("FOOD-MILK", "FW-BOS", "M9", 4, status="available", expires_at_ms=far)
    before = await stock(engine.gateway, "MED-STENT", "FW-BOS")

    r1 = await fay.health.SubmitStockSnapshot(snapshot("snap-1", manual_clock.now_ms(), 18))
    assert (r1.lines, r1.matched, r1.real, r1.proposal_ids, r1.alert_ids) == (2, 1, 1, [], [])
    assert r1.record_accuracy == 0.5
    assert [(d.sku, d.external_qty, d.book_qty, d.diff, d.classification, d.streak) for d in r1.differences] == [
        ("MED-STENT", 18, 20, -2, "real", 1)
    ]
    again = await fay.health.SubmitStockSnapshot(snapshot("snap-1", manual_clock.now_ms(), 999))
    assert again == r1  # the same snapshot id: its first report
    manual_clock.advance(30_000)
    r2 = await fay.health.SubmitStockSnapshot(snapshot("snap-2", manual_clock.now_ms(), 18))
    assert len(r2.alert_ids) == 1
    assert len(r2.proposal_ids) == 1
    alert = (await fay.alerts.GetAlert(apb.GetAlertRequest(alert_id=r2.alert_ids[0]))).alert
    assert (alert.kind, alert.scope.lot_id, list(alert.evidence)) == ("reconciliation", "S1", ["snap-1", "snap-2"])
    assert await stock(engine.gateway, "MED-STENT", "FW-BOS") == before  # nothing applied silently

    pid = r2.proposal_ids[0]
    with pytest.raises(grpc.aio.AioRpcError) as clerk:
        await fay.health.ApproveAdjustment(hpb.ProposalActionRequest(proposal_id=pid))
    assert clerk.value.code() == grpc.StatusCode.PERMISSION_DENIED  # no `adjust` grant
    assert await stock(engine.gateway, "MED-STENT", "FW-BOS") == before
    approved = (
        await max_.health.ApproveAdjustment(hpb.ProposalActionRequest(proposal_id=pid, note="recounted"))
    ).proposal
    assert (approved.state, approved.decided_by, approved.variance) == ("approved", "max", -2)
    assert await stock(engine.gateway, "MED-STENT", "FW-BOS") == {"available": 18}
    with pytest.raises(grpc.aio.AioRpcError) as twice:
        await max_.health.ApproveAdjustment(hpb.ProposalActionRequest(proposal_id=pid))
    assert reason(twice.value) == "PROPOSAL_DECIDED"
    assert await stock(engine.gateway, "MED-STENT", "FW-BOS") == {"available": 18}
    report = await fay.health.GetReconciliationReport(hpb.GetReconciliationReportRequest(snapshot_id="snap-2"))
    assert report == r2
    with pytest.raises(grpc.aio.AioRpcError) as elsewhere:
        await people["cw_clerk"].health.GetReconciliationReport(
            hpb.GetReconciliationReportRequest(snapshot_id="snap-2")
        )
    assert elsewhere.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as bad_state:
        await fay.health.ListProposals(hpb.ListProposalsRequest(state="maybe"))
    assert bad_state.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    listed = (await fay.health.ListProposals(hpb.ListProposalsRequest(site="FW-BOS"))).proposals
    assert [(p.proposal_id, p.state) for p in listed] == [(pid, "approved")]
    assert (await people["cw_clerk"].health.ListProposals(hpb.ListProposalsRequest())).proposals == []


async def test_shelf_counts_publish_lists_and_never_adjust(
    engine: Engine, people: dict[str, Person], manual_clock: ManualClock
) -> None:
    admin, fay, max_ = people["admin"], people["fw_clerk"], people["fw_manager"]
    far = manual_clock.now_ms() + 400 * MS_PER_DAY
    await admin.client.receive("FOOD-MILK", "FW-BOS", "M1", 6, bin="A/1", status="available", expires_at_ms=far)
    await admin.client.receive("MED-STENT", "FW-BOS", "S1", 5, bin="A/2", status="available", expires_at_ms=far)
    before = (await stock(engine.gateway, "FOOD-MILK", "FW-BOS"), await stock(engine.gateway, "MED-STENT", "FW-BOS"))
    unsure = await fay.health.SubmitShelfCounts(
        hpb.SubmitShelfCountsRequest(
            count_id="cam-1",
            source="camera:aisle-1",
            counts=[hpb.ShelfCount(site="FW-BOS", bin="A/1", sku="FOOD-MILK", counted=0, confidence=0.4)],
        )
    )
    assert (list(unsure.out_of_stock), list(unsure.proposal_ids)) == ([], [])
    assert [(x.sku, x.counted, x.book_qty) for x in unsure.unconfirmed] == [("FOOD-MILK", 0, 6)]
    sure = await fay.health.SubmitShelfCounts(
        hpb.SubmitShelfCountsRequest(
            count_id="cam-2",
            source="camera:aisle-1",
            counts=[
                hpb.ShelfCount(site="FW-BOS", bin="A/1", sku="FOOD-MILK", counted=0, confidence=0.97),
                hpb.ShelfCount(site="FW-BOS", bin="A/2", sku="MED-STENT", counted=1, confidence=0.95),
            ],
        )
    )
    assert [x.sku for x in sure.out_of_stock] == ["FOOD-MILK"]
    assert [x.sku for x in sure.low_facing] == ["MED-STENT"]
    assert len(sure.proposal_ids) == 2
    after = (await stock(engine.gateway, "FOOD-MILK", "FW-BOS"), await stock(engine.gateway, "MED-STENT", "FW-BOS"))
    assert after == before  # zero silent adjustments
    lists = await published(engine, f"{engine.prefix}.health.*.FW-BOS")
    kinds = {m["kind"]: m for m in lists if m["kind"] in ("out_of_stock", "low_facing")}
    assert kinds["out_of_stock"]["body"]["items"][0]["sku"] == "FOOD-MILK"
    assert kinds["low_facing"]["body"]["items"][0]["sku"] == "MED-STENT"
    milk = next(p for p in sure.proposal_ids if p)
    decided = (await max_.health.RejectAdjustment(hpb.ProposalActionRequest(proposal_id=milk, note="recount"))).proposal
    assert decided.state == "rejected"
    assert await stock(engine.gateway, "FOOD-MILK", "FW-BOS") == before[0]


async def test_engine_wide_alerts_need_engine_wide_grants(engine: Engine, people: dict[str, Person]) -> None:
    raised = await engine.health.alerts.raise_alert(
        Condition("dead_letter", "warning", AlertScope(), "a message without a site", 1, ("dlq:1",), "decode_error")
    )
    admin_sees = (await people["admin"].alerts.ListAlerts(apb.ListAlertsRequest(kinds=["dead_letter"]))).alerts
    assert [a.alert_id for a in admin_sees] == [raised.alert_id]
    assert (await people["fw_clerk"].alerts.ListAlerts(apb.ListAlertsRequest(kinds=["dead_letter"]))).alerts == []
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await people["fw_clerk"].alerts.CloseAlert(apb.AlertActionRequest(alert_id=raised.alert_id))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    closed = (await people["admin"].alerts.CloseAlert(apb.AlertActionRequest(alert_id=raised.alert_id))).alert
    assert (closed.state, closed.closed_by) == ("closed", "root")
