"""The lotwise.v1.Replenishment servicer (engine.replenish.service) and its grants
(DESIGN.md §13): `read` at the site lists and explains a suggestion, `plan` at the site
decides one, and suppliers, factors, data health of every site and a full recompute need
an engine-wide `admin` grant. The planner recorded on a decision is the token's subject.
"""

from __future__ import annotations

import asyncio
import base64
import binascii

import grpc

from engine.api.auth import Authorizer, current_principal
from engine.api.authz import SiteOrgs
from engine.api.gen.lotwise.v1 import replenishment_pb2 as rpb
from engine.api.gen.lotwise.v1 import replenishment_pb2_grpc as rpb_grpc
from engine.api.servicer import _rpc
from engine.domain.errors import FieldViolation, InvalidArgument, invalid
from engine.domain.grants import Action, covers, resource_name
from engine.replenish.health import PairHealth
from engine.replenish.service import ReplenishService
from engine.replenish.store import (
    STATES,
    AdoptionCount,
    Factor,
    LeadTimeSample,
    Panel,
    Suggestion,
    SupplierTerms,
    pair_key,
    pair_of,
)

REPLENISHMENT_SERVICE_NAME = rpb.DESCRIPTOR.services_by_name["Replenishment"].full_name
DEFAULT_PAGE = 100
MAX_PAGE = 500
SCAN_SLICE = 1_024  # index entries a listing takes per step
READ_AHEAD = 16  # suggestion values a listing reads at once
ANONYMOUS = "anonymous"


class SiteGuard:
    """The caller's grants applied to sites (org-subtree grants need the site's org path)."""

    def __init__(self, authorizer: Authorizer | None, gateway: object) -> None:
        self._authorizer = authorizer
        self.orgs = SiteOrgs(gateway)

    def actor(self) -> str:
        principal = current_principal()
        return ANONYMOUS if principal is None else principal.subject

    async def allows(self, action: Action, site: str) -> bool:
        principal = current_principal()
        if principal is None or principal.permissions is None or self._authorizer is None:
            return True  # authentication is off
        perms = principal.permissions
        org_path = await self.orgs.org_of(site) if perms.orgs else ""
        return perms.allows(action, site, org_path)

    async def require(self, action: Action, site: str) -> None:
        if not await self.allows(action, site):
            principal = current_principal()
            if principal is None or self._authorizer is None:  # allows() said yes to these
                return
            raise self._authorizer.denied(principal, action, resource_name(site))

    def require_global(self, action: Action, resource: str) -> None:
        principal = current_principal()
        if principal is None or principal.permissions is None or self._authorizer is None:
            return
        if not principal.permissions.allows_global(action):
            raise self._authorizer.denied(principal, action, resource)


# ---- conversions ----


def _lead_times(samples: tuple[LeadTimeSample, ...]) -> list[rpb.LeadTime]:
    return [rpb.LeadTime(days=s.days, received_at_ms=s.received_at_ms) for s in samples]


def panel_to_pb(p: Panel) -> rpb.Panel:
    return rpb.Panel(
        mean_7d=p.mean_7d,
        mean_14d=p.mean_14d,
        mean_30d=p.mean_30d,
        daily_demand=p.daily_demand,
        method=p.method,
        demand_class=p.demand_class,
        lead_times=_lead_times(p.lead_times),
        lead_time_days=p.lead_time_days,
        lead_time_sigma_days=p.lead_time_sigma_days,
        review_days=p.review_days,
        on_hand=p.on_hand,
        held=p.held,
        in_transit_within=p.in_transit_within,
        in_transit_beyond=p.in_transit_beyond,
        open_todos=p.open_todos,
        inventory_position=p.inventory_position,
        moq=p.moq,
        multiple=p.multiple,
        service_level=p.service_level,
        z=p.z,
        sigma_ltd=p.sigma_ltd,
        safety_stock=p.safety_stock,
        reorder_point=p.reorder_point,
        order_up_to=p.order_up_to,
        factors=[rpb.AppliedFactor(kind=f.kind, multiplier=f.multiplier, source=f.source) for f in p.factors],
        raw_qty=p.raw_qty,
        final_qty=p.final_qty,
        coverage_days=p.coverage_days,
        health_flags=list(p.health_flags),
        censored_days=p.censored_days,
        demand_rate=p.demand_rate,
        buffer=p.buffer,
        seasonal_index=p.seasonal_index,
        factor_multiplier=p.factor_multiplier,
        reason=p.reason,
        spikes_stripped=p.spikes_stripped,
    )


