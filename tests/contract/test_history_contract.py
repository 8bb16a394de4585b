"""The HistoryStore contract (DESIGN.md §4, §8, §10), for every backend.

Each store — the in-memory reference, chDB, and a ClickHouse server when
LOTWISE_TEST_CLICKHOUSE_URL is set — is loaded with the same realistic history (a real
shard core driven by a seeded mix of commands) and must give the very answers the
reference gives, which in turn are checked against hand-computed values and against the
live state of the core that produced the movements.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import pytest_asyncio

from adapters.clickhouse.queries import MOVEMENT_COLUMNS, movement_row
from adapters.clickhouse.schema import MIGRATIONS, migrate
from adapters.clickhouse.store import HistoryStoreConfig, _connect, open_store
from adapters.memory.history import InMemoryHistoryStore
from engine.domain.errors import InvalidArgument
from engine.domain.history import (
    BalanceQuery,
    ExpiryQuery,
    HistoryBatch,
    HistoryDimension,
    HistoryRecord,
    MovementQuery,
    SeriesQuery,
    TraceQuery,
    TurnoverQuery,
    encode_cursor,
)
from engine.domain.model import MS_PER_DAY, External, Lot, Movement, MovementKind, Provenance, QuantKey
from engine.domain.ports import HistoryStore
from tests.history_fixtures import (
    T0_MS,
    all_records,
    chdb_dsn_for_session,  # noqa: F401 - the session's chDB path
    drop_test_store,
    load,
    open_test_store,
    sample_history,
    store_kinds,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

BATCHES = sample_history()
RECORDS = all_records(BATCHES)
END_MS = max(r.movement.at_ms for r in RECORDS)
D = HistoryDimension


@pytest_asyncio.fixture(params=store_kinds(), loop_scope="session")
async def store(request: pytest.FixtureRequest, chdb_dsn_for_session: str) -> AsyncIterator[HistoryStore]:  # noqa: F811
    made = await open_test_store(request.param, chdb_dsn_for_session)
    yield made
    await drop_test_store(made)


@pytest_asyncio.fixture(scope="module", params=store_kinds(), loop_scope="session")
async def loaded(request: pytest.FixtureRequest, chdb_dsn_for_session: str) -> AsyncIterator[HistoryStore]:  # noqa: F811
    """One store per kind for the module's read-only tests, loaded once."""
    made = await open_test_store(request.param, chdb_dsn_for_session)
    await load(made, BATCHES)
    yield made
    await drop_test_store(made)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def reference() -> InMemoryHistoryStore:
    ref = InMemoryHistoryStore()
    await load(ref, BATCHES)
    return ref


def _movement(seq: int, kind: MovementKind, qty: int, src: QuantKey | External, dst: QuantKey | External, **kw: object):
    return Movement(seq, kind, "sku-x", "site-x", "L1", qty, src, dst, at_ms=T0_MS + seq * 1000, **kw)  # type: ignore[arg-type]


A = QuantKey("L1", "A/01/P1", "available", "own")
B = QuantKey("L1", "B/02", "available", "consignment:acme")
HAND_MADE = (
    _movement(
        1,
        MovementKind.RECEIVE,
        10,
        External.SUPPLIER,
        A,
        lot=Lot("L1", T0_MS, T0_MS + 5 * MS_PER_DAY),
        request_id="r1",
        doc_ref="PO-1",
    ),
    _movement(2, MovementKind.MOVE, 4, A, B, request_id="r2", doc_ref="MV-1"),
    _movement(3, MovementKind.RESERVE, 0, A, A, held_key=A, held_delta=3, hold_id="h1", expires_at_ms=T0_MS + 60_000),
    _movement(4, MovementKind.COMMIT, 2, A, External.CUSTOMER, held_key=A, held_delta=-2, hold_id="h1", doc_ref="SO-1"),
    _movement(5, MovementKind.RELEASE, 0, A, A, held_key=A, held_delta=-1, hold_id="h1", doc_ref="SO-1"),
    _movement(6, MovementKind.DISCREPANCY, 5, External.COUNT_VARIANCE, External.CUSTOMER, doc_ref="TK-1"),
)


