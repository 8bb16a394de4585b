"""Every journal and snapshot format ever written decodes into today's types; a format
this release cannot read is refused by name; a snapshot gives back the very shard.

The samples in tests/data/journal/ were written by the release that introduced each
version (see its README), from the scenario in tests/journal_samples.py.
"""

from __future__ import annotations

import io
import pickle
import zlib
from collections import Counter
from dataclasses import replace
from pathlib import Path

import fastavro
import pytest

from adapters.nats.codec import READABLE_VERSIONS, SCHEMA_VERSION, decode_entry, encode_entry, schema
from adapters.nats.records import NS
from adapters.nats.snapshot_codec import (
    AVRO_TAG,
    LEGACY_TAG,
    SNAPSHOT_VERSION,
    TAG,
    decode_state,
    encode_avro,
    encode_state,
)
from adapters.nats.snapshot_codec import FORMAT as SNAPSHOT_FORMAT
from adapters.nats.snapshot_codec import (
    READABLE_VERSIONS as SNAPSHOT_VERSIONS,
)
from adapters.nats.snapshot_codec import schema as snapshot_schema
from engine.domain.commands import NO_PREV_SEQ, Adjust, DeviceOp
from engine.domain.formats import UnsupportedFormat
from engine.domain.shard import Adopt, ShardCore
from engine.domain.state import CellState
from tests.journal_samples import SHARD, T0_MS, as_v1, health_batches, relative_batches, sample_batches

SAMPLES = Path(__file__).parents[1] / "data" / "journal"
# The digests of today's state_hash (it covers the sku's freshness fields since journal v4,
# so these changed then; the samples did not).
STATE_HASH = {1: "ead207c010f0281f5da20c91b9781fe3", 2: "8d5f1236bc33716a33a3d57dde50f7c0"}
STATE_HASH[3] = STATE_HASH[4] = STATE_HASH[5] = STATE_HASH[6] = STATE_HASH[7] = STATE_HASH[
    2
]  # v3 on wrote the v2 scenario unchanged
ADOPTED_HASH = "bb0a876a8876dff8209b628f6a1003ad"
HEALTH_HASH = "32e6423f7afecae35043db896642fa49"  # after health_batches() (v4 on)
RELATIVE_HASH = "8248c5886daf5a1e1a9ada297d06cf46"  # after relative_batches() (v6 on)


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def scenario(version: int) -> list[tuple[int, tuple[object, ...]]]:
    """The batches as the release of `version` journaled them."""
    if version == 1:
        return [(now_ms, tuple(as_v1(op) for op in ops)) for now_ms, ops in sample_batches()]
    return sample_batches()


def replayed(version: int) -> ShardCore:
    core = ShardCore(SHARD)
    for seq, (now_ms, ops) in enumerate(scenario(version), start=1):
        entry = decode_entry(sample(f"v{version}-batch-{seq}.bin"))
        assert (entry.shard, entry.batch_seq, entry.now_ms, entry.ops) == (SHARD, seq, now_ms, ops)
        core.apply_batch(entry.ops, entry.now_ms)
        assert tuple(core.drain()) == entry.movements  # the check recovery makes on replay
        assert decode_entry(encode_entry(entry)) == entry  # and it re-encodes in today's version
    return core


def test_a_sample_of_every_readable_version_is_committed() -> None:
    assert {int(p.name[1]) for p in SAMPLES.glob("v*-batch-1.bin")} == set(READABLE_VERSIONS)
    assert SCHEMA_VERSION in READABLE_VERSIONS
    assert SNAPSHOT_VERSION in SNAPSHOT_VERSIONS
    assert {p.name for p in SAMPLES.glob("snapshot-*.bin")} == {
        "snapshot-LWS1.bin",
        *(f"snapshot-v{v}.bin" for v in SNAPSHOT_VERSIONS),
    }


@pytest.mark.parametrize("version", READABLE_VERSIONS)
def test_every_committed_batch_decodes_into_todays_types_and_replays(version: int) -> None:
    assert replayed(version).state_hash() == STATE_HASH[version]


@pytest.mark.parametrize("version", READABLE_VERSIONS)
def test_an_adopted_cell_of_every_version_decodes_to_its_typed_state(version: int) -> None:
    """v1 and v2 carried the handed-off cell as a pickle; it is upcast to a CellState."""
    entry = decode_entry(sample(f"v{version}-adopt-1.bin"))
    [adopt] = entry.ops
    assert isinstance(adopt, Adopt)
    assert isinstance(adopt.cell, CellState)
    assert (adopt.cell.sku, adopt.cell.site, adopt.cell.seq) == ("SKU-2", "NYC", 1)
    target = ShardCore("shard-4")
    target.apply_batch(entry.ops, entry.now_ms)
    assert tuple(target.drain()) == entry.movements
    assert target.state_hash() == ADOPTED_HASH
    assert decode_entry(encode_entry(entry)) == entry


