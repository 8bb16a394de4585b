"""Shard recovery time against the real journal (DESIGN.md §9), by shard size.

    scripts/in-netns .venv/bin/python -m bench.recovery --quants 10000,100000,1000000

For each size it starts an embedded nats-server (fresh data dir), builds one shard host on
the JetStream journal, fills it with that many quants (receipts of distinct lots and bins,
spread over 1,000 cells, journaled in batches like the live write path does), and then
measures, each on a fresh host process-state:

- replay:   recovery from the journal alone (no snapshot): decode + re-apply every batch;
- snapshot: recovery from a snapshot taken at the end (load + decode the Avro state), nothing to replay;
- snapshot+tail: a snapshot, then 10% more batches journaled after it, which recovery replays.

No Ray is involved: this is the shard's own work, which is what a restarted actor does.
Writes bench/results/<date>/recovery/{recovery.json,recovery.md}. `--no-replay` skips the
replay (minutes at 10⁶ quants).

    scripts/in-netns .venv/bin/python -m bench.recovery --quants 1000000 --decode-only 3

`--decode-only N`: no journal; the snapshot of a filled core (bench.snapshot's) decoded and
imported in this process N times each way, interleaved — the window built into records
(`decode_state(blob)`, what recovery did before) and left encoded
(`decode_state(blob, deferred_window=True)`, what it does now) — CPU seconds each, the
collector held as the host holds it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nats

from adapters.nats.journal import JournalConfig, connect_journal
from adapters.nats.server import EmbeddedNats, EmbeddedNatsConfig
from engine.domain.catalog import Site, Sku
from engine.domain.clock import SystemClock
from engine.domain.commands import Receive
from engine.domain.ports import Backend
from engine.domain.shard import PutSite, PutSku
from engine.runtime.host import ShardHost, SnapshotPolicy

CELLS = 1_000  # (sku, site) pairs the quants spread over
OPS_PER_BATCH = 500  # receipts per journaled batch (about 150 KB of Avro)
MAX_QUANTS = 5_000_000


def _sizes(text: str) -> list[int]:
    sizes = [int(x) for x in text.split(",") if x.strip()]
    if not sizes or any(not 1_000 <= s <= MAX_QUANTS for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be in 1000..{MAX_QUANTS}")
    return sizes


def receipts(n: int, start: int) -> list[Receive]:
    """`n` receipts, each a new quant: lot and bin vary, so no two land on one quant."""
    out = []
    for i in range(start, start + n):
        cell = i % CELLS
        out.append(
            Receive(
                f"rcv-{i}",
                f"sku-{cell % 100}",
                f"site-{cell // 100}",
                f"L{i}",
                10,
                bin=f"A/{i % 97:02d}/P{i % 13}",
                status="available",
                expires_at_ms=1_900_000_000_000 + i,
            )
        )
    return out


async def fill(host: ShardHost, quants: int, start: int = 0) -> None:
    for offset in range(0, quants, OPS_PER_BATCH):
        ops = receipts(min(OPS_PER_BATCH, quants - offset), start + offset)
        await host.apply(ops)


def load_average() -> str:
    """The 1-minute load average (the machine is shared: read numbers beside it)."""
    return Path("/proc/loadavg").read_text().split()[0]


async def timed_recovery(name: str, connect: Any) -> tuple[float, int, float]:
    """(wall s, quants recovered, CPU s of this process: loading, decoding, building, replaying)."""
    host = ShardHost(name, backend=connect, clock=SystemClock(), sweep_interval_ms=0)
    started, cpu = time.perf_counter(), time.process_time()
    await host.start()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    quants = sum(len(c.ledger.quants) for c in host.core.cells.values())
    await host.stop(snapshot_grace_s=0)
    return seconds, quants, cpu


def decode_rounds(quants: int, rounds: int) -> dict[str, Any]:
    """CPU s of decode + import of one snapshot, eager and deferred window, interleaved."""
    import gc

    from adapters.nats.snapshot_codec import decode_state, encode_state
    from bench.snapshot import filled_core
    from engine.domain.shard import ShardCore
    from engine.runtime.host import collector_held

    blob = encode_state(filled_core(quants).export_state())
    gc.collect()
    cpu: dict[str, list[float]] = {"eager": [], "deferred": []}
    for _ in range(rounds):
        for way, times in cpu.items():
            with collector_held():
                started = time.process_time()
                core = ShardCore.from_state(decode_state(blob, deferred_window=way == "deferred"))
                times.append(time.process_time() - started)
            del core
            gc.collect()
    return {
        "quants": quants,
        "snapshot_mb": round(len(blob) / 2**20, 1),
        "load_average": load_average(),
        **{f"{way}_cpu_s": [round(x, 2) for x in xs] for way, xs in cpu.items()},
        **{f"{way}_cpu_s_min": round(min(xs), 2) for way, xs in cpu.items()},
    }


async def measure(quants: int, workdir: Path, replay: bool = True) -> dict[str, Any]:
    nats = EmbeddedNats(EmbeddedNatsConfig(data_dir=workdir / f"nats-{quants}"))
    await nats.start()
    config = JournalConfig(
        url=nats.url,
        stream=f"BENCH_{quants}",
        subject_prefix=f"bench.{quants}",
        snapshot_bucket=f"bench-snap-{quants}",
        max_bytes=4 * 1024**3,
    )

    async def connect() -> Backend:
        journal, snapshots, close = await connect_journal(config)
        return Backend(journal, snapshots, close)

    try:
        writer = ShardHost("s", backend=connect, sweep_interval_ms=0, snapshot_policy=SnapshotPolicy(10**9, 10**9))
        await writer.start()
        await writer.apply(
            [PutSku(Sku(f"sku-{i}")) for i in range(100)] + [PutSite(Site(f"site-{i}")) for i in range(10)]
        )
        t = time.perf_counter()
        await fill(writer, quants)
        fill_s = time.perf_counter() - t
        batches = writer.batch_seq
        replay_s, replayed_quants, replay_cpu_s = float("nan"), quants, float("nan")
        if replay:
            await writer.stop(snapshot_grace_s=0)
            replay_s, replayed_quants, replay_cpu_s = await timed_recovery("s", connect)
            writer = ShardHost("s", backend=connect, sweep_interval_ms=0)
            await writer.start()
        assert replayed_quants == quants, (replayed_quants, quants)

        t = time.perf_counter()  # without --no-replay, by the host the replay recovered
        await writer.snapshot_now()
        snapshot_save_s = time.perf_counter() - t
        await writer.stop(snapshot_grace_s=0)
        snapshot_s, _, snapshot_cpu_s = await timed_recovery("s", connect)
        snapshot_bytes = await snapshot_size(config, "s")

        writer = ShardHost("s", backend=connect, sweep_interval_ms=0, snapshot_policy=SnapshotPolicy(10**9, 10**9))
        await writer.start()
        await fill(writer, quants // 10, start=quants)
        tail_batches = writer.batch_seq - batches
        await writer.stop(snapshot_grace_s=0)
        tail_s, tail_quants, tail_cpu_s = await timed_recovery("s", connect)
        assert tail_quants == quants + quants // 10
        return {
            "quants": quants,
            "load_average": load_average(),
            "batches": batches,
            "fill_s": round(fill_s, 2),
            "fill_quants_per_s": round(quants / fill_s),
            "recover_replay_s": round(replay_s, 2),
            "replay_quants_per_s": round(quants / replay_s) if replay else 0,
            "snapshot_save_s": round(snapshot_save_s, 2),
            "recover_snapshot_s": round(snapshot_s, 2),
            "recover_snapshot_plus_tail_s": round(tail_s, 2),
            "tail_batches": tail_batches,
            "recover_replay_cpu_s": round(replay_cpu_s, 2),
            "recover_snapshot_cpu_s": round(snapshot_cpu_s, 2),
            "recover_snapshot_plus_tail_cpu_s": round(tail_cpu_s, 2),
            "snapshot_mb": round(snapshot_bytes / 2**20, 1),
        }
    finally:
        await nats.stop()


async def snapshot_size(config: JournalConfig, shard: str) -> int:
    """The stored snapshot's size in bytes (the object store's record of it)."""
    client = await nats.connect(config.url)
    try:
        store = await client.jetstream().object_store(config.snapshot_bucket)
        info = await store.get_info(shard)
        return info.size or 0
    finally:
        await client.close()


def markdown(rows: Sequence[dict[str, Any]], machine: str) -> str:
    lines = [
        f"Shard recovery on {machine}",
        "",
        "| quants | journal batches | recover by replay (s) | replay quants/s | snapshot save (s) | snapshot (MB) "
        "| recover from snapshot: wall / CPU (s) | snapshot + 10% tail: wall / CPU (s) | load average |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['quants']:,} | {r['batches']:,} | {r['recover_replay_s']} | {r['replay_quants_per_s']:,} "
            f"| {r['snapshot_save_s']} | {r.get('snapshot_mb', '-')} "
            f"| {r['recover_snapshot_s']} / {r.get('recover_snapshot_cpu_s', '-')} "
            f"| {r['recover_snapshot_plus_tail_s']} / {r.get('recover_snapshot_plus_tail_cpu_s', '-')} "
            f"| {r.get('load_average', '-')} |"
        )
    return "\n".join(lines) + "\n"


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, Python {platform.python_version()}"


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quants", type=_sizes, default=[10_000, 100_000, 1_000_000], help="comma-separated sizes")
    parser.add_argument("--out", type=Path, default=Path("bench/results") / dt.date.today().isoformat() / "recovery")
    parser.add_argument("--no-replay", action="store_true", help="skip the recovery by replay")
    parser.add_argument("--decode-only", type=int, default=0, metavar="N", help="N rounds in process, no journal")
    args = parser.parse_args(argv)
    if args.decode_only:
        for size in args.quants:
            print(json.dumps(decode_rounds(size, args.decode_only)), flush=True)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="lotwise-recovery-") as tmp:
        for size in args.quants:
            row = await measure(size, Path(tmp), replay=not args.no_replay)
            print(json.dumps(row))
            rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recovery.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    (args.out / "recovery.md").write_text(markdown(rows, machine()))
    print(markdown(rows, machine()))


if __name__ == "__main__":
    asyncio.run(main())
