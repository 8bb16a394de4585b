"""The stock explorer: the four dimensions (DESIGN.md §2), grouped by any, filtered, rolled up
over the org tree, with a bin tree to drill into.

QueryStock calls as the reader: one page of the table they asked for (PAGE_ROWS rows, then a
`next page` link carrying QueryStock's cursor), the same filter summed per site, which the org
tree adds up node by node, and — when the table has more than one page — the same filter summed
into one row, the table's exact total. All are filtered by the reader's grants inside the
shards, so no page, node or total includes a shelf they cannot see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.console.api import ApiProblem
from engine.console.forms import DIMENSION_NAMES, STOCK_DIMENSIONS, StockForm, parse_stock
from engine.console.pages import Console, Page
from engine.console.rollups import Totals

MAX_TREE_NODES = 2_000  # org nodes and sites drawn at most; the rest is summed in their parents


@dataclass(slots=True)
class OrgNode:
    """A node of the org tree as the reader sees it: its path, its sites, its totals."""

    name: str
    path: str
    totals: Totals = field(default_factory=Totals)
    children: dict[str, OrgNode] = field(default_factory=dict)
    sites: list[tuple[str, Totals]] = field(default_factory=list)


def _per_site(rows: Iterable[pb.StockRow]) -> dict[str, Totals]:
    per_site: dict[str, Totals] = {}
    for row in rows:
        per_site.setdefault(row.site, Totals()).add(row.row)
    return per_site


async def _rollup(console: Console, page: Page, form: StockForm) -> tuple[int, dict[str, Totals]]:
    request = form.rollup_request()
    now_ms = console.clock_ms()
    kept = console.rollups.get(page.token, request, now_ms)
    if kept is not None:
        return kept
    answer = await console.api.query_stock(page.token, request)
    per_site = _per_site(answer.rows)
    console.rollups.put(page.token, request, now_ms, per_site)
    return now_ms, per_site


def org_tree(sites: Iterable[pb.Site], per_site: dict[str, Totals]) -> OrgNode:
    """The org tree over the reader's sites, each node's totals the sum of the sites under it."""
    root = OrgNode("", "")
    drawn = 0
    for site in sites:
        totals = per_site.get(site.site, Totals())
        node = root
        _add(node.totals, totals)
        for part in [p for p in site.org_path.split("/") if p]:
            child = node.children.get(part)
            if child is None:
                if drawn >= MAX_TREE_NODES:
                    break
                child = node.children[part] = OrgNode(part, f"{node.path}/{part}" if node.path else part)
                drawn += 1
            node = child
            _add(node.totals, totals)
        if drawn < MAX_TREE_NODES:
            node.sites.append((site.site, totals))
            drawn += 1
    return root


def _add(into: Totals, other: Totals) -> None:
    into.qty += other.qty
    into.held += other.held
    into.available += other.available
    into.on_hand += other.on_hand


def _columns(form: StockForm) -> list[str]:
    return [*(["sku"] if form.by_sku else []), *(["site"] if form.by_site else []), *form.group]


def _row_values(row: pb.StockRow, form: StockForm) -> dict[str, str]:
    values = {"sku": row.sku, "site": row.site}
    for group_value in row.row.group:
        values[DIMENSION_NAMES.get(group_value.dimension, "?")] = group_value.value
    return values


async def _query(
    console: Console, page: Page, request: pb.QueryStockRequest
) -> tuple[pb.QueryStockResponse, ApiProblem | None]:
    """One QueryStock as the reader; the caller's mistake is shown beside the table, not as a page."""
    try:
        return await console.api.query_stock(page.token, request), None
    except ApiProblem as problem:
        if problem.code in ("FAILED_PRECONDITION", "INVALID_ARGUMENT"):
            return pb.QueryStockResponse(), problem  # e.g. a stale cursor: the tree still helps
        raise


def _sum(rows: Iterable[pb.StockRow]) -> Totals:
    total = Totals()
    for row in rows:
        total.add(row.row)
    return total


async def _table_and_rollup(
    console: Console, page: Page, form: StockForm
) -> tuple[pb.ListSitesResponse, pb.QueryStockResponse, ApiProblem | None, int, dict[str, Totals]]:
    """The table page, the sites and the org tree's per-site totals.

    A whole table (one page) per site over every site already holds each site's totals: the
    org tree is summed from it, one scan of the shards instead of two (the page's main cost)."""
    if form.covers_every_site() and not form.page:
        sites, (rows, problem) = await asyncio.gather(
            console.api.list_sites(page.token), _query(console, page, form.request())
        )
        if problem is None and not rows.next_page_token:
            rollup_at_ms, per_site = console.clock_ms(), _per_site(rows.rows)
            console.rollups.put(page.token, form.rollup_request(), rollup_at_ms, per_site)
        else:
            rollup_at_ms, per_site = await _rollup(console, page, form)
        return sites, rows, problem, rollup_at_ms, per_site
    sites, (rollup_at_ms, per_site), (rows, problem) = await asyncio.gather(
        console.api.list_sites(page.token), _rollup(console, page, form), _query(console, page, form.request())
    )
    return sites, rows, problem, rollup_at_ms, per_site


async def _grand_total(console: Console, page: Page, form: StockForm, rows: pb.QueryStockResponse) -> Totals:
    """The total over every page of the table, live: the page's own sum when it is the whole
    table, else the same filter summed by the shards into one row (exact, not a page's sum)."""
    if not form.page and not rows.next_page_token:
        return _sum(rows.rows)
    answer, problem = await _query(console, page, form.total_request())
    return Totals() if problem is not None else _sum(answer.rows)


async def stock_page(console: Console, request: Request, page: Page) -> Response:
    form = parse_stock(request.query_params, request.query_params.getlist("group"))
    sites, rows, table_problem, rollup_at_ms, per_site = await _table_and_rollup(console, page, form)
    total = _sum(rows.rows) if table_problem is not None else await _grand_total(console, page, form, rows)
    return console.render(
        request,
        page,
        "stock.html",
        form=form,
        tree=org_tree(sites.sites, per_site),
        columns=_columns(form),
        rows=[(_row_values(r, form), r.row) for r in rows.rows],
        total=total,
        next_page=rows.next_page_token,
        table_problem=table_problem,
        rollup_at_ms=rollup_at_ms,
        dimensions=list(STOCK_DIMENSIONS),
    )
