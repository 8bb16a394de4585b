"""What each inbound event does to the books: event → engine commands (DESIGN.md §4, §5).

Exactly once: an event's id is the request id of the command it becomes (an event that
becomes several commands suffixes it deterministically), so a redelivered or duplicated
event is answered from the cells' idempotency window and changes nothing. Commands built
from a read of the books (counts, temperature excursions) are absolute (Adjust sets a
quant; a status change takes the free qty it saw) and keyed by the quant, so a redelivery
after a partial application redoes only what is left.

The engine is reached through `IngestGateway` (the runtime Gateway satisfies it), so this
module runs the same against in-process shards and a Ray cluster.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from adapters.nats.ingest.config import Cabinet, IngestConfig
from adapters.nats.ingest.events import (
    BadEvent,
    CycleCount,
    Door,
    FinanceIn,
    InboundEvent,
    Item,
    Pack,
    Pick,
    Putaway,
    Qc,
    Receipt,
    RfidCount,
    ScanReturn,
    ScanTake,
    Ship,
    TemperatureExcursion,
    TransferIn,
    TransferOut,
)
from engine.domain.cell import Dimension, SliceFilter
from engine.domain.commands import (
    Adjust,
    ChangeStatus,
    Consume,
    Consumed,
    Move,
    Receive,
    Strategy,
)
from engine.domain.deadletters import DeadLetterCode
from engine.domain.errors import NotFound
from engine.domain.gs1 import Gs1Error, normalize_gtin, parse_gs1
from engine.domain.inventory import CommitLine, StockQuery, StockRow
from engine.domain.model import External, Finance
from engine.domain.statuses import StatusDictionary

FROZEN = "quality_frozen"
IN_TRANSIT_IN = "in_transit_in"
_QUANT_DIMS = (Dimension.LOT, Dimension.BIN, Dimension.STATUS, Dimension.OWNER)


class IngestGateway(Protocol):
    """The part of engine.runtime.gateway.Gateway that ingestion uses."""

    statuses: StatusDictionary

    async def execute(self, cmd: Any, deadline: float | None = None) -> Any: ...

    async def commit(
        self,
        request_id: str,
        hold_id: str,
        lines: Sequence[CommitLine] | None = None,
        doc_ref: str = "",
        deadline: float | None = None,
        *,
        finance: Finance | None = None,
    ) -> Any: ...

    async def query_stock(self, q: StockQuery, deadline: float | None = None) -> list[StockRow]: ...


@dataclass(frozen=True, slots=True)
class Resolved:
    """A scanned or spelled-out item: which sku and lot, and the lot's expiry if known."""

    sku: str
    lot: str
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class Applied:
    """What an event did: the commands sent, and the units they moved (for logs and tests)."""

    commands: int
    units: int = 0


def resolve_item(item: Item, gtins: dict[str, str], field: str = "barcode") -> Resolved:
    """GS1 barcode or sku/lot/expiry → sku, lot, expiry. A barcode and spelled-out fields
    may both be given; they must then agree."""
    sku, lot = item.sku, item.lot
    expires_at_ms = _day_end_ms(item.expiry) if item.expiry else 0
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


def _day_end_ms(day: date) -> int:
    """A lot is usable through its whole expiry day: it expires at the next midnight UTC."""
    return int((datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)).timestamp() * 1000)


def finance_of(finance: FinanceIn | None) -> Finance | None:
    return Finance(**finance.model_dump()) if finance is not None else None


def derived_id(event_id: str, *parts: object) -> str:
    """A command's request id inside a multi-command event: stable across redeliveries.
    Quant keys can be long, so they are digested (8 bytes: collisions need ~4·10⁹ quants)."""
    key = "\x1f".join(str(p) for p in parts)
    return f"{event_id}:{hashlib.blake2b(key.encode(), digest_size=8).hexdigest()}"


