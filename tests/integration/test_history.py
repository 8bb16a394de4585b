"""History end to end (DESIGN.md §4, §8, §9): shards → journal (real nats-server) → sink →
chDB, with no Ray: the shards run in this process (Gateway.local) on the JetStream journal.

What must hold after any mix of writes, outages and crashes: every pair's history sums to
its live balance, every movement is stored exactly once (raw rows, roll-ups included),
balances as of any past instant equal a replay of the journal up to it, and bad queries
get INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from prometheus_client import CollectorRegistry

from adapters.clickhouse.sink import SinkConfig, SinkMetrics
from adapters.clickhouse.store import ClickHouseHistoryStore, HistoryStoreConfig
from adapters.memory.snapshots import InMemorySnapshotStore
from adapters.nats.history import HistorySink, dead_letter_stream, dead_letter_subject
from adapters.nats.journal import JournalConfig, NatsLink, connect_journal
from adapters.nats.server import EmbeddedNats
from engine.api.errors import status_of_rpc_error
from engine.api.gen.lotwise.v1 import history_pb2 as hpb
from engine.api.gen.lotwise.v1 import history_pb2_grpc as hpb_grpc
from engine.api.history import HistoryServicer, add_history_service
from engine.bootstrap.history import HistoryConfig, journal_config_for, start_history
from engine.domain.catalog import Site, Sku
from engine.domain.cell import CellLimits
from engine.domain.clock import ManualClock
from engine.domain.commands import Adjust, ChangeStatus, Consume, Move, Receive, ReserveLine, Strategy
from engine.domain.errors import DomainError, Unavailable
from engine.domain.history import BalanceQuery, HistoryBatch, HistoryDimension, HistoryRecord, TraceQuery
from engine.domain.inventory import CommitLine
from engine.domain.model import MS_PER_DAY, External, Movement, MovementKind, Provenance, QuantKey
from engine.domain.ports import Backend, HistoryStore, JournalEntry
from engine.domain.statuses import DEFAULT_DICTIONARY
from engine.runtime.gateway import Gateway
from engine.runtime.host import rebuild
from engine.runtime.types import HoldLine
from tests.history_fixtures import (
    T0_MS,
    chdb_dsn_for_session,  # noqa: F401 - the session's chDB path
    drop_test_store,
    open_test_store,
)
from tests.nats_fixtures import nats_server  # noqa: F401 - a real nats-server, session-scoped

pytestmark = pytest.mark.asyncio(loop_scope="session")

SKUS = (Sku("sku-a"), Sku("sku-b", opened_shelf_life_days=2))
SITES = ("north", "south")
EVERY = (
    HistoryDimension.SKU,
    HistoryDimension.SITE,
    HistoryDimension.LOT,
    HistoryDimension.BIN,
    HistoryDimension.STATUS,
    HistoryDimension.OWNER,
)
FAST_SINK = SinkConfig(batch_max_ms=30, fetch_wait_s=0.05, ack_wait_s=1.0, retry_initial_s=0.02, retry_max_s=0.2)


# ---- the rig: shards on a JetStream journal, a sink, a store ----


class FlakyStore:
    """A store that fails while `down` (ClickHouse unreachable) and can crash its sink
    right after an insert succeeded, before the sink acks (a process dying mid-flight)."""

    def __init__(self, inner: HistoryStore) -> None:
        self.inner = inner
        self.down = False
        self.crash_after_next_insert = False
        self.refused = 0

    async def insert(self, batch: HistoryBatch) -> int:
        if self.down:
            self.refused += 1
            raise Unavailable("history store unavailable (simulated outage)")
        written = await self.inner.insert(batch)
        if self.crash_after_next_insert:
            self.crash_after_next_insert = False
            raise SimulatedCrash
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SimulatedCrash(BaseException):
    """Not an Exception: nothing in the sink catches it, so its task dies on the spot."""


@dataclass
class Rig:
    journal_config: JournalConfig
    gateway: Gateway
    clock: ManualClock
    store: ClickHouseHistoryStore
    flaky: FlakyStore
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    sinks: list[HistorySink] = field(default_factory=list)
    links: list[NatsLink] = field(default_factory=list)
    boundaries: list[int] = field(default_factory=list)  # engine times between load rounds
    _counter: int = 0

    def rid(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}-{self._counter}"

    async def start_sink(self, config: SinkConfig = FAST_SINK) -> HistorySink:
        link = NatsLink(self.journal_config)
        await link.connect()
        self.links.append(link)
        # The first sink reports to the rig's registry; a replacement gets one of its own.
        registry = self.registry if not self.sinks else CollectorRegistry()
        sink = HistorySink(link, self.flaky, config, SinkMetrics(registry))
        await sink.start()
        self.sinks.append(sink)
        return sink


def nats_backend(config: JournalConfig) -> Callable[[], Awaitable[Backend]]:
    """How each in-process shard reaches the JetStream journal (as cluster.journal_backend)."""

    async def connect() -> Backend:
        journal, snapshots, close = await connect_journal(config)
        return Backend(journal, snapshots, close)

    return connect


@asynccontextmanager
async def rig(nats: EmbeddedNats, chdb_dsn: str) -> AsyncIterator[Rig]:
    namespace = f"h{uuid.uuid4().hex[:8]}"
    journal_config = journal_config_for(namespace, nats.url)
    clock = ManualClock()
    gateway = Gateway.local(shards=2, clock=clock, sweep_interval_ms=0, backend=nats_backend(journal_config))
    store = await open_test_store("chdb", chdb_dsn)
    assert isinstance(store, ClickHouseHistoryStore)
    made = Rig(journal_config, gateway, clock, store, FlakyStore(store))
    try:
        for sku in SKUS:
            await gateway.put_sku(sku)
        for site in SITES:
            await gateway.put_site(Site(site, "acme"))
        yield made
    finally:
        for sink in made.sinks:
            await sink.abort()
        for link in made.links:
            await link.close()
        await gateway.close()
        await drop_test_store(store)


# ---- a mixed load: holds, commits, consumes, transfers between sites, counts ----


async def _quietly(call: Awaitable[Any]) -> Any:
    """Refusals (not enough stock, a hold already resolved) are part of a realistic mix."""
    try:
        return await call
    except DomainError:
        return None


async def load_round(r: Rig, n: int) -> None:
    """One round of business, the clock moving between steps; ends on a boundary instant."""
    gw, clock = r.gateway, r.clock
    lot = f"L{n}"
    expiry = clock.now_ms() + (5 + n) * MS_PER_DAY
    receipts = [
        Receive(
            r.rid("rcv"),
            sku.sku,
            site,
            lot,
            40,
            bin=f"A/0{n % 3}",
            status="available",
            expires_at_ms=expiry,
            doc_ref=f"PO-{n}",
        )
        for sku in SKUS
        for site in SITES
    ]
    receipts.append(
        Receive(
            r.rid("rcv"),
            "sku-a",
            "north",
            f"C{n}",
            10,
            status="receiving",
            owner="consignment:acme",
            expires_at_ms=expiry,
            doc_ref=f"PO-{n}",
        )
    )
    await asyncio.gather(*(gw.execute(c) for c in receipts))
    clock.advance(60_000)
    holds = [r.rid("hold") for _ in range(6)]
    await asyncio.gather(
        *(
            _quietly(
                gw.reserve(
                    r.rid("res"),
                    hold,
                    [HoldLine("sku-a", site, ReserveLine(3)) for site in SITES[: 1 + i % 2]],
                    ttl_ms=30 * 60_000,
                    doc_ref=f"SO-{hold}",
                )
            )
            for i, hold in enumerate(holds)
        )
    )
    clock.advance(60_000)
    await asyncio.gather(
        _quietly(gw.commit(r.rid("com"), holds[0], doc_ref=f"SO-{holds[0]}")),
        _quietly(gw.commit(r.rid("com"), holds[1], [CommitLine("sku-a", "north", 1)], doc_ref=f"SO-{holds[1]}")),
        _quietly(gw.release(r.rid("rel"), holds[2], doc_ref=f"SO-{holds[2]}")),
        _quietly(gw.commit(r.rid("com"), holds[3], doc_ref=f"SO-{holds[3]}")),
    )  # holds[4:] are left to expire
    clock.advance(60_000)
    transfer = f"TR-{n}"
    await asyncio.gather(
        gw.execute(Consume(r.rid("con"), "sku-b", "south", 4, doc_ref=f"TK-{n}")),
        gw.execute(Consume(r.rid("con"), "sku-a", "north", 500, doc_ref=f"TK-{n}")),  # beyond the books
        gw.execute(Consume(r.rid("out"), "sku-b", "north", 7, lot_id=lot, strategy=Strategy.LOT, doc_ref=transfer)),
        _quietly(gw.execute(Move(r.rid("mov"), "sku-b", "south", lot, 5, f"A/0{n % 3}", "B/01", doc_ref=f"MV-{n}"))),
        _quietly(gw.execute(ChangeStatus(r.rid("chs"), "sku-a", "north", f"C{n}", 4, "receiving", "available"))),
    )
    clock.advance(60_000)
    await gw.execute(
        Receive(r.rid("in"), "sku-b", "south", lot, 7, status="available", expires_at_ms=expiry, doc_ref=transfer)
    )
    await _quietly(gw.execute(Adjust(r.rid("adj"), "sku-b", "north", lot, 30, bin=f"A/0{n % 3}", doc_ref=f"CNT-{n}")))
    clock.advance(40 * 60_000)  # past every TTL: the sweep expires the rest
    for host in gw.handles.values():
        await host.sweep()
    clock.advance(1_000)
    r.boundaries.append(clock.now_ms())
    clock.advance(1_000)


# ---- what the live cells and the journal say ----


def live_pairs(gateway: Gateway) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(sku, site) → (movements so far, qty, held), straight from the cells' ledgers."""
    out = {}
    for host in gateway.handles.values():
        for (sku, site), cell in host.core.cells.items():
            ledger = cell.ledger
            qty = sum(q.qty for q in ledger.quants.values())
            held = sum(q.held for q in ledger.quants.values())
            out[(sku, site)] = (ledger.seq, qty, held)
    return out


