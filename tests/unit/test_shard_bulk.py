"""ReceiveBulk (a bulk load's receipts for one shard) is exactly its receipts one by one:
the same answers, movements and state, journaled as plain Receives that replay the same."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.memory.backend import shared_in_memory_backend
from adapters.nats.codec import decode_entry, encode_entry
from engine.domain.catalog import Site, Sku
from engine.domain.cell import CellLimits
from engine.domain.clock import ManualClock
from engine.domain.commands import Receive, Received
from engine.domain.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound, RequestConflict
from engine.domain.receipts import ReceiptColumns
from engine.domain.shard import RECEIVE_BULK_MAX, PutSite, PutSku, ReceiveBulk, ShardCore, journaled, op_weight
from engine.runtime.host import GroupCommit, ShardHost, rebuild

NOW_MS = 1_800_000_000_000


def core() -> ShardCore:
    shard = ShardCore("s0")
    shard.apply_batch([PutSku(Sku("strip")), PutSku(Sku("gauze")), PutSite(Site("ward1"))], NOW_MS)
    return shard


def receipts() -> tuple[Receive, ...]:
    return (
        Receive("r1", "strip", "ward1", "L1", 5, bin="A/1", expires_at_ms=NOW_MS + 9),
        Receive("r2", "gauze", "ward1", "L2", 3),
        Receive("r3", "nope", "ward1", "L3", 1),  # unknown sku: refused alone
        Receive("r1", "strip", "ward1", "L1", 5, bin="A/1", expires_at_ms=NOW_MS + 9),  # a retry: the first answer
        Receive("r1", "strip", "ward1", "L1", 6, bin="A/1", expires_at_ms=NOW_MS + 9),  # the id reused: a conflict
        Receive("r4", "strip", "ward1", "L1", 2, expires_at_ms=NOW_MS + 1),  # other dates for L1: refused
        Receive("r5", "strip", "ward1", "L1", 2, bin="A/2"),
    )


def answer(result: object) -> object:
    """Comparable: a refusal as its class and message; anything else means received."""
    return (type(result).__name__, result.message) if isinstance(result, DomainError) else "received"


def test_a_bulk_receipt_answers_moves_and_ends_as_its_receipts_one_by_one() -> None:
    bulk, single = core(), core()
    (results,) = bulk.apply_batch([ReceiveBulk(receipts())], NOW_MS)
    one_by_one = single.apply_batch(list(receipts()), NOW_MS)
    assert [answer(r) for r in results] == [answer(r) for r in one_by_one]
    assert [type(r) for r in one_by_one] == [
        Received,
        Received,
        NotFound,
        Received,
        RequestConflict,
        FailedPrecondition,
        Received,
    ]
    # A receipt received answers None: its answer is always Received(lot_id, qty).
    assert [r for r in results if not isinstance(r, DomainError)] == [None] * 4
    assert bulk.drain() == single.drain()
    assert bulk.state_hash() == single.state_hash()


def test_the_journal_records_its_receipts_and_a_group_weighs_them() -> None:
    op = ReceiveBulk(receipts())
    assert journaled(op) == receipts()
    assert journaled(PutSite(Site("w"))) == (PutSite(Site("w")),)
    assert op_weight([op, PutSite(Site("w"))]) == len(receipts()) + 1


def test_a_bulk_op_beyond_its_bound_is_refused_whole() -> None:
    shard = core()
    many = tuple(Receive(f"r{i}", "strip", "ward1", f"L{i}", 1) for i in range(RECEIVE_BULK_MAX + 1))
    (result,) = shard.apply_batch([ReceiveBulk(many)], NOW_MS)
    assert isinstance(result, InvalidArgument)
    assert shard.drain() == []
    assert shard.cells == {}


async def test_a_host_journals_bulk_receipts_as_receives_that_replay_to_the_same_state() -> None:
    backend = shared_in_memory_backend()
    host = ShardHost("s0", clock=ManualClock(), backend=backend, sweep_interval_ms=0, group_commit=GroupCommit(8))
    await host.start()
    try:
        await host.apply([PutSku(Sku("strip")), PutSku(Sku("gauze")), PutSite(Site("ward1"))])
        many = tuple(Receive(f"b{i}", "strip", "ward1", f"M{i}", 1 + i % 3) for i in range(20))
        (results,) = await host.apply([ReceiveBulk(many)])
        assert results == [None] * len(many)
        # Larger than a group's bound: it goes alone, as one entry of its 20 receipts.
        (first, second) = await host.apply([ReceiveBulk(receipts()[:2]), ReceiveBulk(receipts()[2:])])
        assert [type(r) for r in (*first, *second)][:3] == [type(None), type(None), NotFound]
        store = await backend()
        entries = [entry async for _, entry in store.journal.read("s0", 0)]
        assert [len(e.ops) for e in entries] == [3, 20, 7]
        assert all(type(op) is Receive for e in entries[1:] for op in e.ops)
        assert decode_entry(encode_entry(entries[1])) == entries[1]  # a plain batch record carries it
        rebuilt, batch_seq, _ = await rebuild("s0", host.statuses, host.limits, store.journal, store.snapshots)
        assert (batch_seq, rebuilt.state_hash()) == (host.batch_seq, host.core.state_hash())
    finally:
        await host.stop()


@pytest.mark.parametrize("n", [0, 1])
def test_an_empty_or_single_bulk_op_is_fine(n: int) -> None:
    shard = core()
    (results,) = shard.apply_batch([ReceiveBulk(receipts()[:n])], NOW_MS)
    assert len(results) == n


def test_a_bulk_op_travels_to_a_shard_process_as_plain_rows() -> None:
    op = ReceiveBulk(receipts())
    assert pickle.loads(pickle.dumps(op)) == op
    assert b"Receive\n" not in pickle.dumps(op, protocol=0)  # no Receive object is pickled


def test_a_bulk_op_of_columns_answers_as_one_of_receipts() -> None:
    """What the gateway sends (columns, engine.domain.receipts) applies as the receipts."""
    by_columns, by_receipts = core(), core()
    op = pickle.loads(pickle.dumps(ReceiveBulk(columns=ReceiptColumns.of(receipts()))))
    assert op == ReceiveBulk(receipts())
    (results,) = by_columns.apply_batch([op], NOW_MS)
    (expected,) = by_receipts.apply_batch([ReceiveBulk(receipts())], NOW_MS)
    assert [answer(r) for r in results] == [answer(r) for r in expected]
    assert journaled(op) == receipts()
    assert op_weight([op]) == len(receipts())
    assert by_columns.drain() == by_receipts.drain()
    assert by_columns.state_hash() == by_receipts.state_hash()
    with pytest.raises(ValueError, match="receipts or columns"):
        ReceiveBulk()


bulk_receipts = st.builds(
    Receive,
    request_id=st.sampled_from(["r1", "r2", "r3", "r4", "r5"]),
    sku=st.sampled_from(["strip", "gauze", "nope"]),  # "nope": not in the catalog, refused
    site=st.just("ward1"),
    lot_id=st.sampled_from(["L1", "L2", "L3"]),
    qty=st.integers(1, 3),
    bin=st.sampled_from(["", "A/1"]),
    status=st.sampled_from(["available", "qc_hold"]),
    expires_at_ms=st.sampled_from([0, NOW_MS + 1, NOW_MS + 2]),  # other dates for a lot: refused
    received_at_ms=st.sampled_from([0, NOW_MS - 5]),
    doc_ref=st.sampled_from(["", "PO-1"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.lists(bulk_receipts, max_size=10), st.integers(0, 3 * 60_000)), min_size=1, max_size=5),
)
def test_the_receipt_step_of_a_bulk_op_ends_as_the_general_command_path(
    batches: list[tuple[list[Receive], int]],
) -> None:
    # Cell.receive_checked (a ReceiveBulk's receipts) against Cell.handle (one Receive at a
    # time): the same answers, movements and state — windows trimmed by time and by count,
    # retries, ids reused, lots received again with or without their dates.
    limits = CellLimits(dedupe_window_ms=2 * 60_000, dedupe_max_entries=3)
    bulk, single = ShardCore("s0", limits=limits), ShardCore("s0", limits=limits)
    for shard in (bulk, single):
        shard.apply_batch([PutSku(Sku("strip")), PutSku(Sku("gauze")), PutSite(Site("ward1"))], NOW_MS)
    now_ms = NOW_MS
    for receipts_, step_ms in batches:
        now_ms += step_ms
        (results,) = bulk.apply_batch([ReceiveBulk(receipts_)], now_ms)
        one_by_one = single.apply_batch(list(receipts_), now_ms)
        assert [answer(r) for r in results] == [answer(r) for r in one_by_one]
        assert bulk.drain() == single.drain()
    assert bulk.export_state() == single.export_state()
