"""Shelf counts from recognisers (issue 15 item 5): photo recognition of a store shelf,
RFID gates. Each count says how many units of a sku it saw in a bin, and how sure it is.

Compared with the books of that bin: a confident zero is *out of stock*, a confident count
under the sku's facing minimum is *low facing*; both lists go to the site's sales rep as
business events. A count never changes stock: below the confidence threshold it is only
reported, above it a difference may become a *proposed* adjustment (a person approves).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.domain.errors import FieldViolation, InvalidArgument

MAX_COUNTS = 10_000  # per call


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
