"""One shard's write path against the real journal: what group commit buys (DESIGN.md §7, §9).

    scripts/in-netns .venv/bin/python -m bench.pipeline --concurrency 1,16,64 --duration-s 5

An embedded nats-server (fsync on every write), one shard host on the JetStream journal, and
N closed-loop writers in the same process, each sending one-op batches (a Reserve, then the
Commit of that hold) straight to `ShardHost.apply` — no Ray, no gRPC, no gateway: the
shard's own ceiling, which is where the wait for each fsync used to serialize everything.
Reports batches/s, latency p50/p99 and journal entries per second (entries < batches: the
batches that were gathered while an append was in flight).

It imports only `engine` and `adapters`, so the same file runs against another checkout
(e.g. the code before group commit) with that checkout's interpreter:
`cd OTHER && scripts/in-netns .venv/bin/python /path/to/bench/pipeline.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters.nats.journal import JournalConfig, connect_journal
from adapters.nats.server import EmbeddedNats, EmbeddedNatsConfig
from engine.domain.catalog import Site, Sku
from engine.domain.commands import Commit, Receive, Reserve, ReserveLine
from engine.domain.errors import DomainError
from engine.domain.shard import PutSite, PutSku
from engine.runtime.host import Backend, ShardHost, SnapshotPolicy

PAIRS = 64  # one (sku, site) per writer slot: writers do not contend on a cell


async def writer(host: ShardHost, w: int, stop: asyncio.Event, latencies: list[float]) -> None:
    sku, n = f"sku-{w % PAIRS}", 0
    while not stop.is_set():
        hold = f"H{w}-{n}"
        for op in (
            Reserve(f"r{w}-{n}", sku, "site", hold, (ReserveLine(1),), 60_000),
            Commit(f"c{w}-{n}", sku, "site", hold),
        ):
            t = time.perf_counter()
            answer = (await host.apply([op]))[0]
            latencies.append(time.perf_counter() - t)
            if isinstance(answer, DomainError):
                raise RuntimeError(f"refused: {answer}")
        n += 1


async def window(host: ShardHost, concurrency: int, duration_s: float) -> dict[str, Any]:
    stop, latencies = asyncio.Event(), list[float]()
    tasks = [asyncio.create_task(writer(host, w, stop, latencies)) for w in range(concurrency)]
    await asyncio.sleep(0.5)  # warm-up
    latencies.clear()
    seq_start, t = host.batch_seq, time.perf_counter()
    await asyncio.sleep(duration_s)
    elapsed, count = time.perf_counter() - t, len(latencies)
    entries = host.batch_seq - seq_start
    stop.set()
    await asyncio.gather(*tasks)
    ordered = sorted(latencies)
    return {
        "concurrency": concurrency,
        "batches_per_s": round(count / elapsed),
        "entries_per_s": round(entries / elapsed),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2) if ordered else 0,
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 2) if ordered else 0,
    }


async def run(concurrency: Sequence[int], duration_s: float, workdir: Path) -> list[dict[str, Any]]:
    nats = EmbeddedNats(EmbeddedNatsConfig(data_dir=workdir / "nats"))
    await nats.start()
    config = JournalConfig(url=nats.url, stream="PIPE", subject_prefix="pipe", snapshot_bucket="pipe-snap")

    async def connect() -> Backend:
        journal, snapshots, close = await connect_journal(config)
        return Backend(journal, snapshots, close)

    host = ShardHost("s", backend=connect, sweep_interval_ms=0, snapshot_policy=SnapshotPolicy(10**9, 10**9))
    try:
        await host.start()
        await host.apply([PutSite(Site("site")), *(PutSku(Sku(f"sku-{i}")) for i in range(PAIRS))])
        await host.apply(
            [Receive(f"rcv-{i}", f"sku-{i}", "site", "L1", 10**9, status="available") for i in range(PAIRS)]
        )
        rows = []
        for c in concurrency:
            row = await window(host, c, duration_s)
            print(json.dumps(row), flush=True)
            rows.append(row)
        return rows
    finally:
        await host.stop(snapshot_grace_s=0)
        await nats.stop()


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--concurrency", default="1,16,64", help="comma-separated writer counts")
    p.add_argument("--duration-s", type=float, default=5.0, help="measured window per concurrency")
    args = p.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    with tempfile.TemporaryDirectory(prefix="lotwise-pipeline-") as tmp:
        rows = asyncio.run(run(levels, args.duration_s, Path(tmp)))
    print("| writers | batches/s | journal entries/s | p50 (ms) | p99 (ms) |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['concurrency']} | {r['batches_per_s']:,} | {r['entries_per_s']:,} | {r['p50_ms']} | {r['p99_ms']} |"
        )


if __name__ == "__main__":
    main()
