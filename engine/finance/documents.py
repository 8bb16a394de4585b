"""Finance documents that do not come from the journal — supplier invoices and landed
costs — as typed, versioned records, and what each does to the ledgers.

They change the ledgers (an invoice matches open GRNI, a landed cost revalues a lot), so
a rebuild of the ledgers from the journal must meet them again at the same point. Each
record is appended to a durable log of its own (port `FinanceDocuments`: JetStream in the
engine, adapters/nats/finance_documents.py) *before* its vouchers are stored, stamped with
the journal position the ledgers had reached (`after_position`); the follower applies the
log in order, each record before the first journal entry past its position. Its checkpoint
counts the records applied, so a restart, a redelivery or a replay from zero books every
record once, at the same place: the same vouchers (ids derive from the record ids).

Payment-plan baselines ("the goods were accepted on 31 December") change no ledger, but a
plan's due date hangs on them: they are logged the same way, so a restart, or a rebuild
into an empty store, finds every plan's clock where it was. Applying one stores it (the
newest record of a document and baseline wins: a corrected date is a new record).

Format 2 (`FORMAT`): {"format": 2, "kind": "supplier_invoice" | "landed_cost" |
"payment_baseline", "id", "after_position", "at_ms", "preparer", "company", ...the kind's
fields}; amounts are decimal strings. Format 1 is the same without "payment_baseline" and
still reads. Samples are committed in tests/data/finance/documents_v1.jsonl and
documents_v2.jsonl (read by a contract test).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.domain.errors import FailedPrecondition
from engine.finance.ledger import Ledger, Valuation
from engine.finance.mapping import Facts
from engine.finance.money import ZERO, money, text
from engine.finance.vouchers import Amount, Source, Voucher, build, landed_cost_amounts, supplier_invoice_amounts

FORMAT = 2
FORMATS = (1, 2)  # 2: payment baselines
MAX_DOCUMENTS = 1_000_000  # records a ledger rebuild reads (the log keeps them all)
REASON_NOTHING_TO_MATCH = "NOTHING_TO_MATCH"
SUPPLIER_INVOICE = "supplier_invoice"
LANDED_COST = "landed_cost"
PAYMENT_BASELINE = "payment_baseline"


@dataclass(frozen=True, slots=True)
class SupplierInvoice:
    invoice_id: str
    company: str
    receipt_docs: tuple[str, ...]  # the receipts' documents whose open GRNI it matches
    net: Decimal
    tax: Decimal
    terms: str
    preparer: str
    at_ms: int

    @property
    def record_id(self) -> str:
        return f"invoice:{self.invoice_id}"


@dataclass(frozen=True, slots=True)
class LandedCost:
    cost_id: str
    company: str
    sku: str
    lot_id: str  # "" = the whole sku
    amount: Decimal
    preparer: str
    at_ms: int

    @property
    def record_id(self) -> str:
        return f"landed:{self.cost_id}"


@dataclass(frozen=True, slots=True)
class PaymentBaseline:
    """The event that starts a payment plan's clock: "acceptance" of document INV-7 at a time."""

    doc_key: str
    baseline: str  # engine.finance.terms.BASELINES
    at_ms: int
    preparer: str
    company: str = ""  # a baseline names a document, not a company

    @property
    def record_id(self) -> str:
        # the time is part of the id: the same event again is one record, a corrected date another
        return f"baseline:{self.doc_key}:{self.baseline}:{self.at_ms}"


FinanceDocument = SupplierInvoice | LandedCost | PaymentBaseline


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """One entry of the documents log: the document and where in the journal it applies."""

    document: FinanceDocument
    after_position: int  # applied once every journal entry up to this position is

    @property
    def record_id(self) -> str:
        return self.document.record_id


def record_to_doc(record: DocumentRecord) -> dict[str, Any]:
    d = record.document
    head = {"format": FORMAT, "id": d.record_id, "after_position": record.after_position, "at_ms": d.at_ms}
    head |= {"preparer": d.preparer, "company": d.company}
    if isinstance(d, PaymentBaseline):
        return head | {"kind": PAYMENT_BASELINE, "doc_key": d.doc_key, "baseline": d.baseline}
    if isinstance(d, SupplierInvoice):
        return head | {
            "kind": SUPPLIER_INVOICE,
            "invoice_id": d.invoice_id,
            "receipt_docs": list(d.receipt_docs),
            "net": text(d.net),
            "tax": text(d.tax),
            "terms": d.terms,
        }
    return head | {
        "kind": LANDED_COST,
        "cost_id": d.cost_id,
        "sku": d.sku,
        "lot_id": d.lot_id,
        "amount": text(d.amount),
    }


