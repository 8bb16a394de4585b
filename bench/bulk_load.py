"""Bulk load: lots/s of `lotwise import` (Admin.Import) at 10⁴–10⁵ lots.

    .venv/bin/python -m bench.bulk_load                       # 10,000 and 100,000 lots
    .venv/bin/python -m bench.bulk_load --lots 20000 --chunk-rows 4096
    .venv/bin/python -m bench.bulk_load --target 127.0.0.1:50051   # a running `lotwise up`

Without --target, a server process (bootstrap.local_gateway: 2 shards in that process, journal in
memory, no Ray, no fsync; logging at warning) serves lotwise.v1.Admin on 127.0.0.1, and
this process imports a generated CSV into it the way `lotwise import` does (read, parse,
chunk, stream). Each size is imported twice: the first run loads the lots, the second
is the idempotent re-run (every row answered from the cells' idempotency window,
nothing changes). Printed per run: lots/s (wall clock, reading the file included), the
server process's CPU per lot (psutil) and this process's CPU per lot. With --target the
server's CPU is not measured (it may be many processes); the import itself is the same.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil

from bench.served import server_process
from engine.api.import_client import import_file
from engine.logs import configure_logging

SKUS = 200
SITES = 10  # 2,000 pairs: lots spread over both shards and many cells


@dataclass(frozen=True, slots=True)
class Run:
    lots: int
    rerun: bool
    seconds: float
    server_cpu_s: float | None
    client_cpu_s: float
    refused: int

    def row(self) -> str:
        server = "—" if self.server_cpu_s is None else f"{self.server_cpu_s / self.lots * 1e6:,.0f}"
        return (
            f"| {self.lots:>7,} | {'re-run' if self.rerun else 'load':<6} | {self.lots / self.seconds:>8,.0f} | "
            f"{server:>6} | {self.client_cpu_s / self.lots * 1e6:>6,.0f} | {self.refused} |"
        )


def write_file(path: Path, lots: int) -> None:
    """The catalog, then `lots` lots spread over every pair (dates, bins, statuses set)."""
    with path.open("w", encoding="utf-8") as f:
        f.write("record,sku,site,name,org_path,lot_id,qty,expires_at,bin,status\n")
        f.writelines(f"sku,SKU-{i},,Item {i},,,,,,\n" for i in range(SKUS))
        f.writelines(f"site,,SITE-{j},Site {j},acme/east,,,,,\n" for j in range(SITES))
        f.writelines(
            f"lot,SKU-{k % SKUS},SITE-{(k // SKUS) % SITES},,,LOT-{k},{1 + k % 50},2027-{1 + k % 12:02d}-28,"
            f"A/{k % 20:02d},available\n"
            for k in range(lots)
        )


# ---- the server process ----


# ---- the import ----


def _cpu_s(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    t = proc.cpu_times()
    return t.user + t.system


def _own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def measure(target: str, pid: int | None, path: Path, lots: int, rerun: bool, chunk_rows: int) -> Run:
    proc = psutil.Process(pid) if pid is not None else None
    async with grpc.aio.insecure_channel(target) as channel:
        server0, own0, t0 = _cpu_s(proc), _own_cpu_s(), time.perf_counter()
        tally = await import_file(channel, path, chunk_rows=chunk_rows)
        seconds = time.perf_counter() - t0
        server_s, own_s = _cpu_s(proc) - server0, _own_cpu_s() - own0
    if tally.lots != lots:
        raise RuntimeError(f"imported {tally.lots} lots of {lots}; refused: {tally.refused[:5]}")
    return Run(lots, rerun, seconds, server_s if proc is not None else None, own_s, len(tally.refused))


async def run(sizes: list[int], chunk_rows: int, target: str | None) -> None:
    with contextlib.ExitStack() as stack:
        pid = None
        if target is None:
            pid, port = stack.enter_context(server_process())
            target = f"127.0.0.1:{port}"
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for n, lots in enumerate(sizes):
            path = tmp / f"lots-{lots}.csv"
            write_file(path, lots)
            # Distinct lot ids per size: a size's load is never a re-run of another's.
            path.write_text(path.read_text(encoding="utf-8").replace("LOT-", f"LOT{n}-"), encoding="utf-8")
            for rerun in (False, True):
                print((await measure(target, pid, path, lots, rerun, chunk_rows)).row(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lots", default="10000,100000", help="lots per file, comma-separated")
    parser.add_argument("--chunk-rows", type=int, default=2048, help="rows per Import chunk (1..4096)")
    parser.add_argument("--target", help="host:port of a running engine (default: a bench server process)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    configure_logging("warning")
    print("| lots | run | lots/s | server CPU µs/lot | client CPU µs/lot | refused |")
    print("|---:|---|---:|---:|---:|---:|")
    asyncio.run(run([int(n) for n in args.lots.split(",")], args.chunk_rows, args.target))


if __name__ == "__main__":
    main()
