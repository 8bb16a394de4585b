"""FinanceStore on ClickHouse, embedded (chDB) or a server: vouchers, their lines, the
valuation history, the finance follower's checkpoint, payment-plan baselines and export
batches (DESIGN.md §11; contract: tests/contract/test_finance_store_contract.py).

One database of its own (`<history database>_finance` by default) on the same DSN as
history: chDB runs one engine per process and path, so finance shares history's path.
Vouchers are versioned rows (ReplacingMergeTree(version), read with FINAL): a state
change inserts the next version; a redelivered batch re-inserts version 0, which never
wins over a newer one. A voucher's lines (`voucher_lines`) are derived from its row by a
materialized view; they, like valuation rows, are keyed, so a repeat collapses too.
Calls run on one thread of their own (the client is synchronous); chDB releases the GIL.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import orjson
import structlog

from adapters.clickhouse.schema import check_database_name
from adapters.clickhouse.store import HistoryStoreConfig, _connect
from adapters.memory.finance import source_keys
from engine.domain.errors import DeadlineExceeded, Unavailable
from engine.finance.ledger import Valuation
from engine.finance.ports import (
    Baseline,
    Checkpoint,
    ExportBatch,
    LotValuation,
    ValuationQuery,
    VoucherPage,
    VoucherQuery,
    check_voucher_query,
    page_token_of,
    parse_page_token,
    wanted_states,
)
from engine.finance.state import STATE_FORMAT, voucher_from_doc, voucher_to_doc
from engine.finance.vouchers import Voucher

log = structlog.get_logger("lotwise.finance.store")
_T = TypeVar("_T")
Client = Any

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS {db}.vouchers (
        voucher_id String, version UInt32, company LowCardinality(String), kind LowCardinality(String),
        state LowCardinality(String), at_ms Int64, reversal_of String, keys Array(String), doc String,
        INDEX keys_idx keys TYPE bloom_filter GRANULARITY 4
    ) ENGINE = ReplacingMergeTree(version) ORDER BY voucher_id""",
    """CREATE TABLE IF NOT EXISTS {db}.voucher_lines (
        voucher_id String, line_no UInt16, company LowCardinality(String), at_ms Int64,
        account LowCardinality(String), role LowCardinality(String), debit Decimal(38, 6), credit Decimal(38, 6),
        currency LowCardinality(String), sku String, lot_id String
    ) ENGINE = ReplacingMergeTree ORDER BY (voucher_id, line_no)""",
    """CREATE TABLE IF NOT EXISTS {db}.valuations (
        company LowCardinality(String), sku String, lot_id String, event_id String, at_ms Int64,
        qty Int64, value Decimal(38, 6), voucher_id String
    ) ENGINE = ReplacingMergeTree ORDER BY (company, sku, lot_id, event_id)""",
    # The follower's ledgers, one row per position / sale / GRNI record (the newest `seq` of a
    # key wins), the open transit legs and the journal position ("meta"), all written in one
    # insert per commit: only what changed (engine.finance.state.ledger_delta).
    """CREATE TABLE IF NOT EXISTS {db}.ledger_state (
        kind LowCardinality(String), key String, seq UInt64, doc String
    ) ENGINE = ReplacingMergeTree(seq) ORDER BY (kind, key)""",
    """CREATE TABLE IF NOT EXISTS {db}.baselines (
        doc_key String, baseline LowCardinality(String), at_ms Int64
    ) ENGINE = ReplacingMergeTree ORDER BY (doc_key, baseline)""",
    """CREATE TABLE IF NOT EXISTS {db}.export_batches (
        batch_id String, profile String, voucher_ids Array(String), created_at_ms Int64, content String,
        file_name String
    ) ENGINE = ReplacingMergeTree ORDER BY batch_id""",
    # A voucher's lines are derived from each inserted voucher row by ClickHouse (C++, ~11 µs
    # of CPU a voucher against ~42 µs to build and insert them from Python: bench/README.md,
    # "Finance, third stop"): the follower writes a voucher once, as its document. A new
    # version of a voucher derives the same lines again, which collapse (the same key).
    # Lines stored before the view stay as they are.
    """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.voucher_lines_mv TO {db}.voucher_lines AS
    SELECT voucher_id, ln.line_no AS line_no, company, at_ms, ln.account AS account, ln.role AS role,
        toDecimal128(ln.debit, 6) AS debit, toDecimal128(ln.credit, 6) AS credit,
        JSONExtractString(doc, 'currency') AS currency, ln.sku AS sku, ln.lot_id AS lot_id
    FROM {db}.vouchers
    ARRAY JOIN JSONExtract(doc, 'lines', 'Array(Tuple(line_no UInt16, account String, role String, debit String,
        credit String, sku String, lot_id String))') AS ln""",
)
VOUCHER_COLUMNS = ["voucher_id", "version", "company", "kind", "state", "at_ms", "reversal_of", "keys", "doc"]
BASELINE_COLUMNS = ["doc_key", "baseline", "at_ms"]
VALUATION_COLUMNS = ["company", "sku", "lot_id", "event_id", "at_ms", "qty", "value", "voucher_id"]
STATE_COLUMNS = ["kind", "key", "seq", "doc"]
# The column types of the follower's inserts, as SCHEMA declares them: given, clickhouse-connect
# does not ask for them (a DESCRIBE TABLE query before every insert, ~1–1.5 ms of chDB CPU each,
# three per commit). tests/contract/test_finance_store_chdb.py checks them against the tables.
COLUMN_TYPES = {
    "vouchers": [
        "String",
        "UInt32",
        "LowCardinality(String)",
        "LowCardinality(String)",
        "LowCardinality(String)",
        "Int64",
        "String",
        "Array(String)",
        "String",
    ],
    "valuations": [
        "LowCardinality(String)",
        "String",
        "String",
        "String",
        "Int64",
        "Int64",
        "Decimal(38, 6)",
        "String",
    ],
    "ledger_state": ["LowCardinality(String)", "String", "UInt64", "String"],
    "baselines": ["String", "LowCardinality(String)", "Int64"],
}
_INSERT = {"insert_deduplicate": 0}  # rows are keyed: a repeat collapses on merge and under FINAL


