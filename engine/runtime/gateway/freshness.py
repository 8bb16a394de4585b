"""Freshness refusals with their substitutes (issue 15 item 2, DESIGN.md §2).

A cell refuses over-age opened stock with FRESHNESS_EXPIRED naming its own pair only; the
sku master lists the skus that may serve instead. Before the refusal reaches the caller,
the gateway reads that list and each substitute's available-to-promise at the same site
(at most MAX_SUBSTITUTES reads, concurrently) and adds the ones in stock to the refusal.
A substitute that cannot be read (unknown sku, a shard recovering) is left out: the
refusal itself must never fail because of its details.
"""

from __future__ import annotations

import asyncio

from engine.domain.catalog import MAX_SUBSTITUTES, Sku
from engine.domain.cell import SliceFilter
from engine.domain.errors import DomainError, FailedPrecondition
from engine.domain.freshness import with_substitutes
from engine.domain.shard import ReadSku
from engine.runtime.gateway.reads import StockReader
from engine.runtime.gateway.router import Router, raise_if_refused


class FreshnessDesk:
    def __init__(self, router: Router, reads: StockReader) -> None:
        self._router = router
        self._reads = reads

    async def with_substitutes(self, refusal: FailedPrecondition, deadline: float | None) -> FailedPrecondition:
        sku, site = refusal.metadata.get("sku", ""), refusal.metadata.get("site", "")
        try:
            master: Sku = raise_if_refused(await self._router.to_pair(sku, site, ReadSku(sku), deadline))
        except DomainError:
            return with_substitutes(refusal, [])
        others = master.substitutes[:MAX_SUBSTITUTES]
        found = await asyncio.gather(*(self._available(other, site, deadline) for other in others))
        return with_substitutes(refusal, [(other, qty) for other, qty in zip(others, found, strict=True)])

    async def _available(self, sku: str, site: str, deadline: float | None) -> int:
        try:
            return (await self._reads.get_availability(sku, site, (), SliceFilter(), 0, deadline)).available
        except DomainError:
            return 0
