"""Counts from devices and the WMS: what a full RFID read or a WMS cycle count sends (DESIGN.md §4).

Each becomes one `Count` per sku, applied inside the sku's cell in one step (engine.domain.cell):
the books are never read here, so no sale can slip between reading and setting them.
A count is absolute, so a redelivery sets the same quantities again. Stock a count finds
of a lot the books do not know is received from the count-variance bucket by the cell.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Protocol

from engine.domain.commands import Count, CountLine, CountSource
from engine.domain.deadletters import DeadLetterCode
from engine.domain.ingestion import (
    DEFAULT_OWNER,
    BadEvent,
    Document,
    Place,
    ScannedItem,
    day_end_ms,
    derived_id,
    resolve_item,
)

SkuLot = tuple[str, str]


class CountedItem(ScannedItem, Protocol):
    """One line of an RFID count: an item and how many of it (one tag = one unit)."""

    @property
    def qty(self) -> int: ...


class CountedLine(Protocol):
    """One line of a WMS cycle count: the quant's lot, status and owner, and its qty."""

    @property
    def sku(self) -> str: ...
    @property
    def lot(self) -> str: ...
    @property
    def qty(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def owner(self) -> str: ...
    @property
    def expiry(self) -> date | None: ...


def tally(items: Sequence[CountedItem], gtins: Mapping[str, str]) -> tuple[dict[SkuLot, int], dict[SkuLot, int]]:
    """An RFID count's items → units counted per (sku, lot), and each lot's expiry. Every
    item needs its lot: the books are kept by lot."""
    counted: dict[SkuLot, int] = {}
    expiry: dict[SkuLot, int] = {}
    for i, tag in enumerate(items):
        item = resolve_item(tag, gtins, f"items[{i}].barcode")
        if not item.lot:
            raise BadEvent(DeadLetterCode.INVALID, f"items[{i}]: an RFID count needs each item's lot")
        counted[(item.sku, item.lot)] = counted.get((item.sku, item.lot), 0) + tag.qty
        expiry[(item.sku, item.lot)] = item.expires_at_ms
    return counted, expiry


def rfid_counts(
    event_id: str,
    place: Place,
    skus_in_books: Iterable[str],
    counted: Mapping[SkuLot, int],
    expiry: Mapping[SkuLot, int],
) -> list[Count]:
    """A full RFID read of a place → one whole-bin Count per sku, applied inside its cell:
    every on-hand unit under the place's bin is counted, a lot the read did not see was
    found empty, units found land in the bin's ready quant of the place's owner. `skus_in_books`
    are the skus the books have there (so a sku read as empty is counted too)."""
    skus = sorted(set(skus_in_books) | {sku for sku, _ in counted})
    return [
        Count(
            request_id=derived_id(event_id, sku),
            sku=sku,
            site=place.site,
            bin=place.bin,
            lines=tuple(
                CountLine(lot, qty, "", place.owner, expiry.get((sku, lot), 0))
                for (s, lot), qty in sorted(counted.items())
                if s == sku
            ),
            whole_bin=True,
            source=CountSource.RFID,
            doc_ref="rfid_count",
        )
        for sku in skus
    ]


def cycle_counts(event_id: str, site: str, bin_: str, lines: Sequence[CountedLine], doc: Document) -> list[Count]:
    """A WMS cycle count → one quant Count per sku: each line sets one quant (status ""
    means the ready role, owner "" own); a lot the books lack is received with its expiry."""
    by_sku: dict[str, list[CountLine]] = {}
    for line in lines:
        expires_at_ms = day_end_ms(line.expiry) if line.expiry else 0
        count_line = CountLine(line.lot, line.qty, line.status, line.owner or DEFAULT_OWNER, expires_at_ms)
        by_sku.setdefault(line.sku, []).append(count_line)
    return [
        Count(
            request_id=f"{event_id}:{sku}",
            sku=sku,
            site=site,
            bin=bin_,
            lines=tuple(sku_lines),
            source=CountSource.CYCLE,
            doc_ref=doc.ref or "cycle_count",
            finance=doc.finance,
        )
        for sku, sku_lines in by_sku.items()
    ]


def count_expiries(lines: Sequence[CountedLine]) -> dict[SkuLot, int]:
    """The expiry each cycle-count line gives, for a lot the books turn out not to know."""
    return {(line.sku, line.lot): day_end_ms(line.expiry) for line in lines if line.expiry}
