"""Business events: what other systems (finance, ERP, BI) learn of every accepted change.

Past tense, derived, never stored by the domain: each journaled movement becomes one
`BusinessEvent`, in journal order, carrying the document reference and the financial
context the caller supplied with the command that produced it (DESIGN.md §4, §9).
Derivation is a pure function of a journal entry, so the events of any journal position
can be derived again at any time and come out identical — the journal is their source
of truth, the event bus only a copy (adapters.nats.bus, catalogue: adapters/nats/EVENTS.md).

Money is exact: amounts are decimal strings, computed with `decimal` (never floats).
Rounding rule (`MONEY_PLACES`): an amount is the exact product; only when the exact
product has more than 6 decimal places is it rounded to 6, half to even (banker's
rounding, so rounding errors do not drift one way over many lines). An integer quantity
times a unit amount of ≤ 6 places is never rounded; a tax amount usually is not either.
Rounding to a currency's minor unit (2 for EUR, 0 for JPY) is the booking system's
policy, not Lotwise's: it gets the unrounded line amounts to apply it to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Protocol

from engine.domain.model import External, Lot, Movement, QuantKey
from engine.domain.ports import JournalEntry

MONEY_PLACES = 6
_MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_PLACES)
_MONEY_PRECISION = 80  # digits: far above any qty (≤ 10^12) × a sane amount, so products are exact
_MAX_AMOUNT_CHARS = 64  # longer "amounts" are not amounts; they are not computed with
# One context for every amount, made once: entering a `localcontext()` per amount was most
# of an event's derivation (the event bus derives one event per movement).
_MONEY_CONTEXT = Context(prec=_MONEY_PRECISION, rounding=ROUND_HALF_EVEN)
_CACHED_TEXTS = 4_096  # distinct unit amounts and terms kept parsed (a catalogue's prices repeat)


@dataclass(frozen=True, slots=True)
class Place:
    """A movement's bucket, flattened: an external bucket (`external` = "@supplier",
    "@customer", "@scrap", "@count_variance", "@transit"; the rest "") or a quant inside
    the site (`external` = "", and its bin, status and owner)."""

    external: str = ""
    bin: str = ""
    status: str = ""
    owner: str = ""


@dataclass(frozen=True, slots=True)
class LotDates:
    """A lot's dates (epoch ms, UTC; 0 = none), known on receipts."""

    received_at_ms: int
    expires_at_ms: int = 0
    opened_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class EventFinance:
    """The financial context of the command, as the caller supplied it, and the line
    amounts computed from it. All amounts are decimal strings; "" = not supplied (or not
    computable because an input is missing or is not a decimal)."""

    currency: str = ""  # ISO 4217 code, as supplied
    unit_cost: str = ""  # per base unit of the sku
    unit_price: str = ""  # per base unit of the sku
    tax_rate: str = ""  # a fraction: "0.2" is 20 %
    terms: str = ""  # settlement terms as supplied, e.g. "2/10 n/30"
    discount_pct: str | None = None  # parsed terms: 2 (%) ...
    discount_days: int | None = None  # ... if paid within 10 days ...
    net_days: int | None = None  # ... else net due in 30 days; None: no (parsable) terms
    extended_cost: str = ""  # qty × unit_cost
    extended_price: str = ""  # qty × unit_price
    tax_amount: str = ""  # extended_price × tax_rate
    # The typed attributes of model.Finance (journal v7; "" / False when not said).
    customer_tier: str = ""
    sales_channel: str = ""
    tax_attribute: str = ""
    gift: bool = False
    return_of: str = ""  # the doc_ref of the sale a return refers to
    to_site: str = ""  # a transfer's destination site ...
    to_company: str = ""  # ... and company