def live_own_qty(gateway: Gateway) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for host in gateway.handles.values():
        for pair, cell in host.core.cells.items():
            qty = sum(q.qty for k, q in cell.ledger.quants.items() if k.owner == "own")
            if qty:
                out[pair] = qty
    return out


async def journal_entries(config: JournalConfig, shards: list[str]) -> dict[str, list[JournalEntry]]:
    journal, _, close = await connect_journal(config)
    try:
        return {shard: [entry async for _, entry in journal.read(shard)] for shard in shards}
    finally:
        await close()


async def assert_history_matches_live(r: Rig) -> None:
    live = live_pairs(r.gateway)
    totals = {(t.sku, t.site): (t.movements, t.qty, t.held) for t in await r.store.totals()}
    assert totals == live
    assert all(t.max_seq == t.movements for t in await r.store.totals())  # no gaps
    # Not doubled even before merges: raw rows and roll-ups count every movement once.
    [(raw,)] = await r.store.query("SELECT count() FROM {db}.movements")
    assert raw == sum(n for n, _, _ in live.values())
    entries = await journal_entries(r.journal_config, list(r.gateway.handles))
    movements = [m for es in entries.values() for e in es for m in e.movements]
    assert raw == len(movements)
    consumed = sum(m.qty for m in movements if m.dst is External.CUSTOMER)
    [(rolled_up,)] = await r.store.query("SELECT sum(consumed) FROM {db}.daily_consumption")
    [(rolled_balance,)] = await r.store.query("SELECT sum(qty_delta) FROM {db}.daily_balance")
    assert (rolled_up, rolled_balance) == (consumed, sum(q for _, q, _ in live.values()))
    [(batches,)] = await r.store.query("SELECT count() FROM (SELECT DISTINCT shard, batch_seq FROM {db}.movements)")
    assert batches == len({(e.shard, e.batch_seq) for es in entries.values() for e in es if e.movements})


