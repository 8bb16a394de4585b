"""Transfers between sites: the sending leg, the in-transit legs, the arrival (DESIGN.md §4).

A transfer out consumes the goods at the sending site into the transit bucket, and the
receiving site books what the sending leg actually took, lot by lot, into the
dictionary's arriving role (visible there, not sellable). The receiving legs are built
from the sending leg's answer, which the cell caches for the request id: a redelivered
transfer rebuilds the same legs, so both sites agree on the lots in transit. The arrival
changes the arriving stock to the arrival status, then puts it away into its bin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from engine.domain.commands import ChangeStatus, Consume, Consumed, Move, Receive
from engine.domain.deadletters import DeadLetterCode
from engine.domain.ingestion import BadEvent, Document, StatusChoices, StockLine, strategy_for
from engine.domain.model import External
from engine.domain.transfer_flow import Transfer


def check_route(from_site: str, to_site: str) -> None:
    if from_site == to_site:
        raise BadEvent(DeadLetterCode.INVALID, "to_site: a transfer must go to another site")


def dispatch(request_id: str, line: StockLine, doc: Document) -> Consume:
    """The sending leg: the line's units leave `line.site` for the transit bucket."""
    return Consume(
        request_id=request_id,
        sku=line.sku,
        site=line.site,
        qty=line.qty,
        lot_id=line.lot,
        bin_prefix=line.bin,
        strategy=strategy_for(line.lot),
        destination=External.TRANSIT,
        doc_ref=doc.ref,
        finance=doc.finance,
    )


def transit_receipts(
    event_id: str, i: int, sku: str, dst: str, unknown_lot: str, consumed: Consumed, arriving: str
) -> list[Receive]:
    """The receiving site's in-transit legs: one per lot the sending leg took, plus the
    units the sender's books did not have (under the line's lot, or an UNKNOWN lot)."""
    legs = [
        Receive(
            request_id=f"{event_id}:{i}:in:{j}",
            sku=sku,
            site=dst,
            lot_id=a.lot_id,
            qty=a.qty,
            status=arriving,
            owner=a.owner,
            expires_at_ms=a.expires_at_ms,
            source=External.TRANSIT,
        )
        for j, a in enumerate(consumed.allocations)
    ]
    if consumed.shortfall_qty:
        legs.append(
            Receive(
                request_id=f"{event_id}:{i}:in:short",
                sku=sku,
                site=dst,
                lot_id=unknown_lot,
                qty=consumed.shortfall_qty,
                status=arriving,
                source=External.TRANSIT,
            )
        )
    return legs


def check_attached_out(transfer: Transfer, src: str, dst: str, lines: Sequence[tuple[str, int]]) -> None:
    """A WMS dispatch naming an engine transfer ships it: same route, same units per sku
    (what ships is what the approval held; a different load is a different transfer)."""
    if (src, dst) != (transfer.from_site, transfer.to_site):
        raise BadEvent(
            DeadLetterCode.INVALID,
            f"transfer {transfer.transfer_id} goes from {transfer.from_site} to {transfer.to_site}, not {src} to {dst}",
        )
    if _per_sku(lines) != _per_sku([(x.sku, x.qty) for x in transfer.lines]):
        raise BadEvent(DeadLetterCode.INVALID, f"lines: not the units transfer {transfer.transfer_id} asks for")


def check_attached_in(transfer: Transfer, site: str) -> None:
    if site != transfer.to_site:
        raise BadEvent(
            DeadLetterCode.INVALID, f"transfer {transfer.transfer_id} arrives at {transfer.to_site}, not {site}"
        )


def _per_sku(lines: Sequence[tuple[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for sku, qty in lines:
        out[sku] = out.get(sku, 0) + qty
    return out


def unknown_lot(transfer_id: str) -> str:
    """The lot units in transit are booked under when the sender's books lacked them."""
    return f"UNKNOWN-{transfer_id}"


def replace_doc(cmd: Receive, doc: Document) -> Receive:
    return replace(cmd, doc_ref=doc.ref, finance=doc.finance)


def arrival(request_id: str, line: StockLine, choices: StatusChoices, doc: Document) -> list[ChangeStatus | Move]:
    """The transfer arrived: its arriving stock takes the arrival status, then (if the
    line names a bin) moves there. Applied in this order."""
    status = choices.transfer_in
    steps: list[ChangeStatus | Move] = [
        ChangeStatus(
            request_id=request_id,
            sku=line.sku,
            site=line.site,
            lot_id=line.lot,
            qty=line.qty,
            from_status=choices.arriving,
            to_status=status,
            doc_ref=doc.ref,
            finance=doc.finance,
        )
    ]
    if line.bin:
        steps.append(
            Move(f"{request_id}:bin", line.sku, line.site, line.lot, line.qty, "", line.bin, status, doc_ref=doc.ref)
        )
    return steps
