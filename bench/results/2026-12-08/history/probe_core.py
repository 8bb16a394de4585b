"""bench.core with the history writer's inserts logged: rows, the writer thread's CPU, wall.

    scripts/in-netns .venv/bin/python bench/results/2026-12-08/history/probe_core.py OUT.tsv <bench.core args>

Each insert appends one line to OUT.tsv: unix time, movements, writer-thread CPU ms
(time.thread_time: the calling thread, where chDB runs an insert and its views), wall ms.
"""

from __future__ import annotations

import sys
import time

from adapters.clickhouse.store import ClickHouseHistoryStore
from bench import core
from engine.domain.history import HistoryBatch

_insert_now = ClickHouseHistoryStore._insert_now
_out = sys.stdout


def _logged(self: ClickHouseHistoryStore, batch: HistoryBatch) -> int:
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    written = _insert_now(self, batch)
    cpu_ms, wall_ms = 1000 * (time.thread_time() - cpu0), 1000 * (time.perf_counter() - wall0)
    _out.write(f"{time.time():.3f}\t{len(batch.records)}\t{cpu_ms:.1f}\t{wall_ms:.1f}\n")
    return written


if __name__ == "__main__":  # only here: the load generator's spawned process imports this file too
    _out = open(sys.argv[1], "a", buffering=1)  # noqa: SIM115 (one file for the run)
    ClickHouseHistoryStore._insert_now = _logged  # type: ignore[method-assign]
    sys.argv = [sys.argv[0], *sys.argv[2:]]
    core.main()
