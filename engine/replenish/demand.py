"""Stockout days: the days a pair closed with nothing on hand, so its demand that day is
unknown (only a lower bound) and the policy leaves it out of every window (censored).

Matched returns: net demand is what was issued to customers less what customers brought back
against one of those issues (a return whose document names a sale of the pair: `doc_ref`
equal to the sale's). The returned units come off the day of the sale they undo — that sale
was not demand — so a day's net demand stays ≥ 0 and a week with a return reads as the week
it really was. `ReturnDays` is the port; `HistoryReturns` answers it over any HistoryStore,
adapters.clickhouse.replenish in one query. Only sales inside the window are netted (an older
sale's demand is not in it); a return that names no sale is left alone (data health counts
it as unmatched).

`StockoutDays` is the port; `HistoryStockouts` answers it over any HistoryStore (the
opening balance, then the pair's movements day by day: fine in memory, slow on a big
store); adapters.clickhouse.replenish answers it from the `daily_balance` roll-up in one
query. Today is never a stockout day: it is not over, and its scans are the live signal.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Protocol

from engine.domain.history import BalanceQuery, MovementQuery
from engine.domain.model import External, Movement, MovementKind, QuantKey
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


class ReturnDays(Protocol):
    async def returned(self, sku: str, site: str, first: date, last: date) -> dict[date, int]:
        """Per day in [first, last]: units of that day's sales of the pair that customers returned
        (by the last day)."""
        ...


def is_sale(m: Movement) -> bool:
    return m.dst is External.CUSTOMER and bool(m.doc_ref)


def is_return(m: Movement) -> bool:
    return m.kind is MovementKind.RECEIVE and m.src is External.CUSTOMER and bool(m.doc_ref)


def matched_returns(movements: list[Movement], first: date, last: date) -> dict[date, int]:
    """Per sale day in [first, last], the units returned (by `last`) against that day's sales."""
    sold_on: dict[str, date] = {}
    out: dict[date, int] = {}
    for m in sorted(movements, key=lambda m: m.at_ms):
        day = date(1970, 1, 1) + timedelta(days=m.at_ms // DAY_MS)
        if not first <= day <= last:
            continue
        if is_sale(m):
            sold_on.setdefault(m.doc_ref, day)
        elif is_return(m) and m.doc_ref in sold_on:
            sale_day = sold_on[m.doc_ref]
            out[sale_day] = out.get(sale_day, 0) + m.qty
    return out


class HistoryReturns:
    def __init__(self, history: HistoryStore) -> None:
        self._history = history

    async def returned(self, sku: str, site: str, first: date, last: date) -> dict[date, int]:
        movements: list[Movement] = []
        cursor = ""
        while len(movements) < MAX_MOVEMENTS:
            page = await self._history.movements(
                MovementQuery(
                    sku=sku,
                    site=site,
                    from_ms=_day_ms(first),
                    to_ms=_day_ms(last) + DAY_MS,
                    page_size=1_000,
                    cursor=cursor,
                )
            )
            movements.extend(r.movement for r in page.records)
            cursor = page.next_cursor
            if not cursor:
                break
        return matched_returns(movements, first, last)


def net_of_returns(demand: list[float], first: date, returned: dict[date, int]) -> list[float]:
    """Each day's issues less the returns of that day's sales (never below 0)."""
    out = list(demand)
    for day, qty in returned.items():
        i = (day - first).days
        if 0 <= i < len(out):
            out[i] = max(out[i] - qty, 0.0)
    return out


Pair = tuple[str, str]  # (sku, site)
MAX_BATCH_PAIRS = 512  # pairs one batched read asks for, at most (a longer list is read in parts)


class DemandBatch(Protocol):
    """The trigger's daily inputs for many pairs at once: one aggregated query per kind for a
    whole follower batch rather than three per pair (each the same answer as the per-pair
    ports). Pairs with nothing in the window may be absent from the answers."""

    async def consumed_many(self, pairs: Sequence[Pair], first: date, last: date) -> dict[Pair, dict[date, int]]:
        """Per pair, the units issued to customers per day in [first, last]."""
        ...

    async def returned_many(self, pairs: Sequence[Pair], first: date, last: date) -> dict[Pair, dict[date, int]]:
        """Per pair, ReturnDays.returned."""
        ...

    async def stockout_days_many(self, pairs: Sequence[Pair], first: date, last: date) -> dict[Pair, set[date]]:
        """Per pair, StockoutDays.stockout_days."""
        ...


def chunks(pairs: Sequence[Pair], size: int = MAX_BATCH_PAIRS) -> list[Sequence[Pair]]:
    return [pairs[i : i + size] for i in range(0, len(pairs), size)]