# ---- the shared scenario: a mixed load fully caught up ----


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def loaded_rig(nats_server: EmbeddedNats, chdb_dsn_for_session: str) -> AsyncIterator[Rig]:  # noqa: F811
    async with rig(nats_server, chdb_dsn_for_session) as r:
        sink = await r.start_sink()
        for n in range(4):
            await load_round(r, n)
        await sink.wait_caught_up(timeout_s=20)
        yield r


async def test_history_totals_equal_live_balances(loaded_rig: Rig) -> None:
    await assert_history_matches_live(loaded_rig)
    assert len(live_pairs(loaded_rig.gateway)) == 4
    sink = loaded_rig.sinks[0]
    lag = await sink.lag()
    assert (lag.pending_messages, lag.stalled) == (0, False)
    assert lag.acked_position == lag.stream_position > 0
    assert loaded_rig.registry.get_sample_value("lotwise_history_lag_messages") == 0
    assert sink.delays_s
    assert max(sink.delays_s) < 10


async def test_balances_as_of_equal_a_replay_of_the_journal(loaded_rig: Rig) -> None:
    r = loaded_rig
    shards = sorted(r.gateway.handles)
    entries = await journal_entries(r.journal_config, shards)
    journal, _, close = await connect_journal(r.journal_config)
    try:
        for instant in r.boundaries[:-1]:
            expected: dict[tuple[str, ...], tuple[int, int]] = {}
            for shard in shards:
                # The shard as it was at `instant`: its batches up to then, replayed.
                upto = max((e.batch_seq for e in entries[shard] if e.now_ms <= instant), default=0)
                core, seq, _ = await rebuild(
                    shard, DEFAULT_DICTIONARY, CellLimits(), journal, InMemorySnapshotStore(), until_batch_seq=upto
                )
                assert seq == upto
                for (sku, site), cell in core.cells.items():
                    for key, quant in cell.ledger.quants.items():
                        if quant.qty or quant.held:
                            expected[(sku, site, key.lot_id, key.bin, key.status, key.owner)] = (quant.qty, quant.held)
            rows = await r.store.balance_as_of(BalanceQuery(as_of_ms=instant, group_by=EVERY))
            assert {tuple(v for _, v in row.group): (row.qty, row.held) for row in rows} == expected
            assert expected  # every boundary has stock to compare
    finally:
        await close()


