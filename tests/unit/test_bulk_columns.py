"""A bulk load's receipts as columns (engine.domain.receipts): row i is the i-th Receive,
whichever way the columns were made, cut or sent."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from engine.domain.commands import Receive
from engine.domain.model import External, Finance
from engine.domain.receipts import RECEIPT_FIELDS, ReceiptColumns

RECEIPTS = [
    Receive("r1", "strip", "ward1", "L1", 5, "A/1", "available", "own", 9, 8, 7, "PO-1", External.CUSTOMER),
    Receive("r2", "gauze", "ward2", "L2", 3),
    Receive("r3", "strip", "ward1", "L3", 1, finance=Finance(currency="EUR", unit_cost="1.50")),
]


def test_the_columns_are_a_receive_s_fields_in_its_order() -> None:
    assert tuple(f.name for f in dataclasses.fields(Receive)) == RECEIPT_FIELDS
    assert not hasattr(Receive, "__post_init__")  # receipts() sets the slots and skips it


def test_rows_are_the_receipts_however_the_columns_travel() -> None:
    columns = ReceiptColumns.of(RECEIPTS)
    assert len(columns) == 3
    assert columns.receipts() == RECEIPTS
    assert [columns.receipt(i) for i in range(3)] == RECEIPTS
    assert pickle.loads(pickle.dumps(columns)).receipts() == RECEIPTS
    assert b"Receive" not in pickle.dumps(columns, protocol=0)  # lists of values, no Receive object
    assert columns.take([2, 0]).receipts() == [RECEIPTS[2], RECEIPTS[0]]
    assert columns.take([1]).receipts() == [RECEIPTS[1]]
    assert columns.take([]).receipts() == []
    assert columns.take([0, 1, 2]) is columns
    assert ReceiptColumns.of([]).receipts() == []


def test_columns_of_unequal_length_or_number_are_refused() -> None:
    with pytest.raises(ValueError, match="unequal"):
        ReceiptColumns(*(["x"] * 2 if i else ["x"] for i in range(len(RECEIPT_FIELDS))))
    with pytest.raises(ValueError, match="given"):
        ReceiptColumns(["x"])