@pytest.mark.parametrize("name", ["snapshot-LWS1.bin", *(f"snapshot-v{v}.bin" for v in SNAPSHOT_VERSIONS)])
def test_every_committed_snapshot_decodes_to_the_replayed_shard(name: str) -> None:
    state = decode_state(sample(name))
    expected = replayed(2).export_state()
    if name in ("snapshot-LWS1.bin", "snapshot-v1.bin", "snapshot-v2.bin"):  # before the out-of-stock marks
        expected = replace(expected, cells=tuple(replace(c, zeroed=()) for c in expected.cells))
    assert state == expected
    assert ShardCore.from_state(state).state_hash() == STATE_HASH[2]


def test_the_v5_receipts_sample_decodes_from_its_columns_and_replays() -> None:
    """v5's `receipts`: a bulk receipt entry as columns (tests/unit/test_receipt_columns.py
    wrote it from `bulk_entry`); it decodes to that entry, and replays to its movements."""
    from tests.unit.test_receipt_columns import bulk_entry

    _, expected = bulk_entry()
    entry = decode_entry(sample("v5-receipts-1.bin"))
    assert entry == expected
    record = fastavro.schemaless_reader(io.BytesIO(sample("v5-receipts-1.bin")[:-4]), schema(5))
    assert (record["ops"], record["movements"]) == ([], [])
    assert record["receipts"]


def test_the_v4_health_batches_decode_and_replay_and_their_snapshot_reads_back() -> None:
    """Batches 6 and 7 (v4 on): the cell commands of stock health, and a snapshot after them
    (version 3) that holds them in its window and the sku's freshness fields in its catalog."""
    core = replayed(4)
    for seq, (now_ms, ops) in enumerate(health_batches(), start=6):
        entry = decode_entry(sample(f"v4-health-{seq}.bin"))
        assert (entry.batch_seq, entry.now_ms, entry.ops) == (seq, now_ms, ops)
        core.apply_batch(entry.ops, entry.now_ms)
        assert tuple(core.drain()) == entry.movements
        assert decode_entry(encode_entry(entry)) == entry
    assert core.state_hash() == HEALTH_HASH
    assert {m.source for m in decode_entry(sample("v4-health-6.bin")).movements} >= {"rfid", "recogniser"}
    state = decode_state(sample("health-snapshot-v3.bin"))
    assert state == core.export_state()
    assert ShardCore.from_state(state).state_hash() == HEALTH_HASH
    assert state.skus[0].substitutes == ("SKU-2",)
    [bos] = [c for c in state.cells if c.site == "BOS"]
    assert bos.devices == (("POS-3", 8),)
    moved = decode_entry(sample("v4-health-7.bin")).movements
    assert [m.business_at_ms for m in moved if m.request_id in ("r26", "r28")] == [T0_MS + 3_600_000, T0_MS]


def test_the_v6_relative_batch_decodes_and_replays_and_its_snapshot_reads_back() -> None:
    """Batch 8 (v6 on): relative adjustments (one refused: it would take held or missing
    units) and device ops naming their previous seq on the cell (one after a gap: refused,
    the watermark unmoved); a snapshot after it (version 4) reads back to the same shard."""
    core = replayed(4)
    for seq, (now_ms, _) in enumerate(health_batches(), start=6):
        core.apply_batch(decode_entry(sample(f"v4-health-{seq}.bin")).ops, now_ms)
    core.drain()
    [(now_ms, ops)] = relative_batches()
    entry = decode_entry(sample("v6-relative-8.bin"))
    assert (entry.batch_seq, entry.now_ms, entry.ops) == (8, now_ms, ops)
    results = core.apply_batch(entry.ops, entry.now_ms)
    assert tuple(core.drain()) == entry.movements
    assert decode_entry(encode_entry(entry)) == entry
    assert core.state_hash() == RELATIVE_HASH
    assert [r.variance for r in results[1:3]] == [-3, 2]  # type: ignore[union-attr]
    assert [getattr(r, "reason", "") for r in (results[3], results[5])] == ["INSUFFICIENT_STOCK", "DEVICE_OPS_MISSING"]
    assert [m.qty for m in entry.movements if m.request_id in ("r30", "r31")] == [3, 2]
    state = decode_state(sample("health-snapshot-v4.bin"))
    assert state == core.export_state()
    [bos] = [c for c in state.cells if c.site == "BOS"]
    assert bos.devices == (("POS-3", 9),)


