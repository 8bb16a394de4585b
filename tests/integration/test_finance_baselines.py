"""Payment-plan baselines are journaled (issue 16): on a real nats-server (the documents log,
LOTWISE_FINDOCS_<namespace>) and chDB (the finance store), a follower restarted over the same
store, and one rebuilt into an empty store from the journal and the log, find the plan's due
date where the live one left it."""

from __future__ import annotations

import uuid
from datetime import date

from adapters.clickhouse.finance import ClickHouseFinanceStore, FinanceStoreConfig, open_finance_store
from adapters.nats.finance_documents import NatsFinanceDocuments
from adapters.nats.journal import NatsLink, engine_journal_config
from adapters.nats.server import EmbeddedNats
from engine.domain.ports import FollowedEntry
from engine.finance.exports import default_profiles
from engine.finance.follower import FinanceFeed
from engine.finance.mapping import default_rules
from engine.finance.service import FinanceDesk
from tests.finance_fixtures import SETUP, Journal, fin
from tests.history_fixtures import chdb_dsn_for_session  # noqa: F401 - the session's chDB path
from tests.nats_fixtures import nats_server  # noqa: F401 - the session's nats-server

INVOICE_DAY_MS = 1_795_132_800_000  # 2026-11-20
ACCEPTED_MS = 1_798_675_200_000  # 2026-12-31 → due 60 days later, 2027-03-01


def purchase() -> tuple[FollowedEntry, ...]:
    j = Journal(at_ms=INVOICE_DAY_MS)
    j.receive("TABLE-1", "SH01", "L1", 10, fin("800"), doc="PO-1")
    j.issue("TABLE-1", "SH01", "L1", 2, fin(price="1000", rate="0.13", terms="2/10 n/30"), doc="SO-1")
    return tuple(j.entries)


async def payable_due(store: ClickHouseFinanceStore, feed: FinanceFeed) -> date | None:
    _, payables = await FinanceDesk(store, feed, default_profiles()).plans("acme")
    return next(p.due_date for p in payables if p.doc_key == "INV-7")


async def test_a_baseline_survives_a_restart_and_a_rebuild(
    chdb_dsn_for_session: str,  # noqa: F811
    nats_server: EmbeddedNats,  # noqa: F811
) -> None:
    namespace = f"fb{uuid.uuid4().hex[:8]}"
    journal = engine_journal_config(namespace, nats_server.url, client_name="lotwise-finance-test")
    link = NatsLink(journal)
    await link.connect()
    store = await open_finance_store(FinanceStoreConfig(chdb_dsn_for_session, f"f_{uuid.uuid4().hex[:12]}"))
    rebuilt_store = await open_finance_store(FinanceStoreConfig(chdb_dsn_for_session, f"f_{uuid.uuid4().hex[:12]}"))
    try:
        log = NatsFinanceDocuments(link, namespace, journal, max_bytes=64 * 1024 * 1024)
        feed = FinanceFeed(store, SETUP, default_rules(), log)
        await feed.apply(purchase())
        desk = FinanceDesk(store, feed, default_profiles())
        terms = "60 days after acceptance"
        await desk.record_supplier_invoice("INV-7", "acme", ("PO-1",), "8000", "1040", terms, "carol", INVOICE_DAY_MS)
        assert await payable_due(store, feed) is None  # waiting for the acceptance
        await desk.record_baseline("INV-7", "acceptance", ACCEPTED_MS, "carol")
        assert await payable_due(store, feed) == date(2027, 3, 1)

        restarted = FinanceFeed(store, SETUP, default_rules(), log)  # a new process, the same store
        await restarted.apply(purchase())  # redelivered: skipped
        assert await payable_due(store, restarted) == date(2027, 3, 1)
        assert restarted.documents_applied == 2

        rebuilt = FinanceFeed(rebuilt_store, SETUP, default_rules(), log)  # an empty store: replayed
        await rebuilt.apply(purchase())
        assert await payable_due(rebuilt_store, rebuilt) == date(2027, 3, 1)
        assert await rebuilt_store.baselines("INV-7") == await store.baselines("INV-7")
    finally:
        await store.close()
        await rebuilt_store.close()
        await link.close()
