"""What only the ClickHouse finance store does: voucher lines and trace keys derived by
materialized views from the stored voucher, and a database made before them (lines written
row by row, trace keys behind a bloom-filter index) still read after the upgrade."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import clickhouse_connect

from adapters.clickhouse.finance import FinanceStoreConfig, _voucher_row, open_finance_store
from engine.finance.ports import Checkpoint, VoucherQuery
from engine.finance.sandbox import approve
from engine.finance.state import ledger_to_doc
from engine.finance.vouchers import Voucher
from tests.contract.test_finance_store_contract import sample
from tests.history_fixtures import chdb_dsn_for_session  # noqa: F401 - the session's chDB path


def _lines_of(vouchers: Sequence[Voucher]) -> list[tuple[Any, ...]]:
    return sorted(
        (v.voucher_id, ln.line_no, v.company, v.at_ms, ln.account, ln.role, ln.debit, ln.credit, v.currency, ln.sku,
         ln.lot_id)
        for v in vouchers
        for ln in v.lines
    )  # fmt: skip


async def test_lines_are_derived_from_each_stored_voucher_once(chdb_dsn_for_session: str) -> None:  # noqa: F811
    store = await open_finance_store(FinanceStoreConfig(chdb_dsn_for_session, f"f_{uuid.uuid4().hex[:12]}"))
    try:
        ledger, vouchers, valuations = sample()
        await store.commit(Checkpoint(3, ledger_to_doc(ledger)), vouchers, valuations)
        await store.put_voucher(approve(vouchers[0], "alice"))  # a new version: the same lines again
        rows = await store.query("SELECT * FROM {db}.voucher_lines FINAL ORDER BY voucher_id, line_no")
        assert sorted(tuple(r) for r in rows) == _lines_of(vouchers)
        keys = await store.query("SELECT count() FROM {db}.voucher_keys FINAL")
        assert keys[0][0] == sum(len(_voucher_row(v)[7]) for v in vouchers)
    finally:
        await store.close()


OLD_VOUCHERS = """CREATE TABLE {db}.vouchers (
    voucher_id String, version UInt32, company LowCardinality(String), kind LowCardinality(String),
    state LowCardinality(String), at_ms Int64, reversal_of String, keys Array(String), doc String,
    INDEX keys_idx keys TYPE bloom_filter GRANULARITY 4
) ENGINE = ReplacingMergeTree(version) ORDER BY voucher_id"""


async def test_a_database_from_before_the_views_is_upgraded_and_still_traces(chdb_dsn_for_session: str) -> None:  # noqa: F811
    db = f"f_{uuid.uuid4().hex[:12]}"
    ledger, vouchers, valuations = sample()
    old = clickhouse_connect.get_client(dsn=chdb_dsn_for_session)
    try:  # what the previous schema left: vouchers with the index, no voucher_keys, no views
        old.command(f"CREATE DATABASE {db}")
        old.command(OLD_VOUCHERS.replace("{db}", db))
        old.insert(f"{db}.vouchers", [_voucher_row(v) for v in vouchers[:2]], column_names=[
            "voucher_id", "version", "company", "kind", "state", "at_ms", "reversal_of", "keys", "doc"])  # fmt: skip
    finally:
        old.close()
    store = await open_finance_store(FinanceStoreConfig(chdb_dsn_for_session, db))
    try:
        assert [v.voucher_id for v in await store.vouchers_by_source("PO-1")] == [vouchers[0].voucher_id]
        index = "SELECT count() FROM system.data_skipping_indices WHERE database = {d:String} AND table = 'vouchers'"
        assert (await store.query(index, {"d": db}))[0][0] == 0
        await store.commit(Checkpoint(3, ledger_to_doc(ledger)), vouchers, valuations)  # the rest, after
        assert [v.voucher_id for v in await store.vouchers_by_source("SO-1")] == [vouchers[2].voucher_id]
        assert [v.voucher_id for v in await store.vouchers_by_source("PO-2")] == [vouchers[1].voucher_id]
        assert len((await store.list_vouchers(VoucherQuery())).vouchers) == len(vouchers)
    finally:
        await store.close()
    again = await open_finance_store(FinanceStoreConfig(chdb_dsn_for_session, db))  # reopened: nothing to migrate
    try:
        assert [v.voucher_id for v in await again.vouchers_by_source("PO-1")] == [vouchers[0].voucher_id]
    finally:
        await again.close()
