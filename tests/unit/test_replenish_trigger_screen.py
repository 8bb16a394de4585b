"""The trigger's cheap path (ReplenishService.recompute_many): a batch is screened at once by
the planner's batch kernels, and a pair above its reorder point whose stored suggestion a plan
ordering nothing would leave as it is costs no plan and no write. What it stores must be exactly
what the full recompute (recompute(), pair by pair) stores for the same inputs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.memory.history import InMemoryHistoryStore
from adapters.memory.replenish import InMemoryReplenishStore
from adapters.memory.replenish_events import InMemoryReplenishEvents
from engine.domain.clock import ManualClock
from engine.domain.history import DayQty, HistoryBatch, HistoryRecord, SeriesQuery
from engine.domain.model import External, Lot, Movement, MovementKind, QuantKey
from engine.domain.ports import FollowedEntry, JournalEntry
from engine.replenish.follower import ReplenishTrigger
from engine.replenish.planning import PolicyPlanner
from engine.replenish.service import PairInputs, Planned, ReplenishConfig, ReplenishService, StockPosition
from engine.replenish.store import Factor, LeadTimeSample, Suggestion, SupplierTerms
from tests.unit.test_replenish_service import FakeStock  # the stock reader the service's own tests use

DAY_MS = 86_400_000
SITE = "HW-DC"


class CountingStore(InMemoryReplenishStore):
    """The in-memory store, counting the trigger path's reads and writes."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = {"suggestion": 0, "supplier": 0, "put": 0}

    async def get_suggestion(self, sku: str, site: str) -> Suggestion | None:
        self.reads["suggestion"] += 1
        return await super().get_suggestion(sku, site)

    async def get_supplier(self, sku: str, site: str) -> SupplierTerms | None:
        self.reads["supplier"] += 1
        return await super().get_supplier(sku, site)

    async def put_suggestion(self, s: Suggestion, expected_version: int) -> None:
        self.reads["put"] += 1
        await super().put_suggestion(s, expected_version)


class CountingPlanner:
    """The policy planner, counting the pairs it plans in full (its screen is not counted)."""

    def __init__(self) -> None:
        self.inner = PolicyPlanner()
        self.planned = 0

    def __call__(self, inputs: Sequence[PairInputs]) -> list[Planned]:
        self.planned += len(inputs)
        return self.inner(inputs)

    def screen(self, inputs: Sequence[PairInputs]) -> list[bool]:
        return self.inner.screen(inputs)


@dataclass(frozen=True)
class PairCase:
    rate: int  # units a day over the last 60 days
    first_stock: int  # the position of the first recompute
    stock: int  # the position now
    terms_then: bool  # supplier terms already at the first recompute
    terms_now: bool  # supplier terms now (added after the first recompute when not then)
    moq: int
    multiple: int
    shelf_life_days: int
    lead_days: int
    lead_spread: int  # the last three lead times: lead_days, lead_days + spread, lead_days
    decision: str  # "", "accepted", "rejected": what a planner did to an open first version
    gifts: int  # gifts without tax noted since (data health)
    scans: int = 0  # units issued today since, as the follower notes them (not in the history yet)
    late_decision: str = ""  # "", "accepted", "rejected": a decision after the trigger's caches


pair_cases = st.builds(
    PairCase,
    rate=st.integers(0, 8),
    first_stock=st.integers(0, 120),
    stock=st.integers(0, 120),
    terms_then=st.booleans(),
    terms_now=st.booleans(),
    moq=st.sampled_from([0, 10, 50]),
    multiple=st.sampled_from([1, 6]),
    shelf_life_days=st.sampled_from([0, 0, 5, 20]),
    lead_days=st.integers(1, 9),
    lead_spread=st.integers(0, 8),
    decision=st.sampled_from(["", "", "accepted", "rejected"]),
    gifts=st.sampled_from([0, 0, 3]),
    scans=st.sampled_from([0, 0, 2, 20]),
    late_decision=st.sampled_from(["", "", "accepted", "rejected"]),
)


class CountingHistory(InMemoryHistoryStore):
    """The in-memory history, counting the daily consumption reads."""

    def __init__(self) -> None:
        super().__init__()
        self.consumption_reads = 0

    async def consumption(self, q: SeriesQuery) -> list[DayQty]:
        self.consumption_reads += 1
        return await super().consumption(q)


