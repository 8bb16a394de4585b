"""lotwise.v1.Replenishment over real gRPC with tokens and grants checked: in-process shards,
suggestions and suppliers in a JetStream key-value bucket, actions on a JetStream stream of a
real nats-server, the real policy. Who may list, explain, decide and administer; every bad
input typed; adoption per planner and rule; the RFQ, to-do and keeper alert on acceptance."""

from __future__ import annotations

import asyncio
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
from adapters.memory.history import InMemoryHistoryStore
from adapters.nats.replenish import ReplenishStoreConfig, connect_replenish_store
from adapters.nats.replenish_events import ReplenishBusConfig, replenish_event_from_record, start_replenish_events
from adapters.nats.server import EmbeddedNats
from engine.api.auth import AuthMetrics, Authorizer, ServerAuth, TokenSettings, TokenVerifier, mint_token
from engine.api.client import LotwiseClient, RetryPolicy
from engine.api.errors import status_of_rpc_error
from engine.api.gen.lotwise.v1 import replenishment_pb2 as rpb
from engine.api.gen.lotwise.v1 import replenishment_pb2_grpc as rpb_grpc
from engine.api.server import ApiMetrics, start_server
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import Receive
from engine.domain.history import HistoryBatch, HistoryRecord
from engine.domain.model import External, Movement, MovementKind, QuantKey
from engine.replenish.planning import PolicyPlanner
from engine.replenish.service import ReplenishService
from engine.replenish.store import SupplierTerms
from engine.runtime.gateway import Gateway

SECRET = b"r" * 48
POLICY = """
[roles]
admin = ["read", "admin", "plan", "receive", "reserve"]
planner = ["read", "plan"]
reader = ["read"]

[[grants]]
group = "admin"
role = "admin"
org = ""

[[grants]]
group = "planners"
role = "planner"
site = "HW-DC"

[[grants]]
group = "readers"
role = "reader"
site = "HW-DC"
"""
DAY_MS = 86_400_000
SKU, SITE = "BRG-6204", "HW-DC"


@dataclass
class Setup:
    address: str
    service: ReplenishService
    events: ReplenishBusConfig
    nats_url: str
    gateway: Gateway


@pytest_asyncio.fixture
async def setup(
    tmp_path: Path, local_gateway: Gateway, nats_server: EmbeddedNats, manual_clock: ManualClock
) -> AsyncIterator[Setup]:
    secret_file, policy_file = tmp_path / "signing.key", tmp_path / "policy.toml"
    write_private(secret_file, SECRET)
    policy_file.write_text(POLICY)
    verifier = TokenVerifier([WatchedFile(secret_file, load_secret, check_interval_s=0.0)], TokenSettings())
    authorizer = Authorizer(
        WatchedFile(policy_file, load_policy, check_interval_s=0.0).current, AuthMetrics(CollectorRegistry())
    )
    tag = uuid.uuid4().hex[:8]
    store = await connect_replenish_store(ReplenishStoreConfig(nats_server.url, bucket=f"repl-{tag}"))
    bus = ReplenishBusConfig(nats_server.url, stream=f"REPL_{tag}", subject_prefix=f"r{tag}.replenish")
    events = await start_replenish_events(bus)
    history = InMemoryHistoryStore()
    await _ninety_days_of(history, manual_clock, SKU, SITE, 5)
    service = ReplenishService(store, local_gateway, PolicyPlanner(), manual_clock, history=history, actions=events)
    server, port = await start_server(
        local_gateway,
        "127.0.0.1",
        0,
        metrics=ApiMetrics(CollectorRegistry()),
        admin=local_gateway,
        auth=ServerAuth(verifier, authorizer),
        replenishment=service,
    )
    await local_gateway.put_sku(Sku(SKU))
    for site in (SITE, "HW-EAST"):
        await local_gateway.put_site(Site(site, "hw"))
    await local_gateway.execute(Receive("r1", SKU, SITE, "L1", 12, status="available", doc_ref="ASN-1"))
    yield Setup(f"127.0.0.1:{port}", service, bus, nats_server.url, local_gateway)
    await server.stop(grace_s=1.0)
    await events.close()
    await store.close()


