"""Authorization of every RPC: the gateway, the history store and the dead-letter desk as
the caller may see and touch them (DESIGN.md §13).

The servicers call these wrappers exactly as they call the real objects, so every path
into the engine — unary calls, Execute / Stream batches, Import chunks — passes the same
checks, taken from the call's PRINCIPAL (engine.api.auth). Writes are checked against
(action, site, bin) before they are sent; reads carry the caller's ReadScope down to the
shard scan, which applies it before summing (never a post-filter of totals). A method not
listed here needs an engine-wide `admin` grant, so a new RPC is closed until it is mapped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from engine.api.auth import PRINCIPAL, Authorizer, Principal
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension, SliceFilter
from engine.domain.commands import (
    Adjust,
    CellMutation,
    ChangeStatus,
    Consume,
    Count,
    DeviceOp,
    ExpireLots,
    FreezeStock,
    Move,
    OpenLot,
    Receive,
    ScrapOverAge,
)
from engine.domain.errors import FailedPrecondition, PermissionDenied
from engine.domain.freshness import is_freshness_expired, without_substitutes
from engine.domain.grants import ADMIN_EVERYWHERE, NO_ACTIONS, Action, Permissions, ReadScope, narrow, resource_name
from engine.domain.history import BalanceQuery, ExpiryQuery, MovementQuery, SeriesQuery, TurnoverQuery
from engine.domain.hold_listing import ScanHolds
from engine.domain.inventory import CommitLine, StockQuery, StockRow
from engine.domain.model import Finance, HoldView
from engine.domain.shard import add_row, new_total, row_of
from engine.runtime.types import Availability, HoldLine, HoldSummary

SITE_ORGS_TTL_S = 5.0  # how stale a site's org path may be when another gateway moved it


def caller() -> Principal:
    principal = PRINCIPAL.get()
    if principal is None or principal.permissions is None:
        # The interceptor sets it on every authenticated call; reaching here without one is a wiring bug,
        # refused rather than served with no checks.
        raise PermissionDenied("no authenticated caller")
    return principal


def _perms() -> Permissions:
    principal = PRINCIPAL.get()
    return ADMIN_EVERYWHERE if principal is None or principal.permissions is None else principal.permissions


class SiteOrgs:
    """Each site's org path, for org-subtree grants; refreshed from the catalog when a site
    is unknown or the copy is older than SITE_ORGS_TTL_S, and at once on PutSite here."""

    def __init__(self, gateway: Any) -> None:
        self._gateway = gateway
        self._orgs: dict[str, str] = {}
        self._loaded_at = float("-inf")

    async def org_of(self, site: str) -> str:
        now = time.monotonic()
        stale = site not in self._orgs or now - self._loaded_at > SITE_ORGS_TTL_S
        if stale and now - self._loaded_at > 0.05:  # at most 20 refreshes a second, whatever is asked
            sites = await self._gateway.list_sites("")
            self._orgs = {s.site: s.org_path for s in sites}
            self._loaded_at = now
        return self._orgs.get(site, "")

    def put(self, site: Site) -> None:
        self._orgs[site.site] = site.org_path


class AuthorizingGateway:
    """The gateway as the caller of the current RPC may use it."""

    def __init__(self, inner: Any, authorizer: Authorizer) -> None:
        self._inner = inner
        self._authorizer = authorizer
        self.site_orgs = SiteOrgs(inner)

    # ---- checks ----

    async def _require(self, action: Action, site: str, bin_: str | None = None) -> None:
        principal = PRINCIPAL.get()
        if principal is None or principal.permissions is None:
            return  # auth is off, or the engine calls itself
        perms = principal.permissions
        if perms.everywhere & action or perms.sites.get(site, NO_ACTIONS) & action:
            return  # no org path needed: the common case costs two lookups
        org_path = await self.site_orgs.org_of(site) if perms.orgs else ""
        if not perms.allows(action, site, org_path, bin_):
            raise self._authorizer.denied(principal, action, resource_name(site, bin_))

    async def _screened(self, refusal: FailedPrecondition) -> FailedPrecondition:
        """A freshness refusal names substitutes in stock at its site: only for a caller who
        may read that site's stock (a clerk allowed to reserve on one shelf may not)."""
        principal = PRINCIPAL.get()
        if not is_freshness_expired(refusal) or principal is None or principal.permissions is None:
            return refusal
        site = refusal.metadata.get("site", "")
        perms = principal.permissions
        org_path = await self.site_orgs.org_of(site) if perms.orgs else ""
        return refusal if perms.allows(Action.READ, site, org_path) else without_substitutes(refusal)

    def _require_global(self, action: Action, resource: str) -> None:
        principal = PRINCIPAL.get()
        if principal is None or principal.permissions is None or principal.permissions.allows_global(action):
            return
        raise self._authorizer.denied(principal, action, resource)

    def read_scope(self, action: Action = Action.READ) -> ReadScope | None:
        """None: everything (auth off or an engine-wide grant); else the caller's scope."""
        principal = PRINCIPAL.get()
        if principal is None or principal.permissions is None:
            return None
        scope = principal.permissions.read_scope(action)
        if scope.everything:
            return None
        if not (scope.orgs or scope.sites or scope.bins):
            raise self._authorizer.denied(principal, action, "site:*")
        return scope

    # ---- catalog ----

    async def put_sku(self, sku: Sku, deadline: float | None = None) -> None:
        self._require_global(Action.ADMIN, f"sku:{sku.sku}")
        await self._inner.put_sku(sku, deadline)

    async def put_site(self, site: Site, deadline: float | None = None) -> None:
        self._require_global(Action.ADMIN, resource_name(site.site))
        await self._inner.put_site(site, deadline)
        self.site_orgs.put(site)

    async def list_sites(self, org_prefix: str = "") -> list[Site]:
        sites: list[Site] = await self._inner.list_sites(org_prefix)
        scope = self.read_scope()
        if scope is None:
            return sites
        return [s for s in sites if scope.bins_for(s.site, s.org_path)]

    async def list_skus(self) -> list[Sku]:
        self.read_scope()  # any read grant: skus are the catalog, not stock
        skus: list[Sku] = await self._inner.list_skus()
        return skus

    # ---- stock commands ----

    async def execute(self, cmd: CellMutation, deadline: float | None = None) -> Any:
        await self._authorize(cmd)
        try:
            return await self._inner.execute(cmd, deadline)
        except FailedPrecondition as refusal:
            raise await self._screened(refusal) from None

    async def _authorize(self, cmd: CellMutation) -> None:
        match cmd:
            case DeviceOp():  # a device's offline op needs what the op itself needs
                await self._authorize(cmd.command)
            case Receive():
                await self._require(Action.RECEIVE, cmd.site, cmd.bin)
            case Move():
                await self._require(Action.MOVE, cmd.site, cmd.from_bin)
                await self._require(Action.MOVE, cmd.site, cmd.to_bin)
            case ChangeStatus():
                await self._require(Action.MOVE, cmd.site, cmd.bin)
            case Consume():
                await self._require(Action.RESERVE, cmd.site, cmd.bin_prefix or None)
            case Adjust():
                action = Action.COUNT if cmd.reason == "count" else Action.ADJUST
                await self._require(action, cmd.site, cmd.bin)
            case Count():  # a whole-bin count reaches every bin under its own
                await self._require(Action.COUNT, cmd.site, cmd.bin)
            case OpenLot():  # a scan at the station, like a status change of the lot
                await self._require(Action.MOVE, cmd.site, None)
            case ExpireLots():  # status moves of expired stock anywhere in the site
                await self._require(Action.MOVE, cmd.site, None)
            case FreezeStock():  # a temperature excursion: status moves under the bin
                await self._require(Action.MOVE, cmd.site, cmd.bin)
            case ScrapOverAge():  # stock leaves the books: an adjustment
                await self._require(Action.ADJUST, cmd.site, None)
            case _:
                self._require_global(Action.ADMIN, type(cmd).__name__)

    async def reserve(
        self,
        request_id: str,
        hold_id: str,
        lines: Sequence[HoldLine],
        ttl_ms: int,
        doc_ref: str = "",
        deadline: float | None = None,
        *,
        finance: Finance | None = None,
    ) -> HoldSummary:
        for line in lines:
            await self._require(Action.RESERVE, line.site, line.line.bin_prefix or None)
        try:
            summary: HoldSummary = await self._inner.reserve(
                request_id, hold_id, lines, ttl_ms, doc_ref, deadline, finance=finance
            )
        except FailedPrecondition as refusal:
            raise await self._screened(refusal) from None
        return summary

    async def sell(
        self,
        request_id: str,
        lines: Sequence[HoldLine],
        doc_ref: str = "",
        deadline: float | None = None,
        *,
        finance: Finance | None = None,
    ) -> HoldSummary:
        for line in lines:
            await self._require(Action.RESERVE, line.site, line.line.bin_prefix or None)
        try:
            summary: HoldSummary = await self._inner.sell(request_id, lines, doc_ref, deadline, finance=finance)
        except FailedPrecondition as refusal:
            raise await self._screened(refusal) from None
        return summary

    async def _require_hold(self, hold_id: str, action: Action) -> None:
        """A hold is the caller's to read / resolve when every part is within its grants."""
        if PRINCIPAL.get() is None or _perms().everywhere & action:
            return
        summary: HoldSummary = await self._inner.get_hold(hold_id)
        for part in summary.parts:
            await self._require_part(part, action)

    async def _require_part(self, part: HoldView, action: Action) -> None:
        if not part.allocations:
            await self._require(action, part.site)
        for alloc in part.allocations:
            await self._require(action, part.site, alloc.bin)

    async def commit(
        self,
        request_id: str,
        hold_id: str,
        lines: Sequence[CommitLine] | None = None,
        doc_ref: str = "",
        deadline: float | None = None,
        *,
        finance: Finance | None = None,
    ) -> HoldSummary:
        await self._require_hold(hold_id, Action.RESERVE)
        summary: HoldSummary = await self._inner.commit(request_id, hold_id, lines, doc_ref, deadline, finance=finance)
        return summary

    async def release(
        self,
        request_id: str,
        hold_id: str,
        doc_ref: str = "",
        deadline: float | None = None,
        *,
        finance: Finance | None = None,
    ) -> HoldSummary:
        await self._require_hold(hold_id, Action.RESERVE)
        summary: HoldSummary = await self._inner.release(request_id, hold_id, doc_ref, deadline, finance=finance)
        return summary

    async def get_hold(self, hold_id: str) -> HoldSummary:
        summary: HoldSummary = await self._inner.get_hold(hold_id)
        if PRINCIPAL.get() is not None and not _perms().everywhere & Action.READ:
            for part in summary.parts:
                await self._require_part(part, Action.READ)
        return summary

    async def list_holds(self, q: ScanHolds, deadline: float | None = None) -> tuple[list[HoldSummary], str]:
        """Scoped like QueryStock: the shards drop parts outside the caller's grants."""
        scope = self.read_scope()
        page: tuple[list[HoldSummary], str] = await self._inner.list_holds(
            q if scope is None else replace(q, scope=scope), deadline
        )
        return page

    # ---- reads ----

    async def get_availability(
        self,
        sku: str,
        site: str,
        group_by: Sequence[Dimension] = (),
        filt: SliceFilter = SliceFilter(),
        bin_depth: int = 0,
        deadline: float | None = None,
    ) -> Availability:
        scope = self.read_scope()
        if scope is None:
            return await self._inner.get_availability(sku, site, group_by, filt, bin_depth, deadline)
        org_path = await self.site_orgs.org_of(site) if scope.orgs else ""
        prefixes = [p for g in scope.bins_for(site, org_path) if (p := narrow(g, filt.bin_prefix)) is not None]
        if not prefixes:
            await self._require(Action.READ, site, filt.bin_prefix)  # raises: nothing of this site is visible
        parts = [
            await self._inner.get_availability(
                sku, site, group_by, filt if p == filt.bin_prefix else replace(filt, bin_prefix=p), bin_depth, deadline
            )
            for p in prefixes
        ]
        return _merge_availability(parts) if len(parts) > 1 else parts[0]

    async def query_stock(self, q: StockQuery, deadline: float | None = None) -> list[StockRow]:
        scope = self.read_scope()
        rows: list[StockRow] = await self._inner.query_stock(q if scope is None else replace(q, scope=scope), deadline)
        return rows

    # ---- admin ----

    async def pin(self, sku: str, site: str) -> str:
        self._require_global(Action.ADMIN, resource_name(site))
        pinned: str = await self._inner.pin(sku, site)
        return pinned

    def __getattr__(self, name: str) -> Any:
        """Everything else (verify, shard stats, snapshots, directory, ...) is engine-wide admin."""
        target = getattr(self._inner, name)
        if not callable(target) or name.startswith("_"):
            return target

        def admin_only(*args: Any, **kwargs: Any) -> Any:
            self._require_global(Action.ADMIN, f"engine:{name}")
            return target(*args, **kwargs)

        return admin_only