def _batch(movements: tuple[Movement, ...], token: str = "") -> HistoryBatch:
    return HistoryBatch(tuple(HistoryRecord("s-hand", m.seq, 100 + m.seq, m) for m in movements), token=token)


# ---- writing ----


async def test_movements_come_back_exactly_as_inserted(store: HistoryStore) -> None:
    await store.insert(_batch(HAND_MADE))
    page = await store.movements(MovementQuery(sku="sku-x", page_size=100))
    assert [r.movement for r in page.records] == list(HAND_MADE)
    assert [(r.shard, r.batch_seq, r.position) for r in page.records] == [
        ("s-hand", m.seq, 100 + m.seq) for m in HAND_MADE
    ]
    assert page.next_cursor == ""


async def test_a_movement_stored_twice_counts_once(store: HistoryStore) -> None:
    await store.insert(_batch(HAND_MADE, token="t1"))
    await store.insert(_batch(HAND_MADE, token="t1"))  # a retry of the same batch
    await store.insert(_batch(HAND_MADE[2:], token="t2"))  # overlapping, as a redelivery would be
    [total] = await store.totals()
    assert (total.movements, total.max_seq, total.qty, total.held) == (6, 6, 10 - 2, 0)
    rows = await store.balance_as_of(BalanceQuery(as_of_ms=END_MS, skus=("sku-x",)))
    assert [(r.qty, r.held) for r in rows] == [(8, 0)]
    series = await store.consumption(SeriesQuery(T0_MS, T0_MS + 1, sku="sku-x"))
    assert [(p.day, p.qty) for p in series] == [("2026-01-01", 7)]
    page = await store.movements(MovementQuery(sku="sku-x"))
    assert len(page.records) == 6


async def test_insert_writes_only_what_is_not_stored_yet(store: HistoryStore) -> None:
    assert await store.insert(_batch(HAND_MADE[:3], token="a")) == 3
    assert await store.insert(_batch(HAND_MADE[:3], token="a")) == 0
    assert await store.insert(_batch(HAND_MADE, token="b")) == 3
    assert await store.insert(HistoryBatch(())) == 0
    [total] = await store.totals()
    assert total.movements == 6


async def test_hand_made_balances_by_every_dimension(store: HistoryStore) -> None:
    await store.insert(_batch(HAND_MADE))

    async def balance(**kw: object) -> list[tuple[tuple[tuple[str, str], ...], int, int]]:
        rows = await store.balance_as_of(BalanceQuery(as_of_ms=kw.pop("as_of_ms", END_MS), **kw))  # type: ignore[arg-type]
        return [(r.group, r.qty, r.held) for r in rows]

    assert await balance(group_by=(D.BIN,)) == [((("bin", "A/01/P1"),), 4, 0), ((("bin", "B/02"),), 4, 0)]
    assert await balance(group_by=(D.BIN,), bin_depth=1) == [((("bin", "A"),), 4, 0), ((("bin", "B"),), 4, 0)]
    assert await balance(group_by=(D.OWNER, D.SITE)) == [
        ((("owner", "consignment:acme"), ("site", "site-x")), 4, 0),
        ((("owner", "own"), ("site", "site-x")), 4, 0),
    ]
    assert await balance(owner="consignment") == [((), 4, 0)]
    assert await balance(bin_prefix="A") == [((), 4, 0)]
    assert await balance(bin_prefix="A/0") == []
    assert await balance(statuses=("damaged",)) == []
    # Mid-way: received, moved, reserved — 3 held on bin A.
    assert await balance(as_of_ms=T0_MS + 3_000, group_by=(D.BIN,)) == [
        ((("bin", "A/01/P1"),), 6, 3),
        ((("bin", "B/02"),), 4, 0),
    ]
    assert await balance(as_of_ms=T0_MS) == []
    assert await balance(group_by=(D.LOT, D.EXPIRY_DAY, D.RECEIVED_DAY)) == [
        ((("lot", "L1"), ("expiry_day", "2026-01-06"), ("received_day", "2026-01-01")), 8, 0)
    ]
    assert await balance(expires_from_ms=T0_MS + 5 * MS_PER_DAY) == [((), 8, 0)]
    assert await balance(expires_to_ms=T0_MS + 5 * MS_PER_DAY) == []


