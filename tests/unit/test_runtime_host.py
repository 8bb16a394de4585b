"""The shard host's durability rules on the in-memory journal (DESIGN.md §7, §9).

The same rules hold on JetStream (tests/integration/test_durability.py); here they are
checked quickly and exhaustively, with faults injected at the journal port.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

import pytest

from adapters.memory.journal import InMemoryJournal
from adapters.memory.snapshots import InMemorySnapshotStore
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import Commit, Receive, Reserve, ReserveLine
from engine.domain.errors import InsufficientStock, Unavailable
from engine.domain.model import MS_PER_DAY
from engine.domain.ports import Backend, JournalConflict, JournalCorrupt, JournalEntry, JournalUnavailable, Snapshot
from engine.domain.shard import PutSite, PutSku, ReadSlice
from engine.runtime.host import YOUNG_THRESHOLD, HostState, ShardHost, SnapshotPolicy, raise_young_threshold, rebuild


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


def host(store: Store, clock: ManualClock, every_ops: int = 1_000_000) -> ShardHost:
    """A host that snapshots every `every_ops` journaled ops, whatever its state's size."""
    policy = SnapshotPolicy(every_ops, tail_fraction=0, max_tail_ops=max(every_ops, 1_000_000))
    return ShardHost("s0", clock=clock, backend=store.backend, sweep_interval_ms=0, snapshot_policy=policy)


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
    h = host(store, clock, every_ops=5)
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


# ---- group commit: several batches in flight per shard ----


