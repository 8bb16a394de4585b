"""Replay applies the receipts a journal entry shows accepted without validating them again
(engine.domain.shard.replay_ops): the state and the movements must be exactly what the
primary made and what a replay validating every op makes — refused receipts, retries and
ids reused across receipts included."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.catalog import Site, Sku
from engine.domain.commands import Commit, Receive, Reserve, ReserveLine
from engine.domain.model import Lot, Movement, QuantKey
from engine.domain.ports import JournalCorrupt, JournalEntry
from engine.domain.shard import RECEIVE_BULK_MAX, Op, PutSite, PutSku, ReceiveBulk, ShardCore, journaled, replay_ops
from engine.runtime.host import replay_entry

NOW_MS = 1_800_000_000_000
SKUS = ("strip", "gauze")


def core() -> ShardCore:
    shard = ShardCore("s0")
    shard.apply_batch([*(PutSku(Sku(s)) for s in SKUS), PutSite(Site("ward1"))], NOW_MS)
    shard.drain()
    return shard


def primary_entry(shard: ShardCore, ops: Sequence[Op], batch_seq: int = 1) -> JournalEntry:
    """What a primary journals for `ops`: every mutating op, and the movements made."""
    shard.apply_batch(ops, NOW_MS)
    journaled_ops = tuple(one for op in ops for one in journaled(op))
    return JournalEntry("s0", batch_seq, NOW_MS, journaled_ops, tuple(shard.drain()))


def validated_replay(shard: ShardCore, entry: JournalEntry) -> None:
    """Replay as it was before: every op validated again."""
    shard.apply_batch(entry.ops, entry.now_ms)
    assert tuple(shard.drain()) == entry.movements


def test_accepted_receipts_go_in_runs_and_the_rest_as_they_are() -> None:
    valid = Receive("r1", "strip", "ward1", "L1", 5)
    invalid_first = Receive("r2", "strip", "ward1", "L2", 0)  # qty 0: refused by validation
    valid_after = Receive("r2", "strip", "ward1", "L2", 4)  # the same id, accepted after it
    unknown = Receive("r3", "nope", "ward1", "L3", 1)  # refused by the shard: no movement
    ops: list[Op] = [valid, invalid_first, valid_after, unknown, PutSite(Site("ward2")), valid]
    entry = primary_entry(core(), ops)
    out = list(replay_ops(entry.ops, entry.movements))
    # r1 is used twice in the entry (the second is a retry), r2 by a receipt that validation
    # refused and one accepted after it: all are validated as before.
    assert out == ops
    alone = Receive("r4", "gauze", "ward1", "L4", 2)
    entry = primary_entry(core(), [alone, unknown, PutSite(Site("ward2"))])
    assert list(replay_ops(entry.ops, entry.movements)) == [ReceiveBulk([alone]), unknown, PutSite(Site("ward2"))]


def test_a_receipt_alone_with_its_movement_is_applied_checked_in_bounded_runs() -> None:
    many = [Receive(f"b{i}", SKUS[i % 2], "ward1", f"L{i}", 1 + i % 3) for i in range(RECEIVE_BULK_MAX + 5)]
    refused = Receive("bad", "strip", "ward1", "LX", -1)
    entry = primary_entry(core(), [*many[:3], refused, *many[3:]])
    out = list(replay_ops(entry.ops, entry.movements))
    assert out[0] == ReceiveBulk(many[:3])
    assert out[1] == refused
    assert [len(op) for op in out[2:] if isinstance(op, ReceiveBulk)] == [RECEIVE_BULK_MAX, 2]
    assert replay_ops((refused,), ()) == (refused,)  # no receipt accepted: the ops as they are


def test_an_accepted_receipt_replays_with_the_movement_it_made() -> None:
    # The journal has each receipt's movement: replay applies it as it is (Cell.replay_receipt).
    ops: list[Op] = [Receive(f"m{i}", SKUS[i % 2], "ward1", f"L{i}", 2, expires_at_ms=NOW_MS + i) for i in range(5)]
    entry = primary_entry(core(), ops)
    (bulk,) = replay_ops(entry.ops, entry.movements)
    assert isinstance(bulk, ReceiveBulk)
    assert bulk.made is not None
    assert {id(m) for m in bulk.made} == {id(m) for m in entry.movements}  # the journal's own
    assert [m.request_id for m in bulk.made] == [r.request_id for r in bulk.receipts]
    shard = core()
    replay_entry(shard, entry, 1, "s0")
    assert all(shard.cells[(m.sku, m.site)].ledger.lots[m.lot_id] is m.lot for m in entry.movements)


def _tampered(m: Movement, how: str) -> Movement:
    assert m.lot is not None
    assert isinstance(m.dst, QuantKey)
    match how:
        case "qty":
            return replace(m, qty=m.qty + 1)
        case "bin":
            return replace(m, dst=replace(m.dst, bin="B/9"))
        case "lot dates":
            return replace(m, lot=Lot(m.lot.lot_id, m.lot.received_at_ms, m.lot.expires_at_ms + 1))
        case "no lot":
            return replace(m, lot=None)
        case "at":
            return replace(m, at_ms=m.at_ms + 1)
        case "doc_ref":
            return replace(m, doc_ref="PO-9")
        case _:
            return replace(m, seq=m.seq + 1)


@pytest.mark.parametrize("how", ["qty", "bin", "lot dates", "no lot", "at", "doc_ref", "seq"])
def test_a_receipt_whose_journaled_movement_does_not_fit_stops_replay(how: str) -> None:
    # A movement that is not the one the receipt makes is not applied: the replay diverges
    # from the journal and stops (JournalCorrupt), as when the movement was made again.
    ops: list[Op] = [Receive("t1", "strip", "ward1", "L1", 2, expires_at_ms=NOW_MS + 1)]
    entry = primary_entry(core(), ops)
    bad = JournalEntry("s0", 1, NOW_MS, entry.ops, (_tampered(entry.movements[0], how),))
    shard = core()
    with pytest.raises(JournalCorrupt):
        replay_entry(shard, entry=bad, position=1, stream="s0")
    assert all(not cell.ledger.quants for cell in shard.cells.values())  # nothing of it applied


receipts = st.builds(
    Receive,
    request_id=st.sampled_from(["r1", "r2", "r3", "r4"]),
    sku=st.sampled_from([*SKUS, "nope"]),
    site=st.just("ward1"),
    lot_id=st.sampled_from(["L1", "L2", ""]),  # "" is refused by validation
    qty=st.integers(-1, 3),  # 0 and -1 are refused by validation
    bin=st.sampled_from(["", "A/1", "A//1"]),  # "A//1" is refused by validation
    expires_at_ms=st.sampled_from([0, NOW_MS + 1, NOW_MS + 2]),  # other dates for a lot: refused
)
orders = st.sampled_from(["reserve", "commit"]).map(
    lambda kind: (
        Reserve("o1", "strip", "ward1", "H1", (ReserveLine(1),), 60_000)
        if kind == "reserve"
        else Commit("c1", "strip", "ward1", "H1")
    )
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.one_of(receipts, receipts, orders), max_size=12), min_size=1, max_size=4))
def test_replay_without_validating_accepted_receipts_ends_as_the_primary(batches: list[list[Op]]) -> None:
    primary, checked, validated = core(), core(), core()
    for seq, ops in enumerate(batches, start=1):
        entry = primary_entry(primary, ops, seq)
        replay_entry(checked, entry, seq, "s0")  # raises JournalCorrupt if the movements differ
        validated_replay(validated, entry)
    # Everything replay must rebuild, the idempotency window included.
    assert checked.export_state() == primary.export_state() == validated.export_state()
    assert checked.state_hash() == primary.state_hash()