async def _ninety_days_of(history: InMemoryHistoryStore, clock: ManualClock, sku: str, site: str, qty: int) -> None:
    q = QuantKey("L0", "", "available", "own")
    records = []
    for day in range(1, 91):
        m = Movement(
            day,
            MovementKind.CONSUME,
            sku,
            site,
            "L0",
            qty,
            q,
            External.CUSTOMER,
            doc_ref=f"SO-{day}",
            at_ms=clock.now_ms() - day * DAY_MS,
        )
        records.append(HistoryRecord("s0", day, day, m))
    await history.insert(HistoryBatch(tuple(records)))


class _Stub:
    """A Replenishment stub whose every call carries one person's token."""

    def __init__(self, client: LotwiseClient) -> None:
        self._stub = rpb_grpc.ReplenishmentStub(client.channel)
        self._metadata = client.metadata

    def __getattr__(self, name: str) -> Any:
        return functools.partial(getattr(self._stub, name), metadata=self._metadata, timeout=10)


@pytest_asyncio.fixture
async def people(setup: Setup) -> AsyncIterator[dict[str, _Stub]]:
    who = {
        "admin": ("root", ["admin"]),
        "planner": ("wu", ["planners"]),
        "reader": ("rita", ["readers"]),
        "outsider": ("otto", ["nobody"]),
    }
    clients = {
        name: LotwiseClient(
            setup.address, token=mint_token(SECRET, sub, groups), retry=RetryPolicy(max_attempts=1), timeout_s=10
        )
        for name, (sub, groups) in who.items()
    }
    for c in clients.values():
        await c.__aenter__()
    yield {name: _Stub(c) for name, c in clients.items()}
    for c in clients.values():
        await c.__aexit__(None, None, None)


