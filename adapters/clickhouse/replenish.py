"""Stockout days from the `daily_balance` roll-up (engine.replenish.demand.StockoutDays): one
query per pair — the opening balance and each day's net change — then the closing balance
day by day. The same answer as HistoryStockouts over the movements, without reading them.
Matched returns (engine.replenish.demand.ReturnDays) in one query too: a customer's receipt
whose document names a sale of the pair in the window, summed per day of that sale."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from adapters.clickhouse.store import ClickHouseHistoryStore
from engine.domain.model import NO_EXPIRY_MS
from engine.replenish.demand import DAY_MS, Pair, chunks, closing_stockouts
from engine.replenish.health import PairHealth

_EPOCH = date(1970, 1, 1)


class ClickHouseStockouts:
    def __init__(self, store: ClickHouseHistoryStore) -> None:
        self._store = store

    async def stockout_days(self, sku: str, site: str, first: date, last: date) -> set[date]:
        rows = await self._store.query(
            """
            SELECT greatest(toInt32(day), {first:Int32}) AS d, sum(qty_delta)
            FROM {db}.daily_balance
            WHERE sku = {sku:String} AND site = {site:String} AND day <= toDate({last:Int32})
            GROUP BY d ORDER BY d""",
            {"sku": sku, "site": site, "first": (first - _EPOCH).days, "last": (last - _EPOCH).days},
        )
        # Days before the window are folded into its first day by greatest(): the opening
        # balance is part of the first day's change.
        deltas = {_EPOCH + timedelta(days=int(d)): int(delta) for d, delta in rows}
        return closing_stockouts(0, deltas, first, last)


class ClickHouseReturns:
    def __init__(self, store: ClickHouseHistoryStore) -> None:
        self._store = store

    async def returned(self, sku: str, site: str, first: date, last: date) -> dict[date, int]:
        rows = await self._store.query(
            """
            SELECT intDiv(s.sold_at, 86400000) AS d, sum(r.qty) FROM (
                SELECT qty, at_ms, doc_ref FROM {db}.movements FINAL
                WHERE sku = {sku:String} AND site = {site:String} AND kind = 'receive'
                  AND src_bucket = '@customer' AND doc_ref != ''
                  AND at_ms >= {from_ms:Int64} AND at_ms < {to_ms:Int64}
            ) AS r
            INNER JOIN (
                SELECT doc_ref, min(at_ms) AS sold_at FROM {db}.movements FINAL
                WHERE sku = {sku:String} AND site = {site:String} AND dst_bucket = '@customer' AND doc_ref != ''
                  AND at_ms >= {from_ms:Int64} AND at_ms < {to_ms:Int64}
                GROUP BY doc_ref
            ) AS s ON r.doc_ref = s.doc_ref
            WHERE s.sold_at <= r.at_ms
            GROUP BY d ORDER BY d""",
            {
                "sku": sku,
                "site": site,
                "from_ms": (first - _EPOCH).days * DAY_MS,
                "to_ms": (last - _EPOCH).days * DAY_MS + DAY_MS,
            },
        )
        return {_EPOCH + timedelta(days=int(d)): int(qty) for d, qty in rows}


_DOCUMENTS = (
    "kind IN ('receive', 'consume', 'commit')"
    " AND (src_bucket IN ('@supplier', '@customer') OR dst_bucket = '@customer')"
)


def _pairs_params(pairs: Sequence[Pair], first: date, last: date) -> dict[str, Any]:
    return {
        "skus": sorted({sku for sku, _ in pairs}),
        "sites": sorted({site for _, site in pairs}),
        "first": (first - _EPOCH).days,
        "last": (last - _EPOCH).days,
        "from_ms": (first - _EPOCH).days * DAY_MS,
        "to_ms": (last - _EPOCH).days * DAY_MS + DAY_MS,
    }


_PAIRS = "sku IN {skus:Array(String)} AND site IN {sites:Array(String)}"


class ClickHouseDemandBatch:
    """engine.replenish.demand.DemandBatch: the trigger's daily inputs for many pairs, one
    aggregated query per kind (the roll-ups; returns joined on the store's side). The filter is
    skus × sites, so rows of pairs not asked for are dropped here."""

    def __init__(self, store: ClickHouseHistoryStore) -> None:
        self._store = store

    async def consumed_many(self, pairs: Sequence[Pair], first: date, last: date) -> dict[Pair, dict[date, int]]:
        out: dict[Pair, dict[date, int]] = {}
        for part in chunks(pairs):
            rows = await self._store.query(
                f"""
                SELECT sku, site, toInt32(day) AS d, sum(consumed) FROM {{db}}.daily_consumption
                WHERE {_PAIRS} AND day >= toDate({{first:Int32}}) AND day <= toDate({{last:Int32}})
                GROUP BY sku, site, d""",
                _pairs_params(part, first, last),
            )
            _collect(out, set(part), rows)
        return out

    async def returned_many(self, pairs: Sequence[Pair], first: date, last: date) -> dict[Pair, dict[date, int]]:
        out: dict[Pair, dict[date, int]] = {}
        for part in chunks(pairs):
            rows = await self._store.query(
                f"""
                SELECT r.sku, r.site, intDiv(s.sold_at, 86400000) AS d, sum(r.qty) FROM (
                    SELECT sku, site, qty, at_ms, doc_ref FROM {{db}}.movements FINAL
                    WHERE {_PAIRS} AND kind = 'receive' AND src_bucket = '@customer' AND doc_ref != ''
                      AND at_ms >= {{from_ms:Int64}} AND at_ms < {{to_ms:Int64}}
                ) AS r
                INNER JOIN (
                    SELECT sku, site, doc_ref, min(at_ms) AS sold_at FROM {{db}}.movements FINAL
                    WHERE {_PAIRS} AND dst_bucket = '@customer' AND doc_ref != ''
                      AND at_ms >= {{from_ms:Int64}} AND at_ms < {{to_ms:Int64}}
                    GROUP BY sku, site, doc_ref
                ) AS s ON r.sku = s.sku AND r.site = s.site AND r.doc_ref = s.doc_ref
                WHERE s.sold_at <= r.at_ms
                GROUP BY r.sku, r.site, d""",
                _pairs_params(part, first, last),
            )
            _collect(out, set(part), rows)
        return out

    async def stockout_days_many(self, pairs: Sequence[Pair], first: date, last: date) -> dict[Pair, set[date]]:
        deltas: dict[Pair, dict[date, int]] = {}
        for part in chunks(pairs):
            rows = await self._store.query(
                f"""
                SELECT sku, site, greatest(toInt32(day), {{first:Int32}}) AS d, sum(qty_delta)
                FROM {{db}}.daily_balance
                WHERE {_PAIRS} AND day <= toDate({{last:Int32}})
                GROUP BY sku, site, d""",
                _pairs_params(part, first, last),
            )
            _collect(deltas, set(part), rows)
        # Every pair asked for gets its answer: one without a row never had stock (all days out).
        return {pair: closing_stockouts(0, deltas.get(pair, {}), first, last) for pair in pairs}


def _collect(out: dict[Pair, dict[date, int]], wanted: set[Pair], rows: Sequence[Sequence[Any]]) -> None:
    for sku, site, d, qty in rows:
        if (sku, site) in wanted:
            out.setdefault((sku, site), {})[_EPOCH + timedelta(days=int(d))] = int(qty)


class ClickHouseHealthCounts:
    """engine.replenish.health.HealthCounts: a pair's health counts aggregated in the store
    (three grouped queries for many pairs), never its movements read back. A return is matched
    when a sale of the pair with its document came no later (as ClickHouseReturns); a lot's
    expiry is that of its first receipt from a supplier."""

    def __init__(self, store: ClickHouseHistoryStore) -> None:
        self._store = store

    async def health_counts(self, pairs: Sequence[Pair], from_ms: int) -> dict[Pair, PairHealth]:
        out: dict[Pair, PairHealth] = {}
        for part in chunks(pairs):
            wanted = set(part)
            params = {"skus": sorted({s for s, _ in part}), "sites": sorted({s for _, s in part}), "from_ms": from_ms}
            documents, matched, lots = await asyncio.gather(
                self._store.query(_DOCUMENTS_SQL, params),
                self._store.query(_MATCHED_SQL, params),
                self._store.query(_LOTS_SQL, params),
            )
            for sku, site, docs, complete, returns in documents:
                if (sku, site) in wanted:
                    h = out.setdefault((sku, site), PairHealth(site, sku))
                    h.documents, h.documents_complete, h.returns = int(docs), int(complete), int(returns)
            for sku, site, n in matched:
                if (sku, site) in wanted:
                    out.setdefault((sku, site), PairHealth(site, sku)).returns_matched = int(n)
            for sku, site, n, missing in lots:
                if (sku, site) in wanted:
                    h = out.setdefault((sku, site), PairHealth(site, sku))
                    h.lots, h.lots_missing_expiry = int(n), int(missing)
        return out


_DOCUMENTS_SQL = f"""
    SELECT sku, site, countIf({_DOCUMENTS}), countIf({_DOCUMENTS} AND doc_ref != ''),
           countIf(kind = 'receive' AND src_bucket = '@customer')
    FROM {{db}}.movements FINAL
    WHERE {_PAIRS} AND at_ms >= {{from_ms:Int64}}
    GROUP BY sku, site"""

_MATCHED_SQL = f"""
    SELECT r.sku, r.site, count() FROM (
        SELECT sku, site, at_ms, doc_ref FROM {{db}}.movements FINAL
        WHERE {_PAIRS} AND kind = 'receive' AND src_bucket = '@customer' AND doc_ref != ''
          AND at_ms >= {{from_ms:Int64}}
    ) AS r
    INNER JOIN (
        SELECT sku, site, doc_ref, min(at_ms) AS sold_at FROM {{db}}.movements FINAL
        WHERE {_PAIRS} AND dst_bucket = '@customer' AND doc_ref != '' AND at_ms >= {{from_ms:Int64}}
        GROUP BY sku, site, doc_ref
    ) AS s ON r.sku = s.sku AND r.site = s.site AND r.doc_ref = s.doc_ref
    WHERE s.sold_at <= r.at_ms
    GROUP BY r.sku, r.site"""

_LOTS_SQL = f"""
    SELECT sku, site, count(), sum(missing) FROM (
        SELECT sku, site, lot_id,
               argMin(has_lot = 0 OR lot_expires_at_ms = {NO_EXPIRY_MS}, (at_ms, seq)) AS missing
        FROM {{db}}.movements FINAL
        WHERE {_PAIRS} AND kind = 'receive' AND src_bucket = '@supplier' AND at_ms >= {{from_ms:Int64}}
        GROUP BY sku, site, lot_id)
    GROUP BY sku, site"""
