"""The books a snapshot is compared with (engine.health.reconcile): the balance of each
snapshot key as of the snapshot's instant, and the range it went through within ± skew.

- `HistoryBooks`: ClickHouse history's balance as of a time (DESIGN §8). The timing
  window is every balance the books went through within ± skew of the snapshot's instant:
  the balance as of as_of − skew, then each movement of the window in journal order (a
  receipt and a sale between two instants explain a WMS figure no single instant shows).
  A window busier than MAX_WINDOW_MOVEMENTS falls back to three instants (as_of − skew,
  as_of, as_of + skew), a narrower window: it may call `real` what was timing, never the
  reverse (the next cycle looks again).
- `CellBooks`: the cells now (QueryStock), when history is off (journal in memory): no
  as-of, so nothing is explained as timing; reconciliation still classifies and proposes.

Snapshot lines may leave lot, bin or status empty (the WMS books the pair, or the site, as
a whole); lines are grouped by which of them they name and each group is asked once,
grouped by exactly those dimensions, in chunks of sites (each answer is bounded)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from engine.domain.cell import Dimension, SliceFilter
from engine.domain.history import MAX_PAGE_SIZE, MAX_ROWS, BalanceQuery, HistoryDimension, MovementQuery
from engine.domain.inventory import StockQuery
from engine.domain.model import Movement, QuantKey
from engine.domain.ports import HistoryStore
from engine.health.reconcile import BookWindow, Key, SnapshotLine
from engine.health.sweep import StockPort

SITES_PER_QUERY = 50
MAX_WINDOW_MOVEMENTS = 200_000  # movements read for one snapshot's window; past it: three instants
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
        start, end = max(as_of_ms - skew_ms, 0), as_of_ms + skew_ms
        moved = await self._movements(lines, start, end) if skew_ms else []
        if moved is None:  # too busy a window to walk: three instants
            return await self._three_instants(lines, as_of_ms, start, end)
        [opening] = await self._balances(lines, (start,))
        shapes = tuple(_groups(lines))
        wanted = {line.key for line in lines} | set(opening)
        balance = dict(opening)
        low, high, at = dict(opening), dict(opening), dict(opening)
        for m in moved:
            for key, delta in _deltas(m, shapes, self.on_hand):
                if key not in wanted:
                    continue
                qty = balance.get(key, 0) + delta
                balance[key] = qty
                low[key], high[key] = min(low.get(key, 0), qty), max(high.get(key, 0), qty)
                if m.at_ms <= as_of_ms:
                    at[key] = qty
        return {k: BookWindow(at.get(k, 0), low.get(k, 0), high.get(k, 0)) for k in set(low) | set(high)}

    async def _movements(self, lines: Sequence[SnapshotLine], start: int, end: int) -> list[Movement] | None:
        """The movements of the snapshot's pairs in (start, end], in journal order; None
        past MAX_WINDOW_MOVEMENTS."""
        pairs = {(line.site, line.sku) for line in lines}
        out: list[Movement] = []
        cursor, read = "", 0
        while True:
            q = MovementQuery(from_ms=start + 1, to_ms=end + 1, page_size=MAX_PAGE_SIZE, cursor=cursor)
            page = await self.history.movements(q)
            read += len(page.records)
            if read > MAX_WINDOW_MOVEMENTS:
                return None
            out.extend(r.movement for r in page.records if (r.movement.site, r.movement.sku) in pairs)
            cursor = page.next_cursor
            if not cursor:
                return out

    async def _three_instants(
        self, lines: Sequence[SnapshotLine], as_of_ms: int, start: int, end: int
    ) -> dict[Key, BookWindow]:
        seen = await self._balances(lines, (as_of_ms, start, end))
        out: dict[Key, BookWindow] = {}
        for key in set(seen[0]) | set(seen[1]) | set(seen[2]):
            values = [s.get(key, 0) for s in seen]
            out[key] = BookWindow(values[0], min(values), max(values))
        return out

    async def _balances(self, lines: Sequence[SnapshotLine], instants: tuple[int, ...]) -> list[dict[Key, int]]:
        """The balance of every snapshot key as of each instant."""
        seen: list[dict[Key, int]] = [{} for _ in instants]
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
        return seen


def _deltas(m: Movement, shapes: tuple[Shape, ...], on_hand: tuple[str, ...]) -> Iterable[tuple[Key, int]]:
    """What `m` does to the snapshot keys of each shape: −qty to its source quant's keys,
    +qty to its destination's (a status not on hand counts only where a line names it)."""
    for bucket, sign in ((m.src, -1), (m.dst, 1)):
        if not isinstance(bucket, QuantKey) or not m.qty:
            continue
        g = {"lot": bucket.lot_id, "bin": bucket.bin, "status": bucket.status}
        for shape in shapes:
            if shape[2] or bucket.status in on_hand:
                yield _key(m.site, m.sku, g, shape), sign * m.qty


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
