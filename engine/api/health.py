"""The lotwise.v1.Alerts and lotwise.v1.StockHealth servicers (engine.health), with the
caller's grants applied per site (DESIGN.md §13):

- alerts: listed when the caller may `read` the alert's site (engine-wide alerts, with no
  site, need `read` over the whole engine), so a clerk sees only alerts in their scope;
  acknowledge and close need `count` there;
- snapshots, shelf counts: `count` at every site they name; the expiry sweep: `count`
  over the whole engine; reports and proposals: `read`; approving or rejecting a proposal:
  `adjust` at its site, by a person other than its proposer (the actor is the token's
  subject).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from engine.api.auth import Authorizer, current_principal
from engine.api.authz import SiteOrgs
from engine.api.gen.lotwise.v1 import alerts_pb2 as apb
from engine.api.gen.lotwise.v1 import alerts_pb2_grpc as apb_grpc
from engine.api.gen.lotwise.v1 import health_pb2 as hpb
from engine.api.gen.lotwise.v1 import health_pb2_grpc as hpb_grpc
from engine.api.registration import add_service
from engine.api.servicer import _rpc
from engine.api.transfers import Guard
from engine.domain.grants import Action
from engine.health.alerts import MAX_LIST_LIMIT, Alert, AlertQuery, check_query
from engine.health.desk import AlertDesk
from engine.health.proposals import Proposal
from engine.health.reconcile import SnapshotLine, StockSnapshot, check_snapshot
from engine.health.services import ProposalDesk, Reconciled, Reconciler, ShelfDesk, key_text
from engine.health.shelf import ShelfCount, ShelfLine, check_counts
from engine.health.sweep import ExpiryWatch

DEFAULT_LIMIT = 100


class SiteGuard:
    """Guard's checks, plus a silent "may the caller see this site" for listings."""

    def __init__(self, guard: Guard, orgs: SiteOrgs) -> None:
        self.guard = guard
        self._orgs = orgs

    async def allows(self, action: Action, site: str) -> bool:
        principal = current_principal()
        if principal is None or principal.permissions is None:
            return True  # authentication is off
        perms = principal.permissions
        if not site:
            return perms.allows_global(action)
        org_path = await self._orgs.org_of(site) if perms.orgs else ""
        return perms.allows(action, site, org_path)

    async def require(self, action: Action, site: str) -> None:
        if site:
            await self.guard.require_any((action, site))
        else:
            self.guard.require_global(action, "alerts:engine")

    def subject(self) -> str:
        return self.guard.actor().subject


def alert_to_pb(a: Alert) -> apb.Alert:
    s = a.scope
    return apb.Alert(
        alert_id=a.alert_id,
        kind=a.kind,
        severity=a.severity,
        scope=apb.AlertScope(org=s.org, site=s.site, bin=s.bin, sku=s.sku, lot_id=s.lot),
        subject=a.subject,
        state=a.state,
        summary=a.summary,
        count=a.count,
        opened_at_ms=a.opened_at_ms,
        last_seen_ms=a.last_seen_ms,
        evidence=list(a.evidence),
        acknowledged_by=a.acknowledged_by,
        acknowledged_at_ms=a.acknowledged_at_ms,
        closed_by=a.closed_by,
        closed_at_ms=a.closed_at_ms,
        note=a.note,
    )


