"""The direct writer of order-path journal entries (adapters/nats/entry_writer.py) writes
exactly the bytes fastavro writes, and hands everything else back to fastavro."""

from __future__ import annotations

import dataclasses
import glob
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.nats.codec import (
    SCHEMA_VERSION,
    decode_entry,
    encode_entry,
    encode_entry_fastavro,
    schema_path,
)
from adapters.nats.entry_writer import EntryWriter
from engine.domain.commands import Commit, Receive, Release, Reserve, ReserveLine, Strategy
from engine.domain.model import External, Finance, Lot, Movement, MovementKind, Provenance, QuantKey
from engine.domain.ports import JournalEntry
from engine.domain.shard import HoldHeader, RegisterHold

SAMPLES = Path(__file__).parents[1] / "data" / "journal"
WRITER = EntryWriter(json.loads(schema_path().read_text()))

# Texts: empty, ASCII, non-ASCII, and longer than 63 bytes (a two-byte length prefix).
_texts = st.sampled_from(["", "L1", "A/01", "available", "own", "é", "倉庫", "x" * 63, "y" * 64, "z" * 300])
_longs = st.integers(-(2**63), 2**63 - 1) | st.integers(-200, 200)
_keys = st.builds(QuantKey, _texts, _texts, _texts, _texts)
_finance = st.none() | st.builds(
    Finance, _texts, _texts, _texts, _texts, _texts, _texts, _texts, _texts, st.booleans(), _texts, _texts, _texts
)
_movements = st.builds(
    Movement,
    seq=_longs,
    kind=st.sampled_from(list(MovementKind)),
    sku=_texts,
    site=_texts,
    lot_id=_texts,
    qty=_longs,
    src=st.sampled_from(list(External)) | _keys,
    dst=st.sampled_from(list(External)) | _keys,
    held_key=st.none() | _keys,
    held_delta=_longs,
    hold_id=_texts,
    request_id=_texts,
    doc_ref=_texts,
    at_ms=_longs,
    lot=st.none() | st.builds(Lot, _texts, _longs, _longs, _longs),
    expires_at_ms=_longs,
    provenance=st.none() | st.builds(Provenance, _texts, st.floats(allow_nan=False), _longs),
)
_lines = st.builds(
    ReserveLine, _longs, st.sampled_from(list(Strategy)), _texts, _texts, st.floats(allow_nan=False), _texts
)
_ops = st.one_of(
    st.builds(
        Reserve,
        _texts,
        _texts,
        _texts,
        _texts,
        st.tuples(_lines) | st.lists(_lines, max_size=3).map(tuple),
        _longs,
        _texts,
        _finance,
    ),
    st.builds(Commit, _texts, _texts, _texts, _texts, st.none() | _longs, _texts, _finance),
    st.builds(Release, _texts, _texts, _texts, _texts, _texts, st.booleans(), _finance),
    st.builds(
        RegisterHold,
        st.builds(
            HoldHeader, _texts, _texts, st.lists(st.tuples(_texts, _texts), max_size=3).map(tuple), _longs, _longs
        ),
    ),
)


def _entry(ops: list[object], movements: list[Movement], batch_seq: int = 1, now_ms: int = 5) -> JournalEntry:
    return JournalEntry("shard-0", batch_seq, now_ms, tuple(ops), tuple(movements))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.lists(_ops, max_size=6), st.lists(_movements, max_size=6), _longs, _longs)
def test_order_path_entries_are_written_as_fastavro_writes_them(
    ops: list[object], movements: list[Movement], batch_seq: int, now_ms: int
) -> None:
    entry = _entry(ops, movements, batch_seq, now_ms)
    body = WRITER.write(SCHEMA_VERSION, entry.shard, batch_seq, now_ms, entry.ops, entry.movements)
    assert body is not None  # the direct writer took it: every op here is one it knows
    assert encode_entry(entry) == encode_entry_fastavro(entry)
    assert encode_entry(entry)[:-4] == body


@pytest.mark.parametrize("path", sorted(glob.glob(str(SAMPLES / "v*.bin"))), ids=lambda p: Path(p).name)
def test_every_committed_sample_encodes_as_fastavro_encodes_it(path: str) -> None:
    entry = decode_entry(Path(path).read_bytes())
    assert encode_entry(entry) == encode_entry_fastavro(entry)
    assert decode_entry(encode_entry(entry)) == entry


def test_an_entry_with_another_op_goes_to_fastavro() -> None:
    receive = Receive("r1", "s", "x", "L1", 5, status="available", expires_at_ms=10)
    entry = _entry([Commit("c1", "s", "x", "H1", 1), receive], [])
    assert WRITER.write(SCHEMA_VERSION, entry.shard, 1, 5, entry.ops, entry.movements) is None
    assert encode_entry(entry) == encode_entry_fastavro(entry)
    assert decode_entry(encode_entry(entry)) == entry


@pytest.mark.parametrize(
    "odd",
    [
        {"qty": 2.0},  # a float where the schema has a long
        {"qty": 2**63},  # a long out of Avro's range
        {"sku": b"s"},  # bytes where the schema has a string
        {"sku": "\ud800"},  # a lone surrogate: not UTF-8
    ],
)
def test_a_value_the_writer_does_not_expect_goes_to_fastavro(odd: dict[str, object]) -> None:
    """Whatever fastavro does with it (write or refuse), the entry gets that, not a guess."""
    movement = Movement(
        1, MovementKind.CONSUME, "s", "x", "L1", 2, QuantKey("L1", "", "available", "own"), External.CUSTOMER
    )
    odd_movement = dataclasses.replace(movement, **odd)  # type: ignore[arg-type]
    entry = _entry([], [odd_movement])
    assert WRITER.write(SCHEMA_VERSION, entry.shard, 1, 5, entry.ops, entry.movements) is None
    try:
        expected: bytes | type[Exception] = encode_entry_fastavro(entry)
    except Exception as exc:  # fastavro refuses it: so must encode_entry, with the same error
        expected = type(exc)
    if isinstance(expected, bytes):
        assert encode_entry(entry) == expected
    else:
        with pytest.raises(expected):
            encode_entry(entry)


def test_the_writer_refuses_a_schema_whose_entry_it_does_not_know() -> None:
    schema = json.loads(schema_path().read_text())
    schema["fields"].append({"name": "extra", "type": "long", "default": 0})
    with pytest.raises(ValueError, match="the writer knows"):
        EntryWriter(schema)
