"""The lotwise.v1.Transfers servicer (engine.runtime.gateway.transfers), and the scoped
checks of transfers and org nodes: who may act on which site (DESIGN.md §13).

The desk moves stock as the engine itself (a system flow: its holds and issues are not
the caller's own Reserve or Consume); the caller is checked here, per step and per site:
create needs `move` at the source or `receive` at the destination, approve and reject
`approve_transfer` at the source (and a role the flow names), ship `move` at the source,
receive `receive` at the destination, cancel `move` at the source or being the requester,
a read `read` at either end. The actor recorded is the token's subject.
"""

from __future__ import annotations

import grpc

from engine.api.auth import Authorizer, current_principal
from engine.api.authz import SiteOrgs
from engine.api.gen.lotwise.v1 import transfers_pb2 as tpb
from engine.api.gen.lotwise.v1 import transfers_pb2_grpc as tpb_grpc
from engine.api.servicer import _rpc
from engine.domain.errors import NotFound
from engine.domain.grants import Action, resource_name
from engine.domain.transfer_flow import (
    ReceiptLine,
    Transfer,
    TransferFlow,
    TransferLine,
    overdue,
    page_token_of,
    parse_query,
    state_times,
)
from engine.runtime.gateway.transfers import ANONYMOUS, Actor, StockGateway, TransferDesk

TRANSFERS_SERVICE_NAME = tpb.DESCRIPTOR.services_by_name["Transfers"].full_name  # "lotwise.v1.Transfers"


class Guard:
    """The caller's grants applied to sites (org-subtree grants need the site's org path,
    looked up in the catalog and cached as the gateway's own checks do)."""

    def __init__(self, authorizer: Authorizer | None, gateway: StockGateway) -> None:
        self._authorizer = authorizer
        self._orgs = SiteOrgs(gateway)

    def actor(self) -> Actor:
        principal = current_principal()
        if principal is None:  # authentication is off
            return Actor(ANONYMOUS, unchecked=True)
        return Actor(principal.subject, principal.groups)

    async def require_any(self, *checks: tuple[Action, str]) -> None:
        """Allowed when any one (action, site) is granted; else the first is denied."""
        principal = current_principal()
        if principal is None or principal.permissions is None or self._authorizer is None:
            return  # authentication is off
        perms = principal.permissions
        for action, site in checks:
            org_path = await self._orgs.org_of(site) if perms.orgs else ""
            if perms.allows(action, site, org_path):
                return
        action, site = checks[0]
        raise self._authorizer.denied(principal, action, resource_name(site))

    async def may_read(self, transfer: Transfer) -> bool:
        """Whether the caller may see this transfer: `read` at either end (no denial is
        counted: a listing leaves out what it may not show)."""
        principal = current_principal()
        if principal is None or principal.permissions is None or self._authorizer is None:
            return True
        perms = principal.permissions
        for site in (transfer.from_site, transfer.to_site):
            org_path = await self._orgs.org_of(site) if perms.orgs else ""
            if perms.allows(Action.READ, site, org_path):
                return True
        return False

    def require_global(self, action: Action, resource: str) -> None:
        principal = current_principal()
        if principal is None or principal.permissions is None or self._authorizer is None:
            return
        if not principal.permissions.allows_global(action):
            raise self._authorizer.denied(principal, action, resource)


def transfer_to_pb(transfer: Transfer, now_ms: int, flow: TransferFlow | None = None) -> tpb.Transfer:
    value = transfer.value
    escalated = overdue(flow, transfer, now_ms) if flow is not None else None
    return tpb.Transfer(
        transfer_id=transfer.transfer_id,
        from_site=transfer.from_site,
        to_site=transfer.to_site,
        lines=[
            tpb.TransferLine(sku=x.sku, qty=x.qty, lot_id=x.lot_id, unit_value=x.unit_value) for x in transfer.lines
        ],
        state=transfer.state,
        requested_by=transfer.requested_by,
        eta_ms=transfer.eta_ms,
        hold_id=transfer.hold_id,
        lots=[
            tpb.TransferLot(
                sku=lot.sku,
                lot_id=lot.lot_id,
                shipped_qty=lot.shipped_qty,
                received_qty=lot.received_qty,
                damaged_qty=lot.damaged_qty,
                short_qty=lot.short_qty,
                expires_at_ms=lot.expires_at_ms,
            )
            for lot in transfer.lots
        ],
        steps=[
            tpb.TransferStep(
                action=s.action, state=s.state, actor=s.actor, at_ms=s.at_ms, request_id=s.request_id, note=s.note
            )
            for s in transfer.steps
        ],
        state_times=[
            tpb.StateTime(
                state=t.state, entered_at_ms=t.entered_at_ms, left_at_ms=t.left_at_ms, duration_ms=t.duration_ms
            )
            for t in state_times(transfer, now_ms)
        ],
        org_distance=transfer.org_distance,
        value="" if value is None else str(value),
        escalated_to=escalated.escalate_to if escalated is not None else "",
    )


