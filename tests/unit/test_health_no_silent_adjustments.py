"""Zero silent adjustments (issue 15): no reconciliation or recogniser path sends a stock
command; only an approval by another person does, exactly one Adjust.

Every path runs against a StockPort that records each command it is asked to execute (and
answers reads from real in-process shards), so "nothing changed" is not inferred from
totals but from the commands themselves."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.memory.documents import InMemoryDocuments
from adapters.memory.health import InMemoryAlertStore, InMemoryHealthPublisher
from engine import bootstrap
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import Adjust, Receive
from engine.domain.errors import FailedPrecondition
from engine.domain.inventory import StockQuery, StockRow
from engine.health.books import CellBooks
from engine.health.desk import AlertDesk
from engine.health.proposals import Proposal
from engine.health.reconcile import TOLERANCE_SCHEMA, SnapshotLine, StockSnapshot, parse_tolerances
from engine.health.services import ProposalDesk, Reconciler, ShelfDesk
from engine.health.shelf import ShelfCount, ShelfRules
from engine.runtime.gateway import Gateway

pytestmark = pytest.mark.asyncio


class Recording:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.commands: list[Any] = []

    async def query_stock(self, q: StockQuery, deadline: float | None = None) -> list[StockRow]:
        return await self.gw.query_stock(q, deadline)

    async def execute(self, cmd: Any, deadline: float | None = None) -> Any:
        self.commands.append(cmd)
        return await self.gw.execute(cmd, deadline)


async def test_only_an_approval_changes_stock() -> None:
    clock = ManualClock()
    gw = bootstrap.local_gateway(shards=1, clock=clock, sweep_interval_ms=0)
    try:
        await gw.put_sku(Sku("SKU"))
        await gw.put_site(Site("S1"))
        far = clock.now_ms() + 400 * 86_400_000
        await gw.execute(Receive("r1", "SKU", "S1", "L1", 10, bin="A/1", status="available", expires_at_ms=far))
        stock = Recording(gw)
        docs, pub = InMemoryDocuments(), InMemoryHealthPublisher()
        alerts = AlertDesk(InMemoryAlertStore(), pub, clock.now_ms)
        proposals = ProposalDesk(docs, stock, pub, clock.now_ms)
        tolerances = parse_tolerances({"schema": TOLERANCE_SCHEMA, "tolerances": []})
        on_hand = frozenset({"available"})
        reconciler = Reconciler(
            CellBooks(stock, on_hand), docs, alerts, proposals, tolerances, clock.now_ms, "available"
        )
        shelf = ShelfDesk(stock, proposals, pub, ShelfRules(), on_hand, clock.now_ms)

        line = SnapshotLine("S1", "SKU", 7, "L1", "A/1", "available")
        made: list[str] = []
        for i in range(4):  # four cycles of a real difference: an alert and a proposal, no command
            clock.advance(30_000)
            result = await reconciler.submit(StockSnapshot(f"s{i}", "wms:x", clock.now_ms(), (line,)))
            made += result.proposal_ids
        for confidence in (0.2, 0.95):  # unsure, then sure: lists and a proposal, no command
            await shelf.submit(f"c{confidence}", "cam", (ShelfCount("S1", "A/1", "SKU", 0, confidence),))
        listed = await proposals.list()
        assert len(made) == 1
        assert len(listed) == 2
        with pytest.raises(FailedPrecondition):
            await proposals.approve(made[0], "system:reconciliation")  # its proposer
        shelf_proposal = next(p for p in listed if p.proposal_id != made[0])
        await proposals.reject(shelf_proposal.proposal_id, "ana")
        assert stock.commands == []  # not one stock command so far

        approved = await proposals.approve(made[0], "ana", "recounted")
        assert [type(c) for c in stock.commands] == [Adjust]
        adjust = stock.commands[0]
        # Relative, applied inside the cell: a sale booked since the difference was seen stays.
        assert (adjust.delta_qty, adjust.counted_qty) == (-3, 0)
        assert (adjust.request_id, adjust.doc_ref) == ("adj:" + made[0], "proposal:" + made[0])
        assert approved.state == "approved"
        seen = await gw.get_availability("SKU", "S1")
        assert seen.available == 7
    finally:
        await gw.close()


async def test_an_approval_that_no_longer_fits_the_books_is_refused_and_stays_proposed() -> None:
    clock = ManualClock()
    gw = bootstrap.local_gateway(shards=1, clock=clock, sweep_interval_ms=0)
    try:
        await gw.put_sku(Sku("SKU"))
        await gw.put_site(Site("S1"))
        await gw.execute(Receive("r1", "SKU", "S1", "L1", 3, bin="A/1", status="available"))
        stock = Recording(gw)
        desk = ProposalDesk(InMemoryDocuments(), stock, None, clock.now_ms)
        await desk.propose(Proposal("p-1", "S1", "SKU", "L1", "A/1", "available", -5, 5, 10, "shelf:c", "system", 1))
        with pytest.raises(FailedPrecondition) as err:
            await desk.approve("p-1", "ana")
        assert err.value.reason == "PROPOSAL_STALE"
        assert err.value.metadata == {"current_qty": "3", "variance": "-5"}
        # The cell refused the relative adjustment (it would go below zero): nothing moved.
        assert [(type(c), c.delta_qty) for c in stock.commands] == [(Adjust, -5)]
        assert (await gw.get_availability("SKU", "S1")).available == 3
        assert (await desk.get("p-1")).state == "proposed"
    finally:
        await gw.close()