class Applier:
    """Applies validated events through the gateway. Raises BadEvent for events that name
    unknown devices or impossible things, and the engine's DomainErrors as they come (the
    consumer decides what is retried and what is dead-lettered)."""

    def __init__(self, gateway: IngestGateway, config: IngestConfig) -> None:
        self.gateway = gateway
        self.config = config

    async def apply(self, event: InboundEvent, deadline: float | None = None) -> Applied:
        match event:
            case ScanTake():
                return await self._scan_take(event, deadline)
            case ScanReturn():
                return await self._scan_return(event, deadline)
            case RfidCount():
                return await self._rfid_count(event, deadline)
            case Door():
                self.cabinet(event.cabinet_id)  # an unknown cabinet is bad input here too
                return Applied(0)  # no stock moves; the consumer keeps the door's state
            case TemperatureExcursion():
                return await self._excursion(event, deadline)
            case Receipt():
                return await self._receipt(event, deadline)
            case Putaway() | Qc() | Pick() | Pack():
                return await self._single(event, deadline)
            case Ship():
                return await self._ship(event, deadline)
            case CycleCount():
                return await self._cycle_count(event, deadline)
            case TransferOut():
                return await self._transfer_out(event, deadline)
            case TransferIn():
                return await self._transfer_in(event, deadline)
        raise BadEvent(DeadLetterCode.SCHEMA, f"no handler for {type(event).__name__}")

    # ---- where things are ----

    def cabinet(self, cabinet_id: str) -> Cabinet:
        cab = self.config.cabinets.get(cabinet_id)
        if cab is None:
            raise BadEvent(
                DeadLetterCode.UNKNOWN_REF,
                f"cabinet_id: unknown cabinet or scanner {cabinet_id!r} (map it under [cabinets] in the config)",
            )
        return cab

    def site(self, code: str) -> str:
        return self.config.wms.sites.get(code, code)

    def ordering_keys(self, event: InboundEvent) -> tuple[tuple[str, str], ...]:
        """The (sku, site) pairs an event touches, or (("*", site),) for site-wide events
        (counts, excursions). Events sharing a key are applied in arrival order; others
        run concurrently. Unknown devices give () — the event fails on its own anyway."""
        try:
            match event:
                case ScanTake() | ScanReturn():
                    # Scans commute: only the site's barriers order them, so no sku (and no
                    # second GS1 parse on the hot path) is needed here.
                    return (("scan", self.cabinet(event.cabinet_id).site),)
                case RfidCount() | TemperatureExcursion() | Door():
                    return (("*", self.cabinet(event.cabinet_id).site),)
                case CycleCount():
                    return (("*", self.site(event.site)),)
                case Receipt():
                    return tuple(
                        {(resolve_item(line, self.config.gtins).sku, self.site(event.site)) for line in event.lines}
                    )
                case Putaway() | Qc() | Pick() | Pack():
                    return ((event.sku, self.site(event.site)),)
                case Ship():
                    return (
                        (("*", self.site(event.site)),)
                        if event.hold_id
                        else tuple({(line.sku, self.site(event.site)) for line in event.lines})
                    )
                case TransferOut():
                    to_site = self.site(event.to_site)
                    return tuple({(ln.sku, s) for ln in event.lines for s in (self.site(event.site), to_site)})
                case TransferIn():
                    return tuple({(line.sku, self.site(event.site)) for line in event.lines})
        except Exception:  # the event fails on its own when applied; ordering needs no key
            return ()
        return ()

    # ---- cabinets ----

    async def _scan_take(self, e: ScanTake, deadline: float | None) -> Applied:
        cab = self.cabinet(e.cabinet_id)
        item = resolve_item(e, self.config.gtins)
        reply = await self.gateway.execute(
            Consume(
                request_id=e.event_id,
                sku=item.sku,
                site=cab.site,
                qty=e.qty,
                lot_id=item.lot,
                bin_prefix=cab.bin,
                strategy=Strategy.LOT if item.lot else Strategy.FEFO,
                doc_ref=e.doc_ref,
                finance=finance_of(e.finance),
            ),
            deadline,
        )
        return Applied(1, reply.consumed_qty + reply.shortfall_qty)

    async def _scan_return(self, e: ScanReturn, deadline: float | None) -> Applied:
        cab = self.cabinet(e.cabinet_id)
        item = resolve_item(e, self.config.gtins)
        if not item.lot:
            raise BadEvent(DeadLetterCode.INVALID, "lot: a return needs its lot (GS1 AI 10 in the barcode, or lot)")
        await self.gateway.execute(
            Receive(
                request_id=e.event_id,
                sku=item.sku,
                site=cab.site,
                lot_id=item.lot,
                qty=e.qty,
                bin=cab.bin,
                status=cab.return_status if e.condition == "unopened" else "damaged",
                owner=cab.owner,
                expires_at_ms=item.expires_at_ms,
                source=External.CUSTOMER,
                doc_ref=e.doc_ref,
                finance=finance_of(e.finance),
            ),
            deadline,
        )
        return Applied(1, e.qty)

    async def _cabinet_rows(
        self, site: str, bin_prefix: str, skus: Sequence[str], deadline: float | None
    ) -> list[StockRow]:
        """The cabinet's quants (sku, lot, bin, status, owner → qty), from the live cells."""
        query = StockQuery(
            skus=tuple(skus),
            sites=(site,),
            filter=SliceFilter(bin_prefix=bin_prefix),
            group_by=_QUANT_DIMS,
            by_sku=True,
            by_site=False,
        )
        return [r for r in await self.gateway.query_stock(query, deadline) if r.row.qty]

    async def _rfid_count(self, e: RfidCount, deadline: float | None) -> Applied:
        cab = self.cabinet(e.cabinet_id)
        counted: dict[tuple[str, str], int] = {}
        expiry: dict[tuple[str, str], int] = {}
        for i, tag in enumerate(e.items):
            item = resolve_item(tag, self.config.gtins, f"items[{i}].barcode")
            if not item.lot:
                raise BadEvent(DeadLetterCode.INVALID, f"items[{i}]: an RFID count needs each item's lot")
            counted[(item.sku, item.lot)] = counted.get((item.sku, item.lot), 0) + tag.qty
            expiry[(item.sku, item.lot)] = item.expires_at_ms
        rows = [r for r in await self._cabinet_rows(cab.site, cab.bin, (), deadline) if self._on_hand(r)]
        cmds = count_adjustments(e.event_id, cab, rows, counted, expiry, self.gateway.statuses, "rfid_count")
        return await self._run_counts(cmds, deadline)

    def _on_hand(self, row: StockRow) -> bool:
        status = self.gateway.statuses.get(dict(row.row.group)[Dimension.STATUS])
        return status is not None and status.on_hand

    async def _run_counts(self, cmds: Sequence[Adjust | Receive], deadline: float | None) -> Applied:
        results = await asyncio.gather(*(self._adjust_or_find(c, deadline) for c in cmds))
        return Applied(len(cmds), sum(results))

    async def _adjust_or_find(self, cmd: Adjust | Receive, deadline: float | None, expires_at_ms: int = 0) -> int:
        """An Adjust of a lot the cell has never seen becomes a receipt from the count
        variance bucket: stock found by a count is booked in, with its dates."""
        if isinstance(cmd, Receive):
            await self.gateway.execute(cmd, deadline)
            return cmd.qty
        try:
            reply = await self.gateway.execute(cmd, deadline)
        except NotFound as exc:
            if getattr(exc, "resource_type", "") != "lot" or cmd.counted_qty == 0:
                raise
            found = found_receipt(cmd, expires_at_ms)
            await self.gateway.execute(found, deadline)
            return found.qty
        return abs(reply.variance)

    async def _excursion(self, e: TemperatureExcursion, deadline: float | None) -> Applied:
        cab = self.cabinet(e.cabinet_id)
        rows = await self._cabinet_rows(cab.site, cab.bin, e.skus, deadline)
        cmds = freeze_commands(e.event_id, cab.site, rows, self.gateway.statuses, e.doc_ref or f"excursion:{e.temp_c}C")
        await asyncio.gather(*(self.gateway.execute(c, deadline) for c in cmds))
        return Applied(len(cmds), sum(c.qty for c in cmds))

    # ---- WMS ----

    async def _receipt(self, e: Receipt, deadline: float | None) -> Applied:
        site = self.site(e.site)
        cmds = []
        for i, line in enumerate(e.lines):
            item = resolve_item(line, self.config.gtins, f"lines[{i}].barcode")
            if not item.lot:
                raise BadEvent(DeadLetterCode.INVALID, f"lines[{i}].lot: a receipt line needs its lot")
            cmds.append(
                Receive(
                    request_id=f"{e.event_id}:{i}",
                    sku=item.sku,
                    site=site,
                    lot_id=item.lot,
                    qty=line.qty,
                    bin=line.bin,
                    status=line.status or self.config.wms.receipt_status,
                    owner=line.owner or "own",
                    expires_at_ms=item.expires_at_ms,
                    doc_ref=e.asn or e.doc_ref,
                    finance=finance_of(e.finance),
                )
            )
        await asyncio.gather(*(self.gateway.execute(c, deadline) for c in cmds))
        return Applied(len(cmds), sum(c.qty for c in cmds))

    async def _single(self, e: Putaway | Qc | Pick | Pack, deadline: float | None) -> Applied:
        wms, site = self.config.wms, self.site(e.site)
        common = dict(request_id=e.event_id, sku=e.sku, site=site, lot_id=e.lot, qty=e.qty, owner=e.owner or "own")
        extra = dict(doc_ref=e.doc_ref, finance=finance_of(e.finance))
        cmd: Move | ChangeStatus
        match e:
            case Putaway():
                status = e.status or wms.receipt_status
                cmd = Move(**common, from_bin=e.from_bin, to_bin=e.to_bin, status=status, **extra)
            case Qc():
                to = wms.qc_pass_status if e.result == "pass" else wms.qc_fail_status
                cmd = ChangeStatus(
                    **common, from_status=e.from_status or wms.receipt_status, to_status=to, bin=e.bin, **extra
                )
            case Pick():
                cmd = ChangeStatus(**common, from_status=wms.pick_from_status, to_status="picking", bin=e.bin, **extra)
            case Pack():
                cmd = ChangeStatus(**common, from_status="picking", to_status="packed", bin=e.bin, **extra)
        await self.gateway.execute(cmd, deadline)
        return Applied(1, e.qty)

    async def _ship(self, e: Ship, deadline: float | None) -> Applied:
        site = self.site(e.site)
        if e.hold_id:
            lines = [CommitLine(line.sku, site, line.qty) for line in e.lines] if e.lines else None
            summary = await self.gateway.commit(
                e.event_id, e.hold_id, lines, e.doc_ref, deadline, finance=finance_of(e.finance)
            )
            return Applied(1, sum(p.committed_qty for p in summary.parts))
        if not e.lines:
            raise BadEvent(DeadLetterCode.SCHEMA, "lines: a ship without hold_id needs lines")
        cmds = [
            Consume(
                request_id=f"{e.event_id}:{i}",
                sku=line.sku,
                site=site,
                qty=line.qty,
                lot_id=line.lot,
                bin_prefix=line.bin,
                owner=line.owner,
                strategy=Strategy.LOT if line.lot else Strategy.FEFO,
                status="packed",
                doc_ref=e.doc_ref,
                finance=finance_of(e.finance),
            )
            for i, line in enumerate(e.lines)
        ]
        await asyncio.gather(*(self.gateway.execute(c, deadline) for c in cmds))
        return Applied(len(cmds), sum(c.qty for c in cmds))

    async def _cycle_count(self, e: CycleCount, deadline: float | None) -> Applied:
        site = self.site(e.site)
        cmds = [
            Adjust(
                request_id=f"{e.event_id}:{i}",
                sku=line.sku,
                site=site,
                lot_id=line.lot,
                counted_qty=line.qty,
                bin=e.bin,
                status=line.status or "available",
                owner=line.owner or "own",
                reason="cycle_count",
                doc_ref=e.doc_ref,
                finance=finance_of(e.finance),
            )
            for i, line in enumerate(e.lines)
        ]
        expiry = {(line.sku, line.lot): _day_end_ms(line.expiry) for line in e.lines if line.expiry}
        results = await asyncio.gather(
            *(self._adjust_or_find(c, deadline, expiry.get((c.sku, c.lot_id), 0)) for c in cmds)
        )
        return Applied(len(cmds), sum(results))

    async def _transfer_out(self, e: TransferOut, deadline: float | None) -> Applied:
        src, dst = self.site(e.site), self.site(e.to_site)
        if src == dst:
            raise BadEvent(DeadLetterCode.INVALID, "to_site: a transfer must go to another site")
        doc = e.doc_ref or e.transfer_id
        fin = finance_of(e.finance)

        async def line_out(i: int, line: Any) -> int:
            consumed: Consumed = await self.gateway.execute(
                Consume(
                    request_id=f"{e.event_id}:{i}",
                    sku=line.sku,
                    site=src,
                    qty=line.qty,
                    lot_id=line.lot,
                    bin_prefix=line.bin,
                    strategy=Strategy.LOT if line.lot else Strategy.FEFO,
                    destination=External.TRANSIT,
                    doc_ref=doc,
                    finance=fin,
                ),
                deadline,
            )
            # The receiving leg replays the sending leg's answer (cached on redelivery), so
            # both sites agree on the lots in transit.
            legs = transit_receipts(e.event_id, i, line.sku, dst, line.lot or f"UNKNOWN-{e.transfer_id}", consumed)
            await asyncio.gather(*(self.gateway.execute(replace_doc(leg, doc, fin), deadline) for leg in legs))
            return line.qty

        moved = await asyncio.gather(*(line_out(i, line) for i, line in enumerate(e.lines)))
        return Applied(2 * len(e.lines), sum(moved))

    async def _transfer_in(self, e: TransferIn, deadline: float | None) -> Applied:
        site, status = self.site(e.site), self.config.wms.transfer_in_status
        doc = e.doc_ref or e.transfer_id

        async def line_in(i: int, line: Any) -> int:
            await self.gateway.execute(
                ChangeStatus(
                    request_id=f"{e.event_id}:{i}",
                    sku=line.sku,
                    site=site,
                    lot_id=line.lot,
                    qty=line.qty,
                    from_status=IN_TRANSIT_IN,
                    to_status=status,
                    doc_ref=doc,
                    finance=finance_of(e.finance),
                ),
                deadline,
            )
            if line.bin:
                await self.gateway.execute(
                    Move(
                        f"{e.event_id}:{i}:bin", line.sku, site, line.lot, line.qty, "", line.bin, status, doc_ref=doc
                    ),
                    deadline,
                )
            return line.qty

        moved = await asyncio.gather(*(line_in(i, line) for i, line in enumerate(e.lines)))
        return Applied(len(e.lines), sum(moved))


