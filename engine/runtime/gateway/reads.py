"""Reads and fan-out: one pair's availability, and stock queries rolled up over shards
(DESIGN.md §8). Reads go through the same per-shard queues as writes, so a read sees
every write its caller was answered before it."""

from __future__ import annotations

from collections.abc import Sequence

from engine.domain.cell import Dimension, SliceFilter
from engine.domain.commands import MAX_BIN_DEPTH, check_id
from engine.domain.errors import FieldViolation, InvalidArgument
from engine.domain.inventory import MAX_STOCK_PAGE, StockQuery, StockRow
from engine.domain.shard import ReadSlice, ScanCells, add_row, new_total, result_too_large, row_of
from engine.runtime.gateway.router import Router, raise_if_refused
from engine.runtime.types import Availability

MAX_QUERY_ROWS = 100_000  # rows of one stock query, at most

_GroupKey = tuple[str, str, tuple[tuple[str, str], ...]]  # (sku, site, group)


class StockReader:
    def __init__(self, router: Router) -> None:
        self._router = router

    async def get_availability(
        self,
        sku: str,
        site: str,
        group_by: Sequence[Dimension],
        filt: SliceFilter,
        bin_depth: int,
        deadline: float | None,
    ) -> Availability:
        out: list[FieldViolation] = []
        check_id(sku, "sku", out)
        check_id(site, "site", out)
        if not 0 <= bin_depth <= MAX_BIN_DEPTH:
            out.append(FieldViolation("bin_depth", f"must be in 0..{MAX_BIN_DEPTH}"))
        if out:
            raise InvalidArgument(out)
        read = ReadSlice(sku, site, tuple(group_by), filt, bin_depth)
        as_of_ms, rows = raise_if_refused(await self._router.to_pair(sku, site, read, deadline))
        return Availability(sku, site, sum(r.available for r in rows), tuple(rows), as_of_ms)

    async def query_stock(self, q: StockQuery, deadline: float | None) -> list[StockRow]:
        """Every shard scans its cells; the rows are summed here by the query's grouping.
        More groups than `q.limit` is refused, never truncated. Paged (`q.page_size`): each
        shard sends its first page_size + 1 rows after the cursor, fully summed; any row of
        the merged first page_size + 1 has at most that many before it in every shard, so it
        arrived whole from each shard that has it."""
        if not 0 <= q.page_size <= MAX_STOCK_PAGE:
            raise InvalidArgument([FieldViolation("page_size", f"must be in 0..{MAX_STOCK_PAGE}")])
        if not 1 <= q.limit <= MAX_QUERY_ROWS:
            raise InvalidArgument([FieldViolation("limit", f"must be in 1..{MAX_QUERY_ROWS}")])
        if not 0 <= q.bin_depth <= MAX_BIN_DEPTH:
            raise InvalidArgument([FieldViolation("bin_depth", f"must be in 0..{MAX_BIN_DEPTH}")])
        scan = ScanCells(
            frozenset(q.skus),
            frozenset(q.sites),
            q.org_prefix,
            q.group_by,
            q.filter,
            q.bin_depth,
            q.limit,
            q.by_sku,
            q.by_site,
            q.scope,
            q.page_size + 1 if q.page_size else 0,
            q.after,
        )
        merged: dict[_GroupKey, list[int]] = {}
        if q.page_size:
            for result in await self._router.broadcast(scan, deadline):
                for sku, site, row in raise_if_refused(result):
                    add_row(merged.setdefault((sku, site, row.group), new_total()), row)
            first = sorted(merged.items())[: q.page_size + 1]
            return [StockRow(sku, site, row_of(group, total)) for (sku, site, group), total in first]
        for result in await self._router.broadcast(scan, deadline):
            for sku, site, row in raise_if_refused(result):
                total = merged.get((sku, site, row.group))
                if total is None:
                    if len(merged) >= q.limit:
                        raise result_too_large(q.limit)
                    total = merged[(sku, site, row.group)] = new_total()
                add_row(total, row)
        return [StockRow(sku, site, row_of(group, total)) for (sku, site, group), total in sorted(merged.items())]
