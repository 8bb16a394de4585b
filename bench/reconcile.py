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
import time
from collections.abc import Sequence
from typing import Any

from adapters.memory.documents import InMemoryDocuments
from adapters.memory.health import InMemoryAlertStore, InMemoryHealthPublisher
from engine import bootstrap
from engine.domain.catalog import Site, Sku
from engine.domain.commands import Receive
from engine.domain.inventory import StockQuery, StockRow
from engine.health.books import CellBooks
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


async def run(pairs: int, cycles: int, seed: int, source: str = "memory") -> list[dict[str, float]]:
    lines, books = workload(pairs, seed)
    gateway: Any = None
    port: Any = MemoryBooks(books)
    if source == "cells":
        port, gateway = await cell_books(books)
    tolerances = parse_tolerances(
        {
            "schema": TOLERANCE_SCHEMA,
            "categories": [{"sku_prefix": "MED-", "category": "medical"}],
            "tolerances": [{"category": "medical", "qty_abs": 0}, {"category": "*", "qty_pct": 5, "value": 500}],
            "unit_values": {f"MED-{i:05d}": 12.5 for i in range(pairs // 500 + 1)},
        }
    )
    documents = InMemoryDocuments()
    clock = {"now": 1_800_000_000_000}
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
    parser.add_argument("--books", choices=("memory", "cells"), default="memory", help="where the books come from")
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