class GatedJournal(FlakyJournal):
    """Appends wait at a gate the test opens one at a time, so batches pile up behind an
    append in flight; an append can be made to fail when it is let through."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[asyncio.Future[bool]] = []  # one per append: True lets it land
        self.arrived = asyncio.Event()
        self.gated = True

    async def append(self, entry: JournalEntry, expected_position: int) -> int:
        if self.gated:
            gate = asyncio.get_running_loop().create_future()
            self.waiting.append(gate)
            self.arrived.set()
            if not await gate:
                raise JournalUnavailable("journal down (injected)")
        return await super().append(entry, expected_position)

    async def next_append(self) -> asyncio.Future[bool]:
        while not self.waiting:
            self.arrived.clear()
            await self.arrived.wait()
        return self.waiting.pop(0)


async def gated(clock: ManualClock) -> tuple[Store, GatedJournal, ShardHost]:
    store = Store()
    journal = store.journal = GatedJournal()
    h = host(store, clock)
    await h.start()
    setup = asyncio.ensure_future(h.apply([PutSku(Sku("strip")), PutSite(Site("ward1"))]))
    (await journal.next_append()).set_result(True)
    await setup
    expires = clock.now_ms() + 100 * MS_PER_DAY
    receipt = asyncio.ensure_future(
        h.apply([Receive("r1", "strip", "ward1", "L1", 10, status="available", expires_at_ms=expires)])
    )
    (await journal.next_append()).set_result(True)
    await receipt
    return store, journal, h


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_batches_apply_while_an_append_is_in_flight_and_answer_in_order(clock: ManualClock) -> None:
    store, journal, h = await gated(clock)
    first = asyncio.ensure_future(h.apply([reserve("o1", 1)]))
    gate1 = await journal.next_append()
    later = [asyncio.ensure_future(h.apply([reserve(f"o{i}", 1)])) for i in range(2, 6)]
    read = asyncio.ensure_future(h.apply([ReadSlice("strip", "ward1")]))
    await settle()
    # Applied already (the group holds them), answered not yet: their entry is not durable.
    assert h.core.cells["strip", "ward1"].available(clock.now_ms()) == 5
    assert not any(f.done() for f in (first, *later, read))
    gate1.set_result(True)
    await settle()
    assert first.done()
    assert not any(f.done() for f in (*later, read))
    gate2 = await journal.next_append()  # the four reserves and the read: one entry
    gate2.set_result(True)
    answers = await asyncio.gather(*later, read)
    assert all(a[0].hold.held_qty == 1 for a in answers[:-1])
    (_, rows) = answers[-1][0]
    assert sum(r.available for r in rows) == 5
    assert len(store.journal._streams["s0"]) == 4
    assert h.entries == 4
    assert h.batches == 8
    rebuilt, batch_seq, _ = await rebuild("s0", h.statuses, h.limits, store.journal, InMemorySnapshotStore())
    assert (batch_seq, rebuilt.state_hash()) == await h.state_hash()
    await h.stop()


async def test_a_failed_append_with_batches_in_flight_loses_nothing_acknowledged_and_shows_nothing_else(
    clock: ManualClock,
) -> None:
    store, journal, h = await gated(clock)
    acknowledged = asyncio.ensure_future(h.apply([reserve("o1", 2)]))
    (await journal.next_append()).set_result(True)
    assert (await acknowledged)[0].hold.held_qty == 2
    in_flight = asyncio.ensure_future(h.apply([reserve("o2", 3)]))
    gate = await journal.next_append()
    behind = [asyncio.ensure_future(h.apply([reserve(f"o{i}", 1)])) for i in range(3, 6)]
    read = asyncio.ensure_future(h.apply([ReadSlice("strip", "ward1")]))
    await settle()
    gate.set_result(False)  # the journal dies with one append in flight and four batches behind it
    for answers in await asyncio.gather(in_flight, *behind, read):
        assert all(isinstance(a, Unavailable) for a in answers)  # never acknowledged
    journal.gated = False
    await h.start()  # (the failed answers kicked the rebuild already)
    assert h.recoveries == 2
    assert await available(h) == 8  # o1's hold survived the rebuild; o2..o5 left no trace
    assert [e.batch_seq for e in store.journal._streams["s0"]] == [1, 2, 3]
    assert (await h.apply([reserve("o1", 2)]))[0].hold.held_qty == 2  # its retry: the same answer
    assert (await h.apply([reserve("o2", 3)]))[0].hold.held_qty == 3  # the unacknowledged ones apply anew
    assert await available(h) == 5
    await h.stop()


# ---- snapshots off the write path ----


class SlowJournal(FlakyJournal):
    """Appends take a while, as an fsync does: there is always one in flight under load."""

    async def append(self, entry: JournalEntry, expected_position: int) -> int:
        await asyncio.sleep(0.001)
        return await super().append(entry, expected_position)


class SlowSnapshots(InMemorySnapshotStore):
    """A save takes a while, as writing tens of MB to the object store does: the shard must
    keep journaling meanwhile (how fast the export itself runs does not decide the test)."""

    async def save(self, snapshot: Snapshot) -> None:
        for _ in range(30):
            await asyncio.sleep(0.001)
        await super().save(snapshot)


@pytest.mark.parametrize("slow", [False, True], ids=["instant-appends", "slow-appends"])
async def test_a_snapshot_taken_during_writes_is_the_state_at_its_position(clock: ManualClock, slow: bool) -> None:
    store = Store()
    store.snapshots = SlowSnapshots()
    if slow:  # a writer that never pauses: snapshot_now must still find a point to capture at
        store.journal = SlowJournal()
    h = host(store, clock, every_ops=6_001 + 40)  # the seeding's ops, then a policy snapshot among the writes
    await h.start()
    skus = [f"k{i}" for i in range(3_000)]  # enough cells for the export to take many slices
    await h.apply([PutSite(Site("ward1")), *(PutSku(Sku(s)) for s in skus)])
    await h.apply([Receive(f"r-{s}", s, "ward1", "L1", 10, status="available") for s in skus])

    async def writer() -> None:
        for i in range(120):  # keeps changing cells while the snapshots are exported
            sku = skus[(i * 37) % len(skus)]
            await h.apply([Reserve(f"o{i}", sku, "ward1", f"H{i}", (ReserveLine(1),), 60_000)])
            await asyncio.sleep(0)

    async def snapshot() -> tuple[int, int]:
        await asyncio.sleep(0)
        taken_at = await h.snapshot_now()
        return taken_at, h.batch_seq

    _, (taken_at, after) = await asyncio.gather(writer(), snapshot())
    assert after > taken_at + 1  # the shard kept journaling batches while the snapshot was exported
    await h.stop()  # waits for the policy's snapshot being saved
    snapshot = await store.snapshots.load("s0")
    assert snapshot is not None
    assert 2 < snapshot.batch_seq < h.batch_seq
    at_point, batch_seq, position = await rebuild(
        "s0", h.statuses, h.limits, store.journal, InMemorySnapshotStore(), until_batch_seq=snapshot.batch_seq
    )
    assert (batch_seq, position) == (snapshot.batch_seq, snapshot.position)
    assert at_point.export_state() == snapshot.state
    from_snapshot, _, _ = await rebuild("s0", h.statuses, h.limits, store.journal, store.snapshots)
    assert from_snapshot.state_hash() == h.core.state_hash()


async def test_a_started_host_raises_the_young_collection_threshold_and_never_lowers_it(clock: ManualClock) -> None:
    """A bulk load's survivors made CPython's 700-allocation young collections a quarter of
    the shard's CPU: a process hosting shards collects the young every 10,000."""
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, saved[1], saved[2])
        h = host(Store(), clock)
        await h.start()
        assert gc.get_threshold() == (YOUNG_THRESHOLD, saved[1], saved[2])
        await h.stop()
        gc.set_threshold(50_000, saved[1], saved[2])
        raise_young_threshold()
        assert gc.get_threshold()[0] == 50_000
    finally:
        gc.set_threshold(*saved)


async def test_a_state_hash_asked_of_a_restarted_host_starts_its_recovery(
    started: tuple[Store, ShardHost], clock: ManualClock
) -> None:
    store, h = started
    before = await h.state_hash()
    await h.stop()  # the process dies; Ray gives a new one that nothing has called yet
    again = host(store, clock)
    with pytest.raises(Unavailable, match="is new"):
        await again.state_hash()  # `verify` right after the restart: not served yet ...
    for _ in range(200):  # ... but it set the recovery going, as a write would
        await asyncio.sleep(0.01)
        with contextlib.suppress(Unavailable):
            assert await again.state_hash() == before
            break
    else:
        pytest.fail("the host never recovered after verify asked it")
    await again.stop()