async def test_hand_made_trace_and_exposure(store: HistoryStore) -> None:
    await store.insert(_batch(HAND_MADE))
    trace = await store.lot_trace(TraceQuery("L1"))
    [stop] = trace.stops
    assert (stop.sku, stop.site, stop.qty_in, stop.qty_out, stop.balance, stop.movements) == (
        "sku-x",
        "site-x",
        10,
        2,
        8,
        6,
    )
    assert (stop.received_at_ms, stop.expires_at_ms) == (T0_MS, T0_MS + 5 * MS_PER_DAY)
    assert [(d.doc_ref, d.kinds, d.qty) for d in trace.documents] == [
        ("PO-1", ("receive",), 10),
        ("MV-1", ("move",), 4),
        ("SO-1", ("commit", "release"), 2),
        ("TK-1", ("discrepancy",), 5),
    ]
    exposure = await store.near_expiry(ExpiryQuery(as_of_ms=T0_MS + MS_PER_DAY, horizon_days=5))
    assert [(r.lot_id, r.days_left, r.qty) for r in exposure.rows] == [("L1", 4, 8)]
    assert [(t.days_left, t.qty, t.lots) for t in exposure.totals] == [(4, 8, 1)]
    assert (await store.near_expiry(ExpiryQuery(as_of_ms=T0_MS + MS_PER_DAY, horizon_days=4))).rows == ()
    expired = await store.near_expiry(ExpiryQuery(as_of_ms=T0_MS + 9 * MS_PER_DAY, horizon_days=1))
    assert [(t.days_left, t.qty) for t in expired.totals] == [(-1, 8)]


# ---- the same answers as the reference, over realistic history ----

BALANCE_QUERIES = [
    BalanceQuery(as_of_ms=END_MS),
    BalanceQuery(as_of_ms=T0_MS + 3 * MS_PER_DAY, group_by=(D.SKU, D.SITE)),
    BalanceQuery(as_of_ms=T0_MS + 5 * MS_PER_DAY + 7, group_by=(D.SITE, D.BIN, D.STATUS, D.OWNER, D.LOT)),
    BalanceQuery(as_of_ms=END_MS, group_by=(D.BIN,), bin_depth=1, sites=("site-2",)),
    BalanceQuery(as_of_ms=END_MS, group_by=(D.EXPIRY_DAY, D.SKU)),
    BalanceQuery(as_of_ms=END_MS, group_by=(D.RECEIVED_DAY,), skus=("sku-a",), owner="consignment"),
    BalanceQuery(as_of_ms=END_MS, statuses=("receiving",), group_by=(D.LOT,)),
    BalanceQuery(as_of_ms=END_MS, expires_from_ms=T0_MS + 10 * MS_PER_DAY, expires_to_ms=T0_MS + 30 * MS_PER_DAY),
    BalanceQuery(as_of_ms=END_MS, lot_id="L3-1", group_by=(D.SITE, D.BIN)),
    BalanceQuery(as_of_ms=END_MS, group_by=(D.SKU, D.SITE, D.LOT), limit=5),
    # Grouped and filtered by site, status and owner only: the roll-up less the movements after T.
    BalanceQuery(as_of_ms=END_MS, group_by=(D.SITE, D.STATUS)),
    BalanceQuery(as_of_ms=END_MS + MS_PER_DAY, group_by=(D.STATUS, D.OWNER, D.SITE)),
    BalanceQuery(as_of_ms=T0_MS + 4 * MS_PER_DAY + 11, group_by=(D.SITE, D.STATUS), limit=3),
    BalanceQuery(as_of_ms=T0_MS + 7 * MS_PER_DAY, group_by=(D.OWNER,), sites=("site-1",), statuses=("available",)),
    BalanceQuery(as_of_ms=T0_MS + 9 * MS_PER_DAY, group_by=(D.SITE,), owner="consignment"),
    BalanceQuery(as_of_ms=T0_MS + 2 * MS_PER_DAY),
    BalanceQuery(as_of_ms=T0_MS - 1, group_by=(D.SITE, D.STATUS)),
]