@dataclass(frozen=True, slots=True)
class BusinessEvent:
    """One journaled movement, told to the outside world. See adapters/nats/EVENTS.md."""

    event_id: str  # f"{shard}:{batch_seq}:{index}": stable (journal positions never change), unique
    kind: str  # the movement kind: receive, move, change_status, reserve, commit, ...
    sku: str
    site: str
    seq: int  # the (sku, site) cell's movement sequence: gap-free from 1
    lot_id: str
    qty: int  # base units moved from `from_` to `to` (≥ 0; 0 when only `held` changes)
    from_: Place
    to: Place
    held_delta: int  # change of the held amount of the quant (reserve +; commit, release, expire −)
    hold_id: str
    request_id: str  # the caller's request id ("" for background work: expiry)
    doc_ref: str  # the caller's document reference (order, delivery note, count sheet, ...)
    at_ms: int  # engine time of the change (epoch ms, UTC)
    lot: LotDates | None  # the lot's dates when the movement carries them (receipts)
    hold_expires_at_ms: int  # on reserves: when the hold expires; else 0
    shard: str  # journal position: the shard whose batch this is ...
    batch_seq: int  # ... its batch number (gap-free per shard) ...
    index: int  # ... the movement's index in the batch ...
    stream_seq: int  # ... and the journal message's stream sequence (0 when unknown)
    finance: EventFinance | None  # None: the command carried no financial context
    # Provenance (catalogue version 2): who counted and how sure (counts); when it happened
    # if not at `at_ms` (a device's offline op). "" / 0 / 0 when the movement does not say.
    source: str = ""
    confidence: float = 0.0
    business_at_ms: int = 0


def business_events(entry: JournalEntry, stream_seq: int = 0) -> list[BusinessEvent]:
    """One event per movement of `entry`, in journal order. Pure: the same entry gives
    the same events. The doc ref and finance come from the op (same cell, same request
    id) that produced the movement; background movements (expiry) have neither op nor
    finance."""
    ops = ops_by_request(entry.ops)
    return [
        _event(entry, stream_seq, index, m, ops.get((m.sku, m.site, m.request_id)))
        for index, m in enumerate(entry.movements)
    ]


def event_id(shard: str, batch_seq: int, index: int) -> str:
    return f"{shard}:{batch_seq}:{index}"


def ops_by_request(ops: Sequence[Any]) -> dict[tuple[str, str, str], Any]:
    """Cell commands of the batch by (sku, site, request id). Request ids are the caller's
    and idempotent per cell, so the cell is part of the key; the first op wins (a retry
    in the same batch produces no movements)."""
    found: dict[tuple[str, str, str], Any] = {}
    for op in ops:
        request_id = getattr(op, "request_id", "")
        sku, site = getattr(op, "sku", None), getattr(op, "site", None)
        if request_id and isinstance(sku, str) and isinstance(site, str):
            found.setdefault((sku, site, request_id), op)
    return found


def _event(entry: JournalEntry, stream_seq: int, index: int, m: Movement, op: Any) -> BusinessEvent:
    return BusinessEvent(
        event_id=event_id(entry.shard, entry.batch_seq, index),
        kind=m.kind.value,
        sku=m.sku,
        site=m.site,
        seq=m.seq,
        lot_id=m.lot_id,
        qty=m.qty,
        from_=place(m.src),
        to=place(m.dst),
        held_delta=m.held_delta,
        hold_id=m.hold_id,
        request_id=m.request_id,
        doc_ref=m.doc_ref,
        at_ms=m.at_ms,
        lot=lot_dates(m.lot),
        hold_expires_at_ms=m.expires_at_ms,
        shard=entry.shard,
        batch_seq=entry.batch_seq,
        index=index,
        stream_seq=stream_seq,
        finance=event_finance(getattr(op, "finance", None), m.qty),
        source=m.source,
        confidence=m.confidence,
        business_at_ms=m.business_at_ms,
    )


def place(bucket: QuantKey | External) -> Place:
    if isinstance(bucket, QuantKey):
        return Place(bin=bucket.bin, status=bucket.status, owner=bucket.owner)
    return Place(external=bucket.value)


def lot_dates(lot: Lot | None) -> LotDates | None:
    if lot is None:
        return None
    return LotDates(lot.received_at_ms, lot.expires_at_ms, lot.opened_at_ms)


# ---- finance ----


def event_finance(finance: Any, qty: int) -> EventFinance | None:
    """The command's `Finance` (engine.domain.model) and the line amounts for `qty` units.

    Total by design: an event is derived from a journal entry that was accepted already,
    so nothing here may refuse it; an amount that is not a decimal gives "" instead."""
    if finance is None:
        return None
    currency = str(getattr(finance, "currency", "") or "")
    unit_cost = str(getattr(finance, "unit_cost", "") or "")
    unit_price = str(getattr(finance, "unit_price", "") or "")
    tax_rate = str(getattr(finance, "tax_rate", "") or "")
    terms = str(getattr(finance, "terms", "") or "")
    extended_price = _times(qty, unit_price)
    discount_pct, discount_days, net_days = _terms(terms)
    return EventFinance(
        currency=currency,
        unit_cost=unit_cost,
        unit_price=unit_price,
        tax_rate=tax_rate,
        terms=terms,
        discount_pct=discount_pct,
        discount_days=discount_days,
        net_days=net_days,
        extended_cost=_times(qty, unit_cost),
        extended_price=extended_price,
        tax_amount=_times(extended_price, tax_rate),
        customer_tier=str(getattr(finance, "customer_tier", "") or ""),
        sales_channel=str(getattr(finance, "sales_channel", "") or ""),
        tax_attribute=str(getattr(finance, "tax_attribute", "") or ""),
        gift=getattr(finance, "gift", False) is True,
        return_of=str(getattr(finance, "return_of", "") or ""),
        to_site=str(getattr(finance, "to_site", "") or ""),
        to_company=str(getattr(finance, "to_company", "") or ""),
    )