def _merge_availability(parts: list[Availability]) -> Availability:
    """Several disjoint bin prefixes of one pair, summed by group (they share no quant)."""
    totals: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for part in parts:
        for row in part.rows:
            add_row(totals.setdefault(row.group, new_total()), row)
    rows = tuple(row_of(group, total) for group, total in sorted(totals.items()))
    first = parts[0]
    return Availability(first.sku, first.site, sum(r.available for r in rows), rows, max(p.as_of_ms for p in parts))


class ScopedHistory:
    """The history store as the caller may read it: site lists narrowed to whole sites the
    caller may read before the query runs (bin-only grants do not open history: the history
    store is not scoped below the site)."""

    def __init__(self, inner: Any, gateway: AuthorizingGateway, authorizer: Authorizer) -> None:
        self._inner = inner
        self._gateway = gateway
        self._authorizer = authorizer

    async def _sites(self, asked: Sequence[str]) -> tuple[str, ...] | None:
        """The sites the query may cover (None: all); refuses a site asked for outside them."""
        scope = self._gateway.read_scope()
        if scope is None:
            return None
        visible = []
        for site in asked or [s.site for s in await self._gateway.list_sites("")]:
            if scope.bins_for(site, await self._gateway.site_orgs.org_of(site)) == ("",):
                visible.append(site)
            elif asked:
                raise self._authorizer.denied(caller(), Action.READ, f"history:{resource_name(site)}")
        if not visible:
            raise self._authorizer.denied(caller(), Action.READ, "history:site:*")
        return tuple(visible)

    async def _one_site(self, site: str) -> None:
        if self._gateway.read_scope() is not None:
            if not site:
                raise self._authorizer.denied(caller(), Action.READ, "history:site:*")
            await self._sites((site,))

    async def balance_as_of(self, q: BalanceQuery) -> Any:
        sites = await self._sites(q.sites)
        return await self._inner.balance_as_of(q if sites is None else replace(q, sites=sites))

    async def turnover(self, q: TurnoverQuery) -> Any:
        sites = await self._sites(q.sites)
        return await self._inner.turnover(q if sites is None else replace(q, sites=sites))

    async def near_expiry(self, q: ExpiryQuery) -> Any:
        sites = await self._sites(q.sites)
        return await self._inner.near_expiry(q if sites is None else replace(q, sites=sites))

    async def movements(self, q: MovementQuery) -> Any:
        await self._one_site(q.site)
        return await self._inner.movements(q)

    async def consumption(self, q: SeriesQuery) -> Any:
        await self._one_site(q.site)
        return await self._inner.consumption(q)

    def __getattr__(self, name: str) -> Any:
        """Lot traces (they cross sites) and anything else: engine-wide read."""
        target = getattr(self._inner, name)
        if not callable(target) or name.startswith("_"):
            return target

        def wide(*args: Any, **kwargs: Any) -> Any:
            if self._gateway.read_scope() is not None:
                raise self._authorizer.denied(caller(), Action.READ, f"history:{name}")
            return target(*args, **kwargs)

        return wide


class AdminOnly:
    """The dead-letter desk: engine-wide admin only. A dead letter is bytes that failed to
    decode, so which site it is about cannot be known before it is shown."""

    def __init__(self, inner: Any, gateway: AuthorizingGateway, what: str) -> None:
        self._inner = inner
        self._gateway = gateway
        self._what = what

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target) or name.startswith("_"):
            return target

        def admin_only(*args: Any, **kwargs: Any) -> Any:
            self._gateway._require_global(Action.ADMIN, f"{self._what}:{name}")
            return target(*args, **kwargs)

        return admin_only
