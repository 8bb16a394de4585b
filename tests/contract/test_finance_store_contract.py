"""One contract for every FinanceStore: in memory and on ClickHouse (chDB, in a database
of its own per test on the process's one chDB path)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal as D

import pytest
import pytest_asyncio

from adapters.clickhouse.finance import FinanceStoreConfig, open_finance_store
from adapters.memory.finance import InMemoryFinanceStore
from engine.domain.errors import InvalidArgument
from engine.finance.ledger import Ledger
from engine.finance.mapping import default_rules
from engine.finance.ports import Baseline, Checkpoint, ExportBatch, FinanceStore, ValuationQuery, VoucherQuery
from engine.finance.sandbox import approve, post
from engine.finance.state import ledger_to_doc
from engine.finance.vouchers import Voucher
from tests.finance_fixtures import DAY_MS, SETUP, T0_MS, Journal, fin
from tests.history_fixtures import chdb_dsn_for_session  # noqa: F401 - the session's chDB path


@pytest_asyncio.fixture(params=["memory", "chdb"], loop_scope="session")
async def store(request: pytest.FixtureRequest, chdb_dsn_for_session: str) -> AsyncIterator[FinanceStore]:  # noqa: F811
    if request.param == "memory":
        yield InMemoryFinanceStore()
        return
    made = await open_finance_store(FinanceStoreConfig(chdb_dsn_for_session, f"f_{uuid.uuid4().hex[:12]}"))
    yield made
    await made.close()


def sample() -> tuple[Ledger, list[Voucher], list]:  # type: ignore[type-arg]
    j = Journal()
    j.receive("CHAIR-1", "SH01", "L1", 10, fin("5"), doc="PO-1")
    j.at_ms += DAY_MS
    j.receive("CHAIR-1", "SH01", "L2", 10, fin("7"), doc="PO-2")
    j.issue("CHAIR-1", "SH01", "L1", 2, fin(price="20", rate="0.13"), doc="SO-1?channel=web")
    ledger = Ledger(SETUP, default_rules())
    vouchers, valuations = [], []
    for event in j.events():
        effects = ledger.apply(event)
        vouchers.extend(effects.vouchers)
        valuations.extend(effects.valuations)
    return ledger, vouchers, valuations


async def test_commit_stores_vouchers_valuations_and_the_checkpoint(store: FinanceStore) -> None:
    assert await store.load_checkpoint() is None
    ledger, vouchers, valuations = sample()
    await store.commit(Checkpoint(3, ledger_to_doc(ledger)), vouchers, valuations)
    checkpoint = await store.load_checkpoint()
    assert checkpoint is not None
    assert checkpoint.position == 3
    assert checkpoint.state == ledger_to_doc(ledger)
    for v in vouchers:
        assert await store.get_voucher(v.voucher_id) == v
    assert await store.get_voucher("nope") is None
    rows = await store.valuation(ValuationQuery(company="acme"))
    assert [(r.lot_id, r.qty, r.value) for r in rows] == [("L1", 8, D("40")), ("L2", 10, D("70"))]
    as_of = await store.valuation(ValuationQuery(as_of_ms=T0_MS))
    assert [(r.lot_id, r.qty, r.value) for r in as_of] == [("L1", 10, D("50"))]


async def test_a_redelivered_commit_keeps_newer_states(store: FinanceStore) -> None:
    ledger, vouchers, valuations = sample()
    await store.commit(Checkpoint(3, ledger_to_doc(ledger)), vouchers, valuations)
    posted = post(approve(vouchers[0], "alice"), T0_MS)
    await store.put_voucher(posted)
    await store.commit(Checkpoint(3, ledger_to_doc(ledger)), vouchers, valuations)  # the same batch again
    assert await store.get_voucher(vouchers[0].voucher_id) == posted
    assert len((await store.list_vouchers(VoucherQuery())).vouchers) == len(vouchers)
    assert sum(r.qty for r in await store.valuation(ValuationQuery())) == 18


async def test_list_filters_and_pages(store: FinanceStore) -> None:
    ledger, vouchers, valuations = sample()
    await store.commit(Checkpoint(3, ledger_to_doc(ledger)), vouchers, valuations)
    await store.put_voucher(replace(vouchers[1], state="approved", version=1))
    seen, token = [], ""
    while True:
        page = await store.list_vouchers(VoucherQuery(page_size=1, page_token=token))
        seen.extend(v.voucher_id for v in page.vouchers)
        if not page.next_page_token:
            break
        token = page.next_page_token
    assert seen == [v.voucher_id for v in sorted(vouchers, key=lambda v: (v.at_ms, v.voucher_id))]
    approved = await store.list_vouchers(VoucherQuery(state="approved"))
    assert [v.voucher_id for v in approved.vouchers] == [vouchers[1].voucher_id]
    assert (await store.list_vouchers(VoucherQuery(company="other"))).vouchers == ()
    late = await store.list_vouchers(VoucherQuery(from_ms=T0_MS + DAY_MS))
    assert {v.kind for v in late.vouchers} == {"receipt", "sale"}
    assert len(late.vouchers) == 2
    with pytest.raises(InvalidArgument):
        await store.list_vouchers(VoucherQuery(state="lost"))
    with pytest.raises(InvalidArgument):
        await store.list_vouchers(VoucherQuery(page_token="garbage"))


async def test_list_by_several_states_pages_in_one_query(store: FinanceStore) -> None:
    ledger, vouchers, valuations = sample()
    await store.commit(Checkpoint(3, ledger_to_doc(ledger)), vouchers, valuations)
    await store.put_voucher(replace(vouchers[0], state="annotated", version=1))
    await store.put_voucher(replace(vouchers[1], state="approved", version=1))
    ordered = sorted(vouchers, key=lambda v: (v.at_ms, v.voucher_id))
    pool = [v.voucher_id for v in ordered if v.voucher_id != vouchers[1].voucher_id]
    seen, token = [], ""
    while True:
        page = await store.list_vouchers(VoucherQuery(states=("pending", "annotated"), page_size=1, page_token=token))
        seen.extend(v.voucher_id for v in page.vouchers)
        if not page.next_page_token:
            break
        token = page.next_page_token
    assert seen == pool
    both = await store.list_vouchers(VoucherQuery(state="approved", states=("annotated",)))
    assert [v.voucher_id for v in both.vouchers] == [
        v.voucher_id for v in ordered if v.voucher_id in {vouchers[0].voucher_id, vouchers[1].voucher_id}
    ]
    assert (await store.list_vouchers(VoucherQuery(states=("posted", "rejected")))).vouchers == ()
    with pytest.raises(InvalidArgument):
        await store.list_vouchers(VoucherQuery(states=("pending", "lost")))
    with pytest.raises(InvalidArgument):
        await store.list_vouchers(VoucherQuery(states=("pending",) * 17))


async def test_vouchers_by_source_key(store: FinanceStore) -> None:
    ledger, vouchers, valuations = sample()
    await store.commit(Checkpoint(3, ledger_to_doc(ledger)), vouchers, valuations)
    sale = vouchers[2]
    assert [v.voucher_id for v in await store.vouchers_by_source("SO-1")] == [sale.voucher_id]
    source = sale.sources[0]
    assert [v.voucher_id for v in await store.vouchers_by_source(source.event_id)] == [sale.voucher_id]
    assert [v.voucher_id for v in await store.vouchers_by_source(f"{source.sku}/{source.site}/{source.seq}")] == [
        sale.voucher_id
    ]
    assert [v.voucher_id for v in await store.vouchers_by_source("PO-1")] == [vouchers[0].voucher_id]
    assert await store.vouchers_by_source("SO-404") == []


async def test_baselines_and_export_batches(store: FinanceStore) -> None:
    await store.put_baseline(Baseline("PO-7", "acceptance", T0_MS))
    await store.put_baseline(Baseline("PO-7", "acceptance", T0_MS))
    assert await store.baselines("PO-7") == [Baseline("PO-7", "acceptance", T0_MS)]
    assert await store.baselines("PO-8") == []
    ledger, vouchers, valuations = sample()
    first, corrected = Baseline("INV-7", "acceptance", T0_MS), Baseline("INV-7", "acceptance", T0_MS + DAY_MS)
    await store.commit(Checkpoint(3, ledger_to_doc(ledger)), vouchers, valuations, [first, corrected])
    assert await store.baselines("INV-7") == [corrected]  # in order: the later one of a key wins
    batch = ExportBatch("B1", "csv", ("a", "b"), T0_MS, "凭证,1\n".encode("gbk") + b"\x00\xff", "B1.csv")
    await store.put_export_batch(batch)
    assert await store.get_export_batch("B1") == batch
    assert await store.get_export_batch("B2") is None
    assert await store.exported_voucher_ids() == {"a", "b"}


async def test_checkpoints_merge_deltas_and_a_restarted_follower_carries_on_exactly(store: FinanceStore) -> None:
    from engine.domain.model import External
    from engine.finance.follower import FinanceFeed

    j = Journal()
    j.receive("CHAIR-1", "SH01", "L1", 10, fin("5"), doc="PO-1")
    j.receive("SCREW-1", "SH01", "L1", 100, fin("0.10"), doc="PO-2")
    j.issue("CHAIR-1", "SH01", "L1", 4, fin(price="9", rate="0.13"), doc="SO-1")
    j.issue("SCREW-1", "SH01", "L1", 30, fin(price="0.5", rate="0.13"), doc="SO-2")
    j.receive("CHAIR-1", "SH01", "L1", 1, None, doc="R-1?orig=SO-1", source=External.CUSTOMER)
    j.issue("CHAIR-1", "SH01", "L1", 2, None, doc="TR-1?to=BJ01", dest=External.TRANSIT)
    j.receive("CHAIR-1", "BJ01", "L1", 2, None, doc="TR-1", source=External.TRANSIT)
    j.receive("CHAIR-1", "SH01", "L1", 1, None, doc="R-2?orig=SO-1", source=External.CUSTOMER)
    first = FinanceFeed(store, SETUP, default_rules())
    await first.apply(tuple(j.entries[:3]))
    await first.apply(tuple(j.entries[3:5]))
    restarted = FinanceFeed(store, SETUP, default_rules())  # a new process: loads the merged checkpoint
    await restarted.apply(tuple(j.entries[2:]))  # a redelivery of 3..5, then the rest
    fresh = InMemoryFinanceStore()
    await FinanceFeed(fresh, SETUP, default_rules()).apply(tuple(j.entries))
    mine = (await store.list_vouchers(VoucherQuery(page_size=1000))).vouchers
    theirs = (await fresh.list_vouchers(VoucherQuery(page_size=1000))).vouchers
    assert mine == theirs
    assert len(mine) == 8
    assert await store.valuation(ValuationQuery()) == await fresh.valuation(ValuationQuery())
    loaded = await store.load_checkpoint()
    assert loaded is not None
    assert loaded.position == len(j.entries)
    expected = await fresh.load_checkpoint()
    assert expected is not None
    key = lambda doc: {k: sorted(map(str, v)) for k, v in doc.items() if k != "format"}  # noqa: E731
    assert key(loaded.state) == key(expected.state)
