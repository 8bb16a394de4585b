"""CPU per many-line hold through the gateway and the shards, in one process (no Ray).

`Gateway.local` with two shards over the in-memory journal; every shard call's ops and
answers are pickled both ways, as a Ray actor call does, so what a hold's commands cost on
the wire counts. Each order is a hold of `--lines` lines at one site (a WMS pick: one pair
per line, as the suite's wms-bulk) and its commit. Prints the process CPU per order over
the measured orders: the gateway's and the shards' own work, without gRPC, Ray's transport,
the journal codec or the followers (bench.suite measures those, with everything else).

    .venv/bin/python -m bench.hold_lines --lines 40 --concurrency 1,64
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from engine.bootstrap.local import local_gateway
from engine.domain.catalog import Site, Sku
from engine.domain.commands import Receive, ReserveLine
from engine.runtime.gateway import Gateway
from engine.runtime.types import HoldLine

SKUS = 200
WARMUP_ORDERS = 20
FAR_EXPIRY_MS = 2_000_000_000_000


def _pickled(send: Callable[[list[Any]], Awaitable[list[Any]]]) -> Callable[[list[Any]], Awaitable[list[Any]]]:
    async def wrapped(ops: list[Any]) -> list[Any]:
        answers = await send(pickle.loads(pickle.dumps(ops, protocol=5)))
        return list(pickle.loads(pickle.dumps(answers, protocol=5)))

    return wrapped


async def _seeded() -> Gateway:
    gw = local_gateway(shards=2)
    for batcher in gw.router._batchers.values():
        batcher._send = _pickled(batcher._send)
    await gw.put_site(Site("S1"))
    for i in range(SKUS):
        await gw.put_sku(Sku(f"K{i:03d}"))
    for i in range(SKUS):
        for lot in range(3):
            expiry = FAR_EXPIRY_MS + lot
            await gw.execute(
                Receive(f"r{i}-{lot}", f"K{i:03d}", "S1", f"L{lot}", 10**9, status="available", expires_at_ms=expiry)
            )
    return gw


async def run(lines: int, concurrency: int, orders: int, seed: int) -> tuple[float, float]:
    """(CPU ms per order, wall ms per order) over `orders` holds of `lines` lines."""
    gw = await _seeded()
    rng = random.Random(seed)
    total = orders + WARMUP_ORDERS
    picks = [rng.sample(range(SKUS), lines) for _ in range(total)]
    holds = [[HoldLine(f"K{i:03d}", "S1", ReserveLine(rng.randint(1, 20))) for i in pick] for pick in picks]
    gate = asyncio.Semaphore(concurrency)

    async def order(n: int) -> None:
        async with gate:
            await gw.reserve(f"o{n}", f"h{n}", holds[n], 60_000)
            done = await gw.commit(f"c{n}", f"h{n}")
            if done.committed_qty != sum(hl.line.qty for hl in holds[n]):
                raise RuntimeError(f"order {n} committed {done.committed_qty}, not its lines' sum")

    try:
        await asyncio.gather(*(order(n) for n in range(WARMUP_ORDERS)))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(order(n) for n in range(WARMUP_ORDERS, total)))
        cpu1, wall1 = time.process_time(), time.perf_counter()
        await _check_books(gw, holds)
    finally:
        await gw.close()
    return 1000 * (cpu1 - cpu0) / orders, 1000 * (wall1 - wall0) / orders


async def _check_books(gw: Gateway, holds: list[list[HoldLine]]) -> None:
    """Every unit committed left the books, and nothing stays held."""
    sold = [0] * SKUS
    for hold in holds:
        for hl in hold:
            sold[int(hl.sku[1:])] += hl.line.qty
    for i in range(SKUS):
        seen = await gw.get_availability(f"K{i:03d}", "S1")
        held = sum(row.held for row in seen.rows)
        if (seen.available, held) != (3 * 10**9 - sold[i], 0):
            raise RuntimeError(f"K{i:03d}: available {seen.available}, held {held}; sold {sold[i]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=40, help="lines (pairs) of each hold")
    parser.add_argument("--concurrency", default="1,64", help="comma-separated orders in flight")
    parser.add_argument("--orders", type=int, default=200, help="measured orders per run")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not 0 < args.lines <= SKUS:
        parser.error(f"--lines must be in 1..{SKUS}")
    load = os.getloadavg()[0]
    for c in (int(x) for x in args.concurrency.split(",")):
        cpu_ms, wall_ms = asyncio.run(run(args.lines, c, args.orders, args.seed))
        print(
            f"lines={args.lines} concurrency={c} orders={args.orders} cpu_ms/order={cpu_ms:.2f} "
            f"wall_ms/order={wall_ms:.2f} load={load:.1f}"
        )


if __name__ == "__main__":
    main()
