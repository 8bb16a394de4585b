"""Does a history read hold up the writer? An insert while one reader runs a long query (01:14 UTC, load ~27).

    PYTHONPATH=. .venv/bin/python bench/results/2026-12-08/history/lockcheck.py

Run: "read started 0.0, insert 0.34 → 2.23 s, read ended 9.33 s" (alone, with a 1-row read: 0.30 → 0.70 s).
"""

import asyncio
import tempfile
import time

from adapters.clickhouse.store import HistoryStoreConfig, chdb_dsn, open_store
from bench.history_insert import Batches


async def main():
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store(HistoryStoreConfig(dsn=chdb_dsn(tmp), database="lk"))
        b = Batches(500)
        await store.insert(b.next())
        t0 = time.perf_counter()
        read = asyncio.create_task(store.query("SELECT sum(cityHash64(number)) FROM numbers(2000000000)"))
        await asyncio.sleep(0.3)
        t1 = time.perf_counter()
        await store.insert(b.next())
        t2 = time.perf_counter()
        await read
        t3 = time.perf_counter()
        print(f"read started 0.0, insert {t1 - t0:.2f} → {t2 - t0:.2f} s, read ended {t3 - t0:.2f} s")
        await store.close()


asyncio.run(main())
