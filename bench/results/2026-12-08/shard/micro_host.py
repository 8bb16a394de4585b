"""CPU per order (Reserve, then Commit: two batches, two journal appends) of a ShardHost in
this process, with the in-memory journal or a real JetStream journal, as a plain object
and as Ray's actor wrapping would make it (every method through the tracing wrapper).

    PYTHONPATH=. .venv/bin/python bench/results/2026-12-08/shard/micro_host.py [memory|nats] [orders] [batch] [plain]

`batch` orders go in one batch (their reserves, then their commits): 1 is one caller's
pace, 32 about what 64 callers make (bench.core's "ops per shard call"). `plain`: only the
plain ShardHost (no traced twin). Run it from a tree (PYTHONPATH=.) to measure that tree.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from typing import Any

from ray.util.tracing.tracing_helper import _inject_tracing_into_class

from adapters.memory.backend import in_memory_backend
from engine.domain.catalog import Site, Sku
from engine.domain.commands import Commit, Receive, Reserve, ReserveLine
from engine.domain.model import MS_PER_DAY
from engine.runtime.host import ShardHost

PROFILE = bool(os.environ.get("MICRO_PROFILE"))  # cProfile (CPU time) of the measured loop


class Traced(ShardHost):
    pass


_inject_tracing_into_class(Traced)


async def one(cls: type[ShardHost], backend: Any, orders: int, batch: int = 1) -> float:
    h = cls("s0", backend=backend, sweep_interval_ms=0)
    await h.start()
    await h.apply([PutSku(Sku("strip")), PutSite(Site("ward1"))])
    expires = int(time.time() * 1000) + 100 * MS_PER_DAY
    await h.apply([Receive("r1", "strip", "ward1", "L1", 10**9, status="available", expires_at_ms=expires)])
    profile = cProfile.Profile(time.process_time) if PROFILE else None
    t = time.process_time()
    if profile is not None:
        profile.enable()
    for first in range(0, orders, batch):
        ids = range(first, min(first + batch, orders))
        await h.apply([Reserve(f"o{i}", "strip", "ward1", f"H{i}", (ReserveLine(1),), 60_000) for i in ids])
        await h.apply([Commit(f"c{i}", "strip", "ward1", f"H{i}", 1) for i in ids])
    if profile is not None:
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    cpu = time.process_time() - t
    await h.stop()
    return 1e6 * cpu / orders


async def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "memory"
    orders = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    classes = (ShardHost,) if "plain" in sys.argv[4:] else (ShardHost, Traced, ShardHost, Traced)
    if kind == "nats":
        from pathlib import Path

        from adapters.nats.journal import engine_journal_config
        from adapters.nats.server import EmbeddedNats, EmbeddedNatsConfig
        from engine.bootstrap.config import nats_backend

        with tempfile.TemporaryDirectory() as d:
            async with EmbeddedNats(EmbeddedNatsConfig(Path(d))) as server:
                backend = nats_backend(engine_journal_config("micro", server.url))
                for cls in classes:
                    us = await one(cls, backend, orders, batch)
                    print(f"{cls.__name__:10} nats   batch {batch:3} {us:7.0f} us CPU/order")
    else:
        for cls in classes:
            us = await one(cls, in_memory_backend, orders, batch)
            print(f"{cls.__name__:10} memory batch {batch:3} {us:7.0f} us CPU/order")


from engine.domain.shard import PutSite, PutSku  # noqa: E402

asyncio.run(main())