async def test_lot_trace_follows_a_transfer_between_sites(loaded_rig: Rig) -> None:
    trace = await loaded_rig.store.lot_trace(TraceQuery("L1", sku="sku-b"))
    assert [s.site for s in sorted(trace.stops, key=lambda s: s.site)] == ["north", "south"]
    transfer = [d for d in trace.documents if d.doc_ref == "TR-1"]
    assert {(d.site, d.kinds) for d in transfer} == {("north", ("consume",)), ("south", ("receive",))}
    assert all(d.qty == 7 for d in transfer)


async def test_sink_pauses_through_an_outage_and_catches_up(
    nats_server: EmbeddedNats,  # noqa: F811
    chdb_dsn_for_session: str,  # noqa: F811
) -> None:
    async with rig(nats_server, chdb_dsn_for_session) as r:
        sink = await r.start_sink()
        await load_round(r, 0)
        await sink.wait_caught_up(timeout_s=20)
        r.flaky.down = True
        await load_round(r, 1)
        await load_round(r, 2)
        await asyncio.sleep(1.5)  # longer than ack_wait: held messages must not be redelivered
        lag = await sink.lag()
        assert lag.stalled
        assert lag.pending_messages > 0
        assert r.flaky.refused >= 3
        assert r.registry.get_sample_value("lotwise_history_lag_messages") > 0
        r.flaky.down = False
        await load_round(r, 3)
        await sink.wait_caught_up(timeout_s=20)
        assert not (await sink.lag()).stalled
        await assert_history_matches_live(r)


async def test_a_crashed_sink_is_replaced_with_nothing_lost_or_doubled(
    nats_server: EmbeddedNats,  # noqa: F811
    chdb_dsn_for_session: str,  # noqa: F811
) -> None:
    async with rig(nats_server, chdb_dsn_for_session) as r:
        first = await r.start_sink()
        await load_round(r, 0)
        await first.wait_caught_up(timeout_s=20)
        r.flaky.crash_after_next_insert = True  # the next batch is stored, then the sink dies unacked
        await load_round(r, 1)
        for _ in range(200):
            if not first.running:
                break
            await asyncio.sleep(0.02)
        assert not first.running
        await first.abort()
        assert (await first.lag()).pending_messages > 0
        await load_round(r, 2)  # the journal goes on without a sink
        second = await r.start_sink()
        await second.wait_caught_up(timeout_s=20)
        # The stored-but-unacked batch came back and was recognised, not inserted again.
        assert second.metrics.duplicates._value.get() > 0
        await assert_history_matches_live(r)


# ---- the gRPC service ----


@pytest_asyncio.fixture(loop_scope="session")
async def history_stub(loaded_rig: Rig) -> AsyncIterator[hpb_grpc.HistoryStub]:
    server = grpc.aio.server()
    add_history_service(server, HistoryServicer(loaded_rig.store, loaded_rig.sinks[0]))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield hpb_grpc.HistoryStub(channel)
    finally:
        await server.stop(0.5)


