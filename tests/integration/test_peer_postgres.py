"""The PostgreSQL baseline (bench.peers.postgres) against a real PostgreSQL that the module
starts itself: FEFO, all-or-nothing orders, commit and release, receipts, the database's
own refusal of an oversell, and `bench.systems.check` after 64 concurrent clients fight
over one scarce pair — and failing once the books are tampered with."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from bench.peers.postgres import PostgresServer, PostgresServerError, PostgresSystem, find_postgres_bin
from bench.systems import Dataset, LotSeed, OrderLine, Pair, check


def _have_postgres() -> bool:
    try:
        find_postgres_bin()
    except PostgresServerError:
        return False
    return True


pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.skipif(not _have_postgres(), reason="no PostgreSQL binaries (initdb, postgres) on this machine"),
]

A1: Pair = ("sku-a", "site-1")
A2: Pair = ("sku-a", "site-2")
B1: Pair = ("sku-b", "site-1")

# Lot numbers deliberately not in expiry order: FEFO must sort by expires_day.
SMALL = Dataset(
    "small",
    (
        (A1, (LotSeed("L1", 300, 5), LotSeed("L2", 100, 5), LotSeed("L3", 200, 5))),
        (A2, (LotSeed("L1", 100, 4),)),
        (B1, (LotSeed("L9", 50, 10), LotSeed("L0", 60, 10))),
    ),
)
POOL_SIZE = 70  # the 64 concurrent clients below, and a few spare


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pg_server() -> AsyncIterator[PostgresServer]:
    # The default base dir (the system's temp dir): pytest's tmp_path is root-only (0700),
    # which the `postgres` user the server runs as (we are root) could not enter.
    async with PostgresServer() as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def system(pg_server: PostgresServer) -> AsyncIterator[PostgresSystem]:
    async with PostgresSystem(pg_server.dsn, POOL_SIZE) as s:
        yield s


@pytest_asyncio.fixture(loop_scope="session")
async def db(pg_server: PostgresServer) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own, to look behind the System's back (and to tamper)."""
    conn = await asyncpg.connect(pg_server.dsn)
    yield conn
    await conn.close()


async def hold_lines(db: asyncpg.Connection, hold_id: str) -> dict[tuple[str, str, str], int]:
    rows = await db.fetch("SELECT sku, site, lot_id, qty FROM hold_lines WHERE hold_id = $1", hold_id)
    return {(r["sku"], r["site"], r["lot_id"]): r["qty"] for r in rows}


async def lot_held(db: asyncpg.Connection, pair: Pair) -> dict[str, int]:
    rows = await db.fetch("SELECT lot_id, held FROM lots WHERE sku = $1 AND site = $2", *pair)
    return {r["lot_id"]: r["held"] for r in rows}


async def test_server_runs_durable_and_reports_its_processes(pg_server: PostgresServer, db: asyncpg.Connection) -> None:
    settings = {
        name: await db.fetchval("SELECT current_setting($1)", name)
        for name in ("fsync", "synchronous_commit", "full_page_writes", "max_connections", "shared_buffers")
    }
    assert settings == {
        "fsync": "on",
        "synchronous_commit": "on",
        "full_page_writes": "on",
        "max_connections": "300",
        "shared_buffers": "256MB",
    }
    pids = pg_server.pids()
    assert len(pids) > 1  # the postmaster and at least its background workers
    assert await db.fetchval("SELECT pg_backend_pid()") in pids


async def test_load_replaces_everything(system: PostgresSystem) -> None:
    await system.load(SMALL)
    assert await system.reserve("load-h1", [OrderLine(*A1, 3)])
    await system.load(SMALL)  # a fresh start: the hold is forgotten, nothing is held
    audit = await system.audit()
    assert {pair: (t.on_hand, t.held, t.shipped) for pair, t in audit.pairs.items()} == {
        A1: (15, 0, 0),
        A2: (4, 0, 0),
        B1: (20, 0, 0),
    }
    assert (audit.open_holds, audit.negative_rows) == (0, 0)
    assert check(SMALL, {}, {}, audit).ok


