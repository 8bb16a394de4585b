"""The ledgers' state and vouchers as typed, versioned JSON documents (no pickle).

The finance follower checkpoints its state with the journal position it reflects; a
restart loads it and carries on from there, so redelivered entries at or below that
position are skipped and the rest apply exactly once. Decimals travel as strings."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from engine.finance.costing import Layer, Method, Position
from engine.finance.ledger import GrniRecord, Ledger, SaleRecord, TransitRecord
from engine.finance.money import text
from engine.finance.vouchers import Line, Note, Source, Voucher

STATE_FORMAT = 1
VOUCHER_FORMAT = 2  # 2: a source keeps the attributes its accounts were chosen by
VOUCHER_FORMATS = (1, 2)  # a format-1 voucher's sources read with those at ""


def _d(value: str) -> Decimal:
    return Decimal(value)


def ledger_to_doc(ledger: Ledger) -> dict[str, Any]:
    """The whole state."""
    return _doc(ledger, ledger.positions.keys(), ledger.sales.keys(), ledger.grni.keys())


def ledger_delta(ledger: Ledger) -> dict[str, Any]:
    """What changed since the last delta (the dirty positions, sales and GRNI records, and
    the open transit legs, which are few), in the shape of the whole state; clears the marks.
    Stores keep the whole state by merging deltas (merge_state)."""
    doc = _doc(
        ledger,
        [k for k in ledger.dirty_positions if k in ledger.positions],
        [k for k in ledger.dirty_sales if k in ledger.sales],
        [k for k in ledger.dirty_grni if k in ledger.grni],
    )
    ledger.dirty_positions.clear()
    ledger.dirty_sales.clear()
    ledger.dirty_grni.clear()
    return doc


def _position_key(p: dict[str, Any]) -> tuple[str, str]:
    return (p["company"], p["sku"])


def merge_state(base: dict[str, Any] | None, delta: dict[str, Any]) -> dict[str, Any]:
    """`base` with `delta`'s entries replacing those of the same key (positions by company
    and sku, sales by company, document, sku and lot, GRNI by company and document); the
    transit legs are the delta's."""
    if base is None:
        return delta
    positions = {_position_key(p): p for p in base["positions"]}
    positions.update({_position_key(p): p for p in delta["positions"]})
    sales = {tuple(r[:4]): r for r in base["sales"]}
    sales.update({tuple(r[:4]): r for r in delta["sales"]})
    grni = {tuple(r[:2]): r for r in base["grni"]}
    grni.update({tuple(r[:2]): r for r in delta["grni"]})
    return {
        "format": STATE_FORMAT,
        "positions": list(positions.values()),
        "sales": list(sales.values()),
        "transit": delta["transit"],
        "grni": list(grni.values()),
    }


def _doc(
    ledger: Ledger,
    positions: Iterable[tuple[str, str]],
    sales: Iterable[tuple[str, str, str, str]],
    grni: Iterable[tuple[str, str]],
) -> dict[str, Any]:
    return {
        "format": STATE_FORMAT,
        "positions": [
            {
                "company": company,
                "sku": sku,
                "method": pos.method.value,
                "currency": pos.currency,
                "layers": [
                    [
                        ly.layer_id,
                        ly.lot_id,
                        ly.at_ms,
                        ly.qty,
                        text(ly.unit_cost),
                        ly.remaining_qty,
                        text(ly.remaining_value),
                    ]
                    for ly in pos.layers
                ],
                "avg_qty": pos.avg_qty,
                "avg_value": text(pos.avg_value),
                "lot_qty": pos.lot_qty,
                "last_cost": {lot: text(c) for lot, c in pos.last_cost.items()},
            }
            for (company, sku), pos in ((key, ledger.positions[key]) for key in positions)
        ],
        "sales": [_sale_row(key, ledger.sales[key]) for key in sales],
        "transit": [
            [t.company, t.site, t.sku, t.lot_id, t.doc_key, t.voucher_id, t.qty, text(t.value), t.intercompany]
            for t in ledger.transit
        ],
        "grni": [
            [company, doc, text(ledger.grni[(company, doc)].booked), text(ledger.grni[(company, doc)].matched)]
            for company, doc in grni
        ],
    }


def _sale_row(key: tuple[str, str, str, str], r: SaleRecord) -> list[Any]:
    """company, document, sku, lot, voucher, kind, qty, cost, revenue, tax, returned qty,
    returned cost, revenue and tax, doc_ref (one per sale changed since the last checkpoint)."""
    amounts = (r.cost, r.revenue, r.tax)
    returned = (r.returned_cost, r.returned_revenue, r.returned_tax)
    return [*key, r.voucher_id, r.kind, r.qty, *map(text, amounts), r.returned_qty, *map(text, returned), r.doc_ref]


