"""Finance inside the whole engine: Ray shards → JetStream journal → finance follower →
chDB → lotwise.v1.Accounting over gRPC, with tokens and grants; posted vouchers on NATS."""

from __future__ import annotations

import csv
import io
import json
import uuid

import grpc
import nats
import pytest

from engine.api.auth import mint_token
from engine.api.client import LotwiseClient
from engine.api.gen.lotwise.v1 import finance_pb2 as fpb
from engine.api.gen.lotwise.v1 import finance_pb2_grpc as fpb_grpc
from engine.bootstrap import RunningEngine
from engine.domain.catalog import Site, Sku
from engine.domain.commands import ReserveLine
from engine.domain.model import External, Finance
from engine.runtime.types import HoldLine
from tests.conftest import TEST_SECRET_FILE, authed_channel

pytestmark = [pytest.mark.ray, pytest.mark.asyncio(loop_scope="session")]


def code_of(err: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> grpc.StatusCode:
    return err.value.code()


async def test_vouchers_follow_the_live_engine(ray_engine: RunningEngine, ray_client: LotwiseClient) -> None:
    assert ray_engine.finance is not None, "finance is on by default"
    c = ray_client
    tag = uuid.uuid4().hex[:8]
    sku, site, lot = f"TABLE-{tag}", f"wh-{tag}", f"L-{tag}"
    po, so = f"PO-{tag}", f"SO-{tag}"
    await c.put_sku(Sku(sku))
    await c.put_site(Site(site, f"org-{tag}"))
    await c.receive(sku, site, lot, 10, status="available", doc_ref=po, finance=Finance("CNY", unit_cost="800"))
    sale = Finance("CNY", unit_price="1000", tax_rate="0.13", terms="2/10 n/30")
    hold = await c.reserve([HoldLine(sku, site, ReserveLine(3))], 60_000, doc_ref=so, finance=sale)
    await c.commit(hold.hold_id, doc_ref=so, finance=sale)
    await c.receive(sku, site, lot, 1, status="available", doc_ref=f"RMA-{tag}?orig={so}", source=External.CUSTOMER)
    await ray_engine.finance.follower.wait_caught_up(timeout_s=60)

    async with authed_channel(ray_engine.grpc_address) as channel:
        stub = fpb_grpc.AccountingStub(channel)
        trace = await stub.Trace(fpb.TraceRequest(key=so), timeout=10)
        kinds = {v.kind: v for v in trace.vouchers}
        assert set(kinds) == {"sale", "return"}
        sold, returned = kinds["sale"], kinds["return"]
        assert returned.reversal_of == sold.voucher_id
        lines = {(ln.role, ln.debit, ln.credit) for ln in sold.lines}
        assert {("cogs", "2400.00", "0"), ("ar", "3390.00", "0"), ("output_tax", "0", "390.00")} <= lines
        assert {s.doc_ref for s in trace.sources} == {so, f"RMA-{tag}?orig={so}"}

        approved = await stub.ApproveVoucher(fpb.VoucherActionRequest(voucher_id=sold.voucher_id), timeout=10)
        assert (approved.voucher.state, approved.voucher.reviewer) == ("approved", "admin")
        posted = await stub.PostVoucher(fpb.VoucherActionRequest(voucher_id=sold.voucher_id), timeout=10)
        assert posted.voucher.state == "posted"
        settled = await stub.ListVouchers(fpb.ListVouchersRequest(states=["posted", "rejected"]), timeout=10)
        assert sold.voucher_id in {v.voucher_id for v in settled.vouchers}
        assert {v.state for v in settled.vouchers} <= {"posted", "rejected"}
        pool = await stub.ListVouchers(fpb.ListVouchersRequest(states=["pending", "annotated"]), timeout=10)
        assert sold.voucher_id not in {v.voucher_id for v in pool.vouchers}
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RejectVoucher(fpb.RejectVoucherRequest(voucher_id=sold.voucher_id, reason="late"), timeout=10)
        assert code_of(err) is grpc.StatusCode.FAILED_PRECONDITION

        value = await stub.GetValuation(fpb.GetValuationRequest(sku=sku), timeout=10)
        assert [(r.lot_id, r.qty, r.value) for r in value.lots] == [(lot, 8, "6400.00")]

        batch = await stub.ExportVouchers(fpb.ExportVouchersRequest(batch_id=f"B-{tag}", profile="csv"), timeout=10)
        assert sold.voucher_id in batch.voucher_ids
        rows = list(csv.DictReader(io.StringIO(batch.content.decode())))
        assert {r["voucher_id"] for r in rows} >= {sold.voucher_id}
        again = await stub.ExportVouchers(fpb.ExportVouchersRequest(batch_id=f"B-{tag}", profile="csv"), timeout=10)
        assert again.content == batch.content

        plans = await stub.GetPaymentPlans(fpb.GetPaymentPlansRequest(company="default"), timeout=10)
        mine = [p for p in plans.plans if p.doc == so]
        assert mine
        assert mine[0].gross == "3390.00"
        assert mine[0].net_if_discounted == "3322.20"

        explained = await stub.Explain(fpb.ExplainRequest(key=sold.voucher_id), timeout=10)
        assert explained.lines
        assert all(line.steps[-1].mismatch == "" for line in explained.lines)

        for bad, code in (
            (
                stub.ApproveVoucher(fpb.VoucherActionRequest(voucher_id="sale:nope"), timeout=10),
                grpc.StatusCode.NOT_FOUND,
            ),
            (stub.ListVouchers(fpb.ListVouchersRequest(state="lost"), timeout=10), grpc.StatusCode.INVALID_ARGUMENT),
            (
                stub.ListVouchers(fpb.ListVouchersRequest(states=["pending", "lost"]), timeout=10),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (
                stub.ExportVouchers(fpb.ExportVouchersRequest(batch_id="x", profile="sap"), timeout=10),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await bad
            assert code_of(err) is code

    # the posted voucher is a business event on NATS
    posted_events = ray_engine.finance.desk.posted
    assert posted_events is not None
    assert ray_engine.nats is not None  # the embedded nats-server the engine started
    nc = await nats.connect(ray_engine.nats.url)
    try:
        js = nc.jetstream()
        msg = await js.get_last_msg(posted_events.stream, posted_events.subject(posted.voucher))
        assert json.loads(msg.data)["voucher_id"] == sold.voucher_id
    finally:
        await nc.close()


async def test_typed_finance_attributes_choose_the_accounts(
    ray_engine: RunningEngine, ray_client: LotwiseClient
) -> None:
    """Issue 16: a sale to a key account online and a gift as a deemed sale, their tier,
    channel and tax attribute as Finance fields over gRPC, book to the accounts the default
    rules name; a return naming the sale by `return_of` reverses it; explain shows them."""
    assert ray_engine.finance is not None
    c = ray_client
    tag = uuid.uuid4().hex[:8]
    sku, site, lot, so, gift = f"CHAIR-{tag}", f"wh-{tag}", f"L-{tag}", f"SO-{tag}", f"G-{tag}"
    await c.put_sku(Sku(sku))
    await c.put_site(Site(site, f"org-{tag}"))
    await c.receive(
        sku, site, lot, 10, status="available", doc_ref=f"PO-{tag}", finance=Finance("CNY", unit_cost="100")
    )
    sale = Finance("CNY", unit_price="300", tax_rate="0.13", customer_tier="key", sales_channel="web")
    await c.consume(sku, site, 2, doc_ref=so, finance=sale)
    given = Finance("CNY", unit_price="300", tax_rate="0.13", tax_attribute="deemed_sale", gift=True)
    await c.consume(sku, site, 1, doc_ref=gift, finance=given)
    back = Finance(return_of=so)
    await c.receive(sku, site, lot, 1, status="available", doc_ref=f"RMA-{tag}", source=External.CUSTOMER, finance=back)
    await ray_engine.finance.follower.wait_caught_up(timeout_s=60)

    async with authed_channel(ray_engine.grpc_address) as channel:
        stub = fpb_grpc.AccountingStub(channel)
        trace = await stub.Trace(fpb.TraceRequest(key=so), timeout=10)
        kinds = {v.kind: v for v in trace.vouchers}
        assert set(kinds) == {"sale", "return"}
        sold = {ln.role: (ln.account, ln.debit, ln.credit) for ln in kinds["sale"].lines}
        assert sold["ar"] == ("1122.01", "678.00", "0")  # key-account receivables
        assert sold["revenue"] == ("6001.02", "0", "600.00")  # online revenue
        assert kinds["return"].reversal_of == kinds["sale"].voucher_id
        assert {ln.account for ln in kinds["return"].lines} == {a for a, _, _ in sold.values()}
        [gifted] = (await stub.Trace(fpb.TraceRequest(key=gift), timeout=10)).vouchers
        assert gifted.kind == "gift"
        assert {(ln.role, ln.account, ln.credit) for ln in gifted.lines if ln.role == "output_tax"} == {
            ("output_tax", "2221.01.05", "39.00")
        }
        explained = await stub.Explain(fpb.ExplainRequest(key=kinds["sale"].voucher_id), timeout=10)
        revenue = next(line for line in explained.lines if line.facts["role"] == "revenue")
        assert (revenue.facts["tier"], revenue.facts["channel"]) == ("key", "web")
        assert revenue.steps[-1].rule == "online sales revenue"


async def test_a_caller_without_finance_grants_is_denied(ray_engine: RunningEngine) -> None:
    token = mint_token(TEST_SECRET_FILE.read_bytes().strip(), "clerk-1", ["clerks"])
    async with grpc.aio.insecure_channel(ray_engine.grpc_address) as channel:
        stub = fpb_grpc.AccountingStub(channel)
        metadata = (("authorization", f"Bearer {token}"),)
        for call in (
            stub.ListVouchers(fpb.ListVouchersRequest(), metadata=metadata, timeout=10),
            stub.GetValuation(fpb.GetValuationRequest(company="default"), metadata=metadata, timeout=10),
            stub.ExportVouchers(fpb.ExportVouchersRequest(batch_id="b", profile="csv"), metadata=metadata, timeout=10),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert code_of(err) is grpc.StatusCode.PERMISSION_DENIED
