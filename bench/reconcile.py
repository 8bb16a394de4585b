"""Reconciliation: CPU of one 30-s cycle of 100,000 (site, sku, lot) pairs.

    .venv/bin/python -m bench.reconcile                  # 100,000 pairs, 5 cycles
    .venv/bin/python -m bench.reconcile --pairs 20000    # a quick run

What one cycle does, through the engine's own code (engine.health.services.Reconciler):
check the snapshot, look up the books window of every line, classify (match / timing /
within tolerance / real, with tolerances by category and unit values), advance the
per-source streaks, raise an alert and a proposal for each key that reached two real
cycles, keep the report. The snapshot's lines are: 96 % equal to the books, 2 % within
tolerance (food: 5 %), 1 % explained by movements in flight, 1 % off by 40 — plus the
medical skus' +1 lines, real there (no tolerance): about 1.6 % real in all (the same keys every cycle,
so cycle 2 raises their alerts and proposals and later cycles only count them).

With `--books cells` the same books are bulk-received into in-process shards (two, no Ray)
and each cycle reads them back through CellBooks (QueryStock in chunks of sites): what a
cycle costs on an engine without history, the shards' own work included (same process).

By default the books window is served from memory (`--books memory`): the query that produces it
(ClickHouse's balance as of the snapshot's instant, engine.health.books.HistoryBooks) runs
in the history process and is measured by bench/history.py's balance-as-of latencies; this
bench is the reconciliation's own cost on the engine's side. CPU = process time (user +
system) of the cycle, against the 30 s a cycle may take: target ≤ 20 % of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from adapters.memory.documents import InMemoryDocuments
from adapters.memory.health import InMemoryAlertStore, InMemoryHealthPublisher
from engine import bootstrap
from engine.domain.catalog import Site, Sku
from engine.domain.commands import Receive
from engine.domain.history import HistoryBatch, HistoryRecord
from engine.domain.inventory import StockQuery, StockRow
from engine.domain.model import External, Lot, Movement, MovementKind, QuantKey
from engine.health import books as books_module
from engine.health.books import CellBooks, HistoryBooks
from engine.health.desk import AlertDesk
from engine.health.reconcile import TOLERANCE_SCHEMA, BookWindow, Key, SnapshotLine, StockSnapshot, parse_tolerances
from engine.health.services import ProposalDesk, Reconciler

CYCLE_S = 30.0


class MemoryBooks:
    def __init__(self, books: dict[Key, BookWindow]) -> None:
        self.books = books

    async def window(self, lines: Sequence[SnapshotLine], as_of_ms: int, skew_ms: int) -> dict[Key, BookWindow]:
        return self.books


def workload(pairs: int, seed: int) -> tuple[list[SnapshotLine], dict[Key, BookWindow]]:
    rng = random.Random(seed)
    lines: list[SnapshotLine] = []
    books: dict[Key, BookWindow] = {}
    for i in range(pairs):
        site, sku, lot = f"S{i % 500:03d}", f"{'MED' if i % 3 == 0 else 'FOOD'}-{i // 500:05d}", f"L{i % 7}"
        book = rng.randint(20, 500)
        r = rng.random()
        if r < 0.96:
            external, window = book, BookWindow(book, book, book)
        elif r < 0.98:
            external, window = book + 1, BookWindow(book, book, book)  # FOOD: 5 % tolerance
        elif r < 0.99:
            external, window = book - 3, BookWindow(book, book - 5, book)  # a sale in flight
        else:
            external, window = book + 40, BookWindow(book, book, book)
        line = SnapshotLine(site, sku, external, lot)
        lines.append(line)
        books[line.key] = window
    return lines, books


async def cell_books(books: dict[Key, BookWindow]) -> tuple[CellBooks, Any]:
    """The same books held by real in-process shards (bulk-received), read by CellBooks:
    the cycle then includes reading every pair's slice from the cells (no history)."""
    gateway = bootstrap.local_gateway(shards=2, sweep_interval_ms=0)
    for sku in sorted({k[1] for k in books}):
        await gateway.put_sku(Sku(sku))
    for site in sorted({k[0] for k in books}):
        await gateway.put_site(Site(site))
    receipts = [
        Receive(f"b-{i}", sku, site, lot, w.at, status="available")
        for i, ((site, sku, lot, _, _), w) in enumerate(books.items())
    ]
    for i in range(0, len(receipts), 10_000):
        await gateway.receive_bulk(receipts[i : i + 10_000])
    return CellBooks(gateway, frozenset({"available"})), gateway


AS_OF_MS = 1_800_000_000_000  # the first cycle's instant


