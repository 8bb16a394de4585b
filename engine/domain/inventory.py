"""Plain values for reading and committing inventory across pairs (DESIGN.md §5, §8).

The gateway accepts and answers them, the gRPC servicer maps protobuf to and from them,
and the ingestion entry point builds them: they import nothing but the domain, so every
layer may use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.domain.cell import Dimension, SliceFilter, SliceRow
from engine.domain.grants import ReadScope


@dataclass(frozen=True, slots=True)
class CommitLine:
    """How much of one pair's share of a hold to commit (the rest is released)."""

    sku: str
    site: str
    qty: int


StockKey = tuple[str, str, tuple[tuple[str, str], ...]]  # (sku, site, group): a stock row's place in order

MAX_STOCK_PAGE = 1_000  # rows of one QueryStock page, at most


@dataclass(frozen=True, slots=True)
class StockQuery:
    """QueryStock: many pairs, filtered and grouped by the four dimensions.

    Empty `skus` / `sites` mean all; `org_prefix` keeps sites under an org node.
    `group_by` may include "sku" and "site" (via `by_sku` / `by_site`) besides the
    cell dimensions.
    """

    skus: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    org_prefix: str = ""
    filter: SliceFilter = field(default_factory=SliceFilter)
    group_by: tuple[Dimension, ...] = ()
    by_sku: bool = True
    by_site: bool = True
    bin_depth: int = 0
    limit: int = 10_000
    scope: ReadScope | None = None  # the caller's grants (engine.api.auth injects them); None: all
    # > 0: one page — the first `page_size` rows after `after` (None: from the first row),
    # plus one more when there are more, so the caller knows a next page exists.
    page_size: int = 0
    after: StockKey | None = None


@dataclass(frozen=True, slots=True)
class StockRow:
    sku: str  # "" when not grouped by sku
    site: str  # "" when not grouped by site
    row: SliceRow
