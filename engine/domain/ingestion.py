"""Inbound events → commands: what a scan or a WMS message does to the books (DESIGN.md §4, §5, §12).

The ingestion entry point (adapters/nats/ingest) reads a message into an event and asks
the functions here which commands it becomes; counts, temperature excursions and
transfers have their own modules (counts.py, excursions.py, transfers.py).

Exactly once: an event's id is the request id of the command it becomes (an event that
becomes several commands suffixes it deterministically, `derived_id`), so a redelivered
or duplicated event is answered from the cells' idempotency window and changes nothing.

Statuses come from the dictionary's roles (`StatusChoices`), or from the device and WMS
configuration where it names one: no status is spelled here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from engine.domain.commands import ChangeStatus, Consume, Move, Receive, Strategy
from engine.domain.deadletters import DeadLetterCode
from engine.domain.gs1 import Gs1Error, normalize_gtin, parse_gs1
from engine.domain.model import External, Finance
from engine.domain.statuses import Role, StatusDictionary

DEFAULT_OWNER = "own"


class BadEvent(Exception):
    """The message cannot be applied as it is; it goes to the dead-letter stream."""

    def __init__(self, code: DeadLetterCode, reason: str, event_id: str = "", event_type: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.event_id = event_id
        self.event_type = event_type


class ScannedItem(Protocol):
    """What was scanned: a GS1 barcode, or the sku (and lot) spelled out."""

    @property
    def barcode(self) -> str: ...
    @property
    def sku(self) -> str: ...
    @property
    def lot(self) -> str: ...
    @property
    def expiry(self) -> date | None: ...


class Place(Protocol):
    """Where a device's stock is: a cabinet (or a ward scanner) in a site."""

    @property
    def site(self) -> str: ...
    @property
    def bin(self) -> str: ...
    @property
    def owner(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Document:
    """The sender's document and financial context; every command of an event carries it."""

    ref: str = ""
    finance: Finance | None = None


@dataclass(frozen=True, slots=True)
class StockLine:
    """One line of stock a WMS event names (a putaway, a QC result, a pick, a pack)."""

    sku: str
    site: str
    lot: str
    qty: int
    bin: str = ""
    owner: str = ""


@dataclass(frozen=True, slots=True)
class Resolved:
    """A scanned or spelled-out item: which sku and lot, and the lot's expiry if known."""

    sku: str
    lot: str
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class StatusChoices:
    """The statuses ingestion puts stock in: the configuration's, else the dictionary's role."""

    receipt: str
    qc_pass: str
    qc_fail: str
    pick_from: str
    transfer_in: str
    ready: str
    rejected: str
    pick: str
    pack: str
    arriving: str

    @classmethod
    def of(
        cls,
        statuses: StatusDictionary,
        *,
        receipt: str = "",
        qc_pass: str = "",
        qc_fail: str = "",
        pick_from: str = "",
        transfer_in: str = "",
    ) -> StatusChoices:
        """Each configured status, or ("" = not configured) the status of its role."""
        ready = statuses.role(Role.READY)
        return cls(
            receipt=receipt or statuses.role(Role.RECEIPT),
            qc_pass=qc_pass or ready,
            qc_fail=qc_fail or statuses.role(Role.REJECTED),
            pick_from=pick_from or ready,
            transfer_in=transfer_in or statuses.role(Role.RECEIPT),
            ready=ready,
            rejected=statuses.role(Role.REJECTED),
            pick=statuses.role(Role.PICK),
            pack=statuses.role(Role.PACK),
            arriving=statuses.role(Role.ARRIVING),
        )


def resolve_item(item: ScannedItem, gtins: Mapping[str, str], field: str = "barcode") -> Resolved:
    """GS1 barcode or sku/lot/expiry → sku, lot, expiry. A barcode and spelled-out fields
    may both be given; they must then agree."""
    sku, lot = item.sku, item.lot
    expires_at_ms = day_end_ms(item.expiry) if item.expiry else 0
    if item.barcode:
        try:
            data = parse_gs1(item.barcode)
        except Gs1Error as exc:
            raise BadEvent(DeadLetterCode.INVALID, f"{field}: {exc}") from None
        if data.gtin:
            mapped = gtins.get(normalize_gtin(data.gtin))
            if mapped is None:
                raise BadEvent(
                    DeadLetterCode.UNKNOWN_REF,
                    f"{field}: GTIN {data.gtin} is not mapped to a sku ([gtins] of the config)",
                )
            if sku and sku != mapped:
                raise BadEvent(DeadLetterCode.INVALID, f"sku: {sku!r} disagrees with the barcode's GTIN ({mapped!r})")
            sku = mapped
        if data.lot:
            if lot and lot != data.lot:
                raise BadEvent(DeadLetterCode.INVALID, f"lot: {lot!r} disagrees with the barcode's lot {data.lot!r}")
            lot = data.lot
        expires_at_ms = data.expires_at_ms() or expires_at_ms
    if not sku:
        raise BadEvent(DeadLetterCode.SCHEMA, f"{field}: give a GS1 barcode with a GTIN, or the sku")
    return Resolved(sku, lot, expires_at_ms)


def day_end_ms(day: date) -> int:
    """A lot is usable through its whole expiry day: it expires at the next midnight UTC."""
    return int((datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)).timestamp() * 1000)