def _code(err: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> grpc.StatusCode:
    return err.value.code()


def _violations(err: grpc.aio.AioRpcError) -> list[str]:
    out = []
    for any_ in status_of_rpc_error(err).details:
        br = error_details_pb2.BadRequest()
        if any_.Unpack(br):
            out += [v.field for v in br.field_violations]
    return out


def _reason(err: grpc.aio.AioRpcError) -> str:
    for any_ in status_of_rpc_error(err).details:
        info = error_details_pb2.ErrorInfo()
        if any_.Unpack(info):
            return info.reason
    return ""


BEARING = rpb.Supplier(
    sku=SKU,
    site=SITE,
    supplier="skf",
    moq=50,
    multiple=10,
    lead_times=[rpb.LeadTime(days=7, received_at_ms=1_766_000_000_000 + i) for i in range(3)],
    keeper="keeper-li",
)


async def test_suggest_explain_accept_with_grants_and_actions(setup: Setup, people: dict[str, _Stub]) -> None:
    admin, planner, reader, outsider = people["admin"], people["planner"], people["reader"], people["outsider"]
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await planner.PutSupplier(rpb.PutSupplierRequest(supplier=BEARING))
    assert _code(denied) is grpc.StatusCode.PERMISSION_DENIED
    stored = (await admin.PutSupplier(rpb.PutSupplierRequest(supplier=BEARING))).supplier
    assert (stored.supplier, stored.moq, stored.multiple) == ("skf", 50, 10)
    recomputed = await admin.RecomputeAll(rpb.RecomputeAllRequest())
    assert (recomputed.pairs, recomputed.below_reorder_point) == (1, 1)

    s = (await reader.ExplainSuggestion(rpb.SuggestionRef(sku=SKU, site=SITE))).suggestion
    p = s.panel
    assert (s.state, s.supplier, s.below_reorder_point) == ("open", "skf", True)
    assert p.mean_30d == pytest.approx(5.0, rel=0.05)
    assert (p.buffer, p.moq, p.multiple, p.on_hand, p.lead_time_days) == (1.15, 50, 10, 12, 7)
    assert p.reorder_point > 12
    assert s.qty >= 50
    assert s.qty % 10 == 0
    assert [line.rule for line in s.trace][:1] == ["policy.trigger"]
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await outsider.ExplainSuggestion(rpb.SuggestionRef(sku=SKU, site=SITE))
    assert _code(hidden) is grpc.StatusCode.PERMISSION_DENIED
    assert len((await outsider.ListSuggestions(rpb.ListSuggestionsRequest())).suggestions) == 0  # filtered, not refused

    with pytest.raises(grpc.aio.AioRpcError) as read_only:
        await reader.AcceptSuggestion(rpb.DecideSuggestionRequest(sku=SKU, site=SITE, version=s.version))
    assert _code(read_only) is grpc.StatusCode.PERMISSION_DENIED
    accepted = (
        await planner.AcceptSuggestion(rpb.DecideSuggestionRequest(sku=SKU, site=SITE, version=s.version))
    ).suggestion
    assert (accepted.state, accepted.decided_by, accepted.decided_qty) == ("accepted", "wu", s.qty)
    assert accepted.panel.open_todos == s.qty

    nc = await nats.connect(setup.nats_url)
    try:
        js = nc.jetstream()
        kinds = {}
        for kind in ("replenishment_suggested", "rfq_requested", "todo_created", "keeper_alerted"):
            msg = await js.get_last_msg(setup.events.stream, setup.events.subject(kind, SITE, SKU))
            kinds[kind] = replenish_event_from_record(json.loads(msg.data))
    finally:
        await nc.close()
    assert kinds["rfq_requested"].supplier == "skf"
    assert kinds["rfq_requested"].event_id == f"rfq_requested:{SITE}:{SKU}:{s.version}"
    assert kinds["keeper_alerted"].keeper == "keeper-li"
    assert kinds["todo_created"].qty == s.qty

    adoption = await admin.GetAdoption(rpb.GetAdoptionRequest())
    assert [(r.key, r.accepted, r.acceptance_rate) for r in adoption.by_planner] == [("wu", 1, 1.0)]
    assert adoption.total.decided == 1


async def test_bad_input_is_typed_and_changes_nothing(setup: Setup, people: dict[str, _Stub]) -> None:
    admin, planner = people["admin"], people["planner"]
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await planner.ExplainSuggestion(rpb.SuggestionRef(sku=SKU, site=SITE))
    assert _code(missing) is grpc.StatusCode.NOT_FOUND
    bad = rpb.Supplier(sku=SKU, site=SITE, supplier="", moq=-1, order_weekdays=[9])
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await admin.PutSupplier(rpb.PutSupplierRequest(supplier=bad))
    assert _code(invalid) is grpc.StatusCode.INVALID_ARGUMENT
    assert set(_violations(invalid.value)) == {"supplier.supplier", "supplier.moq", "supplier.order_weekdays"}
    assert len((await admin.ListSuppliers(rpb.ListSuppliersRequest())).suppliers) == 0

    factors = [rpb.Factor(factor_id="w", kind="weather", from_day="2026-01-01", to_day="2026-01-02", multiplier=4)]
    with pytest.raises(grpc.aio.AioRpcError) as out_of_band:
        await admin.PutFactors(rpb.PutFactorsRequest(factors=factors))
    assert _violations(out_of_band.value) == ["factors[0].multiplier"]

    await admin.PutSupplier(rpb.PutSupplierRequest(supplier=BEARING))
    await admin.RecomputeAll(rpb.RecomputeAllRequest())
    s = (await planner.ExplainSuggestion(rpb.SuggestionRef(sku=SKU, site=SITE))).suggestion
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await planner.AcceptSuggestion(rpb.DecideSuggestionRequest(sku=SKU, site=SITE, version=s.version + 1))
    assert (_code(stale), _reason(stale.value)) == (grpc.StatusCode.FAILED_PRECONDITION, "STALE_SUGGESTION")
    with pytest.raises(grpc.aio.AioRpcError) as no_reason:
        await planner.RejectSuggestion(rpb.DecideSuggestionRequest(sku=SKU, site=SITE, version=s.version))
    assert _violations(no_reason.value) == ["reason"]
    with pytest.raises(grpc.aio.AioRpcError) as no_qty:
        await planner.OverrideSuggestion(
            rpb.OverrideSuggestionRequest(sku=SKU, site=SITE, version=s.version, reason="x")
        )
    assert _violations(no_qty.value) == ["qty"]
    with pytest.raises(grpc.aio.AioRpcError) as page:
        await planner.ListSuggestions(rpb.ListSuggestionsRequest(page_size=501, page_token="%%%"))
    assert _code(page) is grpc.StatusCode.INVALID_ARGUMENT
    after = (await planner.ExplainSuggestion(rpb.SuggestionRef(sku=SKU, site=SITE))).suggestion
    assert after == s  # nothing changed

    overridden = await planner.OverrideSuggestion(
        rpb.OverrideSuggestionRequest(sku=SKU, site=SITE, version=s.version, qty=120, reason="trade fair next week")
    )
    assert (overridden.suggestion.state, overridden.suggestion.decided_qty) == ("overridden", 120)
    adoption = await admin.GetAdoption(rpb.GetAdoptionRequest())
    assert adoption.total.override_rate == 1.0
    assert {r.key for r in adoption.by_rule} >= {"policy.trigger"}


async def test_listing_pages_and_filters(setup: Setup, people: dict[str, _Stub]) -> None:
    admin, planner = people["admin"], people["planner"]
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await admin.PutSupplier(rpb.PutSupplierRequest(supplier=rpb.Supplier(sku="S0", site=SITE, supplier="skf")))
    assert _code(unknown) is grpc.StatusCode.NOT_FOUND
    for i in range(5):
        await setup.gateway.put_sku(Sku(f"S{i}"))
        await setup.service.put_supplier(SupplierTerms(f"S{i}", SITE, "skf"))
    await admin.RecomputeAll(rpb.RecomputeAllRequest())
    seen, token = [], ""
    while True:
        page = await planner.ListSuggestions(rpb.ListSuggestionsRequest(site=SITE, page_size=2, page_token=token))
        seen += [s.sku for s in page.suggestions]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["S0", "S1", "S2", "S3", "S4"]
    suppliers, token, pages = [], "", 0
    while True:
        got = await planner.ListSuppliers(rpb.ListSuppliersRequest(site=SITE, page_size=2, page_token=token))
        suppliers += [t.sku for t in got.suppliers]
        token, pages = got.next_page_token, pages + 1
        if not token:
            break
    assert (suppliers, pages) == (["S0", "S1", "S2", "S3", "S4"], 3)
    for bad in (rpb.ListSuppliersRequest(page_token="bm90LWEta2V5"), rpb.ListSuppliersRequest(page_size=501)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await planner.ListSuppliers(bad)
        assert _code(refused) is grpc.StatusCode.INVALID_ARGUMENT
    health = await admin.GetDataHealth(rpb.GetDataHealthRequest(site=SITE))
    assert {h.sku for h in health.pairs} == {"S0", "S1", "S2", "S3", "S4"}
    assert health.min_completeness == pytest.approx(0.992)


async def test_factors_over_nats_are_stored_and_bad_ones_dead_lettered(setup: Setup) -> None:
    from adapters.nats.deadletter import DeadLetterConfig, connect_dead_letters
    from adapters.nats.replenish_factors import FactorFeedConfig, start_factor_feed

    tag = uuid.uuid4().hex[:8]
    letters, close_letters = await connect_dead_letters(
        DeadLetterConfig(url=setup.nats_url, stream=f"DLQ_{tag}", subject_prefix=f"dlq{tag}")
    )
    config = FactorFeedConfig(setup.nats_url, stream=f"FACTORS_{tag}", subject=f"in{tag}.factors", consumer=f"f{tag}")
    feed, link = await start_factor_feed(config, setup.service.put_factors, letters)
    good = {
        "factors": [
            {
                "factor_id": "promo-7",
                "kind": "promotion",
                "sku": SKU,
                "from_day": "2026-01-01",
                "to_day": "2026-01-07",
                "multiplier": 1.4,
                "source": "crm",
            }
        ]
    }
    too_hot = {"factors": [{**good["factors"][0], "factor_id": "w", "kind": "weather", "multiplier": 2.5}]}
    nc = await nats.connect(setup.nats_url)
    try:
        js = nc.jetstream()
        for payload in (json.dumps(good).encode(), json.dumps(too_hot).encode(), b"not json", b'{"factors": 3}'):
            await js.publish(config.subject, payload)
        deadline = asyncio.get_running_loop().time() + 20
        while feed.stored + feed.refused < 4:
            assert asyncio.get_running_loop().time() < deadline, (feed.stored, feed.refused)
            await asyncio.sleep(0.05)
    finally:
        await nc.close()
        await feed.stop()
        await link.close()
    stored = await setup.service.store.list_factors()
    assert [(f.factor_id, f.multiplier, f.source) for f in stored] == [("promo-7", 1.4, "crm")]
    dead = await letters.list()
    await close_letters()
    assert [(d.letter.code.value, d.letter.event_type) for d in dead] == [
        ("invalid_value", "replenish.factors"),
        ("decode_error", "replenish.factors"),
        ("schema_violation", "replenish.factors"),
    ]
    assert "factors[0].multiplier" in dead[0].letter.reason
