"""Counts against the books: what a full RFID count or a WMS cycle count changes (DESIGN.md §4).

Every command here is absolute (an Adjust sets a quant) and keyed by its quant, so a
redelivered count after a partial application redoes only what is left. Stock a count
finds of a lot the books do not know is received from the count-variance bucket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Protocol

from engine.domain.cell import Dimension
from engine.domain.commands import Adjust, Receive
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
from engine.domain.inventory import StockRow
from engine.domain.model import External
from engine.domain.statuses import Role, StatusDictionary

SkuLot = tuple[str, str]
_Quant = tuple[tuple[str, str, str], int]  # ((bin, status, owner), qty)


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


def count_adjustments(
    event_id: str,
    place: Place,
    rows: Sequence[StockRow],
    counted: Mapping[SkuLot, int],
    expiry: Mapping[SkuLot, int],
    statuses: StatusDictionary,
    reason: str,
) -> list[Adjust | Receive]:
    """A full count of a place against its books (`rows`: its quants; those not on hand
    are not counted): per (sku, lot), missing units are taken off the quants (sellable
    ones first: an unscanned take is the likely cause), found units are added to the
    place's ready quant of the place's owner; lots the books lack are received from the
    count-variance bucket."""
    books = _books(rows, statuses)
    ready = statuses.role(Role.READY)
    out: list[Adjust | Receive] = []
    for sku_lot in sorted(set(books) | set(counted)):
        quants = books.get(sku_lot, [])
        diff = counted.get(sku_lot, 0) - sum(q for _, q in quants)
        if diff < 0:
            out.extend(_missing(event_id, place, sku_lot, quants, -diff, statuses, reason))
        elif diff > 0:
            out.append(_found(event_id, place, sku_lot, quants, diff, ready, expiry.get(sku_lot, 0), reason))
    return out


def _books(rows: Sequence[StockRow], statuses: StatusDictionary) -> dict[SkuLot, list[_Quant]]:
    books: dict[SkuLot, list[_Quant]] = {}
    for r in rows:
        g = dict(r.row.group)
        status = statuses.get(g[Dimension.STATUS])
        if not r.row.qty or status is None or not status.on_hand:
            continue
        key = (g[Dimension.BIN], g[Dimension.STATUS], g[Dimension.OWNER])
        books.setdefault((r.sku, g[Dimension.LOT]), []).append((key, r.row.qty))
    return books


def _missing(
    event_id: str,
    place: Place,
    sku_lot: SkuLot,
    quants: list[_Quant],
    missing: int,
    statuses: StatusDictionary,
    reason: str,
) -> list[Adjust | Receive]:
    sku, lot = sku_lot
    out: list[Adjust | Receive] = []
    # Sellable first, then by quant key: deterministic, so a redelivery agrees.
    order = sorted(quants, key=lambda kq: (not statuses.statuses[kq[0][1]].sellable, kq[0]))
    for (bin_, status, owner), qty in order:
        take = min(qty, missing)
        missing -= take
        if take:
            rid = derived_id(event_id, sku, lot, bin_, status, owner)
            out.append(Adjust(rid, sku, place.site, lot, qty - take, bin_, status, owner, reason))
        if not missing:
            break
    return out


def _found(
    event_id: str,
    place: Place,
    sku_lot: SkuLot,
    quants: list[_Quant],
    found: int,
    ready: str,
    expires_at_ms: int,
    reason: str,
) -> Adjust | Receive:
    sku, lot = sku_lot
    key = (place.bin, ready, place.owner)
    rid = derived_id(event_id, sku, lot, *key)
    if quants:
        current = dict(quants).get(key, 0)
        return Adjust(rid, sku, place.site, lot, current + found, place.bin, ready, place.owner, reason)
    return Receive(
        rid,
        sku,
        place.site,
        lot,
        found,
        bin=place.bin,
        status=ready,
        owner=place.owner,
        expires_at_ms=expires_at_ms,
        source=External.COUNT_VARIANCE,
        doc_ref=reason,
    )


def cycle_count(
    event_id: str, site: str, bin_: str, lines: Sequence[CountedLine], statuses: StatusDictionary, doc: Document
) -> list[Adjust]:
    """A WMS cycle count: each line sets one quant (its status defaults to the ready role)."""
    return [
        Adjust(
            request_id=f"{event_id}:{i}",
            sku=line.sku,
            site=site,
            lot_id=line.lot,
            counted_qty=line.qty,
            bin=bin_,
            status=line.status or statuses.role(Role.READY),
            owner=line.owner or DEFAULT_OWNER,
            reason="cycle_count",
            doc_ref=doc.ref,
            finance=doc.finance,
        )
        for i, line in enumerate(lines)
    ]


def count_expiries(lines: Sequence[CountedLine]) -> dict[SkuLot, int]:
    """The expiry each cycle-count line gives, for a lot the books turn out not to know."""
    return {(line.sku, line.lot): day_end_ms(line.expiry) for line in lines if line.expiry}


def found_receipt(cmd: Adjust, expires_at_ms: int) -> Receive:
    """The receipt that books stock a count found of a lot the cell does not know."""
    return Receive(
        request_id=cmd.request_id + ":found",
        sku=cmd.sku,
        site=cmd.site,
        lot_id=cmd.lot_id,
        qty=cmd.counted_qty,
        bin=cmd.bin,
        status=cmd.status,
        owner=cmd.owner,
        expires_at_ms=expires_at_ms,
        source=External.COUNT_VARIANCE,
        doc_ref=cmd.doc_ref or cmd.reason,
        finance=cmd.finance,
    )