async def _history(cases: Sequence[PairCase], clock: ManualClock) -> CountingHistory:
    history = CountingHistory()
    q = QuantKey("L1", "", "available", "own")
    records: list[HistoryRecord] = []
    for n, case in enumerate(cases):
        for day in range(1, 61):
            if case.rate and (day * (n + 3)) % 4:  # some days without demand
                at = clock.now_ms() - day * DAY_MS
                m = Movement(
                    len(records) + 1,
                    MovementKind.CONSUME,
                    f"S{n}",
                    SITE,
                    "L1",
                    case.rate,
                    q,
                    External.CUSTOMER,
                    at_ms=at,
                )
                records.append(HistoryRecord("s0", len(records) + 1, len(records) + 1, m))
    if records:
        await history.insert(HistoryBatch(tuple(records)))
    return history


def _terms(n: int, case: PairCase, clock: ManualClock) -> SupplierTerms:
    days = (case.lead_days, case.lead_days + case.lead_spread, case.lead_days)
    leads = tuple(LeadTimeSample(d, clock.now_ms() - i * DAY_MS) for i, d in enumerate(days, start=1))
    return SupplierTerms(
        f"S{n}",
        SITE,
        "skf",
        moq=case.moq,
        multiple=case.multiple,
        lead_times=leads,
        shelf_life_days=case.shelf_life_days,
    )


def _moved(n: int, before: int, after: int, at_ms: int) -> Movement:
    """The movement that takes pair n's stock from `before` to `after`: a sale or a receipt."""
    q = QuantKey("L-new", "", "available", "own")
    if after < before:
        return Movement(1, MovementKind.CONSUME, f"S{n}", SITE, "L1", before - after, q, External.CUSTOMER, at_ms=at_ms)
    lot = Lot("L-new", at_ms, at_ms + 400 * DAY_MS)
    return Movement(
        1, MovementKind.RECEIVE, f"S{n}", SITE, "L-new", after - before, External.SUPPLIER, q, at_ms=at_ms, lot=lot
    )


async def _world(
    cases: Sequence[PairCase], follow: bool = False
) -> tuple[ReplenishService, FakeStock, InMemoryReplenishEvents, CountingPlanner]:
    """One service brought to the same state every time: a first full recompute of every
    pair, the planners' decisions, then the supplier terms, gifts and stock of now. `follow`:
    the service keeps floors under the positions, and each change of stock comes with the
    movement that made it (as the journal follower tells them)."""
    clock = ManualClock()
    stock, events, planner = FakeStock(), InMemoryReplenishEvents(), CountingPlanner()
    service = ReplenishService(
        CountingStore(),
        stock,
        planner,
        clock,
        history=await _history(cases, clock),
        actions=events,
        config=ReplenishConfig(),
    )
    if follow:
        service.follow_positions()
    for n, case in enumerate(cases):
        if case.terms_then:
            await service.put_supplier(_terms(n, case, clock))
        stock.available[(f"S{n}", SITE)] = case.first_stock
        first = await service.recompute(f"S{n}", SITE, "schedule")
        if case.decision and first.state == "open":
            await service.decide("planner-li", f"S{n}", SITE, first.version, case.decision, first.qty, "checked")
    await service.recompute_many([(f"S{n}", SITE) for n in range(len(cases))], "journal")  # the trigger's caches
    clock.advance(5_000)  # what moves from here is surely not in the reads just made
    for n, case in enumerate(cases):
        current = await service.store.get_suggestion(f"S{n}", SITE)
        if case.late_decision and current is not None and current.state == "open":
            await service.decide("planner-wu", f"S{n}", SITE, current.version, case.late_decision, 1, "late")
        if case.scans:
            service.note_consumed(f"S{n}", SITE, case.scans, clock.now_ms())
        if case.terms_now and not case.terms_then:
            await service.put_supplier(_terms(n, case, clock))
        for _ in range(case.gifts):
            service.note_gift(f"S{n}", SITE, with_tax=False)
        before = stock.available[(f"S{n}", SITE)]
        stock.available[(f"S{n}", SITE)] = case.stock
        if follow and case.stock != before:
            service.note_movement(_moved(n, before, case.stock, clock.now_ms()), fresh=True)
    return service, stock, events, planner


def _per_pair(events: Sequence[Any]) -> dict[tuple[str, str], list[Any]]:
    out: dict[tuple[str, str], list[Any]] = {}
    for e in events:
        out.setdefault((e.sku, e.site), []).append(e)
    return out


