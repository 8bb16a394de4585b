"""WMS transfer events naming an engine transfer advance it (issue 13 item 2): in-process
shards, the in-memory document store, the real transfers desk (no NATS)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from adapters.memory.documents import InMemoryDocuments
from adapters.nats.ingest.apply import Applier
from adapters.nats.ingest.events import BadEvent, validate_event
from engine import bootstrap
from engine.bootstrap.documents import WmsTransferSteps
from engine.domain.clock import ManualClock
from engine.domain.deadletters import DeadLetterCode
from engine.domain.errors import FailedPrecondition
from engine.domain.transfer_flow import TransferLine, default_flow
from engine.runtime.gateway import Gateway
from engine.runtime.gateway.transfers import Actor, TransferDesk
from tests.ingest_fixtures import NOW_MS, event, hospital_config, load_hospital, quants


@dataclass
class Setup:
    gateway: Gateway
    desk: TransferDesk
    applier: Applier


@pytest_asyncio.fixture
async def setup() -> AsyncIterator[Setup]:
    clock = ManualClock(NOW_MS)
    gateway = bootstrap.local_gateway(shards=2, clock=clock, sweep_interval_ms=0)
    await load_hospital(gateway)
    desk = TransferDesk(gateway, InMemoryDocuments(), default_flow(), clock.now_ms)
    yield Setup(gateway, desk, Applier(gateway, hospital_config(), WmsTransferSteps(desk)))
    await gateway.close()


async def approved(desk: TransferDesk, transfer_id: str, qty: int) -> None:
    await desk.create(Actor("ana"), "c", transfer_id, "dc", "icu", [TransferLine("cath", qty)])
    await desk.approve(Actor("ben", ("site_manager",)), "a", transfer_id)


async def test_a_wms_dispatch_and_arrival_naming_a_transfer_ship_and_receive_it(setup: Setup) -> None:
    await approved(setup.desk, "T-9", 6)
    out = event("transfer_out", site="WH1", to_site="icu", transfer_id="T-9", lines=[{"sku": "cath", "qty": 6}])
    await setup.applier.apply(validate_event(out, "wms"))
    await setup.applier.apply(validate_event(out, "wms"))  # redelivered: answered from the transfer
    shipped = await setup.desk.get("T-9")
    assert (shipped.state, [s.actor for s in shipped.steps]) == ("shipped", ["ana", "ben", "wms"])
    assert (await quants(setup.gateway, "cath", "dc"))[("C1", "B/01", "available", "own")] == 44
    assert await quants(setup.gateway, "cath", "icu") == {("C1", "", "in_transit_in", "own"): 6}

    arrive = event("transfer_in", site="icu", transfer_id="T-9", lines=[{"sku": "cath", "lot": "C1", "qty": 4}])
    await setup.applier.apply(validate_event(arrive, "wms"))
    partial = await setup.desk.get("T-9")
    assert (partial.state, partial.lots[0].received_qty) == ("shipped", 4)  # 2 still on the way
    assert await quants(setup.gateway, "cath", "icu") == {
        ("C1", "", "available", "own"): 4,
        ("C1", "", "in_transit_in", "own"): 2,
    }


async def test_a_wms_event_that_does_not_fit_its_transfer_is_a_typed_dead_letter(setup: Setup) -> None:
    await approved(setup.desk, "T-8", 6)
    wrong = [
        event("transfer_out", site="WH1", to_site="ed", transfer_id="T-8", lines=[{"sku": "cath", "qty": 6}]),
        event("transfer_out", site="WH1", to_site="icu", transfer_id="T-8", lines=[{"sku": "cath", "qty": 5}]),
        event("transfer_in", site="ed", transfer_id="T-8", lines=[{"sku": "cath", "lot": "C1", "qty": 1}]),
    ]
    for raw in wrong:
        with pytest.raises(BadEvent) as bad:
            await setup.applier.apply(validate_event(raw, "wms"))
        assert bad.value.code == DeadLetterCode.INVALID
    arrive = event("transfer_in", site="icu", transfer_id="T-8", lines=[{"sku": "cath", "lot": "C1", "qty": 1}])
    with pytest.raises(FailedPrecondition):  # not shipped yet: the transfer refuses the receipt
        await setup.applier.apply(validate_event(arrive, "wms"))
    assert (await setup.desk.get("T-8")).state == "approved"


async def test_a_transfer_id_the_engine_does_not_keep_is_booked_by_the_wms_alone(setup: Setup) -> None:
    out = event("transfer_out", site="WH1", to_site="icu", transfer_id="WMS-77", lines=[{"sku": "cath", "qty": 3}])
    await setup.applier.apply(validate_event(out, "wms"))
    assert await quants(setup.gateway, "cath", "icu") == {("C1", "", "in_transit_in", "own"): 3}


async def test_a_wms_dispatch_with_an_eta_keeps_it_on_the_transfer_for_replenishment(setup: Setup) -> None:
    await approved(setup.desk, "T-7", 6)
    eta = NOW_MS + 10 * 86_400_000
    out = event("transfer_out", site="WH1", to_site="icu", transfer_id="T-7", lines=[{"sku": "cath", "qty": 6}])
    await setup.applier.apply(validate_event({**out, "eta_ms": eta}, "wms"))
    assert (await setup.desk.get("T-7")).eta_ms == eta
    assert await setup.desk.arriving("cath", "icu") == [(6, eta)]
    for bad, code in ((-1, DeadLetterCode.INVALID), ("soon", DeadLetterCode.SCHEMA), (1.5, DeadLetterCode.SCHEMA)):
        with pytest.raises(BadEvent, match="eta_ms") as refused:
            validate_event({**out, "event_id": "wms-bad", "eta_ms": bad}, "wms")
        assert refused.value.code == code
