"""The history schema, created and migrated by the engine (DESIGN.md §8, §11).

Migrations are numbered and recorded in `schema_migrations`; each statement is
idempotent (IF NOT EXISTS), so a start that died halfway through a migration simply runs
it again. A migration is never edited once released: changes are new migrations.

Tables (one database per engine namespace):
- `movements` — one row per Movement, the unit of history. ReplacingMergeTree ordered by
  (sku, site, seq): a movement's identity (seq is per cell and gap-free, and stays with
  the cell when it moves between shards), so a row stored twice — a retried insert whose
  first outcome was unknown, a batch redelivered after a sink crash — collapses into one,
  and queries read it with FINAL so they never count it twice before the merge. The same
  order serves the hot queries: a pair's or an sku's movements are one contiguous range,
  in time order (seq grows with time within a pair). Monthly partitions by movement time;
  bloom-filter indexes find a lot, a document, a hold or a request without a full scan.
  Each row carries every bucket's signed delta (src −qty, dst +qty, held ±), so any
  balance is a plain sum.
- `journal_batches` (migrations 1–3; dropped by 4) — which journal batches were stored
  (materialized view); a redelivery check now reads `movements`.
- `lots` — the lot dates recorded by receipts (materialized view over movements).
- `skus` — the catalog's opened shelf life, for effective expiry (written by the sink).
- `holds` (migrations 1–3; dropped by 4, nothing read it) — one row per (hold, sku, site).
- `daily_consumption`, `daily_balance` — roll-ups per (sku, site, UTC day)
  (materialized views into SummingMergeTree; read with sum() as merges are eventual).
- `site_balance` (site, status, owner), `lot_balance` (site, sku, lot) — every movement's
  quant deltas summed: the balance *now*; an as-of T over many pairs is this less the
  movements after T (migration 3, issue 17). `site_daily_consumption` (site, UTC day) —
  consumption over every sku without reading every pair's roll-up rows.

Every view counts each movement once because an insert never writes a movement twice:
it skips the journal batches `movements` already holds (a redelivery after a sink crash:
looked up whenever a batch may be stored already), and a retried insert (its first
outcome unknown) carries the same
`insert_deduplication_token`, which ClickHouse applies to the table *and* its views
(`non_replicated_deduplication_window`). `movements` itself is also keyed, and read with
FINAL, so even a duplicate that slipped past both would not be counted twice there.

Retention (TTL) options:
- movements: kept forever by default (~30–60 bytes per movement compressed). Never
  DELETE them by TTL: a balance is the sum of *all* movements up to T. On a server with
  tiered storage, age them to a cold volume instead:
  `ALTER TABLE movements MODIFY TTL at + INTERVAL 1 YEAR TO VOLUME 'cold'`.
- roll-ups: `rollup_ttl_days` (HistoryStoreConfig) sets `TTL day + INTERVAL n DAY DELETE`
  on daily_consumption and daily_balance; series and turnover then reach back n days
  (turnover's opening balance comes from older days, so keep n above the longest window).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

log = structlog.get_logger("lotwise.history.schema")

_DB_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
DEDUP_WINDOW = 10_000  # inserts remembered per table for token deduplication
# fsync each inserted part: the sink acknowledges a journal batch only after its insert,
# so the insert must survive a power cut, not just a process crash.
_DURABLE = f"non_replicated_deduplication_window = {DEDUP_WINDOW}, fsync_after_insert = 1, fsync_part_directory = 1"


class Client(Protocol):
    """What the schema needs of a clickhouse-connect client."""

    def command(self, cmd: str, parameters: Any = None, settings: Any = None) -> Any: ...

    def query(self, query: str, parameters: Any = None, settings: Any = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]  # each idempotent; `{db}` is the database


# What migration 3's roll-ups sum, from `{source}` (the table for the backfill, FINAL; the
# inserted block for the view). A movement's quants: src, dst (qty) and held (held); the
# external buckets (@supplier, @customer, ...) have no status and are not in the site.
LEGS = """ARRAY JOIN arrayFilter(l -> l.2 != '', [
        tuple(src_bin, src_status, src_owner, src_delta, toInt64(0)),
        tuple(dst_bin, dst_status, dst_owner, dst_delta, toInt64(0)),
        tuple(held_bin, held_status, held_owner, toInt64(0), held_delta)]) AS leg"""
_SITE_BALANCE_SELECT = f"""
    SELECT site, leg.2 AS status, leg.3 AS owner, sum(leg.4) AS qty, sum(leg.5) AS held
    FROM {{source}}
    {LEGS}
    GROUP BY site, status, owner"""
_LOT_BALANCE_SELECT = f"""
    SELECT site, sku, lot_id, sum(leg.4) AS qty, sum(leg.5) AS held
    FROM {{source}}
    {LEGS}
    GROUP BY site, sku, lot_id"""
_SITE_CONSUMPTION_SELECT = """
    SELECT site, toDate(at, 'UTC') AS day, sum(qty) AS consumed
    FROM {source}
    WHERE dst_bucket = '@customer'
    GROUP BY site, day"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "movements, lots, skus, holds, daily roll-ups",
        (
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.movements
            (
                sku String,
                site LowCardinality(String),
                seq UInt64 COMMENT 'per (sku, site), gap-free from 1: with the pair, the movement''s identity',
                kind LowCardinality(String),
                lot_id String,
                qty Int64,
                src_bucket LowCardinality(String) COMMENT '"" = a quant of the site; else @supplier, @customer, ...',
                src_bin String,
                src_status LowCardinality(String),
                src_owner LowCardinality(String),
                src_delta Int64 COMMENT 'the source bucket''s signed change: -qty',
                dst_bucket LowCardinality(String),
                dst_bin String,
                dst_status LowCardinality(String),
                dst_owner LowCardinality(String),
                dst_delta Int64 COMMENT 'the destination bucket''s signed change: +qty',
                held_bin String,
                held_status LowCardinality(String) COMMENT '"" = the movement changes no held amount',
                held_owner LowCardinality(String),
                held_delta Int64,
                hold_id String,
                request_id String,
                doc_ref String,
                at_ms Int64 COMMENT 'engine time, epoch ms UTC',
                hold_expires_at_ms Int64,
                has_lot UInt8 COMMENT '1 on a lot''s first receipt into the cell: the lot_* dates are set',
                lot_received_at_ms Int64,
                lot_expires_at_ms Int64,
                lot_opened_at_ms Int64,
                shard LowCardinality(String),
                batch_seq UInt64,
                position UInt64 COMMENT 'the journal message''s stream sequence',
                at DateTime64(3, 'UTC') MATERIALIZED fromUnixTimestamp64Milli(at_ms, 'UTC'),
                INDEX ix_lot lot_id TYPE bloom_filter(0.01) GRANULARITY 1,
                INDEX ix_doc doc_ref TYPE bloom_filter(0.01) GRANULARITY 1,
                INDEX ix_hold hold_id TYPE bloom_filter(0.01) GRANULARITY 1,
                INDEX ix_request request_id TYPE bloom_filter(0.01) GRANULARITY 1,
                INDEX ix_at at_ms TYPE minmax GRANULARITY 1
            )
            ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(at)
            ORDER BY (sku, site, seq)
            SETTINGS {_DURABLE}
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.journal_batches
            (
                shard LowCardinality(String),
                batch_seq UInt64,
                position UInt64,
                at_ms Int64,
                movements UInt64
            )
            ENGINE = ReplacingMergeTree
            ORDER BY (shard, batch_seq)
            SETTINGS {_DURABLE}
            """,
            """
            CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.journal_batches_mv TO {db}.journal_batches AS
            SELECT shard, batch_seq, any(position) AS position, min(at_ms) AS at_ms, count() AS movements
            FROM {db}.movements
            GROUP BY shard, batch_seq
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.lots
            (
                sku String,
                site LowCardinality(String),
                lot_id String,
                received_at_ms Int64,
                expires_at_ms Int64,
                opened_at_ms Int64
            )
            ENGINE = ReplacingMergeTree
            ORDER BY (sku, site, lot_id)
            SETTINGS {_DURABLE}
            """,
            """
            CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.lots_mv TO {db}.lots AS
            SELECT sku, site, lot_id, lot_received_at_ms AS received_at_ms, lot_expires_at_ms AS expires_at_ms,
                   lot_opened_at_ms AS opened_at_ms
            FROM {db}.movements
            WHERE has_lot = 1
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.skus
            (
                sku String,
                opened_shelf_life_days Int32,
                updated_at_ms Int64
            )
            ENGINE = ReplacingMergeTree(updated_at_ms)
            ORDER BY sku
            SETTINGS {_DURABLE}
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.holds
            (
                hold_id String,
                sku String,
                site LowCardinality(String),
                created_at_ms SimpleAggregateFunction(min, Int64),
                expires_at_ms SimpleAggregateFunction(max, Int64),
                reserved SimpleAggregateFunction(sum, Int64),
                committed SimpleAggregateFunction(sum, Int64),
                released SimpleAggregateFunction(sum, Int64),
                expired SimpleAggregateFunction(sum, Int64),
                cut SimpleAggregateFunction(sum, Int64),
                last_at_ms SimpleAggregateFunction(max, Int64)
            )
            ENGINE = AggregatingMergeTree
            ORDER BY (hold_id, sku, site)
            SETTINGS {_DURABLE}
            """,
            """
            CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.holds_mv TO {db}.holds AS
            SELECT hold_id, sku, site,
                   min(if(kind = 'reserve', at_ms, 9223372036854775807)) AS created_at_ms,
                   max(hold_expires_at_ms) AS expires_at_ms,
                   sumIf(held_delta, kind = 'reserve') AS reserved,
                   sumIf(qty, kind = 'commit') AS committed,
                   sumIf(-held_delta, kind = 'release') AS released,
                   sumIf(-held_delta, kind = 'expire') AS expired,
                   sumIf(-held_delta, kind = 'adjust') AS cut,
                   max(at_ms) AS last_at_ms
            FROM {db}.movements
            WHERE hold_id != ''
            GROUP BY hold_id, sku, site
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.daily_consumption
            (
                sku String,
                site LowCardinality(String),
                day Date,
                consumed Int64 COMMENT 'everything issued to customers',
                committed Int64 COMMENT 'of which: committed holds',
                consumed_direct Int64 COMMENT 'of which: scan-takes without a hold',
                discrepancy Int64 COMMENT 'of which: taken beyond the books',
                movements UInt64
            )
            ENGINE = SummingMergeTree
            ORDER BY (sku, site, day)
            SETTINGS {_DURABLE}
            """,
            """
            CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.daily_consumption_mv TO {db}.daily_consumption AS
            SELECT sku, site, toDate(at, 'UTC') AS day,
                   sum(qty) AS consumed,
                   sumIf(qty, kind = 'commit') AS committed,
                   sumIf(qty, kind = 'consume') AS consumed_direct,
                   sumIf(qty, kind = 'discrepancy') AS discrepancy,
                   count() AS movements
            FROM {db}.movements
            WHERE dst_bucket = '@customer'
            GROUP BY sku, site, day
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.daily_balance
            (
                sku String,
                site LowCardinality(String),
                day Date,
                qty_delta Int64 COMMENT 'net change of the qty inside the site that day',
                held_delta Int64,
                received Int64,
                consumed Int64,
                movements UInt64
            )
            ENGINE = SummingMergeTree
            ORDER BY (sku, site, day)
            SETTINGS {_DURABLE}
            """,
            """
            CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.daily_balance_mv TO {db}.daily_balance AS
            SELECT sku, site, toDate(at, 'UTC') AS day,
                   sum(if(src_bucket = '', src_delta, 0) + if(dst_bucket = '', dst_delta, 0)) AS qty_delta,
                   sum(held_delta) AS held_delta,
                   sumIf(qty, src_bucket = '@supplier') AS received,
                   sumIf(qty, dst_bucket = '@customer') AS consumed,
                   count() AS movements
            FROM {db}.movements
            GROUP BY sku, site, day
            """,
        ),
    ),
    Migration(
        2,
        "movement provenance: who counted, how sure, when it happened (issue 15)",
        (
            # Counts say who counted (rfid, cycle, recogniser) and how sure; a device's
            # offline op says when it happened on the device (business time). Rows written
            # before read '' / 0 / 0: "not said", as the journal's own defaults.
            "ALTER TABLE {db}.movements ADD COLUMN IF NOT EXISTS source LowCardinality(String) DEFAULT '' "
            "COMMENT 'counts: who counted (rfid, cycle, recogniser); \"\" = not a count'",
            "ALTER TABLE {db}.movements ADD COLUMN IF NOT EXISTS confidence Float64 DEFAULT 0 "
            "COMMENT 'counts: the counter''s confidence 0..1'",
            "ALTER TABLE {db}.movements ADD COLUMN IF NOT EXISTS business_at_ms Int64 DEFAULT 0 "
            "COMMENT 'a device''s offline op: when it happened there, epoch ms UTC; 0 = at_ms'",
        ),
    ),
    Migration(
        3,
        "roll-ups for the console's whole-estate pages: balances by site, status and owner, by lot; "
        "consumption by site and day (issue 17)",
        (
            # Balances *now* (every movement summed), so an as-of over many pairs reads these
            # small tables and subtracts only the movements after T (a time-bounded scan of
            # the newest partitions) instead of unrolling every movement ever stored.
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.site_balance
            (
                site LowCardinality(String),
                status LowCardinality(String),
                owner LowCardinality(String),
                qty Int64,
                held Int64
            )
            ENGINE = SummingMergeTree
            ORDER BY (site, status, owner)
            SETTINGS {_DURABLE}
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.lot_balance
            (
                site LowCardinality(String),
                sku String,
                lot_id String,
                qty Int64,
                held Int64
            )
            ENGINE = SummingMergeTree
            ORDER BY (site, sku, lot_id)
            SETTINGS {_DURABLE}
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.site_daily_consumption
            (
                site LowCardinality(String),
                day Date,
                consumed Int64
            )
            ENGINE = SummingMergeTree
            ORDER BY (site, day)
            SETTINGS {_DURABLE}
            """,
            # Existing history fills them once (the store migrates before its sink inserts
            # anything); a migration that died halfway starts them again from empty, then
            # the views keep them as movements arrive.
            "TRUNCATE TABLE IF EXISTS {db}.site_balance",
            "TRUNCATE TABLE IF EXISTS {db}.lot_balance",
            "TRUNCATE TABLE IF EXISTS {db}.site_daily_consumption",
            f"INSERT INTO {{db}}.site_balance {_SITE_BALANCE_SELECT.format(source='{db}.movements FINAL')}",
            f"INSERT INTO {{db}}.lot_balance {_LOT_BALANCE_SELECT.format(source='{db}.movements FINAL')}",
            f"INSERT INTO {{db}}.site_daily_consumption "
            f"{_SITE_CONSUMPTION_SELECT.format(source='{db}.movements FINAL')}",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.site_balance_mv TO {db}.site_balance AS "
            + _SITE_BALANCE_SELECT.format(source="{db}.movements"),
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.lot_balance_mv TO {db}.lot_balance AS "
            + _LOT_BALANCE_SELECT.format(source="{db}.movements"),
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.site_daily_consumption_mv TO {db}.site_daily_consumption AS "
            + _SITE_CONSUMPTION_SELECT.format(source="{db}.movements"),
        ),
    ),
    Migration(
        4,
        "two views fewer per insert: no journal_batches (a redelivery is looked up in movements), "
        "no holds (nothing read it)",
        (
            # Every view is a part, an fsync and merges on each insert (bench/README.md,
            # "Followers that cost little"). `journal_batches` served only the redelivery
            # check, which now reads `movements`, and only when a batch may be stored
            # already (flagged redelivered, or not past the newest position stored);
            # `holds` was written on every insert and read by nothing (a hold's history is
            # its movements: `movements` has a bloom filter on hold_id).
            "DROP VIEW IF EXISTS {db}.journal_batches_mv",
            "DROP TABLE IF EXISTS {db}.journal_batches",
            "DROP VIEW IF EXISTS {db}.holds_mv",
            "DROP TABLE IF EXISTS {db}.holds",
        ),
    ),
)