def record_from_doc(doc: dict[str, Any]) -> DocumentRecord:
    """ValueError for a record this engine cannot read (unknown format or kind, a missing field)."""
    if doc.get("format") not in FORMATS:
        raise ValueError(f"finance document format {doc.get('format')!r}: this engine reads {FORMATS}")
    try:
        kind, common = doc["kind"], (doc["company"],)
        document: FinanceDocument
        if kind == SUPPLIER_INVOICE:
            document = SupplierInvoice(
                doc["invoice_id"], *common, tuple(doc["receipt_docs"]), Decimal(doc["net"]), Decimal(doc["tax"]),
                doc["terms"], doc["preparer"], int(doc["at_ms"]),
            )  # fmt: skip
        elif kind == LANDED_COST:
            document = LandedCost(
                doc["cost_id"], *common, doc["sku"], doc["lot_id"], Decimal(doc["amount"]), doc["preparer"],
                int(doc["at_ms"]),
            )  # fmt: skip
        elif kind == PAYMENT_BASELINE and doc["format"] >= 2:
            document = PaymentBaseline(doc["doc_key"], doc["baseline"], int(doc["at_ms"]), doc["preparer"], *common)
        else:
            raise ValueError(f"finance document kind {kind!r} is not one this engine books")
        return DocumentRecord(document, int(doc["after_position"]))
    except (KeyError, TypeError, ArithmeticError) as exc:
        raise ValueError(f"finance document {doc.get('id')!r} is malformed: {exc!r}") from None


# ---- what a document does to the ledgers ----


def book(ledger: Ledger, document: FinanceDocument) -> tuple[list[Voucher], list[Valuation]]:
    """The document's vouchers and valuation changes, applied to `ledger`. Raises
    FailedPrecondition (and changes nothing) for an invoice with nothing to match. A payment
    baseline books nothing here: the follower stores it with the batch."""
    if isinstance(document, SupplierInvoice):
        return _book_invoice(ledger, document), []
    if isinstance(document, PaymentBaseline):
        return [], []
    return _book_landed_cost(ledger, document)


def _book_invoice(ledger: Ledger, inv: SupplierInvoice) -> list[Voucher]:
    company = ledger.setup.company(inv.company)
    if all(ledger.open_grni(inv.company, d) == ZERO for d in inv.receipt_docs):
        raise FailedPrecondition(
            REASON_NOTHING_TO_MATCH, f"no open goods-received value under {', '.join(inv.receipt_docs)}"
        )
    matched = ledger.match_invoice(inv.company, inv.receipt_docs)
    amounts = supplier_invoice_amounts(matched, money(inv.net, company.currency), money(inv.tax, company.currency))
    voucher = build(
        inv.record_id, Facts(SUPPLIER_INVOICE, "", company=inv.company, currency=company.currency),
        amounts, ledger.rules,
        at_ms=inv.at_ms, currency=company.currency,
        sources=tuple(Source(inv.record_id, doc) for doc in inv.receipt_docs),
        summary=f"supplier invoice {inv.invoice_id}", terms=inv.terms, preparer=inv.preparer,
    )  # fmt: skip
    return [voucher] if voucher else []


def _book_landed_cost(ledger: Ledger, cost: LandedCost) -> tuple[list[Voucher], list[Valuation]]:
    company = ledger.setup.company(cost.company)
    pos = ledger.position(company, cost.sku)
    before = {lv.lot_id: (lv.qty, lv.value) for lv in pos.lots()}
    booked = money(cost.amount, company.currency)
    expensed = ledger.add_landed_cost(company, cost.sku, cost.lot_id, booked)
    amounts: list[Amount] = landed_cost_amounts(booked, expensed)
    vid = cost.record_id
    voucher = build(
        vid, Facts(LANDED_COST, "", company=cost.company, currency=company.currency),
        amounts, ledger.rules,
        at_ms=cost.at_ms, currency=company.currency, sources=(Source(vid, "", cost.sku, "", 0, cost.lot_id),),
        sku=cost.sku, lot_id=cost.lot_id, summary=f"landed cost {cost.cost_id} on {cost.sku} {cost.lot_id}".strip(),
        preparer=cost.preparer,
    )  # fmt: skip
    after = {lv.lot_id: (lv.qty, lv.value) for lv in pos.lots()}
    rows = [
        Valuation(
            cost.company,
            cost.sku,
            lot,
            cost.at_ms,
            0,
            after.get(lot, (0, ZERO))[1] - before.get(lot, (0, ZERO))[1],
            vid,
            vid,
        )
        for lot in sorted(set(before) | set(after))
        if after.get(lot) != before.get(lot)
    ]
    return ([voucher] if voucher else []), rows
