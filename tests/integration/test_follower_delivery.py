"""What a follower's sink is told of each journal message it gets from a real nats-server,
now that the follower reads the ack subject itself: the journal position, whether it was
delivered before, how far the follower is behind, and (for the delay figures) when the
journal stored it. A follower acks only what its sink applied: a follower that dies with a
batch in hand leaves it to the next one, flagged redelivered."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from adapters.nats.codec import decode_entry
from adapters.nats.follower import FollowerConfig, JournalFollower
from adapters.nats.journal import (
    JetStreamJournal,
    JournalConfig,
    NatsLink,
    engine_journal_config,
    ensure_stream,
    journal_stream_config,
)
from adapters.nats.server import EmbeddedNats
from bench.followers import NullMetrics
from engine.domain.ports import FollowedEntry, JournalEntry
from tests.nats_fixtures import journal_entry, nats_server  # noqa: F401 - a real nats-server, session-scoped

pytestmark = pytest.mark.asyncio(loop_scope="session")

MiB = 1024 * 1024
QUICK = FollowerConfig(
    "lotwise-test-delivery",
    "test_delivery",
    batch_max_ms=200.0,
    fetch_wait_s=0.05,
    ack_wait_s=1.0,
    retry_initial_s=0.02,
    retry_max_s=0.1,
    stop_timeout_s=2.0,
)


class RecordingSink:
    """Records every batch; unless `released`, apply never returns (a sink in flight)."""

    name = "recording sink"

    def __init__(self, *, hold: bool = False) -> None:
        self.batches: list[tuple[FollowedEntry, ...]] = []
        self.released = asyncio.Event()
        if not hold:
            self.released.set()

    async def apply(self, entries: tuple[FollowedEntry, ...]) -> None:
        self.batches.append(entries)
        await self.released.wait()


@dataclasses.dataclass
class Rig:
    config: JournalConfig
    link: NatsLink
    journal: JetStreamJournal


@pytest_asyncio.fixture(loop_scope="session")
async def rig(nats_server: EmbeddedNats) -> AsyncIterator[Rig]:  # noqa: F811
    namespace = f"delivery-{uuid.uuid4().hex[:8]}"
    config = dataclasses.replace(engine_journal_config(namespace, nats_server.url), max_bytes=64 * MiB)
    link = NatsLink(config)
    await link.connect()
    _, js = await link.client()
    await ensure_stream(js, journal_stream_config(config))
    yield Rig(config, link, JetStreamJournal(link))
    await link.close()


async def _journal(rig: Rig, batches: int) -> None:
    for seq in range(1, batches + 1):
        await rig.journal.append(journal_entry("s1", seq), seq - 1)


async def test_the_sink_gets_each_position_once_with_how_far_behind_it_was(rig: Rig) -> None:
    journaling_s = time.time()
    await _journal(rig, 3)
    await asyncio.sleep(0.3)
    sink = RecordingSink()
    follower = JournalFollower(rig.link, sink, QUICK, NullMetrics())
    await follower.start()
    try:
        await follower.wait_caught_up(timeout_s=20)
    finally:
        await follower.stop()
    got = [e for batch in sink.batches for e in batch]
    assert [e.position for e in got] == [1, 2, 3]
    assert [e.entry.batch_seq for e in got] == [1, 2, 3]
    assert [e.behind for e in got] == [2, 1, 0]  # the journal messages after it, not yet delivered
    assert not any(e.redelivered for e in got)
    # The delays run from when the journal stored each message, 0.3 s before the follower started.
    assert len(follower.delays_s) == 3
    assert all(0.3 <= d <= time.time() - journaling_s + 0.01 for d in follower.delays_s)


async def test_a_batch_in_hand_when_its_follower_dies_comes_back_redelivered(rig: Rig) -> None:
    await _journal(rig, 2)
    first_sink = RecordingSink(hold=True)
    first = JournalFollower(rig.link, first_sink, QUICK, NullMetrics())
    await first.start()
    for _ in range(500):
        if first_sink.batches:
            break
        await asyncio.sleep(0.01)
    assert [e.position for e in first_sink.batches[0]] == [1, 2]
    assert not any(e.redelivered for e in first_sink.batches[0])
    await first.abort()  # applied nothing, acked nothing

    second_sink = RecordingSink()
    second = JournalFollower(rig.link, second_sink, QUICK, NullMetrics())
    await second.start()
    try:
        await second.wait_caught_up(timeout_s=20)
    finally:
        await second.stop()
    got = [e for batch in second_sink.batches for e in batch]
    assert sorted(e.position for e in got) == [1, 2]  # each batch in journal order: tests/unit
    assert all(e.redelivered for e in got)  # JetStream's delivery count, read from the ack subject
    assert second.acked_messages == 2


async def test_a_long_pull_gives_the_event_loop_turns_while_it_decodes(rig: Rig) -> None:
    """Decoding a pull of many messages must not hold the loop the order path shares: a
    ticker task keeps running between the decodes of one pull (it did not before)."""
    await _journal(rig, 120)
    ticks = 0
    seen: list[int] = []

    def slow_decode(data: bytes) -> JournalEntry:
        spin_until = time.perf_counter() + 0.0005  # a heavy entry: 0.5 ms of decoding
        while time.perf_counter() < spin_until:
            pass
        seen.append(ticks)
        return decode_entry(data)

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    config = dataclasses.replace(QUICK, fetch_batch=256, batch_max_messages=1_000)
    sink = RecordingSink()
    follower = JournalFollower(rig.link, sink, config, NullMetrics(), decode=slow_decode)
    ticking = asyncio.get_running_loop().create_task(ticker())
    await follower.start()
    try:
        await follower.wait_caught_up(timeout_s=20)
    finally:
        await follower.stop()
        ticking.cancel()
    assert [e.position for batch in sink.batches for e in batch] == list(range(1, 121))
    # Between the first and the last decode of the run the ticker ran again and again: no stretch
    # of decoding longer than a few turns' worth went without it.
    assert len(set(seen)) >= 10
    assert follower.loop_turns >= 10  # 60 ms of decoding, a turn every 2 ms