def suggestion_to_pb(s: Suggestion) -> rpb.Suggestion:
    return rpb.Suggestion(
        sku=s.sku,
        site=s.site,
        version=s.version,
        state=s.state,
        qty=s.qty,
        decided_qty=s.decided_qty,
        flagged=s.flagged,
        supplier=s.supplier,
        reason=s.reason,
        decided_by=s.decided_by,
        created_at_ms=s.created_at_ms,
        decided_at_ms=s.decided_at_ms,
        trigger=s.trigger,
        panel=panel_to_pb(s.panel),
        trace=[
            rpb.RuleLine(rule=t.rule, kind=t.kind, field=t.field, before=t.before, after=t.after, note=t.note)
            for t in s.trace
        ],
        below_reorder_point=s.below_reorder_point,
        automatic=s.automatic,
    )


def supplier_to_pb(t: SupplierTerms) -> rpb.Supplier:
    return rpb.Supplier(
        sku=t.sku,
        site=t.site,
        supplier=t.supplier,
        moq=t.moq,
        multiple=t.multiple,
        order_weekdays=list(t.order_weekdays),
        lead_times=_lead_times(t.lead_times),
        auto_order=t.auto_order,
        keeper=t.keeper,
        shelf_life_days=t.shelf_life_days,
        service_level=t.service_level,
        stated_lead_time_days=t.stated_lead_time_days,
    )


def supplier_from_pb(m: rpb.Supplier) -> SupplierTerms:
    return SupplierTerms(
        sku=m.sku,
        site=m.site,
        supplier=m.supplier,
        moq=m.moq,
        multiple=m.multiple,
        order_weekdays=tuple(m.order_weekdays),
        lead_times=tuple(LeadTimeSample(x.days, x.received_at_ms) for x in m.lead_times),
        auto_order=m.auto_order,
        keeper=m.keeper,
        shelf_life_days=m.shelf_life_days,
        service_level=m.service_level,
        stated_lead_time_days=m.stated_lead_time_days,
    )


def health_to_pb(h: PairHealth) -> rpb.PairHealth:
    return rpb.PairHealth(
        site=h.site,
        sku=h.sku,
        documents=h.documents,
        documents_complete=h.documents_complete,
        completeness=h.completeness,
        returns=h.returns,
        returns_matched=h.returns_matched,
        returns_matched_ratio=h.returns_matched_ratio,
        lots=h.lots,
        lots_missing_expiry=h.lots_missing_expiry,
        gifts=h.gifts,
        gifts_without_tax=h.gifts_without_tax,
        ok=h.ok,
        problems=list(h.problems),
    )


def _adoption_row(key: str, c: AdoptionCount) -> rpb.AdoptionRow:
    return rpb.AdoptionRow(
        key=key,
        decided=c.decided,
        accepted=c.accepted,
        overridden=c.overridden,
        rejected=c.rejected,
        acceptance_rate=c.acceptance_rate,
        override_rate=c.override_rate,
    )


def page_token_of(s: Suggestion | SupplierTerms) -> str:
    return base64.urlsafe_b64encode(pair_key(s.sku, s.site).encode()).decode()


def _after_key(token: str, listing: str = "ListSuggestions") -> str:
    if not token:
        return ""
    try:
        key = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid("page_token", f"not a page token of {listing}") from None
    if "\x1f" not in key:
        raise invalid("page_token", f"not a page token of {listing}")
    return key


def _page_size(size: int) -> int:
    if size < 0 or size > MAX_PAGE:
        raise InvalidArgument([FieldViolation("page_size", f"must be within 0..{MAX_PAGE} (0 = {DEFAULT_PAGE})")])
    return size or DEFAULT_PAGE


def _candidates(keys: list[str], after: str, site: str, sku: str) -> list[tuple[str, str]]:
    """(sku, site) of the stored keys past the cursor that the request's filters keep, in order."""
    out = []
    for key in keys:
        if after and key <= after:
            continue
        k_sku, k_site = pair_of(key)
        if (site and k_site != site) or (sku and k_sku != sku):
            continue
        out.append((k_sku, k_site))
    return out


def _check_list(request: rpb.ListSuggestionsRequest) -> int:
    out: list[FieldViolation] = []
    if request.page_size < 0 or request.page_size > MAX_PAGE:
        out.append(FieldViolation("page_size", f"must be within 0..{MAX_PAGE} (0 = {DEFAULT_PAGE})"))
    if request.state and request.state not in STATES:
        out.append(FieldViolation("state", f"one of {', '.join(STATES)} or empty"))
    if out:
        raise InvalidArgument(out)
    return request.page_size or DEFAULT_PAGE