async def _stored(service: ReplenishService, pairs: int) -> list[Suggestion | None]:
    return [await service.store.get_suggestion(f"S{n}", SITE) for n in range(pairs)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(pair_cases, min_size=1, max_size=8), st.booleans())
def test_the_screened_batch_stores_exactly_what_the_full_recompute_stores(cases: list[PairCase], follow: bool) -> None:
    """`follow`: the screen takes the floors under the positions and the stored suggestions known
    by their stamps (no read) — it must still store exactly what the full recompute stores."""

    async def run() -> None:
        cheap, _, cheap_events, _ = await _world(cases, follow)
        full, _, full_events, _ = await _world(cases, follow)
        pairs = [(f"S{n}", SITE) for n in range(len(cases))]
        got = await cheap.recompute_many(pairs, "journal")
        want = [await full.recompute(sku, site, "journal") for sku, site in pairs]
        assert got == want  # what each pair's recompute answers
        assert await _stored(cheap, len(cases)) == await _stored(full, len(cases))  # what is stored
        # What is told, per pair in order (the batch recomputes its pairs concurrently: the
        # order between pairs is the scheduler's).
        assert _per_pair(cheap_events.events) == _per_pair(full_events.events)

    asyncio.run(run())


def test_a_pair_that_stays_above_its_reorder_point_costs_no_plan_no_write_and_one_read() -> None:
    """Fails without the screen: every moved pair was planned in full, and each recompute read
    its stored suggestion twice and its supplier terms once."""
    cases = [PairCase(5, 100, 90, True, True, 10, 1, 0, 7, 2, "", 0) for _ in range(6)]

    async def run() -> None:
        service, stock, _, planner = await _world(cases)
        pairs = [(f"S{n}", SITE) for n in range(len(cases))]
        await service.recompute_many(pairs, "journal")  # the first batch reads the terms
        assert isinstance(service.store, CountingStore)
        service.store.reads = {"suggestion": 0, "supplier": 0, "put": 0}
        planned = planner.planned
        for n in range(len(cases)):
            stock.available[(f"S{n}", SITE)] = 80  # a scan, still above the reorder point
        got = await service.recompute_many(pairs, "journal")
        assert all(isinstance(s, Suggestion) and s.state == "none" and s.version == 1 for s in got)
        assert planner.planned == planned
        assert service.store.reads == {"suggestion": len(pairs), "supplier": 0, "put": 0}

    asyncio.run(run())


def test_with_the_journal_followed_a_pair_that_stays_above_costs_no_read_at_all() -> None:
    """Fails without the floors and the stamps: each moved pair read its position from the
    cells and its stored suggestion from the store. A pair whose floor falls to its reorder
    point is planned from fresh reads, and a decision made elsewhere is seen by its stamp."""
    cases = [PairCase(5, 100, 100, True, True, 10, 1, 0, 7, 2, "", 0) for _ in range(6)]

    async def run() -> None:
        service, stock, _, planner = await _world(cases, follow=True)
        pairs = [(f"S{n}", SITE) for n in range(len(cases))]
        await service.recompute_many(pairs, "journal")
        assert isinstance(service.store, CountingStore)
        assert isinstance(service.clock, ManualClock)
        service.store.reads = {"suggestion": 0, "supplier": 0, "put": 0}
        planned, cells_read = planner.planned, stock.reads
        for n in range(len(cases)):  # a sale of 20 each, still above the reorder point
            service.note_movement(_moved(n, 100, 80, service.clock.now_ms()), fresh=True)
            stock.available[(f"S{n}", SITE)] = 80
        got = await service.recompute_many(pairs, "journal")
        assert all(isinstance(s, Suggestion) and s.state == "none" and s.version == 1 for s in got)
        assert (planner.planned, stock.reads) == (planned, cells_read)
        assert service.store.reads == {"suggestion": 0, "supplier": 0, "put": 0}
        service.note_movement(_moved(0, 80, 3, service.clock.now_ms()), fresh=True)  # crosses
        stock.available[("S0", SITE)] = 3
        (crossed, _) = await service.recompute_many(pairs[:2], "journal")
        assert isinstance(crossed, Suggestion)
        assert (crossed.version, crossed.state) == (2, "open")
        assert stock.reads == cells_read + 1  # planned from the cells' own position
        other = await service.store.get_suggestion("S1", SITE)
        assert other is not None
        await service.store.put_suggestion(replace(other, state="rejected", reason="seasonal"), 1)  # elsewhere
        (seen,) = await service.recompute_many(pairs[1:2], "journal")
        assert isinstance(seen, Suggestion)
        assert (seen.version, seen.state) == (1, "rejected")

    asyncio.run(run())


