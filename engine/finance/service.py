"""The finance desk: what lotwise.v1.Finance and `lotwise finance` do, over the store and
the follower's ledgers. Every refusal is typed (InvalidArgument, NotFound,
FailedPrecondition) and changes nothing; state changes of one voucher are serialised."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from engine.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from engine.finance import sandbox
from engine.finance.documents import FinanceDocument, LandedCost, PaymentBaseline, SupplierInvoice
from engine.finance.exports import Profile, render
from engine.finance.follower import FinanceFeed
from engine.finance.ledger import DocAttrs, doc_attrs
from engine.finance.mapping import Facts, Rule
from engine.finance.money import ZERO, parse_amount
from engine.finance.ports import (
    Baseline,
    ExportBatch,
    FinanceStore,
    LotValuation,
    ValuationQuery,
    VoucherPage,
    VoucherQuery,
)
from engine.finance.terms import BASELINES, CashDay, Plan, cash_flow, day_of, parse_payment_terms, plan
from engine.finance.vouchers import (
    Source,
    Voucher,
    VoucherState,
)

MAX_SCAN_VOUCHERS = 100_000  # due-date views and exports read at most this many vouchers
MAX_EXPORT_VOUCHERS = 1_000  # per batch: the file travels in one gRPC reply (a few MB at most)
REASON_NOTHING_TO_EXPORT = "NOTHING_TO_EXPORT"
REASON_BATCH_DIFFERS = "EXPORT_BATCH_DIFFERS"


class PostedVouchers(Protocol):
    """Where the business event of a posted voucher goes (adapters/nats/finance_events.py)."""

    async def posted(self, voucher: Voucher) -> None: ...


@dataclass(frozen=True, slots=True)
class Trace:
    key: str
    vouchers: tuple[Voucher, ...]  # every voucher the key leads to, reversals included
    sources: tuple[Source, ...]  # every document / movement those vouchers come from


@dataclass(frozen=True, slots=True)
class Explained:
    voucher_id: str
    line_no: int
    facts: Facts
    steps: tuple[tuple[int, Rule, str], ...]  # (position, rule, why it did not match; "" = the match)


def _check_id(value: str, field: str, out: list[FieldViolation], max_len: int = 128) -> None:
    if not value or len(value) > max_len or any(c.isspace() for c in value):
        out.append(FieldViolation(field, f"is required: 1..{max_len} characters, no spaces"))


def _amount(value: str, field: str, out: list[FieldViolation]) -> Decimal:
    parsed = parse_amount(value)
    if parsed is None or parsed < 0:
        out.append(FieldViolation(field, "must be a decimal amount ≥ 0, like 1234.50"))
        return ZERO
    return parsed


class FinanceDesk:
    def __init__(
        self,
        store: FinanceStore,
        feed: FinanceFeed,
        profiles: dict[str, Profile],
        now_ms: Callable[[], int] | None = None,
        posted: PostedVouchers | None = None,
    ) -> None:
        self.store = store
        self.feed = feed
        self.profiles = profiles
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self.posted = posted
        self._lock = asyncio.Lock()

    # ---- vouchers ----

    async def list_vouchers(self, q: VoucherQuery) -> VoucherPage:
        return await self.store.list_vouchers(q)

    async def get(self, voucher_id: str) -> Voucher:
        voucher = await self.store.get_voucher(voucher_id)
        if voucher is None:
            raise NotFound("voucher", voucher_id)
        return voucher

    async def _change(self, voucher_id: str, change: Callable[[Voucher], Voucher]) -> Voucher:
        async with self._lock:
            voucher = await self.get(voucher_id)
            changed = change(voucher)
            if changed is not voucher:
                await self.store.put_voucher(changed)
            return changed

    async def annotate(self, voucher_id: str, author: str, note: str) -> Voucher:
        return await self._change(voucher_id, lambda v: sandbox.annotate(v, author, note, self._now_ms()))

    async def approve(self, voucher_id: str, reviewer: str) -> Voucher:
        return await self._change(voucher_id, lambda v: sandbox.approve(v, reviewer))

    async def reject(self, voucher_id: str, reviewer: str, reason: str) -> Voucher:
        return await self._change(voucher_id, lambda v: sandbox.reject(v, reviewer, reason))

    async def post(self, voucher_id: str) -> Voucher:
        posted = await self._change(voucher_id, lambda v: sandbox.post(v, self._now_ms()))
        if self.posted is not None:
            # Every time, a repeat too: a post whose event failed to go out is retried by posting
            # again, and the event's id (the voucher's) makes the bus keep one copy.
            await self.posted.posted(posted)
        return posted

    # ---- trace, valuation, explain ----

    async def trace(self, key: str) -> Trace:
        """From a voucher to its documents and movements, or from an event id, a document
        or a movement ("<sku>/<site>/<seq>") to its vouchers — and their reversals."""
        if not key:
            raise InvalidArgument([FieldViolation("key", "is required")])
        found: dict[str, Voucher] = {}
        start = await self.store.get_voucher(key)
        if start is not None:
            found[start.voucher_id] = start
        for v in await self.store.vouchers_by_source(key):
            found[v.voucher_id] = v
        for v in list(found.values()):  # one hop: the reversals of what was found, and the originals
            for other in await self.store.vouchers_by_source(v.voucher_id):
                found[other.voucher_id] = other
            if v.reversal_of and v.reversal_of not in found:
                original = await self.store.get_voucher(v.reversal_of)
                if original is not None:
                    found[original.voucher_id] = original
        if not found:
            raise NotFound("voucher source", key)
        vouchers = tuple(sorted(found.values(), key=lambda v: (v.at_ms, v.voucher_id)))
        sources = tuple(dict.fromkeys(s for v in vouchers for s in v.sources))
        return Trace(key, vouchers, sources)

    async def valuation(self, q: ValuationQuery) -> list[LotValuation]:
        return await self.store.valuation(q)

    async def explain(self, key: str) -> list[Explained]:
        """Which mapping rule booked each line of the vouchers `key` leads to, and why."""
        trace = await self.trace(key)
        rules, setup = self.feed.rules, self.feed.setup
        out: list[Explained] = []
        for v in trace.vouchers:
            source = v.sources[0] if v.sources else Source("")
            attrs = source_attrs(source)
            category, _ = setup.category_of(source.sku) if source.sku else ("", None)
            kind = "sale" if v.kind == "return" else v.kind
            for line in v.lines:
                facts = Facts(
                    kind,
                    line.role,
                    category,
                    attrs.tier,
                    attrs.channel,
                    v.company,
                    source.site,
                    source.movement,
                    attrs.tax,
                    v.currency,
                )
                out.append(Explained(v.voucher_id, line.line_no, facts, tuple(rules.explain(facts))))
        return out

    # ---- documents that do not come from the journal ----

    async def record_supplier_invoice(
        self,
        invoice_id: str,
        company: str,
        receipt_docs: tuple[str, ...],
        net: str,
        tax: str,
        terms: str,
        preparer: str,
        at_ms: int = 0,
    ) -> Voucher:
        out: list[FieldViolation] = []
        _check_id(invoice_id, "invoice_id", out)
        if not receipt_docs:
            out.append(FieldViolation("receipt_docs", "name at least one receipt document to match"))
        net_amount, tax_amount = _amount(net, "net", out), _amount(tax, "tax", out)
        self._check_company(company, out)
        if terms:
            try:
                parse_payment_terms(terms)
            except ValueError as exc:
                out.append(FieldViolation("terms", str(exc)))
        if out:
            raise InvalidArgument(out)
        document = SupplierInvoice(
            invoice_id, company, receipt_docs, net_amount, tax_amount, terms, preparer, at_ms or self._now_ms()
        )
        return await self._book_document(document)

    async def record_landed_cost(
        self, cost_id: str, company: str, sku: str, lot_id: str, amount: str, preparer: str, at_ms: int = 0
    ) -> Voucher:
        out: list[FieldViolation] = []
        _check_id(cost_id, "cost_id", out)
        _check_id(sku, "sku", out)
        value = _amount(amount, "amount", out)
        self._check_company(company, out)
        if out:
            raise InvalidArgument(out)
        return await self._book_document(
            LandedCost(cost_id, company, sku, lot_id, value, preparer, at_ms or self._now_ms())
        )

    async def _book_document(self, document: FinanceDocument) -> Voucher:
        """Booked once (by its id, through the documents log); its voucher, the first
        one's on a repeat."""
        known = await self.store.get_voucher(document.record_id)
        if known is not None:
            return known  # recorded already: the same document once
        vouchers = await self.feed.run_document(document)
        return vouchers[0] if vouchers else await self.get(document.record_id)

    def _check_company(self, company: str, out: list[FieldViolation]) -> None:
        if company not in {c.company for c in self.feed.setup.companies}:
            out.append(FieldViolation("company", f"no company {company!r} has a ledger"))

    # ---- terms ----

    async def record_baseline(self, doc_key: str, baseline: str, at_ms: int, preparer: str = "") -> Baseline:
        """A baseline event: journaled in the documents log (so a restart or a rebuild finds
        the plan's clock where it was), then stored with the follower's checkpoint. Without a
        documents log (an engine on the journal alone) it is refused: it would not survive."""
        out: list[FieldViolation] = []
        _check_id(doc_key, "doc", out, 256)
        if baseline not in BASELINES:
            out.append(FieldViolation("baseline", f"must be one of {', '.join(BASELINES)}"))
        if at_ms <= 0:
            out.append(FieldViolation("at", "is required (epoch ms)"))
        if out:
            raise InvalidArgument(out)
        await self.feed.run_document(PaymentBaseline(doc_key, baseline, at_ms, preparer))
        return Baseline(doc_key, baseline, at_ms)

    async def plans(self, company: str = "") -> tuple[list[Plan], list[Plan]]:
        """Receivables and payables of vouchers with terms (rejected ones left out)."""
        receivables: list[Plan] = []
        payables: list[Plan] = []
        token, scanned = "", 0
        while scanned < MAX_SCAN_VOUCHERS:
            page = await self.store.list_vouchers(VoucherQuery(company=company, page_size=1_000, page_token=token))
            for v in page.vouchers:
                if v.terms and v.state != VoucherState.REJECTED:
                    made = await self._plan_of(v)
                    if made is not None:
                        (receivables if made[0] else payables).append(made[1])
            scanned += len(page.vouchers)
            token = page.next_page_token
            if not token:
                break
        return receivables, payables

    async def _plan_of(self, v: Voucher) -> tuple[bool, Plan] | None:
        ar = sum((ln.debit for ln in v.lines if ln.role == "ar"), ZERO)
        ap = sum((ln.credit for ln in v.lines if ln.role == "ap"), ZERO)
        tax_lines = ("output_tax",) if ar else ("input_tax",)
        tax = sum((ln.debit + ln.credit for ln in v.lines if ln.role in tax_lines), ZERO)
        if not ar and not ap:
            return None
        doc = v.sources[0].doc_ref.partition("?")[0] if v.sources and v.sources[0].doc_ref else v.voucher_id
        if v.kind == "supplier_invoice":
            doc = v.voucher_id.removeprefix("invoice:")
        terms = parse_payment_terms(v.terms)
        baseline_at = day_of(v.at_ms) if terms.baseline in ("invoice", "delivery", "statement") else None
        for b in await self.store.baselines(doc):
            if b.baseline == terms.baseline:
                baseline_at = day_of(b.at_ms)
        return bool(ar), plan(doc, v.terms, ar or ap, tax, v.currency, baseline_at)

    async def cash_flow(self, company: str = "") -> list[CashDay]:
        receivables, payables = await self.plans(company)
        return cash_flow(receivables, payables)

    # ---- exports ----

    async def export(self, batch_id: str, profile_name: str, company: str = "") -> ExportBatch:
        """Posted vouchers not exported before, as one file. The same batch id gives back
        the same file (stored); a voucher is in one batch only."""
        out: list[FieldViolation] = []
        _check_id(batch_id, "batch_id", out)
        profile = self.profiles.get(profile_name)
        if profile is None:
            out.append(FieldViolation("profile", f"must be one of {', '.join(sorted(self.profiles))}"))
        if out:
            raise InvalidArgument(out)
        assert profile is not None
        async with self._lock:
            known = await self.store.get_export_batch(batch_id)
            if known is not None:
                if known.profile != profile_name:
                    raise FailedPrecondition(
                        REASON_BATCH_DIFFERS, f"batch {batch_id} was exported with profile {known.profile}"
                    )
                return known
            done = await self.store.exported_voucher_ids()
            chosen: list[Voucher] = []
            token = ""
            while len(chosen) < MAX_EXPORT_VOUCHERS:
                page = await self.store.list_vouchers(
                    VoucherQuery(state=VoucherState.POSTED, company=company, page_size=1_000, page_token=token)
                )
                chosen.extend(v for v in page.vouchers if v.voucher_id not in done)
                token = page.next_page_token
                if not token:
                    break
            chosen = chosen[:MAX_EXPORT_VOUCHERS]
            if not chosen:
                raise FailedPrecondition(REASON_NOTHING_TO_EXPORT, "no posted voucher is waiting to be exported")
            content = render(profile, chosen)
            batch = ExportBatch(
                batch_id,
                profile_name,
                tuple(v.voucher_id for v in chosen),
                self._now_ms(),
                content,
                f"{batch_id}.{profile.extension}",
            )
            await self.store.put_export_batch(batch)
            return batch


def source_attrs(source: Source) -> DocAttrs:
    """The attributes a voucher was booked by: kept on its source since the typed Finance
    attributes; for a voucher stored before, those of its document reference."""
    old = doc_attrs(source.doc_ref)
    return DocAttrs(old.key, source.tier or old.tier, source.channel or old.channel, source.tax or old.tax, old.flow)
