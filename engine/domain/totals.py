"""Per-site totals a shard keeps as its cells change (issue 17): whole-estate stock reads —
the org tree's roll-ups, per site, per site and status or owner — become lookups instead of
a slice of every cell.

Each cell's contribution is its slice grouped by (status, owner), kept with the engine time
until which it stays exact: a slice depends on time only through holds passing their TTL
(they stop counting at once) and lots passing their expiry (they stop being available), so
it is valid until the earlier of the two. A cell is recomputed when it changes (the shard
marks it on every change, `ShardCore._before_change`) or when that time comes; the sums per
(site, status, owner) are updated by the difference. Nothing here is journaled or
snapshotted: it is derived from the cells, rebuilt lazily after recovery, on the first read.

Exactness is checked against the full scan (`ShardCore.scan_cells`) in
tests/unit/test_shard_totals.py, by hypothesis, over random commands and clocks.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine.domain.catalog import Pair
from engine.domain.cell import Cell, Dimension, SliceFilter
from engine.domain.commands import owner_matches
from engine.domain.model import NO_EXPIRY_MS

TOTAL_DIMENSIONS = frozenset({Dimension.STATUS, Dimension.OWNER})
_BY = (Dimension.STATUS, Dimension.OWNER)
_FOREVER_MS = 2**62

# (status, owner, qty, held, available, on_hand, earliest expiry ms or 0)
TotalRow = tuple[str, str, int, int, int, int, int]


def answers_from_totals(group_by: tuple[Dimension, ...], filt: SliceFilter, by_sku: bool, skus: Iterable[str]) -> bool:
    """Whether a scan is a sum of the kept totals: grouped by status and/or owner at most,
    filtered by status and/or owner at most, not per sku."""
    return (
        not by_sku
        and not any(True for _ in skus)
        and set(group_by) <= TOTAL_DIMENSIONS
        and len(set(group_by)) == len(group_by)
        and filt == SliceFilter(statuses=filt.statuses, owner=filt.owner)
    )


@dataclass(frozen=True, slots=True)
class CellTotals:
    """One cell's contribution, exact from `at_ms` until `until_ms` unless the cell changes."""

    site: str
    rows: tuple[TotalRow, ...]
    since_ms: int  # out of stock since (the cell's zero row), when it has no quant left
    at_ms: int
    until_ms: int


def cell_totals(cell: Cell, site: str, now_ms: int) -> CellTotals:
    """The cell's slice by (status, owner) as of now_ms, and until when it holds."""
    rows = tuple(
        (r.group[0][1], r.group[1][1], r.qty, r.held, r.available, r.on_hand, r.earliest_expiry_ms)
        for r in cell.slice(now_ms, _BY)
    )
    since = 0
    if not rows:
        plain = cell.slice(now_ms, ())
        since = plain[0].out_of_stock_since_ms if plain else 0
    until = _FOREVER_MS
    ledger = cell.ledger
    for part in ledger.active.values():  # a hold stops counting when its TTL passes
        if now_ms < part.expires_at_ms < until:
            until = part.expires_at_ms
    for key in ledger.quants:
        expiry = ledger.lots[key.lot_id].effective_expiry_ms(cell.opened_shelf_life_ms)
        if expiry != NO_EXPIRY_MS and now_ms < expiry < until:
            until = expiry
    return CellTotals(site, rows, since, now_ms, until)


@dataclass(slots=True)
class _Sum:
    """Σ over the cells of one (site, status, owner), with the multiset of their earliest
    expiries (a minimum cannot be un-added)."""

    cells: int = 0
    qty: int = 0
    held: int = 0
    available: int = 0
    on_hand: int = 0
    expiries: dict[int, int] = field(default_factory=dict)

    def add(self, row: TotalRow, sign: int) -> None:
        self.cells += sign
        self.qty += sign * row[2]
        self.held += sign * row[3]
        self.available += sign * row[4]
        self.on_hand += sign * row[5]
        if row[6]:
            _count(self.expiries, row[6], sign)

    def earliest(self) -> int:
        return min(self.expiries) if self.expiries else 0


def _count(bag: dict[int, int], value: int, sign: int) -> None:
    left = bag.get(value, 0) + sign
    if left:
        bag[value] = left
    else:
        del bag[value]