def test_crossing_the_reorder_point_is_planned_and_stored_at_once() -> None:
    cases = [PairCase(5, 100, 100, True, True, 10, 1, 0, 7, 2, "", 0)]

    async def run() -> None:
        service, stock, events, _ = await _world(cases)
        stock.available[("S0", SITE)] = 3
        (got,) = await service.recompute_many([("S0", SITE)], "journal")
        assert isinstance(got, Suggestion)
        assert (got.version, got.state, got.below_reorder_point) == (2, "open", True)
        assert got.qty >= 10
        assert [e.kind for e in events.events][-1] == "replenishment_suggested"

    asyncio.run(run())


def test_new_supplier_terms_reach_the_trigger_path_at_once() -> None:
    """The trigger path reads terms at most every SUPPLIER_TTL_S; a put here, or a receipt of the
    pair, drops the cached ones."""
    cases = [PairCase(5, 100, 100, True, True, 10, 1, 0, 7, 2, "", 0)]

    async def run() -> None:
        service, stock, _, _ = await _world(cases)
        clock = service.clock
        assert isinstance(clock, ManualClock)
        await service.recompute_many([("S0", SITE)], "journal")
        stock.available[("S0", SITE)] = 30
        await service.put_supplier(replace(_terms(0, cases[0], clock), supplier="ina", moq=50))
        (got,) = await service.recompute_many([("S0", SITE)], "journal")
        assert isinstance(got, Suggestion)
        assert got.supplier == "ina"  # the new terms, not the cached ones
        await service.store.put_supplier(replace(_terms(0, cases[0], clock), supplier="fag"))  # written elsewhere
        service.note_received("S0", SITE, 5)
        (got,) = await service.recompute_many([("S0", SITE)], "journal")
        assert isinstance(got, Suggestion)
        assert got.supplier == "fag"

    asyncio.run(run())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(pair_cases, min_size=1, max_size=10))
def test_the_batch_screen_agrees_with_the_full_policy_for_perishables(cases: list[PairCase]) -> None:
    """Fails without passing the shelf life to the screen: a shelf life shortens the cycle,
    which moves the reorder point."""
    clock = ManualClock()
    today = date(2026, 1, 1)
    inputs = [
        PairInputs(
            f"S{n}",
            SITE,
            today,
            tuple(float(c.rate * ((d * (n + 3)) % 4 != 0)) for d in range(90)),
            (False,) * 90,
            StockPosition(c.stock, 0, 0, 0),
            _terms(n, c, clock),
            (),
            0,
            ReplenishConfig(),
        )
        for n, c in enumerate(cases)
    ]
    planner = PolicyPlanner()
    assert planner.screen(inputs) == [p.below_reorder_point for p in planner(inputs)]


def test_a_scan_reads_no_history_and_a_return_reads_it_again() -> None:
    """Fails without the cache of the daily inputs: every trigger batch read each pair's
    consumption (and returns, stockout days) from the history again."""
    cases = [PairCase(5, 100, 100, True, True, 10, 1, 0, 7, 2, "", 0)]

    async def run() -> None:
        service, stock, _, _ = await _world(cases)
        history = service.history
        assert isinstance(history, CountingHistory)
        reads = history.consumption_reads
        clock = service.clock
        q = QuantKey("L1", "", "available", "own")
        scan = Movement(900, MovementKind.CONSUME, "S0", SITE, "L1", 30, q, External.CUSTOMER, at_ms=clock.now_ms())
        trigger = ReplenishTrigger(service)
        stock.available[("S0", SITE)] = 70
        await trigger.apply((FollowedEntry(1, JournalEntry("s0", 1, scan.at_ms, (), (scan,))),))
        assert history.consumption_reads == reads  # the cached days, today's scan from the live count
        inputs = await service.inputs("S0", SITE)
        assert inputs.demand[-1] == 30
        back = replace(scan, seq=901, kind=MovementKind.RECEIVE, qty=2, src=External.CUSTOMER, dst=q)
        reads = history.consumption_reads = 0
        await trigger.apply((FollowedEntry(2, JournalEntry("s0", 2, back.at_ms, (), (back,))),))
        assert history.consumption_reads == 1  # a return: the days are read again

    asyncio.run(run())


