"""What storing a voucher's lines costs: built and inserted from Python (the store before the
materialized view) against derived by `voucher_lines_mv` from the voucher's document, in one
process on one embedded chDB, alternating, with the plain voucher insert as the floor.

    .venv/bin/python -m bench.finance_lines                  # 10,000 vouchers, 5 rounds

Vouchers come from the finance bench's journal (bench.finance.Writer: one in five a receipt,
the rest sales) booked by the real ledgers; each variant inserts them in batches of 1,000
into a database of its own. Printed: median µs of process CPU (chDB's threads included) and
of wall time per voucher, and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters.clickhouse.finance import (
    SCHEMA,
    VOUCHER_COLUMNS,
    FinanceStoreConfig,
    _insert,
    _voucher_row,
    open_finance_store,
)
from adapters.clickhouse.store import chdb_dsn
from adapters.memory.finance import InMemoryFinanceStore
from bench.finance import SETUP, Writer
from engine.domain.ports import FollowedEntry, JournalEntry
from engine.finance.follower import FinanceFeed
from engine.finance.mapping import default_rules
from engine.finance.vouchers import Voucher

LINE_COLUMNS = ["voucher_id", "line_no", "company", "at_ms", "account", "role", "debit", "credit", "currency", "sku",
                "lot_id"]  # fmt: skip
BATCH = 1_000


async def vouchers_of(count: int) -> list[Voucher]:
    """`count` vouchers, booked by the ledgers from the bench's journal after its seeding."""
    feed = FinanceFeed(InMemoryFinanceStore(), SETUP, default_rules())
    writer, position = Writer(50), 0
    made: list[Voucher] = []

    async def keep(vouchers: tuple[Voucher, ...]) -> None:
        made.extend(vouchers)

    def followed(entries: list[JournalEntry]) -> tuple[FollowedEntry, ...]:
        nonlocal position
        out = []
        for entry in entries:
            position += 1
            out.append(FollowedEntry(position, entry))
        return tuple(out)

    await feed.apply(followed(writer.seed()))
    feed.on_vouchers = keep
    while len(made) < count:  # bounded: each batch makes ~1,000
        await feed.apply(followed([writer.next() for _ in range(20)]))
    return made[:count]


def _variants(client: Any, vouchers: list[Voucher]) -> dict[str, Callable[[], None]]:
    def python_lines(db: str) -> None:
        for i in range(0, len(vouchers), BATCH):
            part = vouchers[i : i + BATCH]
            _insert(client, f"{db}.vouchers", [_voucher_row(v) for v in part], VOUCHER_COLUMNS)
            lines = [
                [v.voucher_id, ln.line_no, v.company, v.at_ms, ln.account, ln.role, ln.debit, ln.credit, v.currency,
                 ln.sku, ln.lot_id]
                for v in part
                for ln in v.lines
            ]  # fmt: skip
            _insert(client, f"{db}.voucher_lines", lines, LINE_COLUMNS)

    def vouchers_only(db: str) -> None:
        for i in range(0, len(vouchers), BATCH):
            _insert(client, f"{db}.vouchers", [_voucher_row(v) for v in vouchers[i : i + BATCH]], VOUCHER_COLUMNS)

    return {
        "python lines (before)": lambda: python_lines("lines_py"),
        "view (now)": lambda: vouchers_only("lines_mv"),
        "vouchers alone (floor)": lambda: vouchers_only("lines_none"),
    }


def _schema(client: Any) -> None:
    for db, with_view in (("lines_py", False), ("lines_mv", True), ("lines_none", False)):
        client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
        for statement in SCHEMA:
            if with_view or "MATERIALIZED VIEW" not in statement:
                client.command(statement.replace("{db}", db))


async def main(count: int, rounds: int) -> int:
    vouchers = await vouchers_of(count)
    with tempfile.TemporaryDirectory(prefix="lotwise-finance-lines-") as tmp:
        store = await open_finance_store(FinanceStoreConfig(chdb_dsn(Path(tmp) / "chdb"), "lines_setup"))
        try:
            client = store._client
            _schema(client)
            runs: dict[str, list[tuple[float, float]]] = {}
            for _ in range(rounds):
                for name, run in _variants(client, vouchers).items():
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    run()
                    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                    runs.setdefault(name, []).append((1e6 * cpu / len(vouchers), 1e6 * wall / len(vouchers)))
        finally:
            await store.close()
    lines = sum(len(v.lines) for v in vouchers) / len(vouchers)
    print(f"{len(vouchers)} vouchers ({lines:.1f} lines each), {rounds} rounds, load {os.getloadavg()[0]:.1f}")
    for name, got in runs.items():
        cpu = statistics.median(c for c, _ in got)
        wall = statistics.median(w for _, w in got)
        print(f"  {name:24} {cpu:6.1f} µs CPU, {wall:6.1f} µs wall per voucher")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.finance_lines", description=__doc__.split("\n\n")[0])
    parser.add_argument("--vouchers", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not 1_000 <= args.vouchers <= 200_000 or not 1 <= args.rounds <= 20:
        parser.error("--vouchers in [1000, 200000], --rounds in [1, 20]")
    raise SystemExit(asyncio.run(main(args.vouchers, args.rounds)))
