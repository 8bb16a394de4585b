"""Stockout days: the days a pair closed with nothing on hand, so its demand that day is
unknown (only a lower bound) and the policy leaves it out of every window (censored).

`StockoutDays` is the port; `HistoryStockouts` answers it over any HistoryStore (the
opening balance, then the pair's movements day by day: fine in memory, slow on a big
store); adapters.clickhouse.replenish answers it from the `daily_balance` roll-up in one
query. Today is never a stockout day: it is not over, and its scans are the live signal.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Protocol

from engine.domain.history import BalanceQuery, MovementQuery
from engine.domain.model import QuantKey
from engine.domain.ports import HistoryStore

DAY_MS = 86_400_000
MAX_MOVEMENTS = 200_000  # a pair's window read, at most


class StockoutDays(Protocol):
    async def stockout_days(self, sku: str, site: str, first: date, last: date) -> set[date]:
        """The days in [first, last] the pair closed with ≤ 0 on hand (last excluded when it is today)."""
        ...


def _day_ms(day: date) -> int:
    return (day - date(1970, 1, 1)).days * DAY_MS


def closing_stockouts(opening: int, deltas: dict[date, int], first: date, last: date) -> set[date]:
    """Days whose closing balance (opening + the deltas so far) is ≤ 0."""
    out: set[date] = set()
    balance = opening
    day = first
    while day <= last:
        balance += deltas.get(day, 0)
        if balance <= 0:
            out.add(day)
        day += timedelta(days=1)
    return out


class HistoryStockouts:
    def __init__(self, history: HistoryStore) -> None:
        self._history = history

    async def stockout_days(self, sku: str, site: str, first: date, last: date) -> set[date]:
        start_ms = _day_ms(first)
        opening_rows = await self._history.balance_as_of(
            BalanceQuery(as_of_ms=start_ms - 1, skus=(sku,), sites=(site,))
        )
        opening = sum(r.qty for r in opening_rows)
        deltas: dict[date, int] = {}
        cursor, seen = "", 0
        while seen < MAX_MOVEMENTS:
            page = await self._history.movements(
                MovementQuery(
                    sku=sku, site=site, from_ms=start_ms, to_ms=_day_ms(last) + DAY_MS, page_size=1_000, cursor=cursor
                )
            )
            for record in page.records:
                m = record.movement
                delta = (m.qty if isinstance(m.dst, QuantKey) else 0) - (m.qty if isinstance(m.src, QuantKey) else 0)
                day = date(1970, 1, 1) + timedelta(days=m.at_ms // DAY_MS)
                deltas[day] = deltas.get(day, 0) + delta
            seen += len(page.records)
            cursor = page.next_cursor
            if not cursor:
                break
        return closing_stockouts(opening, deltas, first, last)