class AlertsServicer(apb_grpc.AlertsServicer):
    def __init__(self, desk: AlertDesk, guard: SiteGuard, *, retry_delay_ms: int) -> None:
        self.desk = desk
        self.guard = guard
        self.retry_delay_ms = retry_delay_ms  # read by _rpc

    @_rpc
    async def ListAlerts(
        self, request: apb.ListAlertsRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListAlertsResponse:
        query = AlertQuery(
            tuple(request.kinds),
            tuple(request.states),
            request.site,
            request.min_severity,
            request.limit or DEFAULT_LIMIT,
        )
        check_query(query)  # INVALID_ARGUMENT naming every bad field, before any grant is looked at
        if request.site:
            await self.guard.require(Action.READ, request.site)  # asking for a site one may not see is denied
        # Read up to the store's page bound, then filter by grants: what the caller may not
        # see never takes a place on the page.
        wide = AlertQuery(query.kinds, query.states, query.site, query.min_severity, MAX_LIST_LIMIT)
        shown: list[Alert] = []
        for alert in await self.desk.list(wide):
            if await self.guard.allows(Action.READ, alert.scope.site):
                shown.append(alert)
                if len(shown) == query.limit:
                    break
        return apb.ListAlertsResponse(alerts=[alert_to_pb(a) for a in shown])

    @_rpc
    async def GetAlert(self, request: apb.GetAlertRequest, context: grpc.aio.ServicerContext) -> apb.AlertResponse:
        alert = await self.desk.get(request.alert_id)
        await self.guard.require(Action.READ, alert.scope.site)
        return apb.AlertResponse(alert=alert_to_pb(alert))

    @_rpc
    async def AcknowledgeAlert(
        self, request: apb.AlertActionRequest, context: grpc.aio.ServicerContext
    ) -> apb.AlertResponse:
        alert = await self.desk.get(request.alert_id)
        await self.guard.require(Action.COUNT, alert.scope.site)
        done = await self.desk.acknowledge(request.alert_id, self.guard.subject(), request.note)
        return apb.AlertResponse(alert=alert_to_pb(done))

    @_rpc
    async def CloseAlert(self, request: apb.AlertActionRequest, context: grpc.aio.ServicerContext) -> apb.AlertResponse:
        alert = await self.desk.get(request.alert_id)
        await self.guard.require(Action.COUNT, alert.scope.site)
        done = await self.desk.close(request.alert_id, self.guard.subject(), request.note)
        return apb.AlertResponse(alert=alert_to_pb(done))


def report_to_pb(r: Reconciled) -> hpb.ReconciliationReport:
    rep = r.report
    return hpb.ReconciliationReport(
        snapshot_id=rep.snapshot_id,
        source=r.source,
        as_of_ms=rep.as_of_ms,
        lines=rep.lines,
        matched=rep.by_class["match"],
        timing=rep.by_class["timing"],
        within_tolerance=rep.by_class["within_tolerance"],
        real=rep.by_class["real"],
        record_accuracy=rep.record_accuracy,
        value_at_risk=rep.value_at_risk,
        pairs=[
            hpb.PairSummary(
                site=p.site,
                sku=p.sku,
                lines=p.lines,
                timing=p.by_class["timing"],
                within_tolerance=p.by_class["within_tolerance"],
                real=p.by_class["real"],
                abs_diff=p.abs_diff,
                value_at_risk=p.value_at_risk,
            )
            for p in rep.pairs
        ],
        differences=[
            hpb.Difference(
                site=d.key[0],
                sku=d.key[1],
                lot_id=d.key[2],
                bin=d.key[3],
                status=d.key[4],
                external_qty=d.external_qty,
                book_qty=d.book_qty,
                diff=d.diff,
                classification=d.klass,
                value=d.value,
                streak=r.streaks.get(key_text(d.key), 0),
            )
            for d in r.differences
        ],
        proposal_ids=list(r.proposal_ids),
        alert_ids=list(r.alert_ids),
    )


def proposal_to_pb(p: Proposal) -> hpb.Proposal:
    return hpb.Proposal(**{f: getattr(p, f) for f in Proposal.__slots__})


def shelf_line_to_pb(line: ShelfLine) -> hpb.ShelfLine:
    c = line.count
    return hpb.ShelfLine(
        site=c.site, bin=c.bin, sku=c.sku, counted=c.counted, book_qty=line.book_qty, confidence=c.confidence
    )


class StockHealthServicer(hpb_grpc.StockHealthServicer):
    def __init__(
        self,
        reconciler: Reconciler,
        proposals: ProposalDesk,
        shelf: ShelfDesk,
        watch: ExpiryWatch,
        guard: SiteGuard,
        *,
        retry_delay_ms: int,
    ) -> None:
        self.reconciler = reconciler
        self.proposals = proposals
        self.shelf = shelf
        self.watch = watch
        self.guard = guard
        self.retry_delay_ms = retry_delay_ms

    async def _require_sites(self, action: Action, sites: set[str]) -> None:
        for site in sorted(sites):
            await self.guard.require(action, site)

    @_rpc
    async def SubmitStockSnapshot(
        self, request: hpb.SubmitStockSnapshotRequest, context: grpc.aio.ServicerContext
    ) -> hpb.ReconciliationReport:
        lines = tuple(SnapshotLine(x.site, x.sku, x.qty, x.lot_id, x.bin, x.status) for x in request.lines)
        snapshot = StockSnapshot(request.snapshot_id, request.source, request.as_of_ms, lines)
        check_snapshot(snapshot)  # a malformed snapshot is INVALID_ARGUMENT whoever sends it
        await self._require_sites(Action.COUNT, {x.site for x in lines})
        return report_to_pb(await self.reconciler.submit(snapshot))

    @_rpc
    async def GetReconciliationReport(
        self, request: hpb.GetReconciliationReportRequest, context: grpc.aio.ServicerContext
    ) -> hpb.ReconciliationReport:
        found = await self.reconciler.get(request.snapshot_id)
        await self._require_sites(Action.READ, set(found.sites))
        return report_to_pb(found)

    @_rpc
    async def ListProposals(
        self, request: hpb.ListProposalsRequest, context: grpc.aio.ServicerContext
    ) -> hpb.ListProposalsResponse:
        shown = [
            p
            for p in await self.proposals.list(request.site, request.state)
            if await self.guard.allows(Action.READ, p.site)
        ]
        return hpb.ListProposalsResponse(proposals=[proposal_to_pb(p) for p in shown])

    @_rpc
    async def ApproveAdjustment(
        self, request: hpb.ProposalActionRequest, context: grpc.aio.ServicerContext
    ) -> hpb.ProposalResponse:
        p = await self.proposals.get(request.proposal_id)
        await self.guard.require(Action.ADJUST, p.site)
        done = await self.proposals.approve(request.proposal_id, self.guard.subject(), request.note)
        return hpb.ProposalResponse(proposal=proposal_to_pb(done))

    @_rpc
    async def RejectAdjustment(
        self, request: hpb.ProposalActionRequest, context: grpc.aio.ServicerContext
    ) -> hpb.ProposalResponse:
        p = await self.proposals.get(request.proposal_id)
        await self.guard.require(Action.ADJUST, p.site)
        done = await self.proposals.reject(request.proposal_id, self.guard.subject(), request.note)
        return hpb.ProposalResponse(proposal=proposal_to_pb(done))

    @_rpc
    async def SubmitShelfCounts(
        self, request: hpb.SubmitShelfCountsRequest, context: grpc.aio.ServicerContext
    ) -> hpb.ShelfCountsResponse:
        counts = tuple(ShelfCount(c.site, c.bin, c.sku, c.counted, c.confidence) for c in request.counts)
        check_counts(counts)
        await self._require_sites(Action.COUNT, {c.site for c in counts})
        outcome = await self.shelf.submit(request.count_id, request.source, counts)
        r = outcome.result
        return hpb.ShelfCountsResponse(
            out_of_stock=[shelf_line_to_pb(x) for x in r.out_of_stock],
            low_facing=[shelf_line_to_pb(x) for x in r.low_facing],
            unconfirmed=[shelf_line_to_pb(x) for x in r.unconfirmed],
            proposal_ids=list(outcome.proposal_ids),
        )

    @_rpc
    async def RunExpirySweep(
        self, request: hpb.RunExpirySweepRequest, context: grpc.aio.ServicerContext
    ) -> hpb.RunExpirySweepResponse:
        await self.guard.require(Action.COUNT, "")
        result = await self.watch.sweep()
        return hpb.RunExpirySweepResponse(
            rows=result.rows,
            promotion_tasks=result.tasks,
            status_moves=result.moves,
            refused=result.refused,
            timers=self.watch.timers(),
        )


@dataclass(frozen=True, slots=True)
class HealthDesks:
    """What the stock-health services serve (engine.bootstrap.health builds them)."""

    alerts: AlertDesk
    reconciler: Reconciler
    proposals: ProposalDesk
    shelf: ShelfDesk
    watch: ExpiryWatch


def add_health_services(
    server: grpc.aio.Server, desks: HealthDesks, authorizer: Authorizer | None, gateway: Any, *, retry_delay_ms: int
) -> list[str]:
    """Register lotwise.v1.Alerts and lotwise.v1.StockHealth; their full names."""
    guard = SiteGuard(Guard(authorizer, gateway), SiteOrgs(gateway))
    alerts = AlertsServicer(desks.alerts, guard, retry_delay_ms=retry_delay_ms)
    health = StockHealthServicer(
        desks.reconciler, desks.proposals, desks.shelf, desks.watch, guard, retry_delay_ms=retry_delay_ms
    )
    return [add_service(apb, "Alerts", alerts, server), add_service(hpb, "StockHealth", health, server)]
