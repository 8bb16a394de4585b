"""Stockout days from the `daily_balance` roll-up (engine.replenish.demand.StockoutDays): one
query per pair — the opening balance and each day's net change — then the closing balance
day by day. The same answer as HistoryStockouts over the movements, without reading them.
Matched returns (engine.replenish.demand.ReturnDays) in one query too: a customer's receipt
whose document names a sale of the pair in the window, summed per day of that sale."""

from __future__ import annotations

from datetime import date, timedelta

from adapters.clickhouse.store import ClickHouseHistoryStore
from engine.replenish.demand import DAY_MS, closing_stockouts

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
