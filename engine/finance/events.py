"""The business events the ledgers value, derived from a journal entry for the finance
follower alone (DESIGN.md §9, §14).

`engine.domain.events.business_events` is the reference derivation: one `BusinessEvent` per
movement, with every field the event bus publishes (lot dates, holds, provenance, the
line amounts and parsed terms of its finance). The ledgers read a dozen of those fields,
and only of the movements that cross the site's boundary with owned stock (`Ledger.apply`
books nothing else), yet building the full event was ~12 µs of the follower's ~60 µs of
booking per movement (bench/README.md, "Finance, sixth stop"). `ledger_events` makes, for
those movements only, a named tuple with the same names and the same values as the
reference event's fields the ledgers read — so the same vouchers, byte for byte (a property
test derives both ways from random entries and books them:
tests/unit/test_finance_events.py).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from engine.domain.events import event_id, ops_by_request
from engine.domain.model import External, QuantKey
from engine.domain.ports import JournalEntry

OWN = "own"


class Side(NamedTuple):
    """A movement's bucket as the ledgers read it (engine.domain.events.Place's fields)."""

    external: str = ""  # "@supplier", "@customer", ...; "" inside the site
    owner: str = ""  # inside the site: who owns the goods


class LedgerFinance(NamedTuple):
    """The parts of the command's finance the ledgers read, normalised exactly as
    engine.domain.events.event_finance normalises them (str of the value, "" for none)."""

    unit_cost: str = ""
    unit_price: str = ""
    tax_rate: str = ""
    terms: str = ""
    customer_tier: str = ""
    sales_channel: str = ""
    tax_attribute: str = ""
    gift: bool = False
    return_of: str = ""
    to_site: str = ""
    to_company: str = ""


class LedgerEvent(NamedTuple):
    """One movement the ledgers value, with BusinessEvent's names for what they read."""

    event_id: str
    kind: str
    sku: str
    site: str
    seq: int
    lot_id: str
    qty: int
    from_: Side
    to: Side
    doc_ref: str
    at_ms: int
    finance: LedgerFinance | None


def _side(bucket: QuantKey | External) -> Side:
    if isinstance(bucket, QuantKey):
        return Side("", bucket.owner)
    return Side(bucket.value, "")


def _text(finance: Any, name: str) -> str:
    return str(getattr(finance, name, "") or "")


def ledger_finance(finance: Any) -> LedgerFinance | None:
    """The op's Finance as the ledgers read it (event_finance's normalisation, without the
    line amounts and parsed terms they do not read)."""
    if finance is None:
        return None
    return LedgerFinance(
        _text(finance, "unit_cost"),
        _text(finance, "unit_price"),
        _text(finance, "tax_rate"),
        _text(finance, "terms"),
        _text(finance, "customer_tier"),
        _text(finance, "sales_channel"),
        _text(finance, "tax_attribute"),
        getattr(finance, "gift", False) is True,
        _text(finance, "return_of"),
        _text(finance, "to_site"),
        _text(finance, "to_company"),
    )


def valued(src: QuantKey | External, dst: QuantKey | External, qty: int) -> bool:
    """Whether `Ledger.apply` values such a movement: owned goods crossing the boundary."""
    if qty <= 0:
        return False
    if isinstance(src, External):
        return isinstance(dst, QuantKey) and dst.owner == OWN
    return isinstance(dst, External) and src.owner == OWN


def ledger_events(entry: JournalEntry) -> list[LedgerEvent]:
    """The entry's movements the ledgers value, in journal order, each with its reference
    event's id (the journal position: shard, batch, index), so the vouchers' ids are the same.
    The finance of an op is normalised once for all its movements."""
    ops: dict[tuple[str, str, str], Any] | None = None
    finances: dict[int, LedgerFinance | None] = {}
    out: list[LedgerEvent] = []
    for index, m in enumerate(entry.movements):  # bounded: the entry's movements
        if not valued(m.src, m.dst, m.qty):
            continue
        if ops is None:
            ops = ops_by_request(entry.ops)
        op = ops.get((m.sku, m.site, m.request_id))
        key = id(op)
        if key not in finances:  # `op` stays alive in `ops` meanwhile: its id is not reused
            finances[key] = ledger_finance(getattr(op, "finance", None))
        out.append(
            LedgerEvent(
                event_id(entry.shard, entry.batch_seq, index),
                m.kind.value,
                m.sku,
                m.site,
                m.seq,
                m.lot_id,
                m.qty,
                _side(m.src),
                _side(m.dst),
                m.doc_ref,
                m.at_ms,
                finances[key],
            )
        )
    return out