def test_a_failing_screen_plans_the_batch_in_full() -> None:
    cases = [
        PairCase(5, 100, 3, True, True, 10, 1, 0, 7, 2, "", 0),
        PairCase(5, 100, 100, True, True, 10, 1, 0, 7, 2, "", 0),
    ]

    def broken(inputs: Sequence[PairInputs]) -> list[bool]:
        raise ValueError("screen broke")

    async def run() -> None:
        service, _, _, planner = await _world(cases)
        planned = planner.planned
        planner.screen = broken  # type: ignore[method-assign]
        got = await service.recompute_many([("S0", SITE), ("S1", SITE)], "journal")
        assert [s.state for s in got if isinstance(s, Suggestion)] == ["open", "none"]
        assert planner.planned == planned + 2

    asyncio.run(run())


def test_a_floor_counted_below_zero_is_screened_not_refused() -> None:
    """Fails without the floor's clamp at 0: the screen refused the batch (InvalidArgument:
    on_hand must be an integer ≥ 0) and every pair of it was planned in full. With it, only the
    pair at zero is planned (from the cells' own position); the other one goes by."""
    cases = [PairCase(5, 100, 100, True, True, 10, 1, 0, 7, 2, "", 0) for _ in range(2)]

    async def run() -> None:
        service, stock, _, planner = await _world(cases, follow=True)
        pairs = [(f"S{n}", SITE) for n in range(len(cases))]
        await service.recompute_many(pairs, "journal")
        planned = planner.planned
        now = service.clock.now_ms()
        service.note_movement(_moved(0, 100, 0, now), fresh=True)  # a sale the read held already:
        service.note_movement(_moved(0, 100, 0, now), fresh=True)  # counted twice, the floor is -100
        stock.available[("S0", SITE)] = 0
        service.note_movement(_moved(1, 100, 95, now), fresh=True)
        stock.available[("S1", SITE)] = 95
        got = await service.recompute_many(pairs, "journal")
        assert [s.state for s in got if isinstance(s, Suggestion)] == ["open", "none"]
        assert planner.planned == planned + 1

    asyncio.run(run())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            pair_cases,
            st.integers(0, 30),  # held
            st.integers(0, 40),  # arriving units
            st.lists(st.tuples(st.integers(1, 30), st.integers(-3, 20)), max_size=3),  # transfers: units, ETA day
            st.integers(0, 30),  # open to-dos
            st.sampled_from([(), (("promotion", 1, 6, 2.5),), (("weather", -2, 30, 0.8), ("event", 3, 3, 3.0))]),
            st.sampled_from([0.0, 0.9, 0.99]),  # the supplier's own service level (0: the config's)
        ),
        min_size=1,
        max_size=10,
    )
)
def test_the_batch_screen_agrees_with_the_full_policy_with_arrivals_holds_todos_and_factors(
    cases: list[tuple[Any, ...]],
) -> None:
    """The screen builds its positions and factors for the whole batch at once (no PairPosition,
    arrival or DemandHistory per pair): it must still find exactly the pairs `suggest` finds."""
    clock = ManualClock()
    today = date(2026, 1, 1)
    day_ms = 1_767_225_600_000  # 2026-01-01
    inputs = []
    for n, (c, held, arriving, transfers, todos, factors, level) in enumerate(cases):
        stored = tuple(
            Factor(
                f"f{n}{k}",
                kind,
                "",
                "",
                date.fromordinal(today.toordinal() + a).isoformat(),
                date.fromordinal(today.toordinal() + b).isoformat(),
                mult,
            )
            for k, (kind, a, b, mult) in enumerate(factors)
        )
        arrivals = tuple((units, day_ms + eta * DAY_MS if eta >= 0 else 0) for units, eta in transfers)
        inputs.append(
            PairInputs(
                f"S{n}",
                SITE,
                today,
                tuple(float(c.rate * ((d * (n + 3)) % 4 != 0)) for d in range(90)),
                tuple(d % 17 == 5 for d in range(90)),
                StockPosition(c.stock, held, arriving, 0, arrivals=arrivals),
                replace(_terms(n, c, clock), service_level=level) if c.terms_now else None,
                stored,
                todos,
                ReplenishConfig(),
            )
        )
    planner = PolicyPlanner()
    assert planner.screen(inputs) == [p.below_reorder_point for p in planner(inputs)]
