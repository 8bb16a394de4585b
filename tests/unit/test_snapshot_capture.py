"""A snapshot taken while the shard keeps serving (engine.domain.shard.SnapshotCapture):
whatever changes after the capture point, the snapshot is the state at that point."""

from __future__ import annotations

import io
import zlib

import fastavro
import pytest

from adapters.nats.records import shard_out
from adapters.nats.snapshot_codec import (
    AVRO_TAG,
    PartsReader,
    decode_state,
    encode_avro,
    encode_state,
    encode_state_parts,
    schema,
)
from engine.domain.catalog import Site, Sku
from engine.domain.commands import Commit, Receive, Release, Reserve, ReserveLine
from engine.domain.errors import InvariantViolation
from engine.domain.model import MS_PER_DAY
from engine.domain.shard import Adopt, HandOff, Op, PutSite, PutSku, ShardCore, Sweep
from engine.domain.state import export_cell
from tests.journal_samples import T0_MS

SKUS = [f"S{i}" for i in range(150)]


def a_busy_shard() -> ShardCore:
    core = ShardCore("s0")
    ops: list[Op] = [PutSite(Site("BOS")), *(PutSku(Sku(s)) for s in SKUS)]
    expires = T0_MS + 100 * MS_PER_DAY
    ops += [Receive(f"r-{s}", s, "BOS", "L1", 10, status="available", expires_at_ms=expires) for s in SKUS]
    ops += [Reserve(f"o-{s}", s, "BOS", f"H-{s}", (ReserveLine(2),), 1_000) for s in SKUS[::3]]
    core.apply_batch(ops, T0_MS)
    core.drain()
    return core


def changes(now_ms: int) -> list[Op]:
    """Touch cells already exported and cells not yet: commits, releases, new holds, new
    receipts, a hand-off out, an adopted cell, a sweep of expired holds."""
    ops: list[Op] = [Commit(f"c-{s}", s, "BOS", f"H-{s}") for s in SKUS[:30:3]]
    ops += [Release(f"x-{s}", s, "BOS", f"H-{s}") for s in SKUS[90::3]]
    ops += [Reserve(f"p-{s}", s, "BOS", f"P-{s}", (ReserveLine(1),), 60_000) for s in SKUS[::7]]
    ops += [Receive(f"q-{s}", s, "BOS", "L2", 5, status="available") for s in SKUS[1::5]]
    ops += [PutSku(Sku("NEW")), Receive("n1", "NEW", "BOS", "L1", 3, status="available")]
    ops.append(HandOff("S149", "BOS", "s1"))
    ops.append(Sweep())
    return ops


def test_a_capture_is_the_state_at_its_point_whatever_changes_during_it() -> None:
    core = a_busy_shard()
    expected = core.export_state()
    capture = core.begin_capture()
    assert not capture.step(budget_s=0)  # one slice only: most cells are still to export
    assert 0 < capture.remaining < len(core.cells)
    core.apply_batch(changes(T0_MS + 5_000), T0_MS + 5_000)  # past the first holds' TTL
    core.drain()
    moved_cell = export_cell(core.cells["S3", "BOS"])
    core.apply_batch([HandOff("S3", "BOS", "s1")], T0_MS + 5_000)
    core.drain()
    core.apply_batch([Adopt("S3", "BOS", moved_cell, (), ())], T0_MS + 5_001)
    while not capture.step(budget_s=0):
        core.apply_batch([Reserve("late", "S10", "BOS", "HL", (ReserveLine(1),), 60_000)], T0_MS + 6_000)
        core.drain()
    assert capture.state() == expected
    assert core.export_state() != expected  # the live shard did move on


def test_a_capture_refuses_undrained_movements_and_a_second_capture() -> None:
    core = a_busy_shard()
    core.apply_batch([Commit("c1", "S0", "BOS", "H-S0")], T0_MS + 1)
    with pytest.raises(InvariantViolation, match="undrained"):
        core.begin_capture()
    core.drain()
    capture = core.begin_capture()
    with pytest.raises(InvariantViolation, match="already"):
        core.begin_capture()
    with pytest.raises(InvariantViolation, match="before it was complete"):
        capture.state()
    capture.step(budget_s=None)
    assert capture.state() == core.export_state()


def test_a_snapshot_encoded_in_slices_decodes_as_one_encoded_at_once() -> None:
    state = a_busy_shard().export_state()
    record = {"format_version": 1, "shard": state.name, **shard_out(state)}
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema(1), record)  # the whole record at once, as before
    body = out.getvalue()
    assert encode_avro(state) == AVRO_TAG + body + zlib.crc32(body).to_bytes(4, "big")  # version 1's bytes
    whole = encode_state(state)
    sliced = list(encode_state_parts(state, budget_s=0))
    assert len(sliced) > 100  # a cell per slice at a zero budget: many Avro array blocks in the rest
    assert decode_state(b"".join(sliced)) == decode_state(whole) == decode_state(encode_avro(state)) == state
    empty = ShardCore("empty").export_state()
    assert decode_state(b"".join(encode_state_parts(empty, budget_s=0))) == empty


def test_a_saved_capture_releases_its_records_a_few_cells_at_a_time() -> None:
    core = a_busy_shard()
    capture = core.begin_capture()
    capture.step(budget_s=None)
    state = capture.state()
    turns = 0
    while not capture.release(budget_s=0):  # a zero budget: one cell per turn
        turns += 1
    assert turns == len(state.cells) - 1
    assert capture.complete
    core.apply_batch(changes(T0_MS + 1), T0_MS + 1)  # the shard no longer copies cells for it
    core.drain()
    assert core.begin_capture().remaining == len(core.cells)


def test_the_pieces_read_as_one_stream_give_the_joined_bytes() -> None:
    """The store reads a snapshot a chunk at a time from its pieces (never joined)."""
    pieces = [b"", b"abc", b"", b"defgh", b"i" * 10, b"j"]
    for chunk in (1, 2, 3, 7, 64):
        reader = PartsReader(pieces)
        buffer, out = bytearray(chunk), bytearray()
        while n := reader.readinto(buffer):
            out += buffer[:n]
        assert bytes(out) == b"".join(pieces)
