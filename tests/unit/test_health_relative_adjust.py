"""Approved reconciliation proposals race no sale (issue 15): the approved variance is a
relative adjustment applied inside the cell, so sales booked between seeing the difference
and approving it are never undone, and nothing is oversold.

Real in-process shards (engine.bootstrap.local_gateway): sales and the approval run
concurrently through the same gateway a POS would use."""

from __future__ import annotations

import asyncio

import pytest

from adapters.memory.documents import InMemoryDocuments
from engine import bootstrap
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import Receive, ReserveLine
from engine.domain.errors import FailedPrecondition
from engine.health.proposals import Proposal
from engine.health.services import ProposalDesk
from engine.runtime.types import HoldLine

pytestmark = pytest.mark.asyncio

STOCK = 100
SALES = 60  # of 2 units each: more than the stock, so some sales and maybe the approval are refused
LOSS = 10  # what the approved proposal takes


async def _race(round_: int, approve_after: int) -> tuple[int, bool, int]:
    """One round: SALES concurrent sales, the approval sent after `approve_after` of them.
    Returns (units sold, approved?, units left)."""
    clock = ManualClock()
    gw = bootstrap.local_gateway(shards=1, clock=clock, sweep_interval_ms=0)
    try:
        await gw.put_sku(Sku("SKU"))
        await gw.put_site(Site("S1"))
        await gw.execute(Receive("r1", "SKU", "S1", "L1", STOCK, bin="A/1", status="available"))
        desk = ProposalDesk(InMemoryDocuments(), gw, None, clock.now_ms)
        pid = f"p-{round_}"
        await desk.propose(
            Proposal(pid, "S1", "SKU", "L1", "A/1", "available", -LOSS, STOCK - LOSS, STOCK, "wms", "system", 1)
        )

        async def sell(i: int) -> int:
            try:
                await gw.sell(f"s{round_}-{i}", [HoldLine("SKU", "S1", ReserveLine(2))])
            except FailedPrecondition:
                return 0
            return 2

        async def approve() -> str:
            try:
                await desk.approve(pid, "ana")
            except FailedPrecondition as refused:
                return refused.reason  # the books ran out first: a person recounts
            return "approved"

        tasks = [asyncio.create_task(sell(i)) for i in range(approve_after)]
        approval = asyncio.create_task(approve())
        tasks += [asyncio.create_task(sell(i)) for i in range(approve_after, SALES)]
        sold = sum(await asyncio.gather(*tasks))
        outcome = await approval
        assert outcome in ("approved", "PROPOSAL_STALE")
        approved = outcome == "approved"
        left = (await gw.get_availability("SKU", "S1")).available
        return sold, approved, left
    finally:
        await gw.close()


@pytest.mark.parametrize("approve_after", [0, 10, 30, 45, 59])
async def test_sales_racing_an_approval_are_never_undone_and_nothing_is_oversold(approve_after: int) -> None:
    sold, approved, left = await _race(approve_after, approve_after)
    taken = sold + (LOSS if approved else 0)
    assert left >= 0
    # Conservation: every sale and the approved loss are in the books, nothing else. An
    # absolute count computed before the sales (the old way) would have put sold units back.
    assert left == STOCK - taken
    # The stock ran out: every refused sale met an empty shelf, not a lost update.
    assert left < 2


async def test_an_approval_before_the_rush_takes_its_loss_and_the_sales_the_rest() -> None:
    clock = ManualClock()
    gw = bootstrap.local_gateway(shards=1, clock=clock, sweep_interval_ms=0)
    try:
        await gw.put_sku(Sku("SKU"))
        await gw.put_site(Site("S1"))
        await gw.execute(Receive("r1", "SKU", "S1", "L1", STOCK, bin="A/1", status="available"))
        desk = ProposalDesk(InMemoryDocuments(), gw, None, clock.now_ms)
        await desk.propose(Proposal("p", "S1", "SKU", "L1", "A/1", "available", -LOSS, 90, STOCK, "wms", "system", 1))
        await gw.sell("s-0", [HoldLine("SKU", "S1", ReserveLine(30))])  # after the difference was seen
        approved = await desk.approve("p", "ana")
        assert approved.state == "approved"
        assert (await gw.get_availability("SKU", "S1")).available == STOCK - 30 - LOSS  # the sale stays
        again = await desk.get("p")
        assert again.state == "approved"
    finally:
        await gw.close()
