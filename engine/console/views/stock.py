"""The stock explorer: the four dimensions (DESIGN.md §2), grouped by any, filtered, rolled up
over the org tree, with a bin tree to drill into.

Two QueryStock calls per page, both as the reader: the table they asked for, and the same
filter summed per site, which the org tree adds up node by node. Both are filtered by the
reader's grants inside the shards, so a node's total never includes a shelf they cannot see.
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


async def stock_page(console: Console, request: Request, page: Page) -> Response:
    form = parse_stock(request.query_params, request.query_params.getlist("group"))

    async def table() -> tuple[pb.QueryStockResponse, ApiProblem | None]:
        try:
            return await console.api.query_stock(page.token, form.request()), None
        except ApiProblem as problem:
            if problem.code in ("FAILED_PRECONDITION", "INVALID_ARGUMENT"):
                return pb.QueryStockResponse(), problem  # e.g. RESULT_TOO_LARGE: the tree still helps
            raise

    # The table grouped per site over every site already holds each site's totals: the org
    # tree is summed from it, one scan of the shards instead of two (the page's main cost).
    if form.covers_every_site():
        sites, (rows, table_problem) = await asyncio.gather(console.api.list_sites(page.token), table())
        if table_problem is None:
            rollup_at_ms, per_site = console.clock_ms(), _per_site(rows.rows)
            console.rollups.put(page.token, form.rollup_request(), rollup_at_ms, per_site)
        else:
            rollup_at_ms, per_site = await _rollup(console, page, form)
    else:
        sites, (rollup_at_ms, per_site), (rows, table_problem) = await asyncio.gather(
            console.api.list_sites(page.token), _rollup(console, page, form), table()
        )
    total = Totals()
    for row in rows.rows:
        total.add(row.row)
    return console.render(
        request,
        page,
        "stock.html",
        form=form,
        tree=org_tree(sites.sites, per_site),
        columns=_columns(form),
        rows=[(_row_values(r, form), r.row) for r in rows.rows],
        total=total,
        table_problem=table_problem,
        rollup_at_ms=rollup_at_ms,
        dimensions=list(STOCK_DIMENSIONS),
    )