@lru_cache(maxsize=_CACHED_TEXTS)  # Decimal is immutable; a unit price repeats on every line of its sku
def _decimal(text: str) -> Decimal | None:
    if not text or len(text) > _MAX_AMOUNT_CHARS:
        return None
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def _times(a: int | str, b: str) -> str:
    """a × b exactly, rounded half-even to MONEY_PLACES only past them; "" if either is missing."""
    left = Decimal(a) if isinstance(a, int) else _decimal(a)
    right = _decimal(b)
    if left is None or right is None:
        return ""
    return money(left * right)


def money(value: Decimal) -> str:
    """The amount as a plain decimal string (never exponent notation), by the module's rule."""
    value = _MONEY_CONTEXT.plus(value)
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MONEY_PLACES:
        value = value.quantize(_MONEY_QUANTUM, rounding=ROUND_HALF_EVEN, context=_MONEY_CONTEXT)
    return format(value, "f")


@lru_cache(maxsize=_CACHED_TEXTS)  # a pure function of the text; a handful of terms recur
def _terms(text: str) -> tuple[str | None, int | None, int | None]:
    """(discount_pct, discount_days, net_days) of terms like "2/10 n/30"; Nones when there
    are none or they do not parse."""
    if not text:
        return None, None, None
    parse = _terms_parser()
    if parse is None:
        return None, None, None
    try:
        terms = parse(text)
    except (ValueError, TypeError, InvalidOperation):
        return None, None, None
    pct = getattr(terms, "discount_pct", None)
    return (
        None if pct is None else format(Decimal(pct), "f"),
        getattr(terms, "discount_days", None),
        getattr(terms, "net_days", None),
    )


def _terms_parser() -> Any:
    # engine.domain.commands.parse_terms is the one parser of settlement terms: imported at
    # call time so this module does not depend on the order commands and events are loaded.
    from engine.domain import commands

    return getattr(commands, "parse_terms", None)


# ---- transfer steps ----

# The step's action → the event kind. Every step is told, those that move no stock too
# (an approval short of `approved`, a rejection), so one consumer follows a transfer whole.
TRANSFER_EVENT_KINDS = {
    "create": "transfer_created",
    "approve": "transfer_approved",
    "reject": "transfer_rejected",
    "ship": "transfer_shipped",
    "receive": "transfer_received",
    "cancel": "transfer_cancelled",
    "escalate": "transfer_escalated",  # a deadline passed: the escalation role may act
}


@dataclass(frozen=True, slots=True)
class TransferEvent:
    """One step of a transfer, told to the outside world (adapters/nats/EVENTS.md,
    "Transfer steps"). The stock the step moved is told by its movements' own events
    (doc_ref = the transfer id); this one tells who took which step, and where it led."""

    event_id: str  # f"transfer:{transfer_id}:{step}": a step's place never changes
    kind: str  # TRANSFER_EVENT_KINDS
    transfer_id: str
    step: int  # the step's index in the transfer (0: create)
    from_site: str
    to_site: str
    state: str  # the state the step led to (an approval may lead to a flow's own state)
    previous_state: str  # "" on create
    actor: str  # the caller's token subject
    request_id: str
    note: str
    at_ms: int
    total_qty: int  # units the transfer asks for, all lines
    eta_ms: int  # on and after shipping: the expected arrival (0: not given)


class TransferEventSink(Protocol):
    """Where transfer-step events go (adapters.nats.bus.TransferEventPublisher)."""

    async def publish(self, event: TransferEvent) -> None:
        """Stored durably when it returns; a republished event (same id) is not stored twice."""
        ...

    async def close(self) -> None: ...
