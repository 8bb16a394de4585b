"""`lotwise finance …`: vouchers, their review, valuation, terms and exports of a running
engine (lotwise.v1.Accounting; docs/finance.md).

    lotwise finance vouchers [--state pending --company C]   vouchers, oldest first, a page
    lotwise finance show VOUCHER_ID                           one voucher: lines, sources, notes
    lotwise finance annotate VOUCHER_ID NOTE                  a reviewer's note
    lotwise finance approve|post VOUCHER_ID                   approve (not your own), then post
    lotwise finance reject VOUCHER_ID REASON                  reject, with the reason
    lotwise finance trace KEY                                 voucher ↔ documents and movements
    lotwise finance explain KEY                               which mapping rule booked each line, and why
    lotwise finance valuation [--company C --sku S --as-of T] stock value per lot
    lotwise finance terms [--company C]                       due dates and the expected cash per day
    lotwise finance invoice ID --company C --receipt PO-1 --net N --tax T [--terms ...]
    lotwise finance baseline DOC acceptance --at 2026-12-31   the event a payment plan waits for
    lotwise finance export BATCH_ID --profile csv [-o FILE]   posted vouchers not exported before

Exit codes as for every client command: 2 bad usage, 1 the engine refused (the typed error
is printed), 3 the engine could not be reached.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from engine.cli.common import (
    DEFAULT_TARGET,
    EXIT_CONFIG,
    FormatOpt,
    OutputFormat,
    TargetOpt,
    TimeoutOpt,
    TokenFileOpt,
    _out,
    emit,
    emit_object,
    fail,
    show_table,
    with_client,
)

if TYPE_CHECKING:
    from engine.api.client import LotwiseClient
    from engine.api.gen.lotwise.v1 import finance_pb2 as fpb

finance_app = typer.Typer(
    name="finance",
    help="Vouchers at each business event: review, post, trace, value, export.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

CompanyOpt = Annotated[str, typer.Option("--company", help="The company (a legal-entity org node); '' = all.")]


def _call(target: str, timeout: float, method: str, request: Any) -> Any:
    """One lotwise.v1.Accounting call with the client's token; typed refusals as usual."""

    async def work(client: LotwiseClient) -> Any:
        import grpc

        from engine.api.errors import from_rpc_error
        from engine.api.gen.lotwise.v1 import finance_pb2_grpc as fpb_grpc

        stub = fpb_grpc.AccountingStub(client.channel)
        try:
            return await getattr(stub, method)(request, metadata=client.metadata, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None

    return with_client(target, timeout, work)


def _pb() -> Any:
    from engine.api.gen.lotwise.v1 import finance_pb2

    return finance_pb2


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M") if ms else ""


def _ms_of(flag: str, text: str) -> int:
    """YYYY-MM-DD[THH:MM] (UTC) or epoch ms."""
    if not text:
        return 0
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{flag} must be YYYY-MM-DD, YYYY-MM-DDTHH:MM (UTC) or epoch ms (got {text!r})", EXIT_CONFIG)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _voucher_record(v: fpb.Voucher) -> dict[str, Any]:
    return {
        "voucher_id": v.voucher_id,
        "company": v.company,
        "kind": v.kind,
        "at": _day(v.at_ms),
        "state": v.state,
        "debit": v.debit_total,
        "credit": v.credit_total,
        "currency": v.currency,
        "reversal_of": v.reversal_of,
        "preparer": v.preparer,
        "reviewer": v.reviewer,
        "summary": v.summary,
    }


def _line_records(v: fpb.Voucher) -> list[dict[str, Any]]:
    return [
        {
            "line": ln.line_no,
            "role": ln.role,
            "account": ln.account,
            "name": ln.account_name,
            "debit": ln.debit,
            "credit": ln.credit,
            "rule": ln.rule,
        }
        for ln in v.lines
    ]


def _show_records(title: str, records: list[dict[str, Any]]) -> None:
    table = Table(title=title, title_justify="left")
    names = list(dict.fromkeys(k for r in records for k in r))
    for name in names:
        table.add_column(name, justify="right" if name in ("debit", "credit", "qty", "value", "line") else "left")
    for r in records:
        table.add_row(*(str(r.get(n, "")) for n in names))
    show_table(_out(), table)


def _show_voucher(v: fpb.Voucher, fmt: OutputFormat) -> None:
    if fmt is not OutputFormat.TABLE:
        sources = [
            {"event_id": s.event_id, "doc_ref": s.doc_ref, "movement": f"{s.sku}/{s.site}/{s.seq}"} for s in v.sources
        ]
        emit_object(fmt, _voucher_record(v), {"lines": _line_records(v), "sources": sources})
        return
    head = f"{v.voucher_id} · {v.kind} · {v.state} · {v.company} · {_day(v.at_ms)} · {v.currency}"
    if v.reversal_of:
        head += f" · reverses {v.reversal_of}"
    _show_records(head, _line_records(v))
    out = _out()
    out.print(f"summary: {v.summary}; prepared by {v.preparer}" + (f", reviewed by {v.reviewer}" if v.reviewer else ""))
    for s in v.sources:
        out.print(
            f"source: event {s.event_id}  doc {s.doc_ref or '—'}  movement {s.sku}/{s.site}/{s.seq}  lot {s.lot_id}"
        )
    for n in v.notes:
        out.print(f"note ({n.author}, {_day(n.at_ms)}): {n.text}")
    if v.reason:
        out.print(f"rejected: {v.reason}")


@finance_app.command("vouchers")
def vouchers(
    state: Annotated[
        str, typer.Option("--state", help="pending, annotated, approved, posted, rejected; '' = any.")
    ] = "",
    company: CompanyOpt = "",
    since: Annotated[str, typer.Option("--from", help="From this time (YYYY-MM-DD or epoch ms).")] = "",
    until: Annotated[str, typer.Option("--to", help="Before this time.")] = "",
    limit: Annotated[int, typer.Option("--limit", "-n", help="Vouchers per page (1..1000).")] = 100,
    page: Annotated[str, typer.Option("--page", help="The page token a previous page printed.")] = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Vouchers by state, company and time, oldest first."""
    if not 1 <= limit <= 1000:
        fail(f"--limit must be in 1..1000 (got {limit})", EXIT_CONFIG)
    request = _pb().ListVouchersRequest(
        state=state, company=company, from_ms=_ms_of("--from", since), to_ms=_ms_of("--to", until), page_size=limit,
        page_token=page,
    )  # fmt: skip
    reply = _call(target, timeout, "ListVouchers", request)
    records = [_voucher_record(v) for v in reply.vouchers]
    if fmt is not OutputFormat.TABLE:
        emit(fmt, records)
        return
    _show_records(f"{len(records)} vouchers", records)
    if reply.next_page_token:
        _out().print(f"more: --page {reply.next_page_token}")


@finance_app.command("show")
def show(
    voucher_id: Annotated[str, typer.Argument(help="The voucher id (e.g. sale:s0:12:0).")],
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """One voucher: its lines (account, debit, credit, the rule that chose it), sources and notes."""
    _show_voucher(_call(target, timeout, "GetVoucher", _pb().GetVoucherRequest(voucher_id=voucher_id)).voucher, fmt)


def _action(method: str, request: Any, fmt: OutputFormat, target: str, timeout: float) -> None:
    _show_voucher(_call(target, timeout, method, request).voucher, fmt)


@finance_app.command("annotate")
def annotate(
    voucher_id: Annotated[str, typer.Argument(help="The voucher id.")],
    note: Annotated[str, typer.Argument(help="The note.")],
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Add a reviewer's note (a pending voucher becomes annotated)."""
    _action("AnnotateVoucher", _pb().AnnotateVoucherRequest(voucher_id=voucher_id, note=note), fmt, target, timeout)


@finance_app.command("approve")
def approve(
    voucher_id: Annotated[str, typer.Argument(help="The voucher id.")],
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Approve a voucher (needs approve_voucher; never one you prepared)."""
    _action("ApproveVoucher", _pb().VoucherActionRequest(voucher_id=voucher_id), fmt, target, timeout)


@finance_app.command("reject")
def reject(
    voucher_id: Annotated[str, typer.Argument(help="The voucher id.")],
    reason: Annotated[str, typer.Argument(help="Why.")],
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Reject a voucher, with the reason."""
    _action("RejectVoucher", _pb().RejectVoucherRequest(voucher_id=voucher_id, reason=reason), fmt, target, timeout)


@finance_app.command("post")
def post(
    voucher_id: Annotated[str, typer.Argument(help="The voucher id.")],
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Post an approved voucher; from then on it never changes."""
    _action("PostVoucher", _pb().VoucherActionRequest(voucher_id=voucher_id), fmt, target, timeout)


@finance_app.command("trace")
def trace(
    key: Annotated[str, typer.Argument(help="A voucher id, an event id, a document (SO-1) or <sku>/<site>/<seq>.")],
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """From a voucher to its documents and movements, and back; reversals included."""
    reply = _call(target, timeout, "Trace", _pb().TraceRequest(key=key))
    vouchers_ = [_voucher_record(v) for v in reply.vouchers]
    sources = [
        {
            "event_id": s.event_id,
            "doc_ref": s.doc_ref,
            "movement": f"{s.sku}/{s.site}/{s.seq}",
            "lot": s.lot_id,
            "qty": s.qty,
            "kind": s.movement,
        }
        for s in reply.sources
    ]
    if fmt is not OutputFormat.TABLE:
        emit_object(fmt, {"key": key}, {"vouchers": vouchers_, "sources": sources})
        return
    _show_records(f"vouchers of {key}", vouchers_)
    _show_records("their documents and movements", sources)


@finance_app.command("explain")
def explain(
    key: Annotated[str, typer.Argument(help="A voucher id, event id, document or movement.")],
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Which account-mapping rule booked each voucher line, and why the rules before it did not."""
    reply = _call(target, timeout, "Explain", _pb().ExplainRequest(key=key))
    records = []
    for line in reply.lines:
        chosen = line.steps[-1]
        skipped = "; ".join(f"#{s.position} {s.rule}: {s.mismatch}" for s in line.steps[:-1])
        facts = ", ".join(f"{k}={v}" for k, v in sorted(line.facts.items()) if v)
        records.append(
            {
                "voucher_id": line.voucher_id,
                "line": line.line_no,
                "rule": f"#{chosen.position} {chosen.rule}",
                "account": chosen.account,
                "facts": facts,
                "skipped": skipped,
            }
        )
    if fmt is not OutputFormat.TABLE:
        emit(fmt, records)
        return
    _show_records(f"rules from {reply.rules_source}", records)


@finance_app.command("valuation")
def valuation(
    company: CompanyOpt = "",
    sku: Annotated[str, typer.Option("--sku", help="One sku.")] = "",
    lot: Annotated[str, typer.Option("--lot", help="One lot.")] = "",
    as_of: Annotated[str, typer.Option("--as-of", help="As of this time (YYYY-MM-DD or epoch ms); '' = now.")] = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Stock value per company, sku and lot (cost layers), as of a time."""
    request = _pb().GetValuationRequest(company=company, sku=sku, lot_id=lot, as_of_ms=_ms_of("--as-of", as_of))
    reply = _call(target, timeout, "GetValuation", request)
    records = [
        {"company": r.company, "sku": r.sku, "lot": r.lot_id, "qty": r.qty, "value": r.value, "unit_cost": r.unit_cost}
        for r in reply.lots
    ]
    if fmt is not OutputFormat.TABLE:
        emit(fmt, records)
        return
    _show_records(f"valuation: {reply.total_value} in all", records)


@finance_app.command("terms")
def terms(
    company: CompanyOpt = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Receivables and payables with their discount deadlines and due dates, and the cash per day."""
    reply = _call(target, timeout, "GetPaymentPlans", _pb().GetPaymentPlansRequest(company=company))
    plans = [
        {
            "doc": p.doc,
            "direction": p.direction,
            "terms": p.terms,
            "baseline": p.baseline_date or f"waiting: {p.waiting_for}",
            "discount_by": p.discount_deadline,
            "due": p.due_date,
            "gross": p.gross,
            "net_if_discounted": p.net_if_discounted,
        }
        for p in reply.plans
    ]
    days = [{"day": d.day, "receivable": d.receivable, "payable": d.payable} for d in reply.cash_flow]
    if fmt is not OutputFormat.TABLE:
        emit_object(fmt, {"company": company}, {"plans": plans, "cash_flow": days})
        return
    _show_records("payment plans", plans)
    _show_records("expected cash per day", days)


@finance_app.command("invoice")
def invoice(
    invoice_id: Annotated[str, typer.Argument(help="The supplier's invoice number.")],
    company: Annotated[str, typer.Option("--company", help="The buying company.")] = "",
    receipts: Annotated[
        list[str] | None, typer.Option("--receipt", help="A receipt document it matches (repeat).")
    ] = None,
    net: Annotated[str, typer.Option("--net", help="Amount before tax.")] = "",
    tax: Annotated[str, typer.Option("--tax", help="Input tax.")] = "0",
    terms_: Annotated[str, typer.Option("--terms", help='"2/10 n/30", "60 days after acceptance", ...')] = "",
    at: Annotated[str, typer.Option("--at", help="Invoice date (YYYY-MM-DD); '' = now.")] = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Record a supplier invoice: Dr GRNI (+ price variance, input tax) / Cr payables."""
    request = _pb().RecordSupplierInvoiceRequest(
        invoice_id=invoice_id, company=company, receipt_docs=receipts or [], net=net, tax=tax, terms=terms_,
        at_ms=_ms_of("--at", at),
    )  # fmt: skip
    _action("RecordSupplierInvoice", request, fmt, target, timeout)


@finance_app.command("baseline")
def baseline(
    doc: Annotated[str, typer.Argument(help="The document (invoice number, order) whose plan waits.")],
    what: Annotated[str, typer.Argument(help="invoice, delivery, acceptance or statement.")],
    at: Annotated[str, typer.Option("--at", help="When it happened (YYYY-MM-DD or epoch ms).")] = "",
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Record the event a payment plan's clock starts at (e.g. the customer's acceptance)."""
    when = _ms_of("--at", at)
    if not when:
        fail("--at is required", EXIT_CONFIG)
    _call(target, timeout, "RecordBaseline", _pb().RecordBaselineRequest(doc=doc, baseline=what, at_ms=when))
    _out().print(f"{what} of {doc} recorded at {_day(when)}")


@finance_app.command("export")
def export(
    batch_id: Annotated[str, typer.Argument(help="The batch id: the same id gives the same file again.")],
    profile: Annotated[str, typer.Option("--profile", "-p", help="csv, json, xlsx, u8 or k3.")] = "csv",
    company: CompanyOpt = "",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the file here (default: its name).")
    ] = None,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Export posted vouchers not exported before (reversals too) as one file."""
    request = _pb().ExportVouchersRequest(batch_id=batch_id, profile=profile, company=company)
    reply = _call(target, timeout, "ExportVouchers", request)
    path = output or Path(reply.file_name)
    try:
        path.write_bytes(reply.content)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}", EXIT_CONFIG)
    _out().print(f"batch {reply.batch_id}: {len(reply.voucher_ids)} vouchers → {path} ({len(reply.content)} bytes)")
