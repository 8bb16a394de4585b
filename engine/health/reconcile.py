"""Reconciliation maths (issue 15 item 4; notes E): a WMS/ERP stock snapshot against the
books as of the snapshot's own instant, classified, with streaks across cycles.

For each line (site, sku, lot, bin, status) of a snapshot taken at `as_of_ms`:
- the books as of `as_of_ms` (the balance the journal had reached then), and the range
  the balance went through within ± `skew_ms` of it (movements in flight: the WMS may
  have seen a movement a little earlier or later than the engine did);
- the class: `match` (equal), `timing` (the WMS figure is one the books held within the
  skew: explained by movements in flight, looked at again next cycle), `within_tolerance`
  (recorded, never acted on), or `real`;
- a `real` difference seen in two consecutive cycles raises an alert and a *proposed*
  adjustment, which waits for a person's approval (engine.health.proposals).

Tolerances are data per category (quantity %, absolute quantity, value), as Oracle's
cycle-count tolerances: a difference is within tolerance when it is within the
quantity bound (the larger of the absolute and the percentage of the books) and, when a
unit value is known, within the value bound too.

Everything here is pure and linear in the lines: 100,000 pairs per 30-s cycle is the
target (bench/reconcile.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.domain.errors import FieldViolation, InvalidArgument

TOLERANCE_SCHEMA = "lotwise.tolerances/1"
MAX_SNAPSHOT_LINES = 200_000
ALERT_AFTER_CYCLES = 2
CLASSES = ("match", "timing", "within_tolerance", "real")

Key = tuple[str, str, str, str, str]  # (site, sku, lot, bin, status)


@dataclass(frozen=True, slots=True)
class Tolerance:
    category: str = "*"
    qty_pct: float = 0.0  # of the books' quantity
    qty_abs: int = 0
    value: float = 0.0  # |difference| × unit value; 0: no value bound


@dataclass(frozen=True, slots=True)
class Tolerances:
    by_category: Mapping[str, Tolerance]
    categories: tuple[tuple[str, str], ...] = ()  # (sku_prefix, category), longest first
    unit_values: Mapping[str, float] = field(default_factory=dict)  # sku → value of one unit

    def of(self, sku: str) -> Tolerance:
        category = next((c for prefix, c in self.categories if sku.startswith(prefix)), "*")
        return self.by_category.get(category) or self.by_category.get("*") or Tolerance()


def parse_tolerances(raw: Any) -> Tolerances:
    """{"schema": "lotwise.tolerances/1", "categories": [{"sku_prefix", "category"}],
    "tolerances": [{"category", "qty_pct", "qty_abs", "value"}], "unit_values": {sku: v}}"""
    problems: list[str] = []
    if not isinstance(raw, dict) or raw.get("schema") != TOLERANCE_SCHEMA:
        raise ValueError(f"schema: must be {TOLERANCE_SCHEMA!r}")
    by_category: dict[str, Tolerance] = {}
    for i, t in enumerate(raw.get("tolerances", [])):
        where = f"tolerances[{i}]"
        if not isinstance(t, dict):
            problems.append(f"{where}: must be an object")
            continue
        try:
            tol = Tolerance(
                str(t.get("category", "*")),
                float(t.get("qty_pct", 0)),
                int(t.get("qty_abs", 0)),
                float(t.get("value", 0)),
            )
        except (TypeError, ValueError):
            problems.append(f"{where}: qty_pct, qty_abs and value must be numbers")
            continue
        if tol.qty_pct < 0 or tol.qty_abs < 0 or tol.value < 0:
            problems.append(f"{where}: bounds must be ≥ 0")
        if tol.category in by_category:
            problems.append(f"{where}.category: {tol.category!r} twice")
        by_category[tol.category] = tol
    cats = [(str(c["sku_prefix"]), str(c["category"])) for c in raw.get("categories", []) if isinstance(c, dict)]
    values = raw.get("unit_values", {})
    if not isinstance(values, dict):
        problems.append("unit_values: must be an object")
        values = {}
    if problems:
        raise ValueError("; ".join(problems))
    return Tolerances(
        by_category,
        tuple(sorted(cats, key=lambda pc: (-len(pc[0]), pc[0]))),
        {str(k): float(v) for k, v in values.items()},
    )


@dataclass(frozen=True, slots=True)
class SnapshotLine:
    site: str
    sku: str
    qty: int
    lot_id: str = ""
    bin: str = ""
    status: str = ""  # "" = every on-hand status together

    @property
    def key(self) -> Key:
        return (self.site, self.sku, self.lot_id, self.bin, self.status)


@dataclass(frozen=True, slots=True)
class StockSnapshot:
    """What a WMS or ERP says it holds, as of its own instant (`as_of_ms`, its clock)."""

    snapshot_id: str
    source: str  # "wms:<name>" / "erp:<name>"
    as_of_ms: int
    lines: tuple[SnapshotLine, ...]


def check_snapshot(s: StockSnapshot) -> None:
    bad: list[FieldViolation] = []
    if not s.snapshot_id or len(s.snapshot_id) > 128:
        bad.append(FieldViolation("snapshot_id", "must be 1..128 characters"))
    if not s.source or len(s.source) > 128:
        bad.append(FieldViolation("source", "must be 1..128 characters"))
    if s.as_of_ms <= 0:
        bad.append(FieldViolation("as_of_ms", "must be a positive epoch time in milliseconds"))
    if not s.lines or len(s.lines) > MAX_SNAPSHOT_LINES:
        bad.append(FieldViolation("lines", f"must hold 1..{MAX_SNAPSHOT_LINES} lines"))
    seen: set[Key] = set()
    for i, line in enumerate(s.lines):
        if not line.site or not line.sku:
            bad.append(FieldViolation(f"lines[{i}]", "site and sku are required"))
        if line.qty < 0:
            bad.append(FieldViolation(f"lines[{i}].qty", "must be ≥ 0"))
        if line.key in seen:
            bad.append(FieldViolation(f"lines[{i}]", "the same (site, sku, lot, bin, status) twice"))
        seen.add(line.key)
        if len(bad) >= 20:  # enough to fix the sender; the rest would only repeat
            break
    if bad:
        raise InvalidArgument(bad)


@dataclass(frozen=True, slots=True)
class BookWindow:
    """The books of one key around the snapshot's instant: the balance as of it, and the
    lowest and highest balance within ± skew (equal to `at` when nothing moved)."""

    at: int
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class Difference:
    key: Key
    external_qty: int
    book_qty: int
    diff: int  # external − books
    klass: str
    value: float  # |diff| × unit value (0 when unknown)


def classify(external: int, book: BookWindow, tol: Tolerance, unit_value: float) -> str:
    diff = external - book.at
    if diff == 0:
        return "match"
    if book.low <= external <= book.high:
        return "timing"
    bound = max(tol.qty_abs, book.at * tol.qty_pct / 100.0)
    if abs(diff) <= bound and (not tol.value or not unit_value or abs(diff) * unit_value <= tol.value):
        return "within_tolerance"
    return "real"


def compare(lines: Iterable[SnapshotLine], books: Mapping[Key, BookWindow], tolerances: Tolerances) -> list[Difference]:
    """Every line against the books. Keys the books hold and the snapshot does not name
    are not compared here: a snapshot may cover part of a site (a zone, some skus)."""
    out: list[Difference] = []
    zero = BookWindow(0, 0, 0)
    tol_of = tolerances.of
    values = tolerances.unit_values
    for line in lines:
        book = books.get(line.key, zero)
        unit_value = values.get(line.sku, 0.0)
        klass = classify(line.qty, book, tol_of(line.sku), unit_value)
        diff = line.qty - book.at
        out.append(Difference(line.key, line.qty, book.at, diff, klass, abs(diff) * unit_value))
    return out


def advance_streaks(previous: Mapping[Key, int], diffs: Iterable[Difference]) -> tuple[dict[Key, int], list[Key]]:
    """Real differences per key in consecutive cycles; the keys that just reached
    ALERT_AFTER_CYCLES (alerted once per streak, not every cycle after)."""
    streaks: dict[Key, int] = {}
    reached: list[Key] = []
    for d in diffs:
        if d.klass != "real":
            continue
        n = previous.get(d.key, 0) + 1
        streaks[d.key] = n
        if n == ALERT_AFTER_CYCLES:
            reached.append(d.key)
    return streaks, reached


@dataclass(frozen=True, slots=True)
class PairReport:
    site: str
    sku: str
    lines: int
    by_class: dict[str, int]
    abs_diff: int
    value_at_risk: float


@dataclass(frozen=True, slots=True)
class Report:
    snapshot_id: str
    as_of_ms: int
    lines: int
    by_class: dict[str, int]
    record_accuracy: float  # lines that match ÷ lines
    value_at_risk: float  # Σ value of real differences
    pairs: tuple[PairReport, ...]  # per (site, sku) with any difference


def report(snapshot: StockSnapshot, diffs: list[Difference]) -> Report:
    by_class = dict.fromkeys(CLASSES, 0)
    per_pair: dict[tuple[str, str], list[Any]] = {}
    value_at_risk = 0.0
    for d in diffs:
        by_class[d.klass] += 1
        if d.klass == "match":
            continue
        site, sku = d.key[0], d.key[1]
        acc = per_pair.get((site, sku))
        if acc is None:
            acc = per_pair[(site, sku)] = [0, dict.fromkeys(CLASSES, 0), 0, 0.0]
        acc[0] += 1
        acc[1][d.klass] += 1
        acc[2] += abs(d.diff)
        if d.klass == "real":
            acc[3] += d.value
            value_at_risk += d.value
    pairs = tuple(PairReport(s, k, a[0], a[1], a[2], a[3]) for (s, k), a in sorted(per_pair.items()))
    n = len(diffs)
    return Report(
        snapshot.snapshot_id,
        snapshot.as_of_ms,
        n,
        by_class,
        by_class["match"] / n if n else 1.0,
        value_at_risk,
        pairs,
    )
