"""Data health per (site, sku) over the last 12 months (issue 14 item 6). Pure.

Suggestions are only as good as the data under them: below the thresholds a suggestion
is still made, but flagged, and nothing is sent automatically.

- document completeness: receipts and issues that name their document (`doc_ref`);
- returns matched: customer returns (receipts from `@customer`) whose document names an
  earlier sale or issue of the same sku at the same site;
- lots with a missing expiry: receipts of a perishable pair (the supplier terms give a
  shelf life) whose lot has no expiry date (vague words are refused at the door:
  engine.domain.vague_dates);
- gifts without a tax attribute: issues given away (unit price 0) with no tax rate,
  counted by the trigger follower from the journal (the history keeps no prices).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from engine.domain.model import NO_EXPIRY_MS, External, Movement, MovementKind

MIN_COMPLETENESS = 0.992
MIN_RETURNS_MATCHED = 0.985
HEALTH_DAYS = 365
CUSTOMER = "@customer"
SUPPLIER = "@supplier"
_DOCUMENT_KINDS = frozenset({MovementKind.RECEIVE, MovementKind.CONSUME, MovementKind.COMMIT})


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    min_completeness: float = MIN_COMPLETENESS
    min_returns_matched: float = MIN_RETURNS_MATCHED


@dataclass(slots=True)
class GiftCount:
    gifts: int = 0
    without_tax: int = 0


@dataclass(slots=True)
class PairHealth:
    site: str
    sku: str
    documents: int = 0
    documents_complete: int = 0
    returns: int = 0
    returns_matched: int = 0
    lots: int = 0
    lots_missing_expiry: int = 0
    gifts: int = 0
    gifts_without_tax: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def completeness(self) -> float:
        return self.documents_complete / self.documents if self.documents else 1.0

    @property
    def returns_matched_ratio(self) -> float:
        return self.returns_matched / self.returns if self.returns else 1.0

    @property
    def ok(self) -> bool:
        return not self.problems


def _bucket_name(bucket: object) -> str:
    return bucket.value if isinstance(bucket, External) else ""


def pair_health(
    sku: str,
    site: str,
    movements: Iterable[Movement],
    *,
    perishable: bool,
    gifts: GiftCount | None = None,
    thresholds: HealthThresholds = HealthThresholds(),
) -> PairHealth:
    """The health of one pair from its movements (oldest first)."""
    return finished(pair_counts(sku, site, movements), perishable=perishable, gifts=gifts, thresholds=thresholds)


def pair_counts(sku: str, site: str, movements: Iterable[Movement]) -> PairHealth:
    """The counts of one pair's health from its movements (oldest first), before the supplier
    terms, the gifts and the thresholds are applied: `lots_missing_expiry` counts every lot
    whose first receipt has no expiry, as if the pair were perishable (finished() decides)."""
    h = PairHealth(site, sku)
    sale_docs: set[str] = set()
    lots_seen: set[str] = set()
    for m in movements:
        src, dst = _bucket_name(m.src), _bucket_name(m.dst)
        if m.kind in _DOCUMENT_KINDS and (src in (SUPPLIER, CUSTOMER) or dst == CUSTOMER):
            h.documents += 1
            h.documents_complete += bool(m.doc_ref)
        if dst == CUSTOMER and m.doc_ref:
            sale_docs.add(m.doc_ref)
        if m.kind is MovementKind.RECEIVE and src == CUSTOMER:
            h.returns += 1
            h.returns_matched += m.doc_ref in sale_docs
        if m.kind is MovementKind.RECEIVE and src == SUPPLIER and m.lot_id not in lots_seen:
            lots_seen.add(m.lot_id)
            h.lots += 1
            h.lots_missing_expiry += m.lot is None or m.lot.expires_at_ms == NO_EXPIRY_MS
    return h


def finished(
    counts: PairHealth,
    *,
    perishable: bool,
    gifts: GiftCount | None = None,
    thresholds: HealthThresholds = HealthThresholds(),
) -> PairHealth:
    """The pair's health from its counts (pair_counts, HealthCounts) and what the history
    does not hold: whether the pair is perishable, its gifts, the thresholds."""
    h = replace(counts, lots_missing_expiry=counts.lots_missing_expiry if perishable else 0, problems=[])
    if gifts is not None:
        h.gifts, h.gifts_without_tax = gifts.gifts, gifts.without_tax
    h.problems = problems_of(h, thresholds)
    return h


class HealthCounts(Protocol):
    """pair_counts for many pairs over their movements since `from_ms`, aggregated where the
    movements are (one query for many pairs, no movement read back). Pairs without a
    movement may be absent."""

    async def health_counts(self, pairs: Sequence[tuple[str, str]], from_ms: int) -> dict[tuple[str, str], PairHealth]:
        """Keyed by (sku, site)."""
        ...


def problems_of(h: PairHealth, t: HealthThresholds) -> list[str]:
    out = []
    if h.completeness < t.min_completeness:
        out.append(f"document completeness {h.completeness:.1%} < {t.min_completeness:.1%}")
    if h.returns_matched_ratio < t.min_returns_matched:
        out.append(f"returns matched {h.returns_matched_ratio:.1%} < {t.min_returns_matched:.1%}")
    if h.lots_missing_expiry:
        out.append(f"{h.lots_missing_expiry} lot(s) without an expiry date")
    if h.gifts_without_tax:
        out.append(f"{h.gifts_without_tax} gift(s) without a tax attribute")
    return out
