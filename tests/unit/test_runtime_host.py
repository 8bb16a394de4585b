"""The shard host's durability rules on the in-memory journal (DESIGN.md §7, §9).

The same rules hold on JetStream (tests/integration/test_durability.py); here they are
checked quickly and exhaustively, with faults injected at the journal port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from adapters.memory.journal import InMemoryJournal
from adapters.memory.snapshots import InMemorySnapshotStore
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import Commit, Receive, Reserve, ReserveLine
from engine.domain.errors import InsufficientStock, Unavailable
from engine.domain.model import MS_PER_DAY
from engine.domain.ports import Backend, JournalConflict, JournalCorrupt, JournalEntry, JournalUnavailable
from engine.domain.shard import PutSite, PutSku, ReadSlice
from engine.runtime.host import HostState, ShardHost, SnapshotPolicy, rebuild


class FlakyJournal(InMemoryJournal):
    """An in-memory journal whose appends can be made to fail, as a dead NATS would."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def append(self, entry: JournalEntry, expected_position: int) -> int:
        if self.down:
            raise JournalUnavailable("journal down (injected)")
        return await super().append(entry, expected_position)


class Store:
    """One journal and snapshot store that outlives hosts, as NATS outlives shard processes."""

    def __init__(self) -> None:
        self.journal = FlakyJournal()
        self.snapshots = InMemorySnapshotStore()

    async def backend(self) -> Backend:
        async def close() -> None:
            return None

        return Backend(self.journal, self.snapshots, close)


