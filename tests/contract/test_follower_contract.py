"""The journal follower's contract (adapters.nats.follower) on the session's real
nats-server: what any FollowerSink may rely on — every journal entry applied, in journal
order, in bounded batches, acknowledged only after `apply` returned; failures pause and
catch up; what cannot be applied goes to the dead letters with its reason, never silently.

The sink is a recorder; the history sink and the event bus run on the same follower
(tests/integration/test_history.py, test_event_bus.py). There is no in-memory follower:
the in-memory journal has no durable consumer to follow.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from adapters.nats.follower import FollowerConfig, JournalFollower
from adapters.nats.journal import (
    JetStreamJournal,
    JournalConfig,
    NatsLink,
    engine_journal_config,
    ensure_stream,
    journal_stream_config,
)
from adapters.nats.pull import delete_consumer
from adapters.nats.server import EmbeddedNats
from engine.domain.errors import Unavailable
from engine.domain.ports import EntryRejected, FollowedEntry
from tests.nats_fixtures import journal_entry, nats_server  # noqa: F401 - a real nats-server, session-scoped

pytestmark = pytest.mark.asyncio(loop_scope="session")

MiB = 1024 * 1024
QUICK = FollowerConfig(
    consumer="lotwise-recorder",
    dead_letter_tag="recorder",
    batch_max_messages=3,
    batch_max_ms=20.0,
    fetch_wait_s=0.05,
    ack_wait_s=1.0,
    max_ack_pending=16,
    retry_initial_s=0.01,
    retry_max_s=0.05,
    lag_interval_s=0.05,
    stop_timeout_s=5.0,
)


class Metrics:
    def __init__(self) -> None:
        registry = CollectorRegistry()
        self.lag_messages = Gauge("lag", "", registry=registry)
        self.stream_position = Gauge("stream", "", registry=registry)
        self.acked_position = Gauge("acked", "", registry=registry)
        self.failures = Counter("failures", "", registry=registry)
        self.dead_letters = Counter("dead_letters", "", registry=registry)
        self.delay = Histogram("delay", "", registry=registry)


@dataclass
class Recorder:
    """A FollowerSink that records what it applied, and fails when told to."""

    name: str = "recorder"
    applied: list[tuple[FollowedEntry, ...]] = field(default_factory=list)
    down: bool = False  # transient: every apply fails with Unavailable
    refused: int = 0
    reject: set[int] = field(default_factory=set)  # batch_seqs rejected for good (EntryRejected)
    poison: set[int] = field(default_factory=set)  # batch_seqs whose batch fails with a bug

    async def apply(self, entries: tuple[FollowedEntry, ...]) -> None:
        for followed in entries:
            if followed.entry.batch_seq in self.reject:
                raise EntryRejected(followed.position, f"batch {followed.entry.batch_seq} is not for this sink")
        if self.down:
            self.refused += 1
            raise Unavailable("the recorder is down (simulated outage)")
        if any(f.entry.batch_seq in self.poison for f in entries):
            raise ValueError("a bug this entry triggers")
        self.applied.append(entries)

    def batch_seqs(self) -> list[int]:
        return [f.entry.batch_seq for batch in self.applied for f in batch]


@dataclass
class Rig:
    config: JournalConfig
    link: NatsLink
    journal: JetStreamJournal
    followers: list[JournalFollower] = field(default_factory=list)
    position: int = 0

    async def write(self, first: int, count: int, shard: str = "s1") -> None:
        for batch_seq in range(first, first + count):
            self.position = await self.journal.append(journal_entry(shard, batch_seq), self.position)

    async def follower(self, sink: Recorder, config: FollowerConfig = QUICK) -> JournalFollower:
        made = JournalFollower(self.link, sink, config, Metrics())
        self.followers.append(made)
        await made.start()
        return made

    async def dead_letters(self) -> list[tuple[int, str]]:
        """(journal position, reason) of every dead letter, in order."""
        _, js = await self.link.client()
        stream = QUICK.dead_letter_stream(self.config)
        last = int((await js.stream_info(stream)).state.last_seq or 0)
        out = []
        for seq in range(1, last + 1):
            msg = await js.get_msg(stream, seq)
            headers = msg.headers or {}
            out.append((int(headers["Lotwise-Stream-Seq"]), headers["Lotwise-Reason"]))
        return out


@pytest_asyncio.fixture(loop_scope="session")
async def rig(nats_server: EmbeddedNats) -> AsyncIterator[Rig]:  # noqa: F811
    config = dataclasses.replace(
        engine_journal_config(f"f{uuid.uuid4().hex[:8]}", nats_server.url, client_name="lotwise-follower"),
        max_bytes=16 * MiB,
    )
    link = NatsLink(config)
    await link.connect()
    _, js = await link.client()
    await ensure_stream(js, journal_stream_config(config))
    made = Rig(config, link, JetStreamJournal(link))
    yield made
    for follower in made.followers:
        await follower.abort()
    await link.close()


async def test_every_entry_is_applied_once_in_order_in_bounded_batches(rig: Rig) -> None:
    await rig.write(1, 7)
    sink = Recorder()
    follower = await rig.follower(sink)
    lag = await follower.wait_caught_up(timeout_s=20)
    assert sink.batch_seqs() == list(range(1, 8))
    assert all(1 <= len(batch) <= QUICK.batch_max_messages for batch in sink.applied)
    assert [f.position for batch in sink.applied for f in batch] == list(range(1, 8))  # journal positions
    assert not any(f.redelivered for batch in sink.applied for f in batch)
    assert (lag.acked_position, lag.stream_position, lag.held_messages, lag.stalled) == (7, 7, 0, False)
    assert follower.acked_messages == 7
    assert len(follower.delays_s) == 7
    await rig.write(8, 2)  # a running follower picks up what comes later
    await follower.wait_caught_up(timeout_s=20)
    assert sink.batch_seqs() == list(range(1, 10))
    await follower.stop()
    assert not follower.running


async def test_undecodable_and_rejected_entries_go_to_the_dead_letters_and_the_rest_flows(rig: Rig) -> None:
    sink = Recorder(reject={2})
    follower = await rig.follower(sink)
    await rig.write(1, 2)
    _, js = await rig.link.client()
    bad = await js.publish(rig.config.subject("s1"), b"not an avro batch")
    rig.position = bad.seq
    await rig.write(3, 2)
    await follower.wait_caught_up(timeout_s=20)
    assert sink.batch_seqs() == [1, 3, 4]
    # Undecodable: at once; rejected: when its batch is applied.
    [(rejected, reason), (undecodable, why)] = sorted(await rig.dead_letters())
    assert (rejected, reason) == (2, "batch 2 is not for this sink")
    assert undecodable == bad.seq
    assert "undecodable journal entry" in why
    assert follower.metrics.dead_letters._value.get() == 2  # type: ignore[attr-defined]
    await follower.stop()


async def test_a_failing_sink_pauses_the_follower_which_catches_up_without_redelivery(rig: Rig) -> None:
    sink = Recorder(down=True)
    follower = await rig.follower(sink)
    await rig.write(1, 5)
    await asyncio.sleep(1.5)  # longer than ack_wait: the held messages must not be redelivered
    lag = await follower.lag()
    assert lag.stalled
    assert lag.held_messages <= QUICK.batch_max_messages  # paused: nothing more is fetched
    assert lag.pending_messages == 5
    assert sink.refused >= 3
    sink.down = False
    await follower.wait_caught_up(timeout_s=20)
    assert not (await follower.lag()).stalled
    assert sink.batch_seqs() == [1, 2, 3, 4, 5]
    assert sink.applied[0][0].redelivered  # the retried batch says it may be applied already
    assert follower.metrics.failures._value.get() == sink.refused  # type: ignore[attr-defined]
    await follower.stop()


async def test_an_entry_that_keeps_failing_is_isolated_and_dead_lettered_after_bounded_attempts(rig: Rig) -> None:
    await rig.write(1, 3)
    sink = Recorder(poison={2})
    follower = await rig.follower(sink, dataclasses.replace(QUICK, max_apply_attempts=2))
    await follower.wait_caught_up(timeout_s=20)
    assert sink.batch_seqs() == [1, 3]
    [(position, reason)] = await rig.dead_letters()
    assert position == 2
    assert "a bug this entry triggers" in reason
    await follower.stop()


async def test_unacknowledged_entries_come_back_to_the_next_follower_flagged(rig: Rig) -> None:
    await rig.write(1, 2)
    first = Recorder(down=True)
    crashed = await rig.follower(first)
    for _ in range(200):  # until it holds the batch and failed on it
        if first.refused:
            break
        await asyncio.sleep(0.01)
    await crashed.abort()  # no ack: what a crash looks like to JetStream
    await rig.write(3, 1)
    second = Recorder()
    follower = await rig.follower(second)
    await follower.wait_caught_up(timeout_s=20)
    # JetStream redelivers after ack_wait, so a later entry may come first: each once.
    assert sorted(second.batch_seqs()) == [1, 2, 3]
    assert {f.entry.batch_seq: f.redelivered for batch in second.applied for f in batch} == {
        1: True,
        2: True,
        3: False,
    }
    # Forgetting the position feeds the next follower from the journal's start.
    await follower.stop()
    await delete_consumer(rig.link, QUICK.consumer)
    third = Recorder()
    again = await rig.follower(third)
    await again.wait_caught_up(timeout_s=20)
    assert third.batch_seqs() == [1, 2, 3]
    await again.stop()


async def test_stop_applies_and_acks_what_is_held(rig: Rig) -> None:
    await rig.write(1, 2)
    sink = Recorder()
    slow = dataclasses.replace(QUICK, batch_max_ms=60_000.0, batch_max_messages=10)  # would wait a minute
    follower = await rig.follower(sink, slow)
    for _ in range(200):
        if (await follower.lag()).held_messages == 2:
            break
        await asyncio.sleep(0.01)
    assert sink.applied == []
    await follower.stop()
    assert sink.batch_seqs() == [1, 2]
    _, js = await rig.link.client()
    # The acks reached the server (stop flushes them); its consumer records them a moment later.
    for _ in range(100):
        info = await js.consumer_info(rig.config.stream, QUICK.consumer)
        if info.ack_floor.stream_seq == 2:
            break
        await asyncio.sleep(0.05)
    assert info.ack_floor.stream_seq == 2


async def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="max_ack_pending"):
        dataclasses.replace(QUICK, batch_max_messages=100, max_ack_pending=10)
    with pytest.raises(ValueError, match="batch_max_movements"):
        dataclasses.replace(QUICK, batch_max_movements=0)
    with pytest.raises(ValueError, match="max_apply_attempts"):
        dataclasses.replace(QUICK, max_apply_attempts=-1)
    with pytest.raises(ValueError, match="dead-letter tag"):
        dataclasses.replace(QUICK, dead_letter_tag="not.a.tag")


async def test_an_open_batch_gathers_in_the_stream_instead_of_one_pull_per_append(rig: Rig) -> None:
    # A trickle: 20 appends 20 ms apart into batches of up to 400 ms. Pulling once per
    # arrival would take ~20 pulls; gathering takes about two per batch.
    config = dataclasses.replace(QUICK, batch_max_messages=16, batch_max_ms=400.0, fetch_wait_s=0.5)
    sink = Recorder()
    follower = await rig.follower(sink, config)
    pulls_before = follower.pulls
    for batch_seq in range(1, 21):
        await rig.write(batch_seq, 1)
        await asyncio.sleep(0.02)
    await follower.wait_caught_up(timeout_s=20)
    assert sink.batch_seqs() == list(range(1, 21))  # nothing lost, in order
    assert follower.pulls - pulls_before <= 10, follower.pulls - pulls_before
    assert len(sink.applied) <= 5  # one apply per window, not per append
    await follower.stop()


async def test_a_busy_journal_stretches_the_batch_window_and_an_idle_one_does_not(rig: Rig) -> None:
    # Busy: ≥ 50 movements a second since the last apply (a journal entry here is two).
    # Then the next batch may wait 600 ms instead of 40 ms, so fewer, fuller batches; once
    # the journal is quiet again the window shrinks back.
    config = dataclasses.replace(
        QUICK,
        batch_max_messages=64,
        max_ack_pending=256,
        batch_max_ms=40.0,
        busy_batch_max_ms=600.0,
        busy_movements_per_s=50.0,
    )
    sink = Recorder()
    follower = await rig.follower(sink, config)
    assert follower.window_ms == 40.0
    batch_seq = 1
    for _ in range(40):  # ~100 entries/s = ~200 movements/s for ~0.4 s
        await rig.write(batch_seq, 4)
        batch_seq += 4
        await asyncio.sleep(0.04)
    await follower.wait_caught_up(timeout_s=20)
    assert sink.batch_seqs() == list(range(1, batch_seq))  # nothing lost, in order
    assert follower.busy_batches >= 1
    stretched = max(len(batch) for batch in sink.applied)
    assert stretched > 8, [len(b) for b in sink.applied]  # more than a 40 ms window gathers at this pace
    # Quiet: one entry after a pause is not busy; the window is the short one again.
    await asyncio.sleep(1.0)
    await rig.write(batch_seq, 1)
    await follower.wait_caught_up(timeout_s=20)
    assert follower.window_ms == 40.0
    await follower.stop()


async def test_the_busy_window_is_bounded() -> None:
    with pytest.raises(ValueError, match="busy_batch_max_ms"):
        dataclasses.replace(QUICK, busy_batch_max_ms=60_000.0)
    with pytest.raises(ValueError, match="busy_movements_per_s"):
        dataclasses.replace(QUICK, busy_movements_per_s=0.0)


async def test_a_stretched_window_stays_within_half_the_ack_wait(rig: Rig) -> None:
    """A batch gathering longer than the ack wait would have its held messages delivered
    again: the busy window is cut to half of it (here 1 s → 500 ms, not the 2 s asked)."""
    config = dataclasses.replace(
        QUICK,
        batch_max_messages=64,
        max_ack_pending=256,
        batch_max_ms=40.0,
        busy_batch_max_ms=2_000.0,
        busy_movements_per_s=50.0,
        ack_wait_s=1.0,
    )
    sink = Recorder()
    follower = await rig.follower(sink, config)
    batch_seq, widest = 1, 0.0
    for _ in range(30):
        await rig.write(batch_seq, 4)
        batch_seq += 4
        await asyncio.sleep(0.04)
        widest = max(widest, follower.window_ms)
    await follower.wait_caught_up(timeout_s=20)
    assert follower.busy_batches >= 1
    assert widest == 500.0
    assert sink.batch_seqs() == list(range(1, batch_seq))  # nothing lost, nothing twice
    await follower.stop()