@dataclass(frozen=True, slots=True)
class FinanceStoreConfig:
    dsn: str  # chdb:///abs/path (embedded, history's path) or http(s)://user:pass@host:8123
    database: str = "lotwise_finance"
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        check_database_name(self.database)


def _voucher_row(v: Voucher) -> list[Any]:
    doc = _json(voucher_to_doc(v))
    return [v.voucher_id, v.version, v.company, v.kind, v.state, v.at_ms, v.reversal_of, sorted(source_keys(v)), doc]


def _json(value: Any) -> str:
    # orjson: compact UTF-8 like json.dumps(separators=(",", ":"), ensure_ascii=False), ~10× faster
    return orjson.dumps(value).decode()


def _state_rows(checkpoint: Checkpoint) -> list[list[Any]]:
    seq, state = time.time_ns(), checkpoint.state
    rows = [["position", _json([p["company"], p["sku"]]), seq, _json(p)] for p in state["positions"]]
    rows += [["sale", _json(r[:4]), seq, _json(r)] for r in state["sales"]]
    rows += [["grni", _json(r[:2]), seq, _json(r)] for r in state["grni"]]
    rows.append(["transit", "", seq, _json(state["transit"])])
    rows.append(["meta", "", seq, _json({"position": checkpoint.position, "documents": checkpoint.documents})])
    return rows


def _columns(rows: list[list[Any]], width: int) -> list[list[Any]]:
    """Row lists → column lists: clickhouse-connect writes columns without a per-row pass."""
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def _insert(client: Client, table: str, rows: list[list[Any]], columns: list[str]) -> None:
    """`table` is `<db>.<name>`; a name COLUMN_TYPES knows is written without a DESCRIBE first."""
    client.insert(
        table,
        _columns(rows, len(columns)),
        column_names=columns,
        column_type_names=COLUMN_TYPES.get(table.rsplit(".", 1)[-1]),
        column_oriented=True,
        settings=_INSERT,
    )


