"""Stockout days from the `daily_balance` roll-up (engine.replenish.demand.StockoutDays): one
query per pair — the opening balance and each day's net change — then the closing balance
day by day. The same answer as HistoryStockouts over the movements, without reading them."""

from __future__ import annotations

from datetime import date, timedelta

from adapters.clickhouse.store import ClickHouseHistoryStore
from engine.replenish.demand import closing_stockouts

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
