"""What only the ClickHouse finance store does: voucher lines derived by a materialized view
from the stored voucher, and a database made before the view (lines written from Python)
keeps its lines and derives the new ones; the column types its inserts declare are the
tables' own."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import clickhouse_connect

from adapters.clickhouse.finance import (
    BASELINE_COLUMNS,
    COLUMN_TYPES,
    STATE_COLUMNS,
    VALUATION_COLUMNS,
    FinanceStoreConfig,
    _voucher_row,
    open_finance_store,
)
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
    finally:
        await store.close()


async def test_the_declared_insert_types_are_the_tables_own(chdb_dsn_for_session: str) -> None:  # noqa: F811
    """The follower's inserts name their column types instead of asking for them: a type that
    drifted from the table would be written wrongly or refused."""
    store = await open_finance_store(FinanceStoreConfig(chdb_dsn_for_session, f"f_{uuid.uuid4().hex[:12]}"))
    columns = {
        "vouchers": VOUCHER_COLUMNS,
        "valuations": VALUATION_COLUMNS,
        "ledger_state": STATE_COLUMNS,
        "baselines": BASELINE_COLUMNS,
    }
    try:
        assert set(COLUMN_TYPES) == set(columns)
        for table, names in columns.items():
            described = {str(r[0]): str(r[1]) for r in await store.query(f"DESCRIBE TABLE {{db}}.{table}")}
            assert [described[n] for n in names] == COLUMN_TYPES[table], table
    finally:
        await store.close()


OLD_SCHEMA = (
    """CREATE TABLE {db}.vouchers (
        voucher_id String, version UInt32, company LowCardinality(String), kind LowCardinality(String),
        state LowCardinality(String), at_ms Int64, reversal_of String, keys Array(String), doc String,
        INDEX keys_idx keys TYPE bloom_filter GRANULARITY 4
    ) ENGINE = ReplacingMergeTree(version) ORDER BY voucher_id""",
    """CREATE TABLE {db}.voucher_lines (
        voucher_id String, line_no UInt16, company LowCardinality(String), at_ms Int64,
        account LowCardinality(String), role LowCardinality(String), debit Decimal(38, 6), credit Decimal(38, 6),
        currency LowCardinality(String), sku String, lot_id String
    ) ENGINE = ReplacingMergeTree ORDER BY (voucher_id, line_no)""",
)
VOUCHER_COLUMNS = ["voucher_id", "version", "company", "kind", "state", "at_ms", "reversal_of", "keys", "doc"]
LINE_COLUMNS = ["voucher_id", "line_no", "company", "at_ms", "account", "role", "debit", "credit", "currency", "sku",
                "lot_id"]  # fmt: skip


async def test_a_database_from_before_the_view_keeps_its_lines_and_derives_new_ones(chdb_dsn_for_session: str) -> None:  # noqa: F811
    db = f"f_{uuid.uuid4().hex[:12]}"
    ledger, vouchers, valuations = sample()
    old = clickhouse_connect.get_client(dsn=chdb_dsn_for_session)
    try:  # what the previous release wrote: the first voucher and its lines, row by row, no view
        old.command(f"CREATE DATABASE {db}")
        for statement in OLD_SCHEMA:
            old.command(statement.replace("{db}", db))
        old.insert(f"{db}.vouchers", [_voucher_row(vouchers[0])], column_names=VOUCHER_COLUMNS)
        old.insert(f"{db}.voucher_lines", [list(r) for r in _lines_of(vouchers[:1])], column_names=LINE_COLUMNS)
    finally:
        old.close()
    store = await open_finance_store(FinanceStoreConfig(chdb_dsn_for_session, db))
    try:
        await store.commit(Checkpoint(3, ledger_to_doc(ledger)), vouchers[1:], valuations)
        rows = await store.query("SELECT * FROM {db}.voucher_lines FINAL ORDER BY voucher_id, line_no")
        assert sorted(tuple(r) for r in rows) == _lines_of(vouchers)
        assert [v.voucher_id for v in await store.vouchers_by_source("PO-1")] == [vouchers[0].voucher_id]
        assert len((await store.list_vouchers(VoucherQuery())).vouchers) == len(vouchers)
    finally:
        await store.close()