class ClickHouseFinanceStore:
    def __init__(self, config: FinanceStoreConfig, client: Client) -> None:
        self.config = config
        self._db = config.database
        self._client = client
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lotwise-finance")
        self._closed = False

    async def _run(self, fn: Callable[[], _T]) -> _T:
        if self._closed:
            raise Unavailable("the finance store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._thread, fn), self.config.timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(f"finance store did not answer within {self.config.timeout_s}s") from None
        except (OSError, ConnectionError) as exc:
            raise Unavailable(f"finance store unavailable: {exc}") from exc

    def _rows(self, sql: str, params: dict[str, Any] | None = None) -> list[Sequence[Any]]:
        return list(self._client.query(sql.replace("{db}", self._db), parameters=params or {}).result_rows)

    # ---- writes ----

    async def load_checkpoint(self) -> Checkpoint | None:
        rows = await self._run(lambda: self._rows("SELECT kind, doc FROM {db}.ledger_state FINAL"))
        parts: dict[str, list[Any]] = {"position": [], "sale": [], "grni": [], "transit": [], "meta": []}
        for kind, doc in rows:
            parts[str(kind)].append(json.loads(doc))
        if not parts["meta"]:
            return None
        state = {
            "format": STATE_FORMAT,
            "positions": parts["position"],
            "sales": parts["sale"],
            "grni": parts["grni"],
            "transit": parts["transit"][0] if parts["transit"] else [],
        }
        meta = parts["meta"][0]
        # "documents" arrived with the documents log: a checkpoint from before it applied none
        return Checkpoint(int(meta["position"]), state, int(meta.get("documents", 0)))

    async def commit(
        self,
        checkpoint: Checkpoint,
        vouchers: Sequence[Voucher],
        valuations: Sequence[Valuation],
        baselines: Sequence[Baseline] = (),
    ) -> None:
        def write() -> None:
            db, c = self._db, self._client
            if vouchers:  # their lines follow (voucher_lines_mv)
                _insert(c, f"{db}.vouchers", [_voucher_row(v) for v in vouchers], VOUCHER_COLUMNS)
            if valuations:
                rows = [
                    [r.company, r.sku, r.lot_id, r.event_id, r.at_ms, r.qty, r.value, r.voucher_id] for r in valuations
                ]
                _insert(c, f"{db}.valuations", rows, VALUATION_COLUMNS)
            if baselines:  # the last of a document and baseline wins: only it is written (a later
                # insert wins over an earlier one under FINAL; rows of one block have no order)
                latest = {(b.doc_key, b.baseline): b for b in baselines}
                rows = [[b.doc_key, b.baseline, b.at_ms] for b in latest.values()]
                _insert(c, f"{db}.baselines", rows, BASELINE_COLUMNS)
            _insert(c, f"{db}.ledger_state", _state_rows(checkpoint), STATE_COLUMNS)

        await self._run(write)

    async def put_voucher(self, voucher: Voucher) -> None:
        row = _voucher_row(voucher)
        await self._run(
            lambda: self._client.insert(f"{self._db}.vouchers", [row], column_names=VOUCHER_COLUMNS, settings=_INSERT)
        )

    # ---- reads ----

    async def get_voucher(self, voucher_id: str) -> Voucher | None:
        rows = await self._run(
            lambda: self._rows("SELECT doc FROM {db}.vouchers FINAL WHERE voucher_id = {id:String}", {"id": voucher_id})
        )
        return voucher_from_doc(json.loads(rows[0][0])) if rows else None

    async def list_vouchers(self, q: VoucherQuery) -> VoucherPage:
        check_voucher_query(q)
        where = ["at_ms >= {from_ms:Int64}"]
        params: dict[str, Any] = {"from_ms": q.from_ms, "limit": q.page_size + 1}
        if states := wanted_states(q):
            where.append("has({states:Array(String)}, state)")
            params["states"] = sorted(states)
        if q.company:
            where.append("company = {company:String}")
            params["company"] = q.company
        if q.to_ms:
            where.append("at_ms < {to_ms:Int64}")
            params["to_ms"] = q.to_ms
        token = parse_page_token(q.page_token) if q.page_token else None
        if token is not None:
            where.append("(at_ms, voucher_id) > ({t_at:Int64}, {t_id:String})")
            params["t_at"], params["t_id"] = token
        sql = (
            f"SELECT doc FROM {{db}}.vouchers FINAL WHERE {' AND '.join(where)} "
            "ORDER BY at_ms, voucher_id LIMIT {limit:UInt32}"
        )
        rows = await self._run(lambda: self._rows(sql, params))
        found = [voucher_from_doc(json.loads(r[0])) for r in rows]
        page = tuple(found[: q.page_size])
        return VoucherPage(page, page_token_of(page[-1]) if len(found) > q.page_size else "")

    async def vouchers_by_source(self, key: str) -> list[Voucher]:
        sql = "SELECT doc FROM {db}.vouchers FINAL WHERE has(keys, {key:String}) ORDER BY at_ms, voucher_id LIMIT 10000"
        rows = await self._run(lambda: self._rows(sql, {"key": key}))
        return [voucher_from_doc(json.loads(r[0])) for r in rows]

    async def valuation(self, q: ValuationQuery) -> list[LotValuation]:
        where, params = ["1"], {}
        for name in ("company", "sku", "lot_id"):
            if getattr(q, name):
                where.append(f"{name} = {{{name}:String}}")
                params[name] = getattr(q, name)
        if q.as_of_ms:
            where.append("at_ms <= {as_of:Int64}")
            params["as_of"] = q.as_of_ms
        sql = (
            "SELECT company, sku, lot_id, sum(qty), sum(value) FROM {db}.valuations FINAL "
            f"WHERE {' AND '.join(where)} "
            "GROUP BY company, sku, lot_id HAVING sum(qty) != 0 OR sum(value) != 0 ORDER BY company, sku, lot_id"
        )
        rows = await self._run(lambda: self._rows(sql, params))
        return [LotValuation(str(c), str(s), str(lot), int(qty), Decimal(value)) for c, s, lot, qty, value in rows]

    # ---- baselines and export batches ----

    async def put_baseline(self, baseline: Baseline) -> None:
        row = [baseline.doc_key, baseline.baseline, baseline.at_ms]
        await self._run(
            lambda: self._client.insert(f"{self._db}.baselines", [row], column_names=BASELINE_COLUMNS, settings=_INSERT)
        )

    async def baselines(self, doc_key: str) -> list[Baseline]:
        sql = "SELECT doc_key, baseline, at_ms FROM {db}.baselines FINAL WHERE doc_key = {doc:String} ORDER BY baseline"
        rows = await self._run(lambda: self._rows(sql, {"doc": doc_key}))
        return [Baseline(str(d), str(b), int(at)) for d, b, at in rows]

    async def get_export_batch(self, batch_id: str) -> ExportBatch | None:
        sql = (
            "SELECT batch_id, profile, voucher_ids, created_at_ms, content, file_name "
            "FROM {db}.export_batches FINAL WHERE batch_id = {id:String}"
        )

        def read() -> list[Sequence[Any]]:
            result = self._client.query(
                sql.replace("{db}", self._db), parameters={"id": batch_id}, query_formats={"String": "bytes"}
            )
            return list(result.result_rows)

        rows = await self._run(read)
        if not rows:
            return None
        bid, profile, ids, at, content, name = rows[0]
        text = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
        return ExportBatch(text(bid), text(profile), tuple(text(i) for i in ids), int(at), bytes(content), text(name))

    async def put_export_batch(self, batch: ExportBatch) -> None:
        row = [
            batch.batch_id,
            batch.profile,
            list(batch.voucher_ids),
            batch.created_at_ms,
            batch.content,
            batch.file_name,
        ]
        cols = ["batch_id", "profile", "voucher_ids", "created_at_ms", "content", "file_name"]
        await self._run(
            lambda: self._client.insert(f"{self._db}.export_batches", [row], column_names=cols, settings=_INSERT)
        )

    async def exported_voucher_ids(self) -> set[str]:
        rows = await self._run(
            lambda: self._rows("SELECT DISTINCT arrayJoin(voucher_ids) FROM {db}.export_batches FINAL")
        )
        return {str(r[0]) for r in rows}

    async def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[Sequence[Any]]:
        """Read-only SQL for operations and tests; `{db}` is the finance database."""
        return await self._run(lambda: self._rows(sql, parameters))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._client.close)
        self._thread.shutdown(wait=False)


async def open_finance_store(config: FinanceStoreConfig) -> ClickHouseFinanceStore:
    def connect() -> Client:
        client = _connect(HistoryStoreConfig(dsn=config.dsn, database=config.database))
        client.command(f"CREATE DATABASE IF NOT EXISTS {config.database}")
        for statement in SCHEMA:
            client.command(statement.replace("{db}", config.database))
        return client

    try:
        client = await asyncio.wait_for(asyncio.to_thread(connect), config.timeout_s + 60)
    except (OSError, ConnectionError, TimeoutError) as exc:
        raise Unavailable(f"finance store unavailable: {exc}") from exc
    log.info("finance store open", database=config.database)
    return ClickHouseFinanceStore(config, client)
