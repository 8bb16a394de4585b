"""The wire's own cost: unary calls vs auto-batched Execute, two-phase orders vs one-call
sales, at 1 / 16 / 64 concurrent callers.

    .venv/bin/python -m bench.wire                 # 5 s per row, 1/16/64 callers, every mode
    .venv/bin/python -m bench.wire --seconds 3 --callers 1,64
    .venv/bin/python -m bench.wire --modes unary,sale-unary

A server process (Gateway.local: shards in that process, journal in memory, no Ray, no
fsync) serves lotwise.v1.Inventory on 127.0.0.1; this process drives orders (Reserve of
one unit, then Commit) from N concurrent callers on one LotwiseClient, first unary
(`batching=None`), then auto-batched (the default); the `sale-*` modes sell the same unit
in one Sell call instead (reserve and commit in one command). Printed per row: orders/s
and the server process's CPU per order and per command (a two-phase order is two
commands, a sale one), from
/proc via psutil, and this (client) process's CPU per order. The server's numbers are
the wire + servicer + gateway + cells, not Ray or the journal's durability
(bench/core.py and bench/suite.py measure those).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from dataclasses import dataclass

import psutil

from bench.served import server_process
from engine.api.client import DEFAULT_BATCHING, LotwiseClient
from engine.domain.catalog import Site, Sku
from engine.domain.commands import ReserveLine
from engine.runtime.types import HoldLine

SKUS = 64  # orders spread over this many pairs, so no one cell is the bottleneck
STOCK_PER_SKU = 10_000_000  # deep: no order is refused
TTL_MS = 60_000
# mode → (auto-batched, one-call sale)
MODES = {
    "unary": (False, False),
    "batched": (True, False),
    "sale-unary": (False, True),
    "sale-batched": (True, True),
}


@dataclass(frozen=True, slots=True)
class Row:
    mode: str
    callers: int
    orders: int
    seconds: float
    server_cpu_s: float
    client_cpu_s: float
    commands_per_order: int = 2  # reserve + commit; a one-call sale is one

    @property
    def cpu_us_per_order(self) -> float:
        return self.server_cpu_s / max(self.orders, 1) * 1e6

    @property
    def orders_per_s(self) -> float:
        return self.orders / self.seconds

    @property
    def cpu_us_per_command(self) -> float:
        return self.cpu_us_per_order / self.commands_per_order

    @property
    def client_cpu_us_per_order(self) -> float:
        return self.client_cpu_s / max(self.orders, 1) * 1e6


# ---- the server process ----


# ---- the load ----


async def stock(target: str) -> None:
    async with LotwiseClient(target, timeout_s=30) as client:
        await client.put_site(Site("bench-site"))
        await asyncio.gather(*(client.put_sku(Sku(f"sku-{i}")) for i in range(SKUS)))
        await asyncio.gather(
            *(client.receive(f"sku-{i}", "bench-site", "L1", STOCK_PER_SKU, status="available") for i in range(SKUS))
        )


async def drive(target: str, pid: int, mode: str, callers: int, seconds: float) -> Row:
    batched, sale = MODES[mode]
    proc = psutil.Process(pid)
    async with LotwiseClient(target, timeout_s=30, batching=DEFAULT_BATCHING if batched else None) as client:
        stop_at = 0.0
        done = 0

        async def caller(k: int) -> None:
            nonlocal done
            i = k
            while time.monotonic() < stop_at:
                line = HoldLine(f"sku-{i % SKUS}", "bench-site", ReserveLine(1))
                if sale:
                    await client.sell([line])
                else:
                    hold = await client.reserve([line], TTL_MS)
                    await client.commit(hold.hold_id)
                done += 1
                i += callers

        stop_at = time.monotonic() + 0.5  # warm-up: connection, first batches
        await asyncio.gather(*(caller(k) for k in range(callers)))
        done = 0
        cpu0, own0, t0 = proc.cpu_times(), resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        stop_at = t0 + seconds
        await asyncio.gather(*(caller(k) for k in range(callers)))
        cpu1, own1, t1 = proc.cpu_times(), resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    own_s = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
    return Row(mode, callers, done, t1 - t0, cpu_s, own_s, 1 if sale else 2)


async def run(callers: list[int], seconds: float, modes: list[str]) -> list[Row]:
    rows: list[Row] = []
    with server_process() as (pid, port):
        target = f"127.0.0.1:{port}"
        await stock(target)
        for n in callers:
            for mode in modes:
                row = await drive(target, pid, mode, n, seconds)
                rows.append(row)
                print(_format(row), flush=True)
    return rows


def _format(row: Row) -> str:
    return (
        f"| {row.mode:<12} | {row.callers:>3} | {row.orders_per_s:>9,.0f} | "
        f"{row.cpu_us_per_command:>9,.0f} | {row.cpu_us_per_order:>9,.0f} | "
        f"{row.client_cpu_us_per_order:>9,.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per row")
    parser.add_argument("--callers", default="1,16,64", help="concurrent callers per row, comma-separated")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    print("| mode | callers | orders/s | server CPU µs/command | server CPU µs/order | client CPU µs/order |")
    print("|---|---:|---:|---:|---:|---:|")
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown modes {unknown}; choose from {', '.join(MODES)}")
    asyncio.run(run([int(c) for c in args.callers.split(",")], args.seconds, modes))


if __name__ == "__main__":
    main()