async def test_history_service_answers(loaded_rig: Rig, history_stub: hpb_grpc.HistoryStub) -> None:
    as_of = loaded_rig.boundaries[-1]
    reply = await history_stub.GetBalanceAsOf(
        hpb.GetBalanceAsOfRequest(
            as_of_ms=as_of, group_by=[hpb.HISTORY_DIMENSION_SKU, hpb.HISTORY_DIMENSION_SITE], owner="own"
        )
    )
    got = {(r.group[0].value, r.group[1].value): r.qty for r in reply.rows}
    assert got == live_own_qty(loaded_rig.gateway)
    page1 = await history_stub.SearchMovements(hpb.SearchMovementsRequest(sku="sku-b", site="south", page_size=5))
    page2 = await history_stub.SearchMovements(
        hpb.SearchMovementsRequest(sku="sku-b", site="south", page_size=5, cursor=page1.next_cursor)
    )
    seqs = [m.seq for m in (*page1.movements, *page2.movements)]
    assert seqs == list(range(1, 11))
    assert page1.movements[0].kind == "receive"
    assert page1.movements[0].HasField("lot")
    trace = await history_stub.TraceLot(hpb.TraceLotRequest(lot_id="L2", sku="sku-b"))
    assert {s.site for s in trace.stops} == {"north", "south"}
    series = await history_stub.GetConsumptionSeries(
        hpb.GetConsumptionSeriesRequest(
            sku="sku-a", from_ms=loaded_rig.clock.now_ms() - MS_PER_DAY, to_ms=loaded_rig.clock.now_ms() + 1
        )
    )
    assert sum(p.qty for p in series.points) > 0
    exposure = await history_stub.GetExpiryExposure(hpb.GetExpiryExposureRequest(as_of_ms=as_of, horizon_days=7))
    assert exposure.rows
    assert all(r.days_left < 7 for r in exposure.rows)
    turnover = await history_stub.GetTurnover(
        hpb.GetTurnoverRequest(from_ms=as_of - MS_PER_DAY, to_ms=as_of + 1, skus=["sku-a"])
    )
    assert turnover.rows
    assert all(r.HasField("turnover_days") for r in turnover.rows)
    status = await history_stub.GetSinkStatus(hpb.GetSinkStatusRequest())
    assert status.running
    assert status.pending_messages == 0
    assert status.acked_position == status.stream_position


async def test_movements_carry_their_provenance_over_grpc(chdb_dsn_for_session: str) -> None:  # noqa: F811
    """source / confidence / business_at_ms reach the client as optional fields: set on a
    count (who counted, how sure) and a device's offline op (when it happened there),
    absent on a movement that says nothing of where it came from."""
    store = await open_test_store("chdb", chdb_dsn_for_session)
    a = QuantKey("L1", "A/01", "available", "own")
    movements = (
        Movement(
            1,
            MovementKind.RECEIVE,
            "sku-p",
            "site-p",
            "L1",
            10,
            External.SUPPLIER,
            a,
            at_ms=T0_MS + 1_000,
            provenance=Provenance("", 0.0, T0_MS - 3_600_000),
        ),
        Movement(
            2,
            MovementKind.COUNT,
            "sku-p",
            "site-p",
            "L1",
            3,
            a,
            External.COUNT_VARIANCE,
            at_ms=T0_MS + 2_000,
            provenance=Provenance("rfid", 0.875, 0),
        ),
        Movement(3, MovementKind.MOVE, "sku-p", "site-p", "L1", 2, a, a, at_ms=T0_MS + 3_000),
    )
    server = grpc.aio.server()
    add_history_service(server, HistoryServicer(store))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        await store.insert(HistoryBatch(tuple(HistoryRecord("s-p", m.seq, m.seq, m) for m in movements)))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            page = await hpb_grpc.HistoryStub(channel).SearchMovements(hpb.SearchMovementsRequest(sku="sku-p"))
    finally:
        await server.stop(0.5)
        await drop_test_store(store)
    got = [(m.seq, m.HasField("source"), m.source, m.confidence, m.business_at_ms) for m in page.movements]
    assert got == [
        (1, True, "", 0.0, T0_MS - 3_600_000),
        (2, True, "rfid", 0.875, 0),
        (3, False, "", 0.0, 0),
    ]
    assert not page.movements[2].HasField("confidence")
    assert not page.movements[2].HasField("business_at_ms")


