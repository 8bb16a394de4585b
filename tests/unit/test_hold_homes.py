"""Where a hold's header lives (at a hash of the hold id, whatever its pairs: the one place
every reserve naming the id meets, so the id is refused to another request) and how any
gateway finds it (no Ray)."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from engine import bootstrap
from engine.domain.catalog import Pair, Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import Receive, ReserveLine
from engine.domain.errors import InvalidArgument, NotFound, RequestConflict
from engine.domain.shard import HoldHeader
from engine.domain.statuses import DEFAULT_DICTIONARY
from engine.runtime.gateway import Gateway
from engine.runtime.gateway.holds import HoldCoordinator
from engine.runtime.gateway.router import Router
from engine.runtime.routing import Directory
from engine.runtime.types import AggregateState, HoldLine

SHARDS = 3
SKUS = tuple(f"sku{i}" for i in range(12))
SITES = ("w1", "w2")
TTL_MS = 60_000


@dataclass
class World:
    gateway: Gateway
    clock: ManualClock


@pytest_asyncio.fixture
async def world() -> AsyncIterator[World]:
    clock = ManualClock()
    gateway = bootstrap.local_gateway(shards=SHARDS, clock=clock, sweep_interval_ms=0)
    for sku in SKUS:
        await gateway.put_sku(Sku(sku, sku))
    for site in SITES:
        await gateway.put_site(Site(site, "acme/east", "cabinet"))
    for sku in SKUS:
        for site in SITES:
            await gateway.execute(Receive(f"rcv-{sku}-{site}", sku, site, "L1", 10, status="available"))
    yield World(gateway, clock)
    await gateway.close()


def shard_of(w: World, pair: Pair) -> str:
    return w.gateway.directory.shard_for(*pair)


def pairs_on(w: World, shard: str) -> list[Pair]:
    return [(sku, site) for sku in SKUS for site in SITES if shard_of(w, (sku, site)) == shard]


def hashed_home(hold_id: str) -> str:
    """Where a hold of several pairs keeps its header (and every hold did, before): a hash of the hold id."""
    index = zlib.crc32(b"hold\x1f" + hold_id.encode()) % SHARDS
    return f"shard-{index}"


def line(pair: Pair, qty: int = 1) -> HoldLine:
    return HoldLine(pair[0], pair[1], ReserveLine(qty))


def shard_calls(w: World) -> int:
    return sum(host.batches for host in w.gateway.handles.values())


def headers_at(w: World, shard: str) -> dict[str, HoldHeader]:
    return dict(w.gateway.handles[shard].core.headers)


def other_gateway(w: World, directory: Directory | None = None) -> HoldCoordinator:
    """A second gateway's hold coordinator over the same shards: its own (empty) header
    cache and, when given, its own (older) view of the directory."""
    router: Router = w.gateway.router
    own = Router(directory or Directory(router.directory.shard_names), {}, router._factory, router._store)
    return HoldCoordinator(own, DEFAULT_DICTIONARY)


async def test_a_one_pair_hold_id_is_refused_to_another_request_for_a_pair_of_another_shard(world: World) -> None:
    # The id's home refuses the reuse: two orders must never share one hold (a commit of the
    # id would commit both). The header is not kept beside the part for that reason.
    a = pairs_on(world, "shard-0")[0]
    hold_id = next(h for h in (f"H{i}" for i in range(100)) if hashed_home(h) != "shard-0")
    b = pairs_on(world, next(s for s in ("shard-1", "shard-2") if s != hashed_home(hold_id)))[0]
    await world.gateway.reserve("o1", hold_id, [line(a)], TTL_MS)
    assert headers_at(world, hashed_home(hold_id))[hold_id].pairs == (a,)
    with pytest.raises(RequestConflict):
        await world.gateway.reserve("o2", hold_id, [line(b)], TTL_MS)
    assert (await world.gateway.get_availability(*b)).available == 10
    seen = await other_gateway(world).get_hold(hold_id)
    assert [(p.sku, p.site) for p in seen.parts] == [a]


async def test_a_hold_is_found_by_a_gateway_that_did_not_take_it(world: World) -> None:
    one = pairs_on(world, "shard-1")[0]
    across = [pairs_on(world, "shard-2")[0], pairs_on(world, "shard-0")[0], pairs_on(world, "shard-1")[2]]
    await world.gateway.reserve("o1", "H-one", [line(one, 2)], TTL_MS)
    await world.gateway.reserve("o2", "H-across", [line(p, 3) for p in across], TTL_MS)
    assert "H-one" in headers_at(world, hashed_home("H-one"))
    assert "H-across" in headers_at(world, hashed_home("H-across"))
    other = other_gateway(world)
    seen = await other.get_hold("H-across")
    assert [(p.sku, p.site) for p in seen.parts] == across
    assert seen.held_qty == 9
    done = await other.commit("c1", "H-one", None, "", None, None)
    assert (done.state, done.committed_qty) == (AggregateState.COMMITTED, 2)
    released = await other_gateway(world).release("r2", "H-across", "", None, None)
    assert released.state is AggregateState.RELEASED
    for pair in across:
        assert (await world.gateway.get_availability(*pair)).available == 10
    with pytest.raises(NotFound) as missing:
        await other.get_hold("H-none")
    assert (missing.value.resource_type, missing.value.resource_name) == ("hold", "H-none")
    assert all(check.ok for check in await world.gateway.verify())  # replay: the same headers, same cells


async def test_a_hold_id_of_several_pairs_is_refused_to_another_request_whatever_its_pairs(world: World) -> None:
    a, b, c = pairs_on(world, "shard-0")[0], pairs_on(world, "shard-1")[0], pairs_on(world, "shard-2")[0]
    await world.gateway.reserve("o1", "H-many", [line(a), line(b)], TTL_MS)
    with pytest.raises(RequestConflict):  # no pair in common: its hold id's home refuses it
        await world.gateway.reserve("o2", "H-many", [line(c), line(pairs_on(world, "shard-0")[1])], TTL_MS)
    assert (await world.gateway.get_availability(*c)).available == 10


async def test_a_one_pair_hold_whose_pair_is_pinned_is_found_by_a_gateway_that_never_met_the_pin(
    world: World,
) -> None:
    pair = pairs_on(world, "shard-0")[0]
    stale = Directory(world.gateway.directory.shard_names)  # as another gateway started before the pin
    pin = await world.gateway.pin(*pair)
    await world.gateway.reserve("o1", "H-pinned", [line(pair, 4)], TTL_MS)
    assert pin not in (hashed_home("H-pinned"),)
    assert "H-pinned" in headers_at(world, hashed_home("H-pinned"))
    done = await other_gateway(world, stale).commit("c1", "H-pinned", None, "", None, None)
    assert done.committed_qty == 4
    assert all(check.ok for check in await world.gateway.verify())


async def test_a_holds_bad_input_is_told_at_once_and_before_any_shard_call(world: World) -> None:
    pair = pairs_on(world, "shard-0")[0]
    calls = shard_calls(world)
    with pytest.raises(InvalidArgument) as bad_reserve:  # every field at once, TTL and doc_ref too
        await world.gateway.reserve("o1", "H1", [line(pair, 0)], 0, "d" * 257)
    assert {v.field for v in bad_reserve.value.violations} == {"lines[0].qty", "ttl_ms", "doc_ref"}
    with pytest.raises(InvalidArgument) as bad_commit:  # a hold no gateway cached: no lookup first
        await world.gateway.commit("bad id", "H-unknown")
    assert [v.field for v in bad_commit.value.violations] == ["request_id"]
    with pytest.raises(InvalidArgument) as bad_release:
        await world.gateway.release("r1", "H-unknown", "d" * 257)
    assert [v.field for v in bad_release.value.violations] == ["doc_ref"]
    assert shard_calls(world) == calls