async def test_fefo_takes_the_earliest_expiry_first(system: PostgresSystem, db: asyncpg.Connection) -> None:
    await system.load(SMALL)
    assert await system.reserve("fefo-1", [OrderLine(*A1, 7)])
    assert await hold_lines(db, "fefo-1") == {(*A1, "L2"): 5, (*A1, "L3"): 2}
    assert await system.reserve("fefo-2", [OrderLine(*A1, 5)])
    assert await hold_lines(db, "fefo-2") == {(*A1, "L3"): 3, (*A1, "L1"): 2}
    assert await lot_held(db, A1) == {"L1": 2, "L2": 5, "L3": 5}


async def test_an_order_is_all_or_nothing(system: PostgresSystem, db: asyncpg.Connection) -> None:
    await system.load(SMALL)
    refused_before = system.stats.refused
    # The second line is short (A2 has 4): the first line's units must not stay held.
    assert not await system.reserve("aon-1", [OrderLine(*A1, 2), OrderLine(*A2, 5)])
    # Two lines on one pair are allocated cumulatively: 15 + 6 > 20.
    assert not await system.reserve("aon-2", [OrderLine(*B1, 15), OrderLine(*B1, 6)])
    audit = await system.audit()
    assert all(t.held == 0 for t in audit.pairs.values())
    assert await db.fetchval("SELECT count(*) FROM holds") == 0
    assert await db.fetchval("SELECT count(*) FROM hold_lines") == 0
    assert system.stats.refused == refused_before + 2
    # 15 + 5 = 20 fits exactly, and both lines' units of one lot become one hold line.
    assert await system.reserve("aon-3", [OrderLine(*B1, 15), OrderLine(*B1, 5)])
    assert await hold_lines(db, "aon-3") == {(*B1, "L9"): 10, (*B1, "L0"): 10}
    assert not await system.reserve("aon-4", [OrderLine(*B1, 1)])


async def test_commit_and_release_move_the_right_units(system: PostgresSystem) -> None:
    await system.load(SMALL)
    assert await system.reserve("cr-1", [OrderLine(*A1, 7)])
    assert await system.reserve("cr-2", [OrderLine(*B1, 3), OrderLine(*A2, 2)])
    await system.commit("cr-1")
    await system.release("cr-2")
    audit = await system.audit()
    assert {pair: (t.on_hand, t.held, t.shipped) for pair, t in audit.pairs.items()} == {
        A1: (8, 0, 7),
        A2: (4, 0, 0),
        B1: (20, 0, 0),
    }
    assert audit.open_holds == 0
    assert check(SMALL, {}, {A1: 7}, audit).ok
    # A second call, or the other one, does nothing — also two at once.
    await system.commit("cr-1")
    await system.release("cr-1")
    await system.commit("cr-2")
    assert await system.reserve("cr-3", [OrderLine(*A1, 4)])
    await asyncio.gather(system.commit("cr-3"), system.commit("cr-3"), system.release("cr-3"))
    audit = await system.audit()
    assert check(SMALL, {}, {A1: 11}, audit).ok, check(SMALL, {}, {A1: 11}, audit).problems
    # Unknown holds are no-ops as well (nothing to issue).
    await system.commit("never-reserved")
    await system.release("never-reserved")


async def test_a_sale_ships_fefo_in_one_transaction_all_or_nothing(
    system: PostgresSystem, db: asyncpg.Connection
) -> None:
    await system.load(SMALL)
    assert await system.reserve("s-held", [OrderLine(*A1, 4)])  # L2 (earliest) now has 1 free
    assert await system.sell("s-1", [OrderLine(*A1, 3), OrderLine(*B1, 12)])
    assert await hold_lines(db, "s-1") == {(*A1, "L2"): 1, (*A1, "L3"): 2, (*B1, "L9"): 10, (*B1, "L0"): 2}
    assert await db.fetchval("SELECT state FROM holds WHERE hold_id = 's-1'") == "committed"
    # Short on the second line: nothing sold, nothing held.
    assert not await system.sell("s-2", [OrderLine(*A1, 1), OrderLine(*A2, 5)])
    assert await db.fetchval("SELECT count(*) FROM holds WHERE hold_id = 's-2'") == 0
    await system.release("s-held")
    audit = await system.audit()
    assert {pair: (t.on_hand, t.held, t.shipped) for pair, t in audit.pairs.items()} == {
        A1: (12, 0, 3),
        A2: (4, 0, 0),
        B1: (8, 0, 12),
    }
    assert check(SMALL, {}, {A1: 3, B1: 12}, audit).ok


