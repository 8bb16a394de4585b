"""When a shard rewrites its snapshot: in proportion to the tail, not to the clock (DESIGN §9).

A snapshot re-encodes the whole state, so a period fixed in time made a large shard spend
CPU ∝ its size every minute whatever its traffic (bench/README.md, "Snapshots in
proportion to the tail"). The rule: rewrite once the ops journaled since the last snapshot
reach a fraction of the records a snapshot writes, within a floor and a ceiling; time only as a long
ceiling.
"""

from __future__ import annotations

import pytest

from adapters.memory.journal import InMemoryJournal
from adapters.memory.snapshots import InMemorySnapshotStore
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import Receive, Reserve, ReserveLine
from engine.domain.ports import Backend
from engine.domain.shard import PutSite, PutSku
from engine.runtime.host import ShardHost, SnapshotPolicy, rebuild

HOUR_MS = 3_600_000


def test_no_tail_is_never_due_however_old_the_snapshot() -> None:
    policy = SnapshotPolicy(min_tail_ops=10, interval_ms=1_000)
    assert not policy.due(0, 0, 10 * HOUR_MS)
    assert not policy.due(0, 10**7, 10 * HOUR_MS)


def test_a_small_state_snapshots_at_the_floor() -> None:
    policy = SnapshotPolicy(min_tail_ops=100, interval_ms=HOUR_MS, tail_fraction=0.5)
    assert policy.tail_limit(50) == 100  # 0.5 × 50 = 25 < the floor
    assert not policy.due(99, 50, 0)
    assert policy.due(100, 50, 0)


def test_a_large_state_waits_for_a_tail_proportional_to_it() -> None:
    policy = SnapshotPolicy(min_tail_ops=100, interval_ms=HOUR_MS, tail_fraction=0.5, max_tail_ops=10**9)
    assert policy.tail_limit(1_000_000) == 500_000
    assert not policy.due(499_999, 1_000_000, HOUR_MS - 1)
    assert policy.due(500_000, 1_000_000, 0)
    # The snapshot's cost per op stays bounded: twice the state, twice the tail between rewrites.
    assert policy.tail_limit(2_000_000) == 2 * policy.tail_limit(1_000_000)


def test_the_largest_states_are_capped_so_a_recovery_replays_a_bounded_tail() -> None:
    policy = SnapshotPolicy(min_tail_ops=100, interval_ms=HOUR_MS, tail_fraction=0.5, max_tail_ops=200_000)
    assert policy.tail_limit(10**8) == 200_000
    assert policy.due(200_000, 10**8, 0)


def test_time_is_only_a_long_ceiling_over_any_tail() -> None:
    policy = SnapshotPolicy(min_tail_ops=1_000, interval_ms=HOUR_MS, tail_fraction=0.5)
    assert not policy.due(1, 10**6, HOUR_MS - 1)
    assert policy.due(1, 10**6, HOUR_MS)
    assert SnapshotPolicy().interval_ms >= HOUR_MS  # the default is no longer a minute


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_tail_ops": 0},
        {"interval_ms": 0},
        {"tail_fraction": -0.1},
        {"min_tail_ops": 100, "max_tail_ops": 99},
    ],
)
def test_a_policy_out_of_bounds_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="SnapshotPolicy needs"):
        SnapshotPolicy(**kwargs)  # type: ignore[arg-type]


# ---- the host applies the rule ----

CELLS = 500


class Store:
    def __init__(self) -> None:
        self.journal = InMemoryJournal()
        self.snapshots = InMemorySnapshotStore()

    async def backend(self) -> Backend:
        async def close() -> None:
            return None

        return Backend(self.journal, self.snapshots, close)


async def saved_batch_seq(store: Store) -> int:
    snapshot = await store.snapshots.load("s0")
    return 0 if snapshot is None else snapshot.batch_seq


async def settle(h: ShardHost) -> None:
    task = h._snapshotting
    if task is not None:
        await task


def reserve(i: int) -> Reserve:
    return Reserve(f"o{i}", f"k{i % CELLS}", "ward1", f"H{i}", (ReserveLine(1),), 60_000)


async def seeded(store: Store, clock: ManualClock) -> tuple[ShardHost, int]:
    """A host over CELLS cells of one quant, one lot and one remembered receipt each,
    snapshotted: → (host, the tail it may now carry before the next rewrite)."""
    policy = SnapshotPolicy(min_tail_ops=10, interval_ms=HOUR_MS, tail_fraction=0.5)
    h = ShardHost("s0", clock=clock, backend=store.backend, sweep_interval_ms=0, snapshot_policy=policy)
    await h.start()
    skus = [f"k{i}" for i in range(CELLS)]
    await h.apply([PutSite(Site("ward1")), *(PutSku(Sku(s)) for s in skus)])
    await h.apply([Receive(f"r-{s}", s, "ward1", "L1", 10, status="available") for s in skus])
    await settle(h)
    assert await saved_batch_seq(store) == 2  # an empty state: the floor (10 ops) was due at once
    records = h.core.record_count()
    assert records == 3 * CELLS
    return h, policy.tail_limit(records)


async def test_a_host_snapshots_a_large_state_only_once_the_tail_is_a_fraction_of_it() -> None:
    store, clock = Store(), ManualClock()
    h, limit = await seeded(store, clock)
    assert limit == 750  # 0.5 × 1,500 records, where the floor alone (10) would rewrite ~75 times
    for i in range(limit - 1):
        await h.apply([reserve(i)])
        clock.advance(100)  # over a minute of engine time: no longer a trigger
    await settle(h)
    assert await saved_batch_seq(store) == 2
    await h.apply([reserve(limit)])
    await settle(h)
    assert await saved_batch_seq(store) == 2 + limit
    # The next tail is weighed against the state as that snapshot saw it (holds and window grew).
    assert h._state_records == h.core.record_count() > 3 * CELLS
    await h.stop()


async def test_a_restart_after_a_long_tail_recovers_exactly() -> None:
    store, clock = Store(), ManualClock()
    h, limit = await seeded(store, clock)
    tail = limit - 50  # a long tail, under the rewrite's limit: a restart replays all of it
    for i in range(tail):
        await h.apply([reserve(i)])
    await settle(h)
    assert await saved_batch_seq(store) == 2
    live_hash, live_seq = h.core.state_hash(), h.batch_seq
    await h.stop()

    again = ShardHost("s0", clock=clock, backend=store.backend, sweep_interval_ms=0, snapshot_policy=h.snapshot_policy)
    await again.start()
    assert (again.batch_seq, again.core.state_hash()) == (live_seq, live_hash)
    full, _, _ = await rebuild("s0", again.statuses, again.limits, store.journal, InMemorySnapshotStore())
    assert full.state_hash() == live_hash
    # The replayed tail counts toward the next rewrite, weighed against the state recovered.
    again_limit = again.snapshot_policy.tail_limit(again.core.record_count())
    assert again_limit > tail
    for i in range(tail, again_limit - 1):
        await again.apply([reserve(i)])
    await settle(again)
    assert await saved_batch_seq(store) == 2
    await again.apply([reserve(again_limit)])
    await settle(again)
    assert await saved_batch_seq(store) == live_seq + again_limit - tail
    await again.stop()
