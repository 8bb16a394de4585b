"""How long a snapshot stops the shard (DESIGN.md §9), by shard size, against the real journal.

    scripts/in-netns .venv/bin/python -m bench.snapshot --quants 100000,1000000

For each size it starts an embedded nats-server, builds one shard host on the JetStream
journal and snapshot store, and puts that many quants in its core (receipts of distinct
lots and bins over 1,000 cells, as bench.recovery does; applied to the core directly, since
only the state's size matters here). Then:

- stop-the-world: what the write path used to do on every snapshot — export the whole
  state (`ShardCore.export_state`) and encode it (`encode_state`), both on the shard's event
  loop: the shard answered nothing for the sum of the two;
- while serving: one writer journals one-receipt batches back to back (each on a cell of
  the filled state, so the copy-on-write export is exercised) for a baseline second, then
  while `snapshot_now()` captures, exports, encodes (in a thread) and uploads the state.
  The pause is the slowest batch during the snapshot; the baseline's slowest batch is the
  same measure without one. A 1 ms ticker on the same loop gives the longest stall (time
  in which the loop ran nothing else: one export or encode slice, or a GC pause), and
  `gc.callbacks` the longest collection and how many full (generation-2) ones ran;
- then `--repeat` more snapshots back to back, still serving, with the process's RSS after
  each: memory the collector's settings leak would show as growth.

The filled core is frozen as a recovery leaves it (`freeze_long_lived`, when the code
under test has it: the same file runs against older code for a before/after).

No Ray is involved. Writes bench/results/<date>/snapshot/{snapshot.json,snapshot.md}.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters.nats.journal import JournalConfig, connect_journal
from adapters.nats.server import EmbeddedNats, EmbeddedNatsConfig
from adapters.nats.snapshot_codec import encode_state
from bench.recovery import CELLS, OPS_PER_BATCH, load_average, machine, receipts
from engine.domain.catalog import Site, Sku
from engine.domain.commands import Receive
from engine.domain.errors import DomainError
from engine.domain.shard import PutSite, PutSku, ShardCore
from engine.runtime import host as host_module
from engine.runtime.host import Backend, ShardHost, SnapshotPolicy

MAX_QUANTS = 2_000_000
BASELINE_S = 1.0


def _sizes(text: str) -> list[int]:
    sizes = [int(x) for x in text.split(",") if x.strip()]
    if not sizes or any(not 1_000 <= s <= MAX_QUANTS for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be in 1000..{MAX_QUANTS}")
    return sizes


def filled_core(quants: int) -> ShardCore:
    """A core with `quants` quants, not journaled (the state's size is what counts here)."""
    core = ShardCore("s")
    core.apply_batch([PutSku(Sku(f"sku-{i}")) for i in range(100)], 0)
    core.apply_batch([PutSite(Site(f"site-{i}")) for i in range(10)], 0)
    for offset in range(0, quants, OPS_PER_BATCH):
        answers = core.apply_batch(receipts(min(OPS_PER_BATCH, quants - offset), offset), 0)
        if any(isinstance(a, DomainError) for a in answers):
            raise RuntimeError(f"a receipt was refused: {next(a for a in answers if isinstance(a, DomainError))}")
        core.drain()
    return core


def stop_the_world(core: ShardCore) -> tuple[float, float]:
    """(export s, encode s) of the whole state at once: the old snapshot's stall. Measured
    before the host connects: a loop stalled that long loses its NATS connection."""
    t = time.perf_counter()
    state = core.export_state()
    export_s = time.perf_counter() - t
    t = time.perf_counter()
    encode_state(state)
    return export_s, time.perf_counter() - t


class Probe:
    """One writer journaling one-receipt batches back to back; records each batch's latency."""

    def __init__(self, host: ShardHost) -> None:
        self.host = host
        self.latencies: list[tuple[float, float]] = []  # (start, seconds)
        self._n = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            cell = self._n % CELLS
            op = Receive(f"probe-{self._n}", f"sku-{cell % 100}", f"site-{cell // 100}", "P1", 1, status="available")
            self._n += 1
            t = time.perf_counter()
            answer = (await self.host.apply([op]))[0]
            self.latencies.append((t, time.perf_counter() - t))
            if isinstance(answer, DomainError):
                raise RuntimeError(f"probe refused: {answer}")

    def between(self, start: float, end: float) -> list[float]:
        return [s for t, s in self.latencies if start <= t + s and t <= end]


class LoopLag:
    """How late a 1 ms sleep wakes up on the shard's loop: the longest time the loop could
    run nothing at all (a stall), apart from the batches' own latency. Also the CPU time
    the loop's thread used meanwhile: on a shared machine the wall-clock stall includes
    waiting for a core, the CPU stall is the work that ran without a break (one slice,
    one collection)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, float]] = []  # (start, seconds late, CPU seconds used)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            t, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(0.001)
            self.samples.append((t, max(0.0, time.perf_counter() - t - 0.001), time.thread_time() - cpu))

    def between(self, start: float, end: float) -> list[float]:
        return [s for t, s, _ in self.samples if start <= t <= end]

    def cpu_between(self, start: float, end: float) -> list[float]:
        return [c for t, _, c in self.samples if start <= t <= end]


class GcWatch:
    """Every collection's start and duration, by generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.runs: list[tuple[float, float, int]] = []  # (start, seconds, generation)
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.runs.append((self._started, time.perf_counter() - self._started, info["generation"]))

    def between(self, start: float, end: float) -> list[tuple[float, int]]:
        return [(s, g) for t, s, g in self.runs if start <= t <= end]


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return round(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def measure(quants: int, workdir: Path, repeat: int) -> dict[str, Any]:
    nats = EmbeddedNats(EmbeddedNatsConfig(data_dir=workdir / f"nats-{quants}"))
    await nats.start()
    config = JournalConfig(
        url=nats.url, stream=f"SNAP_{quants}", subject_prefix=f"snap.{quants}", snapshot_bucket=f"snap-{quants}"
    )

    async def connect() -> Backend:
        journal, snapshots, close = await connect_journal(config)
        return Backend(journal, snapshots, close)

    host = ShardHost("s", backend=connect, sweep_interval_ms=0, snapshot_policy=SnapshotPolicy(10**9, 10**9))
    try:
        core = filled_core(quants)
        export_s, encode_s = stop_the_world(core)
        await host.start()
        host.core = core  # the journal is empty: a shortcut only a bench may take
        freeze = getattr(host_module, "freeze_long_lived", None)
        if freeze is not None:
            freeze()  # as a recovery leaves the state
        probe, lag, stop, watch = Probe(host), LoopLag(), asyncio.Event(), GcWatch()
        gc.callbacks.append(watch)
        tasks = [asyncio.create_task(probe.run(stop)), asyncio.create_task(lag.run(stop))]
        await asyncio.sleep(BASELINE_S)
        started, cpu = time.perf_counter(), time.process_time()
        await host.snapshot_now()
        ended, cpu = time.perf_counter(), time.process_time() - cpu
        rss = [rss_mb()]
        for _ in range(repeat):
            await host.snapshot_now()
            rss.append(rss_mb())
        stop.set()
        await asyncio.gather(*tasks)
        gc.callbacks.remove(watch)
        baseline = probe.between(0, started)
        during = probe.between(started, ended)
        collections = watch.between(started, ended)
        return {
            "quants": quants,
            "load_average": load_average(),
            "cells": len(host.core.cells),
            "stop_the_world_export_ms": _ms(export_s),
            "stop_the_world_encode_ms": _ms(encode_s),
            "stop_the_world_pause_ms": _ms(export_s + encode_s),
            "snapshot_s": round(ended - started, 2),
            "baseline_batches": len(baseline),
            "baseline_max_ms": _ms(max(baseline, default=0)),
            "baseline_p99_ms": _ms(_p(baseline, 0.99)),
            "during_batches": len(during),
            "during_p50_ms": _ms(_p(during, 0.5)),
            "during_p99_ms": _ms(_p(during, 0.99)),
            "pause_ms": _ms(max(during, default=0)),
            "loop_stall_max_ms": _ms(max(lag.between(started, ended), default=0)),
            "baseline_loop_stall_max_ms": _ms(max(lag.between(0, started), default=0)),
            "loop_stall_cpu_max_ms": _ms(max(lag.cpu_between(started, ended), default=0)),
            "baseline_loop_stall_cpu_max_ms": _ms(max(lag.cpu_between(0, started), default=0)),
            "snapshot_cpu_s": round(cpu, 2),
            "gc_max_ms": _ms(max((s for s, _ in collections), default=0)),
            "gc_full_collections": sum(1 for _, g in collections if g == 2),
            "baseline_gc_max_ms": _ms(max((s for s, _ in watch.between(0, started)), default=0)),
            "rss_mb_after_each_snapshot": rss,
            "probe_batches_total": len(probe.latencies),
        }
    finally:
        await host.stop(snapshot_grace_s=0)
        await nats.stop()


def markdown(rows: Sequence[dict[str, Any]], where: str) -> str:
    lines = [
        f"Snapshot pause on {where}",
        "",
        "| quants | stop-the-world: export + encode (ms) | snapshot while serving (s) "
        "| batches during it | batch p50 / p99 during (ms) | **pause**: slowest batch during (ms) "
        "| slowest batch, no snapshot (ms) | longest loop stall during / without (ms) "
        "| longest stall in CPU time during / without (ms) "
        "| longest GC during / without (ms) | full GCs during | RSS after each snapshot (MB) | load average |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['quants']:,} | {r['stop_the_world_export_ms']} + {r['stop_the_world_encode_ms']} "
            f"= {r['stop_the_world_pause_ms']} | {r['snapshot_s']} | {r['during_batches']:,} "
            f"| {r['during_p50_ms']} / {r['during_p99_ms']} | **{r['pause_ms']}** | {r['baseline_max_ms']} "
            f"| {r.get('loop_stall_max_ms', '-')} / {r.get('baseline_loop_stall_max_ms', '-')} "
            f"| {r.get('loop_stall_cpu_max_ms', '-')} / {r.get('baseline_loop_stall_cpu_max_ms', '-')} "
            f"| {r.get('gc_max_ms', '-')} / {r.get('baseline_gc_max_ms', '-')} | {r.get('gc_full_collections', '-')} "
            f"| {' → '.join(str(x) for x in r.get('rss_mb_after_each_snapshot', []))} | {r.get('load_average', '-')} |"
        )
    return "\n".join(lines) + "\n"


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.snapshot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quants", type=_sizes, default=[100_000, 1_000_000], help="comma-separated sizes")
    parser.add_argument("--repeat", type=int, default=3, help="snapshots after the first (RSS after each)")
    parser.add_argument("--out", type=Path, default=Path("bench/results") / dt.date.today().isoformat() / "snapshot")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lotwise-snapshot-") as tmp:
        for size in args.quants:
            row = await measure(size, Path(tmp), args.repeat)
            print(json.dumps(row), flush=True)
            rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "snapshot.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    (args.out / "snapshot.md").write_text(markdown(rows, machine()))
    print(markdown(rows, machine()))


if __name__ == "__main__":
    asyncio.run(main())
