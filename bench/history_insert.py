"""What one history insert costs in CPU, whatever journal it comes from (no NATS, no Ray).

    .venv/bin/python -m bench.history_insert --movements 1300 --inserts 15
    .venv/bin/python -m bench.history_insert --rate 2600 --windows 2,4 --passes 2 --inserts 10

Opens a fresh embedded chDB history (the real store, its schema migrated to the newest
version), inserts three warm-up batches, then `--inserts` batches of `--movements`
movements each (bench.history's mixed pairs: receipts, holds, commits, scan-takes, moves),
and prints the process's CPU (every thread: chDB's included) per insert. Run it in two
trees one after the other to compare schemas: the cost of an insert is mostly fixed (a part
and an fsync in `movements` and in each materialized view), so its movements barely move it.

`--rate R --windows W1,W2,…`: the sink's window length priced at a journal rate — each
window's inserts carry R × W movements, the windows interleaved over `--passes`, each on a
fresh database; prints CPU ms per insert, per second of journal at that rate (what the
engine spends on history inserts while busy) and per movement.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
from collections.abc import Sequence

from adapters.clickhouse.store import HistoryStoreConfig, chdb_dsn, open_store
from bench.history import EntryGen
from engine.domain.history import HistoryBatch, HistoryRecord

WARM_UP_INSERTS = 3


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Batches:
    """Journal-shaped history batches: positions and batch sequences grow as a sink's do."""

    def __init__(self, movements: int) -> None:
        self._gen = EntryGen("s0", pairs=2_000)
        self._movements = movements
        self._position = 0

    def next(self) -> HistoryBatch:
        records: list[HistoryRecord] = []
        while len(records) < self._movements:
            entry = self._gen.entry(time.time_ns() // 1_000_000)
            self._position += 1
            records.extend(HistoryRecord(entry.shard, entry.batch_seq, self._position, m) for m in entry.movements)
        return HistoryBatch(tuple(records), token=f"bench:{self._position}")


async def run(movements: int, inserts: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per insert."""
    with tempfile.TemporaryDirectory(prefix="lotwise-insert-bench-") as tmp:
        store = await open_store(HistoryStoreConfig(dsn=chdb_dsn(tmp), database="bench_insert"))
        try:
            batches = Batches(movements)
            for _ in range(WARM_UP_INSERTS):
                await store.insert(batches.next())
            prepared = [batches.next() for _ in range(inserts)]
            cpu0, wall0 = _cpu_s(), time.perf_counter()
            for batch in prepared:
                await store.insert(batch)
            return 1000 * (_cpu_s() - cpu0) / inserts, 1000 * (time.perf_counter() - wall0) / inserts
        finally:
            await store.close()


async def compare_windows(rate: int, windows: Sequence[float], passes: int, inserts: int) -> None:
    """Each window's inserts at `rate` movements/s, interleaved: W1, W2, …, W1, W2, …"""
    for one in range(1, passes + 1):
        for window_s in windows:
            movements = max(1, round(rate * window_s))
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            cpu_ms, wall_ms = await run(movements, inserts)
            print(
                f"pass {one}, {window_s:g} s window at {rate:,} movements/s ({movements:,} per insert): "
                f"{cpu_ms:.1f} ms CPU per insert, {cpu_ms / window_s:.1f} ms CPU per second of journal, "
                f"{1000 * cpu_ms / movements:.1f} µs per movement; wall {wall_ms:.1f} ms; load {load}",
                flush=True,
            )


def _windows(text: str) -> tuple[float, ...]:
    windows = tuple(float(part) for part in text.split(","))
    if not windows or any(not 0 < w <= 60 for w in windows):
        raise argparse.ArgumentTypeError("windows are seconds in (0, 60], comma-separated")
    return windows


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history_insert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--movements", type=int, default=1_300, help="movements per insert")
    parser.add_argument("--inserts", type=int, default=15, help="inserts measured")
    parser.add_argument("--rate", type=int, default=0, help="journal movements/s: with --windows, price each window")
    parser.add_argument("--windows", type=_windows, default=(2.0, 4.0), help="window lengths in s, comma-separated")
    parser.add_argument("--passes", type=int, default=2, help="with --rate: rounds over the windows")
    args = parser.parse_args(argv)
    if args.rate:
        if not 0 < args.rate <= 20_000 or not 0 < args.passes <= 10 or not 0 < args.inserts <= 1_000:
            parser.error("--rate must be in (0, 20000], --passes in (0, 10], --inserts in (0, 1000]")
        await compare_windows(args.rate, args.windows, args.passes, args.inserts)
        return
    if not 0 < args.movements <= 100_000 or not 0 < args.inserts <= 1_000:
        parser.error("--movements must be in (0, 100000] and --inserts in (0, 1000]")
    cpu_ms, wall_ms = await run(args.movements, args.inserts)
    print(f"history insert of {args.movements:,} movements: {cpu_ms:.1f} ms CPU, {wall_ms:.1f} ms wall per insert")


if __name__ == "__main__":
    asyncio.run(main())
