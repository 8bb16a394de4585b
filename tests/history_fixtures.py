"""History stores for the tests that need one, and realistic history to put in them.

Plain module (like tests.nats_fixtures) so every tier can import the fixtures:
`from tests.history_fixtures import chdb_dsn  # noqa: F401`.

chDB runs one engine per process, on one data path: the whole test session shares one
path (a session fixture keeps a client open, so the engine starts once), and every test
gets a database of its own on it. A ClickHouse server is used too when
LOTWISE_TEST_CLICKHOUSE_URL is set (e.g. http://default:@127.0.0.1:8123); otherwise the
server variants are not generated at all (no skipped tests).
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from adapters.clickhouse.store import ClickHouseHistoryStore, HistoryStoreConfig, chdb_dsn, open_store
from adapters.memory.history import InMemoryHistoryStore
from engine.domain.catalog import Site, Sku
from engine.domain.commands import (
    Adjust,
    ChangeStatus,
    Commit,
    Consume,
    Move,
    Receive,
    Release,
    Reserve,
    ReserveLine,
    Strategy,
)
from engine.domain.history import HistoryBatch, HistoryRecord
from engine.domain.model import MS_PER_DAY
from engine.domain.ports import HistoryStore
from engine.domain.shard import PutSite, PutSku, ShardCore, Sweep

SERVER_URL_ENV = "LOTWISE_TEST_CLICKHOUSE_URL"
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00Z


def store_kinds() -> list[str]:
    """memory and chdb always; a server only when one is configured."""
    kinds = ["memory", "chdb"]
    if os.environ.get(SERVER_URL_ENV):
        kinds.append("server")
    return kinds


# chDB is one engine, on one path, per *process*; a session fixture imported into several
# modules is instantiated once per module, so the path is kept here, once per process.
_CHDB: dict[str, Any] = {}


def process_chdb_dsn(base_dir: Path) -> str:
    """The test process's one chDB path (created under `base_dir` the first time), its
    engine kept running by an anchor client (closed when the process exits: another
    module's tests — and the test engines of tests/conftest.py — may still be using it)."""
    import clickhouse_connect

    if "dsn" not in _CHDB:
        dsn = chdb_dsn(base_dir / "chdb")
        _CHDB["anchor"] = clickhouse_connect.get_client(dsn=dsn)
        _CHDB["dsn"] = dsn
    return str(_CHDB["dsn"])


@pytest.fixture(scope="session")
def chdb_dsn_for_session(tmp_path_factory: pytest.TempPathFactory) -> str:
    return process_chdb_dsn(tmp_path_factory.getbasetemp())


async def open_test_store(kind: str, chdb_dsn: str, **overrides: Any) -> HistoryStore:
    """A fresh store of `kind`, in a database of its own."""
    if kind == "memory":
        return InMemoryHistoryStore()
    dsn = chdb_dsn if kind == "chdb" else os.environ[SERVER_URL_ENV]
    database = f"t_{uuid.uuid4().hex[:12]}"
    return await open_store(HistoryStoreConfig(dsn=dsn, database=database, **overrides))


async def drop_test_store(store: HistoryStore) -> None:
    if isinstance(store, ClickHouseHistoryStore):
        await store.command(f"DROP DATABASE IF EXISTS {store.database}")
    await store.close()


@pytest_asyncio.fixture(loop_scope="session")
async def chdb_store(chdb_dsn_for_session: str) -> AsyncIterator[ClickHouseHistoryStore]:
    store = await open_test_store("chdb", chdb_dsn_for_session)
    assert isinstance(store, ClickHouseHistoryStore)
    yield store
    await drop_test_store(store)


# ---- realistic history: a real shard core driven by a seeded mix of commands ----

SKUS = (Sku("sku-a", opened_shelf_life_days=3), Sku("sku-b"))
SITES = ("site-1", "site-2")


class _Driver:
    """Runs ops on a ShardCore batch by batch and keeps what the journal would carry."""

    def __init__(self, shard: str) -> None:
        self.core = ShardCore(shard)
        self.batches: list[HistoryBatch] = []
        self.lots: dict[str, int] = {}  # lot id → expiry (transfers keep the dates)
        self.holds: list[tuple[str, str, str]] = []  # (hold id, sku, site) still open
        self._n = 0

    def rid(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n}"

    def run(self, ops: list[Any], now_ms: int) -> None:
        self.core.apply_batch(ops, now_ms)
        movements = self.core.drain()
        seq = len(self.batches) + 1
        records = tuple(HistoryRecord(self.core.name, seq, 10_000 + seq, m) for m in movements)
        skus = tuple(op.sku for op in ops if isinstance(op, PutSku))
        self.batches.append(HistoryBatch(records, skus, f"{self.core.name}:{seq}", now_ms))


def sample_history(seed: int = 7, days: int = 12, ops_per_day: int = 30, shard: str = "s-data") -> list[HistoryBatch]:
    """Receipts (some opened, some consignment), holds committed in part, released or
    left to expire, scan-takes beyond the books, bin moves, status changes, counts up
    and down, and transfers of a lot between the two sites (one document at both)."""
    rng = random.Random(seed)
    d = _Driver(shard)
    d.run([*(PutSku(s) for s in SKUS), *(PutSite(Site(s, "acme")) for s in SITES)], T0_MS)
    for day in range(days):
        now = T0_MS + day * MS_PER_DAY + rng.randint(1, 3_600_000)
        for _ in range(3):
            ops = [_random_op(d, rng, day, now) for _ in range(ops_per_day // 3)]
            d.run([op for op in ops if op is not None], now)
            now += rng.randint(60_000, 4 * 3_600_000)
        d.run([Sweep()], now + 2 * 3_600_000)  # holds past their TTL expire
    return d.batches


def _random_op(d: _Driver, rng: random.Random, day: int, now: int) -> Any:
    sku = rng.choice(SKUS).sku
    site = rng.choice(SITES)
    roll = rng.random()
    if roll < 0.22 or not d.lots:
        lot = f"L{day}-{rng.randint(0, 3)}"
        expiry = d.lots.setdefault(lot, now + rng.randint(1, 40) * MS_PER_DAY)
        return Receive(
            d.rid("rcv"),
            sku,
            site,
            lot,
            rng.randint(5, 60),
            bin=rng.choice(["", "A/01", "A/02/P1", "B/01"]),
            status=rng.choice(["available", "available", "receiving"]),
            owner=rng.choice(["own", "own", "consignment:acme"]),
            expires_at_ms=expiry,
            opened_at_ms=now - MS_PER_DAY if rng.random() < 0.2 else 0,
            doc_ref=f"PO-{day}",
        )
    if roll < 0.40:
        hold = d.rid("hold")
        d.holds.append((hold, sku, site))
        line = ReserveLine(rng.randint(1, 12), rng.choice([Strategy.FEFO, Strategy.FIFO]))
        return Reserve(d.rid("res"), sku, site, hold, (line,), rng.choice([3_600_000, 6 * 3_600_000]), f"SO-{hold}")
    if roll < 0.55 and d.holds:
        hold, hsku, hsite = d.holds.pop(rng.randrange(len(d.holds)))
        if rng.random() < 0.7:
            qty = None if rng.random() < 0.5 else rng.randint(1, 4)
            return Commit(d.rid("com"), hsku, hsite, hold, qty, f"SO-{hold}")
        return Release(d.rid("rel"), hsku, hsite, hold, f"SO-{hold}")
    if roll < 0.68:
        return Consume(d.rid("con"), sku, site, rng.randint(1, 15), doc_ref=f"TK-{day}")
    lot = rng.choice(sorted(d.lots))
    if roll < 0.76:
        # A transfer out: the lot leaves site-1 for site-2 under one document; the receipt
        # at site-2 comes as the next op (it is refused if nothing was taken; harmless).
        doc = d.rid("TR")
        qty = rng.randint(1, 10)
        take = Consume(d.rid("out"), sku, "site-1", qty, lot_id=lot, strategy=Strategy.LOT, doc_ref=doc)
        d.run([take], now)
        return Receive(d.rid("in"), sku, "site-2", lot, qty, status="available", expires_at_ms=d.lots[lot], doc_ref=doc)
    if roll < 0.84:
        return Move(d.rid("mov"), sku, site, lot, rng.randint(1, 5), "", "A/01", doc_ref=f"MV-{day}")
    if roll < 0.92:
        return ChangeStatus(
            d.rid("chs"), sku, site, lot, rng.randint(1, 5), "receiving", "available", doc_ref=f"QC-{day}"
        )
    return Adjust(d.rid("adj"), sku, site, lot, rng.randint(0, 30), bin="", status="available", doc_ref=f"CNT-{day}")


async def load(store: HistoryStore, batches: list[HistoryBatch], per_insert: int = 25) -> None:
    """Insert whole journal batches, several per insert (as the sink does)."""
    for i in range(0, len(batches), per_insert):
        group = batches[i : i + per_insert]
        records = tuple(r for b in group for r in b.records)
        skus = tuple(s for b in group for s in b.skus)
        await store.insert(HistoryBatch(records, skus, f"load:{i}", max(b.skus_at_ms for b in group)))


def all_records(batches: list[HistoryBatch]) -> list[HistoryRecord]:
    return [r for b in batches for r in b.records]
