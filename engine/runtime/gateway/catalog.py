"""The catalog through the gateway: every shard keeps the whole catalog (skus, sites and
their org tree), so a put goes to all of them and a read to any one (DESIGN.md §3, §6)."""

from __future__ import annotations

from engine.domain.catalog import Site, Sku, validate_site, validate_sku
from engine.domain.shard import PutSite, PutSku, ReadCatalog
from engine.runtime.gateway.router import Router, raise_if_refused


class CatalogService:
    def __init__(self, router: Router) -> None:
        self._router = router

    async def put_sku(self, sku: Sku, deadline: float | None) -> None:
        validate_sku(sku)
        for result in await self._router.broadcast(PutSku(sku), deadline):
            raise_if_refused(result)

    async def put_site(self, site: Site, deadline: float | None) -> None:
        validate_site(site)
        for result in await self._router.broadcast(PutSite(site), deadline):
            raise_if_refused(result)

    async def read(self, org_prefix: str = "") -> tuple[list[Site], list[Sku]]:
        """Sites under `org_prefix` (all with ""), and every sku."""
        first = self._router.directory.shard_names[0]
        catalog: tuple[list[Site], list[Sku]] = raise_if_refused(
            await self._router.to_shard(first, ReadCatalog(org_prefix), None)
        )
        return catalog
