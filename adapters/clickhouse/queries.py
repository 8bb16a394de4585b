"""Rows in, SQL out: movements as ClickHouse columns, and the history queries (pure code).

Every query reads `movements FINAL`: a movement stored twice collapses to one row, so
nothing is counted twice even before the background merge (DESIGN §4, the sink's
idempotency). Values travel as server-side parameters (`{name:Type}`), never spliced
into SQL text; only identifiers we validated (the database, dimension columns) are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.clickhouse.schema import LEGS
from engine.domain.history import (
    BalanceQuery,
    BalanceRow,
    DaysLeftTotal,
    ExpiryQuery,
    Exposure,
    ExposureRow,
    HistoryDimension,
    HistoryRecord,
    LotDocument,
    LotStop,
    MovementQuery,
    PairTotal,
    TraceQuery,
    TurnoverQuery,
    decode_cursor,
    needs_lots,
)
from engine.domain.model import External, Lot, Movement, MovementKind, Provenance, QuantKey

MOVEMENT_COLUMNS: tuple[str, ...] = (
    "sku",
    "site",
    "seq",
    "kind",
    "lot_id",
    "qty",
    "src_bucket",
    "src_bin",
    "src_status",
    "src_owner",
    "src_delta",
    "dst_bucket",
    "dst_bin",
    "dst_status",
    "dst_owner",
    "dst_delta",
    "held_bin",
    "held_status",
    "held_owner",
    "held_delta",
    "hold_id",
    "request_id",
    "doc_ref",
    "at_ms",
    "hold_expires_at_ms",
    "has_lot",
    "lot_received_at_ms",
    "lot_expires_at_ms",
    "lot_opened_at_ms",
    "shard",
    "batch_seq",
    "position",
    "source",  # since schema migration 2: a movement's provenance
    "confidence",
    "business_at_ms",
)
SKU_COLUMNS = ("sku", "opened_shelf_life_days", "updated_at_ms")
_MOVEMENT_SELECT = ", ".join(MOVEMENT_COLUMNS)

# Query settings every read uses. Duplicates of a movement share its at_ms, hence its
# partition, so FINAL need not merge across partitions; and they are identical rows, so
# skipping granules by index under FINAL cannot pick a "wrong" version.
READ_SETTINGS: dict[str, Any] = {
    "do_not_merge_across_partitions_select_final": 1,
    "use_skip_indexes_if_final": 1,
    "use_skip_indexes_if_final_exact_mode": 0,
}


class UnrepresentableMovement(ValueError):
    """A movement whose buckets name another lot than the movement itself."""


# ---- movements → columns ----


def _bucket(bucket: QuantKey | External, lot_id: str) -> tuple[str, str, str, str]:
    if isinstance(bucket, External):
        return bucket.value, "", "", ""
    if bucket.lot_id != lot_id:
        raise UnrepresentableMovement(f"bucket lot {bucket.lot_id!r} differs from the movement's lot {lot_id!r}")
    return "", bucket.bin, bucket.status, bucket.owner


def movement_row(record: HistoryRecord) -> tuple[Any, ...]:
    m = record.movement
    src_bucket, src_bin, src_status, src_owner = _bucket(m.src, m.lot_id)
    dst_bucket, dst_bin, dst_status, dst_owner = _bucket(m.dst, m.lot_id)
    held_bin = held_status = held_owner = ""
    if m.held_key is not None:
        _, held_bin, held_status, held_owner = _bucket(m.held_key, m.lot_id)
    lot = m.lot
    if lot is not None and lot.lot_id != m.lot_id:
        raise UnrepresentableMovement(f"receipt of lot {m.lot_id!r} carries the dates of {lot.lot_id!r}")
    return (
        m.sku,
        m.site,
        m.seq,
        m.kind.value,
        m.lot_id,
        m.qty,
        src_bucket,
        src_bin,
        src_status,
        src_owner,
        -m.qty,
        dst_bucket,
        dst_bin,
        dst_status,
        dst_owner,
        m.qty,
        held_bin,
        held_status,
        held_owner,
        m.held_delta if m.held_key is not None else 0,
        m.hold_id,
        m.request_id,
        m.doc_ref,
        m.at_ms,
        m.expires_at_ms,
        1 if lot is not None else 0,
        lot.received_at_ms if lot else 0,
        lot.expires_at_ms if lot else 0,
        lot.opened_at_ms if lot else 0,
        record.shard,
        record.batch_seq,
        record.position,
        m.source,
        m.confidence,
        m.business_at_ms,
    )


def movement_columns(records: Sequence[HistoryRecord]) -> list[list[Any]]:
    """Column-oriented data for clickhouse-connect's insert, in MOVEMENT_COLUMNS order: the
    same values as `movement_row` per record, built a column at a time (one comprehension
    per column instead of a 35-field row per movement, then a transpose: the sink builds
    every movement of the journal here; ~0.9 against ~1.7 µs per movement,
    bench/results/2026-12-08/history/columns.py)."""
    if not records:
        return [[] for _ in MOVEMENT_COLUMNS]
    ms = [r.movement for r in records]
    _check_representable(ms)
    src_bucket, src_bin, src_status, src_owner = _bucket_columns([m.src for m in ms])
    dst_bucket, dst_bin, dst_status, dst_owner = _bucket_columns([m.dst for m in ms])
    helds = [m.held_key for m in ms]
    _, held_bin, held_status, held_owner = _bucket_columns([_NO_QUANT if k is None else k for k in helds])
    qty = [m.qty for m in ms]
    lots = [m.lot for m in ms]
    provenances = [m.provenance for m in ms]
    return [
        [m.sku for m in ms],
        [m.site for m in ms],
        [m.seq for m in ms],
        [m.kind.value for m in ms],
        [m.lot_id for m in ms],
        qty,
        src_bucket,
        src_bin,
        src_status,
        src_owner,
        [-q for q in qty],
        dst_bucket,
        dst_bin,
        dst_status,
        dst_owner,
        qty,
        held_bin,
        held_status,
        held_owner,
        [0 if k is None else m.held_delta for m, k in zip(ms, helds, strict=True)],
        [m.hold_id for m in ms],
        [m.request_id for m in ms],
        [m.doc_ref for m in ms],
        [m.at_ms for m in ms],
        [m.expires_at_ms for m in ms],
        [0 if lot is None else 1 for lot in lots],
        [0 if lot is None else lot.received_at_ms for lot in lots],
        [0 if lot is None else lot.expires_at_ms for lot in lots],
        [0 if lot is None else lot.opened_at_ms for lot in lots],
        [r.shard for r in records],
        [r.batch_seq for r in records],
        [r.position for r in records],
        ["" if p is None else p.source for p in provenances],
        [0.0 if p is None else p.confidence for p in provenances],
        [0 if p is None else p.business_at_ms for p in provenances],
    ]


# A held column's stand-in for "no held quant": empty bin, status and owner, as movement_row writes.
_NO_QUANT = QuantKey("", "", "", "")


def _bucket_columns(buckets: list[QuantKey | External]) -> tuple[list[str], list[str], list[str], list[str]]:
    """(bucket, bin, status, owner) columns: an external bucket by name, a quant by its fields."""
    external = [b.value if b.__class__ is External else "" for b in buckets]
    quants = [_NO_QUANT if b.__class__ is External else b for b in buckets]
    return (
        external,
        [q.bin for q in quants],  # type: ignore[union-attr]
        [q.status for q in quants],  # type: ignore[union-attr]
        [q.owner for q in quants],  # type: ignore[union-attr]
    )


def _check_representable(ms: Sequence[Movement]) -> None:
    """What movement_row refuses, refused for the whole batch before any column is built."""
    for m in ms:
        lot_id = m.lot_id
        for key in (m.src, m.dst, m.held_key):
            if isinstance(key, QuantKey) and key.lot_id != lot_id:
                raise UnrepresentableMovement(f"bucket lot {key.lot_id!r} differs from the movement's lot {lot_id!r}")
        if m.lot is not None and m.lot.lot_id != lot_id:
            raise UnrepresentableMovement(f"receipt of lot {lot_id!r} carries the dates of {m.lot.lot_id!r}")


def record_from_row(row: Sequence[Any]) -> HistoryRecord:
    v = dict(zip(MOVEMENT_COLUMNS, row, strict=True))
    lot_id = v["lot_id"]

    def bucket(prefix: str) -> QuantKey | External:
        name = v[f"{prefix}_bucket"]
        if name:
            return External(name)
        return QuantKey(lot_id, v[f"{prefix}_bin"], v[f"{prefix}_status"], v[f"{prefix}_owner"])

    held_key = QuantKey(lot_id, v["held_bin"], v["held_status"], v["held_owner"]) if v["held_status"] else None
    lot = Lot(lot_id, v["lot_received_at_ms"], v["lot_expires_at_ms"], v["lot_opened_at_ms"]) if v["has_lot"] else None
    movement = Movement(
        seq=int(v["seq"]),
        kind=MovementKind(v["kind"]),
        sku=v["sku"],
        site=v["site"],
        lot_id=lot_id,
        qty=int(v["qty"]),
        src=bucket("src"),
        dst=bucket("dst"),
        held_key=held_key,
        held_delta=int(v["held_delta"]),
        hold_id=v["hold_id"],
        request_id=v["request_id"],
        doc_ref=v["doc_ref"],
        at_ms=int(v["at_ms"]),
        lot=lot,
        expires_at_ms=int(v["hold_expires_at_ms"]),
        provenance=_provenance(v["source"], float(v["confidence"]), int(v["business_at_ms"])),
    )
    return HistoryRecord(v["shard"], int(v["batch_seq"]), int(v["position"]), movement)


def _provenance(source: str, confidence: float, business_at_ms: int) -> Provenance | None:
    """As the cell makes it: none when the movement says nothing of where it came from."""
    return Provenance(source, confidence, business_at_ms) if source or business_at_ms else None


# ---- queries ----


@dataclass(slots=True)
class Sql:
    """A statement and its parameters, built up clause by clause."""

    text: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    _n: int = 0

    def param(self, value: Any, type_: str) -> str:
        self._n += 1
        name = f"p{self._n}"
        self.params[name] = value
        return f"{{{name}:{type_}}}"


def _in(sql: Sql, column: str, values: Sequence[str]) -> str:
    return f"{column} IN {sql.param(list(values), 'Array(String)')}"


def _pair_filters(sql: Sql, skus: Sequence[str], sites: Sequence[str], lot_id: str = "") -> list[str]:
    where = []
    if skus:
        where.append(_in(sql, "sku", skus))
    if sites:
        where.append(_in(sql, "site", sites))
    if lot_id:
        where.append(f"lot_id = {sql.param(lot_id, 'String')}")
    return where


def _legs_subquery(sql: Sql, db: str, where: list[str], extra: list[str] | None = None) -> str:
    """Per-quant sums of qty and held over the movements that pass `where`: each movement
    is unrolled into the quants it touches (external buckets have no status: dropped)."""
    leg_where = " AND ".join(extra or []) or "1"
    return f"""
        SELECT sku, site, lot_id, leg.1 AS bin, leg.2 AS status, leg.3 AS owner,
               sum(leg.4) AS q, sum(leg.5) AS h
        FROM {db}.movements FINAL
        {LEGS}
        WHERE {" AND ".join(where) or "1"} AND {leg_where}
        GROUP BY sku, site, lot_id, bin, status, owner"""


def _after(sql: Sql, as_of_ms: int) -> list[str]:
    """Movements after T. Said of `at` too (the partition key's column): only the parts and
    partitions holding a movement after T are read, not every movement ever stored."""
    return [
        f"at_ms > {sql.param(as_of_ms, 'Int64')}",
        f"at > fromUnixTimestamp64Milli({sql.param(as_of_ms, 'Int64')}, 'UTC')",
    ]


def _lots_subquery(sql: Sql, db: str, skus: Sequence[str], sites: Sequence[str], lot_id: str = "") -> str:
    """Each lot's dates and effective expiry: min(expires, opened + opened shelf life).
    Filtered like the movements it joins, so the join's table is small."""
    where = " AND ".join(_pair_filters(sql, skus, sites, lot_id)) or "1"
    sku_where = _in(sql, "sku", skus) if skus else "1"
    return f"""
        SELECT l.sku AS sku, l.site AS site, l.lot_id AS lot_id, l.received_at_ms AS received_at_ms,
               multiIf(l.opened_at_ms > 0 AND s.opened_shelf_life_days > 0,
                       if(l.expires_at_ms > 0,
                          least(l.expires_at_ms, l.opened_at_ms + toInt64(s.opened_shelf_life_days) * 86400000),
                          l.opened_at_ms + toInt64(s.opened_shelf_life_days) * 86400000),
                       l.expires_at_ms) AS expiry
        FROM (SELECT * FROM {db}.lots FINAL WHERE {where}) AS l
        LEFT JOIN (SELECT sku, opened_shelf_life_days FROM {db}.skus FINAL WHERE {sku_where}) AS s ON s.sku = l.sku"""


def _iso_day(expr: str) -> str:
    return f"if({expr} = 0, '', formatDateTime(fromUnixTimestamp64Milli({expr}, 'UTC'), '%F', 'UTC'))"


def _dimension_expr(d: HistoryDimension, bin_depth: int) -> str:
    match d:
        case HistoryDimension.SKU:
            return "b.sku"
        case HistoryDimension.SITE:
            return "b.site"
        case HistoryDimension.BIN:
            if bin_depth > 0:
                return f"arrayStringConcat(arraySlice(splitByChar('/', b.bin), 1, {int(bin_depth)}), '/')"
            return "b.bin"
        case HistoryDimension.STATUS:
            return "b.status"
        case HistoryDimension.OWNER:
            return "b.owner"
        case HistoryDimension.LOT:
            return "b.lot_id"
        case HistoryDimension.EXPIRY_DAY:
            return _iso_day("ifNull(lt.expiry, 0)")
        case HistoryDimension.RECEIVED_DAY:
            return _iso_day("ifNull(lt.received_at_ms, 0)")
    raise ValueError(f"unknown dimension {d!r}")


_SITE_DIMENSIONS = frozenset({HistoryDimension.SITE, HistoryDimension.STATUS, HistoryDimension.OWNER})


def by_site_rollup(q: BalanceQuery) -> bool:
    """Grouped and filtered by site, status and owner only: `site_balance` answers it."""
    narrowed = q.skus or q.lot_id or q.bin_prefix or q.expires_from_ms or q.expires_to_ms
    return not narrowed and _SITE_DIMENSIONS.issuperset(q.group_by)


def _site_balance_subquery(sql: Sql, db: str, q: BalanceQuery) -> str:
    """Per (site, status, owner): the balance now (the roll-up) less the movements after T."""
    sites = _pair_filters(sql, (), q.sites)
    tail = [*_after(sql, q.as_of_ms), *sites]
    return f"""
        SELECT site, status, owner, qty AS q, held AS h FROM {db}.site_balance
        WHERE {" AND ".join(sites) or "1"}
        UNION ALL
        SELECT site, leg.2 AS status, leg.3 AS owner, -leg.4 AS q, -leg.5 AS h
        FROM {db}.movements FINAL
        {LEGS}
        WHERE {" AND ".join(tail)}"""


def _site_balance_sql(db: str, q: BalanceQuery) -> Sql:
    sql = Sql()
    where: list[str] = []
    if q.statuses:
        where.append(f"b.status IN {sql.param(list(q.statuses), 'Array(String)')}")
    if q.owner:
        owner = sql.param(q.owner, "String")
        where.append(f"(b.owner = {owner} OR startsWith(b.owner, concat({owner}, ':')))")
    groups = [f"{_dimension_expr(d, 0)} AS g{i}" for i, d in enumerate(q.group_by)]
    names = [f"g{i}" for i in range(len(q.group_by))]
    sql.text = f"""
        SELECT {", ".join([*groups, "sum(b.q) AS qty", "sum(b.h) AS held"])}
        FROM ({_site_balance_subquery(sql, db, q)}) AS b
        WHERE {" AND ".join(where) or "1"}
        {"GROUP BY " + ", ".join(names) if names else ""}
        HAVING qty != 0 OR held != 0
        {"ORDER BY " + ", ".join(names) if names else ""}
        LIMIT {int(q.limit)}"""
    return sql


def balance_sql(db: str, q: BalanceQuery) -> Sql:
    if by_site_rollup(q):
        return _site_balance_sql(db, q)
    sql = Sql()
    where = [f"at_ms <= {sql.param(q.as_of_ms, 'Int64')}", *_pair_filters(sql, q.skus, q.sites, q.lot_id)]
    legs: list[str] = []
    if q.statuses:
        legs.append(f"leg.2 IN {sql.param(list(q.statuses), 'Array(String)')}")
    if q.bin_prefix:
        prefix = sql.param(q.bin_prefix, "String")
        legs.append(f"(leg.1 = {prefix} OR startsWith(leg.1, concat({prefix}, '/')))")
    if q.owner:
        owner = sql.param(q.owner, "String")
        legs.append(f"(leg.3 = {owner} OR startsWith(leg.3, concat({owner}, ':')))")
    outer: list[str] = []
    join = ""
    if needs_lots(q):
        lots = _lots_subquery(sql, db, q.skus, q.sites, q.lot_id)
        join = f"LEFT JOIN ({lots}) AS lt ON lt.sku = b.sku AND lt.site = b.site AND lt.lot_id = b.lot_id"
        if q.expires_from_ms or q.expires_to_ms:
            outer.append(f"ifNull(lt.expiry, 0) > 0 AND lt.expiry >= {sql.param(q.expires_from_ms, 'Int64')}")
        if q.expires_to_ms:
            outer.append(f"lt.expiry < {sql.param(q.expires_to_ms, 'Int64')}")
    groups = [f"{_dimension_expr(d, q.bin_depth)} AS g{i}" for i, d in enumerate(q.group_by)]
    names = [f"g{i}" for i in range(len(q.group_by))]
    sql.text = f"""
        SELECT {", ".join([*groups, "sum(b.q) AS qty", "sum(b.h) AS held"])}
        FROM ({_legs_subquery(sql, db, where, legs)}) AS b
        {join}
        WHERE {" AND ".join(outer) or "1"}
        {"GROUP BY " + ", ".join(names) if names else ""}
        HAVING qty != 0 OR held != 0
        {"ORDER BY " + ", ".join(names) if names else ""}
        LIMIT {int(q.limit)}"""
    return sql


def balance_rows(q: BalanceQuery, rows: Sequence[Sequence[Any]]) -> list[BalanceRow]:
    n = len(q.group_by)
    return [
        BalanceRow(tuple((d.value, str(row[i])) for i, d in enumerate(q.group_by)), int(row[n]), int(row[n + 1]))
        for row in rows
    ]


def movements_sql(db: str, q: MovementQuery) -> Sql:
    sql = Sql()
    where = _pair_filters(sql, (q.sku,) if q.sku else (), (q.site,) if q.site else (), q.lot_id)
    for column in ("doc_ref", "hold_id", "request_id"):
        value = getattr(q, column)
        if value:
            where.append(f"{column} = {sql.param(value, 'String')}")
    if q.kinds:
        where.append(f"kind IN {sql.param([k.value for k in q.kinds], 'Array(String)')}")
    if q.from_ms:
        where.append(f"at_ms >= {sql.param(q.from_ms, 'Int64')}")
    if q.to_ms:
        where.append(f"at_ms < {sql.param(q.to_ms, 'Int64')}")
    if q.cursor:
        at_ms, sku, site, seq = decode_cursor(q.cursor)
        where.append(
            f"(at_ms, sku, site, seq) > ({sql.param(at_ms, 'Int64')}, {sql.param(sku, 'String')}, "
            f"{sql.param(site, 'String')}, {sql.param(seq, 'UInt64')})"
        )
    sql.text = f"""
        SELECT {_MOVEMENT_SELECT} FROM {db}.movements FINAL
        WHERE {" AND ".join(where) or "1"}
        ORDER BY at_ms, sku, site, seq
        LIMIT {int(q.page_size) + 1}"""
    return sql


def consumption_sql(db: str, first_day: int, last_day: int, sku: str, site: str) -> Sql:
    """Per day; without an sku, from the roll-up by site and day (a few rows per day)
    rather than every pair's."""
    sql = Sql()
    where = [
        f"day >= toDate({sql.param(first_day, 'Int32')})",
        f"day <= toDate({sql.param(last_day, 'Int32')})",
    ]
    where += _pair_filters(sql, (sku,) if sku else (), (site,) if site else ())
    table = "daily_consumption" if sku else "site_daily_consumption"
    sql.text = f"""
        SELECT toInt32(day) AS d, sum(consumed) AS qty FROM {db}.{table}
        WHERE {" AND ".join(where)} GROUP BY d ORDER BY d"""
    return sql


def turnover_sql(db: str, q: TurnoverQuery, first_day: int, last_day: int) -> Sql:
    """Σ end-of-day balances over the window in closed form: a day's net change counts in
    every end-of-day balance from that day to the last (and the opening in all of them)."""
    sql = Sql()
    first = f"toDate({sql.param(first_day, 'Int32')})"
    last = f"toDate({sql.param(last_day, 'Int32')})"
    days = last_day - first_day + 1
    where = [f"day <= {last}", *_pair_filters(sql, q.skus, q.sites)]
    sql.text = f"""
        SELECT sku, site, numerator, consumed FROM (
            SELECT sku, site,
                   sumIf(qty_delta, day < {first}) * {days}
                     + sumIf(qty_delta * (dateDiff('day', day, {last}) + 1), day >= {first}) AS numerator,
                   sumIf(consumed, day >= {first}) AS consumed
            FROM {db}.daily_balance
            WHERE {" AND ".join(where)}
            GROUP BY sku, site)
        WHERE numerator != 0 OR consumed != 0
        ORDER BY sku, site
        LIMIT {int(q.limit)}"""
    return sql


def _lot_balance_subquery(sql: Sql, db: str, q: ExpiryQuery) -> str:
    """Per lot: the balance now (`lot_balance`) less the movements after T."""
    pairs = _pair_filters(sql, q.skus, q.sites)
    tail = [*_after(sql, q.as_of_ms), *pairs]
    return f"""
        SELECT sku, site, lot_id, qty AS q, held AS h FROM {db}.lot_balance
        WHERE {" AND ".join(pairs) or "1"}
        UNION ALL
        SELECT sku, site, lot_id, -leg.4 AS q, -leg.5 AS h
        FROM {db}.movements FINAL
        {LEGS}
        WHERE {" AND ".join(tail)}"""


def _exposure_base(sql: Sql, db: str, q: ExpiryQuery) -> str:
    as_of = sql.param(q.as_of_ms, "Int64")
    return f"""
        SELECT b.sku AS sku, b.site AS site, b.lot_id AS lot_id, lt.expiry AS expiry,
               toInt64(floor((lt.expiry - {as_of}) / 86400000)) AS days_left,
               sum(b.q) AS qty, sum(b.h) AS held
        FROM ({_lot_balance_subquery(sql, db, q)}) AS b
        INNER JOIN (
            SELECT * FROM ({_lots_subquery(sql, db, q.skus, q.sites)})
            WHERE expiry > 0 AND expiry < {as_of} + {sql.param(q.horizon_days, "Int64")} * 86400000) AS lt
            ON lt.sku = b.sku AND lt.site = b.site AND lt.lot_id = b.lot_id
        GROUP BY sku, site, lot_id, expiry, days_left
        HAVING qty != 0 AND days_left < {sql.param(q.horizon_days, "Int64")}"""


def exposure_sql(db: str, q: ExpiryQuery) -> Sql:
    """One pass over the base: per day left, its totals and its first `limit` rows.

    Days left grow with expiry, so the first `limit` rows by (expiry, sku, site, lot) are the
    days' first rows in day order, cut at `limit` (see `exposure_result`); the base (a join of
    every lot balance with its lot) thus runs once instead of once for rows and once for totals.
    """
    sql = Sql()
    sql.text = f"""
        SELECT greatest(days_left, -1) AS d, sum(qty), count(),
               groupArraySorted({int(q.limit)})((expiry, sku, site, lot_id, days_left, qty, held))
        FROM ({_exposure_base(sql, db, q)})
        GROUP BY d ORDER BY d"""
    return sql


def exposure_result(days: Sequence[Sequence[Any]], limit: int) -> Exposure:
    totals = tuple(DaysLeftTotal(int(d), int(qty), int(n)) for d, qty, n, _ in days)
    rows = [r for *_, firsts in days for r in firsts][:limit]
    return Exposure(
        tuple(ExposureRow(r[1], r[2], r[3], int(r[0]), int(r[4]), int(r[5]), int(r[6])) for r in rows), totals
    )


def trace_stops_sql(db: str, q: TraceQuery) -> Sql:
    sql = Sql()
    where = _pair_filters(sql, (q.sku,) if q.sku else (), (), q.lot_id)
    sql.text = f"""
        SELECT m.sku, m.site, ifNull(l.received_at_ms, 0), ifNull(l.expires_at_ms, 0),
               m.first_at, m.last_at, m.qty_in, m.qty_out, m.balance, m.n
        FROM (
            SELECT sku, site, min(at_ms) AS first_at, max(at_ms) AS last_at,
                   sumIf(qty, dst_bucket = '' AND src_bucket != '') AS qty_in,
                   sumIf(qty, src_bucket = '' AND dst_bucket != '') AS qty_out,
                   sum(if(src_bucket = '', src_delta, 0) + if(dst_bucket = '', dst_delta, 0)) AS balance,
                   count() AS n
            FROM {db}.movements FINAL
            WHERE {" AND ".join(where)}
            GROUP BY sku, site) AS m
        LEFT JOIN (SELECT * FROM {db}.lots FINAL WHERE lot_id = {sql.param(q.lot_id, "String")}) AS l
            ON l.sku = m.sku AND l.site = m.site
        ORDER BY m.first_at, m.sku, m.site
        LIMIT {int(q.limit)}"""
    return sql


def trace_stops(rows: Sequence[Sequence[Any]]) -> list[LotStop]:
    return [LotStop(r[0], r[1], *(int(x) for x in r[2:])) for r in rows]


def trace_documents_sql(db: str, q: TraceQuery) -> Sql:
    sql = Sql()
    where = [*_pair_filters(sql, (q.sku,) if q.sku else (), (), q.lot_id), "doc_ref != ''"]
    sql.text = f"""
        SELECT doc_ref, sku, site, min(at_ms) AS first_at, max(at_ms) AS last_at,
               arraySort(groupUniqArray(toString(kind))) AS kinds, sum(qty), count()
        FROM {db}.movements FINAL
        WHERE {" AND ".join(where)}
        GROUP BY doc_ref, sku, site
        ORDER BY first_at, doc_ref, sku, site
        LIMIT {int(q.limit)}"""
    return sql


def trace_documents(rows: Sequence[Sequence[Any]]) -> list[LotDocument]:
    return [LotDocument(r[0], r[1], r[2], int(r[3]), int(r[4]), tuple(r[5]), int(r[6]), int(r[7])) for r in rows]


def totals_sql(db: str, limit: int) -> Sql:
    sql = Sql()
    sql.text = f"""
        SELECT sku, site, count(), max(seq),
               sum(if(src_bucket = '', src_delta, 0) + if(dst_bucket = '', dst_delta, 0)),
               sum(held_delta)
        FROM {db}.movements FINAL
        GROUP BY sku, site ORDER BY sku, site
        LIMIT {int(limit)}"""
    return sql


def totals_rows(rows: Sequence[Sequence[Any]]) -> list[PairTotal]:
    return [PairTotal(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows]


def quote_str(value: str) -> str:
    """A ClickHouse string literal (for the few lists too long to send as parameters)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def newest_position_sql(db: str) -> Sql:
    """The newest journal position history holds (0: none), read once per store."""
    return Sql(f"SELECT max(position) FROM {db}.movements")


def stored_batches_sql(db: str, records: Sequence[HistoryRecord]) -> Sql:
    """Which journal batches of these records are stored, read from `movements` (literals:
    an HTTP request carries parameters in its URL). Not ordered by these columns, so it
    reads them whole: the store asks only for batches that may be stored already (a
    redelivery), never on the normal path."""
    ranges: dict[str, tuple[int, int]] = {}
    for r in records:
        lo, hi = ranges.get(r.shard, (r.batch_seq, r.batch_seq))
        ranges[r.shard] = (min(lo, r.batch_seq), max(hi, r.batch_seq))
    conditions = " OR ".join(
        f"(shard = {quote_str(shard)} AND batch_seq BETWEEN {int(lo)} AND {int(hi)})"
        for shard, (lo, hi) in sorted(ranges.items())
    )
    return Sql(f"SELECT DISTINCT shard, batch_seq FROM {db}.movements WHERE {conditions or '0'}")
