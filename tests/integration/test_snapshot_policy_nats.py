"""Snapshots in proportion to the tail, on a real JetStream journal and object store
(DESIGN §9; the rule: engine.runtime.host.SnapshotPolicy, unit tests in
tests/unit/test_snapshot_policy.py). A large shard now carries a longer tail between
rewrites: a restart must still replay it to exactly the state that was acknowledged, and
the tail it replayed still counts toward the next rewrite.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from adapters.memory.snapshots import InMemorySnapshotStore
from adapters.nats.journal import JournalConfig, connect_journal
from adapters.nats.server import EmbeddedNats
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import Receive, Reserve, ReserveLine
from engine.domain.ports import Backend, BackendFactory, SnapshotStore
from engine.domain.shard import PutSite, PutSku
from engine.runtime.host import ShardHost, SnapshotPolicy, rebuild

QUICK = {"ack_timeout_s": 2.0, "api_timeout_s": 2.0, "connect_timeout_s": 2.0, "connect_deadline_s": 2.0}
QUANTS = 1_000
POLICY = SnapshotPolicy(min_tail_ops=10, interval_ms=3_600_000, tail_fraction=0.5)


@pytest_asyncio.fixture(loop_scope="session")
async def config(nats_server: EmbeddedNats) -> AsyncIterator[JournalConfig]:
    name = uuid.uuid4().hex[:8]
    yield JournalConfig(
        url=nats_server.url,
        stream=f"SNAPPOLICY_{name}",
        subject_prefix=f"snappolicy.{name}",
        snapshot_bucket=f"snappolicy-{name}",
        max_bytes=64 * 1024 * 1024,
        snapshot_max_bytes=64 * 1024 * 1024,
        **QUICK,  # type: ignore[arg-type]
    )


@pytest.fixture
def shard() -> str:
    return f"s{uuid.uuid4().hex[:10]}"


def connector(config: JournalConfig) -> BackendFactory:
    async def connect() -> Backend:
        journal, snapshots, close = await connect_journal(config)
        return Backend(journal, snapshots, close)

    return connect


def host(shard: str, config: JournalConfig, clock: ManualClock) -> ShardHost:
    return ShardHost(shard, clock=clock, backend=connector(config), sweep_interval_ms=0, snapshot_policy=POLICY)


def reserve(i: int) -> Reserve:
    return Reserve(f"o{i}", f"k{i % QUANTS}", "S1", f"H{i}", (ReserveLine(1),), 3_600_000)


async def saved(snapshots: SnapshotStore, shard: str) -> int:
    snapshot = await snapshots.load(shard)
    return 0 if snapshot is None else snapshot.batch_seq


async def settle(h: ShardHost) -> None:
    if h._snapshotting is not None:
        await h._snapshotting


async def test_a_restart_after_a_long_tail_recovers_exactly_and_the_tail_still_counts(
    config: JournalConfig, shard: str
) -> None:
    clock = ManualClock()
    writer = host(shard, config, clock)
    await writer.start()
    await writer.apply([PutSite(Site("S1")), *(PutSku(Sku(f"k{i}")) for i in range(QUANTS))])
    await writer.apply([Receive(f"r{i}", f"k{i}", "S1", "L1", 10, status="available") for i in range(QUANTS)])
    await settle(writer)
    assert await writer.snapshot_now() == 2  # a known point: 1,000 cells of 3 records each
    limit = POLICY.tail_limit(writer.core.record_count())
    assert limit == 1_500
    tail = limit - 100
    journal, snapshots, close = await connect_journal(config)
    try:
        assert await saved(snapshots, shard) == 2
        for i in range(tail):  # a long tail, under the rewrite's limit
            await writer.apply([reserve(i)])
            clock.advance(500)  # ~12 min of engine time: the old 60 s period is no trigger
        await settle(writer)
        assert await saved(snapshots, shard) == 2
        acked_seq, acked_hash = await writer.state_hash()
        await writer.stop()

        again = host(shard, config, clock)
        await again.start()  # the snapshot at 2, then the whole tail replayed from JetStream
        assert await again.state_hash() == (acked_seq, acked_hash)
        from_zero, seq, _ = await rebuild(shard, again.statuses, again.limits, journal, InMemorySnapshotStore())
        assert (seq, from_zero.state_hash()) == (acked_seq, acked_hash)  # the journal alone agrees
        # The replayed tail counts toward the next rewrite, weighed against the state recovered.
        again_limit = POLICY.tail_limit(again.core.record_count())
        for i in range(tail, again_limit - 1):
            await again.apply([reserve(i)])
        await settle(again)
        assert await saved(snapshots, shard) == 2
        await again.apply([reserve(again_limit)])
        await settle(again)
        assert await saved(snapshots, shard) == acked_seq + again_limit - tail
        await again.stop()
    finally:
        await close()
