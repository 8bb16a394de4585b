"""Listing holds (issue 17 item 4): which hold parts a shard shows for a ListHolds page.

A hold's parts live in the cells of its pairs, possibly on several shards. Each shard
picks, among its cells, the parts that pass the filter and the caller's grants, and
answers those of the first `limit` hold ids after the page cursor (ids in code-point
order). The gateway merges the shards' answers by hold id and cuts the page: since every
shard answers its `limit` smallest ids, the merged `limit` smallest are exact.

One-call sales (Sell) are not listed: their internal holds are committed at once, no caller
placed them, and GetHold does not read them either.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from engine.domain.catalog import Pair, Site
from engine.domain.commands import SALE_HOLD_SUFFIX, check_id
from engine.domain.errors import FieldViolation, InvalidArgument
from engine.domain.grants import ReadScope, covers
from engine.domain.model import HoldState, HoldView

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1_000  # bounds each shard's answer and the gateway's merge


@dataclass(frozen=True, slots=True)
class HoldFilter:
    """Which hold parts a listing shows; empty fields do not filter."""

    sku: str = ""
    site: str = ""
    states: frozenset[HoldState] = frozenset()
    expiring_before_ms: int = 0  # > 0: only parts that expire (or expired) before this time


@dataclass(frozen=True, slots=True)
class ScanHolds:
    """ListHolds' share for one shard: its matching parts of the first `limit` hold ids
    after `after`, within the caller's grants (None: everything)."""

    filter: HoldFilter
    after: str
    limit: int
    scope: ReadScope | None = None


def check_page_size(page_size: int) -> int:
    """The page size a request asks for, checked; 0 means DEFAULT_PAGE_SIZE."""
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgument([FieldViolation("page_size", f"must be in 0..{MAX_PAGE_SIZE}")])
    return page_size


def check_listing(op: ScanHolds) -> None:
    """Refuse a malformed listing with every field it got wrong (nothing is read)."""
    out: list[FieldViolation] = []
    if op.filter.sku:
        check_id(op.filter.sku, "sku", out)
    if op.filter.site:
        check_id(op.filter.site, "site", out)
    if op.filter.expiring_before_ms < 0:
        out.append(FieldViolation("expiring_before_ms", "must be >= 0 (0: no bound)"))
    if not 1 <= op.limit <= MAX_PAGE_SIZE:
        out.append(FieldViolation("page_size", f"must be in 0..{MAX_PAGE_SIZE}"))
    if out:
        raise InvalidArgument(out)


def part_passes(part: HoldView, filt: HoldFilter) -> bool:
    if filt.states and part.state not in filt.states:
        return False
    return not (filt.expiring_before_ms and part.expires_at_ms >= filt.expiring_before_ms)


def part_visible(part: HoldView, scope: ReadScope | None, org_path: str) -> bool:
    """A part is shown when the grants cover its site, or every bin it took stock from
    (a bin-scoped clerk sees the holds on their shelves, nothing more)."""
    if scope is None:
        return True
    prefixes = scope.bins_for(part.site, org_path)
    if "" in prefixes:
        return True
    if not prefixes or not part.allocations:
        return False
    return all(any(covers(a.bin, p) for p in prefixes) for a in part.allocations)


class HoldSource(Protocol):
    """What a listing needs of a cell: its hold ids and a view of one of them."""

    def hold_ids(self) -> Iterable[str]: ...

    def hold_view(self, hold_id: str, now_ms: int) -> HoldView | None: ...


def scan_holds(
    cells: Mapping[Pair, HoldSource], sites: Mapping[str, Site], op: ScanHolds, now_ms: int
) -> list[HoldView]:
    """This shard's share of a page: matching, visible parts of its `op.limit` smallest
    hold ids above `op.after`, ordered by (hold id, sku, site)."""
    filt = op.filter
    found: dict[str, list[HoldView]] = {}
    for (_sku, site), cell in _cells_of(cells, filt):
        known = sites.get(site)
        org_path = known.org_path if known else ""
        for hold_id in cell.hold_ids():
            if hold_id <= op.after or hold_id.endswith(SALE_HOLD_SUFFIX):
                continue  # before the page, or a one-call sale's internal hold (not a hold anyone placed)
            part = cell.hold_view(hold_id, now_ms)
            if part is None or not part_passes(part, filt) or not part_visible(part, op.scope, org_path):
                continue
            found.setdefault(hold_id, []).append(part)
    page = heapq.nsmallest(op.limit, found)
    return [p for hold_id in page for p in sorted(found[hold_id], key=lambda v: (v.sku, v.site))]


def _cells_of(cells: Mapping[Pair, HoldSource], filt: HoldFilter) -> Iterable[tuple[Pair, HoldSource]]:
    if filt.sku and filt.site:  # one pair: no scan
        cell = cells.get((filt.sku, filt.site))
        return [] if cell is None else [((filt.sku, filt.site), cell)]
    return (
        (pair, cell)
        for pair, cell in cells.items()
        if (not filt.sku or pair[0] == filt.sku) and (not filt.site or pair[1] == filt.site)
    )
