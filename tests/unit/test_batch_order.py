"""Commands of one Execute batch on the same pair apply in the batch's order (engine.api.batch).

Through the real servicer and an in-process gateway (shards in this process, in-memory
journal): each batch below gives a different answer when its commands run out of order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from engine import bootstrap
from engine.api.batch import BARRIER, Footprint, plan_order
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.servicer import InventoryServicer
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.runtime.gateway import Gateway

TTL_MS = 60_000


@pytest_asyncio.fixture
async def servicer() -> AsyncIterator[InventoryServicer]:
    gateway: Gateway = bootstrap.local_gateway(shards=2, clock=ManualClock(), sweep_interval_ms=0)
    await gateway.put_sku(Sku("strip", "Glucose test strips", "box"))
    for site in ("ward1", "ward2"):
        await gateway.put_site(Site(site, "acme/east", "cabinet"))
    yield InventoryServicer(gateway)
    await gateway.close()


def receive(rid: str, qty: int, site: str = "ward1") -> pb.Command:
    return pb.Command(
        receive=pb.ReceiveRequest(request_id=rid, sku="strip", site=site, lot_id="L1", qty=qty, status="available")
    )


def reserve(rid: str, *sites_qty: tuple[str, int]) -> pb.Command:
    lines = [pb.ReserveLine(sku="strip", site=site, qty=qty) for site, qty in sites_qty]
    return pb.Command(reserve=pb.ReserveRequest(request_id=rid, hold_id=rid, lines=lines, ttl_ms=TTL_MS))


async def run(servicer: InventoryServicer, *commands: pb.Command) -> list[str]:
    """Each command's outcome: 'ok' or its error's reason."""
    replies = await servicer.batches.run(pb.CommandBatch(commands=list(commands)), None)
    out = []
    for reply in replies.replies:
        kind = reply.WhichOneof("reply")
        out.append(reply.error.reason if kind == "error" else "ok")
    return out


@pytest.mark.asyncio
async def test_a_reserve_before_the_receive_that_would_feed_it_is_refused(servicer: InventoryServicer) -> None:
    # In order: nothing to hold yet, then the receipt. Out of order the hold would succeed.
    outcomes = await run(servicer, reserve("h1", ("ward1", 5)), receive("r1", 5))
    assert outcomes == ["INSUFFICIENT_STOCK", "ok"]


@pytest.mark.asyncio
async def test_a_reserve_after_a_multi_pair_release_finds_the_released_stock(servicer: InventoryServicer) -> None:
    assert await run(servicer, receive("r1", 2), receive("r2", 2, site="ward2")) == ["ok", "ok"]
    assert await run(servicer, reserve("h1", ("ward1", 2), ("ward2", 2))) == ["ok"]
    # The release of a two-pair hold reads its parts first, then releases: a reserve of a
    # released pair must wait for it (out of order it finds everything held).
    release = pb.Command(release=pb.ReleaseRequest(request_id="rel1", hold_id="h1"))
    outcomes = await run(servicer, release, reserve("h2", ("ward1", 2)), reserve("h3", ("ward2", 2)))
    assert outcomes == ["ok", "ok", "ok"]


@pytest.mark.asyncio
async def test_a_release_of_a_hold_reserved_in_the_same_batch_follows_it(servicer: InventoryServicer) -> None:
    assert await run(servicer, receive("r1", 3)) == ["ok"]
    # The release names a hold this gateway does not know yet: it waits for the reserve, and
    # the next reserve waits for it (out of order the stock is still held).
    release = pb.Command(release=pb.ReleaseRequest(request_id="rel1", hold_id="h1"))
    outcomes = await run(servicer, reserve("h1", ("ward1", 3)), release, reserve("h2", ("ward1", 3)))
    assert outcomes == ["ok", "ok", "ok"]
    commit = pb.Command(commit=pb.CommitRequest(request_id="com2", hold_id="h2"))
    assert await run(servicer, commit, reserve("h3", ("ward1", 1))) == ["ok", "INSUFFICIENT_STOCK"]


def test_commands_on_distinct_pairs_wait_for_nothing() -> None:
    fps = [Footprint(frozenset([("pair", "s", f"w{i}")]), eager=True) for i in range(5)]
    assert plan_order(fps) is None
    # Eager commands on one pair need no wait either: they queue in the batch's order.
    assert plan_order([Footprint(frozenset(["p"]), eager=True)] * 3) is None


def test_the_plan_waits_for_what_order_needs() -> None:
    p, q = "p", "q"
    slow = Footprint(frozenset([p, q]))  # e.g. a two-pair commit: pre-check, then commits
    fast_p = Footprint(frozenset([p]), eager=True)
    fast_q = Footprint(frozenset([q]), eager=True)
    plan = plan_order([slow, fast_p, fast_p, fast_q])
    # The first command on p after the slow one waits for its end, the next only for its start.
    assert plan == [[], [(0, True)], [(1, False)], [(0, True)]]
    plan = plan_order([fast_p, BARRIER, fast_q, BARRIER])
    assert plan == [[], [(0, True)], [(1, True)], [(1, True), (2, True)]]
