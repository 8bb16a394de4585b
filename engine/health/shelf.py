"""Shelf counts from recognisers (issue 15 item 5): photo recognition of a store shelf,
RFID gates. Each count says how many units of a sku it saw in a bin, and how sure it is.

Compared with the books of that bin: a confident zero is *out of stock*, a confident count
under the sku's facing minimum is *low facing*; both lists go to the site's named sales rep
(`SalesReps`, data: site → rep, "*" for the rest) as business events addressed to them. A
count never changes stock: below the confidence threshold it is only reported, above it a
difference may become a *proposed* adjustment (a person approves).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.domain.errors import FieldViolation, InvalidArgument

MAX_COUNTS = 10_000  # per call
SALES_REPS_SCHEMA = "lotwise.sales_reps/1"
MAX_SALES_REPS = 100_000  # sites named in one file
_REP_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:@+")


@dataclass(frozen=True, slots=True)
class SalesReps:
    """Who takes a site's shelf lists: the rep named for the site, else the "*" default,
    else nobody (the lists then go to the site's subject only)."""

    by_site: Mapping[str, str] = field(default_factory=dict)

    def rep_for(self, site: str) -> str:
        return self.by_site.get(site) or self.by_site.get("*", "")


def parse_sales_reps(raw: object) -> SalesReps:
    """`{"schema": "lotwise.sales_reps/1", "reps": {"<site>": "<rep>", "*": "<default>"}}`;
    ValueError naming every bad entry (a rep is an id: letters, digits, `._-:@+`)."""
    if not isinstance(raw, dict) or raw.get("schema") != SALES_REPS_SCHEMA:
        raise ValueError(f"schema: must be {SALES_REPS_SCHEMA!r}")
    reps = raw.get("reps")
    if not isinstance(reps, dict) or len(reps) > MAX_SALES_REPS:
        raise ValueError(f"reps: must be an object of at most {MAX_SALES_REPS} site → rep entries")
    bad = [
        f"reps[{site!r}]: must be a rep id of 1..128 letters, digits or ._-:@+"
        for site, rep in reps.items()
        if not site or not isinstance(rep, str) or not 0 < len(rep) <= 128 or not set(rep) <= _REP_CHARS
    ]
    unknown = set(raw) - {"schema", "reps"}
    if unknown:
        bad.append(f"unknown keys: {', '.join(sorted(unknown))}")
    if bad:
        raise ValueError("; ".join(bad[:20]))
    return SalesReps(dict(reps))


@dataclass(frozen=True, slots=True)
class ShelfCount:
    site: str
    bin: str
    sku: str
    counted: int
    confidence: float  # 0..1


@dataclass(frozen=True, slots=True)
class ShelfRules:
    confidence_threshold: float = 0.9  # at or above: a count may propose an adjustment
    low_facing_qty: int = 2  # fewer units than this on a confident count: low facing
    low_facing_by_sku: Mapping[str, int] = field(default_factory=dict)
    sales_reps: SalesReps = field(default_factory=SalesReps)


@dataclass(frozen=True, slots=True)
class ShelfLine:
    count: ShelfCount
    book_qty: int

    @property
    def diff(self) -> int:
        return self.count.counted - self.book_qty


@dataclass(frozen=True, slots=True)
class ShelfResult:
    out_of_stock: tuple[ShelfLine, ...]
    low_facing: tuple[ShelfLine, ...]
    to_propose: tuple[ShelfLine, ...]  # confident counts that differ from the books
    unconfirmed: tuple[ShelfLine, ...]  # below the threshold and differing: reported only


def check_counts(counts: tuple[ShelfCount, ...]) -> None:
    bad: list[FieldViolation] = []
    if not counts or len(counts) > MAX_COUNTS:
        bad.append(FieldViolation("counts", f"must hold 1..{MAX_COUNTS} counts"))
    for i, c in enumerate(counts):
        if not c.site or not c.sku:
            bad.append(FieldViolation(f"counts[{i}]", "site and sku are required"))
        if c.counted < 0:
            bad.append(FieldViolation(f"counts[{i}].counted", "must be ≥ 0"))
        if not 0.0 <= c.confidence <= 1.0:
            bad.append(FieldViolation(f"counts[{i}].confidence", "must be within 0..1"))
        if len(bad) >= 20:
            break
    if bad:
        raise InvalidArgument(bad)


def evaluate(
    counts: tuple[ShelfCount, ...], books: Mapping[tuple[str, str, str], int], rules: ShelfRules
) -> ShelfResult:
    """`books` maps (site, bin, sku) to the on-hand quantity the engine holds there."""
    oos: list[ShelfLine] = []
    low: list[ShelfLine] = []
    propose: list[ShelfLine] = []
    unconfirmed: list[ShelfLine] = []
    for c in counts:
        line = ShelfLine(c, books.get((c.site, c.bin, c.sku), 0))
        confident = c.confidence >= rules.confidence_threshold
        if not confident:
            if line.diff:
                unconfirmed.append(line)
            continue
        if c.counted == 0:
            oos.append(line)
        elif c.counted < rules.low_facing_by_sku.get(c.sku, rules.low_facing_qty):
            low.append(line)
        if line.diff:
            propose.append(line)
    return ShelfResult(tuple(oos), tuple(low), tuple(propose), tuple(unconfirmed))
