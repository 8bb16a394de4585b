"""A warm standby host on a real JetStream journal (DESIGN.md §9): it follows the primary's
entries, serves nothing until promoted, then serves exactly what was acknowledged, with the
same idempotency window; the old primary, should it still write, is fenced off."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from adapters.nats.journal import JournalConfig
from adapters.nats.server import EmbeddedNats
from engine.bootstrap.config import nats_backend
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import Commit, Move, Receive, Release, Reserve, ReserveLine
from engine.domain.errors import InsufficientStock, Unavailable
from engine.domain.model import MS_PER_DAY
from engine.domain.ports import BackendFactory
from engine.domain.shard import PutSite, PutSku, ReadSlice, ReceiveBulk
from engine.runtime.host import HostState, ShardHost
from tests.nats_fixtures import nats_server  # noqa: F401 - a real nats-server, session-scoped

pytestmark = pytest.mark.asyncio(loop_scope="session")

FOLLOW_MS = 20


@pytest.fixture
def backend(nats_server: EmbeddedNats) -> BackendFactory:  # noqa: F811 - the fixture above
    tag = uuid.uuid4().hex[:8]  # a stream and bucket of this test's own on the shared server
    return nats_backend(
        JournalConfig(
            url=nats_server.url,
            stream=f"FAILOVER_{tag}",
            subject_prefix=f"failover.{tag}",
            snapshot_bucket=f"failover-{tag}",
            max_bytes=64 * 1024 * 1024,
            snapshot_max_bytes=64 * 1024 * 1024,
        )
    )


@pytest_asyncio.fixture(loop_scope="session")
async def hosts(backend: BackendFactory) -> AsyncIterator[tuple[ShardHost, ShardHost]]:
    clock = ManualClock()
    primary = ShardHost("s0", clock=clock, backend=backend, sweep_interval_ms=0)
    standby = ShardHost("s0", clock=clock, backend=backend, sweep_interval_ms=0)
    await primary.start()
    await primary.apply([PutSku(Sku("strip")), PutSite(Site("ward1"))])
    expires = clock.now_ms() + 100 * MS_PER_DAY
    await primary.apply([Receive("r1", "strip", "ward1", "L1", 10, status="available", expires_at_ms=expires)])
    assert await standby.follow(FOLLOW_MS) == "standby"
    yield primary, standby
    await primary.stop()
    await standby.stop()


def reserve(request_id: str, qty: int) -> Reserve:
    return Reserve(request_id, "strip", "ward1", f"H-{request_id}", (ReserveLine(qty),), 60_000)


async def available(h: ShardHost) -> int:
    (_, rows) = (await h.apply([ReadSlice("strip", "ward1")]))[0]
    return sum(r.available for r in rows)


async def until_followed(standby: ShardHost, batch_seq: int) -> None:
    for _ in range(1_000):  # bounded: 1,000 looks at FOLLOW_MS each
        if standby.batch_seq >= batch_seq:
            return
        await asyncio.sleep(FOLLOW_MS / 1000)
    raise AssertionError(f"the standby stayed at batch {standby.batch_seq}, the primary is at {batch_seq}")


async def test_a_standby_follows_and_serves_nothing_until_promoted(hosts: tuple[ShardHost, ShardHost]) -> None:
    primary, standby = hosts
    await primary.apply([reserve("o1", 3)])
    await until_followed(standby, primary.batch_seq)
    assert standby.core.state_hash() == primary.core.state_hash()
    answer = (await standby.apply([ReadSlice("strip", "ward1")]))[0]
    assert isinstance(answer, Unavailable)
    assert standby.state is HostState.STANDBY  # a call does not make it recover on its own
    assert (await standby.stats())["state"] == "standby"


async def test_the_promoted_standby_has_every_acknowledged_op_and_the_same_window(
    hosts: tuple[ShardHost, ShardHost],
) -> None:
    primary, standby = hosts
    first = (await primary.apply([reserve("o1", 3)]))[0]
    await primary.apply([Commit("c1", "strip", "ward1", "H-o1")])
    refused = (await primary.apply([reserve("o2", 50)]))[0]
    assert isinstance(refused, InsufficientStock)
    # The last entries may be newer than the standby's last look: promotion catches up.
    last = (await primary.apply([reserve("o3", 2)]))[0]
    expected = (primary.batch_seq, primary.core.state_hash())

    assert await standby.promote() == "ready"
    assert (standby.batch_seq, standby.core.state_hash()) == expected
    # Retries of what the dead primary acknowledged answer from the carried-over window: once.
    assert (await standby.apply([reserve("o1", 3)]))[0] == first
    assert (await standby.apply([reserve("o3", 2)]))[0] == last
    assert isinstance((await standby.apply([reserve("o2", 50)]))[0], InsufficientStock)
    assert await available(standby) == 10 - 3 - 2
    assert await standby.promote() == "ready"  # idempotent: every gateway may ask
    assert standby.recoveries == 1


async def test_the_old_primary_is_fenced_off_once_the_standby_writes(hosts: tuple[ShardHost, ShardHost]) -> None:
    primary, standby = hosts
    await until_followed(standby, primary.batch_seq)
    await standby.promote()
    await standby.apply([reserve("new-primary", 4)])
    # A zombie primary (not killed after all) writes behind the fence: refused, not acknowledged.
    zombie = (await primary.apply([reserve("zombie", 1)]))[0]
    assert isinstance(zombie, Unavailable)
    assert isinstance(zombie, Unavailable)
    await primary.start()  # it rebuilds from the journal: the standby's writes, not its own
    assert (primary.batch_seq, primary.core.state_hash()) == (standby.batch_seq, standby.core.state_hash())
    assert await available(standby) == 10 - 4


async def test_the_standby_ends_as_the_primary_after_a_bulk_load_and_mixed_commands(
    hosts: tuple[ShardHost, ShardHost],
) -> None:
    """The standby applies the receipts its journal shows accepted without validating them
    again (engine.domain.shard.replay_ops): its state must be the primary's, window too."""
    primary, standby = hosts
    expires = primary.clock.now_ms() + 100 * MS_PER_DAY
    lots = tuple(Receive(f"b{i}", "strip", "ward1", f"B{i}", 1 + i % 3, bin=f"A/{i % 7}") for i in range(600))
    (answers,) = await primary.apply([ReceiveBulk(lots)])
    assert answers == [None] * len(lots)
    await primary.apply(
        [
            Receive("m1", "strip", "ward1", "L1", 0),  # refused by validation
            Receive("m1", "strip", "ward1", "L1", 4, status="available", expires_at_ms=expires),  # then accepted
            Receive("m2", "strip", "ward1", "L1", 1, expires_at_ms=expires + 1),  # other dates: refused
            Receive("b7", "strip", "ward1", "B7", 2, bin="A/0"),  # a bulk receipt's id reused: a conflict
            reserve("o9", 5),
            Move("mv1", "strip", "ward1", "B1", 1, "A/1", "A/2", status="receiving"),
        ]
    )
    await primary.apply([Release("rel9", "strip", "ward1", "H-o9"), ReceiveBulk(lots[:50])])  # a re-run
    await until_followed(standby, primary.batch_seq)
    assert standby.core.state_hash() == primary.core.state_hash()
    assert standby.core.export_state() == primary.core.export_state()
    assert await standby.promote() == "ready"
    assert (standby.batch_seq, standby.core.export_state()) == (primary.batch_seq, primary.core.export_state())
    assert await available(standby) == await available(primary)
