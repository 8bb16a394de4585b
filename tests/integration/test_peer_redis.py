"""The Redis baseline (bench/peers/redis_peer.py) against a real redis-server, in memory and
with `appendfsync always`: FEFO really sorts by expiry, orders are all or nothing, commit
and release move the right units once, and `bench.systems.check` passes after 64 tasks
fight over a scarce pair — and fails once the stock is tampered with."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
import pytest_asyncio

from bench.peers.redis_peer import HoldStateError, RedisServer, RedisSystem
from bench.systems import Dataset, LotSeed, OrderLine, Pair, PairTotals, check

pytestmark = pytest.mark.asyncio(loop_scope="session")

A: Pair = ("SKU-A", "S1")
B: Pair = ("SKU-B", "S1")
_ids = itertools.count(1)


def hold_id() -> str:
    return f"h{next(_ids)}"


def line(pair: Pair, qty: int) -> OrderLine:
    return OrderLine(pair[0], pair[1], qty)


def data(*pairs: tuple[Pair, tuple[LotSeed, ...]]) -> Dataset:
    return Dataset("test", tuple(pairs))


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=[False, True], ids=["memory", "aof-always"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[RedisServer]:
    async with RedisServer(durable=request.param) as s:
        yield s


@pytest_asyncio.fixture(loop_scope="session")
async def system(server: RedisServer) -> AsyncIterator[RedisSystem]:
    s = RedisSystem(server.url, pool_size=64, name="redis-aof-always" if server.durable else "redis")
    yield s
    await s.close()


async def held_by_lot(system: RedisSystem, pair: Pair) -> dict[str, int]:
    row = await system.redis.hgetall(f"lot:{pair[0]}|{pair[1]}")  # type: ignore[misc]
    return {field[2:]: int(v) for field, v in row.items() if field.startswith("h:")}


def _exists(path: Path) -> bool:
    return path.exists()


async def test_server_runs_as_configured(server: RedisServer) -> None:
    client = RedisSystem(server.url, pool_size=1).redis
    config = await client.config_get("*")
    await client.aclose()
    assert config["bind"] == "127.0.0.1"
    assert config["protected-mode"] == "yes"
    assert config["save"] == ""
    assert config["appendonly"] == ("yes" if server.durable else "no")
    if server.durable:
        assert config["appendfsync"] == "always"
    assert server.pids()


async def test_server_stops_and_removes_its_dir() -> None:
    server = RedisServer(durable=True)
    await server.start()
    data_dir, (pid,) = server.dir, server.pids()
    assert data_dir is not None
    assert data_dir.is_dir()
    await server.stop()
    assert not _exists(data_dir)
    assert not psutil.pid_exists(pid)
    assert server.pids() == []


async def test_fefo_sorts_by_expiry_not_by_lot_number(system: RedisSystem) -> None:
    await system.load(data((A, (LotSeed("L1", 300, 5), LotSeed("L2", 100, 5), LotSeed("L3", 200, 5)))))
    assert await system.reserve(hold_id(), [line(A, 7)])
    assert await held_by_lot(system, A) == {"L1": 0, "L2": 5, "L3": 2}


async def test_fefo_breaks_expiry_ties_by_lot_id(system: RedisSystem) -> None:
    await system.load(data((A, (LotSeed("L9", 100, 5), LotSeed("L10", 100, 5), LotSeed("L0", 50, 1)))))
    assert await system.reserve(hold_id(), [line(A, 3)])
    assert await held_by_lot(system, A) == {"L0": 1, "L10": 2, "L9": 0}  # "L10" < "L9" as text


async def test_received_lot_expiring_first_is_taken_first(system: RedisSystem) -> None:
    await system.load(data((A, (LotSeed("L1", 300, 5),))))
    await system.receive(*A, LotSeed("R1", 10, 4))
    await system.receive(*B, LotSeed("R2", 10, 4))  # a pair the load did not have
    assert await system.reserve(hold_id(), [line(A, 6), line(B, 4)])
    assert await held_by_lot(system, A) == {"L1": 2, "R1": 4}
    audit = await system.audit()
    assert audit.pairs[A].on_hand == 9
    assert audit.pairs[B].on_hand == 4


async def test_an_order_is_all_or_nothing(system: RedisSystem) -> None:
    d = data((A, (LotSeed("L1", 100, 5), LotSeed("L2", 200, 5))), (B, (LotSeed("L1", 100, 3),)))
    await system.load(d)
    assert not await system.reserve(hold_id(), [line(A, 4), line(B, 4)])  # B lacks one unit
    assert not await system.reserve(hold_id(), [line(A, 6), line(A, 5)])  # together 11 > 10
    assert await held_by_lot(system, A) == {"L1": 0, "L2": 0}
    assert await held_by_lot(system, B) == {"L1": 0}
    # Two lines on one pair add up, across lots, when they fit.
    assert await system.reserve(hold_id(), [line(A, 3), line(A, 4), line(B, 3)])
    assert await held_by_lot(system, A) == {"L1": 5, "L2": 2}
    assert await held_by_lot(system, B) == {"L1": 3}
    audit = await system.audit()
    assert audit.open_holds == 1
    assert not check(d, {}, {}, audit).ok  # an open hold fails the check


async def test_commit_issues_and_release_gives_back(system: RedisSystem) -> None:
    d = data((A, (LotSeed("L1", 100, 5), LotSeed("L2", 200, 5))))
    await system.load(d)
    kept, dropped = hold_id(), hold_id()
    assert await system.reserve(kept, [line(A, 6)])
    assert await system.reserve(dropped, [line(A, 3)])
    assert not await system.reserve(hold_id(), [line(A, 2)])  # 1 unit free
    await system.commit(kept)
    await system.release(dropped)
    audit = await system.audit()
    assert audit.pairs[A].on_hand == 4
    assert audit.pairs[A].held == 0
    assert audit.pairs[A].shipped == 6
    assert audit.open_holds == 0
    assert check(d, {}, {A: 6}, audit).ok
    assert await system.reserve(hold_id(), [line(A, 4)])  # the released units are free again
    # L1 went empty on commit and left the pair: FEFO has only L2 to scan.
    assert await system.redis.zrange(f"fefo:{A[0]}|{A[1]}", 0, -1) == ["L2"]


async def test_second_calls_keep_the_first_answer(system: RedisSystem) -> None:
    d = data((A, (LotSeed("L1", 100, 5),)))
    await system.load(d)
    h, refused, released = hold_id(), hold_id(), hold_id()
    assert await system.reserve(h, [line(A, 5)])
    assert await system.reserve(h, [line(A, 5)])  # no second hold for the same id
    assert not await system.reserve(refused, [line(A, 1)])
    await system.commit(h)
    await system.commit(h)  # a second commit is a no-op
    await system.release(h)  # so is a release after the commit
    await system.receive(*A, LotSeed("L2", 100, 1))
    assert not await system.reserve(refused, [line(A, 1)])  # still refused: the first answer
    assert await system.reserve(released, [line(A, 1)])
    await system.release(released)
    await system.release(released)
    with pytest.raises(HoldStateError) as err:
        await system.commit(released)
    assert err.value.state == "released"
    with pytest.raises(HoldStateError) as err:
        await system.commit("never-reserved")
    assert err.value.state is None
    with pytest.raises(HoldStateError):
        await system.commit(refused)
    audit = await system.audit()
    assert audit.pairs[A] == PairTotals(on_hand=1, held=0, shipped=5)
    assert check(d, {A: 1}, {A: 5}, audit).ok


async def test_bad_lines_raise(system: RedisSystem) -> None:
    await system.load(data((A, (LotSeed("L1", 100, 5),))))
    with pytest.raises(ValueError, match="no lines"):
        await system.reserve(hold_id(), [])
    with pytest.raises(ValueError, match="0 units"):
        await system.reserve(hold_id(), [line(A, 0)])
    with pytest.raises(ValueError, match="separator"):
        await system.reserve(hold_id(), [OrderLine("SKU|X", "S1", 1)])


async def test_load_replaces_everything(system: RedisSystem) -> None:
    await system.load(data((A, (LotSeed("L1", 100, 5),))))
    assert await system.reserve(hold_id(), [line(A, 2)])
    d = data((B, (LotSeed("L1", 100, 7),)))
    await system.load(d)
    audit = await system.audit()
    assert set(audit.pairs) == {B}
    assert audit.open_holds == 0
    assert check(d, {}, {}, audit).ok


async def test_no_oversell_under_64_concurrent_tasks_then_check_catches_tampering(system: RedisSystem) -> None:
    lots = tuple(LotSeed(f"L{n}", 100 + (n * 7) % 11, 20) for n in range(6))  # 120 units, shuffled expiries
    d = data((A, lots), (B, (LotSeed("L1", 100, 1_000_000_000),)))
    await system.load(d)
    committed: dict[Pair, int] = {}
    outcomes = {"held": 0, "refused": 0}

    async def worker(n: int) -> None:
        rng = random.Random(n)
        for _ in range(25):
            qa, qb = rng.randint(1, 5), rng.randint(1, 3)
            h = hold_id()
            if not await system.reserve(h, [line(A, qa), line(B, qb)]):
                outcomes["refused"] += 1
                continue
            outcomes["held"] += 1
            if rng.random() < 0.7:
                await system.commit(h)
                committed[A] = committed.get(A, 0) + qa
                committed[B] = committed.get(B, 0) + qb
            else:
                await system.release(h)

    await asyncio.gather(*(worker(n) for n in range(64)))
    audit = await system.audit()
    result = check(d, {}, committed, audit)
    assert result.ok, result.problems
    assert outcomes["refused"] > 0  # the pair really ran out: the test exercised refusals
    assert committed[A] + audit.pairs[A].on_hand == 120

    await system.redis.hincrby(f"lot:{A[0]}|{A[1]}", "q:L3", 1)  # one unit out of nowhere
    result = check(d, {}, committed, await system.audit())
    assert not result.ok
    assert any("not conserved" in p for p in result.problems)

    await system.redis.hincrby(f"lot:{A[0]}|{A[1]}", "h:L3", 1_000)  # and a lot held beyond its stock
    tampered = await system.audit()
    assert tampered.negative_rows == 1
    assert any("oversold" in p for p in check(d, {}, committed, tampered).problems)


async def test_the_lean_driver_pipelines_whole_orders_each_all_or_nothing(system: RedisSystem) -> None:
    await system.load(data((A, (LotSeed("L1", 100, 10),)), (B, (LotSeed("L1", 100, 3),))))
    ids = [hold_id() for _ in range(3)]
    held = await system.reserve_many(
        [(ids[0], [line(A, 4), line(B, 2)]), (ids[1], [line(A, 4), line(B, 2)]), (ids[2], [line(A, 2)])]
    )
    assert held == [True, False, True]  # the second finds B short: nothing of it is held
    await system.finish_many([ids[0]], [ids[2]])
    audit = await system.audit()
    assert (audit.pairs[A].on_hand, audit.pairs[A].held, audit.pairs[B].on_hand) == (6, 0, 1)
    assert check(data((A, (LotSeed("L1", 100, 10),)), (B, (LotSeed("L1", 100, 3),))), {}, {A: 4, B: 2}, audit).ok
    with pytest.raises(HoldStateError):
        await system.finish_many([ids[1]], [])  # refused: nothing to commit