# ---- pure helpers (the decisions, testable without an engine) ----


def count_adjustments(
    event_id: str,
    cab: Cabinet,
    rows: Sequence[StockRow],
    counted: dict[tuple[str, str], int],
    expiry: dict[tuple[str, str], int],
    statuses: StatusDictionary,
    reason: str,
) -> list[Adjust | Receive]:
    """A full count against the books: per (sku, lot), missing units are taken off the
    quants (sellable ones first: an unscanned take is the likely cause), found units are
    added to the cabinet's `available` quant of the cabinet's owner; lots the books lack
    are received from the count-variance bucket. Every command is absolute and keyed by
    its quant, so a redelivery after a partial application redoes only what is left."""
    books: dict[tuple[str, str], list[tuple[tuple[str, str, str], int]]] = {}
    for r in rows:
        g = dict(r.row.group)
        books.setdefault((r.sku, g[Dimension.LOT]), []).append(
            ((g[Dimension.BIN], g[Dimension.STATUS], g[Dimension.OWNER]), r.row.qty)
        )
    out: list[Adjust | Receive] = []
    for sku_lot in sorted(set(books) | set(counted)):
        sku, lot = sku_lot
        quants = books.get(sku_lot, [])
        diff = counted.get(sku_lot, 0) - sum(q for _, q in quants)
        if diff < 0:
            # Sellable first, then by quant key: deterministic, so a redelivery agrees.
            order = sorted(quants, key=lambda kq: (not statuses.statuses[kq[0][1]].sellable, kq[0]))
            for (bin_, status, owner), qty in order:
                take = min(qty, -diff)
                diff += take
                if take:
                    rid = derived_id(event_id, sku, lot, bin_, status, owner)
                    out.append(Adjust(rid, sku, cab.site, lot, qty - take, bin_, status, owner, reason))
                if not diff:
                    break
        elif diff > 0:
            key = (cab.bin, "available", cab.owner)
            current = dict(quants).get(key, 0)
            rid = derived_id(event_id, sku, lot, *key)
            if quants:
                out.append(Adjust(rid, sku, cab.site, lot, current + diff, cab.bin, "available", cab.owner, reason))
            else:
                out.append(
                    Receive(
                        rid,
                        sku,
                        cab.site,
                        lot,
                        diff,
                        bin=cab.bin,
                        status="available",
                        owner=cab.owner,
                        expires_at_ms=expiry.get(sku_lot, 0),
                        source=External.COUNT_VARIANCE,
                        doc_ref=reason,
                    )
                )
    return out


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


