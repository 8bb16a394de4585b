"""One contract for every replenishment store (engine.replenish.store.ReplenishStore): the
in-memory one and the JetStream key-value one on a real nats-server. A new backend is one
more parameter; the suite does not change."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date
from typing import Any

import pytest
import pytest_asyncio

from adapters.memory.replenish import InMemoryReplenishStore
from adapters.memory.replenish_events import InMemoryReplenishEvents
from adapters.nats.replenish import ReplenishStoreConfig, connect_replenish_store
from adapters.nats.replenish_events import (
    ReplenishBusConfig,
    replenish_event_from_record,
    replenish_event_record,
    start_replenish_events,
)
from adapters.nats.server import EmbeddedNats
from engine.replenish.actions import ReplenishEvent
from engine.replenish.store import (
    AppliedFactor,
    Decision,
    Factor,
    LeadTimeSample,
    Panel,
    ReplenishStore,
    RuleLine,
    StaleWrite,
    Suggestion,
    SupplierTerms,
)
from tests.history_fixtures import chdb_dsn_for_session, drop_test_store, open_test_store, store_kinds  # noqa: F401
from tests.nats_fixtures import nats_server  # noqa: F401 - the session's nats-server

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(params=["memory", "jetstream"], loop_scope="session")
async def store(request: pytest.FixtureRequest, nats_server: EmbeddedNats) -> AsyncIterator[ReplenishStore]:  # noqa: F811
    if request.param == "memory":
        yield InMemoryReplenishStore()
        return
    bucket = f"replenish-test-{uuid.uuid4().hex[:8]}"
    real = await connect_replenish_store(ReplenishStoreConfig(url=nats_server.url, bucket=bucket))
    yield real
    await real.close()


# Ids with characters a KV key does not allow: the store must encode them.
SKU, SITE = "BRG 6204/2RS:é", "HW.DC#1"
PANEL = Panel(
    mean_7d=4.5,
    daily_demand=4.75,
    lead_times=(LeadTimeSample(7.0, 1_767_000_000_000),),
    factors=(AppliedFactor("promotion", 1.5, "crm"),),
    health_flags=("lead_time_default",),
    reorder_point=41.5,
)
SUGGESTION = Suggestion(
    SKU,
    SITE,
    1,
    "open",
    50,
    PANEL,
    trace=(RuleLine("policy.moq", "moq_rounding", "qty", "32", "50", "MOQ 50"),),
    supplier="skf",
)


async def test_a_suggestion_round_trips_whole(store: ReplenishStore) -> None:
    assert await store.get_suggestion(SKU, SITE) is None
    await store.put_suggestion(SUGGESTION, 0)
    assert await store.get_suggestion(SKU, SITE) == SUGGESTION
    assert await store.list_suggestions() == [SUGGESTION]
    assert await store.list_suggestions(site=SITE, sku=SKU) == [SUGGESTION]
    assert await store.list_suggestions(site="elsewhere") == []


async def test_a_write_must_name_the_version_it_replaces(store: ReplenishStore) -> None:
    await store.put_suggestion(SUGGESTION, 0)
    with pytest.raises(StaleWrite):
        await store.put_suggestion(replace(SUGGESTION, version=2), 0)  # "must not exist": it does
    await store.put_suggestion(replace(SUGGESTION, version=2, qty=60), 1)
    with pytest.raises(StaleWrite):
        await store.put_suggestion(replace(SUGGESTION, version=3), 1)  # based on a stale read
    got = await store.get_suggestion(SKU, SITE)
    assert got is not None
    assert (got.version, got.qty) == (2, 60)


async def test_suggestions_list_in_site_then_sku_order(store: ReplenishStore) -> None:
    for site, sku in [("B", "2"), ("A", "9"), ("B", "1")]:
        await store.put_suggestion(replace(SUGGESTION, sku=sku, site=site), 0)
    assert [(s.site, s.sku) for s in await store.list_suggestions()] == [("A", "9"), ("B", "1"), ("B", "2")]


async def test_keys_list_every_pair_in_order_without_reading_values(store: ReplenishStore) -> None:
    from engine.replenish.store import pair_key, pair_of

    assert await store.suggestion_keys() == []
    assert await store.supplier_keys() == []
    pairs = [("B", "2"), ("A", "9"), ("B", "1"), (SITE, SKU)]  # SITE/SKU: characters a KV key does not allow
    for site, sku in pairs:
        await store.put_suggestion(replace(SUGGESTION, sku=sku, site=site), 0)
        await store.put_supplier(SupplierTerms(sku, site, "skf"))
    expected = sorted(pair_key(sku, site) for site, sku in pairs)
    assert await store.suggestion_keys() == expected
    assert await store.supplier_keys() == expected
    assert pair_of(expected[0]) == ("9", "A")


async def test_suppliers_are_kept_per_pair(store: ReplenishStore) -> None:
    terms = SupplierTerms(SKU, SITE, "skf", moq=50, multiple=10, order_weekdays=(0, 3), keeper="li")
    await store.put_supplier(terms)
    await store.put_supplier(replace(terms, site="other", supplier="fag"))
    assert await store.get_supplier(SKU, SITE) == terms
    await store.put_supplier(replace(terms, moq=60))  # a put replaces
    assert (await store.get_supplier(SKU, SITE)).moq == 60  # type: ignore[union-attr]
    assert [t.supplier for t in await store.list_suppliers()] == ["skf", "fag"]
    assert await store.get_supplier(SKU, "nowhere") is None


async def test_factors_are_replaced_by_id(store: ReplenishStore) -> None:
    f = Factor("promo 1", "promotion", SKU, "", "2026-01-01", "2026-01-07", 1.5, "crm")
    await store.put_factors([f, replace(f, factor_id="rain", kind="weather", multiplier=0.8)])
    await store.put_factors([replace(f, multiplier=2.0)])
    assert [(x.factor_id, x.multiplier) for x in await store.list_factors()] == [("promo 1", 2.0), ("rain", 0.8)]


async def test_a_decision_is_kept_once_per_version(store: ReplenishStore) -> None:
    d = Decision(SKU, SITE, 1, "accepted", "wu", ("policy.moq",), 5)
    await store.add_decision(d)
    await store.add_decision(replace(d, planner="someone else"))  # a retry: the first stays
    await store.add_decision(replace(d, version=2, outcome="rejected"))
    assert await store.list_decisions() == [d, replace(d, version=2, outcome="rejected")]


def _event(kind: str = "rfq_requested") -> ReplenishEvent:
    return ReplenishEvent(
        f"{kind}:{SITE}:{SKU}:1", kind, SKU, SITE, 1, 50, "skf", "li", "wu", False, False, 5, 41.5, 6.0, 4.75, 8
    )


async def test_event_records_round_trip() -> None:
    e = _event()
    assert replenish_event_from_record(replenish_event_record(e)) == e
    with pytest.raises(ValueError, match="schema version"):
        replenish_event_from_record({**replenish_event_record(e), "schema_version": 99})


async def test_events_are_stored_once_per_id(nats_server: EmbeddedNats) -> None:  # noqa: F811
    memory = InMemoryReplenishEvents()
    tag = uuid.uuid4().hex[:8]
    config = ReplenishBusConfig(url=nats_server.url, stream=f"REPL_{tag}", subject_prefix=f"t{tag}.replenish")
    publisher = await start_replenish_events(config)
    try:
        for sink in (memory, publisher):
            await sink.publish(_event())
            await sink.publish(_event())  # republished: the same id
            await sink.publish(_event("todo_created"))
        import nats

        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(config.stream)
            assert info.state.messages == 2
            msg = await js.get_last_msg(config.stream, config.subject("todo_created", SITE, SKU))
            assert msg.headers is not None
            assert msg.headers["Lotwise-Event-Kind"] == "todo_created"
            assert replenish_event_from_record(json.loads(msg.data)) == _event("todo_created")
        finally:
            await nc.close()
    finally:
        await publisher.close()
    assert [e.kind for e in memory.events] == ["rfq_requested", "todo_created"]


# ---- stockout days: the roll-up's answer is the movements' answer ----------------------

STOCKOUT_T0 = 1_767_225_600_000  # 2026-01-01T00:00Z


def _stockout_movements() -> tuple[Any, ...]:
    """Receive 5 on Jan 2, sell 5 on Jan 3 (out), receive 3 on Jan 5, sell 1 on Jan 6 and
    2 on Jan 7 (out again); another pair alongside that must not count."""
    from engine.domain.history import HistoryRecord
    from engine.domain.model import External, Movement, MovementKind, QuantKey

    q = QuantKey("L1", "", "available", "own")
    plan = [(1, 5, True), (2, 5, False), (4, 3, True), (5, 1, False), (6, 2, False)]
    out = []
    for seq, (day, qty, incoming) in enumerate(plan, start=1):
        at = STOCKOUT_T0 + day * 86_400_000 + 3_600_000
        src, dst = (External.SUPPLIER, q) if incoming else (q, External.CUSTOMER)
        kind = MovementKind.RECEIVE if incoming else MovementKind.CONSUME
        out.append(HistoryRecord("s0", seq, seq, Movement(seq, kind, "A", "S", "L1", qty, src, dst, at_ms=at)))
    other = Movement(1, MovementKind.RECEIVE, "B", "S", "L1", 9, External.SUPPLIER, q, at_ms=STOCKOUT_T0)
    out.append(HistoryRecord("s0", 9, 9, other))
    return tuple(out)


@pytest.mark.parametrize("kind", store_kinds())
async def test_stockout_days_agree_with_the_movements(kind: str, chdb_dsn_for_session: str) -> None:  # noqa: F811
    from datetime import date

    from adapters.clickhouse.replenish import ClickHouseStockouts
    from adapters.clickhouse.store import ClickHouseHistoryStore
    from engine.domain.history import HistoryBatch
    from engine.replenish.demand import HistoryStockouts

    store = await open_test_store(kind, chdb_dsn_for_session)
    try:
        await store.insert(HistoryBatch(_stockout_movements()))
        first, last = date(2026, 1, 1), date(2026, 1, 8)
        expected = {date(2026, 1, d) for d in (1, 3, 4, 7, 8)}  # closing balance ≤ 0
        assert await HistoryStockouts(store).stockout_days("A", "S", first, last) == expected
        assert await HistoryStockouts(store).stockout_days("A", "S", date(2026, 1, 5), date(2026, 1, 5)) == set()
        if isinstance(store, ClickHouseHistoryStore):
            assert await ClickHouseStockouts(store).stockout_days("A", "S", first, last) == expected
            assert await ClickHouseStockouts(store).stockout_days("A", "S", date(2026, 1, 5), date(2026, 1, 5)) == set()
    finally:
        await drop_test_store(store)


# ---- matched returns: the movements' answer is the roll-up query's answer -----------------


def _return_movements() -> tuple[Any, ...]:
    """Jan 2: sell 5 on SO-1, Jan 3: 4 on SO-2; Jan 4: 2 of SO-1 come back; Jan 5: 1 of SO-2 and
    3 on a document no sale names (unmatched: not netted); Jan 6: a return of another pair's
    sale (not this pair's); Dec 20 of the year before: SO-0 sold (outside the window),
    returned Jan 3 (not netted: its sale's demand is not in the window)."""
    from engine.domain.history import HistoryRecord
    from engine.domain.model import External, Movement, MovementKind, QuantKey

    q = QuantKey("L1", "", "available", "own")
    day = 86_400_000
    plan = [
        ("A", -12, 3, False, "SO-0"),
        ("A", 1, 5, False, "SO-1"),
        ("A", 2, 4, False, "SO-2"),
        ("A", 2, 1, True, "SO-0"),
        ("A", 3, 2, True, "SO-1"),
        ("A", 4, 1, True, "SO-2"),
        ("A", 4, 3, True, "RMA-77"),
        ("B", 1, 6, False, "SO-9"),
        ("A", 5, 2, True, "SO-9"),
    ]
    out = []
    for seq, (sku, d, qty, back, doc) in enumerate(plan, start=1):
        at = STOCKOUT_T0 + d * day + 3_600_000 + seq
        src, dst = (External.CUSTOMER, q) if back else (q, External.CUSTOMER)
        kind = MovementKind.RECEIVE if back else MovementKind.CONSUME
        m = Movement(seq, kind, sku, "S", "L1", qty, src, dst, doc_ref=doc, at_ms=at)
        out.append(HistoryRecord("s0", seq, seq, m))
    return tuple(out)


@pytest.mark.parametrize("kind", store_kinds())
async def test_matched_returns_agree_with_the_movements(kind: str, chdb_dsn_for_session: str) -> None:  # noqa: F811
    from datetime import date

    from adapters.clickhouse.replenish import ClickHouseReturns
    from adapters.clickhouse.store import ClickHouseHistoryStore
    from engine.domain.history import HistoryBatch
    from engine.replenish.demand import HistoryReturns

    store = await open_test_store(kind, chdb_dsn_for_session)
    try:
        await store.insert(HistoryBatch(_return_movements()))
        first, last = date(2026, 1, 1), date(2026, 1, 8)
        expected = {date(2026, 1, 2): 2, date(2026, 1, 3): 1}  # by the day of the sale they undo
        assert await HistoryReturns(store).returned("A", "S", first, last) == expected
        assert await HistoryReturns(store).returned("A", "S", first, date(2026, 1, 3)) == {}
        if isinstance(store, ClickHouseHistoryStore):
            assert await ClickHouseReturns(store).returned("A", "S", first, last) == expected
            assert await ClickHouseReturns(store).returned("A", "S", first, date(2026, 1, 3)) == {}
    finally:
        await drop_test_store(store)


# ---- the trigger's batched reads: the same answers as pair by pair ----------------------


def _health_movements(t0: int) -> tuple[Any, ...]:
    """Two pairs, A@S and B@S, plus C@T that is not asked for: receipts with and without a
    document, a lot first received without an expiry (then again with one), a lot with one,
    sales, a matched and an unmatched return, and a receipt before the window."""
    from engine.domain.history import HistoryRecord
    from engine.domain.model import External, Lot, Movement, MovementKind, QuantKey

    day = 86_400_000
    out: list[Any] = []

    def add(kind: MovementKind, sku: str, site: str, lot_id: str, qty: int, src: Any, dst: Any, **kw: Any) -> None:
        seq = len(out) + 1
        src, dst = (QuantKey(lot_id, "", "available", "own") if b is q else b for b in (src, dst))
        m = Movement(seq, kind, sku, site, lot_id, qty, src, dst, at_ms=kw.pop("at", t0 + seq * day // 4), **kw)
        out.append(HistoryRecord("s0", seq, seq, m))

    rcv, use = MovementKind.RECEIVE, MovementKind.CONSUME
    q = QuantKey("", "", "available", "own")  # the quant of the movement's lot
    for sku, site in (("A", "S"), ("B", "S"), ("C", "T")):
        add(rcv, sku, site, "L0", 4, External.SUPPLIER, q, doc_ref="PO-0", at=t0 - 400 * day)  # outside
        add(rcv, sku, site, "L1", 9, External.SUPPLIER, q, doc_ref="PO-1", lot=Lot("L1", t0))
        add(rcv, sku, site, "L1", 1, External.SUPPLIER, q, lot=Lot("L1", t0, t0 + 90 * day))
        add(rcv, sku, site, "L2", 5, External.SUPPLIER, q, doc_ref="PO-2", lot=Lot("L2", t0, t0 + 30 * day))
        add(use, sku, site, "L1", 3, q, External.CUSTOMER, doc_ref="SO-1")
        add(use, sku, site, "L1", 2, q, External.CUSTOMER)
        add(rcv, sku, site, "L1", 1, External.CUSTOMER, q, doc_ref="SO-1")
        if sku == "A":
            add(rcv, sku, site, "L1", 1, External.CUSTOMER, q, doc_ref="RMA-9")
            add(use, sku, site, "L2", 2, q, External.CUSTOMER, doc_ref="SO-2")
    return tuple(out)


async def test_batched_health_counts_agree_with_the_movements(chdb_dsn_for_session: str) -> None:  # noqa: F811
    from adapters.clickhouse.replenish import ClickHouseHealthCounts
    from adapters.clickhouse.store import ClickHouseHistoryStore
    from engine.domain.history import HistoryBatch, MovementQuery
    from engine.replenish.health import pair_counts

    t0 = STOCKOUT_T0
    store = await open_test_store("chdb", chdb_dsn_for_session)
    try:
        assert isinstance(store, ClickHouseHistoryStore)
        await store.insert(HistoryBatch(_health_movements(t0)))
        from_ms = t0 - 365 * 86_400_000
        counted = await ClickHouseHealthCounts(store).health_counts([("A", "S"), ("B", "S"), ("Z", "S")], from_ms)
        assert set(counted) == {("A", "S"), ("B", "S")}  # C@T not asked for, Z@S has no movement
        for sku in ("A", "B"):
            page = await store.movements(MovementQuery(sku=sku, site="S", from_ms=from_ms, page_size=1_000))
            expected = pair_counts(sku, "S", [r.movement for r in page.records])
            assert counted[(sku, "S")] == expected
        assert (counted[("A", "S")].returns, counted[("A", "S")].returns_matched) == (2, 1)
        assert (counted[("A", "S")].lots, counted[("A", "S")].lots_missing_expiry) == (2, 1)
    finally:
        await drop_test_store(store)


async def test_batched_demand_reads_agree_with_the_per_pair_ones(chdb_dsn_for_session: str) -> None:  # noqa: F811
    from dataclasses import replace as with_

    from adapters.clickhouse.replenish import ClickHouseDemandBatch, ClickHouseReturns, ClickHouseStockouts
    from adapters.clickhouse.store import ClickHouseHistoryStore
    from engine.domain.history import HistoryBatch, SeriesQuery

    store = await open_test_store("chdb", chdb_dsn_for_session)
    try:
        assert isinstance(store, ClickHouseHistoryStore)
        # the stockout plan on A@S, the returns plan moved to A@R (and its B to B@R)
        moved = tuple(with_(r, movement=with_(r.movement, site="R")) for r in _return_movements())
        await store.insert(HistoryBatch(_stockout_movements() + moved))
        first, last = date(2026, 1, 1), date(2026, 1, 8)
        pairs = [("A", "S"), ("B", "S"), ("A", "R"), ("B", "R"), ("Z", "S")]
        batch = ClickHouseDemandBatch(store)
        stockouts = await batch.stockout_days_many(pairs, first, last)
        returned = await batch.returned_many(pairs, first, last)
        consumed = await batch.consumed_many(pairs, first, last)
        day_ms = 86_400_000
        for sku, site in pairs:
            assert stockouts[(sku, site)] == await ClickHouseStockouts(store).stockout_days(sku, site, first, last)
            assert returned.get((sku, site), {}) == await ClickHouseReturns(store).returned(sku, site, first, last)
            series = await store.consumption(SeriesQuery(STOCKOUT_T0, STOCKOUT_T0 + 8 * day_ms, sku, site))
            per_pair = {date.fromisoformat(row.day): row.qty for row in series if row.qty}
            assert consumed.get((sku, site), {}) == per_pair
        assert returned[("A", "R")] == {date(2026, 1, 2): 2, date(2026, 1, 3): 1}
        assert consumed[("A", "S")] == {date(2026, 1, 3): 5, date(2026, 1, 6): 1, date(2026, 1, 7): 2}
    finally:
        await drop_test_store(store)


async def test_entries_walk_the_keys_in_slices_with_state_and_flag(store: ReplenishStore) -> None:
    from engine.replenish.store import SuggestionEntry, pair_key

    rows = [
        ("B", "2", "open", True),
        ("A", "9", "none", False),
        ("B", "1", "accepted", False),
        ("C", "1", "open", False),
    ]
    for site, sku, state, flagged in rows:
        await store.put_suggestion(replace(SUGGESTION, sku=sku, site=site, state=state, flagged=flagged), 0)
    every = [SuggestionEntry(pair_key(sku, site), state, flagged) for site, sku, state, flagged in sorted(rows)]
    assert await store.suggestion_entries() == every
    assert await store.suggestion_entries(after=every[1].key, limit=2) == every[2:4]
    assert await store.suggestion_entries(limit=0) == []
    assert await store.suggestion_entries(site="B") == every[1:3]
    assert await store.suggestion_entries(after=every[1].key, site="B") == every[2:3]
    assert await store.suggestion_entries(site="Z") == []
    # A new version is seen with its new state and flag; a site's neighbour by prefix is not its own.
    await store.put_suggestion(replace(SUGGESTION, sku="1", site="B", version=2, state="open", flagged=True), 1)
    await store.put_suggestion(replace(SUGGESTION, sku="1", site="BB"), 0)
    assert (await store.suggestion_entries(site="B"))[0] == SuggestionEntry(pair_key("1", "B"), "open", True)
    assert [e.key for e in await store.suggestion_entries(site="B")] == [pair_key("1", "B"), pair_key("2", "B")]


async def test_the_index_follows_other_writers_and_older_values(nats_server: EmbeddedNats) -> None:  # noqa: F811
    """Two processes' stores on one bucket: each lists what the other wrote; a value written
    without the state headers (before they existed) is listed with state and flag unknown."""
    import asyncio

    from adapters.nats.replenish import _token
    from engine.replenish.store import SuggestionEntry, pair_key

    bucket = f"replenish-test-{uuid.uuid4().hex[:8]}"
    one = await connect_replenish_store(ReplenishStoreConfig(url=nats_server.url, bucket=bucket))
    two = await connect_replenish_store(ReplenishStoreConfig(url=nats_server.url, bucket=bucket))
    try:
        assert await one.suggestion_entries() == []  # the index is loaded (nothing stored)
        await two.put_suggestion(replace(SUGGESTION, sku="X", site="S", state="open", flagged=True), 0)
        old = json.dumps({"schema_version": 1}).encode()  # the listing reads such a value itself
        await two._kv.put("s." + _token(pair_key("Y", "S")), old)
        want = [SuggestionEntry(pair_key("X", "S"), "open", True), SuggestionEntry(pair_key("Y", "S"))]
        for _ in range(100):
            if await one.suggestion_entries() == want:
                break
            await asyncio.sleep(0.05)
        assert await one.suggestion_entries() == want
        await one.put_suggestion(replace(SUGGESTION, sku="X", site="S", version=2, state="accepted"), 1)
        assert (await one.suggestion_entries(limit=1))[0].state == "accepted"  # its own write: at once
        await two._kv.delete("s." + _token(pair_key("Y", "S")))
        for _ in range(100):
            if len(await one.suggestion_entries()) == 1:
                break
            await asyncio.sleep(0.05)
        assert [e.key for e in await one.suggestion_entries()] == [pair_key("X", "S")]
    finally:
        await one.close()
        await two.close()


async def test_a_stamp_names_what_is_stored_without_a_read(nats_server: EmbeddedNats) -> None:  # noqa: F811
    """The trigger's path: a stored suggestion's (version, state, flag) known without reading it —
    its own writes at once, another process's once its message arrives, an older value (no
    version header) never (read it)."""
    import asyncio

    from adapters.nats.replenish import _token
    from engine.replenish.store import SuggestionStamp, pair_key

    memory = InMemoryReplenishStore()
    assert memory.suggestion_stamp(SKU, SITE) is None
    await memory.put_suggestion(SUGGESTION, 0)
    assert memory.suggestion_stamp(SKU, SITE) == SuggestionStamp(1, "open", False)

    bucket = f"replenish-test-{uuid.uuid4().hex[:8]}"
    one = await connect_replenish_store(ReplenishStoreConfig(url=nats_server.url, bucket=bucket))
    two = await connect_replenish_store(ReplenishStoreConfig(url=nats_server.url, bucket=bucket))
    try:
        await two.put_suggestion(SUGGESTION, 0)
        assert one.suggestion_stamp(SKU, SITE) is None  # not known yet: the first ask starts the index
        for _ in range(100):
            if one.suggestion_stamp(SKU, SITE) is not None:
                break
            await asyncio.sleep(0.05)
        assert one.suggestion_stamp(SKU, SITE) == SuggestionStamp(1, "open", False)
        await two.put_suggestion(replace(SUGGESTION, state="rejected", flagged=True), 1)  # a decision elsewhere
        for _ in range(100):
            if one.suggestion_stamp(SKU, SITE) != SuggestionStamp(1, "open", False):
                break
            await asyncio.sleep(0.05)
        assert one.suggestion_stamp(SKU, SITE) == SuggestionStamp(1, "rejected", True)
        await one.put_suggestion(replace(SUGGESTION, version=2, state="none"), 1)
        assert one.suggestion_stamp(SKU, SITE) == SuggestionStamp(2, "none", False)  # its own write: at once
        old = json.dumps({"schema_version": 1}).encode()
        await two._kv.put("s." + _token(pair_key("Y", "S")), old)
        await asyncio.sleep(0.3)
        assert one.suggestion_stamp("Y", "S") is None
    finally:
        await one.close()
        await two.close()
