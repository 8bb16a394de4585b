"""The console's way to the engine: the public gRPC API, called AS the signed-in user.

The console holds no privilege of its own. Every call carries the caller's bearer token in
its metadata, so the engine's authentication, grants and scopes decide what a page may show
(DESIGN.md §13): a clerk's stock page is filtered inside the shards exactly as the clerk's
own gRPC call would be. One channel is shared by every user (the token is per call).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from engine.api.errors import status_of_rpc_error
from engine.api.gen.lotwise.v1 import admin_pb2 as apb
from engine.api.gen.lotwise.v1 import admin_pb2_grpc as apb_grpc
from engine.api.gen.lotwise.v1 import alerts_pb2 as lpb
from engine.api.gen.lotwise.v1 import alerts_pb2_grpc as lpb_grpc
from engine.api.gen.lotwise.v1 import finance_pb2 as fpb
from engine.api.gen.lotwise.v1 import finance_pb2_grpc as fpb_grpc
from engine.api.gen.lotwise.v1 import history_pb2 as hpb
from engine.api.gen.lotwise.v1 import history_pb2_grpc as hpb_grpc
from engine.api.gen.lotwise.v1 import identity_pb2 as ipb
from engine.api.gen.lotwise.v1 import identity_pb2_grpc as ipb_grpc
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc
from engine.api.gen.lotwise.v1 import replenishment_pb2 as rpb
from engine.api.gen.lotwise.v1 import replenishment_pb2_grpc as rpb_grpc
from engine.api.gen.lotwise.v1 import transfers_pb2 as tpb
from engine.api.gen.lotwise.v1 import transfers_pb2_grpc as tpb_grpc

_Resp = TypeVar("_Resp", bound=Message)

# A page waits at most this long for one engine call: a stuck call ends as a clear 504, and
# the console's bounded worker is not held by it.
CALL_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class ApiProblem(Exception):
    """The engine refused or failed a call: the gRPC code and what it said, for the page."""

    code: str  # grpc.StatusCode name: PERMISSION_DENIED, INVALID_ARGUMENT, ...
    message: str
    reason: str = ""  # google.rpc.ErrorInfo.reason, when the engine gave one
    fields: tuple[tuple[str, str], ...] = field(default=())  # BadRequest field violations

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    @property
    def http_status(self) -> int:
        """The HTTP status a page answers with (as the HTTP/JSON mapping of gRPC codes does)."""
        return _HTTP_OF_CODE.get(self.code, 502)


_HTTP_OF_CODE = {
    "INVALID_ARGUMENT": 400,
    "OUT_OF_RANGE": 400,
    "FAILED_PRECONDITION": 409,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def problem_of(err: grpc.RpcError) -> ApiProblem:
    """The rich status of a failed call, flattened for a page."""
    status: status_pb2.Status = status_of_rpc_error(err)
    code = grpc.StatusCode.UNKNOWN
    for candidate in grpc.StatusCode:
        if candidate.value[0] == status.code:
            code = candidate
            break
    reason = ""
    fields: list[tuple[str, str]] = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(info):  # False (and nothing read) when the detail is of another type
            reason = info.reason
        elif detail.Unpack(bad):
            fields.extend((v.field, v.description) for v in bad.field_violations)
    return ApiProblem(code.name, status.message, reason, tuple(fields))


class EngineApi:
    """Typed stubs of the engine's services over one channel; every call names its caller."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self._channel = channel
        self._timeout_s = timeout_s
        self.inventory = pb_grpc.InventoryStub(channel)
        self.history = hpb_grpc.HistoryStub(channel)
        self.admin = apb_grpc.AdminStub(channel)
        self.identity = ipb_grpc.IdentityStub(channel)
        self.transfers = tpb_grpc.TransfersStub(channel)
        self.alerts = lpb_grpc.AlertsStub(channel)
        self.replenishment = rpb_grpc.ReplenishmentStub(channel)
        self.accounting = fpb_grpc.AccountingStub(channel)

    async def close(self) -> None:
        await self._channel.close()

    async def call(self, method: Callable[..., Awaitable[_Resp]], request: Message, token: str) -> _Resp:
        """One call as the holder of `token`; a refusal raises ApiProblem."""
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        try:
            return await method(request, metadata=metadata, timeout=self._timeout_s)
        except grpc.RpcError as err:
            raise problem_of(err) from None

    # The calls the panels make, named for what they ask.
    async def whoami(self, token: str) -> ipb.WhoAmIResponse:
        return await self.call(self.identity.WhoAmI, ipb.WhoAmIRequest(), token)

    async def list_sites(self, token: str, org_prefix: str = "") -> pb.ListSitesResponse:
        return await self.call(self.inventory.ListSites, pb.ListSitesRequest(org_prefix=org_prefix), token)

    async def query_stock(self, token: str, request: pb.QueryStockRequest) -> pb.QueryStockResponse:
        return await self.call(self.inventory.QueryStock, request, token)

    async def balance_as_of(self, token: str, request: hpb.GetBalanceAsOfRequest) -> hpb.GetBalanceAsOfResponse:
        return await self.call(self.history.GetBalanceAsOf, request, token)

    async def search_movements(self, token: str, request: hpb.SearchMovementsRequest) -> hpb.SearchMovementsResponse:
        return await self.call(self.history.SearchMovements, request, token)

    async def trace_lot(self, token: str, request: hpb.TraceLotRequest) -> hpb.TraceLotResponse:
        return await self.call(self.history.TraceLot, request, token)

    async def consumption(
        self, token: str, request: hpb.GetConsumptionSeriesRequest
    ) -> hpb.GetConsumptionSeriesResponse:
        return await self.call(self.history.GetConsumptionSeries, request, token)

    async def expiry_exposure(self, token: str, request: hpb.GetExpiryExposureRequest) -> hpb.GetExpiryExposureResponse:
        return await self.call(self.history.GetExpiryExposure, request, token)

    async def list_dead_letters(self, token: str, request: apb.ListDeadLettersRequest) -> apb.ListDeadLettersResponse:
        return await self.call(self.admin.ListDeadLetters, request, token)

    async def get_dead_letter(self, token: str, seq: int) -> apb.GetDeadLetterResponse:
        return await self.call(self.admin.GetDeadLetter, apb.GetDeadLetterRequest(seq=seq), token)

    async def replay_dead_letters(self, token: str, seqs: list[int]) -> apb.ReplayDeadLettersResponse:
        return await self.call(self.admin.ReplayDeadLetters, apb.ReplayDeadLettersRequest(seqs=seqs), token)

    async def list_transfers(self, token: str, request: tpb.ListTransfersRequest) -> tpb.ListTransfersResponse:
        return await self.call(self.transfers.ListTransfers, request, token)

    async def list_alerts(self, token: str, request: lpb.ListAlertsRequest) -> lpb.ListAlertsResponse:
        return await self.call(self.alerts.ListAlerts, request, token)

    async def act_on_alert(self, token: str, close: bool, request: lpb.AlertActionRequest) -> lpb.Alert:
        method = self.alerts.CloseAlert if close else self.alerts.AcknowledgeAlert
        return (await self.call(method, request, token)).alert

    async def decide_transfer(self, token: str, approve: bool, request: tpb.TransferActionRequest) -> tpb.Transfer:
        method = self.transfers.ApproveTransfer if approve else self.transfers.RejectTransfer
        return (await self.call(method, request, token)).transfer

    async def list_holds(self, token: str, request: pb.ListHoldsRequest) -> pb.ListHoldsResponse:
        return await self.call(self.inventory.ListHolds, request, token)

    async def release_hold(self, token: str, request: pb.ReleaseRequest) -> pb.ReleaseResponse:
        return await self.call(self.inventory.Release, request, token)

    async def list_suggestions(self, token: str, request: rpb.ListSuggestionsRequest) -> rpb.ListSuggestionsResponse:
        return await self.call(self.replenishment.ListSuggestions, request, token)

    async def explain_suggestion(self, token: str, sku: str, site: str) -> rpb.Suggestion:
        ref = rpb.SuggestionRef(sku=sku, site=site)
        return (await self.call(self.replenishment.ExplainSuggestion, ref, token)).suggestion

    async def decide_suggestion(
        self, token: str, decision: str, request: rpb.DecideSuggestionRequest | rpb.OverrideSuggestionRequest
    ) -> rpb.Suggestion:
        method = {
            "accept": self.replenishment.AcceptSuggestion,
            "reject": self.replenishment.RejectSuggestion,
            "override": self.replenishment.OverrideSuggestion,
        }[decision]
        return (await self.call(method, request, token)).suggestion

    async def list_vouchers(self, token: str, request: fpb.ListVouchersRequest) -> fpb.ListVouchersResponse:
        return await self.call(self.accounting.ListVouchers, request, token)

    async def act_on_voucher(self, token: str, action: str, voucher_id: str, text: str) -> fpb.Voucher:
        acc = self.accounting
        if action == "annotate":
            reply = await self.call(
                acc.AnnotateVoucher, fpb.AnnotateVoucherRequest(voucher_id=voucher_id, note=text), token
            )
        elif action == "reject":
            reply = await self.call(
                acc.RejectVoucher, fpb.RejectVoucherRequest(voucher_id=voucher_id, reason=text), token
            )
        else:
            reply = await self.call(acc.ApproveVoucher, fpb.VoucherActionRequest(voucher_id=voucher_id), token)
        return reply.voucher


def channel_to(address: str, credentials: grpc.ChannelCredentials | None = None) -> grpc.aio.Channel:
    """A channel to the engine's gRPC port (TLS when `credentials` are given)."""
    options: list[tuple[str, Any]] = [("grpc.enable_retries", 0)]
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, credentials, options=options)
