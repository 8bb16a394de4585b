"""History: ingest rate and lag of the sink, and query latency over 10 million movements.

    .venv/bin/python -m bench.history                       # the defaults: about 5 minutes
    .venv/bin/python -m bench.history --movements 1000000    # a quick run

No Ray and no network beyond 127.0.0.1: an embedded nats-server and chDB in a temp dir.

Part 1, ingest (journal → sink → chDB, the real adapters):
- catch-up: `--backlog` movements are journaled first (synthetic shard batches of 100
  movements: receipts with lot dates, reserves, commits, consumption, bin moves), then the
  sink starts; movements/s = backlog / time until every message is acknowledged. This is
  the sink's ceiling: what it sustains when it is the bottleneck.
- steady: a producer *process* journals at `--rate` movements/s (default: half the
  ceiling) for `--steady-s` seconds while the sink runs; the lag of every journal message
  (its append time → the sink's ack, i.e. stored in history) gives p50/p99/max, and the
  lag gauge (messages behind) is sampled every 100 ms.

Part 2, queries: `--movements` (10M) rows are generated inside ClickHouse in bulk
(INSERT … SELECT FROM numbers(), the views filling the roll-ups as they would live),
100,000 (sku, site) pairs × 100 movements over a year, lots shared by an sku's sites;
then each query kind runs `--reps` times with random arguments through the store's own
API (ClickHouseHistoryStore: FINAL, the real SQL), and its latency p50/p99/max is taken.

Writes bench/results/<date>/history/{history.json,history.md}.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from prometheus_client import CollectorRegistry

from adapters.clickhouse.sink import SinkConfig, SinkMetrics
from adapters.clickhouse.store import ClickHouseHistoryStore, HistoryStoreConfig, chdb_dsn, open_store
from adapters.nats.history import HistorySink
from adapters.nats.journal import JournalConfig, NatsLink, connect_journal
from adapters.nats.server import EmbeddedNats, EmbeddedNatsConfig
from bench.recovery import machine
from engine.domain.history import (
    BalanceQuery,
    ExpiryQuery,
    HistoryDimension,
    MovementQuery,
    SeriesQuery,
    TraceQuery,
    TurnoverQuery,
)
from engine.domain.model import MS_PER_DAY, External, Lot, Movement, MovementKind, QuantKey
from engine.domain.ports import JournalEntry

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00Z
MOVEMENTS_PER_ENTRY = 100
SHARDS = 2
GiB = 1024**3

# ---- synthetic journal batches ----


class _PairFields(TypedDict):
    """The fields every movement of one pair's cycle shares (passed as **kwargs to Movement)."""

    seq: int
    sku: str
    site: str
    lot_id: str
    at_ms: int


class PairGen:
    """The movements of one (sku, site), in a fixed 20-step cycle per lot: a receipt of 100
    (with the lot's dates), six reserve → commit pairs of 5, four scan-takes of 3 and three
    bin moves of 2. Balances never go negative; every kind the sink sees is there."""

    __slots__ = ("seq", "site", "sku")

    def __init__(self, sku: str, site: str) -> None:
        self.sku, self.site, self.seq = sku, site, 0

    def next(self, now_ms: int) -> Movement:
        self.seq += 1
        seq, r = self.seq, (self.seq - 1) % 20
        lot = f"L{(seq - 1) // 20}"
        a = QuantKey(lot, "A/01", "available", "own")
        common: _PairFields = {"seq": seq, "sku": self.sku, "site": self.site, "lot_id": lot, "at_ms": now_ms}
        hold = f"H{self.sku}.{self.site}.{seq - (r % 2 == 0)}"
        if r == 0:
            dates = Lot(lot, now_ms, now_ms + 90 * MS_PER_DAY)
            return Movement(
                kind=MovementKind.RECEIVE,
                qty=100,
                src=External.SUPPLIER,
                dst=a,
                lot=dates,
                doc_ref=f"PO-{lot}",
                **common,
            )
        if r <= 12 and r % 2 == 1:
            return Movement(
                kind=MovementKind.RESERVE, qty=0, src=a, dst=a, held_key=a, held_delta=5, hold_id=hold, **common
            )
        if r <= 12:
            return Movement(
                kind=MovementKind.COMMIT,
                qty=5,
                src=a,
                dst=External.CUSTOMER,
                held_key=a,
                held_delta=-5,
                hold_id=hold,
                doc_ref=f"SO-{hold}",
                **common,
            )
        if r <= 16:
            return Movement(kind=MovementKind.CONSUME, qty=3, src=a, dst=External.CUSTOMER, doc_ref="TK", **common)
        b = QuantKey(lot, "B/02", "available", "own")
        return Movement(kind=MovementKind.MOVE, qty=2, src=a, dst=b, **common)