class TransfersServicer(tpb_grpc.TransfersServicer):
    def __init__(self, desk: TransferDesk, guard: Guard, *, retry_delay_ms: int) -> None:
        self.desk = desk
        self.guard = guard
        self.retry_delay_ms = retry_delay_ms  # read by _rpc when it answers a DomainError

    async def _visible(self, transfer_id: str) -> Transfer:
        """The transfer, when the caller may see it (`read` at either end); NOT_FOUND exactly
        as for an id that does not exist otherwise, so ids cannot be probed for existence."""
        transfer = await self.desk.get(transfer_id)
        if not await self.guard.may_read(transfer):
            raise NotFound("transfer", transfer_id)
        return transfer

    def _reply(self, transfer: Transfer) -> tpb.TransferResponse:
        return tpb.TransferResponse(transfer=transfer_to_pb(transfer, self.desk.now_ms(), self.desk.flow))

    @_rpc
    async def CreateTransfer(
        self, request: tpb.CreateTransferRequest, context: grpc.aio.ServicerContext
    ) -> tpb.TransferResponse:
        await self.guard.require_any((Action.MOVE, request.from_site), (Action.RECEIVE, request.to_site))
        lines = [TransferLine(x.sku, x.qty, x.lot_id, x.unit_value) for x in request.lines]
        transfer = await self.desk.create(
            self.guard.actor(),
            request.request_id,
            request.transfer_id,
            request.from_site,
            request.to_site,
            lines,
            request.note,
        )
        return self._reply(transfer)

    @_rpc
    async def ApproveTransfer(
        self, request: tpb.TransferActionRequest, context: grpc.aio.ServicerContext
    ) -> tpb.TransferResponse:
        transfer = await self._visible(request.transfer_id)
        await self.guard.require_any((Action.APPROVE_TRANSFER, transfer.from_site))
        actor = self.guard.actor()
        return self._reply(await self.desk.approve(actor, request.request_id, request.transfer_id, request.note))

    @_rpc
    async def RejectTransfer(
        self, request: tpb.TransferActionRequest, context: grpc.aio.ServicerContext
    ) -> tpb.TransferResponse:
        transfer = await self._visible(request.transfer_id)
        await self.guard.require_any((Action.APPROVE_TRANSFER, transfer.from_site))
        actor = self.guard.actor()
        return self._reply(await self.desk.reject(actor, request.request_id, request.transfer_id, request.note))

    @_rpc
    async def ShipTransfer(
        self, request: tpb.ShipTransferRequest, context: grpc.aio.ServicerContext
    ) -> tpb.TransferResponse:
        transfer = await self._visible(request.transfer_id)
        await self.guard.require_any((Action.MOVE, transfer.from_site))
        actor = self.guard.actor()
        return self._reply(await self.desk.ship(actor, request.request_id, request.transfer_id, request.eta_ms))

    @_rpc
    async def ReceiveTransfer(
        self, request: tpb.ReceiveTransferRequest, context: grpc.aio.ServicerContext
    ) -> tpb.TransferResponse:
        transfer = await self._visible(request.transfer_id)
        await self.guard.require_any((Action.RECEIVE, transfer.to_site))
        lines = [ReceiptLine(x.sku, x.qty, x.damaged_qty, x.lot_id) for x in request.lines]
        actor = self.guard.actor()
        received = await self.desk.receive(actor, request.request_id, request.transfer_id, lines, request.final)
        return self._reply(received)

    @_rpc
    async def CancelTransfer(
        self, request: tpb.TransferActionRequest, context: grpc.aio.ServicerContext
    ) -> tpb.TransferResponse:
        transfer = await self._visible(request.transfer_id)
        actor = self.guard.actor()
        if actor.subject != transfer.requested_by or actor.subject == ANONYMOUS:
            await self.guard.require_any((Action.MOVE, transfer.from_site))
        return self._reply(await self.desk.cancel(actor, request.request_id, request.transfer_id, request.note))

    @_rpc
    async def GetTransfer(
        self, request: tpb.GetTransferRequest, context: grpc.aio.ServicerContext
    ) -> tpb.TransferResponse:
        transfer = await self._visible(request.transfer_id)
        await self.guard.require_any((Action.READ, transfer.from_site), (Action.READ, transfer.to_site))
        return self._reply(transfer)

    @_rpc
    async def ListTransfers(
        self, request: tpb.ListTransfersRequest, context: grpc.aio.ServicerContext
    ) -> tpb.ListTransfersResponse:
        query = parse_query(
            request.site,
            request.state,
            request.created_after_ms,
            request.created_before_ms,
            request.page_size,
            request.page_token,
        )
        page, more = await self.desk.page(query, self.guard.may_read)  # hidden ones left out before paging
        now = self.desk.now_ms()
        return tpb.ListTransfersResponse(
            transfers=[transfer_to_pb(t, now, self.desk.flow) for t in page],
            next_page_token=page_token_of(page[-1]) if more else "",
        )