@dataclass(slots=True)
class _Site:
    sums: dict[tuple[str, str], _Sum] = field(default_factory=dict)
    since: dict[int, int] = field(default_factory=dict)  # zero rows' times, as a multiset
    pairs: dict[Pair, None] = field(default_factory=dict)


class SiteTotals:
    """The kept totals of one shard's cells; `refresh` before reading, with the cells."""

    def __init__(self, pairs: Iterable[Pair]) -> None:
        self._entries: dict[Pair, CellTotals] = {}
        self._dirty: dict[Pair, None] = dict.fromkeys(pairs)
        self._sites: dict[str, _Site] = {}
        self._due: list[tuple[int, Pair]] = []  # (until_ms, pair), stale items skipped
        self._last_ms = -_FOREVER_MS

    def mark(self, pair: Pair) -> None:
        """The cell is about to change (or appear, or leave): recompute it on the next read."""
        self._dirty[pair] = None

    def refresh(self, cells: Mapping[Pair, Cell], now_ms: int) -> int:
        """Recompute what changed or timed out since the last read; returns how many cells."""
        if now_ms < self._last_ms:  # engine time went back: what was exact then may not be
            self._dirty.update(dict.fromkeys(self._entries))
        self._last_ms = now_ms
        due = self._due
        while due and due[0][0] <= now_ms:
            until, pair = heapq.heappop(due)
            entry = self._entries.get(pair)
            if entry is not None and entry.until_ms == until:
                self._dirty[pair] = None
        done = len(self._dirty)
        for pair in self._dirty:
            self._replace(pair, cells.get(pair), now_ms)
        self._dirty.clear()
        return done

    def _replace(self, pair: Pair, cell: Cell | None, now_ms: int) -> None:
        old = self._entries.pop(pair, None)
        if old is not None:
            self._apply(pair, old, -1)
        if cell is None:
            return
        new = cell_totals(cell, pair[1], now_ms)
        self._entries[pair] = new
        self._apply(pair, new, 1)
        if new.until_ms < _FOREVER_MS:
            heapq.heappush(self._due, (new.until_ms, pair))

    def _apply(self, pair: Pair, entry: CellTotals, sign: int) -> None:
        site = self._sites.get(entry.site)
        if site is None:
            site = self._sites[entry.site] = _Site()
        if sign > 0:
            site.pairs[pair] = None
        else:
            site.pairs.pop(pair, None)
        for row in entry.rows:
            key = (row[0], row[1])
            total = site.sums.get(key)
            if total is None:
                total = site.sums[key] = _Sum()
            total.add(row, sign)
            if not total.cells:
                del site.sums[key]
        if entry.since_ms:
            _count(site.since, entry.since_ms, sign)
        if not site.pairs:
            del self._sites[entry.site]

    def sites(self) -> list[str]:
        return list(self._sites)

    def pairs_of(self, site: str) -> list[Pair]:
        found = self._sites.get(site)
        return list(found.pairs) if found is not None else []

    def rows_of(
        self, site: str, group_by: tuple[Dimension, ...], filt: SliceFilter
    ) -> list[tuple[tuple[tuple[str, str], ...], list[int]]]:
        """The site's totals by `group_by`, as (group, [qty, held, available, on_hand,
        earliest expiry, out of stock since]) — what `shard.add_row` sums."""
        found = self._sites.get(site)
        if found is None:
            return []
        out: dict[tuple[tuple[str, str], ...], list[int]] = {}
        for (status, owner), total in found.sums.items():
            if filt.statuses and status not in filt.statuses:
                continue
            if not owner_matches(owner, filt.owner):
                continue
            values = {Dimension.STATUS: status, Dimension.OWNER: owner}
            group = tuple((d.value, values[d]) for d in group_by)
            acc = out.setdefault(group, [0, 0, 0, 0, 0, 0])
            acc[0] += total.qty
            acc[1] += total.held
            acc[2] += total.available
            acc[3] += total.on_hand
            earliest = total.earliest()
            if earliest and (not acc[4] or earliest < acc[4]):
                acc[4] = earliest
        # A cell with no quant left answers a zero row (since when) only in an unfiltered,
        # ungrouped view (engine.domain.cell.Cell._with_zero_rows).
        if not group_by and not filt.statuses and not filt.owner and found.since:
            acc = out.setdefault((), [0, 0, 0, 0, 0, 0])
            acc[5] = max(found.since)  # the sums above carry no zero rows
        return list(out.items())