def derived_id(event_id: str, *parts: object) -> str:
    """A command's request id inside a multi-command event: stable across redeliveries.
    Quant keys can be long, so they are digested (8 bytes: collisions need ~4·10⁹ quants)."""
    key = "\x1f".join(str(p) for p in parts)
    return f"{event_id}:{hashlib.blake2b(key.encode(), digest_size=8).hexdigest()}"


def strategy_for(lot: str) -> Strategy:
    """A named lot is taken as named; otherwise first-expiring first."""
    return Strategy.LOT if lot else Strategy.FEFO


# ---- cabinets ----


def take(request_id: str, place: Place, item: Resolved, qty: int, doc: Document) -> Consume:
    """A unit taken out of a cabinet and scanned: consumed at once, never refused (a
    shortfall is booked as a discrepancy)."""
    return Consume(
        request_id=request_id,
        sku=item.sku,
        site=place.site,
        qty=qty,
        lot_id=item.lot,
        bin_prefix=place.bin,
        strategy=strategy_for(item.lot),
        doc_ref=doc.ref,
        finance=doc.finance,
    )


def give_back(
    request_id: str,
    place: Place,
    item: Resolved,
    qty: int,
    unopened: bool,
    return_status: str,
    choices: StatusChoices,
    doc: Document,
) -> Receive:
    """A unit scanned back in, from the customer: an unopened one into the cabinet's
    `return_status` ('' = the ready role), a damaged one into the rejected role. A return
    needs its lot."""
    if not item.lot:
        raise BadEvent(DeadLetterCode.INVALID, "lot: a return needs its lot (GS1 AI 10 in the barcode, or lot)")
    return Receive(
        request_id=request_id,
        sku=item.sku,
        site=place.site,
        lot_id=item.lot,
        qty=qty,
        bin=place.bin,
        status=(return_status or choices.ready) if unopened else choices.rejected,
        owner=place.owner,
        expires_at_ms=item.expires_at_ms,
        source=External.CUSTOMER,
        doc_ref=doc.ref,
        finance=doc.finance,
    )


# ---- WMS ----


def receipt(request_id: str, line: StockLine, item: Resolved, status: str, doc: Document) -> Receive:
    """One ASN line received at the dock (from the supplier) into `status`."""
    return Receive(
        request_id=request_id,
        sku=item.sku,
        site=line.site,
        lot_id=item.lot,
        qty=line.qty,
        bin=line.bin,
        status=status,
        owner=line.owner or DEFAULT_OWNER,
        expires_at_ms=item.expires_at_ms,
        doc_ref=doc.ref,
        finance=doc.finance,
    )


def putaway(request_id: str, line: StockLine, from_bin: str, to_bin: str, status: str, doc: Document) -> Move:
    return Move(
        request_id, line.sku, line.site, line.lot, line.qty, from_bin, to_bin, status,
        line.owner or DEFAULT_OWNER, doc_ref=doc.ref, finance=doc.finance,
    )  # fmt: skip


def status_change(request_id: str, line: StockLine, from_status: str, to_status: str, doc: Document) -> ChangeStatus:
    """A QC result, a pick or a pack: the line's units change status in place."""
    return ChangeStatus(
        request_id, line.sku, line.site, line.lot, line.qty, from_status, to_status, line.bin,
        line.owner or DEFAULT_OWNER, doc_ref=doc.ref, finance=doc.finance,
    )  # fmt: skip


def qc(
    request_id: str, line: StockLine, passed: bool, from_status: str, choices: StatusChoices, doc: Document
) -> ChangeStatus:
    return status_change(
        request_id, line, from_status or choices.receipt, choices.qc_pass if passed else choices.qc_fail, doc
    )


def pick(request_id: str, line: StockLine, choices: StatusChoices, doc: Document) -> ChangeStatus:
    return status_change(request_id, line, choices.pick_from, choices.pick, doc)


def pack(request_id: str, line: StockLine, choices: StatusChoices, doc: Document) -> ChangeStatus:
    return status_change(request_id, line, choices.pick, choices.pack, doc)


def issue_packed(request_id: str, line: StockLine, choices: StatusChoices, doc: Document) -> Consume:
    """A ship without a hold: packed stock leaves to the customer, line by line."""
    return Consume(
        request_id=request_id,
        sku=line.sku,
        site=line.site,
        qty=line.qty,
        lot_id=line.lot,
        bin_prefix=line.bin,
        owner=line.owner,
        strategy=strategy_for(line.lot),
        status=choices.pack,
        doc_ref=doc.ref,
        finance=doc.finance,
    )