async def test_receive_adds_to_a_lot_or_creates_one(system: PostgresSystem, db: asyncpg.Connection) -> None:
    await system.load(SMALL)
    await system.receive(*A2, LotSeed("L1", 100, 6))
    await system.receive(*A2, LotSeed("L7", 10, 3))  # a new lot that expires first
    assert await system.reserve("rcv-1", [OrderLine(*A2, 5)])
    assert await hold_lines(db, "rcv-1") == {(*A2, "L7"): 3, (*A2, "L1"): 2}
    audit = await system.audit()
    assert audit.pairs[A2].on_hand == 13
    assert check(SMALL, {A2: 9}, {}, await system.audit()).problems == ["1 holds left open"]


async def test_the_database_itself_refuses_an_oversell(system: PostgresSystem, db: asyncpg.Connection) -> None:
    await system.load(SMALL)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE lots SET held = qty + 1 WHERE sku = $1 AND site = $2", *A1)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE lots SET qty = -1 WHERE sku = $1 AND site = $2", *B1)


HOT: Pair = ("sku-m", "site-1")  # the scarce pair
BEFORE: Pair = ("sku-a", "site-1")  # deep pairs on both sides of it in the lock order
AFTER: Pair = ("sku-z", "site-1")
CONTENDED = Dataset(
    "hot-pair",
    (
        (BEFORE, (LotSeed("D1", 40, 1_000),)),
        (HOT, (LotSeed("H3", 10, 10), LotSeed("H1", 30, 10), LotSeed("H2", 20, 10))),
        (AFTER, (LotSeed("D2", 40, 1_000),)),
    ),
)
CLIENTS = 64
ORDERS_PER_CLIENT = 20


async def test_many_clients_on_a_scarce_pair_never_oversell(system: PostgresSystem, db: asyncpg.Connection) -> None:
    await system.load(CONTENDED)
    deadlocks_before = system.stats.deadlock_retries
    committed: dict[Pair, int] = {}
    received: dict[Pair, int] = {}
    outcomes = {"held": 0, "refused": 0}

    async def client(index: int) -> None:
        rng = random.Random(index)
        for n in range(ORDERS_PER_CLIENT):
            # The hot line plus, often, a deep one, in either order: the lock order must not
            # depend on the order of the lines.
            lines = [OrderLine(*HOT, rng.randint(1, 3))]
            if rng.random() < 0.6:
                lines.insert(rng.randint(0, 1), OrderLine(*rng.choice((BEFORE, AFTER)), rng.randint(1, 3)))
            hold_id = f"hot-{index}-{n}"
            if not await system.reserve(hold_id, lines):
                outcomes["refused"] += 1
                continue
            outcomes["held"] += 1
            await asyncio.sleep(0)  # let other clients run while this hold is open
            if rng.random() < 0.5:
                await system.commit(hold_id)
                for line in lines:  # tallied from acknowledged commits only, as the load generator does
                    committed[(line.sku, line.site)] = committed.get((line.sku, line.site), 0) + line.qty
            else:
                await system.release(hold_id)

    async def receiver() -> None:
        for n in range(4):
            await asyncio.sleep(0.05)
            await system.receive(*HOT, LotSeed(f"R{n}", 5 + n, 5))
            received[HOT] = received.get(HOT, 0) + 5

    await asyncio.gather(*(client(i) for i in range(CLIENTS)), receiver())

    audit = await system.audit()
    result = check(CONTENDED, received, committed, audit)
    assert result.ok, result.problems
    assert committed[HOT] <= 30 + received[HOT]  # never more out of the scarce pair than ever came in
    assert outcomes["refused"] > 0  # it really was contended…
    assert outcomes["held"] > 0
    assert system.stats.deadlock_retries == deadlocks_before  # canonical lock order: no deadlock at all

    # Tamper with the books behind the system's back: check must notice.
    await db.execute("UPDATE lots SET qty = qty + 1 WHERE sku = $1 AND site = $2", *BEFORE)
    broken = check(CONTENDED, received, committed, await system.audit())
    assert not broken.ok
    assert any("not conserved" in p for p in broken.problems)
    await db.execute("UPDATE lots SET qty = qty - 1, shipped = shipped + 1 WHERE sku = $1 AND site = $2", *BEFORE)
    broken = check(CONTENDED, received, committed, await system.audit())
    assert [p for p in broken.problems if "shipped" in p], broken.problems
