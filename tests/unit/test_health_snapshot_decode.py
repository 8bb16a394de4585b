"""Snapshots as they arrive on NATS: decoded strictly, each refusal with its dead-letter code."""

from __future__ import annotations

import json

import pytest

from adapters.nats.snapshots import SCHEMA, BadSnapshot, decode_snapshot, engine_snapshot_config
from engine.domain.deadletters import DeadLetterCode

GOOD = {
    "schema": SCHEMA,
    "snapshot_id": "s-1",
    "source": "wms:acme",
    "as_of_ms": 1_000,
    "lines": [
        {"site": "S", "sku": "A", "qty": 3},
        {"site": "S", "sku": "B", "lot_id": "L", "bin": "A/1", "status": "available", "qty": 0},
    ],
}


def test_a_good_snapshot() -> None:
    snap = decode_snapshot(json.dumps(GOOD).encode())
    assert (snap.snapshot_id, snap.source, snap.as_of_ms) == ("s-1", "wms:acme", 1_000)
    assert [line.key for line in snap.lines] == [("S", "A", "", "", ""), ("S", "B", "L", "A/1", "available")]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xff\xfe", DeadLetterCode.DECODE),
        (b"{oops", DeadLetterCode.DECODE),
        (json.dumps([1]).encode(), DeadLetterCode.SCHEMA),
        (json.dumps({**GOOD, "schema": "x"}).encode(), DeadLetterCode.SCHEMA),
        (json.dumps({**GOOD, "lines": [{"site": "S", "qty": 1}]}).encode(), DeadLetterCode.SCHEMA),
        (json.dumps({**GOOD, "lines": [{"site": "S", "sku": "A", "qty": "3"}]}).encode(), DeadLetterCode.SCHEMA),
        (json.dumps({**GOOD, "lines": [{"site": "S", "sku": "A", "qty": True}]}).encode(), DeadLetterCode.SCHEMA),
        (json.dumps({**GOOD, "as_of_ms": 1.5}).encode(), DeadLetterCode.SCHEMA),
    ],
)
def test_bad_snapshots_name_their_code(data: bytes, code: DeadLetterCode) -> None:
    with pytest.raises(BadSnapshot) as err:
        decode_snapshot(data)
    assert err.value.code is code


def test_subjects_per_namespace() -> None:
    assert engine_snapshot_config("lotwise", "nats://x").subject_prefix == "lotwise.snapshots"
    other = engine_snapshot_config("east.1", "nats://x")
    assert (other.subject_prefix, other.stream) == ("lotwise.east_1.snapshots", "LOTWISE_SNAPSHOTS_east_1")
