"""Supplier invoices and landed costs are journaled in a log of their own (issue 16): a
restart or a rebuild of the ledgers from the journal meets them at the same place and
makes the very same vouchers; each is booked once per id, even across a crash between its
log append and its vouchers' commit."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest

from adapters.memory.finance import InMemoryFinanceDocuments, InMemoryFinanceStore
from engine.domain.errors import FailedPrecondition
from engine.finance.documents import DocumentRecord, LandedCost, SupplierInvoice
from engine.finance.follower import FinanceFeed
from engine.finance.mapping import default_rules
from engine.finance.ports import FinanceStore, VoucherQuery
from engine.finance.vouchers import Voucher
from tests.finance_fixtures import SETUP, Journal, fin

RULES = default_rules()


def journal() -> Journal:
    j = Journal()
    j.receive("CHAIR-1", "SH01", "L1", 10, fin("5"), doc="PO-1")  # position 1
    j.receive("CHAIR-1", "SH01", "L2", 10, fin("7"), doc="PO-2")  # 2
    j.issue("CHAIR-1", "SH01", "L1", 4, fin(price="9"), doc="SO-1")  # 3
    j.issue("CHAIR-1", "SH01", "L1", 6, fin(price="9"), doc="SO-2")  # 4: lot 1 gone
    j.receive("CHAIR-1", "SH01", "L1", 5, fin("6"), doc="PO-3")  # 5
    j.issue("CHAIR-1", "SH01", "L1", 5, fin(price="9"), doc="SO-3")  # 6
    return j


INVOICE = SupplierInvoice("INV-1", "acme", ("PO-1",), D("52"), D("6.76"), "2/10 n/30", "carol", 10)
FREIGHT = LandedCost("FRT-1", "acme", "CHAIR-1", "L1", D("10"), "carol", 11)


async def all_vouchers(store: FinanceStore) -> list[Voucher]:
    return list((await store.list_vouchers(VoucherQuery(page_size=1_000))).vouchers)


async def live_run(store: FinanceStore, log: InMemoryFinanceDocuments) -> list[Voucher]:
    """Entries 1–3, the invoice, entry 4, the landed cost (lot 1 gone: expensed), 5–6."""
    entries = tuple(journal().entries)
    feed = FinanceFeed(store, SETUP, RULES, log)
    await feed.apply(entries[:3])
    await feed.run_document(INVOICE)
    await feed.apply(entries[3:4])
    await feed.run_document(FREIGHT)
    await feed.apply(entries[4:])
    return await all_vouchers(store)


def test_a_rebuild_from_the_journal_and_the_log_makes_the_same_vouchers() -> None:
    async def go() -> None:
        log = InMemoryFinanceDocuments()
        live = await live_run(InMemoryFinanceStore(), log)
        assert [r.after_position for r in await log.read(0, 10)] == [3, 4]
        freight = next(v for v in live if v.voucher_id == "landed:FRT-1")
        assert [(ln.role, ln.debit) for ln in freight.lines] == [("cogs", D("10.00")), ("landed_cost_clearing", 0)]
        # a rebuild: empty store, the whole journal in one batch, the same log
        rebuilt_store = InMemoryFinanceStore()
        await FinanceFeed(rebuilt_store, SETUP, RULES, log).apply(tuple(journal().entries))
        assert await all_vouchers(rebuilt_store) == live
        # and in batches cut anywhere else
        cut_store = InMemoryFinanceStore()
        feed = FinanceFeed(cut_store, SETUP, RULES, log)
        entries = tuple(journal().entries)
        for i in range(0, len(entries), 4):
            await feed.apply(entries[i : i + 4])
        assert await all_vouchers(cut_store) == live

    asyncio.run(go())


def test_a_restart_does_not_book_a_document_twice_and_a_repeat_books_nothing() -> None:
    async def go() -> None:
        store, log = InMemoryFinanceStore(), InMemoryFinanceDocuments()
        live = await live_run(store, log)
        restarted = FinanceFeed(store, SETUP, RULES, log)
        await restarted.apply(tuple(journal().entries))  # all redelivered: skipped
        assert await restarted.run_document(INVOICE) == ()  # the same id again
        assert await all_vouchers(store) == live
        assert len(await log.read(0, 10)) == 2

    asyncio.run(go())


class _CommitFails(InMemoryFinanceStore):
    fail = True

    async def commit(self, *args: object) -> None:
        if self.fail:
            self.fail = False
            raise ConnectionError("the store went away")
        await super().commit(*args)  # type: ignore[arg-type]


def test_a_document_logged_before_a_failed_commit_is_booked_once_at_its_place() -> None:
    async def go() -> None:
        store, log = _CommitFails(), InMemoryFinanceDocuments()
        store.fail = False
        feed = FinanceFeed(store, SETUP, RULES, log)
        entries = tuple(journal().entries)
        await feed.apply(entries[:3])
        store.fail = True
        with pytest.raises(ConnectionError):
            await feed.run_document(INVOICE)  # logged, vouchers not stored
        await feed.apply(entries[3:])  # reloaded: the logged invoice is booked before entry 4
        invoice = [v for v in await all_vouchers(store) if v.voucher_id == "invoice:INV-1"]
        assert len(invoice) == 1
        assert await feed.run_document(INVOICE) == ()  # the caller's retry: booked already
        reference = InMemoryFinanceStore()
        await FinanceFeed(reference, SETUP, RULES, log).apply(entries)
        assert await all_vouchers(reference) == await all_vouchers(store)

    asyncio.run(go())


def test_a_refused_document_is_not_logged() -> None:
    async def go() -> None:
        log = InMemoryFinanceDocuments()
        feed = FinanceFeed(InMemoryFinanceStore(), SETUP, RULES, log)
        with pytest.raises(FailedPrecondition):
            await feed.run_document(SupplierInvoice("INV-9", "acme", ("PO-404",), D(1), D(0), "", "carol", 1))
        assert await log.read(0, 10) == []

    asyncio.run(go())


def test_without_a_log_documents_are_refused_not_lost() -> None:
    async def go() -> None:
        feed = FinanceFeed(InMemoryFinanceStore(), SETUP, RULES)
        with pytest.raises(FailedPrecondition) as info:
            await feed.run_document(INVOICE)
        assert info.value.reason == "NO_DOCUMENTS_LOG"
        assert DocumentRecord(INVOICE, 0).record_id == "invoice:INV-1"

    asyncio.run(go())
