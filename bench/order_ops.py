"""Shard calls, shard ops and journal entries per order, and CPU per order, in one process.

    .venv/bin/python -m bench.order_ops --orders 2000 --shards 2

The gateway over in-process shard hosts (engine.bootstrap.local_gateway: no Ray, an
in-memory journal), one caller at a time, so every count is the order's own: nothing is
coalesced with another caller's ops. For each kind of order — a one-pair hold (Reserve →
Commit), a hold of two pairs, a one-pair sale, a sale of two pairs — it runs `--orders`
orders on fresh ids over a seeded catalog and reports, per order: shard calls (micro-
batches sent), shard ops, journal entries appended (the shards' batch sequence numbers;
one fsync each with the durable journal) and the CPU time of this process (gateway and
shards together, as process_time). Counts are exact; the CPU column is the one that moves
with the machine's load, so compare it interleaved with the other tree's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from engine import bootstrap
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import Receive, ReserveLine
from engine.runtime.gateway import Gateway
from engine.runtime.types import HoldLine

SKUS = 200
SITES = 5
TTL_MS = 60_000
KINDS = ("hold-1", "hold-2", "sale-1", "sale-2")


async def seeded(shards: int) -> Gateway:
    gateway = bootstrap.local_gateway(shards=shards, clock=ManualClock(), sweep_interval_ms=0)
    for i in range(SKUS):
        await gateway.put_sku(Sku(f"k{i}"))
    for s in range(SITES):
        await gateway.put_site(Site(f"w{s}", "acme", "store"))
    for i in range(SKUS):
        for s in range(SITES):
            await gateway.execute(Receive(f"r{i}-{s}", f"k{i}", f"w{s}", "L1", 1_000_000, status="available"))
    return gateway


def counters(gateway: Gateway) -> tuple[int, int, int]:
    """(shard calls, shard ops, journal entries) over every shard so far."""
    hosts = list(gateway.handles.values())
    return sum(h.batches for h in hosts), sum(h.ops for h in hosts), sum(h.batch_seq for h in hosts)


def order_of(kind: str, gateway: Gateway, n: int, rng: random.Random) -> Callable[[], Awaitable[Any]]:
    count = 1 if kind.endswith("-1") else 2
    picked = rng.sample(range(SKUS * SITES), count)
    lines = [HoldLine(f"k{p // SITES}", f"w{p % SITES}", ReserveLine(1)) for p in picked]
    tag = f"{kind}-{n}"
    if kind.startswith("hold"):

        async def hold() -> None:
            await gateway.reserve(tag, tag, lines, TTL_MS)
            await gateway.commit(f"{tag}:c", tag)

        return hold

    async def sale() -> None:
        await gateway.sell(tag, lines)

    return sale


async def measure(kind: str, orders: int, shards: int, seed: int) -> dict[str, Any]:
    gateway = await seeded(shards)
    try:
        rng = random.Random(seed)
        jobs = [order_of(kind, gateway, n, rng) for n in range(orders)]
        calls, ops, entries = counters(gateway)
        cpu = time.process_time()
        for job in jobs:
            await job()
        cpu_s = time.process_time() - cpu
        calls2, ops2, entries2 = counters(gateway)
        return {
            "kind": kind,
            "orders": orders,
            "calls_per_order": (calls2 - calls) / orders,
            "ops_per_order": (ops2 - ops) / orders,
            "journal_entries_per_order": (entries2 - entries) / orders,
            "cpu_us_per_order": 1e6 * cpu_s / orders,
            "load": os.getloadavg(),
        }
    finally:
        await gateway.close()


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=2_000)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--kinds", default=",".join(KINDS))
    args = p.parse_args()
    for kind in args.kinds.split(","):
        print(json.dumps(await measure(kind, args.orders, args.shards, args.seed)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