BAD_REQUESTS = [
    ("SearchMovements", hpb.SearchMovementsRequest(from_ms=20, to_ms=10), "from_ms"),
    ("SearchMovements", hpb.SearchMovementsRequest(page_size=5000), "page_size"),
    ("SearchMovements", hpb.SearchMovementsRequest(cursor="not-a-cursor"), "cursor"),
    ("SearchMovements", hpb.SearchMovementsRequest(kinds=["teleport"]), "kinds[0]"),
    ("GetBalanceAsOf", hpb.GetBalanceAsOfRequest(group_by=[hpb.HISTORY_DIMENSION_SKU, 99]), "group_by[1]"),
    ("GetBalanceAsOf", hpb.GetBalanceAsOfRequest(group_by=[hpb.HISTORY_DIMENSION_UNSPECIFIED]), "group_by[0]"),
    ("GetBalanceAsOf", hpb.GetBalanceAsOfRequest(as_of_ms=-5), "as_of_ms"),
    ("GetBalanceAsOf", hpb.GetBalanceAsOfRequest(bin_depth=12), "bin_depth"),
    ("GetConsumptionSeries", hpb.GetConsumptionSeriesRequest(from_ms=10, to_ms=5), "from_ms"),
    ("GetTurnover", hpb.GetTurnoverRequest(from_ms=10, to_ms=10), "to_ms"),
    ("GetExpiryExposure", hpb.GetExpiryExposureRequest(horizon_days=0), "horizon_days"),
    ("TraceLot", hpb.TraceLotRequest(lot_id=""), "lot_id"),
]


@pytest.mark.parametrize(("method", "request_", "field_"), BAD_REQUESTS, ids=[f"{m}-{f}" for m, _, f in BAD_REQUESTS])
async def test_bad_query_arguments_get_invalid_argument(
    history_stub: hpb_grpc.HistoryStub, method: str, request_: Any, field_: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await getattr(history_stub, method)(request_)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = status_of_rpc_error(refused.value)
    fields = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    assert field_ in fields


# ---- the entry point the engine composes ----


async def test_start_history_feeds_serves_and_resumes_after_a_restart(
    nats_server: EmbeddedNats,  # noqa: F811
    chdb_dsn_for_session: str,  # noqa: F811
) -> None:
    namespace = f"h{uuid.uuid4().hex[:8]}"
    journal_config = journal_config_for(namespace, nats_server.url)
    gateway = Gateway.local(shards=2, clock=ManualClock(), sweep_interval_ms=0, backend=nats_backend(journal_config))
    database = f"t_{uuid.uuid4().hex[:12]}"
    config = HistoryConfig(HistoryStoreConfig(dsn=chdb_dsn_for_session, database=database), FAST_SINK)
    try:
        await gateway.put_sku(Sku("sku-a"))
        await gateway.put_site(Site("north"))
        await gateway.execute(Receive("r1", "sku-a", "north", "L1", 5, status="available"))
        runtime = await start_history(config, journal_config, CollectorRegistry())
        assert runtime.sink is not None
        await runtime.sink.wait_caught_up(timeout_s=20)
        await runtime.stop()  # flushes, acks, closes
        assert not runtime.sink.running
        await gateway.execute(Receive("r2", "sku-a", "north", "L1", 7, status="available"))
        runtime = await start_history(config, journal_config, CollectorRegistry())  # the same durable consumer
        assert runtime.sink is not None
        await runtime.sink.wait_caught_up(timeout_s=20)
        server = grpc.aio.server()
        add_history_service(server, runtime.service)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = hpb_grpc.HistoryStub(channel)
            reply = await stub.GetBalanceAsOf(hpb.GetBalanceAsOfRequest(as_of_ms=2**62))
            status = await stub.GetSinkStatus(hpb.GetSinkStatusRequest())
        await server.stop(0.5)
        assert [(r.qty, r.held) for r in reply.rows] == [(12, 0)]
        assert status.running
        assert status.pending_messages == 0
        [(rows,)] = await runtime.store.query("SELECT count() FROM {db}.movements")
        assert rows == 2
        await runtime.store.command("DROP DATABASE {db}")
        await runtime.stop()
    finally:
        await gateway.close()


async def test_an_undecodable_journal_message_goes_to_the_dead_letters(loaded_rig: Rig) -> None:
    sink = loaded_rig.sinks[0]
    link = loaded_rig.links[0]
    _, js = await link.client()
    config = loaded_rig.journal_config
    ack = await js.publish(config.subject("garbage"), b"not an avro batch")
    await sink.wait_caught_up(timeout_s=20)  # terminated after being dead-lettered: nothing pending
    dead = await js.get_last_msg(dead_letter_stream(config), dead_letter_subject(config))
    assert dead.data == b"not an avro batch"
    assert dead.headers is not None
    assert dead.headers["Lotwise-Stream-Seq"] == str(ack.seq)
    assert "checksum mismatch" in dead.headers["Lotwise-Reason"]
    assert sink.metrics.dead_letters._value.get() == 1
