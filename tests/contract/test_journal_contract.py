"""The Journal and SnapshotStore contract (DESIGN.md §9, §10), for every backend.

Positions are opaque: the in-memory journal counts per shard, JetStream uses the stream
sequence shared by all shards. The contract only promises that they grow, that
`last_position` is the last one returned, and that `read` gives them back.
"""

from __future__ import annotations

import pytest

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
)
from engine.domain.model import External, Finance
from engine.domain.ports import JournalConflict, JournalEntry, Snapshot
from tests.contract.conftest import Backend
from tests.nats_fixtures import journal_entry
from tests.state_fixtures import shard_state


async def append_all(backend: Backend, entries: list[JournalEntry]) -> list[int]:
    positions: list[int] = []
    position = await backend.journal.last_position(entries[0].shard)
    for entry in entries:
        position = await backend.journal.append(entry, position)
        positions.append(position)
    return positions


async def read_all(backend: Backend, shard: str, after: int = 0) -> list[tuple[int, JournalEntry]]:
    return [item async for item in backend.journal.read(shard, after)]


# ---- journal ----


async def test_an_unknown_shard_is_empty(backend: Backend, shard: str) -> None:
    assert await backend.journal.last_position(shard) == 0
    assert await read_all(backend, shard) == []


async def test_appends_come_back_in_order_with_their_positions(backend: Backend, shard: str) -> None:
    entries = [journal_entry(shard, n) for n in range(1, 6)]

    positions = await append_all(backend, entries)

    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    assert positions[0] > 0
    assert await read_all(backend, shard) == list(zip(positions, entries, strict=True))
    assert await backend.journal.last_position(shard) == positions[-1]


async def test_many_entries_read_back_complete(backend: Backend, shard: str) -> None:
    """More entries than one read batch of the JetStream backend (16 in the suite)."""
    entries = [journal_entry(shard, n) for n in range(1, 101)]

    positions = await append_all(backend, entries)

    read = await read_all(backend, shard)
    assert [p for p, _ in read] == positions
    assert [e.batch_seq for _, e in read] == list(range(1, 101))


async def test_shards_are_isolated(backend: Backend, shard: str) -> None:
    other = shard + "x"
    mine, theirs = [], []
    for n in range(1, 4):  # interleaved: positions of one shard are not contiguous in a shared stream
        mine.append(await backend.journal.append(journal_entry(shard, n), mine[-1] if mine else 0))
        theirs.append(await backend.journal.append(journal_entry(other, n, qty=7), theirs[-1] if theirs else 0))

    assert [(p, e.shard) for p, e in await read_all(backend, shard)] == [(p, shard) for p in mine]
    assert [(p, e.shard) for p, e in await read_all(backend, other)] == [(p, other) for p in theirs]
    assert await backend.journal.last_position(shard) == mine[-1]
    assert await backend.journal.last_position(other) == theirs[-1]


async def test_read_after_a_position_gives_only_later_entries(backend: Backend, shard: str) -> None:
    entries = [journal_entry(shard, n) for n in range(1, 6)]
    positions = await append_all(backend, entries)

    assert await read_all(backend, shard, positions[1]) == list(zip(positions[2:], entries[2:], strict=True))
    assert await read_all(backend, shard, positions[-1]) == []


async def test_commands_come_back_with_their_financial_context_and_buckets(backend: Backend, shard: str) -> None:
    """What the business-event bus reads from the journal: each op as the caller sent it."""
    eur = Finance(currency="EUR", unit_cost="12.50", unit_price="19.99", tax_rate="0.20", terms="2/10 n/30")
    ops = (
        Receive("r1", "sku-1", "site-1", "L1", 5, status="returned_pending", source=External.CUSTOMER, finance=eur),
        Move("r2", "sku-1", "site-1", "L1", 1, "", "A/01", finance=eur),
        ChangeStatus("r3", "sku-1", "site-1", "L1", 1, "available", "damaged", finance=eur),
        Reserve("r4", "sku-1", "site-1", "H1", (ReserveLine(1),), 60_000, finance=eur),
        Commit("r5", "sku-1", "site-1", "H1", finance=eur),
        Release("r6", "sku-1", "site-1", "H1", finance=Finance(terms="net 30")),
        Consume("r7", "sku-1", "site-1", 2, destination=External.SCRAP, status="damaged", finance=eur),
        Adjust("r8", "sku-1", "site-1", "L1", 3),
    )
    base = journal_entry(shard, 1)
    entry = JournalEntry(shard, 1, base.now_ms, ops, base.movements)

    [position] = await append_all(backend, [entry])

    assert await read_all(backend, shard) == [(position, entry)]