def freeze_commands(
    event_id: str, site: str, rows: Sequence[StockRow], statuses: StatusDictionary, doc_ref: str
) -> list[ChangeStatus]:
    """Everything in the cabinet that may become quality_frozen, by quant, free qty only
    (held units stay held: releasing a customer's hold is a person's decision)."""
    out = []
    for r in rows:
        g = dict(r.row.group)
        status = g[Dimension.STATUS]
        free = r.row.qty - r.row.held
        if free <= 0 or status == FROZEN or not statuses.can_transition(status, FROZEN):
            continue
        lot, bin_, owner = g[Dimension.LOT], g[Dimension.BIN], g[Dimension.OWNER]
        rid = derived_id(event_id, r.sku, lot, bin_, status, owner)
        out.append(ChangeStatus(rid, r.sku, site, lot, free, status, FROZEN, bin_, owner, doc_ref=doc_ref))
    return out


def transit_receipts(event_id: str, i: int, sku: str, dst: str, unknown_lot: str, consumed: Consumed) -> list[Receive]:
    """The receiving site's in-transit legs: one per lot the sending leg took, plus the
    units the sender's books did not have (under the line's lot, or an UNKNOWN lot)."""
    legs = [
        Receive(
            request_id=f"{event_id}:{i}:in:{j}",
            sku=sku,
            site=dst,
            lot_id=a.lot_id,
            qty=a.qty,
            status=IN_TRANSIT_IN,
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
                status=IN_TRANSIT_IN,
                source=External.TRANSIT,
            )
        )
    return legs


def replace_doc(cmd: Receive, doc_ref: str, finance: Finance | None) -> Receive:
    return replace(cmd, doc_ref=doc_ref, finance=finance)
