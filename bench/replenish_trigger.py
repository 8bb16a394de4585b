"""The replenishment trigger's reads: CPU per recomputed pair, pair by pair against batched
(issue 12 item 10), in one process, interleaved, on the same embedded chDB history.

    .venv/bin/python -m bench.replenish_trigger --pairs 1000 --movements 20 --rounds 2

A history of `--pairs` (sku, site) pairs with `--movements` movements each over the last 30
days (receipts with lots and documents, sales, matched returns) is written once. Then, per
round, two fresh services (cold caches, as a freshly started engine) recompute every pair:
- per pair: ReplenishService.recompute for each pair, 8 at a time (the trigger before: its
  consumption, returns and stockout days read per pair and its data health from the
  pair's movements, page by page);
- batched: ReplenishService.recompute_many in batches of 256 (the trigger now: one
  aggregated query per kind per batch, data health counted in the store).
A second pass on the same services measures the warm case (health cached), and a third the
trigger's steady state: each pair has one more scan of today (the follower's live count) before
it, as a pair moved by an order; and a fourth (`moved`, batched only) the whole trigger: each pair's
sale as a journal entry through ReplenishTrigger.apply (its settling, its batches; with floors
under the positions where the tree has them), until it is idle. The process's CPU (every
thread, chDB's included) is divided by the pairs. The stock reader and the replenishment store
are in memory (50 units on hand: every pair stays above its reorder point, as most moved pairs
do).

Run the same file in two trees (e.g. main in a `git archive` copy, then this one) to compare
the trigger's path before and after a change: the batched rows are `recompute_many`, the
trigger's batch.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from adapters.clickhouse.replenish import (
    ClickHouseDemandBatch,
    ClickHouseHealthCounts,
    ClickHouseReturns,
    ClickHouseStockouts,
)
from adapters.clickhouse.store import ClickHouseHistoryStore, HistoryStoreConfig, chdb_dsn, open_store
from adapters.memory.replenish import InMemoryReplenishStore
from engine.domain.cell import SliceRow
from engine.domain.clock import SystemClock
from engine.domain.history import HistoryBatch, HistoryRecord
from engine.domain.model import External, Lot, Movement, MovementKind, QuantKey
from engine.domain.ports import FollowedEntry, JournalEntry
from engine.replenish.follower import ReplenishTrigger
from engine.replenish.planning import PolicyPlanner
from engine.replenish.service import ReplenishService

DAY_MS = 86_400_000
BATCH = 256


@dataclass
class _Availability:
    rows: tuple[SliceRow, ...]


class _Stock:
    async def get_availability(self, sku: str, site: str, group_by: Sequence[Any] = ()) -> _Availability:
        return _Availability((SliceRow((("status", "available"),), 50, 0, 50, 50, 0),))


def _history(pairs: list[tuple[str, str]], per_pair: int, now_ms: int) -> list[HistoryRecord]:
    out: list[HistoryRecord] = []
    for sku, site in pairs:
        q = QuantKey("L1", "", "available", "own")
        for i in range(per_pair):
            src: QuantKey | External
            dst: QuantKey | External
            at = now_ms - (30 - i * 30 // per_pair) * DAY_MS + i
            if i % 5 == 0:
                kind, src, dst, doc = MovementKind.RECEIVE, External.SUPPLIER, q, f"PO-{i}"
            elif i % 7 == 6:
                kind, src, dst, doc = MovementKind.RECEIVE, External.CUSTOMER, q, f"SO-{i - 1}"
            else:
                kind, src, dst, doc = MovementKind.CONSUME, q, External.CUSTOMER, f"SO-{i}"
            lot = Lot("L1", now_ms - 30 * DAY_MS, now_ms + 90 * DAY_MS) if kind is MovementKind.RECEIVE else None
            m = Movement(i + 1, kind, sku, site, "L1", 1 + i % 3, src, dst, doc_ref=doc, at_ms=at, lot=lot)
            out.append(HistoryRecord("s0", len(out) + 1, len(out) + 1, m))
    return out


def _service(history: ClickHouseHistoryStore, batched: bool) -> ReplenishService:
    return ReplenishService(
        InMemoryReplenishStore(),
        _Stock(),
        PolicyPlanner(),
        SystemClock(),
        history=history,
        stockouts=ClickHouseStockouts(history),
        returns=ClickHouseReturns(history),
        batch=ClickHouseDemandBatch(history) if batched else None,
        health_counts=ClickHouseHealthCounts(history) if batched else None,
    )


async def _per_pair(service: ReplenishService, pairs: list[tuple[str, str]]) -> None:
    limit = asyncio.Semaphore(8)

    async def one(sku: str, site: str) -> None:
        async with limit:
            await service.recompute(sku, site, "journal")

    await asyncio.gather(*(one(sku, site) for sku, site in pairs))


async def _batched(service: ReplenishService, pairs: list[tuple[str, str]]) -> None:
    for i in range(0, len(pairs), BATCH):
        for got in await service.recompute_many(pairs[i : i + BATCH], "journal", concurrency=8):
            if isinstance(got, Exception):
                raise got


FOLLOWER_BATCH = 64  # journal entries per follower batch in the `moved` phase


async def _moved(trigger: ReplenishTrigger, pairs: list[tuple[str, str]], position: int) -> int:
    """One sale per pair, as journal entries through the trigger; returns the next position."""
    q = QuantKey("L1", "", "available", "own")
    entries = []
    for sku, site in pairs:
        m = Movement(
            position, MovementKind.CONSUME, sku, site, "L1", 1, q, External.CUSTOMER, at_ms=int(time.time() * 1000)
        )
        entries.append(FollowedEntry(position, JournalEntry("s0", position, m.at_ms, (), (m,)), behind=0))
        position += 1
    for i in range(0, len(entries), FOLLOWER_BATCH):
        await trigger.apply(tuple(entries[i : i + FOLLOWER_BATCH]))
    await trigger.idle()
    return position


async def _measure(name: str, run: Any, service: ReplenishService, pairs: list[tuple[str, str]]) -> None:
    trigger = ReplenishTrigger(service, settle_s=0.02, max_wait_s=0.1) if name == "batched" else None
    position = 1
    for phase in ("cold", "warm", "scanned", "moved", "moved"):
        if phase == "moved" and trigger is None:
            continue
        if phase == "scanned":
            for sku, site in pairs:  # one more unit issued today, as the follower notes it
                service.note_consumed(sku, site, 1, int(time.time() * 1000))
        cpu, wall = time.process_time(), time.perf_counter()
        if phase == "moved" and trigger is not None:
            position = await _moved(trigger, pairs, position)
        else:
            await run(service, pairs)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        load = os.getloadavg()[0]
        print(
            f"{name:9s} {phase}: {cpu / len(pairs) * 1000:7.2f} ms CPU/pair, "
            f"{wall / len(pairs) * 1000:7.2f} ms wall/pair, load average {load:.1f}",
            flush=True,
        )


async def main(args: argparse.Namespace) -> None:
    now_ms = int(time.time() * 1000)
    pairs = [(f"SKU-{i:05d}", f"SITE-{j:03d}") for i in range(args.pairs // 5 or 1) for j in range(5)]
    with tempfile.TemporaryDirectory(prefix="bench-replenish-") as tmp:
        store = await open_store(HistoryStoreConfig(dsn=chdb_dsn(tmp), database=f"b_{uuid.uuid4().hex[:8]}"))
        assert isinstance(store, ClickHouseHistoryStore)
        try:
            records = _history(pairs, args.movements, now_ms)
            for i in range(0, len(records), 10_000):
                await store.insert(HistoryBatch(tuple(records[i : i + 10_000])))
            print(f"{len(pairs)} pairs, {len(records)} movements", flush=True)
            for _ in range(args.rounds):
                if not args.batched_only:
                    await _measure("per pair", _per_pair, _service(store, batched=False), pairs)
                await _measure("batched", _batched, _service(store, batched=True), pairs)
        finally:
            await store.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=1_000, choices=range(5, 100_001), metavar="5..100000")
    p.add_argument("--movements", type=int, default=20, choices=range(1, 1_001), metavar="1..1000")
    p.add_argument("--rounds", type=int, default=2, choices=range(1, 11), metavar="1..10")
    p.add_argument("--batched-only", action="store_true", help="skip the per-pair rows (the trigger before batching)")
    asyncio.run(main(p.parse_args()))