def host(store: Store, clock: ManualClock, every_batches: int = 1_000_000) -> ShardHost:
    return ShardHost(
        "s0", clock=clock, backend=store.backend, sweep_interval_ms=0, snapshot_policy=SnapshotPolicy(every_batches)
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def started(clock: ManualClock) -> AsyncIterator[tuple[Store, ShardHost]]:
    store = Store()
    h = host(store, clock)
    await h.start()
    await h.apply([PutSku(Sku("strip")), PutSite(Site("ward1"))])
    expires = clock.now_ms() + 100 * MS_PER_DAY
    await h.apply([Receive("r1", "strip", "ward1", "L1", 10, status="available", expires_at_ms=expires)])
    yield store, h
    await h.stop()


def reserve(request_id: str, qty: int) -> Reserve:
    return Reserve(request_id, "strip", "ward1", f"H-{request_id}", (ReserveLine(qty),), 60_000)


async def available(h: ShardHost) -> int:
    (_, rows) = (await h.apply([ReadSlice("strip", "ward1")]))[0]
    return sum(r.available for r in rows)


async def test_a_restarted_host_recovers_the_same_state_and_idempotency_window(
    started: tuple[Store, ShardHost], clock: ManualClock
) -> None:
    store, h = started
    first = (await h.apply([reserve("o1", 3)]))[0]
    await h.apply([Commit("c1", "strip", "ward1", "H-o1")])
    refused = (await h.apply([reserve("o2", 50)]))[0]
    assert isinstance(refused, InsufficientStock)
    before = await h.state_hash()
    await h.stop()  # the process dies; only the journal remains

    again = host(store, clock)
    await again.start()
    assert await again.state_hash() == before
    # Retries after the crash answer from the rebuilt window: applied once, same answers.
    assert (await again.apply([reserve("o1", 3)]))[0] == first
    assert isinstance((await again.apply([reserve("o2", 50)]))[0], InsufficientStock)
    assert await available(again) == 7
    await again.stop()


async def test_a_failed_append_acknowledges_nothing_and_the_host_rebuilds(
    started: tuple[Store, ShardHost],
) -> None:
    store, h = started
    store.journal.down = True
    answers = await h.apply([reserve("o3", 4), ReadSlice("strip", "ward1")])
    assert all(isinstance(a, Unavailable) for a in answers)  # reads too: they saw unjournaled state
    assert h.state is HostState.BROKEN
    store.journal.down = False
    await h.start()  # what the next request would trigger in the background
    assert await available(h) == 10  # the unacknowledged hold is gone
    held = (await h.apply([reserve("o3", 4)]))[0]  # the client's retry applies it, once
    assert held.hold.held_qty == 4
    assert await available(h) == 6


async def test_requests_answer_unavailable_while_recovery_cannot_finish(
    started: tuple[Store, ShardHost], clock: ManualClock
) -> None:
    store, h = started
    await h.stop()
    store.journal.down = True  # appends fail; reads still work, so recovery itself succeeds
    again = host(store, clock)
    answers = await again.apply([reserve("o4", 1)])
    assert isinstance(answers[0], Unavailable)  # not ready yet: kicked recovery in background
    await again.start()
    answers = await again.apply([reserve("o4", 1)])
    assert isinstance(answers[0], Unavailable)  # ready, but the append failed
    store.journal.down = False
    await again.start()
    assert (await again.apply([reserve("o4", 1)]))[0].hold.held_qty == 1
    await again.stop()


async def test_a_zombie_writer_is_fenced_off(started: tuple[Store, ShardHost], clock: ManualClock) -> None:
    store, zombie = started
    successor = host(store, clock)  # e.g. Ray restarted the shard while the old process hung
    await successor.start()
    await successor.apply([reserve("o5", 2)])
    answers = await zombie.apply([reserve("o6", 8)])  # its expected position is stale
    assert isinstance(answers[0], Unavailable)
    assert "JournalConflict" in zombie.failure
    await zombie.start()  # rebuilds from the journal, including the successor's write
    assert await available(zombie) == 8
    await successor.stop()


async def test_snapshots_shorten_replay_and_give_the_same_state(clock: ManualClock) -> None:
    store = Store()
    h = host(store, clock, every_batches=5)
    await h.start()
    await h.apply([PutSku(Sku("strip")), PutSite(Site("ward1"))])
    await h.apply([Receive("r1", "strip", "ward1", "L1", 100, status="available")])
    for i in range(12):
        await h.apply([reserve(f"o{i}", 1)])
        await asyncio.sleep(0)  # the in-memory journal never yields; real appends do (uploads run then)
    await h.stop()  # waits for the last snapshot upload
    snapshot = await store.snapshots.load("s0")
    assert snapshot is not None
    assert snapshot.batch_seq >= 10
    replayed: list[int] = []
    core, batch_seq, _ = await rebuild(
        "s0", h.statuses, h.limits, store.journal, store.snapshots, on_entry=replayed.append
    )
    assert batch_seq == 14
    assert len(replayed) == 14 - snapshot.batch_seq
    full, _, _ = await rebuild("s0", h.statuses, h.limits, store.journal, InMemorySnapshotStore())
    assert core.state_hash() == full.state_hash()


async def test_a_gap_or_a_diverging_replay_stops_recovery_with_the_position(
    started: tuple[Store, ShardHost], clock: ManualClock
) -> None:
    store, h = started
    await h.apply([reserve("o7", 1)])
    await h.stop()
    entries = store.journal._streams["s0"]
    entries[1] = JournalEntry("s0", 9, entries[1].now_ms, entries[1].ops, entries[1].movements)  # a gap
    with pytest.raises(JournalCorrupt) as gap:
        await rebuild("s0", h.statuses, h.limits, store.journal, InMemorySnapshotStore())
    assert (gap.value.stream, gap.value.position) == ("s0", 2)
    assert "gap" in gap.value.reason
    entries[1] = JournalEntry("s0", 2, entries[1].now_ms, entries[1].ops, ())  # movements lost
    with pytest.raises(JournalCorrupt) as diverged:
        await rebuild("s0", h.statuses, h.limits, store.journal, InMemorySnapshotStore())
    assert diverged.value.position == 2
    broken = host(store, clock)
    with pytest.raises(Unavailable, match="position 2"):
        await broken.start()
    assert broken.state is HostState.BROKEN


async def test_in_memory_journal_fences_like_the_real_one() -> None:
    journal = InMemoryJournal()
    entry = JournalEntry("s", 1, 0, (), ())
    assert await journal.append(entry, 0) == 1
    with pytest.raises(JournalConflict):
        await journal.append(JournalEntry("s", 2, 0, (), ()), 0)
    assert await journal.last_position("s") == 1