def load_ledger(ledger: Ledger, doc: dict[str, Any]) -> None:
    """Fill `ledger` (fresh, with its setup and rules) from a checkpoint document."""
    if doc.get("format") != STATE_FORMAT:
        raise ValueError(f"finance state format {doc.get('format')!r}: this engine reads {STATE_FORMAT}")
    for p in doc["positions"]:
        pos = Position(Method(p["method"]), p["currency"])
        pos.layers = [Layer(a, b, c, d, _d(e), f, _d(g)) for a, b, c, d, e, f, g in p["layers"]]
        pos.avg_qty, pos.avg_value = int(p["avg_qty"]), _d(p["avg_value"])
        pos.lot_qty = {k: int(v) for k, v in p["lot_qty"].items()}
        pos.last_cost = {k: _d(v) for k, v in p["last_cost"].items()}
        ledger.positions[(p["company"], p["sku"])] = pos
    for row in doc["sales"]:
        company, sale_doc, sku, lot, vid, kind, qty, cost, revenue, tax, rq, rc, rr, rt, doc_ref = row
        ledger.sales[(company, sale_doc, sku, lot)] = SaleRecord(
            vid, kind, int(qty), _d(cost), _d(revenue), _d(tax), int(rq), _d(rc), _d(rr), _d(rt), doc_ref
        )
    ledger.transit = [
        TransitRecord(a, b, c, d, e, f, int(g), _d(h), bool(i)) for a, b, c, d, e, f, g, h, i in doc["transit"]
    ]
    for company, receipt_doc, booked, matched in doc["grni"]:
        ledger.grni[(company, receipt_doc)] = GrniRecord(company, _d(booked), _d(matched))


# ---- vouchers ----


def voucher_to_doc(v: Voucher) -> dict[str, Any]:
    """By hand rather than dataclasses.asdict (which deep-copies every value), and as dict
    displays rather than built by field name: this runs for every voucher the follower
    stores (~10 → ~5 µs a voucher). The keys are the fields' names in their declared order
    (the voucher's scalars, then "format", lines, sources, notes) — the stored document's
    bytes; tests/unit/test_finance_state_docs.py holds it to a field-by-field construction."""
    doc: dict[str, Any] = {
        "voucher_id": v.voucher_id,
        "company": v.company,
        "kind": v.kind,
        "at_ms": v.at_ms,
        "currency": v.currency,
        "summary": v.summary,
        "preparer": v.preparer,
        "state": v.state,
        "reversal_of": v.reversal_of,
        "terms": v.terms,
        "reviewer": v.reviewer,
        "reason": v.reason,
        "posted_at_ms": v.posted_at_ms,
        "version": v.version,
        "format": VOUCHER_FORMAT,
        "lines": [_line_doc(*ln) for ln in v.lines],
        "sources": [_source_doc(*s) for s in v.sources],
        "notes": [{"author": n.author, "at_ms": n.at_ms, "text": n.text} for n in v.notes],
    }
    return doc


def _line_doc(
    line_no: int,
    role: str,
    account: str,
    debit: Decimal,
    credit: Decimal,
    rule: str,
    account_name: str,
    sku: str,
    lot_id: str,
    qty: int,
    memo: str,
) -> dict[str, Any]:
    """A Line's fields in order (its positional form is its order), amounts as text."""
    return {
        "line_no": line_no,
        "role": role,
        "account": account,
        "debit": text(debit),
        "credit": text(credit),
        "rule": rule,
        "account_name": account_name,
        "sku": sku,
        "lot_id": lot_id,
        "qty": qty,
        "memo": memo,
    }


def _source_doc(
    event_id: str,
    doc_ref: str,
    sku: str,
    site: str,
    seq: int,
    lot_id: str,
    qty: int,
    layer_ids: tuple[str, ...],
    movement: str,
    tier: str,
    channel: str,
    tax: str,
) -> dict[str, Any]:
    """A Source's fields in order, its layer ids last (as a list)."""
    return {
        "event_id": event_id,
        "doc_ref": doc_ref,
        "sku": sku,
        "site": site,
        "seq": seq,
        "lot_id": lot_id,
        "qty": qty,
        "movement": movement,
        "tier": tier,
        "channel": channel,
        "tax": tax,
        "layer_ids": list(layer_ids),
    }


def voucher_from_doc(doc: dict[str, Any]) -> Voucher:
    if doc.get("format") not in VOUCHER_FORMATS:
        raise ValueError(f"voucher format {doc.get('format')!r}: this engine reads {VOUCHER_FORMATS}")
    lines = tuple(Line(**{**line, "debit": _d(line["debit"]), "credit": _d(line["credit"])}) for line in doc["lines"])
    sources = tuple(Source(**{**s, "layer_ids": tuple(s["layer_ids"])}) for s in doc["sources"])
    notes = tuple(Note(**n) for n in doc["notes"])
    fields = {k: v for k, v in doc.items() if k not in ("format", "lines", "sources", "notes")}
    return Voucher(**fields, lines=lines, sources=sources, notes=notes)