async def test_a_stale_writer_is_fenced_and_nothing_is_appended(backend: Backend, shard: str) -> None:
    positions = await append_all(backend, [journal_entry(shard, 1), journal_entry(shard, 2)])
    before = await read_all(backend, shard)

    for stale in (0, positions[0], positions[-1] + 1_000):
        with pytest.raises(JournalConflict) as caught:
            await backend.journal.append(journal_entry(shard, 3), stale)
        assert caught.value.expected_position == stale

    assert await read_all(backend, shard) == before
    assert await backend.journal.last_position(shard) == positions[-1]
    # The writer that knows the last position goes on.
    assert await backend.journal.append(journal_entry(shard, 3), positions[-1]) > positions[-1]


async def test_the_first_append_must_expect_an_empty_shard(backend: Backend, shard: str) -> None:
    with pytest.raises(JournalConflict):
        await backend.journal.append(journal_entry(shard, 1), 5)
    assert await backend.journal.last_position(shard) == 0


async def test_a_fenced_append_to_one_shard_leaves_others_alone(backend: Backend, shard: str) -> None:
    other = shard + "o"
    first = await backend.journal.append(journal_entry(other, 1), 0)
    await backend.journal.append(journal_entry(shard, 1), 0)

    with pytest.raises(JournalConflict):
        await backend.journal.append(journal_entry(shard, 2), 0)

    assert await backend.journal.append(journal_entry(other, 2), first) > first


# ---- snapshots ----


async def test_no_snapshot_loads_as_none(backend: Backend, shard: str) -> None:
    assert await backend.snapshots.load(shard) is None


async def test_the_newest_snapshot_is_loaded(backend: Backend, shard: str) -> None:
    older = Snapshot(shard, batch_seq=3, position=30, taken_at_ms=1_000, state=shard_state(shard, 10, label="older"))
    newer = Snapshot(shard, batch_seq=7, position=70, taken_at_ms=2_000, state=shard_state(shard, 10, label="newer"))

    await backend.snapshots.save(older)
    assert await backend.snapshots.load(shard) == older
    await backend.snapshots.save(newer)

    assert await backend.snapshots.load(shard) == newer


async def test_snapshots_are_per_shard(backend: Backend, shard: str) -> None:
    mine = Snapshot(shard, 1, 10, 1_000, shard_state(shard, 1, label="mine"))
    await backend.snapshots.save(mine)
    await backend.snapshots.save(Snapshot(shard + "x", 2, 20, 1_000, shard_state(shard + "x", 1, label="theirs")))

    assert await backend.snapshots.load(shard) == mine
    assert await backend.snapshots.load(shard + "y") is None


async def test_an_empty_snapshot_round_trips(backend: Backend, shard: str) -> None:
    empty = Snapshot(shard, 0, 0, 5, shard_state(shard))
    await backend.snapshots.save(empty)
    assert await backend.snapshots.load(shard) == empty


async def test_a_large_snapshot_round_trips(backend: Backend, shard: str) -> None:
    """60,000 quants (about 2.4 MB of Avro): several chunks of the object store."""
    big = Snapshot(shard, 42, 4_200, 9_000, shard_state(shard, 60_000, cells=20))

    await backend.snapshots.save(big)

    loaded = await backend.snapshots.load(shard)
    assert loaded is not None
    assert (loaded.batch_seq, loaded.position, loaded.taken_at_ms) == (42, 4_200, 9_000)
    assert loaded.state == big.state
