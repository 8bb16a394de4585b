"""The trigger's first look at many pairs (a bulk import moved each): the batch reads the
pairs' positions in one stock query, knows "no terms" from one listing of the terms' keys and
"none stored" from the store's index, and plans every pair without a screen. What it stores
must be exactly what recompute() stores pair by pair, reading everything one pair at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from adapters.memory.replenish_events import InMemoryReplenishEvents
from engine.domain.cell import SliceRow
from engine.domain.clock import ManualClock
from engine.domain.inventory import StockQuery, StockRow
from engine.replenish.service import MIN_POSITION_QUERY, MIN_TERMS_LISTING, ReplenishConfig, ReplenishService
from engine.replenish.store import Suggestion, SupplierTerms, pair_key
from tests.unit.test_replenish_service import FakeStock
from tests.unit.test_replenish_trigger_screen import SITE, CountingPlanner, CountingStore, PairCase, _history, _terms

PAIRS = max(MIN_POSITION_QUERY, MIN_TERMS_LISTING) + 8  # a batch large enough for both batch reads


class QueryingStock(FakeStock):
    """FakeStock with the gateway's stock query (rows per pair by status), counted."""

    def __init__(self) -> None:
        super().__init__()
        self.queries = 0

    async def query_stock(self, q: StockQuery, deadline: float | None = None) -> list[StockRow]:
        self.queries += 1
        return [
            StockRow(sku, site, SliceRow((("status", "available"),), qty, 0, qty, qty, 0))
            for (sku, site), qty in sorted(self.available.items())
            if sku in q.skus and site in q.sites
        ]


class SupplierKeysStore(CountingStore):
    """Counts the listings of the terms' keys too."""

    def __init__(self) -> None:
        super().__init__()
        self.listings = 0

    async def supplier_keys(self) -> list[str]:
        self.listings += 1
        return await super().supplier_keys()


@dataclass
class World:
    service: ReplenishService
    stock: FakeStock
    store: SupplierKeysStore
    events: InMemoryReplenishEvents


async def _world(cases: Sequence[PairCase], stock: FakeStock) -> World:
    """Pairs never recomputed (a first look), with their history, stock and (some) terms."""
    clock = ManualClock()
    store, events = SupplierKeysStore(), InMemoryReplenishEvents()
    service = ReplenishService(
        store, stock, CountingPlanner(), clock, history=await _history(cases, clock), actions=events
    )
    for n, case in enumerate(cases):
        stock.available[(f"S{n}", SITE)] = case.stock
        if case.terms_now:
            await service.put_supplier(_terms(n, case, clock))
    return World(service, stock, store, events)


async def _stored(world: World, pairs: int) -> list[Suggestion | None]:
    return [await world.store.get_suggestion(f"S{n}", SITE) for n in range(pairs)]


first_looks = st.builds(
    PairCase,
    rate=st.integers(0, 8),
    first_stock=st.just(0),
    stock=st.integers(0, 120),
    terms_then=st.just(False),
    terms_now=st.booleans(),
    moq=st.sampled_from([0, 10, 50]),
    multiple=st.sampled_from([1, 6]),
    shelf_life_days=st.sampled_from([0, 0, 5, 20]),
    lead_days=st.integers(1, 9),
    lead_spread=st.integers(0, 8),
    decision=st.just(""),
    gifts=st.just(0),
)


@settings(max_examples=8, deadline=None, phases=[Phase.generate], suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(first_looks, min_size=PAIRS, max_size=PAIRS))
def test_a_first_look_in_one_batch_stores_exactly_what_recompute_stores_pair_by_pair(cases: list[PairCase]) -> None:
    async def run() -> None:
        batch = await _world(cases, QueryingStock())
        alone = await _world(cases, FakeStock())
        pairs = [(f"S{n}", SITE) for n in range(len(cases))]
        batch.store.reads = {"suggestion": 0, "supplier": 0, "put": 0}
        assert isinstance(batch.stock, QueryingStock)
        batch.stock.reads = 0  # put_supplier's check that the pair exists
        got = await batch.service.recompute_many(pairs, "journal")
        reads = dict(batch.store.reads)
        want = [await alone.service.recompute(sku, site, "journal") for sku, site in pairs]
        assert got == want
        assert await _stored(batch, len(cases)) == await _stored(alone, len(cases))
        assert batch.events.events == alone.events.events
        # The batch's reads: one stock query, one listing, a get only of the terms that exist.
        assert (batch.stock.queries, batch.stock.reads, batch.store.listings) == (1, 0, 1)
        with_terms = sum(c.terms_now for c in cases)
        assert reads == {"suggestion": 0, "supplier": with_terms, "put": len(cases)}

    asyncio.run(run())


class LaggingIndexStore(SupplierKeysStore):
    """A store whose index has not seen another gateway's write yet: it says "none stored"."""

    def suggestion_absent(self, sku: str, site: str) -> bool:
        return True


def test_none_stored_by_a_lagging_index_still_loses_no_write() -> None:
    """The first look's write is conditional on "none": a suggestion stored meanwhile makes it
    StaleWrite, and the pair is read again and stored as its next version."""
    case = PairCase(5, 0, 3, False, True, 10, 1, 0, 7, 2, "", 0)

    async def run() -> None:
        clock = ManualClock()
        store = LaggingIndexStore()
        service = ReplenishService(
            store,
            FakeStock(),
            CountingPlanner(),
            clock,
            history=await _history([case], clock),
            config=ReplenishConfig(),
        )
        assert isinstance(service.stock, FakeStock)
        service.stock.available[("S0", SITE)] = 3
        await service.put_supplier(_terms(0, case, clock))
        first = await service.recompute("S0", SITE, "schedule")
        assert first.version == 1
        service._suggestions.clear()  # this process forgets it, as another gateway's write would be
        (again,) = await service.recompute_many([("S0", SITE)], "journal")
        assert isinstance(again, Suggestion)
        assert again.version == 1  # read again after the StaleWrite: the same proposal stays
        assert store.reads["suggestion"] >= 1

    asyncio.run(run())


def test_terms_stored_after_a_listing_are_seen_once_the_pair_is_received() -> None:
    """The listing says "no terms" for SUPPLIER_TTL_S; a receipt of a pair after it (a receipt
    drops the pair's terms) takes a new listing, so its new terms are read."""
    cases = [PairCase(3, 0, 50, False, False, 10, 1, 0, 7, 2, "", 0) for _ in range(PAIRS)]

    async def run() -> None:
        world = await _world(cases, QueryingStock())
        pairs = [(f"S{n}", SITE) for n in range(PAIRS)]
        await world.service.recompute_many(pairs, "journal")
        assert world.store.listings == 1
        # Terms stored by another gateway (not through this service), then a receipt of each pair.
        for n in range(PAIRS):
            await world.store.put_supplier(SupplierTerms(f"S{n}", SITE, "acme", moq=10, multiple=1))
            world.service.note_received(f"S{n}", SITE, 5)
        got: list[Any] = await world.service.recompute_many(pairs, "journal")
        assert world.store.listings == 2
        assert all(isinstance(s, Suggestion) and s.supplier == "acme" for s in got)
        assert pair_key("S0", SITE) in world.service._terms

    asyncio.run(run())