async def test_balances_as_of_match_the_reference(loaded: HistoryStore, reference: InMemoryHistoryStore) -> None:
    for q in BALANCE_QUERIES:
        assert await loaded.balance_as_of(q) == await reference.balance_as_of(q), q


async def test_balances_as_of_the_end_match_the_live_core(reference: InMemoryHistoryStore) -> None:
    # Replaying the same ops on a fresh core gives the live state the movements must sum to.
    from engine.domain.shard import ShardCore

    core = ShardCore("replay")
    expected: dict[tuple[str, ...], tuple[int, int]] = {}
    del core
    live = _live_quants(BATCHES)
    rows = await reference.balance_as_of(
        BalanceQuery(as_of_ms=END_MS, group_by=(D.SKU, D.SITE, D.LOT, D.BIN, D.STATUS, D.OWNER))
    )
    got = {tuple(v for _, v in r.group): (r.qty, r.held) for r in rows}
    expected = {k: v for k, v in live.items() if v != (0, 0)}
    assert got == expected


def _live_quants(batches: list[HistoryBatch]) -> dict[tuple[str, ...], tuple[int, int]]:
    from engine.domain.ledger import Ledger

    ledgers: dict[tuple[str, str], Ledger] = {}
    for record in all_records(batches):
        m = record.movement
        ledgers.setdefault((m.sku, m.site), Ledger()).apply(m)
    return {
        (sku, site, k.lot_id, k.bin, k.status, k.owner): (q.qty, q.held)
        for (sku, site), ledger in ledgers.items()
        for k, q in ledger.quants.items()
    }


async def test_movement_pages_match_the_reference_and_cover_everything(
    loaded: HistoryStore, reference: InMemoryHistoryStore
) -> None:
    q = MovementQuery(page_size=37)
    seen: list[HistoryRecord] = []
    for _ in range(100):
        page = await loaded.movements(q)
        assert page == await reference.movements(q)
        seen.extend(page.records)
        if not page.next_cursor:
            break
        q = replace(q, cursor=page.next_cursor)
    assert sorted(r.key for r in seen) == sorted(r.key for r in RECORDS)
    order = [(r.movement.at_ms, r.movement.sku, r.movement.site, r.movement.seq) for r in seen]
    assert order == sorted(order)


