"""The history queries behind the console's pages over 100,000 pairs (issue 17), before
and after, interleaved in one run on one chDB table.

    .venv/bin/python -m bench.history_pages                      # 1.5M movements, 20 rounds
    .venv/bin/python -m bench.history_pages --movements 500000 --rounds 5   # a quick look

History is generated in bulk inside ClickHouse as `bench.history` does (5,000 skus × 20
sites = 100,000 pairs, one lot per sku shared by its 20 sites, time over a year; the
materialized views fill as they would live). Each page's calls are made through
`ClickHouseHistoryStore` itself, exactly as the console makes them (`engine/console/forms.py`):

- `/history`: the first page of every movement (50) and the balance as of now by site × status;
- `/history/trace?lot=…`: a lot's trace, lot id only (limit 500);
- `/charts`: consumption over every sku and site (30 days) and expiry exposure (30 days, 50 rows);
- `/charts?site=…&days=90&horizon_days=180`.

"before" runs the same store with the SQL builders of a git revision (`--before`, default
`main`) loaded in place of today's; "after" runs today's. Rounds alternate before/after, so
both see the same machine. Reported: wall ms p50/p95 and CPU ms (this process: chDB runs
in it) p50 per page, with the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import adapters.clickhouse.store as store_module
from adapters.clickhouse.store import ClickHouseHistoryStore, HistoryStoreConfig, chdb_dsn, open_store
from bench import history as bulk
from bench.history import pct, settle
from engine.domain.history import (
    BalanceQuery,
    DaysLeftTotal,
    ExpiryQuery,
    Exposure,
    HistoryDimension,
    MovementQuery,
    SeriesQuery,
    TraceQuery,
    validate_expiry,
)
from engine.domain.model import MS_PER_DAY

PAGE_ROWS = 500  # engine/console/forms.py
Page = Callable[[ClickHouseHistoryStore, random.Random], Awaitable[Any]]


def _now_ms() -> int:
    """ "Now" for the pages: just after the generated year (the console's clock)."""
    return bulk.T0_MS + bulk.YEAR_MS + 60_000


def _series(days: int, site: str = "") -> SeriesQuery:
    now = _now_ms()
    today = now - now % MS_PER_DAY
    return SeriesQuery(from_ms=today - (days - 1) * MS_PER_DAY, to_ms=now, site=site)


async def history_page(store: ClickHouseHistoryStore, rng: random.Random) -> Any:
    return await asyncio.gather(
        store.movements(MovementQuery(page_size=50)),
        store.balance_as_of(
            BalanceQuery(as_of_ms=_now_ms(), group_by=(HistoryDimension.SITE, HistoryDimension.STATUS), limit=PAGE_ROWS)
        ),
    )


async def movements_page(store: ClickHouseHistoryStore, rng: random.Random) -> Any:
    return await store.movements(MovementQuery(page_size=50))


async def trace_page(store: ClickHouseHistoryStore, rng: random.Random) -> Any:
    return await store.lot_trace(TraceQuery(lot_id=f"L{rng.randrange(bulk.PAIRS_SKUS)}-0", limit=500))


async def charts_page(store: ClickHouseHistoryStore, rng: random.Random) -> Any:
    return await asyncio.gather(store.consumption(_series(30)), store.near_expiry(ExpiryQuery(_now_ms(), 30, limit=50)))


async def charts_site_page(store: ClickHouseHistoryStore, rng: random.Random) -> Any:
    site = f"site-{rng.randrange(bulk.PAIRS_SITES)}"
    return await asyncio.gather(
        store.consumption(_series(90, site)), store.near_expiry(ExpiryQuery(_now_ms(), 180, sites=(site,), limit=50))
    )


PAGES: dict[str, Page] = {
    "/history": history_page,
    "  of which the movements page": movements_page,
    "/history/trace?lot=…": trace_page,
    "/charts": charts_page,
    "/charts?site=…&days=90&horizon_days=180": charts_site_page,
}


def queries_at(revision: str) -> types.ModuleType:
    """adapters/clickhouse/queries.py as it is at `revision`, as a module of its own."""
    text = subprocess.run(
        ["git", "show", f"{revision}:adapters/clickhouse/queries.py"], check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="lotwise-queries-")) / "queries_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("queries_before", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


