"""The ingestion entry point's second half: a validated event → engine commands, sent.

What each event means for the books is decided in the domain (engine.domain.ingestion,
counts, excursions, transfers); this module finds the device or site the event names,
reads the books where a decision needs them (counts, temperature excursions), and sends
the commands through `IngestGateway` (the runtime Gateway satisfies it), so it runs the
same against in-process shards and a Ray cluster.

Exactly once: every command's request id derives from the event id (see
engine.domain.ingestion), so a redelivered event changes nothing it already changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from adapters.nats.ingest.config import Cabinet, IngestConfig
from adapters.nats.ingest.events import (
    CycleCount,
    Door,
    FinanceIn,
    InboundEvent,
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
from engine.domain import counts, excursions, ingestion, transfers
from engine.domain.cell import Dimension, SliceFilter
from engine.domain.commands import ChangeStatus, Consumed, Counted, Move, StockFrozen
from engine.domain.deadletters import DeadLetterCode
from engine.domain.ingestion import BadEvent, Document, StatusChoices, StockLine, resolve_item
from engine.domain.inventory import CommitLine, StockQuery, StockRow
from engine.domain.model import Finance
from engine.domain.statuses import StatusDictionary
from engine.domain.transfer_flow import ReceiptLine, Transfer

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


class TransferSteps(Protocol):
    """The engine's transfers, as ingestion advances them (engine.bootstrap.documents
    wraps the transfers desk): a WMS event naming a transfer the engine keeps ships or
    receives that transfer instead of booking stock of its own."""

    async def find(self, transfer_id: str) -> Transfer | None: ...

    async def ship(self, request_id: str, transfer_id: str, eta_ms: int = 0) -> Transfer: ...

    async def receive(self, request_id: str, transfer_id: str, lines: Sequence[ReceiptLine]) -> Transfer: ...


@dataclass(frozen=True, slots=True)
class Applied:
    """What an event did: the commands sent, and the units they moved (for logs and tests)."""

    commands: int
    units: int = 0


def finance_of(finance: FinanceIn | None) -> Finance | None:
    return Finance(**finance.model_dump()) if finance is not None else None


def document(ref: str, finance: FinanceIn | None) -> Document:
    return Document(ref, finance_of(finance))


class Applier:
    """Applies validated events through the gateway. Raises BadEvent for events that name
    unknown devices or impossible things, and the engine's DomainErrors as they come (the
    consumer decides what is retried and what is dead-lettered)."""

    def __init__(self, gateway: IngestGateway, config: IngestConfig, transfers: TransferSteps | None = None) -> None:
        self.gateway = gateway
        self.config = config
        self.transfers = transfers
        wms = config.wms
        self.choices = StatusChoices.of(
            gateway.statuses,
            receipt=wms.receipt_status,
            qc_pass=wms.qc_pass_status,
            qc_fail=wms.qc_fail_status,
            pick_from=wms.pick_from_status,
            transfer_in=wms.transfer_in_status,
        )

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

    async def _known_transfer(self, transfer_id: str) -> Transfer | None:
        """The engine's transfer this WMS event names, if it keeps one by that id."""
        return None if self.transfers is None else await self.transfers.find(transfer_id)

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

    async def _all(self, cmds: Sequence[Any], deadline: float | None) -> None:
        await asyncio.gather(*(self.gateway.execute(c, deadline) for c in cmds))

    # ---- cabinets ----

    async def _scan_take(self, e: ScanTake, deadline: float | None) -> Applied:
        cmd = ingestion.take(
            e.event_id,
            self.cabinet(e.cabinet_id),
            resolve_item(e, self.config.gtins),
            e.qty,
            document(e.doc_ref, e.finance),
        )
        reply = await self.gateway.execute(cmd, deadline)
        return Applied(1, reply.consumed_qty + reply.shortfall_qty)

    async def _scan_return(self, e: ScanReturn, deadline: float | None) -> Applied:
        cab = self.cabinet(e.cabinet_id)
        item = resolve_item(e, self.config.gtins)
        unopened = e.condition == "unopened"
        doc = document(e.doc_ref, e.finance)
        cmd = ingestion.give_back(e.event_id, cab, item, e.qty, unopened, cab.return_status, self.choices, doc)
        await self.gateway.execute(cmd, deadline)
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
        counted, expiry = counts.tally(e.items, self.config.gtins)
        # Which skus the books have in the cabinet (so a sku read as empty is counted too);
        # the quantities are set inside each cell, never from this read.
        rows = await self._cabinet_rows(cab.site, cab.bin, (), deadline)
        cmds = counts.rfid_counts(e.event_id, cab, {r.sku for r in rows}, counted, expiry)
        replies: list[Counted] = await asyncio.gather(*(self.gateway.execute(c, deadline) for c in cmds))
        return Applied(len(cmds), sum(abs(c.counted_qty - c.previous_qty) for r in replies for c in r.lots))

    async def _excursion(self, e: TemperatureExcursion, deadline: float | None) -> Applied:
        cab = self.cabinet(e.cabinet_id)
        skus = e.skus or tuple({r.sku for r in await self._cabinet_rows(cab.site, cab.bin, (), deadline)})
        doc_ref = excursions.freeze_doc_ref(e.doc_ref, e.temp_c)
        cmds = excursions.freeze_commands(e.event_id, cab.site, cab.bin, skus, doc_ref)
        replies: list[StockFrozen] = await asyncio.gather(*(self.gateway.execute(c, deadline) for c in cmds))
        return Applied(len(cmds), sum(r.qty for r in replies))

    # ---- WMS ----

    async def _receipt(self, e: Receipt, deadline: float | None) -> Applied:
        site, doc = self.site(e.site), document(e.asn or e.doc_ref, e.finance)
        cmds = []
        for i, line in enumerate(e.lines):
            item = resolve_item(line, self.config.gtins, f"lines[{i}].barcode")
            if not item.lot:
                raise BadEvent(DeadLetterCode.INVALID, f"lines[{i}].lot: a receipt line needs its lot")
            stock = StockLine(item.sku, site, item.lot, line.qty, line.bin, line.owner)
            cmds.append(ingestion.receipt(f"{e.event_id}:{i}", stock, item, line.status or self.choices.receipt, doc))
        await self._all(cmds, deadline)
        return Applied(len(cmds), sum(c.qty for c in cmds))

    async def _single(self, e: Putaway | Qc | Pick | Pack, deadline: float | None) -> Applied:
        line = StockLine(e.sku, self.site(e.site), e.lot, e.qty, e.bin, e.owner)
        doc, rid, choices = document(e.doc_ref, e.finance), e.event_id, self.choices
        cmd: Move | ChangeStatus
        match e:
            case Putaway():
                cmd = ingestion.putaway(rid, line, e.from_bin, e.to_bin, e.status or choices.receipt, doc)
            case Qc():
                cmd = ingestion.qc(rid, line, e.result == "pass", e.from_status, choices, doc)
            case Pick():
                cmd = ingestion.pick(rid, line, choices, doc)
            case Pack():
                cmd = ingestion.pack(rid, line, choices, doc)
        await self.gateway.execute(cmd, deadline)
        return Applied(1, e.qty)

    async def _ship(self, e: Ship, deadline: float | None) -> Applied:
        site, doc = self.site(e.site), document(e.doc_ref, e.finance)
        if e.hold_id:
            lines = [CommitLine(line.sku, site, line.qty) for line in e.lines] if e.lines else None
            summary = await self.gateway.commit(e.event_id, e.hold_id, lines, doc.ref, deadline, finance=doc.finance)
            return Applied(1, sum(p.committed_qty for p in summary.parts))
        if not e.lines:
            raise BadEvent(DeadLetterCode.SCHEMA, "lines: a ship without hold_id needs lines")
        cmds = [
            ingestion.issue_packed(
                f"{e.event_id}:{i}", StockLine(ln.sku, site, ln.lot, ln.qty, ln.bin, ln.owner), self.choices, doc
            )
            for i, ln in enumerate(e.lines)
        ]
        await self._all(cmds, deadline)
        return Applied(len(cmds), sum(c.qty for c in cmds))

    async def _cycle_count(self, e: CycleCount, deadline: float | None) -> Applied:
        doc = document(e.doc_ref, e.finance)
        cmds = counts.cycle_counts(e.event_id, self.site(e.site), e.bin, e.lines, doc)
        replies: list[Counted] = await asyncio.gather(*(self.gateway.execute(c, deadline) for c in cmds))
        return Applied(len(e.lines), sum(abs(c.counted_qty - c.previous_qty) for r in replies for c in r.lots))

    async def _transfer_out(self, e: TransferOut, deadline: float | None) -> Applied:
        src, dst = self.site(e.site), self.site(e.to_site)
        transfers.check_route(src, dst)
        known = await self._known_transfer(e.transfer_id)
        if known is not None and self.transfers is not None:
            transfers.check_attached_out(known, src, dst, [(x.sku, x.qty) for x in e.lines])
            shipped = await self.transfers.ship(e.event_id, e.transfer_id, e.eta_ms)
            return Applied(len(shipped.lots), sum(lot.shipped_qty for lot in shipped.lots))
        doc = document(e.doc_ref or e.transfer_id, e.finance)

        async def line_out(i: int, line: Any) -> int:
            out = transfers.dispatch(f"{e.event_id}:{i}", StockLine(line.sku, src, line.lot, line.qty, line.bin), doc)
            consumed: Consumed = await self.gateway.execute(out, deadline)
            lot = line.lot or transfers.unknown_lot(e.transfer_id)
            legs = transfers.transit_receipts(e.event_id, i, line.sku, dst, lot, consumed, self.choices.arriving)
            await self._all([transfers.replace_doc(leg, doc) for leg in legs], deadline)
            return int(line.qty)

        moved = await asyncio.gather(*(line_out(i, line) for i, line in enumerate(e.lines)))
        return Applied(2 * len(e.lines), sum(moved))

    async def _transfer_in(self, e: TransferIn, deadline: float | None) -> Applied:
        site, doc = self.site(e.site), document(e.doc_ref or e.transfer_id, e.finance)
        known = await self._known_transfer(e.transfer_id)
        if known is not None and self.transfers is not None:
            transfers.check_attached_in(known, site)
            receipt = [ReceiptLine(x.sku, x.qty, 0, x.lot) for x in e.lines]
            await self.transfers.receive(e.event_id, e.transfer_id, receipt)
            return Applied(len(receipt), sum(x.qty for x in receipt))

        async def line_in(i: int, line: Any) -> int:
            stock = StockLine(line.sku, site, line.lot, line.qty, line.bin)
            for step in transfers.arrival(f"{e.event_id}:{i}", stock, self.choices, doc):
                await self.gateway.execute(step, deadline)  # in order: the status, then the bin
            return int(line.qty)

        moved = await asyncio.gather(*(line_in(i, line) for i, line in enumerate(e.lines)))
        return Applied(len(e.lines), sum(moved))


def check_sender(config: IngestConfig, event: InboundEvent, subject: str) -> None:
    """A device or WMS posts only for its own sites (`senders` in the ingestion config).
    The sender is the subject's last token: with per-sender NATS credentials allowed to
    publish only there, the subject is the sender's identity. A transfer is checked at its
    source site (the destination's in-transit stock follows from it). Raises BadEvent
    SITE_NOT_ALLOWED (a dead letter with the reason)."""
    sender = subject.rpartition(".")[2]
    allowed = config.senders.get(sender)
    if allowed is None and not config.senders_only:
        return
    cabinet_id = getattr(event, "cabinet_id", None)
    if cabinet_id is not None:
        cabinet = config.cabinets.get(cabinet_id)
        if cabinet is None:
            raise BadEvent(DeadLetterCode.UNKNOWN_REF, f"unknown cabinet {cabinet_id!r}")
        site = cabinet.site
    else:
        code = str(getattr(event, "site", ""))
        site = config.wms.sites.get(code, code)
    if site not in (allowed or ()):
        raise BadEvent(DeadLetterCode.SITE_NOT_ALLOWED, f"sender {sender!r} may not post for site {site!r}")
