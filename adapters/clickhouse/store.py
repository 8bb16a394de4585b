"""The HistoryStore port on ClickHouse, embedded (chDB) or a server (DESIGN.md §8, §11).

One code path, one SQL dialect: clickhouse-connect picks the backend from the DSN —
`chdb:///path` runs the real ClickHouse engine inside this process (clickhouse-connect
≥ 1.x ships a chDB backend behind the same Client API; its chDB client is synchronous
only), `http(s)://user:pass@host:8123` talks to a server.

Threads, because the client is synchronous: one writer client on its own thread (the
sink's inserts are serialized anyway) and `readers` query clients, each used by one
query at a time, so a slow analytical query never holds up the sink and vice versa.
chDB releases the GIL while it works, so the event loop keeps running meanwhile.

chDB allows one engine — one data path — per process, and one process per path (a file
lock). The store that opens a `chdb://` path owns it for the life of the process; tests
and tools that need isolation use a database each on the same path, not another path.
Other processes (the CLI) ask the owner over gRPC (lotwise.v1.History).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import structlog
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError, StreamFailureError

from adapters.clickhouse import queries
from adapters.clickhouse.schema import apply_rollup_ttl, check_database_name, migrate
from engine.domain.errors import DeadlineExceeded, Overloaded, Unavailable
from engine.domain.history import (
    BalanceQuery,
    BalanceRow,
    DayQty,
    ExpiryQuery,
    Exposure,
    HistoryBatch,
    HistoryRecord,
    LotTrace,
    MovementPage,
    MovementQuery,
    PairTotal,
    SeriesQuery,
    TraceQuery,
    TurnoverQuery,
    TurnoverRow,
    day_span,
    iso_day,
    page_of,
    turnover_row,
    validate_balance,
    validate_expiry,
    validate_movements,
    validate_series,
    validate_trace,
    validate_turnover,
)

log = structlog.get_logger("lotwise.history.store")

_T = TypeVar("_T")
Client = Any  # clickhouse_connect.driver.client.Client (untyped enough that Any is honest)

_TIMEOUT_EXCEEDED = 159  # ClickHouse error code for max_execution_time
_TRANSIENT = (OperationalError, StreamFailureError, OSError, ConnectionError)


@dataclass(frozen=True, slots=True)
class HistoryStoreConfig:
    """Where history lives and the bounds of talking to it."""

    dsn: str  # chdb:///abs/path (embedded) or http(s)://user:pass@host:8123
    database: str = "lotwise"
    readers: int = 2  # concurrent queries (a client and a thread each)
    max_waiting_queries: int = 64  # beyond it a query is refused RESOURCE_EXHAUSTED
    query_timeout_s: float = 30.0  # ClickHouse cancels a query past it (max_execution_time)
    insert_timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    rollup_ttl_days: int = 0  # 0: keep the daily roll-ups forever (schema docstring: retention)

    def __post_init__(self) -> None:
        check_database_name(self.database)
        scheme = urlparse(self.dsn).scheme
        if scheme not in ("chdb", "http", "https"):
            raise ValueError(f"history DSN {self.dsn!r}: use chdb:///path or http(s)://host:8123")
        for name in ("readers", "max_waiting_queries"):
            if getattr(self, name) <= 0:
                raise ValueError(f"HistoryStoreConfig.{name} must be positive")

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb:")


def chdb_dsn(path: Path | str) -> str:
    return f"chdb://{Path(path).resolve()}"


def _connect(config: HistoryStoreConfig) -> Client:
    import clickhouse_connect

    if config.embedded:
        location = urlparse(config.dsn).path
        if location and location not in ("memory", ":memory:"):
            os.makedirs(location, exist_ok=True)
        try:
            return clickhouse_connect.get_client(dsn=config.dsn)
        except Exception as exc:
            # chDB: one engine path per process, one process per path.
            raise Unavailable(
                f"cannot open the embedded history at {config.dsn} ({exc}); a chdb:// path is owned by one "
                "process, and a process owns one path: ask the owner over gRPC, or use another database"
            ) from exc
    return clickhouse_connect.get_client(
        dsn=config.dsn,
        connect_timeout=config.connect_timeout_s,
        send_receive_timeout=max(config.query_timeout_s, config.insert_timeout_s) + 5,
        autogenerate_session_id=False,  # no server-side session: any client may serve any call
    )


class ClickHouseHistoryStore:
    """HistoryStore on ClickHouse (chDB or server); open with `await open_store(config)`."""

    def __init__(
        self,
        config: HistoryStoreConfig,
        writer: Client,
        readers: list[Client],
        read_settings: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self._db = config.database
        self._writer = writer
        self._all_readers = readers
        self._readers: asyncio.Queue[Client] = asyncio.Queue()
        for reader in readers:
            self._readers.put_nowait(reader)
        self._waiting = 0
        # A thread for the writer and one per reader: a slow query never delays an insert.
        self._write_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lotwise-history-w")
        self._read_threads = ThreadPoolExecutor(max_workers=len(readers), thread_name_prefix="lotwise-history-r")
        self._read_settings = {
            **(queries.READ_SETTINGS if read_settings is None else read_settings),
            "max_execution_time": max(1, int(config.query_timeout_s)),
        }
        self._closed = False
        # The newest journal position stored (-1: not read yet). A batch past it is not
        # stored (the sink inserts in journal order): no look-up for it (bench/README.md,
        # "Followers that cost little").
        self._newest_position = -1

    @property
    def database(self) -> str:
        return self._db

    # ---- plumbing ----

    async def _in_thread(self, fn: Callable[[], _T], timeout_s: float, *, write: bool = False) -> _T:
        if self._closed:
            raise Unavailable("the history store is closed")
        loop = asyncio.get_running_loop()
        threads = self._write_thread if write else self._read_threads
        try:
            return await asyncio.wait_for(loop.run_in_executor(threads, fn), timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(f"history store did not answer within {timeout_s}s") from None
        except _TRANSIENT as exc:
            raise Unavailable(f"history store unavailable: {type(exc).__name__}: {exc}") from exc
        except DatabaseError as exc:
            if getattr(exc, "code", None) == _TIMEOUT_EXCEEDED or "TIMEOUT_EXCEEDED" in str(exc):
                raise DeadlineExceeded(f"history query exceeded {self.config.query_timeout_s}s") from exc
            raise

    async def _read(self, sql: queries.Sql) -> list[Sequence[Any]]:
        """Run a query on a free reader; bounded waiting (RESOURCE_EXHAUSTED beyond it)."""
        if self._waiting >= self.config.max_waiting_queries:
            raise Overloaded("history queries", self.config.max_waiting_queries)
        self._waiting += 1
        try:
            client = await asyncio.wait_for(self._readers.get(), self.config.query_timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(f"no history reader free within {self.config.query_timeout_s}s") from None
        finally:
            self._waiting -= 1
        settings = self._read_settings
        try:
            result = await self._in_thread(
                lambda: client.query(sql.text, parameters=sql.params, settings=settings),
                self.config.query_timeout_s + 5,
            )
            return list(result.result_rows)
        finally:
            self._readers.put_nowait(client)

    # ---- writes ----

    async def insert(self, batch: HistoryBatch) -> int:
        """Store the batch's movements once: journal batches stored already (a redelivery)
        are skipped, and a retry of this very batch carries the same token, which ClickHouse
        deduplicates in `movements` *and* its views. Returns the movements written."""
        return await self._in_thread(lambda: self._insert_now(batch), self.config.insert_timeout_s, write=True)

    def _insert_now(self, batch: HistoryBatch) -> int:
        db, writer = self._db, self._writer
        records = self._not_stored(batch) if batch.records else ()
        if batch.skus:
            rows = [[s.sku, s.opened_shelf_life_days, batch.skus_at_ms] for s in batch.skus]
            writer.insert(f"{db}.skus", rows, column_names=queries.SKU_COLUMNS, settings=_dedup(batch.token, "skus"))
        if records:
            # A token must name the content: when stored batches were dropped, say so.
            token = batch.token if len(records) == len(batch.records) else _narrowed(batch.token, records)
            writer.insert(
                f"{db}.movements",
                queries.movement_columns(records),
                column_names=queries.MOVEMENT_COLUMNS,
                column_oriented=True,
                settings=_dedup(token, "movements"),
            )
            newest = max(r.position for r in records)
            self._newest_position = max(self._newest_position, newest)
        return len(records)

    def _not_stored(self, batch: HistoryBatch) -> tuple[HistoryRecord, ...]:
        """The batch's records less the journal batches stored already. Looked up only when
        some may be: a batch flagged redelivered, or one reaching back to positions stored
        (a consumer reset, another process's inserts). On the writer's thread."""
        db, writer, records = self._db, self._writer, batch.records
        if self._newest_position < 0:
            [(newest,)] = writer.query(queries.newest_position_sql(db).text).result_rows
            self._newest_position = int(newest or 0)
        if not batch.redelivered and min(r.position for r in records) > self._newest_position:
            return records
        sql = queries.stored_batches_sql(db, records)
        stored = {(str(shard), int(seq)) for shard, seq in writer.query(sql.text).result_rows}
        return tuple(r for r in records if (r.shard, r.batch_seq) not in stored) if stored else records

    # ---- queries ----

    async def balance_as_of(self, q: BalanceQuery) -> list[BalanceRow]:
        validate_balance(q)
        return queries.balance_rows(q, await self._read(queries.balance_sql(self._db, q)))

    async def movements(self, q: MovementQuery) -> MovementPage:
        validate_movements(q)
        rows = await self._read(queries.movements_sql(self._db, q))
        return page_of([queries.record_from_row(r) for r in rows], q.page_size)

    async def consumption(self, q: SeriesQuery) -> list[DayQty]:
        validate_series(q)
        span = day_span(q.from_ms, q.to_ms)
        rows = await self._read(queries.consumption_sql(self._db, span.start, span.stop - 1, q.sku, q.site))
        by_day = {int(day): int(qty) for day, qty in rows}
        return [DayQty(iso_day(day), by_day.get(day, 0)) for day in span]

    async def turnover(self, q: TurnoverQuery) -> list[TurnoverRow]:
        validate_turnover(q)
        span = day_span(q.from_ms, q.to_ms)
        rows = await self._read(queries.turnover_sql(self._db, q, span.start, span.stop - 1))
        return [turnover_row(sku, site, len(span), int(n), int(c)) for sku, site, n, c in rows]

    async def near_expiry(self, q: ExpiryQuery) -> Exposure:
        validate_expiry(q)
        return queries.exposure_result(await self._read(queries.exposure_sql(self._db, q)), q.limit)

    async def lot_trace(self, q: TraceQuery) -> LotTrace:
        validate_trace(q)
        stops, docs = await asyncio.gather(
            self._read(queries.trace_stops_sql(self._db, q)), self._read(queries.trace_documents_sql(self._db, q))
        )
        return LotTrace(q.lot_id, tuple(queries.trace_stops(stops)), tuple(queries.trace_documents(docs)))

    async def totals(self, limit: int = 1_000_000) -> list[PairTotal]:
        return queries.totals_rows(await self._read(queries.totals_sql(self._db, limit)))

    # ---- operations ----

    async def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[Sequence[Any]]:
        """Any read-only SQL (ops, tests, the bench); `{db}` is replaced by the database."""
        return await self._read(queries.Sql(sql.replace("{db}", self._db), dict(parameters or {})))

    async def command(self, sql: str, timeout_s: float = 600.0) -> None:
        """A statement on the writer (bulk loads, maintenance); `{db}` is the database."""
        text = sql.replace("{db}", self._db)
        await self._in_thread(lambda: self._writer.command(text), timeout_s, write=True)

    async def ping(self) -> bool:
        try:
            await self.query("SELECT 1")
        except Exception:
            return False
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close_all() -> None:
            for client in (self._writer, *self._all_readers):
                with contextlib.suppress(Exception):
                    client.close()

        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(loop.run_in_executor(self._write_thread, close_all), 30.0)
        self._write_thread.shutdown(wait=False, cancel_futures=True)
        self._read_threads.shutdown(wait=False, cancel_futures=True)


def _narrowed(token: str, records: Sequence[HistoryRecord]) -> str:
    if not token:
        return ""
    digest = hashlib.blake2b(digest_size=8)
    for shard, seq in sorted({(r.shard, r.batch_seq) for r in records}):
        digest.update(f"{shard}\x00{seq}\x01".encode())
    return f"{token}~{digest.hexdigest()}"


def _dedup(token: str, table: str) -> dict[str, Any]:
    settings: dict[str, Any] = {"insert_deduplicate": 1, "deduplicate_blocks_in_dependent_materialized_views": 1}
    if token:
        settings["insert_deduplication_token"] = f"{token}/{table}"
    return settings


async def open_store(config: HistoryStoreConfig) -> ClickHouseHistoryStore:
    """Connect (writer + readers), create or migrate the schema, apply retention."""
    started = time.perf_counter()

    def connect_all() -> tuple[Client, list[Client], int, dict[str, Any]]:
        writer = _connect(config)
        readers: list[Client] = []
        try:
            version = migrate(writer, config.database)
            apply_rollup_ttl(writer, config.database, config.rollup_ttl_days)
            settings = _supported(writer, queries.READ_SETTINGS)
            readers = [_connect(config) for _ in range(config.readers)]
        except BaseException:
            for client in (writer, *readers):
                with contextlib.suppress(Exception):
                    client.close()
            raise
        return writer, readers, version, settings

    try:
        writer, readers, version, settings = await asyncio.wait_for(
            asyncio.to_thread(connect_all), config.connect_timeout_s + 60
        )
    except (*_TRANSIENT, TimeoutError) as exc:
        raise Unavailable(f"history store at {_redacted(config.dsn)} unavailable: {exc}") from exc
    log.info(
        "history store open",
        dsn=_redacted(config.dsn),
        database=config.database,
        schema_version=version,
        open_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return ClickHouseHistoryStore(config, writer, readers, settings)


def _supported(client: Client, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings this server knows (older servers lack some read optimisations)."""
    names = client.query(
        "SELECT name FROM system.settings WHERE name IN {names:Array(String)}", parameters={"names": list(settings)}
    )
    known = {row[0] for row in names.result_rows}
    return {name: value for name, value in settings.items() if name in known}


def _redacted(dsn: str) -> str:
    """The DSN without its password, for logs."""
    parsed = urlparse(dsn)
    if parsed.password:
        return dsn.replace(f":{parsed.password}@", ":***@")
    return dsn
