"""Voucher lag behind the journal: the finance follower (costing → vouchers → chDB) while
the journal is written at a steady rate of movements.

    scripts/in-netns .venv/bin/python -m bench.finance                          # 5,000 movements/s, 20 s
    scripts/in-netns .venv/bin/python -m bench.finance --rate 2000 --seconds 10
    .venv/bin/python -m bench.finance --balance-check 1000000                  # no servers: balances only

No Ray: an embedded nats-server and an embedded chDB in a temp dir, the production follower
(adapters.nats.follower.JournalFollower + engine.finance.follower.FinanceFeed + the
ClickHouse finance store, default bounds). Journal batches of `--batch` movements (a shard's
batch: one in five a receipt of 20 units at a unit cost, the rest sales of 5 units with
price, tax and terms, over 200 skus × 2 lots, FIFO and moving average) are appended at
`--rate` movements per second after a seeding batch per sku. Lag = journal append → the
follower acknowledged the message (its vouchers are stored by then), per journal message;
printed as p50 / p99 / max over the messages of the timed window, with the vouchers made,
the CPU seconds of this process per 1,000 movements (writer included: read as a ratio) and
the load average. Exits 1 if the follower fell behind for good (did not catch up within 60 s
of the end).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from adapters.clickhouse.finance import FinanceStoreConfig, open_finance_store
from adapters.clickhouse.store import chdb_dsn
from adapters.nats.follower import JournalFollower
from adapters.nats.journal import (
    JetStreamJournal,
    JournalConfig,
    NatsLink,
    engine_journal_config,
    ensure_stream,
    journal_stream_config,
)
from adapters.nats.server import EmbeddedNats, EmbeddedNatsConfig
from engine.bootstrap.finance import FinanceMetrics, finance_follower_config
from engine.domain.commands import Consume, Receive
from engine.domain.events import BusinessEvent, EventFinance, Place
from engine.domain.model import External, Finance, Movement, MovementKind, QuantKey
from engine.domain.ports import JournalEntry
from engine.finance.costing import Method
from engine.finance.documents import LandedCost, book
from engine.finance.follower import FinanceFeed
from engine.finance.ledger import Ledger, Valuation
from engine.finance.mapping import default_rules
from engine.finance.setup import Category, Company, LedgerSetup
from engine.finance.vouchers import Voucher

GiB = 1024 * 1024 * 1024
SKUS, LOTS = 200, 2
T0_MS = 1_795_000_000_000
COST = Finance("CNY", unit_cost="12.40")
PRICE = Finance("CNY", unit_price="19.90", tax_rate="0.13", terms="2/10 n/30")
SETUP = LedgerSetup(
    (Company("bench", "CNY"),), (Category("bulk", ("AVG-",), Method.AVERAGE),), "bench", Method.FIFO, "bench"
)


class Writer:
    """Journal batches of one shard, as the engine writes them: movements and their ops."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.seq: dict[tuple[str, str], int] = {}
        self.batch_seq = 0
        self.n = 0

    def _sku(self, i: int) -> str:
        return f"{'AVG' if i % 2 else 'FIFO'}-{i % SKUS}"

    def _movement(self, sku: str, lot: str, receipt: bool, qty: int, at_ms: int) -> tuple[Movement, Receive | Consume]:
        key = (sku, "SH01")
        self.seq[key] = self.seq.get(key, 0) + 1
        quant = QuantKey(lot, "", "available", "own")
        rid = f"r{self.n}"
        self.n += 1
        if receipt:
            m = Movement(
                self.seq[key],
                MovementKind.RECEIVE,
                sku,
                "SH01",
                lot,
                qty,
                External.SUPPLIER,
                quant,
                request_id=rid,
                doc_ref=f"PO-{self.n}",
                at_ms=at_ms,
            )
            return m, Receive(rid, sku, "SH01", lot, qty, finance=COST)
        m = Movement(
            self.seq[key],
            MovementKind.CONSUME,
            sku,
            "SH01",
            lot,
            qty,
            quant,
            External.CUSTOMER,
            request_id=rid,
            doc_ref=f"SO-{self.n}",
            at_ms=at_ms,
        )
        return m, Consume(rid, sku, "SH01", qty, lot_id=lot, finance=PRICE)

    def seed(self) -> list[JournalEntry]:
        at_ms = int(time.time() * 1000)
        pairs = [
            self._movement(f"{kind}-{i}", f"L{j}", True, 1_000, at_ms)
            for kind in ("FIFO", "AVG")
            for i in range(SKUS)
            for j in range(LOTS)
        ]
        return [self._entry(pairs[i : i + self.batch], at_ms) for i in range(0, len(pairs), self.batch)]

    def next(self) -> JournalEntry:
        at_ms = int(time.time() * 1000)
        pairs = []
        for _ in range(self.batch):
            i = self.n
            receipt = i % 5 == 0
            pairs.append(self._movement(self._sku(i // 5), f"L{i % LOTS}", receipt, 20 if receipt else 5, at_ms))
        return self._entry(pairs, at_ms)

    def _entry(self, pairs: list[tuple[Movement, Receive | Consume]], at_ms: int) -> JournalEntry:
        self.batch_seq += 1
        return JournalEntry("s0", self.batch_seq, at_ms, tuple(op for _, op in pairs), tuple(m for m, _ in pairs))


def balance_check(movements: int, seed: int = 7) -> int:
    """The pure ledger over `movements` random movements (receipts, sales, returns, scrap,
    counts, transfers between two companies, landed costs): every voucher must balance and
    each company's inventory account (Σ inventory lines of its vouchers) equal its cost
    layers and its valuation report (Σ the valuation rows the store keeps, which
    `lotwise finance valuation` sums). Returns 1 on any breach."""
    rnd = random.Random(seed)
    setup = LedgerSetup(
        (Company("east", "CNY", site_prefixes=("E",)), Company("west", "JPY", site_prefixes=("W",))),
        (Category("bulk", ("AVG-",), Method.AVERAGE),),
        "east",
    )
    ledger = Ledger(setup, default_rules())
    on_hand: dict[tuple[str, str, str], int] = {}
    inventory: dict[str, Decimal] = {"east": Decimal(0), "west": Decimal(0)}
    report: dict[str, Decimal] = {"east": Decimal(0), "west": Decimal(0)}
    unbalanced = vouchers = 0
    started = time.process_time()
    for n in range(movements):
        sku, site, lot = rnd.choice(BALANCE_SKUS), rnd.choice(("E1", "E2", "W1")), rnd.choice(("L1", "L2"))
        event = _random_event(rnd, n, sku, site, lot, on_hand)
        made, rows = _effects_of(ledger, event, rnd)
        for row in rows:  # the valuation report is Σ of these rows per company
            report[row.company] += row.value
        for v in made:
            vouchers += 1
            unbalanced += v.debit_total != v.credit_total
            for line in v.lines:
                if line.role == "inventory":
                    inventory[v.company] += line.debit - line.credit
    layers = {c: sum((p.value for (pc, _), p in ledger.positions.items() if pc == c), Decimal(0)) for c in inventory}
    ok = unbalanced == 0 and layers == inventory == report
    books = ", ".join(f"{c} {v}" for c, v in inventory.items())
    print(
        f"balance check: {movements:,} random movements → {vouchers:,} vouchers, {unbalanced} unbalanced; "
        f"inventory account = cost layers: {layers == inventory} ({books}); "
        f"inventory account = valuation report: {report == inventory}; "
        f"{1e6 * (time.process_time() - started) / movements:.0f} µs CPU per movement"
    )
    return 0 if ok else 1


def _effects_of(ledger: Ledger, event: BusinessEvent, rnd: random.Random) -> tuple[list[Voucher], list[Valuation]]:
    """The event's vouchers and valuation rows; one in a hundred is followed by a landed
    cost on the same lot (a finance document, booked as the follower books the log)."""
    effects = ledger.apply(event)
    made, rows = list(effects.vouchers), list(effects.valuations)
    if rnd.random() < 0.01:
        company = ledger.setup.company_of(event.site).company
        amount = Decimal(rnd.randint(1, 50_000)) / 100
        cost = LandedCost(f"LC-{event.event_id}", company, event.sku, event.lot_id, amount, "bench", event.at_ms)
        more, more_rows = book(ledger, cost)
        made += more
        rows += more_rows
    return made, rows


BALANCE_SKUS = tuple(f"{kind}-{i}" for kind in ("FIFO", "AVG") for i in range(20))


def _random_event(
    rnd: random.Random, n: int, sku: str, site: str, lot: str, on_hand: dict[tuple[str, str, str], int]
) -> BusinessEvent:
    """One movement the engine could journal: issues never exceed what is on hand."""
    key, have = (sku, site, lot), on_hand.get((sku, site, lot), 0)
    quant = Place(status="available", owner="own")
    what = rnd.choice(("in", "in", "out", "out", "return", "transfer_in"))
    qty = rnd.randint(1, 30)
    cost = f"{rnd.randint(1, 99_999) / 100:.2f}"
    money = EventFinance("CNY", cost, f"{rnd.randint(1, 99_999) / 100:.2f}", rnd.choice(("0", "0.13")))
    if what == "out" and have:
        qty = min(rnd.randint(1, 60), have)  # outs outweigh ins: stock (and open layers) stay bounded
        dest = rnd.choice(("@customer", "@customer", "@scrap", "@count_variance", "@transit"))
        doc = f"D{n % 97}?to={rnd.choice(('E1', 'W1'))}" + ("&flow=gift&tax=deemed_sale" if rnd.random() < 0.05 else "")
        on_hand[key] = have - qty
        src, dst = quant, Place(external=dest)
    else:
        source = {"in": "@supplier", "return": "@customer", "transfer_in": "@transit", "out": "@count_variance"}[what]
        doc = f"R{n}?orig=D{rnd.randint(0, 96)}"
        on_hand[key] = have + qty
        src, dst = Place(external=source), quant
    return BusinessEvent(
        f"s0:{n}:0", "consume", sku, site, n + 1, lot, qty, src, dst, 0, "", f"r{n}", doc, T0_MS + n, None, 0,
        "s0", n, 0, n + 1, money,
    )  # fmt: skip


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _bench_journal(url: str, namespace: str) -> JournalConfig:
    # A shared, loaded machine: the writer waits for its appends rather than failing the run.
    return dataclasses.replace(
        engine_journal_config(namespace, url, client_name="lotwise-bench"), max_bytes=GiB, ack_timeout_s=30.0
    )


def _writer_main(url: str, namespace: str, batch: int, rate: float, batches: int, position: int, out: Any) -> None:
    """The writer process: the same Writer (its seed replayed to continue its numbering)."""

    async def write() -> float:
        link = NatsLink(_bench_journal(url, namespace))
        await link.connect()
        journal, writer = JetStreamJournal(link), Writer(batch)
        writer.seed()
        at = position
        started = time.perf_counter()
        for i in range(batches):
            at = await journal.append(writer.next(), at)
            await asyncio.sleep(max(0.0, started + (i + 1) * batch / rate - time.perf_counter()))
        wrote_s = time.perf_counter() - started
        await link.close()
        return wrote_s

    out.put(asyncio.run(write()))


async def _write_elsewhere(url: str, namespace: str, batch: int, rate: float, batches: int, position: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_writer_main, args=(url, namespace, batch, rate, batches, position, out))
    proc.start()
    wrote_s = await asyncio.to_thread(out.get, True, 600)
    await asyncio.to_thread(proc.join, 60)
    return float(wrote_s)


async def run(tmp: Path, rate: float, seconds: float, batch: int, separate: bool = False) -> int:
    nats = EmbeddedNats(EmbeddedNatsConfig(data_dir=tmp / "nats", max_file_store_bytes=4 * GiB))
    await nats.start()
    namespace = f"bench-finance-{uuid.uuid4().hex[:6]}"
    config = _bench_journal(nats.url, namespace)
    link = NatsLink(config)
    store = await open_finance_store(FinanceStoreConfig(chdb_dsn(tmp / "chdb"), namespace.replace("-", "_")))
    try:
        await link.connect()
        _, js = await link.client()
        await ensure_stream(js, journal_stream_config(config))
        journal, writer = JetStreamJournal(link), Writer(batch)
        feed = FinanceFeed(store, SETUP, default_rules())
        follower = JournalFollower(
            link,
            feed,
            finance_follower_config(),  # the engine's bounds (its busy window included)
            FinanceMetrics(CollectorRegistry()),
        )
        position = 0
        for entry in writer.seed():
            position = await journal.append(entry, position)
        await follower.start()
        await follower.wait_caught_up(timeout_s=300, poll_s=0.05)
        follower.delays_s.clear()
        vouchers0, events0, cpu0 = feed.counters.vouchers, feed.counters.events, time.process_time()
        batches = max(1, round(rate * seconds / batch))
        if separate:  # the writer in a process of its own, as the shards are in the engine
            wrote_s = await _write_elsewhere(nats.url, namespace, batch, rate, batches, position)
        else:
            started = time.perf_counter()
            for i in range(batches):
                position = await journal.append(writer.next(), position)
                await asyncio.sleep(max(0.0, started + (i + 1) * batch / rate - time.perf_counter()))
            wrote_s = time.perf_counter() - started
        try:
            await follower.wait_caught_up(timeout_s=60, poll_s=0.05)
        except Exception as exc:  # fell behind for good: say how far it got, and at what cost
            booked = feed.counters.events - events0
            delays = list(follower.delays_s) or [float("nan")]
            print(
                f"the follower did not catch up within 60 s of the end: {exc}; it booked {booked:,} of "
                f"{batches * batch:,} movements, lag of those p50 {1000 * statistics.median(delays):.0f} ms, "
                f"p99 {1000 * pct(delays, 0.99):.0f} ms; {1000 * (time.process_time() - cpu0) / max(booked, 1):.2f} "
                f"CPU-s per 1,000 movements booked; load average {os.getloadavg()[0]:.1f}"
            )
            return 1
        cpu_s = time.process_time() - cpu0
        delays = list(follower.delays_s)
        movements = batches * batch
        load = os.getloadavg()
        print(
            f"finance follower at {movements / wrote_s:,.0f} movements/s "
            f"({batches:,} journal batches of {batch}, {wrote_s:.1f} s): "
            f"voucher lag p50 {1000 * statistics.median(delays):.0f} ms, p99 {1000 * pct(delays, 0.99):.0f} ms, "
            f"max {1000 * max(delays):.0f} ms; {feed.counters.vouchers - vouchers0:,} vouchers; "
            f"{1000 * cpu_s / movements:.2f} CPU-s per 1,000 movements in this process "
            f"({'the follower alone' if separate else 'writer included'}); "
            f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
        )
        await follower.stop()
        return 0
    finally:
        await store.close()
        await link.close()
        await nats.stop()


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.finance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=5_000, help="movements per second written to the journal")
    parser.add_argument("--seconds", type=float, default=20, help="how long to write")
    parser.add_argument("--batch", type=int, default=50, help="movements per journal batch")
    parser.add_argument(
        "--writer-process", action="store_true", help="write the journal from a process of its own (as shards do)"
    )
    parser.add_argument(
        "--balance-check", type=int, default=0, help="instead: the pure ledger over N random movements (no servers)"
    )
    args = parser.parse_args(argv)
    if args.balance_check:
        return balance_check(args.balance_check)
    if not 0 < args.rate <= 50_000 or not 0 < args.seconds <= 300 or not 1 <= args.batch <= 1_000:
        parser.error("--rate in (0, 50000], --seconds in (0, 300], --batch in [1, 1000]")
    with tempfile.TemporaryDirectory(prefix="lotwise-finance-bench-") as tmp:
        return await run(Path(tmp), args.rate, args.seconds, args.batch, args.writer_process)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
