"""The ledgers: every company's cost positions and the open items vouchers refer back to,
and what each business event does to them (the vouchers and valuation changes).

A movement is valued when it crosses the site's boundary with goods the company owns
(owner `own`): in from the supplier (receipt), a customer (return), transit (transfer in)
or a count; out to a customer (sale or gift: COGS on commit, consume and ship), transit
(transfer out), scrap or a count. Moves inside a site, reserves and releases book nothing.

`Ledger.apply` is deterministic: the same events in the same order give the same
vouchers (ids derive from the event ids) and the same state, which is what makes replay
and redelivery safe. The state serialises to a versioned JSON document (state.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import NamedTuple, Protocol
from urllib.parse import parse_qsl, urlencode

from engine.finance.costing import Method, Position
from engine.finance.mapping import Facts, Rules
from engine.finance.money import ZERO, money, parse_amount
from engine.finance.reversal import red_letter
from engine.finance.setup import Company, LedgerSetup
from engine.finance.vouchers import (
    CREDIT,
    DEBIT,
    Amount,
    Source,
    Voucher,
    build,
    count_amounts,
    gift_amounts,
    receipt_amounts,
    sale_amounts,
    scrap_amounts,
    transfer_in_amounts,
    transfer_out_amounts,
)

OWN = "own"


class BookingFinance(Protocol):
    """What the ledgers read of an event's finance: engine.domain.events.EventFinance, or
    engine.finance.events.LedgerFinance (the follower's lean derivation of the same values)."""

    @property
    def unit_cost(self) -> str: ...
    @property
    def unit_price(self) -> str: ...
    @property
    def tax_rate(self) -> str: ...
    @property
    def terms(self) -> str: ...
    @property
    def customer_tier(self) -> str: ...
    @property
    def sales_channel(self) -> str: ...
    @property
    def tax_attribute(self) -> str: ...
    @property
    def gift(self) -> bool: ...
    @property
    def return_of(self) -> str: ...
    @property
    def to_site(self) -> str: ...
    @property
    def to_company(self) -> str: ...


class BookingSide(Protocol):
    @property
    def external(self) -> str: ...
    @property
    def owner(self) -> str: ...


class Booking(Protocol):
    """What the ledgers read of a business event: engine.domain.events.BusinessEvent (the
    reference, which documents and tests book), or engine.finance.events.LedgerEvent (the
    follower's, with the same names and values)."""

    @property
    def event_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def sku(self) -> str: ...
    @property
    def site(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def lot_id(self) -> str: ...
    @property
    def qty(self) -> int: ...
    @property
    def from_(self) -> BookingSide: ...
    @property
    def to(self) -> BookingSide: ...
    @property
    def doc_ref(self) -> str: ...
    @property
    def at_ms(self) -> int: ...
    @property
    def finance(self) -> BookingFinance | None: ...


MAX_TRANSIT_RECORDS = 100_000  # open transfer legs remembered (oldest dropped beyond)
# Sales remembered for returns at their original amounts; beyond it the oldest is dropped and
# a return of it is booked at the caller's figures (a return is rarely older than a million sales).
MAX_SALES = 1_000_000


class Valuation(NamedTuple):
    """A change of one lot's stock value in one company's ledger (the valuation history).
    A named tuple, like the voucher lines: one or more per movement, made cheaply."""

    company: str
    sku: str
    lot_id: str
    at_ms: int
    qty: int
    value: Decimal
    event_id: str
    voucher_id: str


class SaleRecord(NamedTuple):
    """A sale (or gift), remembered so a return reverses it at its original amounts.

    A tuple of plain values, replaced rather than changed: up to MAX_SALES of them live in
    the follower's process, and the garbage collector stops tracking a tuple of atoms,
    where every full collection would walk a million dataclass instances (it showed as a
    lag that grew with the run)."""

    voucher_id: str
    kind: str
    qty: int
    cost: Decimal
    revenue: Decimal
    tax: Decimal
    returned_qty: int = 0
    returned_cost: Decimal = ZERO
    returned_revenue: Decimal = ZERO
    returned_tax: Decimal = ZERO
    doc_ref: str = ""  # the sale's key and attributes (attrs_ref): a return books to the sale's accounts


@dataclass(slots=True)
class TransitRecord:
    """Units that left a site for transit, at their cost, until they arrive somewhere."""

    company: str
    site: str
    sku: str
    lot_id: str
    doc_key: str
    voucher_id: str
    qty: int
    value: Decimal
    intercompany: bool = False  # booked to the inter-company receivable when it left (else to transit)


@dataclass(slots=True)
class GrniRecord:
    """What receipts under one document booked to GRNI and invoices have matched."""

    company: str
    booked: Decimal = ZERO
    matched: Decimal = ZERO


class Effects(NamedTuple):
    vouchers: tuple[Voucher, ...] = ()
    valuations: tuple[Valuation, ...] = ()


class DocAttrs(NamedTuple):
    """A movement's document key and the attributes the rules and vouchers use: typed on the
    movement's Finance since journal v7, else (movements journaled before) written after "?"
    in its doc_ref: `SO-1?tier=key&channel=web&tax=deemed_sale&flow=gift&orig=SO-0&to=BJ01`."""

    key: str
    tier: str = ""
    channel: str = ""
    tax: str = ""
    flow: str = ""  # "gift": the goods leave without a charge
    orig: str = ""  # the document a return or cancellation refers to
    to_site: str = ""  # a transfer's destination site ...
    to_company: str = ""  # ... and company ("" = the destination site's)


def doc_attrs(doc_ref: str) -> DocAttrs:
    """The attributes of the old form: after "?" in the doc_ref (before journal v7)."""
    key, _, query = doc_ref.partition("?")
    if not query:
        return DocAttrs(key)
    attrs = dict(parse_qsl(query, keep_blank_values=False))
    return DocAttrs(
        key,
        attrs.get("tier", ""),
        attrs.get("channel", ""),
        attrs.get("tax", ""),
        attrs.get("flow", ""),
        attrs.get("orig", ""),
        attrs.get("to", ""),
        attrs.get("to_company", ""),
    )


def event_attrs(event: Booking) -> DocAttrs:
    """The typed attributes of the event's Finance first; each one it does not say falls back
    to the doc_ref's `?key=value` (how movements journaled before v7 carry them)."""
    old = doc_attrs(event.doc_ref)
    fin = event.finance
    if fin is None or not _says_attributes(fin):
        return old  # nothing typed (most movements): the doc_ref's attributes as they are
    return DocAttrs(
        old.key,
        fin.customer_tier or old.tier,
        fin.sales_channel or old.channel,
        fin.tax_attribute or old.tax,
        "gift" if fin.gift else old.flow,
        fin.return_of or old.orig,
        fin.to_site or old.to_site,
        fin.to_company or old.to_company,
    )


def _says_attributes(fin: BookingFinance) -> bool:
    return bool(
        fin.customer_tier
        or fin.sales_channel
        or fin.tax_attribute
        or fin.gift
        or fin.return_of
        or fin.to_site
        or fin.to_company
    )


def attrs_ref(attrs: DocAttrs) -> str:
    """`attrs` in the doc_ref form doc_attrs reads: how a SaleRecord keeps the attributes the
    sale booked with (the follower's state document keeps one string per sale)."""
    if not (attrs.tier or attrs.channel or attrs.tax or attrs.flow):
        return attrs.key  # no attributes (most sales): no query to encode
    pairs = [("tier", attrs.tier), ("channel", attrs.channel), ("tax", attrs.tax), ("flow", attrs.flow)]
    query = urlencode([(k, v) for k, v in pairs if v])
    return f"{attrs.key}?{query}" if query else attrs.key


@dataclass(slots=True)
class Ledger:
    setup: LedgerSetup
    rules: Rules
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)  # (company, sku)
    sales: dict[tuple[str, str, str, str], SaleRecord] = field(default_factory=dict)  # company, doc, sku, lot
    transit: list[TransitRecord] = field(default_factory=list)
    grni: dict[tuple[str, str], GrniRecord] = field(default_factory=dict)  # (company, receipt doc)
    # What changed since the last checkpoint (state.ledger_delta writes only these).
    dirty_positions: set[tuple[str, str]] = field(default_factory=set)
    dirty_sales: set[tuple[str, str, str, str]] = field(default_factory=set)
    dirty_grni: set[tuple[str, str]] = field(default_factory=set)

    def position(self, company: Company, sku: str) -> Position:
        key = (company.company, sku)
        self.dirty_positions.add(key)  # every change of a position goes through here
        pos = self.positions.get(key)
        if pos is None:
            _, method = self.setup.category_of(sku)
            pos = self.positions[key] = Position(method, company.currency)
        return pos

    def apply(self, event: Booking) -> Effects:
        """The vouchers and valuation changes of one business event (none for most)."""
        if event.qty <= 0:
            return Effects()
        src, dst = event.from_, event.to
        if src.external and not dst.external and dst.owner == OWN:
            return self._inbound(event, src.external)
        if dst.external and not src.external and src.owner == OWN:
            return self._outbound(event, dst.external)
        return Effects()

    # ---- helpers ----

    def _facts(self, kind: str, event: Booking, company: Company, attrs: DocAttrs) -> Facts:
        category, _ = self.setup.category_of(event.sku)
        currency = company.currency
        return Facts(
            kind, "", category, attrs.tier, attrs.channel, company.company, event.site, event.kind, attrs.tax, currency
        )

    def _valuation(
        self, company: Company, event: Booking, before: dict[str, tuple[int, Decimal]], voucher_id: str
    ) -> tuple[Valuation, ...]:
        after = self._lots(company, event.sku, event.lot_id)
        out: list[Valuation] = []
        for lot in sorted(before.keys() | after.keys()):
            q0, v0 = before.get(lot, (0, ZERO))
            q1, v1 = after.get(lot, (0, ZERO))
            if (q0, v0) != (q1, v1):
                out.append(
                    Valuation(
                        company.company, event.sku, lot, event.at_ms, q1 - q0, v1 - v0, event.event_id, voucher_id
                    )
                )
        return tuple(out)

    def _lots(self, company: Company, sku: str, lot_id: str) -> dict[str, tuple[int, Decimal]]:
        """Qty and value of the lots an event of `lot_id` can change: under FIFO only that
        lot's layers move (issues and receipts name it), so only it is summed; a moving
        average revalues every lot, and an issue naming no lot may take any."""
        pos = self.position(company, sku)
        if pos.method is Method.FIFO and lot_id:
            return {lot_id: pos.lot_value(lot_id)}
        return {lot: (qty, value) for lot, qty, value in pos.lots()}

    def _cost_of(self, event: Booking, pos: Position) -> Decimal:
        """The unit cost an arriving unit carries: the caller's, else the lot's or sku's last cost."""
        given = parse_amount(event.finance.unit_cost) if event.finance else None
        if given is not None and given >= 0:
            return given
        return pos.last_cost.get(event.lot_id, pos.last_cost.get("", ZERO))

    def _source(self, event: Booking, attrs: DocAttrs, layer_ids: tuple[str, ...] = ()) -> tuple[Source, ...]:
        """The voucher's source, with the attributes its accounts were chosen by (explain)."""
        return (
            Source(
                event.event_id,
                event.doc_ref,
                event.sku,
                event.site,
                event.seq,
                event.lot_id,
                event.qty,
                layer_ids,
                event.kind,
                attrs.tier,
                attrs.channel,
                attrs.tax,
            ),
        )

    def _voucher(
        self, kind: str, event: Booking, company: Company, attrs: DocAttrs, amounts: list[Amount], **extra: str
    ) -> Voucher | None:
        return build(
            f"{kind}:{event.event_id}",
            self._facts(kind, event, company, attrs),
            amounts,
            self.rules,
            at_ms=event.at_ms,
            currency=company.currency,
            sources=self._source(event, attrs, (event.event_id,)),
            sku=event.sku,
            lot_id=event.lot_id,
            qty=event.qty,
            summary=extra.get("summary", f"{kind} {event.qty} × {event.sku} {event.lot_id} at {event.site}"),
            terms=extra.get("terms", ""),
        )

    @staticmethod
    def _effects(voucher: Voucher | None, valuations: tuple[Valuation, ...]) -> Effects:
        return Effects((voucher,) if voucher else (), valuations)

    # ---- in ----

    def _inbound(self, event: Booking, external: str) -> Effects:
        company = self.setup.company_of(event.site)
        attrs = event_attrs(event)
        if external == "@customer":
            return self._return(event, company, attrs)
        if external == "@transit":
            return self._transfer_in(event, company, attrs)
        pos = self.position(company, event.sku)
        before = self._lots(company, event.sku, event.lot_id)
        receipt = pos.receive(event.event_id, event.lot_id, event.qty, self._cost_of(event, pos), event.at_ms)
        if external == "@count_variance":
            kind, amounts = "count_gain", count_amounts(True, receipt.value)
            if receipt.correction:  # a gain that fills a shortfall: the difference is COGS, not variance
                amounts = count_amounts(True, receipt.inventory)
        else:
            kind, amounts = "receipt", receipt_amounts(receipt.value, receipt.inventory)
            grni = self.grni.setdefault((company.company, attrs.key), GrniRecord(company.company))
            grni.booked += receipt.value
            self.dirty_grni.add((company.company, attrs.key))
        voucher = self._voucher(kind, event, company, attrs, amounts)
        return self._effects(voucher, self._valuation(company, event, before, voucher.voucher_id if voucher else ""))

    def _return(self, event: Booking, company: Company, attrs: DocAttrs) -> Effects:
        """Goods back from a customer: at the sale's original cost and price, as a red-letter
        reversal of (a share of) the sale; without a known sale, at the caller's figures."""
        sale_doc = attrs.orig or attrs.key
        sale_key = (company.company, sale_doc, event.sku, event.lot_id)
        record = self.sales.get(sale_key)
        pos = self.position(company, event.sku)
        before = self._lots(company, event.sku, event.lot_id)
        if record is None or record.returned_qty + event.qty > record.qty:
            cost = money(self._cost_of(event, pos) * event.qty, company.currency)
            revenue, tax = self._price(event, company)
            reversal_of, sale_kind = "", "sale"
        else:
            cost, revenue, tax = self._returned_share(record, event.qty, company.currency)
            self.sales[sale_key] = record._replace(
                returned_qty=record.returned_qty + event.qty,
                returned_cost=record.returned_cost + cost,
                returned_revenue=record.returned_revenue + revenue,
                returned_tax=record.returned_tax + tax,
            )
            self.dirty_sales.add(sale_key)
            reversal_of, sale_kind = record.voucher_id, record.kind
            attrs = doc_attrs(record.doc_ref)
        unit_cost = cost / event.qty
        # What the inventory account gains: the cost, unless the units fill a shortfall
        # (negative stock), which takes them back at the cost it went out at.
        back = pos.receive(event.event_id, event.lot_id, event.qty, unit_cost, event.at_ms).inventory
        amounts = sale_amounts(-back, -revenue, -tax)
        if sale_kind == "gift":
            amounts = gift_amounts(-back, -tax)
        voucher = build(
            f"return:{event.event_id}",
            self._facts(sale_kind, event, company, attrs),  # red letter: the sale's own accounts
            amounts,
            self.rules,
            at_ms=event.at_ms,
            currency=company.currency,
            sources=self._source(event, attrs, (event.event_id,)),
            sku=event.sku,
            lot_id=event.lot_id,
            qty=event.qty,
            summary=f"return of {event.qty} × {event.sku} {event.lot_id} on {sale_doc} (red letter)",
            terms="",
            reversal_of=reversal_of,
        )
        if voucher is not None:
            voucher = replace(voucher, kind="return" if sale_kind == "sale" else "gift")
        return self._effects(voucher, self._valuation(company, event, before, voucher.voucher_id if voucher else ""))

    @staticmethod
    def _returned_share(record: SaleRecord, qty: int, currency: str) -> tuple[Decimal, Decimal, Decimal]:
        """This return's share of what is not returned yet (so shares never overrun, even
        when the same document sold the lot again in between); the last return takes
        exactly what is left, so a full return nets the sale to zero."""
        left = record.qty - record.returned_qty
        cost_left = record.cost - record.returned_cost
        revenue_left = record.revenue - record.returned_revenue
        tax_left = record.tax - record.returned_tax
        if qty == left:
            cost, revenue, tax = cost_left, revenue_left, tax_left
        else:
            cost = money(cost_left * qty / left, currency)
            revenue = money(revenue_left * qty / left, currency)
            tax = money(tax_left * qty / left, currency)
        return cost, revenue, tax

    def _transfer_in(self, event: Booking, company: Company, attrs: DocAttrs) -> Effects:
        pos = self.position(company, event.sku)
        before = self._lots(company, event.sku, event.lot_id)
        legs = self._take_transit(event, attrs)
        if legs and all(leg.site == event.site for leg, _, _ in legs):
            return self._cancelled_transfer(event, company, attrs, legs, before)
        value = sum((v for _, _, v in legs), ZERO)
        known = sum(q for _, q, _ in legs)
        if known < event.qty:  # arrived without a known dispatch: at the caller's or last cost
            value += money(self._cost_of(event, pos) * (event.qty - known), company.currency)
        receipt = pos.receive(event.event_id, event.lot_id, event.qty, value / event.qty, event.at_ms)
        intercompany = any(leg.company != company.company for leg, _, _ in legs)
        amounts = transfer_in_amounts(receipt.inventory, value, intercompany)
        voucher = self._voucher("transfer_in", event, company, attrs, amounts)
        valuations = self._valuation(company, event, before, voucher.voucher_id if voucher else "")
        cleared = self._clear_transit(event, company, attrs, legs)
        return Effects(((voucher,) if voucher else ()) + cleared, valuations)

    def _clear_transit(
        self, event: Booking, company: Company, attrs: DocAttrs, legs: list[tuple[TransitRecord, int, Decimal]]
    ) -> tuple[Voucher, ...]:
        """Goods that left another company's site booked to its goods in transit (the
        dispatch did not name the destination) and arrived here: that company's transit is
        cleared into its inter-company receivable, the other side of this company's payable."""
        by_company: dict[str, Decimal] = {}
        for leg, _, value in legs:
            if leg.company != company.company and not leg.intercompany:
                by_company[leg.company] = by_company.get(leg.company, ZERO) + value
        out: list[Voucher] = []
        for name, value in sorted(by_company.items()):
            source = self.setup.company(name)
            amounts = [Amount("intercompany_receivable", DEBIT, value), Amount("transit", CREDIT, value)]
            voucher = build(
                f"clear:{event.event_id}:{name}",
                self._facts("transfer_out", event, source, attrs),
                amounts,
                self.rules,
                at_ms=event.at_ms,
                currency=source.currency,
                sources=self._source(event, attrs),
                sku=event.sku,
                lot_id=event.lot_id,
                qty=event.qty,
                summary=f"transfer {attrs.key} arrived at {event.site} ({company.company}): transit to inter-company",
            )
            if voucher is not None:
                out.append(voucher)
        return tuple(out)

    def _cancelled_transfer(
        self,
        event: Booking,
        company: Company,
        attrs: DocAttrs,
        legs: list[tuple[TransitRecord, int, Decimal]],
        before: dict[str, tuple[int, Decimal]],
    ) -> Effects:
        """Goods back at the site they left from: the transfer is cancelled, and its
        voucher reversed (red letter) for the units that came back, at their cost."""
        pos = self.position(company, event.sku)
        value = sum((v for _, _, v in legs), ZERO)
        back = pos.receive(event.event_id, event.lot_id, event.qty, value / event.qty, event.at_ms).inventory
        first = legs[0][0]
        intercompany = first.company != company.company
        amounts = [
            Amount("intercompany_receivable" if intercompany else "transit", DEBIT, -value),
            Amount("inventory", CREDIT, -back),
            Amount("cogs", DEBIT, value - back, "cost difference on units issued before they came back"),
        ]
        voucher = build(
            f"cancel:{event.event_id}",
            self._facts("transfer_out", event, company, attrs),
            amounts,
            self.rules,
            at_ms=event.at_ms,
            currency=company.currency,
            sources=self._source(event, attrs, (event.event_id,)),
            sku=event.sku,
            lot_id=event.lot_id,
            qty=event.qty,
            summary=f"transfer {first.doc_key} cancelled: {event.qty} × {event.sku} back at {event.site} (red letter)",
            reversal_of=first.voucher_id,
        )
        return self._effects(voucher, self._valuation(company, event, before, voucher.voucher_id if voucher else ""))

    def _take_transit(self, event: Booking, attrs: DocAttrs) -> list[tuple[TransitRecord, int, Decimal]]:
        """Oldest open transit legs of this sku and lot (same document first)."""
        doc = attrs.orig or attrs.key
        candidates = [t for t in self.transit if t.sku == event.sku and t.lot_id == event.lot_id and t.qty > 0]
        candidates.sort(key=lambda t: 0 if doc and t.doc_key == doc else 1)  # stable: oldest first within
        taken: list[tuple[TransitRecord, int, Decimal]] = []
        left = event.qty
        for leg in candidates:
            if left == 0:
                break
            take = min(left, leg.qty)
            value = leg.value if take == leg.qty else money(leg.value * take / leg.qty, self._currency_of(leg))
            leg.qty -= take
            leg.value -= value
            taken.append((leg, take, value))
            left -= take
        self.transit = [t for t in self.transit if t.qty > 0]
        return taken

    def _currency_of(self, leg: TransitRecord) -> str:
        return self.setup.company(leg.company).currency

    # ---- out ----

    def _outbound(self, event: Booking, external: str) -> Effects:
        company = self.setup.company_of(event.site)
        attrs = event_attrs(event)
        pos = self.position(company, event.sku)
        before = self._lots(company, event.sku, event.lot_id)
        issue = pos.issue(event.lot_id, event.qty)
        cost = issue.value
        if external == "@customer":
            return self._sale(event, company, attrs, cost, before)
        intercompany = False
        if external == "@transit":
            intercompany = self._dispatch_is_intercompany(event, company, attrs)
            kind, amounts = "transfer_out", transfer_out_amounts(cost, intercompany)
        elif external == "@scrap":
            kind, amounts = "scrap", scrap_amounts(cost)
        else:
            kind, amounts = "count_loss", count_amounts(False, cost)
        voucher = self._voucher(kind, event, company, attrs, amounts)
        vid = voucher.voucher_id if voucher else ""
        if external == "@transit":
            self._remember_transit(event, company, attrs, cost, vid, intercompany)
        return self._effects(voucher, self._valuation(company, event, before, vid))

    def _dispatch_is_intercompany(self, event: Booking, company: Company, attrs: DocAttrs) -> bool:
        """A transfer names its destination company, or its destination site (whose company
        the org tree gives); when that is another company the leg is inter-company."""
        if attrs.to_company:
            return attrs.to_company != company.company
        return bool(attrs.to_site) and self.setup.company_of(attrs.to_site).company != company.company

    def _remember_transit(
        self, event: Booking, company: Company, attrs: DocAttrs, cost: Decimal, voucher_id: str, inter: bool
    ) -> None:
        self.transit.append(
            TransitRecord(
                company.company, event.site, event.sku, event.lot_id, attrs.key, voucher_id, event.qty, cost, inter
            )
        )
        if len(self.transit) > MAX_TRANSIT_RECORDS:
            del self.transit[0]

    def _price(self, event: Booking, company: Company) -> tuple[Decimal, Decimal]:
        fin = event.finance
        price = parse_amount(fin.unit_price) if fin else None
        rate = parse_amount(fin.tax_rate) if fin else None
        revenue = money(price * event.qty, company.currency) if price is not None else ZERO
        tax = money(revenue * rate, company.currency) if rate is not None else ZERO
        return revenue, tax

    def _sale(
        self,
        event: Booking,
        company: Company,
        attrs: DocAttrs,
        cost: Decimal,
        before: dict[str, tuple[int, Decimal]],
    ) -> Effects:
        revenue, tax = self._price(event, company)
        terms = event.finance.terms if event.finance else ""
        if attrs.flow == "gift":
            deemed_tax = tax if attrs.tax == "deemed_sale" else ZERO
            kind, amounts, revenue, tax = "gift", gift_amounts(cost, deemed_tax), ZERO, deemed_tax
        else:
            kind, amounts = "sale", sale_amounts(cost, revenue, tax)
        voucher = self._voucher(kind, event, company, attrs, amounts, terms=terms)
        vid = voucher.voucher_id if voucher else ""
        if voucher is not None:
            key = (company.company, attrs.key, event.sku, event.lot_id)
            self.dirty_sales.add(key)
            known = self.sales.get(key)
            if known is None or known.returned_qty == known.qty:
                self.sales.pop(key, None)  # re-inserted last: the oldest sale is the first dropped
                self.sales[key] = SaleRecord(vid, kind, event.qty, cost, revenue, tax, doc_ref=attrs_ref(attrs))
                if len(self.sales) > MAX_SALES:
                    del self.sales[next(iter(self.sales))]
            else:  # the same document sells the lot again: one record, amounts added up
                self.sales[key] = known._replace(
                    qty=known.qty + event.qty,
                    cost=known.cost + cost,
                    revenue=known.revenue + revenue,
                    tax=known.tax + tax,
                )
        return self._effects(voucher, self._valuation(company, event, before, vid))

    # ---- not from the journal: supplier invoices and landed costs ----

    def open_grni(self, company: str, receipt_doc: str) -> Decimal:
        record = self.grni.get((company, receipt_doc))
        return record.booked - record.matched if record else ZERO

    def match_invoice(self, company: str, receipt_docs: tuple[str, ...]) -> Decimal:
        """Match the open GRNI of the named receipt documents; returns what was matched."""
        matched = ZERO
        for doc in receipt_docs:
            record = self.grni.get((company, doc))
            if record is not None:
                matched += record.booked - record.matched
                record.matched = record.booked
                self.dirty_grni.add((company, doc))
        return matched

    def add_landed_cost(self, company: Company, sku: str, lot_id: str, amount: Decimal) -> Decimal:
        """Put a landed cost onto a lot on hand; returns the part expensed (no stock left)."""
        return self.position(company, sku).add_cost(lot_id, amount)

    def reverse(
        self, original: Voucher, voucher_id: str, at_ms: int, sources: tuple[Source, ...], summary: str
    ) -> Voucher:
        return red_letter(original, voucher_id, at_ms, sources, summary)


def method_of(ledger: Ledger, sku: str) -> Method:
    return ledger.setup.category_of(sku)[1]