def _check_pair(sku: str, site: str) -> None:
    out = [FieldViolation(name, "required") for name, value in (("sku", sku), ("site", site)) if not value]
    if out:
        raise InvalidArgument(out)


class ReplenishmentServicer(rpb_grpc.ReplenishmentServicer):
    def __init__(self, service: ReplenishService, guard: SiteGuard, *, retry_delay_ms: int) -> None:
        self.service = service
        self.guard = guard
        self.retry_delay_ms = retry_delay_ms  # read by _rpc when it answers a DomainError

    @staticmethod
    def _matches(s: Suggestion, request: rpb.ListSuggestionsRequest) -> bool:
        if request.flagged_only and not s.flagged:
            return False
        if request.state and s.state != request.state:
            return False
        return not (request.open_only and s.state != "open")

    async def _site_visible(self, site: str, request: rpb.ListSuggestionsRequest, seen: dict[str, bool]) -> bool:
        """The reader's grants and the org filter, once per site per listing."""
        if site not in seen:
            in_org = not request.org_prefix or covers(await self.guard.orgs.org_of(site), request.org_prefix)
            seen[site] = in_org and await self.guard.allows(Action.READ, site)
        return seen[site]

    async def _next_slice(
        self, request: rpb.ListSuggestionsRequest, after: str, seen: dict[str, bool]
    ) -> tuple[list[tuple[str, str]], str]:
        """The next slice of index entries the request may list, before any value is read:
        (sku, site) of each, and the key to go on from ("" at the end of the store)."""
        entries = await self.service.store.suggestion_entries(after, SCAN_SLICE, request.site)
        state = request.state or ("open" if request.open_only else "")
        out = []
        for entry in entries:
            sku, site = pair_of(entry.key)
            if request.sku and sku != request.sku:
                continue
            if entry.may_match(state, request.flagged_only) and await self._site_visible(site, request, seen):
                out.append((sku, site))
        return out, entries[-1].key if len(entries) == SCAN_SLICE else ""

    @_rpc
    async def ListSuggestions(
        self, request: rpb.ListSuggestionsRequest, context: grpc.aio.ServicerContext
    ) -> rpb.ListSuggestionsResponse:
        size = _check_list(request)
        after = _after_key(request.page_token)
        page: list[Suggestion] = []
        seen: dict[str, bool] = {}
        # The store's index first (key order; state and flag as written), then the values of
        # the rows that can be on the page, a few at a time: a page reads what it shows (and
        # one more visible row, to know there is a next page), not the store.
        while len(page) <= size:
            candidates, after = await self._next_slice(request, after, seen)
            for start in range(0, len(candidates), READ_AHEAD):
                chunk = candidates[start : start + READ_AHEAD]
                got = await asyncio.gather(*(self.service.store.get_suggestion(k, t) for k, t in chunk))
                page += [s for s in got if s is not None and self._matches(s, request)]
                if len(page) > size:
                    break
            if not after:
                break
        more = len(page) > size
        page = page[:size]
        return rpb.ListSuggestionsResponse(
            suggestions=[suggestion_to_pb(s) for s in page],
            next_page_token=page_token_of(page[-1]) if more else "",
        )

    @_rpc
    async def ExplainSuggestion(
        self, request: rpb.SuggestionRef, context: grpc.aio.ServicerContext
    ) -> rpb.SuggestionResponse:
        _check_pair(request.sku, request.site)
        await self.guard.require(Action.READ, request.site)
        return rpb.SuggestionResponse(
            suggestion=suggestion_to_pb(await self.service.explain(request.sku, request.site))
        )

    async def _decide(
        self, sku: str, site: str, version: int, outcome: str, qty: int, reason: str
    ) -> rpb.SuggestionResponse:
        _check_pair(sku, site)
        await self.guard.require(Action.PLAN, site)
        decided = await self.service.decide(self.guard.actor(), sku, site, version, outcome, qty, reason)
        return rpb.SuggestionResponse(suggestion=suggestion_to_pb(decided))

    @_rpc
    async def AcceptSuggestion(
        self, request: rpb.DecideSuggestionRequest, context: grpc.aio.ServicerContext
    ) -> rpb.SuggestionResponse:
        return await self._decide(request.sku, request.site, request.version, "accepted", 0, request.reason)

    @_rpc
    async def RejectSuggestion(
        self, request: rpb.DecideSuggestionRequest, context: grpc.aio.ServicerContext
    ) -> rpb.SuggestionResponse:
        return await self._decide(request.sku, request.site, request.version, "rejected", 0, request.reason)

    @_rpc
    async def OverrideSuggestion(
        self, request: rpb.OverrideSuggestionRequest, context: grpc.aio.ServicerContext
    ) -> rpb.SuggestionResponse:
        return await self._decide(request.sku, request.site, request.version, "overridden", request.qty, request.reason)

    @_rpc
    async def GetAdoption(
        self, request: rpb.GetAdoptionRequest, context: grpc.aio.ServicerContext
    ) -> rpb.GetAdoptionResponse:
        self.guard.require_global(Action.READ, "replenishment:adoption")
        a = await self.service.adoption()
        return rpb.GetAdoptionResponse(
            by_planner=[_adoption_row(k, v) for k, v in sorted(a.by_planner.items())],
            by_rule=[_adoption_row(k, v) for k, v in sorted(a.by_rule.items())],
            total=_adoption_row("", a.total),
        )

    @_rpc
    async def PutSupplier(
        self, request: rpb.PutSupplierRequest, context: grpc.aio.ServicerContext
    ) -> rpb.SupplierResponse:
        self.guard.require_global(Action.ADMIN, resource_name(request.supplier.site))
        stored = await self.service.put_supplier(supplier_from_pb(request.supplier))
        return rpb.SupplierResponse(supplier=supplier_to_pb(stored))

    @_rpc
    async def GetSupplier(
        self, request: rpb.GetSupplierRequest, context: grpc.aio.ServicerContext
    ) -> rpb.SupplierResponse:
        _check_pair(request.sku, request.site)
        await self.guard.require(Action.READ, request.site)
        return rpb.SupplierResponse(supplier=supplier_to_pb(await self.service.get_supplier(request.sku, request.site)))

    @_rpc
    async def ListSuppliers(
        self, request: rpb.ListSuppliersRequest, context: grpc.aio.ServicerContext
    ) -> rpb.ListSuppliersResponse:
        size = _page_size(request.page_size)
        after = _after_key(request.page_token, "ListSuppliers")
        page: list[SupplierTerms] = []
        more = False
        for sku, site in _candidates(await self.service.store.supplier_keys(), after, request.site, ""):
            if not await self.guard.allows(Action.READ, site):
                continue
            t = await self.service.store.get_supplier(sku, site)
            if t is None or (request.supplier and t.supplier != request.supplier):
                continue
            if len(page) == size:
                more = True
                break
            page.append(t)
        return rpb.ListSuppliersResponse(
            suppliers=[supplier_to_pb(t) for t in page], next_page_token=page_token_of(page[-1]) if more else ""
        )

    @_rpc
    async def GetDataHealth(
        self, request: rpb.GetDataHealthRequest, context: grpc.aio.ServicerContext
    ) -> rpb.GetDataHealthResponse:
        if request.site:
            await self.guard.require(Action.READ, request.site)
        pairs = [
            h
            for h in await self.service.data_health(request.site, request.sku)
            if await self.guard.allows(Action.READ, h.site)
        ]
        t = self.service.config.thresholds
        return rpb.GetDataHealthResponse(
            pairs=[health_to_pb(h) for h in pairs],
            min_completeness=t.min_completeness,
            min_returns_matched=t.min_returns_matched,
        )

    @_rpc
    async def RecomputeAll(
        self, request: rpb.RecomputeAllRequest, context: grpc.aio.ServicerContext
    ) -> rpb.RecomputeAllResponse:
        self.guard.require_global(Action.ADMIN, "replenishment:recompute")
        r = await self.service.recompute_all("recompute")
        return rpb.RecomputeAllResponse(
            pairs=r.pairs,
            suggestions_changed=r.changed,
            below_reorder_point=r.below_reorder_point,
            duration_ms=r.duration_ms,
        )

    @_rpc
    async def PutFactors(
        self, request: rpb.PutFactorsRequest, context: grpc.aio.ServicerContext
    ) -> rpb.PutFactorsResponse:
        self.guard.require_global(Action.ADMIN, "replenishment:factors")
        factors = [
            Factor(f.factor_id, f.kind, f.sku, f.site, f.from_day, f.to_day, f.multiplier, f.source)
            for f in request.factors
        ]
        return rpb.PutFactorsResponse(stored=await self.service.put_factors(factors))