async def _two_query_exposure(self: ClickHouseHistoryStore, q: ExpiryQuery) -> Exposure:
    """The exposure read of revisions before the one-pass query (rows and totals, each over
    the whole base), for a "before" module that still has `exposure_totals_sql`."""
    validate_expiry(q)
    sql: Any = store_module.queries  # the "before" module, untyped
    rows, totals = await asyncio.gather(
        self._read(sql.exposure_sql(self._db, q)), self._read(sql.exposure_totals_sql(self._db, q))
    )
    return Exposure(
        tuple(sql.exposure_rows(rows)), tuple(DaysLeftTotal(int(d), int(qty), int(n)) for d, qty, n in totals)
    )


@contextmanager
def sql_of(module: types.ModuleType) -> Iterator[None]:
    """The store builds its SQL with `module` meanwhile (the store code itself is today's, but
    for the exposure read of a module from before the one-pass exposure query)."""
    today, near_expiry = store_module.queries, ClickHouseHistoryStore.near_expiry
    store_module.queries = module
    if hasattr(module, "exposure_totals_sql"):
        ClickHouseHistoryStore.near_expiry = _two_query_exposure  # type: ignore[method-assign]
    try:
        yield
    finally:
        store_module.queries = today
        ClickHouseHistoryStore.near_expiry = near_expiry  # type: ignore[method-assign]


async def timed(page: Page, store: ClickHouseHistoryStore, rng: random.Random) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    await page(store, rng)
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


async def run(movements: int, rounds: int, before: str) -> dict[str, Any]:
    old = queries_at(before)
    today = store_module.queries
    with tempfile.TemporaryDirectory(prefix="lotwise-bench-pages-") as tmp:
        store = await open_store(
            HistoryStoreConfig(dsn=chdb_dsn(Path(tmp) / "chdb"), database="bench_pages", query_timeout_s=120)
        )
        try:
            load_s = await bulk.bulk_load(store, movements)
            settle_s = await settle(store)
            results: dict[str, dict[str, list[tuple[float, float]]]] = {p: {"before": [], "after": []} for p in PAGES}
            rng = random.Random(17)
            for name, page in PAGES.items():
                for module in (old, today):  # warm-up, not counted
                    with sql_of(module):
                        await page(store, rng)
                for _ in range(rounds):
                    for label, module in (("before", old), ("after", today)):
                        with sql_of(module):
                            results[name][label].append(await timed(page, store, rng))
            return {
                "movements": movements,
                "bulk_load_s": round(load_s, 1),
                "settle_s": round(settle_s, 1),
                "rounds": rounds,
                "before": before,
                "pages": {name: _summary(runs) for name, runs in results.items()},
            }
        finally:
            await store.close()


def _summary(runs: dict[str, list[tuple[float, float]]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, samples in runs.items():
        wall = [w for w, _ in samples]
        cpu = [c for _, c in samples]
        out[f"{label}_wall_p50"] = round(statistics.median(wall), 1)
        out[f"{label}_wall_p95"] = round(pct(wall, 95), 1)
        out[f"{label}_cpu_p50"] = round(statistics.median(cpu), 1)
    return out


def markdown(result: dict[str, Any], load: tuple[float, float, float]) -> str:
    lines = [
        f"{result['movements']:,} movements over 100,000 pairs, {result['rounds']} rounds, "
        f"before = `{result['before']}`; load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}",
        "",
        "| page (its history calls) | before wall p50 / p95 ms | before CPU p50 ms "
        "| after wall p50 / p95 ms | after CPU p50 ms | ratio wall p50 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in result["pages"].items():
        ratio = s["before_wall_p50"] / max(s["after_wall_p50"], 0.1)
        lines.append(
            f"| {name.strip()} | {s['before_wall_p50']:,} / {s['before_wall_p95']:,} | {s['before_cpu_p50']:,} "
            f"| {s['after_wall_p50']:,} / {s['after_wall_p95']:,} | {s['after_cpu_p50']:,} | {ratio:.1f}× |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--movements", type=int, default=1_500_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--before", default="main", help="git revision whose SQL is 'before'")
    args = parser.parse_args(argv)
    before_load = os.getloadavg()
    result = asyncio.run(run(args.movements, args.rounds, args.before))
    result["load_average_before"] = before_load
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=1))
    print(markdown(result, os.getloadavg()))


if __name__ == "__main__":
    main()