def test_a_v4_adjust_and_device_op_read_as_absolute_and_not_saying_their_previous_seq() -> None:
    ops = tuple(op for n in range(1, 6) for op in decode_entry(sample(f"v4-batch-{n}.bin")).ops)
    ops += decode_entry(sample("v4-health-7.bin")).ops
    adjusts = [op for op in ops if isinstance(op, Adjust)]
    device_ops = [op for op in ops if isinstance(op, DeviceOp)]
    assert adjusts
    assert all(a.delta_qty == 0 and not a.relative for a in adjusts)
    assert device_ops
    assert all(d.prev_seq == NO_PREV_SEQ for d in device_ops)


# ---- formats this release cannot read ----


def test_a_pickle_naming_anything_but_domain_values_is_refused() -> None:
    foreign = pickle.dumps(Counter(a=1))
    with pytest.raises(UnsupportedFormat, match=r"collections\.Counter is not a domain value") as caught:
        decode_state(LEGACY_TAG + foreign)
    assert (caught.value.format, caught.value.version) == ("shard snapshot LWS1 (pickle)", None)

    record = fastavro.schemaless_reader(io.BytesIO(sample("v2-adopt-1.bin")[:-4]), schema(2), return_record_name=True)
    [(name, adopt)] = record["ops"]
    adopt["cell_blob"] = foreign
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema(2), {**record, "ops": [(name, adopt)]})
    with pytest.raises(UnsupportedFormat) as refused:
        decode_entry(out.getvalue() + zlib.crc32(out.getvalue()).to_bytes(4, "big"))
    assert (refused.value.format, refused.value.version) == ("journal batch Adopt.cell_blob (pickle)", 2)


def test_an_unknown_snapshot_tag_or_version_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedFormat, match="unknown snapshot format") as tag:
        decode_state(b"LWZ9" + b"\x00" * 16)
    assert (tag.value.format, tag.value.version) == ("shard snapshot tagged b'LWZ9'", None)

    out = io.BytesIO()
    fastavro.schemaless_writer(out, {"type": "record", "name": "V", "fields": [{"name": "v", "type": "int"}]}, {"v": 5})
    body = out.getvalue() + b"\x00" * 8  # an Avro (LWSA) body names its Avro version: 1 to 4
    with pytest.raises(UnsupportedFormat, match="unknown snapshot schema version 5") as version:
        decode_state(AVRO_TAG + body + zlib.crc32(body).to_bytes(4, "big"))
    assert (version.value.format, version.value.version) == (SNAPSHOT_FORMAT, 5)

    newer = SNAPSHOT_VERSION + 1
    body = newer.to_bytes(2, "little") + sample(f"snapshot-v{SNAPSHOT_VERSION}.bin")[len(TAG) + 2 : -4]
    with pytest.raises(UnsupportedFormat, match=f"unknown snapshot schema version {newer}") as columnar:
        decode_state(TAG + body + zlib.crc32(body).to_bytes(4, "big"))
    assert (columnar.value.format, columnar.value.version) == (SNAPSHOT_FORMAT, newer)


@pytest.mark.parametrize("version", SNAPSHOT_VERSIONS)
def test_a_damaged_snapshot_is_not_mistaken_for_another_format(version: int) -> None:
    data = bytearray(sample(f"snapshot-v{version}.bin"))
    data[len(TAG) + 7] ^= 0xFF
    with pytest.raises(ValueError, match="checksum") as caught:
        decode_state(bytes(data))
    assert not isinstance(caught.value, UnsupportedFormat)


def test_a_columnar_snapshot_cut_short_or_padded_is_damaged_not_misread() -> None:
    """The CRC is recomputed, so only the columns' own bounds can tell."""
    data = sample(f"snapshot-v{SNAPSHOT_VERSION}.bin")
    body = data[len(TAG) : -4]
    for damaged in (body[:-9], body + b"\x00", body[: len(body) // 2]):
        with pytest.raises(ValueError, match="undecodable snapshot") as caught:
            decode_state(TAG + damaged + zlib.crc32(damaged).to_bytes(4, "big"))
        assert not isinstance(caught.value, UnsupportedFormat)


def test_the_snapshot_schema_names_the_journal_types_it_uses() -> None:
    named = snapshot_schema()["__named_schemas"]
    assert {NS + "CellState", NS + "Sku", NS + "Site", NS + "RegisterHold", NS + "ShardSnapshot"} <= set(named)
    state = replayed(2).export_state()
    assert encode_state(state) == sample(f"snapshot-v{SNAPSHOT_VERSION}.bin")
    assert encode_avro(state) == sample("snapshot-v1.bin")  # version 1's bytes, still reproducible