async def test_movement_filters_match_the_reference(loaded: HistoryStore, reference: InMemoryHistoryStore) -> None:
    sample = RECORDS[len(RECORDS) // 2].movement
    queries = [
        MovementQuery(sku="sku-a", site="site-2", page_size=1000),
        MovementQuery(lot_id=sample.lot_id, page_size=1000),
        MovementQuery(doc_ref="PO-3", page_size=1000),
        MovementQuery(kinds=(MovementKind.COMMIT, MovementKind.EXPIRE), page_size=1000),
        MovementQuery(from_ms=T0_MS + 2 * MS_PER_DAY, to_ms=T0_MS + 4 * MS_PER_DAY, page_size=1000),
        MovementQuery(from_ms=T0_MS + 2 * MS_PER_DAY, to_ms=T0_MS + 2 * MS_PER_DAY),
        MovementQuery(request_id=sample.request_id or "none"),
        MovementQuery(hold_id=next(r.movement.hold_id for r in RECORDS if r.movement.hold_id)),
        MovementQuery(page_size=5, cursor=encode_cursor(T0_MS + 3 * MS_PER_DAY, "sku-a", "site-1", 0)),
    ]
    for q in queries:
        assert await loaded.movements(q) == await reference.movements(q), q
    assert (await reference.movements(queries[0])).records  # the filters do find something


async def test_analytics_match_the_reference(loaded: HistoryStore, reference: InMemoryHistoryStore) -> None:
    series = [
        SeriesQuery(T0_MS, END_MS + 1),
        SeriesQuery(T0_MS + 2 * MS_PER_DAY, T0_MS + 6 * MS_PER_DAY, sku="sku-a"),
        SeriesQuery(T0_MS - 3 * MS_PER_DAY, T0_MS + 2 * MS_PER_DAY, site="site-2"),
    ]
    for q in series:
        assert await loaded.consumption(q) == await reference.consumption(q), q
    consumed = sum(r.movement.qty for r in RECORDS if r.movement.dst is External.CUSTOMER)
    assert sum(p.qty for p in await reference.consumption(series[0])) == consumed > 0
    turnovers = [
        TurnoverQuery(T0_MS, END_MS + 1),
        TurnoverQuery(T0_MS + 4 * MS_PER_DAY, T0_MS + 9 * MS_PER_DAY, skus=("sku-b",)),
        TurnoverQuery(T0_MS + 6 * MS_PER_DAY, T0_MS + 7 * MS_PER_DAY, sites=("site-1",), limit=1),
    ]
    for q in turnovers:
        assert await loaded.turnover(q) == await reference.turnover(q), q
    exposures = [
        ExpiryQuery(as_of_ms=END_MS, horizon_days=10),
        ExpiryQuery(as_of_ms=T0_MS + 6 * MS_PER_DAY, horizon_days=3650, skus=("sku-a",), limit=3),
        ExpiryQuery(as_of_ms=T0_MS + 3 * MS_PER_DAY + 5, horizon_days=40, sites=("site-2",)),
        ExpiryQuery(as_of_ms=T0_MS + 8 * MS_PER_DAY, horizon_days=3650, sites=("site-1",), skus=("sku-b",), limit=50),
        ExpiryQuery(as_of_ms=END_MS + 30 * MS_PER_DAY, horizon_days=3650),
    ]
    for q in exposures:
        assert await loaded.near_expiry(q) == await reference.near_expiry(q), q
    transferred = next(r.movement for r in RECORDS if r.movement.doc_ref.startswith("TR") and r.movement.qty)
    traces = [TraceQuery(transferred.lot_id), TraceQuery(transferred.lot_id, sku=transferred.sku, limit=1)]
    for q in traces:
        assert await loaded.lot_trace(q) == await reference.lot_trace(q), q
    trace = await reference.lot_trace(traces[0])
    assert {s.site for s in trace.stops} == {"site-1", "site-2"}  # the transfer shows at both
    assert any(d.doc_ref == transferred.doc_ref for d in trace.documents)
    assert await loaded.totals() == await reference.totals()


async def test_opened_lots_expire_by_the_skus_opened_shelf_life(store: HistoryStore) -> None:
    from engine.domain.catalog import Sku

    opened = Lot("L9", T0_MS, T0_MS + 30 * MS_PER_DAY, opened_at_ms=T0_MS + MS_PER_DAY)
    key = QuantKey("L9", "", "available", "own")
    receipt = Movement(
        1, MovementKind.RECEIVE, "sku-o", "site-x", "L9", 5, External.SUPPLIER, key, at_ms=T0_MS, lot=opened
    )
    record = HistoryRecord("s-o", 1, 1, receipt)
    await store.insert(HistoryBatch((record,), (Sku("sku-o", opened_shelf_life_days=3),), "o1", T0_MS))
    rows = await store.balance_as_of(BalanceQuery(as_of_ms=T0_MS, skus=("sku-o",), group_by=(D.EXPIRY_DAY,)))
    assert [r.group for r in rows] == [(("expiry_day", "2026-01-05"),)]  # opened + 3 days, not the label's 31st


# ---- bad arguments: the same refusal from every store ----

BAD = [
    (BalanceQuery(as_of_ms=-1), "as_of_ms"),
    (BalanceQuery(as_of_ms=0, group_by=("colour",)), "group_by[0]"),  # type: ignore[arg-type]
    (BalanceQuery(as_of_ms=0, group_by=(D.SKU, D.SKU)), "group_by[1]"),
    (BalanceQuery(as_of_ms=0, bin_depth=9), "bin_depth"),
    (BalanceQuery(as_of_ms=0, limit=0), "limit"),
    (BalanceQuery(as_of_ms=0, owner="nobody"), "owner"),
    (BalanceQuery(as_of_ms=0, expires_from_ms=5, expires_to_ms=4), "expires_from_ms"),
    (MovementQuery(from_ms=10, to_ms=5), "from_ms"),
    (MovementQuery(page_size=0), "page_size"),
    (MovementQuery(page_size=1001), "page_size"),
    (MovementQuery(cursor="garbage"), "cursor"),
    (MovementQuery(sku="bad sku"), "sku"),
    (SeriesQuery(10, 5), "from_ms"),
    (SeriesQuery(0, 3_700 * MS_PER_DAY), "to_ms"),
    (TurnoverQuery(5, 5), "to_ms"),
    (ExpiryQuery(as_of_ms=0, horizon_days=0), "horizon_days"),
    (TraceQuery(""), "lot_id"),
]


@pytest.mark.parametrize(("query", "field"), BAD, ids=[f"{type(q).__name__}-{f}" for q, f in BAD])
async def test_bad_arguments_are_refused_naming_the_field(loaded: HistoryStore, query: object, field: str) -> None:
    call = {
        BalanceQuery: loaded.balance_as_of,
        MovementQuery: loaded.movements,
        SeriesQuery: loaded.consumption,
        TurnoverQuery: loaded.turnover,
        ExpiryQuery: loaded.near_expiry,
        TraceQuery: loaded.lot_trace,
    }[type(query)]
    with pytest.raises(InvalidArgument) as refused:
        await call(query)  # type: ignore[arg-type]
    assert field in [v.field for v in refused.value.violations]


# ---- provenance (issue 15): who counted, how sure, when it happened ----

PROVENANCE = (
    _movement(
        1,
        MovementKind.RECEIVE,
        10,
        External.SUPPLIER,
        A,
        lot=Lot("L1", T0_MS, T0_MS + 5 * MS_PER_DAY),
        provenance=Provenance("", 0.0, T0_MS - 3_600_000),  # a device's offline op, an hour before
    ),
    _movement(2, MovementKind.COUNT, 3, A, External.COUNT_VARIANCE, provenance=Provenance("rfid", 0.875, 0)),
    _movement(3, MovementKind.COUNT, 1, External.COUNT_VARIANCE, A, provenance=Provenance("recogniser", 0.5, 0)),
    _movement(4, MovementKind.MOVE, 2, A, B),  # says nothing of where it came from
)


async def test_counts_and_device_ops_keep_their_provenance_in_history(store: HistoryStore) -> None:
    await store.insert(_batch(PROVENANCE))
    page = await store.movements(MovementQuery(sku="sku-x", page_size=100))
    assert [r.movement for r in page.records] == list(PROVENANCE)
    assert [(m.source, m.confidence, m.business_at_ms) for m in (r.movement for r in page.records)] == [
        ("", 0.0, T0_MS - 3_600_000),
        ("rfid", 0.875, 0),
        ("recogniser", 0.5, 0),
        ("", 0.0, 0),
    ]


async def test_a_history_written_before_provenance_reads_it_as_not_said(chdb_dsn_for_session: str) -> None:  # noqa: F811
    """Schema migration 2 adds the provenance columns to an existing table: its rows read
    '' / 0 / 0 (no provenance), and new rows keep theirs."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    config = HistoryStoreConfig(dsn=chdb_dsn_for_session, database=database)
    old_columns = MOVEMENT_COLUMNS[: MOVEMENT_COLUMNS.index("source")]

    def as_an_older_release() -> None:
        client = _connect(config)
        try:
            assert migrate(client, database, MIGRATIONS[:1]) == 1
            rows = [movement_row(r)[: len(old_columns)] for r in _batch(HAND_MADE[:2]).records]
            client.insert(f"{database}.movements", rows, column_names=list(old_columns))
        finally:
            client.close()

    await asyncio.to_thread(as_an_older_release)
    store = await open_store(config)  # today's release: migrates to 2
    try:
        counted = _movement(7, MovementKind.COUNT, 3, A, External.COUNT_VARIANCE, provenance=Provenance("rfid", 0.875))
        await store.insert(_batch((counted,), token="new"))
        page = await store.movements(MovementQuery(sku="sku-x", page_size=100))
        assert [r.movement for r in page.records] == [*HAND_MADE[:2], counted]
        assert [r.movement.provenance for r in page.records] == [None, None, Provenance("rfid", 0.875)]
    finally:
        await drop_test_store(store)


# ---- schema migration 3 (issue 17): the whole-estate roll-ups ----


def _months_of_history() -> tuple[Movement, ...]:
    """Receipts, counts, holds and scan-takes at two sites over three months."""
    out: list[Movement] = []
    seq = {"north": 0, "south": 0}
    for day in (0, 20, 35, 50, 70, 85):
        for site in ("north", "south"):
            lot = f"M{day}"
            at = T0_MS + day * MS_PER_DAY + 3_600_000
            here = QuantKey(lot, "A/01", "available", "own")
            steps: list[tuple[MovementKind, int, QuantKey | External, QuantKey | External, dict[str, object]]] = [
                (MovementKind.RECEIVE, 20, External.SUPPLIER, here, {"lot": Lot(lot, at, at + 60 * MS_PER_DAY)}),
                (MovementKind.RESERVE, 0, here, here, {"held_key": here, "held_delta": 4, "hold_id": f"h{day}{site}"}),
                (MovementKind.CONSUME, 3, here, External.CUSTOMER, {}),
                (MovementKind.COUNT, 2, here, External.COUNT_VARIANCE, {}),
            ]
            for i, (kind, qty, src, dst, kw) in enumerate(steps):
                seq[site] += 1
                out.append(Movement(seq[site], kind, "sku-m", site, lot, qty, src, dst, at_ms=at + i * 60_000, **kw))  # type: ignore[arg-type]
    return tuple(out)


MONTHS = _months_of_history()


def _written_by_an_older_release(config: HistoryStoreConfig, schema: int, months: tuple[Movement, ...]) -> None:
    """A database as a release at `schema` left it: migrated that far, `months`' movements in."""
    client = _connect(config)
    try:
        assert migrate(client, config.database, MIGRATIONS[:schema]) == schema
        client.insert(
            f"{config.database}.movements",
            [movement_row(r) for r in _batch(months).records],
            column_names=list(MOVEMENT_COLUMNS),
        )
    finally:
        client.close()


async def test_whole_estate_rollups_fill_from_existing_history_and_match_the_reference(
    chdb_dsn_for_session: str,  # noqa: F811
) -> None:
    """A history written at schema 2 is rolled up by migration 3 (the backfill); movements
    inserted after it reach the roll-ups through their views; balances by site, status and
    owner, exposure and consumption over every pair then equal the reference at instants in
    every month (the movements after T come from the later partitions)."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    config = HistoryStoreConfig(dsn=chdb_dsn_for_session, database=database)
    before, after = MONTHS[: len(MONTHS) // 2], MONTHS[len(MONTHS) // 2 :]

    await asyncio.to_thread(_written_by_an_older_release, config, 2, before)
    store = await open_store(config)  # migrates to 3: the roll-ups are filled from the rows above
    reference = InMemoryHistoryStore()
    try:
        await store.insert(_batch(after, token="after"))
        await reference.insert(_batch(MONTHS))
        instants = [T0_MS - 1, *(m.at_ms for m in MONTHS[::5]), MONTHS[-1].at_ms + 40 * MS_PER_DAY]
        for t in instants:
            for q in (
                BalanceQuery(as_of_ms=t, group_by=(D.SITE, D.STATUS)),
                BalanceQuery(as_of_ms=t, group_by=(D.OWNER,), sites=("south",)),
            ):
                assert await store.balance_as_of(q) == await reference.balance_as_of(q), q
            exposure = ExpiryQuery(as_of_ms=t, horizon_days=3650)
            assert await store.near_expiry(exposure) == await reference.near_expiry(exposure), exposure
        series = SeriesQuery(T0_MS, MONTHS[-1].at_ms + 1)
        assert await store.consumption(series) == await reference.consumption(series)
        assert sum(p.qty for p in await store.consumption(series)) == 3 * len(MONTHS) // 4
    finally:
        await drop_test_store(store)


# ---- schema migration 4: two views fewer per insert ----


async def test_a_history_made_before_migration_4_answers_the_same_and_still_finds_redeliveries(
    chdb_dsn_for_session: str,  # noqa: F811
) -> None:
    """Migration 4 drops `journal_batches` and `holds` (their views cost every insert a
    part each): a history written at schema 3 answers as the reference after it, and a
    journal batch stored before the migration, delivered again, is still not stored twice
    (the look-up reads `movements`)."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    config = HistoryStoreConfig(dsn=chdb_dsn_for_session, database=database)
    before, after = MONTHS[: len(MONTHS) // 2], MONTHS[len(MONTHS) // 2 :]

    await asyncio.to_thread(_written_by_an_older_release, config, 3, before)
    store = await open_store(config)  # migrates to 4
    reference = InMemoryHistoryStore()
    try:
        tables = {
            row[0]
            for row in await store.query("SELECT name FROM system.tables WHERE database = {d:String}", {"d": database})
        }
        assert not tables & {"journal_batches", "journal_batches_mv", "holds", "holds_mv"}
        assert await store.insert(_batch(before[-3:], token="again")) == 0  # stored before the migration
        assert await store.insert(_batch(after, token="after")) == len(after)
        await reference.insert(_batch(MONTHS))
        for t in (T0_MS - 1, *(m.at_ms for m in MONTHS[::7]), MONTHS[-1].at_ms + MS_PER_DAY):
            q = BalanceQuery(as_of_ms=t, group_by=(D.SITE, D.STATUS))
            assert await store.balance_as_of(q) == await reference.balance_as_of(q), q
        series = SeriesQuery(T0_MS, MONTHS[-1].at_ms + 1)
        assert await store.consumption(series) == await reference.consumption(series)
        assert await store.totals() == await reference.totals()
    finally:
        await drop_test_store(store)


async def test_a_redelivered_batch_is_looked_up_even_past_the_newest_position_the_store_knew(
    chdb_dsn_for_session: str,  # noqa: F811
) -> None:
    """A store looks nothing up for a batch past the newest position it knows of (the
    normal path); a batch flagged `redelivered` is looked up whatever its positions — here
    another store on the same database stored it (a sink that died before its ack)."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    config = HistoryStoreConfig(dsn=chdb_dsn_for_session, database=database)
    first = await open_store(config)
    second = await open_store(config)
    try:
        assert await first.insert(_batch(HAND_MADE[:2], token="a")) == 2  # first knows positions ≤ 102
        assert await second.insert(_batch(HAND_MADE[2:], token="b")) == 4  # second stored 103–106
        again = replace(_batch(HAND_MADE[2:], token="c"), redelivered=True)
        assert await first.insert(again) == 0
        series = await first.consumption(SeriesQuery(T0_MS, T0_MS + 1, sku="sku-x"))
        assert [(p.day, p.qty) for p in series] == [("2026-01-01", 7)]  # the roll-up counted them once
    finally:
        await second.close()
        await drop_test_store(first)
