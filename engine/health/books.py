"""The books a snapshot is compared with (engine.health.reconcile): the balance of each
snapshot key as of the snapshot's instant, and the range it went through within ± skew.

- `HistoryBooks`: ClickHouse history's balance as of a time (DESIGN §8), asked at
  as_of − skew, as_of and as_of + skew: the timing window is what the books held at
  those instants (a movement in flight between them explains a difference).
- `CellBooks`: the cells now (QueryStock), when history is off (journal in memory): no
  as-of, so nothing is explained as timing; reconciliation still classifies and proposes.

Snapshot lines may leave lot, bin or status empty (the WMS books the pair, or the site, as
a whole); lines are grouped by which of them they name and each group is asked once,
grouped by exactly those dimensions, in chunks of sites (each answer is bounded)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from engine.domain.cell import Dimension, SliceFilter
from engine.domain.history import MAX_ROWS, BalanceQuery, HistoryDimension
from engine.domain.inventory import StockQuery
from engine.domain.ports import HistoryStore
from engine.health.reconcile import BookWindow, Key, SnapshotLine
from engine.health.sweep import StockPort

SITES_PER_QUERY = 50
Shape = tuple[bool, bool, bool]  # (lot, bin, status) named


class BooksPort(Protocol):
    async def window(self, lines: Sequence[SnapshotLine], as_of_ms: int, skew_ms: int) -> dict[Key, BookWindow]: ...


def _shape(line: SnapshotLine) -> Shape:
    return (bool(line.lot_id), bool(line.bin), bool(line.status))


def _groups(lines: Iterable[SnapshotLine]) -> dict[Shape, tuple[list[str], list[str]]]:
    out: dict[Shape, tuple[set[str], set[str]]] = {}
    for line in lines:
        sites, skus = out.setdefault(_shape(line), (set(), set()))
        sites.add(line.site)
        skus.add(line.sku)
    return {shape: (sorted(s), sorted(k)) for shape, (s, k) in out.items()}


def _key(site: str, sku: str, g: dict[str, str], shape: Shape) -> Key:
    return (
        site,
        sku,
        g.get("lot", "") if shape[0] else "",
        g.get("bin", "") if shape[1] else "",
        g.get("status", "") if shape[2] else "",
    )


def _chunks(items: list[str], size: int) -> Iterable[tuple[str, ...]]:
    for i in range(0, len(items), size):
        yield tuple(items[i : i + size])


class HistoryBooks:
    def __init__(self, history: HistoryStore, on_hand_statuses: frozenset[str]) -> None:
        self.history = history
        self.on_hand = tuple(sorted(on_hand_statuses))

    async def window(self, lines: Sequence[SnapshotLine], as_of_ms: int, skew_ms: int) -> dict[Key, BookWindow]:
        instants = (as_of_ms, max(as_of_ms - skew_ms, 0), as_of_ms + skew_ms)
        seen: list[dict[Key, int]] = [{}, {}, {}]
        for shape, (sites, skus) in _groups(lines).items():
            dims = [HistoryDimension.SITE, HistoryDimension.SKU]
            dims += [
                d
                for d, on in zip(
                    (HistoryDimension.LOT, HistoryDimension.BIN, HistoryDimension.STATUS), shape, strict=True
                )
                if on
            ]
            for chunk in _chunks(sites, SITES_PER_QUERY):
                for i, at in enumerate(instants):
                    q = BalanceQuery(
                        as_of_ms=at,
                        sites=chunk,
                        skus=tuple(skus),
                        statuses=() if shape[2] else self.on_hand,
                        group_by=tuple(dims),
                        limit=MAX_ROWS,
                    )
                    for row in await self.history.balance_as_of(q):
                        g = dict(row.group)
                        key = _key(g["site"], g["sku"], g, shape)
                        seen[i][key] = seen[i].get(key, 0) + row.qty
        out: dict[Key, BookWindow] = {}
        for key in set(seen[0]) | set(seen[1]) | set(seen[2]):
            values = [s.get(key, 0) for s in seen]
            out[key] = BookWindow(values[0], min(values), max(values))
        return out


class CellBooks:
    def __init__(self, stock: StockPort, on_hand_statuses: frozenset[str]) -> None:
        self.stock = stock
        self.on_hand = frozenset(on_hand_statuses)

    async def window(self, lines: Sequence[SnapshotLine], as_of_ms: int, skew_ms: int) -> dict[Key, BookWindow]:
        out: dict[Key, BookWindow] = {}
        for shape, (sites, skus) in _groups(lines).items():
            dims = [d for d, on in zip((Dimension.LOT, Dimension.BIN, Dimension.STATUS), shape, strict=True) if on]
            filt = SliceFilter() if shape[2] else SliceFilter(statuses=self.on_hand)
            for chunk in _chunks(sites, SITES_PER_QUERY):
                q = StockQuery(skus=tuple(skus), sites=chunk, filter=filt, group_by=tuple(dims), limit=MAX_ROWS * 10)
                for row in await self.stock.query_stock(q):
                    key = _key(row.site, row.sku, dict(row.row.group), shape)
                    qty = row.row.qty + (out[key].at if key in out else 0)
                    out[key] = BookWindow(qty, qty, qty)
        return out
