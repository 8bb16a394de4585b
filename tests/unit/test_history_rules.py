"""The history's pure rules: cursors, days, legs, what a row can hold, the sink's bounds."""

from __future__ import annotations

import pytest

from adapters.clickhouse.queries import (
    MOVEMENT_COLUMNS,
    UnrepresentableMovement,
    movement_columns,
    movement_row,
    quote_str,
    record_from_row,
)
from adapters.clickhouse.sink import SinkConfig, batch_token
from adapters.nats.follower import _Held
from adapters.nats.history import follower_config
from engine.domain.errors import InvalidArgument
from engine.domain.history import (
    HistoryRecord,
    day_span,
    decode_cursor,
    encode_cursor,
    iso_day,
    quant_delta,
    quant_legs,
    unrepresentable,
)
from engine.domain.model import MS_PER_DAY, External, Lot, Movement, MovementKind, Provenance, QuantKey
from tests.history_fixtures import all_records, sample_history

T0 = 1_767_225_600_000
A = QuantKey("L1", "A/01", "available", "own")
B = QuantKey("L1", "B/02", "qc_hold", "consignment:acme")


def test_cursors_round_trip_and_refuse_anything_else() -> None:
    cursor = encode_cursor(T0, "sku-1", "site-1", 42)
    assert decode_cursor(cursor) == (T0, "sku-1", "site-1", 42)
    for bad in ("", "m1.", "m1.!!!", "m2." + cursor[3:], cursor[:-3], "m1.WzEsMiwzXQ", "x" * 2_000):
        with pytest.raises(InvalidArgument):
            decode_cursor(bad)


def test_days_are_utc_and_a_range_touches_whole_days() -> None:
    assert iso_day(T0 // MS_PER_DAY) == "2026-01-01"
    assert list(day_span(T0, T0 + 1)) == [T0 // MS_PER_DAY]
    assert len(day_span(T0, T0 + MS_PER_DAY)) == 1  # the end is exclusive
    assert len(day_span(T0 - 1, T0 + MS_PER_DAY + 1)) == 3


def test_every_movement_is_a_sum_of_signed_legs() -> None:
    move = Movement(3, MovementKind.MOVE, "s", "x", "L1", 4, A, B)
    assert list(quant_legs(move)) == [(A, -4, 0), (B, 4, 0)]
    assert quant_delta(move) == 0
    commit = Movement(4, MovementKind.COMMIT, "s", "x", "L1", 2, A, External.CUSTOMER, held_key=A, held_delta=-2)
    assert list(quant_legs(commit)) == [(A, -2, 0), (A, 0, -2)]
    assert quant_delta(commit) == -2


def test_a_row_holds_one_lot_and_round_trips() -> None:
    receipt = Movement(
        1, MovementKind.RECEIVE, "s", "x", "L1", 9, External.SUPPLIER, A, lot=Lot("L1", T0, T0 + 5), doc_ref="PO"
    )
    reserve = Movement(2, MovementKind.RESERVE, "s", "x", "L1", 0, A, A, held_key=A, held_delta=3, hold_id="h")
    for m in (receipt, reserve):
        assert unrepresentable(m) == ""
        record = HistoryRecord("shard-0", 7, 99, m)
        assert record_from_row(movement_row(record)) == record
    other_lot = Movement(3, MovementKind.MOVE, "s", "x", "L1", 1, A, QuantKey("L2", "", "available", "own"))
    assert "touches lot 'L2'" in unrepresentable(other_lot)


def test_the_insert_columns_are_the_rows_column_by_column() -> None:
    """The sink's column-wise build writes exactly what movement_row says of each movement."""
    records = all_records(sample_history(seed=11))
    counted = Movement(
        9, MovementKind.COUNT, "s", "x", "L1", 2, External.COUNT_VARIANCE, A, provenance=Provenance("rfid", 0.9, T0)
    )
    records.append(HistoryRecord("shard-1", 8, 100, counted))
    assert {r.movement.kind for r in records} >= {MovementKind.RECEIVE, MovementKind.RESERVE, MovementKind.COMMIT}
    rows = [movement_row(r) for r in records]
    assert movement_columns(records) == [list(column) for column in zip(*rows, strict=True)]
    assert movement_columns([]) == [[] for _ in MOVEMENT_COLUMNS]
    other_lot = Movement(3, MovementKind.MOVE, "s", "x", "L1", 1, A, QuantKey("L2", "", "available", "own"))
    other_dates = Movement(4, MovementKind.RECEIVE, "s", "x", "L1", 1, External.SUPPLIER, A, lot=Lot("L2", T0))
    for bad in (other_lot, other_dates):
        with pytest.raises(UnrepresentableMovement):
            movement_columns([*records[:3], HistoryRecord("shard-1", 9, 101, bad)])


def test_string_literals_are_escaped() -> None:
    assert quote_str("it's a \\ test") == "'it\\'s a \\\\ test'"


def test_sink_bounds_are_checked_and_a_batch_token_names_its_messages() -> None:
    with pytest.raises(ValueError, match="max_ack_pending"):
        SinkConfig(batch_max_messages=100, max_ack_pending=10)
    with pytest.raises(ValueError, match="batch_max_rows"):
        SinkConfig(batch_max_rows=0)
    assert batch_token("S", (5, 6, 9)) == batch_token("S", (9, 5, 6))
    assert batch_token("S", (5, 6, 9)) != batch_token("S", (5, 6, 10))
    config = follower_config(SinkConfig(batch_max_messages=3, batch_max_ms=100))
    a = _Held()
    a.msgs = dict.fromkeys((5, 6, 9))  # type: ignore[assignment]
    a.opened = 0.0
    window_ms = config.batch_max_ms
    assert a.due(config, 0.0, window_ms)  # full by messages
    c = _Held()
    assert not c.due(config, 10.0, window_ms)  # empty is never due
    c.msgs, c.opened = {1: None}, 10.0  # type: ignore[dict-item]
    assert not c.due(config, 10.05, window_ms)
    assert c.due(config, 10.2, window_ms)
    assert not c.due(config, 10.2, config.busy_batch_max_ms)  # a busy journal's window is longer
    assert config.busy_batch_max_ms == SinkConfig().busy_batch_max_ms == 2_000.0
