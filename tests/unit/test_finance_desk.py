"""The finance desk over the in-memory store: the sandbox, supplier invoices and landed
costs, trace, explain, terms with baselines arriving as events, exports."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from datetime import date
from decimal import Decimal as D
from pathlib import Path

import pytest

from adapters.memory.finance import InMemoryFinanceDocuments, InMemoryFinanceStore
from engine.api.finance import AccountingServicer, FinanceGuard
from engine.api.gen.lotwise.v1 import finance_pb2 as fpb
from engine.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from engine.domain.model import External
from engine.finance.exports import default_profiles, render
from engine.finance.follower import FinanceFeed
from engine.finance.mapping import default_rules
from engine.finance.ports import ValuationQuery, VoucherQuery
from engine.finance.service import FinanceDesk
from engine.finance.vouchers import SYSTEM_PREPARER
from tests.finance_fixtures import DAY_MS, SETUP, T0_MS, Journal, fin

INVOICE_DAY_MS = 1_795_132_800_000  # 2026-11-20 00:00 UTC


async def desk_with(journal: Journal) -> FinanceDesk:
    store = InMemoryFinanceStore()
    feed = FinanceFeed(store, SETUP, default_rules(), InMemoryFinanceDocuments())
    await feed.apply(tuple(journal.entries))
    return FinanceDesk(store, feed, default_profiles(), now_ms=lambda: T0_MS + 10 * DAY_MS)


def furniture() -> Journal:
    j = Journal(at_ms=INVOICE_DAY_MS)
    j.receive("TABLE-1", "SH01", "L1", 10, fin("800"), doc="PO-1")
    j.issue("TABLE-1", "SH01", "L1", 10, fin(price="1000", rate="0.13", terms="2/10 n/30"), doc="SO-1")
    j.receive("TABLE-1", "SH01", "L1", 1, None, doc="RMA-1?orig=SO-1", source=External.CUSTOMER)
    return j


async def test_the_sandbox_approve_never_by_the_preparer_then_post_then_immutable() -> None:
    desk = await desk_with(furniture())
    sale_id = (await desk.trace("SO-1")).vouchers[0].voucher_id
    with pytest.raises(FailedPrecondition) as info:
        await desk.approve(sale_id, SYSTEM_PREPARER)
    assert info.value.reason == "VOUCHER_SELF_APPROVAL"
    with pytest.raises(FailedPrecondition):
        await desk.post(sale_id)  # not approved yet
    annotated = await desk.annotate(sale_id, "bob", "price checked against the contract")
    assert annotated.state == "annotated"
    assert annotated.notes[0].author == "bob"
    assert (await desk.approve(sale_id, "alice")).reviewer == "alice"
    posted = await desk.post(sale_id)
    assert posted.state == "posted"
    assert posted.posted_at_ms
    for change in (desk.annotate(sale_id, "bob", "late"), desk.reject(sale_id, "alice", "oops")):
        with pytest.raises(FailedPrecondition) as info:
            await change
        assert info.value.reason == "VOUCHER_POSTED"
    assert await desk.get(sale_id) == posted
    with pytest.raises(NotFound):
        await desk.approve("sale:nope", "alice")
    with pytest.raises(InvalidArgument):
        await desk.reject(sale_id, "alice", " ")


async def test_reject_needs_a_reason_and_is_final() -> None:
    desk = await desk_with(furniture())
    receipt_id = (await desk.trace("PO-1")).vouchers[0].voucher_id
    rejected = await desk.reject(receipt_id, "alice", "wrong unit cost")
    assert (rejected.state, rejected.reason) == ("rejected", "wrong unit cost")
    with pytest.raises(FailedPrecondition):
        await desk.approve(receipt_id, "alice")


async def test_trace_goes_from_a_voucher_to_its_movements_and_back_with_its_reversal() -> None:
    desk = await desk_with(furniture())
    trace = await desk.trace("SO-1")
    kinds = [v.kind for v in trace.vouchers]
    assert kinds == ["sale", "return"]
    sale, ret = trace.vouchers
    assert ret.reversal_of == sale.voucher_id
    back = await desk.trace(sale.voucher_id)
    assert {v.voucher_id for v in back.vouchers} == {sale.voucher_id, ret.voucher_id}
    assert {s.doc_ref for s in back.sources} == {"SO-1", "RMA-1?orig=SO-1"}
    movement = f"{sale.sources[0].sku}/{sale.sources[0].site}/{sale.sources[0].seq}"
    assert [v.voucher_id for v in (await desk.trace(movement)).vouchers] == [sale.voucher_id, ret.voucher_id]
    with pytest.raises(NotFound):
        await desk.trace("SO-404")


async def test_explain_names_the_rule_and_why_the_ones_before_did_not_match() -> None:
    desk = await desk_with(furniture())
    explained = await desk.explain("SO-1")
    revenue = next(e for e in explained if e.facts.role == "revenue" and e.voucher_id.startswith("sale:"))
    _position, rule, why = revenue.steps[-1]
    assert (rule.name, why) == ("revenue", "")
    assert revenue.steps[0][2] == "channel is '', the rule wants 'web'"


async def test_explain_over_grpc_carries_each_lines_facts() -> None:
    # The servicer turns a line's facts into the response's map (no context is needed unless
    # the call fails, and then the test fails too).
    servicer = AccountingServicer(await desk_with(furniture()), FinanceGuard(None), retry_delay_ms=0)
    answer = await servicer.Explain(fpb.ExplainRequest(key="SO-1"), None)  # type: ignore[arg-type]
    revenue = next(line for line in answer.lines if line.facts["role"] == "revenue")
    assert (revenue.facts["kind"], revenue.facts["company"], revenue.steps[-1].rule) == ("sale", "acme", "revenue")


async def test_supplier_invoice_matches_grni_with_a_price_variance_once() -> None:
    desk = await desk_with(furniture())
    with pytest.raises(InvalidArgument) as info:
        await desk.record_supplier_invoice("", "nobody", (), "-1", "x", "soon", "carol")
    assert {v.field for v in info.value.violations} == {"invoice_id", "company", "receipt_docs", "net", "tax", "terms"}
    voucher = await desk.record_supplier_invoice(
        "INV-7", "acme", ("PO-1",), "8100", "1053", "net 60 after acceptance", "carol"
    )
    assert [(ln.role, ln.debit, ln.credit) for ln in voucher.lines] == [
        ("grni", D("8000.00"), D(0)),
        ("price_variance", D("100.00"), D(0)),
        ("input_tax", D("1053.00"), D(0)),
        ("ap", D(0), D("9153.00")),
    ]
    assert voucher.preparer == "carol"
    again = await desk.record_supplier_invoice(
        "INV-7", "acme", ("PO-1",), "8100", "1053", "net 60 after acceptance", "carol"
    )
    assert again == voucher
    with pytest.raises(FailedPrecondition) as failed:
        await desk.record_supplier_invoice("INV-8", "acme", ("PO-1",), "1", "0", "", "carol")
    assert failed.value.reason == "NOTHING_TO_MATCH"


async def test_landed_cost_goes_onto_the_lot_on_hand() -> None:
    j = Journal()
    j.receive("CHAIR-1", "SH01", "L1", 4, fin("10"))
    desk = await desk_with(j)
    voucher = await desk.record_landed_cost("FRT-1", "acme", "CHAIR-1", "L1", "20", "carol")
    assert [(ln.role, ln.debit, ln.credit) for ln in voucher.lines] == [
        ("inventory", D("20.00"), D(0)),
        ("landed_cost_clearing", D(0), D("20.00")),
    ]
    rows = await desk.valuation(ValuationQuery(company="acme", sku="CHAIR-1"))
    assert [(r.qty, r.value) for r in rows] == [(4, D("60.00"))]


async def test_terms_worked_numbers_and_a_baseline_arriving_as_an_event() -> None:
    desk = await desk_with(furniture())
    await desk.record_supplier_invoice("INV-7", "acme", ("PO-1",), "8000", "1040", "60 days after acceptance", "carol")
    receivables, payables = await desk.plans("acme")
    sale = next(p for p in receivables if p.doc_key == "SO-1")
    assert (sale.gross, sale.discount_deadline, sale.due_date, sale.net_if_discounted) == (
        D("11300.00"), date(2026, 11, 30), date(2026, 12, 20), D("11074.00"),
    )  # fmt: skip
    assert payables[0].waiting_for == "acceptance"
    assert payables[0].due_date is None
    await desk.record_baseline("INV-7", "acceptance", 1_798_675_200_000)  # 2026-12-31
    _, payables = await desk.plans("acme")
    assert payables[0].due_date == date(2027, 3, 1)
    flow = await desk.cash_flow("acme")
    assert [(d.day, d.receivable, d.payable) for d in flow] == [
        (date(2026, 11, 30), D("11074.00"), D(0)),
        (date(2027, 3, 1), D(0), D("9040.00")),
    ]
    with pytest.raises(InvalidArgument):
        await desk.record_baseline("INV-7", "lunch", 1)


ACCEPTED_MS = 1_798_675_200_000  # 2026-12-31 00:00 UTC


async def due_dates(desk: FinanceDesk) -> list[tuple[str, date | None]]:
    receivables, payables = await desk.plans("acme")
    return [(p.doc_key, p.due_date) for p in receivables + payables]


async def test_a_baseline_is_journaled_and_a_restarted_or_rebuilt_follower_keeps_the_due_dates() -> None:
    store, log = InMemoryFinanceStore(), InMemoryFinanceDocuments()
    entries = tuple(furniture().entries)
    feed = FinanceFeed(store, SETUP, default_rules(), log)
    await feed.apply(entries[:2])
    desk = FinanceDesk(store, feed, default_profiles(), now_ms=lambda: T0_MS + 10 * DAY_MS)
    await desk.record_supplier_invoice("INV-7", "acme", ("PO-1",), "8000", "1040", "60 days after acceptance", "carol")
    await desk.record_baseline("INV-7", "acceptance", ACCEPTED_MS - DAY_MS, "carol")  # a first date...
    await desk.record_baseline("INV-7", "acceptance", ACCEPTED_MS, "carol")  # ...corrected
    await desk.record_baseline("INV-7", "acceptance", ACCEPTED_MS, "carol")  # the same event again
    await feed.apply(entries[2:])
    records = await log.read(0, 10)
    assert [r.record_id for r in records] == [
        "invoice:INV-7", f"baseline:INV-7:acceptance:{ACCEPTED_MS - DAY_MS}", f"baseline:INV-7:acceptance:{ACCEPTED_MS}"
    ]  # fmt: skip
    due = await due_dates(desk)
    assert ("INV-7", date(2027, 3, 1)) in due
    # a restart: a new follower over the same store and log, the journal redelivered
    restarted = FinanceFeed(store, SETUP, default_rules(), log)
    await restarted.apply(entries)
    again = FinanceDesk(store, restarted, default_profiles(), now_ms=lambda: T0_MS + 10 * DAY_MS)
    assert await due_dates(again) == due
    assert len(await log.read(0, 10)) == 3
    # a rebuild into an empty store: the journal and the log give the same plans, the newest date
    rebuilt_store = InMemoryFinanceStore()
    rebuilt = FinanceFeed(rebuilt_store, SETUP, default_rules(), log)
    await rebuilt.apply(entries)
    fresh = FinanceDesk(rebuilt_store, rebuilt, default_profiles(), now_ms=lambda: T0_MS + 10 * DAY_MS)
    assert await due_dates(fresh) == due
    assert await rebuilt_store.baselines("INV-7") == await store.baselines("INV-7")


async def test_without_a_documents_log_a_baseline_is_refused_not_lost() -> None:
    store = InMemoryFinanceStore()
    desk = FinanceDesk(store, FinanceFeed(store, SETUP, default_rules()), default_profiles())
    with pytest.raises(FailedPrecondition) as info:
        await desk.record_baseline("INV-7", "acceptance", ACCEPTED_MS)
    assert info.value.reason == "NO_DOCUMENTS_LOG"
    assert await store.baselines("INV-7") == []


async def test_exports_are_idempotent_batches_and_carry_reversals() -> None:
    desk = await desk_with(furniture())
    with pytest.raises(FailedPrecondition):
        await desk.export("B1", "csv")  # nothing posted yet
    for v in (await desk.list_vouchers(VoucherQuery())).vouchers:
        await desk.approve(v.voucher_id, "alice")
        await desk.post(v.voucher_id)
    batch = await desk.export("B1", "csv")
    assert await desk.export("B1", "csv") == batch
    with pytest.raises(FailedPrecondition):
        await desk.export("B2", "csv")  # everything is exported already
    rows = list(csv.DictReader(io.StringIO(batch.content.decode())))
    assert {r["voucher_id"].split(":")[0] for r in rows} == {"receipt", "sale", "return"}
    ret = [r for r in rows if r["reversal_of"]]
    assert ret
    assert all(D(r["debit"]) <= 0 and D(r["credit"]) <= 0 for r in ret)
    assert sum(D(r["debit"]) for r in rows) == sum(D(r["credit"]) for r in rows)
    with pytest.raises(InvalidArgument):
        await desk.export("B3", "sap")


async def test_every_export_format_renders_the_same_vouchers() -> None:
    import dbf
    from openpyxl import load_workbook

    desk = await desk_with(furniture())
    vouchers = (await desk.list_vouchers(VoucherQuery())).vouchers
    profiles = default_profiles()
    assert json.loads(render(profiles["json"], vouchers))[0]["voucher_id"] == vouchers[0].voucher_id
    u8 = render(profiles["u8"], vouchers).decode("gbk").splitlines()
    assert u8[0].startswith("2026-11-20,记,receipt:")
    assert len(u8) == sum(len(v.lines) for v in vouchers)
    assert all((line.split(",")[5] == "0.00") != (line.split(",")[6] == "0.00") for line in u8)  # one side each
    sheet = load_workbook(io.BytesIO(render(profiles["xlsx"], vouchers))).active
    assert sheet is not None
    assert sheet.max_row == len(u8) + 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k3.dbf"
        path.write_bytes(render(profiles["k3"], vouchers))
        table = dbf.Table(str(path))
        table.open()
        records = list(table)
        assert len(records) == len(u8)
        assert records[0]["FGROUP"].strip() == "记"
        assert sum(r["FDEBIT"] for r in records) == pytest.approx(sum(r["FCREDIT"] for r in records))
        table.close()