async def history_books(books: dict[Key, BookWindow], path: str) -> tuple[HistoryBooks, Any]:
    """The same books as movements in an embedded ClickHouse (chDB) history, read by
    HistoryBooks as the engine does with history on: each pair received an hour before the
    first cycle; the 1 % with a sale in flight sell 5 units a second after its instant."""
    from adapters.clickhouse.store import HistoryStoreConfig, open_store

    store = await open_store(HistoryStoreConfig(dsn=f"chdb://{path}", database="bench_reconcile"))
    records: list[HistoryRecord] = []
    for i, ((site, sku, lot, _, _), w) in enumerate(books.items()):
        quant = QuantKey(lot, "", "available", "own")
        at = AS_OF_MS - 3_600_000
        receipt = Movement(1, MovementKind.RECEIVE, sku, site, lot, w.at, External.SUPPLIER, quant, at_ms=at)
        records.append(HistoryRecord("bench", i, i, replace(receipt, lot=Lot(lot, at, 0))))
        if w.low < w.at:  # a sale in flight, inside the first cycle's window
            sale = Movement(2, MovementKind.CONSUME, sku, site, lot, w.at - w.low, quant, External.CUSTOMER)
            records.append(HistoryRecord("bench", i, i, replace(sale, at_ms=AS_OF_MS + 1_000)))
    for i in range(0, len(records), 20_000):
        await store.insert(HistoryBatch(tuple(records[i : i + 20_000]), token=f"bench-{i}"))
    return HistoryBooks(store, frozenset({"available"})), store


async def run(pairs: int, cycles: int, seed: int, source: str = "memory") -> list[dict[str, float]]:
    lines, books = workload(pairs, seed)
    gateway: Any = None
    port: Any = MemoryBooks(books)
    if source == "cells":
        port, gateway = await cell_books(books)
    if source in ("history", "history-three"):
        tmp = tempfile.mkdtemp(prefix="lotwise-bench-reconcile-")
        port, gateway = await history_books(books, tmp)
        if source == "history-three":  # before: the three instants (no window walked)
            books_module.MAX_WINDOW_MOVEMENTS = -1
    tolerances = parse_tolerances(
        {
            "schema": TOLERANCE_SCHEMA,
            "categories": [{"sku_prefix": "MED-", "category": "medical"}],
            "tolerances": [{"category": "medical", "qty_abs": 0}, {"category": "*", "qty_pct": 5, "value": 500}],
            "unit_values": {f"MED-{i:05d}": 12.5 for i in range(pairs // 500 + 1)},
        }
    )
    documents = InMemoryDocuments()
    clock = {"now": AS_OF_MS}
    now_ms = lambda: clock["now"]  # noqa: E731
    alerts = AlertDesk(InMemoryAlertStore(), InMemoryHealthPublisher(), now_ms)
    proposals = ProposalDesk(documents, _NoStock(), InMemoryHealthPublisher(), now_ms)
    reconciler = Reconciler(port, documents, alerts, proposals, tolerances, now_ms, "available")
    out = []
    for cycle in range(cycles):
        snapshot = StockSnapshot(f"snap-{cycle}", "wms:bench", clock["now"], tuple(lines))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = await reconciler.submit(snapshot)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        out.append(
            {
                "cycle": cycle + 1,
                "cpu_s": cpu,
                "wall_s": wall,
                "core_pct_of_30s": 100 * cpu / CYCLE_S,
                "real": result.report.by_class["real"],
                "alerts": len(result.alert_ids),
                "proposals": len(result.proposal_ids),
            }
        )
        clock["now"] += 30_000
    if gateway is not None:
        await gateway.close()
    return out


class _NoStock:
    """Approval is not part of a cycle: nothing here may touch stock."""

    async def query_stock(self, q: StockQuery, deadline: float | None = None) -> list[StockRow]:
        raise AssertionError("a reconciliation cycle read the cells")

    async def execute(self, cmd: Any, deadline: float | None = None) -> Any:
        raise AssertionError("a reconciliation cycle changed stock")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--books",
        choices=("memory", "cells", "history", "history-three"),
        default="memory",
        help="where the books come from (history: chDB; history-three: the same, window of three instants)",
    )
    args = parser.parse_args()
    rows = asyncio.run(run(args.pairs, args.cycles, args.seed, args.books))
    print(f"pairs={args.pairs} books={args.books} load_avg_1m={os.getloadavg()[0]:.2f}")
    print("| cycle | CPU s | wall s | % of one core over 30 s | real | alerts | proposals |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['cycle']:.0f} | {r['cpu_s']:.3f} | {r['wall_s']:.3f} | {r['core_pct_of_30s']:.2f} % "
            f"| {r['real']:.0f} | {r['alerts']:.0f} | {r['proposals']:.0f} |"
        )


if __name__ == "__main__":
    main()
