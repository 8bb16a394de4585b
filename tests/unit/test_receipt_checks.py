"""The gateway's bulk receipt checks (ReceiptChecks) answer exactly as the full check does,
whichever contexts it has already found sane."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.commands import MAX_QTY, UNDO_SUFFIX, Receive
from engine.domain.errors import DomainError
from engine.domain.model import External, Finance
from engine.domain.receipts import ReceiptColumns
from engine.domain.statuses import DEFAULT_DICTIONARY
from engine.runtime.gateway.bulk import ReceiptChecks, check_receipt

_IDS = st.sampled_from(["s1", "s2", "a.b:c", "", "bad id", "x" * 129, "r" + UNDO_SUFFIX, "é", "a\nb", "c\n"])
_INTS: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([0, 1, 5, -1, MAX_QTY, MAX_QTY + 1, True, 2.0, "3"]), st.integers(-5, 10**13)
)
_RECEIPTS = st.builds(
    Receive,
    request_id=_IDS,
    sku=_IDS,
    site=_IDS,
    lot_id=_IDS,
    qty=_INTS,
    bin=st.sampled_from(["", "A/01/P3", "A//B", "/".join("a" * 9), "A B"]),
    status=st.sampled_from([*list(DEFAULT_DICTIONARY.statuses), "nope"]),
    owner=st.sampled_from(["own", "consignment:acme", "custody:x", "mine", ""]),
    expires_at_ms=_INTS,
    received_at_ms=_INTS,
    opened_at_ms=_INTS,
    doc_ref=st.sampled_from(["", "PO-1", "d" * 257]),
    source=st.sampled_from([*External, "@supplier", 3]),
    finance=st.sampled_from([None, Finance(currency="EUR", unit_cost="1.50"), Finance(currency="eur")]),
)


def _answer(err: DomainError | None) -> tuple[str, str] | None:
    return None if err is None else (err.code, err.message)


@settings(max_examples=400, deadline=None)
@given(st.lists(_RECEIPTS, min_size=1, max_size=40))
def test_the_fast_checks_answer_as_the_full_check(cmds: list[Receive]) -> None:
    checks = ReceiptChecks(DEFAULT_DICTIONARY)
    for cmd in cmds + cmds:  # the second time every sane context is remembered
        assert _answer(checks.check(cmd)) == _answer(check_receipt(cmd, DEFAULT_DICTIONARY))


_SANE = st.builds(
    Receive,
    request_id=st.sampled_from(["r1", "r2", "r.3:x", "x" * 128, "r@4#5+6"]),
    sku=st.sampled_from(["strip", "gauze"]),
    site=st.sampled_from(["ward1", "ward2"]),
    lot_id=st.sampled_from(["L1", "L2", "y" * 128]),
    qty=st.sampled_from([1, 7, MAX_QTY]),
    bin=st.sampled_from(["", "A/01"]),
    status=st.sampled_from(["available", "receiving"]),
    expires_at_ms=st.sampled_from([0, 1_900_000_000_000]),
    doc_ref=st.sampled_from(["", "PO-1", "d" * 256]),
    source=st.sampled_from([External.SUPPLIER, External.CUSTOMER]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_SANE, _SANE, _SANE, _RECEIPTS), max_size=30), st.data())
def test_the_column_checks_answer_as_the_full_check_row_by_row(cmds: list[Receive], data: st.DataObject) -> None:
    """A chunk of mostly sane lots, now and then a bad one: the same refusals, by row."""
    checks = ReceiptChecks(DEFAULT_DICTIONARY)
    for _ in range(2):  # the second time every sane context is remembered
        refused = checks.check_columns(ReceiptColumns.of(cmds))
        expected = {i: _answer(check_receipt(cmd, DEFAULT_DICTIONARY)) for i, cmd in enumerate(cmds)}
        assert {i: _answer(refused.get(i)) for i in range(len(cmds))} == expected
        cmds = data.draw(st.permutations(cmds))


def test_a_remembered_context_still_checks_each_lot_s_own_fields() -> None:
    checks = ReceiptChecks(DEFAULT_DICTIONARY)
    assert checks.check(Receive("r1", "strip", "ward1", "L1", 5, "A/01")) is None
    plain_source: Any = "@supplier"  # equal to External.SUPPLIER, and hashed alike
    refused = [
        Receive("r2", "strip", "ward1", "L 2", 5, "A/01"),
        Receive("r3", "strip", "ward1", "L3", 0, "A/01"),
        Receive("r4" + UNDO_SUFFIX, "strip", "ward1", "L4", 1, "A/01"),
        Receive("r5", "strip", "ward1", "L5", 1, "A/01", expires_at_ms=-1),
        Receive("r6", "strip", "ward1", "L6", 1, "A/01", doc_ref="d" * 257),
        Receive("r7", "strip", "ward1", "L7", 1, "A/01", source=plain_source),
        Receive("r8", "strip", "ward1", "L8", 1, "A/01", finance=Finance(currency="eur")),
    ]
    for cmd in refused:
        err = checks.check(cmd)
        assert err is not None
        assert err.code == "INVALID_ARGUMENT"
