"""A snapshot gives back the very shard (DESIGN.md §9): export → Avro → import of a shard
with holds, lots, remembered answers, hold headers and hand-off marks answers every later
command, retry and read exactly as the original does.

The hypothesis machine of tests/unit/test_invariants_stateful.py runs here once more with
one extra rule: replace the live cell by its own snapshot, at random points. The machine's
model knows nothing of the swap, so every later check holds only if the snapshot lost
nothing (idempotency window, hold parts, resolved holds, the expiry bound).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import rule

from adapters.nats.snapshot_codec import AVRO_VERSION, decode_state, encode_avro, encode_state
from engine.domain.cell import Dimension, SliceFilter
from engine.domain.commands import Commit, Receive, Release, Reserve, ReserveLine
from engine.domain.errors import DomainError, RequestConflict
from engine.domain.model import MS_PER_DAY
from engine.domain.shard import (
    LookupHold,
    Op,
    ReadCatalog,
    ReadHold,
    ReadSlice,
    ScanCells,
    ShardCore,
    Sweep,
)
from engine.domain.state import CellState, ShardState, export_cell, import_cell, window_of
from tests.journal_samples import SHARD, T0_MS, sample_batches
from tests.unit.test_invariants_stateful import LIMITS, STATUSES, CellMachine

ALL_DIMENSIONS = tuple(Dimension)


def through_a_snapshot(core: ShardCore, deferred_window: bool = False) -> ShardCore:
    """The shard restored from its snapshot; `deferred_window`: as recovery decodes it,
    the idempotency windows left encoded until a retry asks for an entry."""
    state = core.export_state()
    decoded = decode_state(encode_state(state), deferred_window)
    assert any(c.deferred is not None for c in decoded.cells) == deferred_window
    again = ShardCore.from_state(decoded, core.statuses, core.limits)
    assert again.export_state() == state
    assert again.state_hash() == core.state_hash()
    return again


def the_sample_shard() -> ShardCore:
    """The samples' scenario (catalog, every command, refusals, holds committed, released
    and aborted, a hand-off out and one expected in), then holds left active, one of them
    past its TTL and not swept yet."""
    core = ShardCore(SHARD)
    for now_ms, ops in sample_batches():
        core.apply_batch(ops, now_ms)
        core.drain()
    later = T0_MS + 10_000
    core.apply_batch(
        [
            Receive("r20", "SKU-1", "BOS", "L7", 30, "D/01", "available", "own", T0_MS + 400 * MS_PER_DAY),
            Reserve("r21", "SKU-1", "BOS", "H10", (ReserveLine(5),), 60_000),
            Reserve("r22", "SKU-1", "BOS", "H11", (ReserveLine(2),), 500),
        ],
        later,
    )
    core.drain()
    return core


def probes(core: ShardCore) -> list[Op]:
    """Every remembered request again (same payload, then another), every read, and new
    commands that depend on the holds, lots and the expiry bound."""
    retries: list[Op] = []
    for cell in core.cells.values():
        for remembered in export_cell(cell).remembered:
            retries.append(remembered.command)
    conflicting = [Receive(op.request_id, op.sku, op.site, "L-other", 1) for op in retries]
    everything = ScanCells(frozenset(), frozenset(), "", ALL_DIMENSIONS[:2], SliceFilter(), 0, 1_000)
    reads: list[Op] = [ReadCatalog(), everything]
    for sku, site in core.cells:
        reads += [ReadSlice(sku, site, ALL_DIMENSIONS[:4]), ReadSlice(sku, site, (Dimension.BIN,), bin_depth=1)]
    for hold_id in ("H1", "H2", "H3", "H10", "H11", "H-none"):
        reads += [ReadHold("SKU-1", "BOS", hold_id), LookupHold(hold_id)]
    writes: list[Op] = [
        Reserve("r30", "SKU-1", "BOS", "H12", (ReserveLine(6),), 60_000),
        Commit("r31", "SKU-1", "BOS", "H10", 2),
        Release("r32", "SKU-1", "BOS", "H2"),
        Commit("r33", "SKU-1", "BOS", "H11"),
        Receive("r34", "SKU-2", "BOS", "L8", 1),  # expected here: still on its way
        Receive("r35", "SKU-2", "NYC", "L8", 1),  # handed off: moved
        Sweep(),
    ]
    return retries + conflicting + reads + writes


@pytest.mark.parametrize("deferred_window", [False, True])
def test_a_shard_through_a_snapshot_answers_as_the_original(deferred_window: bool) -> None:
    original = the_sample_shard()
    restored = through_a_snapshot(original, deferred_window)
    ops = probes(original)
    assert any(isinstance(op, Reserve) for op in ops)
    for now_ms in (T0_MS + 10_100, T0_MS + 80_000):  # before and after the holds' TTLs
        expected = original.apply_batch(ops, now_ms)
        answers = restored.apply_batch(ops, now_ms)
        assert answers == expected
        assert restored.drain() == original.drain()
        assert restored.state_hash() == original.state_hash()
    assert any(isinstance(a, RequestConflict) for a in expected)
    assert any(isinstance(a, DomainError) and a.code == "UNAVAILABLE" for a in expected)


def test_every_remembered_answer_kind_survives_a_snapshot() -> None:
    state = the_sample_shard().export_state()
    answers = {type(r.answer).__name__ for c in state.cells for r in c.remembered}
    kinds = {r.answer.kind for c in state.cells for r in c.remembered if hasattr(r.answer, "kind")}
    assert {
        "Received",
        "Moved",
        "StatusChanged",
        "Reserved",
        "Committed",
        "Released",
        "Consumed",
        "Adjusted",
    } <= answers
    assert {"NotFound", "InsufficientStock", "FailedPrecondition"} <= kinds  # HOLD_ABORTED is a FailedPrecondition
    assert decode_state(encode_state(state)) == state
    assert decode_state(encode_avro(state, AVRO_VERSION)) == state


# ---- random histories (the cell machine, with snapshots in between) ----


def cell_through_a_snapshot(state: CellState) -> CellState:
    """The cell as recovery decodes it (its window left encoded), checked against the
    eager decode and the all-Avro one."""
    shard = ShardState("s", (), (), (), (), (), (), (state,))
    blob = encode_state(shard)
    [decoded] = decode_state(blob).cells
    [as_version_1] = decode_state(encode_avro(shard, AVRO_VERSION)).cells  # all Avro, still read
    assert as_version_1 == decoded
    [deferred] = decode_state(blob, deferred_window=True).cells
    assert window_of(deferred) == decoded
    return deferred


class SnapshotMachine(CellMachine):
    @rule()
    def restore_from_a_snapshot(self) -> None:
        state = export_cell(self.cell)
        restored = import_cell(cell_through_a_snapshot(state), STATUSES, LIMITS)
        assert export_cell(restored) == state
        assert restored.slice(self.now_ms, ALL_DIMENSIONS) == self.cell.slice(self.now_ms, ALL_DIMENSIONS)
        self.cell = restored


SnapshotMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSnapshotsKeepTheCell = SnapshotMachine.TestCase
