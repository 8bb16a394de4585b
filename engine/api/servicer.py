"""The Inventory gRPC servicer: protobuf in, the gateway, protobuf out (DESIGN.md §7, §12).

It holds no state of its own. Every method converts the request (refusing malformed
ones with INVALID_ARGUMENT), hands the caller's deadline to the gateway so a request
that can no longer be answered in time is never applied, and turns a DomainError into
a rich status. Anything else is a bug: logged here with its traceback under an incident
id, answered INTERNAL with that id only.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import grpc
import structlog

from engine.api import convert
from engine.api.batch import BARRIER, BatchRunner, CommandHandler, Footprint, Undecodable, serve_stream
from engine.api.errors import DEFAULT_RETRY_DELAY_MS, internal_status, to_grpc_status
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc
from engine.api.registration import add_service
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension, SliceFilter
from engine.domain.commands import (
    Adjusted,
    CellMutation,
    CellMutationReply,
    Consumed,
    Counted,
    DeviceOpDone,
    LotOpened,
    LotsExpired,
    Moved,
    Received,
    Scrapped,
    StatusChanged,
    validate,
)
from engine.domain.errors import DomainError, FieldViolation, InvalidArgument
from engine.domain.hold_listing import ScanHolds
from engine.domain.inventory import CommitLine, StockQuery, StockRow
from engine.domain.model import Finance
from engine.domain.statuses import DEFAULT_DICTIONARY, StatusDictionary
from engine.runtime.types import Availability, HoldLine, HoldSummary

log = structlog.get_logger("lotwise.api")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Inventory"].full_name  # "lotwise.v1.Inventory"

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class InventoryGateway(Protocol):
    """What the servicer needs of engine.runtime.gateway.Gateway (fakes implement it too)."""

    async def put_sku(self, sku: Sku, deadline: float | None = None) -> None: ...

    async def put_site(self, site: Site, deadline: float | None = None) -> None: ...

    async def list_sites(self, org_prefix: str = "") -> list[Site]: ...

    async def list_skus(self) -> list[Sku]: ...

    async def execute(self, cmd: CellMutation, deadline: float | None = None) -> CellMutationReply: ...

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
    ) -> HoldSummary: ...

    async def commit(
        self,
        request_id: str,
        hold_id: str,
        lines: Sequence[CommitLine] | None = None,
        doc_ref: str = "",
        deadline: float | None = None,
        *,
        finance: Finance | None = None,
    ) -> HoldSummary: ...

    async def release(
        self,
        request_id: str,
        hold_id: str,
        doc_ref: str = "",
        deadline: float | None = None,
        *,
        finance: Finance | None = None,
    ) -> HoldSummary: ...

    async def get_hold(self, hold_id: str) -> HoldSummary: ...

    async def list_holds(self, q: ScanHolds, deadline: float | None = None) -> tuple[list[HoldSummary], str]: ...

    async def sell(
        self,
        request_id: str,
        lines: Sequence[HoldLine],
        doc_ref: str = "",
        deadline: float | None = None,
        *,
        finance: Finance | None = None,
    ) -> HoldSummary: ...

    async def get_availability(
        self,
        sku: str,
        site: str,
        group_by: Sequence[Dimension] = (),
        filt: SliceFilter = SliceFilter(),
        bin_depth: int = 0,
        deadline: float | None = None,
    ) -> Availability: ...

    async def query_stock(self, q: StockQuery, deadline: float | None = None) -> list[StockRow]: ...


def call_deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The caller's deadline as an absolute time.monotonic() value (None: no deadline)."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return time.monotonic() + max(remaining, 0.0)


Handler = Callable[[Any, _Req, grpc.aio.ServicerContext], Awaitable[_Resp]]


def _rpc(fn: Handler[_Req, _Resp]) -> Handler[_Req, _Resp]:
    """Answer a DomainError with its rich status and a bug with INTERNAL (no traceback sent)."""

    @functools.wraps(fn)
    async def serve(self: InventoryServicer, request: _Req, context: grpc.aio.ServicerContext) -> _Resp:
        if isinstance(request, Undecodable):  # see add_inventory_service
            await context.abort_with_status(request.status())
        try:
            return await fn(self, request, context)
        except DomainError as err:
            status = to_grpc_status(err, retry_delay_ms=self.retry_delay_ms)
        except Exception:  # a bug; asyncio.CancelledError (a BaseException) passes through
            incident_id = uuid.uuid4().hex[:16]
            log.exception("rpc failed", method=fn.__name__, incident_id=incident_id)
            status = internal_status(incident_id)
        await context.abort_with_status(status)
        raise AssertionError("abort_with_status returned")  # it always raises

    return serve


# A batch's commands that go to one cell, by their oneof field name.
_SINGLE_CELL = frozenset({"receive", "move", "change_status", "consume", "adjust"})


def _device_op_pairs(ops: Sequence[pb.DeviceOperation]) -> set[tuple[str, str, str]]:
    """The pairs a device upload touches (an op without a command touches none: refused)."""
    pairs = set()
    for op in ops:
        kind = op.WhichOneof("op")
        if kind is not None:
            inner = getattr(op, kind)
            pairs.add(("pair", inner.sku, inner.site))
    return pairs


# The commands `_execute` sends; an alias because inside the class these names are the RPC methods.
Mutation = CellMutation


class InventoryServicer(pb_grpc.InventoryServicer):
    """lotwise.v1.Inventory over a gateway (local shards or a Ray cluster).

    Every command has one handler taking (request, deadline); the unary method and a
    batch's command both call it, so the two paths cannot drift apart.
    """

    def __init__(
        self,
        gateway: InventoryGateway,
        *,
        statuses: StatusDictionary | None = None,
        retry_delay_ms: int = DEFAULT_RETRY_DELAY_MS,
    ) -> None:
        self.gateway = gateway
        # Filters are checked against the engine's dictionary so a typo is refused, not empty.
        known = getattr(gateway, "statuses", None)
        self.statuses = statuses or (known if isinstance(known, StatusDictionary) else DEFAULT_DICTIONARY)
        self.retry_delay_ms = retry_delay_ms
        self.batches = BatchRunner(self._command_handlers(), retry_delay_ms=retry_delay_ms, footprint=self._footprint)
        # The gateway's cache of hold headers (engine.runtime.gateway.Gateway.cached_hold_pairs):
        # a fake without one makes every command naming a hold a barrier.
        self._hold_pairs: Callable[[str], tuple[tuple[str, str], ...] | None] = getattr(
            gateway, "cached_hold_pairs", lambda _: None
        )

    def _command_handlers(self) -> dict[str, CommandHandler]:
        """The handler of each kind of a batch's Command, by its oneof field name."""
        return {
            "put_sku": self._put_sku,
            "put_site": self._put_site,
            "receive": self._receive,
            "move": self._move,
            "change_status": self._change_status,
            "reserve": self._reserve,
            "commit": self._commit,
            "release": self._release,
            "consume": self._consume,
            "adjust": self._adjust,
            "get_hold": self._get_hold,
            "get_availability": self._get_availability,
            "sell": self._sell,
            "apply_device_ops": self._apply_device_ops,
        }

    # ---- batches ----

    def _footprint(self, command: pb.Command) -> Footprint:
        """Which pairs and holds a batch's command touches, and whether the gateway queues
        all its shard ops before it first suspends (engine.api.batch: order in a batch)."""
        kind = command.WhichOneof("command")
        if kind in _SINGLE_CELL:
            request = getattr(command, kind)
            return Footprint(frozenset([("pair", request.sku, request.site)]), eager=True)
        if kind == "reserve":
            r = command.reserve
            pairs = {("pair", line.sku, line.site) for line in r.lines}
            return Footprint(frozenset([*pairs, ("hold", r.hold_id or r.request_id)]), eager=True)
        if kind == "sell":
            pairs = {("pair", line.sku, line.site) for line in command.sell.lines}
            return Footprint(frozenset(pairs), eager=len(pairs) == 1)  # several pairs: reserve, then commit
        if kind == "get_availability":
            a = command.get_availability
            return Footprint(frozenset([("pair", a.sku, a.site)]))
        if kind == "apply_device_ops":  # one op after the other: it waits for each (not eager)
            ops = command.apply_device_ops.ops
            return Footprint(frozenset(_device_op_pairs(ops)))
        if kind in ("commit", "release", "get_hold"):
            hold_id = getattr(command, kind).hold_id
            known = self._hold_pairs(hold_id)
            if known is None:
                # Its pairs are unknown until its header is read (or its reserve, earlier in
                # this batch, is done): order it against everything.
                return BARRIER
            keys = frozenset([("hold", hold_id), *(("pair", sku, site) for sku, site in known)])
            return Footprint(keys, eager=len(known) == 1 and kind != "get_hold")
        return BARRIER  # the catalog (put_sku, put_site): every shard

    async def Execute(self, request: pb.CommandBatch | Undecodable, context: grpc.aio.ServicerContext) -> pb.ReplyBatch:
        if isinstance(request, Undecodable):
            await context.abort_with_status(request.status())
            raise AssertionError("abort_with_status returned")  # it always raises
        refusal = self.batches.check(request)
        if refusal is not None:
            await context.abort_with_status(refusal)
        return await self.batches.run(request, call_deadline(context))

    async def Stream(self, request_iterator: AsyncIterator[pb.CommandBatch], context: grpc.aio.ServicerContext) -> None:
        await serve_stream(self.batches, request_iterator, context)

    # ---- catalog ----

    @_rpc
    async def PutSku(self, request: pb.PutSkuRequest, context: grpc.aio.ServicerContext) -> pb.PutSkuResponse:
        return await self._put_sku(request, call_deadline(context))

    async def _put_sku(self, request: pb.PutSkuRequest, deadline: float | None) -> pb.PutSkuResponse:
        sku = convert.put_sku_from_pb(request)
        await self.gateway.put_sku(sku, deadline=deadline)
        return pb.PutSkuResponse(sku=convert.sku_to_pb(sku))

    @_rpc
    async def PutSite(self, request: pb.PutSiteRequest, context: grpc.aio.ServicerContext) -> pb.PutSiteResponse:
        return await self._put_site(request, call_deadline(context))

    async def _put_site(self, request: pb.PutSiteRequest, deadline: float | None) -> pb.PutSiteResponse:
        site = convert.put_site_from_pb(request)
        await self.gateway.put_site(site, deadline=deadline)
        return pb.PutSiteResponse(site=convert.site_to_pb(site))

    @_rpc
    async def ListSites(self, request: pb.ListSitesRequest, context: grpc.aio.ServicerContext) -> pb.ListSitesResponse:
        sites = await self.gateway.list_sites(request.org_prefix)
        return pb.ListSitesResponse(sites=[convert.site_to_pb(s) for s in sorted(sites, key=lambda s: s.site)])

    @_rpc
    async def ListSkus(self, request: pb.ListSkusRequest, context: grpc.aio.ServicerContext) -> pb.ListSkusResponse:
        skus = await self.gateway.list_skus()
        return pb.ListSkusResponse(skus=[convert.sku_to_pb(s) for s in sorted(skus, key=lambda s: s.sku)])

    # ---- single-cell commands ----

    @_rpc
    async def Receive(self, request: pb.ReceiveRequest, context: grpc.aio.ServicerContext) -> pb.ReceiveResponse:
        return await self._receive(request, call_deadline(context))

    async def _receive(self, request: pb.ReceiveRequest, deadline: float | None) -> pb.ReceiveResponse:
        reply = await self._execute(convert.receive_from_pb(request), deadline, Received)
        return pb.ReceiveResponse(lot_id=reply.lot_id, qty=reply.qty)

    @_rpc
    async def Move(self, request: pb.MoveRequest, context: grpc.aio.ServicerContext) -> pb.MoveResponse:
        return await self._move(request, call_deadline(context))

    async def _move(self, request: pb.MoveRequest, deadline: float | None) -> pb.MoveResponse:
        reply = await self._execute(convert.move_from_pb(request), deadline, Moved)
        return pb.MoveResponse(qty=reply.qty)

    @_rpc
    async def ChangeStatus(
        self, request: pb.ChangeStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChangeStatusResponse:
        return await self._change_status(request, call_deadline(context))

    async def _change_status(self, request: pb.ChangeStatusRequest, deadline: float | None) -> pb.ChangeStatusResponse:
        reply = await self._execute(convert.change_status_from_pb(request), deadline, StatusChanged)
        return pb.ChangeStatusResponse(qty=reply.qty)

    @_rpc
    async def Consume(self, request: pb.ConsumeRequest, context: grpc.aio.ServicerContext) -> pb.ConsumeResponse:
        return await self._consume(request, call_deadline(context))

    async def _consume(self, request: pb.ConsumeRequest, deadline: float | None) -> pb.ConsumeResponse:
        reply = await self._execute(convert.consume_from_pb(request), deadline, Consumed)
        return convert.consumed_to_pb(reply)

    # ---- stock health inside the cell (issue 15) ----

    @_rpc
    async def Count(self, request: pb.CountRequest, context: grpc.aio.ServicerContext) -> pb.CountResponse:
        reply = await self._execute(convert.count_from_pb(request), call_deadline(context), Counted)
        return convert.counted_to_pb(reply)

    @_rpc
    async def ExpireLots(
        self, request: pb.ExpireLotsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExpireLotsResponse:
        reply = await self._execute(convert.expire_lots_from_pb(request), call_deadline(context), LotsExpired)
        return convert.lots_expired_to_pb(reply)

    @_rpc
    async def ScrapOverAge(
        self, request: pb.ScrapOverAgeRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScrapOverAgeResponse:
        reply = await self._execute(convert.scrap_over_age_from_pb(request), call_deadline(context), Scrapped)
        return convert.scrapped_to_pb(reply)

    @_rpc
    async def OpenLot(self, request: pb.OpenLotRequest, context: grpc.aio.ServicerContext) -> pb.OpenLotResponse:
        reply = await self._execute(convert.open_lot_from_pb(request), call_deadline(context), LotOpened)
        return convert.lot_opened_to_pb(reply)

    @_rpc
    async def ApplyDeviceOps(
        self, request: pb.ApplyDeviceOpsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApplyDeviceOpsResponse:
        return await self._apply_device_ops(request, call_deadline(context))

    async def _apply_device_ops(
        self, request: pb.ApplyDeviceOpsRequest, deadline: float | None
    ) -> pb.ApplyDeviceOpsResponse:
        """One op after the other, in seq order: the device's order is the order applied."""
        ops = convert.device_ops_from_pb(request)
        bad: list[FieldViolation] = []
        for i, op in enumerate(ops):  # all checked first: a bad upload applies nothing
            try:
                validate(op, self.statuses)
            except InvalidArgument as refusal:
                bad.extend(FieldViolation(f"ops[{i}].{v.field}", v.description) for v in refusal.violations)
        if bad:
            raise InvalidArgument(bad)
        results = []
        for op in ops:
            done = await self._execute(op, deadline, DeviceOpDone)
            results.append(convert.device_op_done_to_pb(done))
        return pb.ApplyDeviceOpsResponse(results=results)

    @_rpc
    async def Adjust(self, request: pb.AdjustRequest, context: grpc.aio.ServicerContext) -> pb.AdjustResponse:
        return await self._adjust(request, call_deadline(context))

    async def _adjust(self, request: pb.AdjustRequest, deadline: float | None) -> pb.AdjustResponse:
        reply = await self._execute(convert.adjust_from_pb(request), deadline, Adjusted)
        return convert.adjusted_to_pb(reply)

    async def _execute(
        self,
        cmd: Mutation,
        deadline: float | None,
        expected: type[_Resp],
    ) -> _Resp:
        reply = await self.gateway.execute(cmd, deadline=deadline)
        if not isinstance(reply, expected):
            # The gateway answered another command's reply: a bug, not a client error.
            raise TypeError(f"{type(cmd).__name__} answered with {type(reply).__name__}")
        return reply

    # ---- holds ----

    @_rpc
    async def Reserve(self, request: pb.ReserveRequest, context: grpc.aio.ServicerContext) -> pb.ReserveResponse:
        return await self._reserve(request, call_deadline(context))

    async def _reserve(self, request: pb.ReserveRequest, deadline: float | None) -> pb.ReserveResponse:
        lines = convert.hold_lines_from_pb(request.lines)
        hold = await self.gateway.reserve(
            request.request_id,
            request.hold_id,
            lines,
            request.ttl_ms,
            request.doc_ref,
            deadline=deadline,
            finance=convert.finance_from_pb(request),
        )
        return pb.ReserveResponse(hold=convert.hold_to_pb(hold))

    @_rpc
    async def Commit(self, request: pb.CommitRequest, context: grpc.aio.ServicerContext) -> pb.CommitResponse:
        return await self._commit(request, call_deadline(context))

    async def _commit(self, request: pb.CommitRequest, deadline: float | None) -> pb.CommitResponse:
        lines = convert.commit_lines_from_pb(request.lines)
        hold = await self.gateway.commit(
            request.request_id,
            request.hold_id,
            lines,
            request.doc_ref,
            deadline=deadline,
            finance=convert.finance_from_pb(request),
        )
        return pb.CommitResponse(
            hold=convert.hold_to_pb(hold), committed_qty=hold.committed_qty, released_qty=hold.released_qty
        )

    # ---- one-call sale ----

    @_rpc
    async def Sell(self, request: pb.SellRequest, context: grpc.aio.ServicerContext) -> pb.SellResponse:
        return await self._sell(request, call_deadline(context))

    async def _sell(self, request: pb.SellRequest, deadline: float | None) -> pb.SellResponse:
        sale = await self.gateway.sell(
            request.request_id,
            convert.hold_lines_from_pb(request.lines),
            request.doc_ref,
            deadline=deadline,
            finance=convert.finance_from_pb(request),
        )
        return convert.sale_to_pb(sale)

    @_rpc
    async def Release(self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext) -> pb.ReleaseResponse:
        return await self._release(request, call_deadline(context))

    async def _release(self, request: pb.ReleaseRequest, deadline: float | None) -> pb.ReleaseResponse:
        hold = await self.gateway.release(
            request.request_id,
            request.hold_id,
            request.doc_ref,
            deadline=deadline,
            finance=convert.finance_from_pb(request),
        )
        return pb.ReleaseResponse(hold=convert.hold_to_pb(hold), released_qty=hold.released_qty)

    @_rpc
    async def GetHold(self, request: pb.GetHoldRequest, context: grpc.aio.ServicerContext) -> pb.GetHoldResponse:
        return await self._get_hold(request, call_deadline(context))

    async def _get_hold(self, request: pb.GetHoldRequest, deadline: float | None) -> pb.GetHoldResponse:
        hold = await self.gateway.get_hold(request.hold_id)
        return pb.GetHoldResponse(hold=convert.hold_to_pb(hold))

    @_rpc
    async def ListHolds(self, request: pb.ListHoldsRequest, context: grpc.aio.ServicerContext) -> pb.ListHoldsResponse:
        holds, after = await self.gateway.list_holds(convert.list_holds_from_pb(request), call_deadline(context))
        return convert.list_holds_to_pb(holds, after)

    # ---- reads ----

    @_rpc
    async def GetAvailability(
        self, request: pb.GetAvailabilityRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetAvailabilityResponse:
        return await self._get_availability(request, call_deadline(context))

    async def _get_availability(
        self, request: pb.GetAvailabilityRequest, deadline: float | None
    ) -> pb.GetAvailabilityResponse:
        group_by, filt = convert.availability_query_from_pb(request, self.statuses)
        availability = await self.gateway.get_availability(
            request.sku, request.site, group_by, filt, request.bin_depth, deadline=deadline
        )
        return convert.availability_to_pb(availability)

    @_rpc
    async def QueryStock(
        self, request: pb.QueryStockRequest, context: grpc.aio.ServicerContext
    ) -> pb.QueryStockResponse:
        query = convert.stock_query_from_pb(request, self.statuses)
        rows = await self.gateway.query_stock(query, deadline=call_deadline(context))
        return convert.stock_page_to_pb(rows, query.page_size)


def add_inventory_service(servicer: InventoryServicer, server: grpc.aio.Server) -> None:
    """Register lotwise.v1.Inventory with lenient request decoding (engine.api.registration)."""
    add_service(pb, "Inventory", servicer, server)