ROLLUP_TABLES = ("daily_consumption", "daily_balance")


def check_database_name(name: str) -> str:
    if not _DB_NAME_RE.match(name):
        raise ValueError(f"history database name {name!r} must match {_DB_NAME_RE.pattern}")
    return name


def migrate(client: Client, db: str, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Bring `db` to the newest schema; returns the version it is at. Blocking (a thread)."""
    check_database_name(db)
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
        "(version UInt32, name String, applied_at_ms Int64) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    current = current_version(client, db)
    for migration in migrations:
        if migration.version <= current:
            continue
        started = time.perf_counter()
        for statement in migration.statements:
            client.command(statement.replace("{db}", db))
        client.command(
            f"INSERT INTO {db}.schema_migrations (version, name, applied_at_ms) VALUES "
            "({version:UInt32}, {name:String}, {at:Int64})",
            parameters={"version": migration.version, "name": migration.name, "at": time.time_ns() // 1_000_000},
        )
        current = migration.version
        log.info(
            "history schema migrated",
            database=db,
            version=migration.version,
            migration=migration.name,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
    return current


def current_version(client: Client, db: str) -> int:
    result = client.query(f"SELECT max(version) FROM {db}.schema_migrations")
    rows = result.result_rows
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def apply_rollup_ttl(client: Client, db: str, days: int) -> None:
    """Keep the daily roll-ups `days` days (0: forever, which leaves any TTL as it is)."""
    if days <= 0:
        return
    for table in ROLLUP_TABLES:
        client.command(f"ALTER TABLE {db}.{table} MODIFY TTL day + INTERVAL {int(days)} DAY DELETE")
