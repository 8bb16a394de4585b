"""Reconciliation maths: classification, tolerances as data, streaks, the report."""

from __future__ import annotations

import pytest

from engine.domain.errors import InvalidArgument
from engine.health.reconcile import (
    TOLERANCE_SCHEMA,
    BookWindow,
    SnapshotLine,
    StockSnapshot,
    Tolerance,
    advance_streaks,
    check_snapshot,
    classify,
    compare,
    parse_tolerances,
    report,
)


def test_oracle_tolerance_example() -> None:
    # Oracle's cycle-count example: 100 @ $10, ±5 % and ±$200 (one symmetric bound here).
    tol = Tolerance(qty_pct=5, value=200)
    book = BookWindow(100, 100, 100)
    assert classify(100, book, tol, 10.0) == "match"
    assert classify(105, book, tol, 10.0) == "within_tolerance"
    assert classify(95, book, tol, 10.0) == "within_tolerance"
    assert classify(106, book, tol, 10.0) == "real"  # breaks the quantity bound
    assert classify(73, book, tol, 10.0) == "real"  # breaks both
    assert classify(105, book, Tolerance(qty_pct=5, value=40), 10.0) == "real"  # $50 > $40
    assert classify(102, book, Tolerance(qty_abs=2), 0.0) == "within_tolerance"


def test_movements_in_flight_are_timing() -> None:
    # The books were 100 at the snapshot's instant, went down to 90 a moment later.
    book = BookWindow(100, 90, 100)
    assert classify(92, book, Tolerance(), 0.0) == "timing"
    assert classify(89, book, Tolerance(), 0.0) == "real"


TOLS = parse_tolerances(
    {
        "schema": TOLERANCE_SCHEMA,
        "categories": [{"sku_prefix": "MED-", "category": "medical"}],
        "tolerances": [{"category": "medical", "qty_abs": 0}, {"category": "*", "qty_pct": 10}],
        "unit_values": {"MED-1": 25.0},
    }
)


def snap(*lines: SnapshotLine, sid: str = "snap-1") -> StockSnapshot:
    return StockSnapshot(sid, "wms:test", 1_000, lines)


def test_compare_and_report_per_site_and_sku() -> None:
    lines = (
        SnapshotLine("S1", "MED-1", 10, "L1"),  # books 12: real (medical: no tolerance), $50
        SnapshotLine("S1", "FOOD-1", 95),  # books 100: within 10 %
        SnapshotLine("S1", "FOOD-2", 100),  # match
        SnapshotLine("S2", "FOOD-3", 7),  # the books hold nothing: real
    )
    books = {
        ("S1", "MED-1", "L1", "", ""): BookWindow(12, 12, 12),
        ("S1", "FOOD-1", "", "", ""): BookWindow(100, 100, 100),
        ("S1", "FOOD-2", "", "", ""): BookWindow(100, 100, 100),
    }
    diffs = compare(lines, books, TOLS)
    assert [d.klass for d in diffs] == ["real", "within_tolerance", "match", "real"]
    assert diffs[0].diff == -2
    assert diffs[0].value == 50.0
    rep = report(snap(*lines), diffs)
    assert rep.by_class == {"match": 1, "timing": 0, "within_tolerance": 1, "real": 2}
    assert rep.record_accuracy == 0.25
    assert rep.value_at_risk == 50.0
    assert [(p.site, p.sku, p.abs_diff) for p in rep.pairs] == [
        ("S1", "FOOD-1", 5),
        ("S1", "MED-1", 2),
        ("S2", "FOOD-3", 7),
    ]


def test_an_alert_after_two_consecutive_cycles_once_per_streak() -> None:
    lines = (SnapshotLine("S1", "MED-1", 10),)
    books = {("S1", "MED-1", "", "", ""): BookWindow(12, 12, 12)}
    d = compare(lines, books, TOLS)
    s1, reached1 = advance_streaks({}, d)
    s2, reached2 = advance_streaks(s1, d)
    s3, reached3 = advance_streaks(s2, d)
    assert (reached1, reached2, reached3) == ([], [("S1", "MED-1", "", "", "")], [])
    fixed = compare(lines, {("S1", "MED-1", "", "", ""): BookWindow(10, 10, 10)}, TOLS)
    s4, _ = advance_streaks(s3, fixed)
    assert s4 == {}  # the streak is broken: a later difference starts again from one


def test_bad_snapshots_are_refused() -> None:
    with pytest.raises(InvalidArgument) as err:
        check_snapshot(StockSnapshot("", "", 0, (SnapshotLine("", "X", -1), SnapshotLine("", "X", -1))))
    fields = {v.field for v in err.value.violations}
    assert {"snapshot_id", "source", "as_of_ms", "lines[0]", "lines[0].qty", "lines[1]"} <= fields
    with pytest.raises(InvalidArgument):
        check_snapshot(StockSnapshot("s", "wms", 1, ()))


def test_bad_tolerance_files_are_refused() -> None:
    with pytest.raises(ValueError, match="schema"):
        parse_tolerances({"tolerances": []})
    with pytest.raises(ValueError, match=r"tolerances\[0\]"):
        parse_tolerances({"schema": TOLERANCE_SCHEMA, "tolerances": [{"qty_pct": "lots"}]})
    with pytest.raises(ValueError, match="≥ 0"):
        parse_tolerances({"schema": TOLERANCE_SCHEMA, "tolerances": [{"qty_abs": -1}]})
