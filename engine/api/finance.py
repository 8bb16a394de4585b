"""The lotwise.v1.Accounting servicer over the finance desk (engine.finance.service), and the
checks of who may read, approve, post and export which company's vouchers (DESIGN.md §13).

A company is an org node: a grant on its org path (or above) covers it. `read_cost` reads
vouchers, values and plans; `approve_voucher` approves and rejects; `post_voucher` posts
and records invoices, landed costs and baselines; `export_voucher` exports. A request
naming no company needs the action engine-wide; lists and traces leave out what the caller
may not read. The actor recorded (preparer, reviewer, note author) is the token's subject.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import grpc

from engine.api.auth import Authorizer, current_principal
from engine.api.gen.lotwise.v1 import finance_pb2 as fpb
from engine.api.gen.lotwise.v1 import finance_pb2_grpc as fpb_grpc
from engine.api.servicer import _rpc
from engine.domain.errors import NotFound
from engine.domain.grants import Action
from engine.finance.money import money, text, unit_cost_of
from engine.finance.ports import ValuationQuery, VoucherQuery
from engine.finance.service import FinanceDesk
from engine.finance.terms import Plan
from engine.finance.vouchers import Voucher

ACCOUNTING_SERVICE_NAME = fpb.DESCRIPTOR.services_by_name["Accounting"].full_name  # "lotwise.v1.Accounting"
ANONYMOUS = "anonymous"


class FinanceGuard:
    def __init__(self, authorizer: Authorizer | None) -> None:
        self._authorizer = authorizer

    def actor(self) -> str:
        principal = current_principal()
        return ANONYMOUS if principal is None else principal.subject

    def may(self, action: Action, company: str) -> bool:
        principal = current_principal()
        if principal is None or principal.permissions is None or self._authorizer is None:
            return True  # authentication is off
        perms = principal.permissions
        if perms.allows_global(action):
            return True
        return bool(company) and perms.allows(action, "", company)

    def require(self, action: Action, company: str) -> None:
        if self.may(action, company):
            return
        principal = current_principal()
        assert principal is not None
        assert self._authorizer is not None
        raise self._authorizer.denied(principal, action, f"company:{company or '*'}")


def voucher_to_pb(v: Voucher) -> fpb.Voucher:
    return fpb.Voucher(
        voucher_id=v.voucher_id,
        company=v.company,
        kind=v.kind,
        at_ms=v.at_ms,
        currency=v.currency,
        lines=[
            fpb.VoucherLine(
                line_no=ln.line_no,
                role=ln.role,
                account=ln.account,
                account_name=ln.account_name,
                debit=text(ln.debit),
                credit=text(ln.credit),
                rule=ln.rule,
                sku=ln.sku,
                lot_id=ln.lot_id,
                qty=ln.qty,
                memo=ln.memo,
            )
            for ln in v.lines
        ],
        sources=[source_to_pb(s) for s in v.sources],
        summary=v.summary,
        preparer=v.preparer,
        state=v.state,
        reversal_of=v.reversal_of,
        terms=v.terms,
        notes=[fpb.VoucherNote(author=n.author, at_ms=n.at_ms, text=n.text) for n in v.notes],
        reviewer=v.reviewer,
        reason=v.reason,
        posted_at_ms=v.posted_at_ms,
        version=v.version,
        debit_total=text(v.debit_total),
        credit_total=text(v.credit_total),
    )


def source_to_pb(s: Any) -> fpb.VoucherSource:
    return fpb.VoucherSource(
        event_id=s.event_id, doc_ref=s.doc_ref, sku=s.sku, site=s.site, seq=s.seq, lot_id=s.lot_id, qty=s.qty,
        layer_ids=list(s.layer_ids), movement=s.movement,
    )  # fmt: skip


def plan_to_pb(p: Plan, direction: str) -> fpb.PaymentPlan:
    day = lambda d: d.isoformat() if d else ""  # noqa: E731
    return fpb.PaymentPlan(
        doc=p.doc_key, direction=direction, terms=p.terms, baseline=p.baseline, baseline_date=day(p.baseline_date),
        discount_deadline=day(p.discount_deadline), due_date=day(p.due_date), gross=text(p.gross),
        discount=text(p.discount), net_if_discounted=text(p.net_if_discounted), waiting_for=p.waiting_for,
    )  # fmt: skip


class AccountingServicer(fpb_grpc.AccountingServicer):
    def __init__(self, desk: FinanceDesk, guard: FinanceGuard, *, retry_delay_ms: int) -> None:
        self.desk = desk
        self.guard = guard
        self.retry_delay_ms = retry_delay_ms  # read by _rpc when it answers a DomainError

    async def _readable(self, voucher_id: str) -> Voucher:
        voucher = await self.desk.get(voucher_id)
        if not self.guard.may(Action.READ_COST, voucher.company):
            raise NotFound("voucher", voucher_id)  # what the caller may not read does not exist for them
        return voucher

    @_rpc
    async def ListVouchers(
        self, request: fpb.ListVouchersRequest, context: grpc.aio.ServicerContext
    ) -> fpb.ListVouchersResponse:
        self.guard.require(Action.READ_COST, request.company)
        q = VoucherQuery(
            request.state,
            request.company,
            request.from_ms,
            request.to_ms,
            request.page_size or 100,
            request.page_token,
            tuple(request.states),
        )
        page = await self.desk.list_vouchers(q)
        return fpb.ListVouchersResponse(
            vouchers=[voucher_to_pb(v) for v in page.vouchers], next_page_token=page.next_page_token
        )

    @_rpc
    async def GetVoucher(
        self, request: fpb.GetVoucherRequest, context: grpc.aio.ServicerContext
    ) -> fpb.VoucherResponse:
        return fpb.VoucherResponse(voucher=voucher_to_pb(await self._readable(request.voucher_id)))

    @_rpc
    async def AnnotateVoucher(
        self, request: fpb.AnnotateVoucherRequest, context: grpc.aio.ServicerContext
    ) -> fpb.VoucherResponse:
        await self._readable(request.voucher_id)
        voucher = await self.desk.annotate(request.voucher_id, self.guard.actor(), request.note)
        return fpb.VoucherResponse(voucher=voucher_to_pb(voucher))

    @_rpc
    async def ApproveVoucher(
        self, request: fpb.VoucherActionRequest, context: grpc.aio.ServicerContext
    ) -> fpb.VoucherResponse:
        known = await self._readable(request.voucher_id)
        self.guard.require(Action.APPROVE_VOUCHER, known.company)
        return fpb.VoucherResponse(
            voucher=voucher_to_pb(await self.desk.approve(request.voucher_id, self.guard.actor()))
        )

    @_rpc
    async def RejectVoucher(
        self, request: fpb.RejectVoucherRequest, context: grpc.aio.ServicerContext
    ) -> fpb.VoucherResponse:
        known = await self._readable(request.voucher_id)
        self.guard.require(Action.APPROVE_VOUCHER, known.company)
        voucher = await self.desk.reject(request.voucher_id, self.guard.actor(), request.reason)
        return fpb.VoucherResponse(voucher=voucher_to_pb(voucher))

    @_rpc
    async def PostVoucher(
        self, request: fpb.VoucherActionRequest, context: grpc.aio.ServicerContext
    ) -> fpb.VoucherResponse:
        known = await self._readable(request.voucher_id)
        self.guard.require(Action.POST_VOUCHER, known.company)
        return fpb.VoucherResponse(voucher=voucher_to_pb(await self.desk.post(request.voucher_id)))

    @_rpc
    async def Trace(self, request: fpb.TraceRequest, context: grpc.aio.ServicerContext) -> fpb.TraceResponse:
        trace = await self.desk.trace(request.key)
        shown = [v for v in trace.vouchers if self.guard.may(Action.READ_COST, v.company)]
        if not shown:
            raise NotFound("voucher source", request.key)
        sources = list(dict.fromkeys(s for v in shown for s in v.sources))
        return fpb.TraceResponse(vouchers=[voucher_to_pb(v) for v in shown], sources=[source_to_pb(s) for s in sources])

    @_rpc
    async def GetValuation(
        self, request: fpb.GetValuationRequest, context: grpc.aio.ServicerContext
    ) -> fpb.GetValuationResponse:
        self.guard.require(Action.READ_COST, request.company)
        rows = await self.desk.valuation(ValuationQuery(request.company, request.sku, request.lot_id, request.as_of_ms))
        currency = {c.company: c.currency for c in self.desk.feed.setup.companies}
        lots = [
            fpb.LotValuation(
                company=r.company,
                sku=r.sku,
                lot_id=r.lot_id,
                qty=r.qty,
                value=text(money(r.value, currency.get(r.company, ""))),
                unit_cost=text(unit_cost_of(r.value, r.qty)),
            )
            for r in rows
        ]
        total = sum((Decimal(lot.value) for lot in lots), Decimal(0))
        return fpb.GetValuationResponse(lots=lots, total_value=text(total))

    @_rpc
    async def Explain(self, request: fpb.ExplainRequest, context: grpc.aio.ServicerContext) -> fpb.ExplainResponse:
        explained = await self.desk.explain(request.key)
        companies = {v.voucher_id: v.company for v in (await self.desk.trace(request.key)).vouchers}
        lines = []
        for e in explained:
            if not self.guard.may(Action.READ_COST, companies.get(e.voucher_id, "")):
                continue
            facts = e.facts._asdict()  # Facts is a named tuple of strings
            steps = [fpb.ExplainStep(position=i, rule=r.name, account=r.account, mismatch=why) for i, r, why in e.steps]
            lines.append(fpb.ExplainedLine(voucher_id=e.voucher_id, line_no=e.line_no, facts=facts, steps=steps))
        if not lines:
            raise NotFound("voucher source", request.key)
        return fpb.ExplainResponse(lines=lines, rules_source=self.desk.feed.rules.source)

    @_rpc
    async def RecordSupplierInvoice(
        self, request: fpb.RecordSupplierInvoiceRequest, context: grpc.aio.ServicerContext
    ) -> fpb.VoucherResponse:
        self.guard.require(Action.POST_VOUCHER, request.company)
        voucher = await self.desk.record_supplier_invoice(
            request.invoice_id, request.company, tuple(request.receipt_docs), request.net, request.tax, request.terms,
            self.guard.actor(), request.at_ms,
        )  # fmt: skip
        return fpb.VoucherResponse(voucher=voucher_to_pb(voucher))

    @_rpc
    async def RecordLandedCost(
        self, request: fpb.RecordLandedCostRequest, context: grpc.aio.ServicerContext
    ) -> fpb.VoucherResponse:
        self.guard.require(Action.POST_VOUCHER, request.company)
        voucher = await self.desk.record_landed_cost(
            request.cost_id,
            request.company,
            request.sku,
            request.lot_id,
            request.amount,
            self.guard.actor(),
            request.at_ms,
        )
        return fpb.VoucherResponse(voucher=voucher_to_pb(voucher))

    @_rpc
    async def RecordBaseline(
        self, request: fpb.RecordBaselineRequest, context: grpc.aio.ServicerContext
    ) -> fpb.RecordBaselineResponse:
        self.guard.require(Action.POST_VOUCHER, "")
        await self.desk.record_baseline(request.doc, request.baseline, request.at_ms, self.guard.actor())
        return fpb.RecordBaselineResponse()

    @_rpc
    async def GetPaymentPlans(
        self, request: fpb.GetPaymentPlansRequest, context: grpc.aio.ServicerContext
    ) -> fpb.GetPaymentPlansResponse:
        self.guard.require(Action.READ_COST, request.company)
        receivables, payables = await self.desk.plans(request.company)
        flow = await self.desk.cash_flow(request.company)
        plans = [plan_to_pb(p, "receivable") for p in receivables] + [plan_to_pb(p, "payable") for p in payables]
        days = [
            fpb.CashDay(day=d.day.isoformat(), receivable=text(d.receivable), payable=text(d.payable)) for d in flow
        ]
        return fpb.GetPaymentPlansResponse(plans=plans, cash_flow=days)

    @_rpc
    async def ExportVouchers(
        self, request: fpb.ExportVouchersRequest, context: grpc.aio.ServicerContext
    ) -> fpb.ExportVouchersResponse:
        self.guard.require(Action.EXPORT_VOUCHER, request.company)
        batch = await self.desk.export(request.batch_id, request.profile, request.company)
        return fpb.ExportVouchersResponse(
            batch_id=batch.batch_id, file_name=batch.file_name, content=batch.content,
            voucher_ids=list(batch.voucher_ids), created_at_ms=batch.created_at_ms,
        )  # fmt: skip