class EntryGen:
    """Journal batches of one shard over its own pairs (as a shard would write them)."""

    def __init__(self, shard: str, pairs: int) -> None:
        self.shard = shard
        self.pairs = [PairGen(f"{shard}-sku-{i // 10}", f"site-{i % 10}") for i in range(pairs)]
        self.batch_seq = 0
        self._next = 0

    def entry(self, now_ms: int) -> JournalEntry:
        self.batch_seq += 1
        movements = []
        for _ in range(MOVEMENTS_PER_ENTRY):
            movements.append(self.pairs[self._next].next(now_ms))
            self._next = (self._next + 1) % len(self.pairs)
        return JournalEntry(self.shard, self.batch_seq, now_ms, (), tuple(movements))


async def journal_backlog(config: JournalConfig, movements: int, prefix: str) -> float:
    """Append `movements` (in batches of 100) over SHARDS shards; returns seconds taken."""
    journal, _, close = await connect_journal(config)
    per_shard = movements // MOVEMENTS_PER_ENTRY // SHARDS

    async def one(shard: str) -> None:
        gen = EntryGen(shard, pairs=2_000)
        position = 0
        for _ in range(per_shard):
            position = await journal.append(gen.entry(time.time_ns() // 1_000_000), position)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(one(f"{prefix}{i}") for i in range(SHARDS)))
    finally:
        await close()
    return time.perf_counter() - started


def produce(
    config: JournalConfig, rate_movements_s: float, duration_s: float, prefix: str, ready: Any, sent: Any
) -> None:
    """The steady producer, in a process of its own (its CPU is not the sink's)."""

    async def run() -> None:
        journal, _, close = await connect_journal(config)
        ready.set()
        gens = [EntryGen(f"{prefix}{i}", pairs=2_000) for i in range(SHARDS)]
        positions = [0] * SHARDS
        interval_s = MOVEMENTS_PER_ENTRY / rate_movements_s
        started = time.perf_counter()
        n = 0
        while (elapsed := time.perf_counter() - started) < duration_s:
            due = n * interval_s
            if due > elapsed:
                await asyncio.sleep(due - elapsed)
            i = n % SHARDS
            positions[i] = await journal.append(gens[i].entry(time.time_ns() // 1_000_000), positions[i])
            n += 1
        sent.value = n * MOVEMENTS_PER_ENTRY
        await close()

    asyncio.run(run())


# ---- part 1: ingest ----


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


async def ingest(nats: EmbeddedNats, dsn: str, backlog: int, rate: float, steady_s: float) -> dict[str, Any]:
    config = JournalConfig(
        url=nats.url, stream="BENCH_HISTORY", subject_prefix="bench.history", max_bytes=8 * GiB, ack_timeout_s=10
    )
    store = await open_store(HistoryStoreConfig(dsn=dsn, database="bench_ingest"))
    append_s = await journal_backlog(config, backlog, "c")
    link = NatsLink(config)
    await link.connect()
    sink = HistorySink(link, store, SinkConfig(), SinkMetrics(CollectorRegistry()))
    started = time.perf_counter()
    await sink.start()
    await sink.wait_caught_up(timeout_s=600, poll_s=0.02)
    catch_up_s = time.perf_counter() - started
    catch_up_rate = sink.inserted_movements / catch_up_s
    print(f"catch-up: {sink.inserted_movements:,} movements in {catch_up_s:.1f}s = {catch_up_rate:,.0f}/s")

    offered = rate or round(catch_up_rate / 2, -2)
    sink.delays_s.clear()
    before = sink.inserted_movements
    ctx = multiprocessing.get_context("spawn")
    producing, sent = ctx.Event(), ctx.Value("q", 0)
    producer = ctx.Process(target=produce, args=(config, offered, steady_s, "p", producing, sent))
    lag_samples: list[int] = []
    producer.start()
    # The producer's imports and connection are not timed (a multiprocessing Event: poll it).
    await asyncio.to_thread(producing.wait, 120)
    while producer.is_alive():
        lag_samples.append((await sink.lag()).pending_messages)
        await asyncio.sleep(0.1)
    producer.join()
    await sink.wait_caught_up(timeout_s=120, poll_s=0.02)
    delays_ms = [d * 1000 for d in sink.delays_s]
    steady = sink.inserted_movements - before
    assert steady == sent.value, (steady, sent.value)
    print(f"steady: {steady:,} movements at {offered:,.0f}/s offered; lag p99 {pct(delays_ms, 99):.0f} ms")
    await sink.stop()
    await link.close()
    [(rows,)] = await store.query("SELECT count() FROM {db}.movements")
    await store.close()
    return {
        "backlog_movements": backlog,
        "backlog_append_s": round(append_s, 2),
        "catch_up_s": round(catch_up_s, 2),
        "catch_up_movements_per_s": round(catch_up_rate),
        "steady_offered_movements_per_s": offered,
        "steady_s": steady_s,
        "steady_movements": steady,
        "steady_achieved_movements_per_s": round(steady / steady_s),
        "lag_ms_p50": round(pct(delays_ms, 50), 1),
        "lag_ms_p99": round(pct(delays_ms, 99), 1),
        "lag_ms_max": round(max(delays_ms), 1),
        "lag_messages_max": max(lag_samples, default=0),
        "stored_rows": rows,
        "stored_ok": rows == backlog + steady,
    }


# ---- part 2: queries over bulk-generated history ----

PAIRS_SKUS, PAIRS_SITES, PER_PAIR = 5_000, 20, 100  # 100,000 pairs × 100 movements = 10M
YEAR_MS = 365 * MS_PER_DAY

# One row per `number`: pair = number % pairs, seq = number / pairs + 1, in the same
# 20-step lot cycle as the live generator; time runs over a year, so chunks of numbers
# arrive in time order as a live sink would write them.
_BULK = """
INSERT INTO {db}.movements (sku, site, seq, kind, lot_id, qty, src_bucket, src_bin, src_status, src_owner,
    src_delta, dst_bucket, dst_bin, dst_status, dst_owner, dst_delta, held_bin, held_status, held_owner,
    held_delta, hold_id, request_id, doc_ref, at_ms, hold_expires_at_ms, has_lot, lot_received_at_ms,
    lot_expires_at_ms, lot_opened_at_ms, shard, batch_seq, position)
SELECT sku, site, seq, kind, lot_id, qty,
    if(kind = 'receive', '@supplier', ''), if(kind = 'receive', '', 'A/01'), if(kind = 'receive', '', 'available'),
    if(kind = 'receive', '', 'own'), -qty,
    if(kind IN ('commit', 'consume'), '@customer', ''),
    multiIf(kind IN ('commit', 'consume'), '', kind = 'move', 'B/02', 'A/01'),
    if(kind IN ('commit', 'consume'), '', 'available'), if(kind IN ('commit', 'consume'), '', 'own'), qty,
    if(kind IN ('reserve', 'commit'), 'A/01', ''), if(kind IN ('reserve', 'commit'), 'available', ''),
    if(kind IN ('reserve', 'commit'), 'own', ''), multiIf(kind = 'reserve', 5, kind = 'commit', -5, 0),
    if(kind IN ('reserve', 'commit'), concat('H', sku, '.', site, '.', toString(seq - (r % 2 = 0))), ''),
    concat('r', toString(number)),
    multiIf(kind = 'receive', concat('PO-', sku, '-', lot_id), kind = 'commit', concat('SO-', toString(number)), ''),
    at_ms, if(kind = 'reserve', at_ms + 3600000, 0), kind = 'receive', if(kind = 'receive', at_ms, 0),
    if(kind = 'receive', at_ms + 90 * 86400000, 0), 0,
    concat('s', toString(pair % 8)), intDiv(number, 800) + 1, number + 1
FROM (
    SELECT number, number % {pairs} AS pair, intDiv(number, {pairs}) + 1 AS seq, (seq - 1) % 20 AS r,
        concat('sku-', toString(pair % {skus})) AS sku, concat('site-', toString(intDiv(pair, {skus}))) AS site,
        concat('L', toString(pair % {skus}), '-', toString(intDiv(seq - 1, 20))) AS lot_id,
        multiIf(r = 0, 'receive', r <= 12 AND r % 2 = 1, 'reserve', r <= 12, 'commit', r <= 16, 'consume', 'move')
            AS kind,
        multiIf(r = 0, 100, r <= 12 AND r % 2 = 1, 0, r <= 12, 5, r <= 16, 3, 2) AS qty,
        {t0} + toInt64(intDiv(number * {year_ms}, {total})) + (pair % 997) AS at_ms
    FROM numbers({start}, {count}))
"""


async def bulk_load(store: ClickHouseHistoryStore, total: int, chunk: int = 1_000_000) -> float:
    pairs = PAIRS_SKUS * PAIRS_SITES
    started = time.perf_counter()
    for start in range(0, total, chunk):
        sql = _BULK.format(
            db="{db}",
            pairs=pairs,
            skus=PAIRS_SKUS,
            t0=T0_MS,
            year_ms=YEAR_MS,
            total=total,
            start=start,
            count=min(chunk, total - start),
        )
        await store.command(sql)
        print(f"  bulk: {start + chunk:,} rows, {time.perf_counter() - started:.0f}s")
    return time.perf_counter() - started


async def settle(store: ClickHouseHistoryStore, limit_s: float = 180.0) -> float:
    """Wait (bounded) for the merges a bulk load leaves behind: a live store merges as it
    goes, so timing queries under a one-off merge backlog would measure the backlog."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        [(merging,)] = await store.query(
            "SELECT count() FROM system.merges WHERE database = {d:String}", {"d": store.database}
        )
        if not merging:
            break
        await asyncio.sleep(1.0)
    return time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class QueryKind:
    name: str
    make: Callable[[random.Random], Callable[[ClickHouseHistoryStore], Awaitable[Any]]]
    reps: int


def _pair(rng: random.Random) -> tuple[str, str, int]:
    sku = rng.randrange(PAIRS_SKUS)
    return f"sku-{sku}", f"site-{rng.randrange(PAIRS_SITES)}", sku


def _instant(rng: random.Random) -> int:
    return T0_MS + rng.randrange(YEAR_MS)


def query_kinds(reps: int) -> list[QueryKind]:
    d = HistoryDimension

    def as_of_pair(rng: random.Random) -> Any:
        sku, site, _ = _pair(rng)
        q = BalanceQuery(as_of_ms=_instant(rng), skus=(sku,), sites=(site,), group_by=(d.LOT, d.BIN, d.STATUS, d.OWNER))
        return lambda s: s.balance_as_of(q)

    def as_of_sku(rng: random.Random) -> Any:
        q = BalanceQuery(as_of_ms=_instant(rng), skus=(_pair(rng)[0],), group_by=(d.SITE,))
        return lambda s: s.balance_as_of(q)

    def as_of_expiry(rng: random.Random) -> Any:
        sku, site, _ = _pair(rng)
        q = BalanceQuery(as_of_ms=_instant(rng), skus=(sku,), sites=(site,), group_by=(d.EXPIRY_DAY,))
        return lambda s: s.balance_as_of(q)

    def as_of_site(rng: random.Random) -> Any:
        q = BalanceQuery(as_of_ms=_instant(rng), sites=(_pair(rng)[1],), group_by=(d.STATUS,))
        return lambda s: s.balance_as_of(q)

    def trace(rng: random.Random) -> Any:
        _, _, sku = _pair(rng)
        q = TraceQuery(f"L{sku}-{rng.randrange(PER_PAIR // 20)}", sku=f"sku-{sku}")
        return lambda s: s.lot_trace(q)

    def trace_any_sku(rng: random.Random) -> Any:
        _, _, sku = _pair(rng)
        q = TraceQuery(f"L{sku}-{rng.randrange(PER_PAIR // 20)}")
        return lambda s: s.lot_trace(q)

    def by_document(rng: random.Random) -> Any:
        _, _, sku = _pair(rng)
        q = MovementQuery(doc_ref=f"PO-sku-{sku}-L{sku}-{rng.randrange(PER_PAIR // 20)}")
        return lambda s: s.movements(q)

    def pair_range(rng: random.Random) -> Any:
        sku, site, _ = _pair(rng)
        start = _instant(rng)
        q = MovementQuery(sku=sku, site=site, from_ms=start, to_ms=start + 90 * MS_PER_DAY)
        return lambda s: s.movements(q)

    def series(rng: random.Random) -> Any:
        start = _instant(rng)
        q = SeriesQuery(start, start + 90 * MS_PER_DAY, sku=_pair(rng)[0])
        return lambda s: s.consumption(q)

    def turnover(rng: random.Random) -> Any:
        start = _instant(rng)
        q = TurnoverQuery(start, start + 30 * MS_PER_DAY, skus=(_pair(rng)[0],))
        return lambda s: s.turnover(q)

    def exposure(rng: random.Random) -> Any:
        q = ExpiryQuery(as_of_ms=_instant(rng), horizon_days=30, skus=(_pair(rng)[0],))
        return lambda s: s.near_expiry(q)

    heavy = max(3, reps // 10)
    return [
        QueryKind("as-of: one pair, by lot × bin × status × owner", as_of_pair, reps),
        QueryKind("as-of: one pair, by expiry day (joins lots)", as_of_expiry, reps),
        QueryKind("as-of: one sku over its 20 sites, by site", as_of_sku, reps),
        QueryKind("as-of: one site, all 5,000 skus, by status", as_of_site, heavy),
        QueryKind("lot trace: lot + sku (20 sites)", trace, reps),
        QueryKind("lot trace: lot id only", trace_any_sku, reps),
        QueryKind("movements by document", by_document, reps),
        QueryKind("movements of a pair, 90 days", pair_range, reps),
        QueryKind("consumption series: one sku, 90 days", series, reps),
        QueryKind("turnover: one sku, 30 days", turnover, reps),
        QueryKind("expiry exposure: one sku, 30 days", exposure, reps),
    ]


async def queries(dsn: str, total: int, reps: int) -> dict[str, Any]:
    store = await open_store(HistoryStoreConfig(dsn=dsn, database="bench_queries", query_timeout_s=120))
    try:
        load_s = await bulk_load(store, total)
        settle_s = await settle(store)
        [(rows, parts)] = await store.query(
            "SELECT sum(rows), count() FROM system.parts "
            "WHERE database = {d:String} AND table = 'movements' AND active",
            {"d": store.database},
        )
        [(disk,)] = await store.query(
            "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = {d:String} AND active",
            {"d": store.database},
        )
        rng = random.Random(42)
        results = []
        for kind in query_kinds(reps):
            await kind.make(rng)(store)  # warm-up, not counted
            times_ms = []
            for _ in range(kind.reps):
                call = kind.make(rng)
                t = time.perf_counter()
                await call(store)
                times_ms.append((time.perf_counter() - t) * 1000)
            row = {
                "query": kind.name,
                "reps": kind.reps,
                "p50_ms": round(statistics.median(times_ms), 1),
                "p99_ms": round(pct(times_ms, 99), 1),
                "max_ms": round(max(times_ms), 1),
            }
            print(json.dumps(row))
            results.append(row)
        return {
            "movements": int(rows),
            "active_parts": int(parts),
            "bytes_on_disk_all_tables": int(disk),
            "bulk_load_s": round(load_s, 1),
            "merges_settled_s": round(settle_s, 1),
            "bulk_rows_per_s": round(total / load_s),
            "queries": results,
        }
    finally:
        await store.close()


# ---- report ----


def markdown(result: dict[str, Any]) -> str:
    i, q = result["ingest"], result["queries"]
    lines = [
        f"History bench on {result['machine']}, {result['date']} (`python -m bench.history`)",
        "",
        "Ingest (journal → sink → chDB, one process for sink + chDB, a separate producer process):",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| catch-up: backlog of {i['backlog_movements']:,} movements stored in | {i['catch_up_s']} s |",
        f"| **sustained ingest (catch-up rate)** | **{i['catch_up_movements_per_s']:,} movements/s** |",
        f"| steady: offered for {i['steady_s']:.0f} s | {i['steady_offered_movements_per_s']:,.0f} movements/s |",
        f"| steady: achieved | {i['steady_achieved_movements_per_s']:,} movements/s |",
        f"| lag (journal append → acked in history) p50 | {i['lag_ms_p50']} ms |",
        f"| **lag p99** | **{i['lag_ms_p99']} ms** |",
        f"| lag max | {i['lag_ms_max']} ms |",
        f"| lag gauge max (messages behind) | {i['lag_messages_max']} |",
        f"| rows stored = movements journaled | {i['stored_ok']} ({i['stored_rows']:,}) |",
        "",
        f"Queries over {q['movements']:,} movements ({q['active_parts']} active parts, "
        f"{q['bytes_on_disk_all_tables'] / 1024**2:,.0f} MiB on disk with roll-ups; bulk load "
        f"{q['bulk_load_s']} s = {q['bulk_rows_per_s']:,} rows/s, then {q['merges_settled_s']} s for its merges), "
        "through ClickHouseHistoryStore (FINAL):",
        "",
        "| query | reps | p50 (ms) | p99 (ms) | max (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in q["queries"]:
        lines.append(f"| {r['query']} | {r['reps']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} |")
    return "\n".join(lines) + "\n"


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.split("\n\n")[0])
    parser.add_argument("--movements", type=int, default=10_000_000, help="rows for the query part")
    parser.add_argument("--backlog", type=int, default=400_000, help="movements journaled before the sink starts")
    parser.add_argument("--rate", type=float, default=0, help="steady movements/s offered (0: half the ceiling)")
    parser.add_argument("--steady-s", type=float, default=20.0)
    parser.add_argument("--reps", type=int, default=50, help="runs of each query kind")
    parser.add_argument("--out", type=Path, default=Path("bench/results") / dt.date.today().isoformat() / "history")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lotwise-history-bench-") as tmp:
        nats = EmbeddedNats(EmbeddedNatsConfig(data_dir=Path(tmp) / "nats", max_file_store_bytes=16 * GiB))
        await nats.start()
        dsn = chdb_dsn(Path(tmp) / "chdb")
        try:
            ingest_result = await ingest(nats, dsn, args.backlog, args.rate, args.steady_s)
        finally:
            await nats.stop()
        query_result = await queries(dsn, args.movements, args.reps)
    result = {
        "machine": machine(),
        "date": dt.date.today().isoformat(),
        "cpus": os.cpu_count(),
        "ingest": ingest_result,
        "queries": query_result,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "history.json").write_text(json.dumps(result, indent=1))
    (args.out / "history.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    asyncio.run(main())
