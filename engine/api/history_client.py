"""HistoryClient: a small async Python client of lotwise.v1.History.

    async with LotwiseClient("127.0.0.1:50051") as client:
        history = HistoryClient(client.channel, metadata=client.metadata)
        reply = await history.balance_as_of(skus=["GLU-50"], group_by=[HistoryDimension.LOT])

Methods take plain values (times in UTC epoch ms, 0 meaning "not set", as in
history.proto) and return the protobuf replies. Refusals raise the same typed exceptions
as LotwiseClient (engine.domain.errors, or RemoteError), rebuilt from the rich status.
History calls only read, so nothing is retried here: a caller that wants retries on
UNAVAILABLE simply calls again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import grpc

from engine.api.gen.lotwise.v1 import history_pb2 as hpb
from engine.api.gen.lotwise.v1 import history_pb2_grpc as hpb_grpc
from engine.api.history import DIMENSION_TO_PB
from engine.api.service_client import DEFAULT_TIMEOUT_S, ServiceClient
from engine.domain.history import HistoryDimension

_Resp = TypeVar("_Resp")


class HistoryClient(ServiceClient):
    """lotwise.v1.History over a grpc.aio channel it does not own (e.g. LotwiseClient.channel)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(channel, timeout_s=timeout_s, metadata=metadata)
        self._stub = hpb_grpc.HistoryStub(channel)

    async def balance_as_of(
        self,
        as_of_ms: int,
        *,
        skus: Sequence[str] = (),
        sites: Sequence[str] = (),
        bin_prefix: str = "",
        statuses: Sequence[str] = (),
        owner: str = "",
        lot_id: str = "",
        expires_from_ms: int = 0,
        expires_to_ms: int = 0,
        group_by: Sequence[HistoryDimension] = (),
        bin_depth: int = 0,
        limit: int = 0,
    ) -> hpb.GetBalanceAsOfResponse:
        request = hpb.GetBalanceAsOfRequest(
            as_of_ms=as_of_ms,
            skus=list(skus),
            sites=list(sites),
            bin_prefix=bin_prefix,
            statuses=list(statuses),
            owner=owner,
            lot_id=lot_id,
            expires_from_ms=expires_from_ms,
            expires_to_ms=expires_to_ms,
            group_by=[DIMENSION_TO_PB[HistoryDimension(d)] for d in group_by],
            bin_depth=bin_depth,
            limit=limit,
        )
        return await self._call(self._stub.GetBalanceAsOf, request)

    async def search_movements(
        self,
        *,
        sku: str = "",
        site: str = "",
        lot_id: str = "",
        doc_ref: str = "",
        hold_id: str = "",
        request_id: str = "",
        kinds: Sequence[str] = (),
        from_ms: int = 0,
        to_ms: int = 0,
        page_size: int = 0,
        cursor: str = "",
    ) -> hpb.SearchMovementsResponse:
        request = hpb.SearchMovementsRequest(
            sku=sku,
            site=site,
            lot_id=lot_id,
            doc_ref=doc_ref,
            hold_id=hold_id,
            request_id=request_id,
            kinds=list(kinds),
            from_ms=from_ms,
            to_ms=to_ms,
            page_size=page_size,
            cursor=cursor,
        )
        return await self._call(self._stub.SearchMovements, request)

    async def consumption_series(
        self, from_ms: int, to_ms: int, *, sku: str = "", site: str = ""
    ) -> hpb.GetConsumptionSeriesResponse:
        request = hpb.GetConsumptionSeriesRequest(sku=sku, site=site, from_ms=from_ms, to_ms=to_ms)
        return await self._call(self._stub.GetConsumptionSeries, request)

    async def turnover(
        self, from_ms: int, to_ms: int, *, skus: Sequence[str] = (), sites: Sequence[str] = (), limit: int = 0
    ) -> hpb.GetTurnoverResponse:
        request = hpb.GetTurnoverRequest(skus=list(skus), sites=list(sites), from_ms=from_ms, to_ms=to_ms, limit=limit)
        return await self._call(self._stub.GetTurnover, request)

    async def expiry_exposure(
        self,
        as_of_ms: int,
        horizon_days: int,
        *,
        skus: Sequence[str] = (),
        sites: Sequence[str] = (),
        limit: int = 0,
    ) -> hpb.GetExpiryExposureResponse:
        request = hpb.GetExpiryExposureRequest(
            as_of_ms=as_of_ms, horizon_days=horizon_days, skus=list(skus), sites=list(sites), limit=limit
        )
        return await self._call(self._stub.GetExpiryExposure, request)

    async def trace_lot(self, lot_id: str, *, sku: str = "", limit: int = 0) -> hpb.TraceLotResponse:
        return await self._call(self._stub.TraceLot, hpb.TraceLotRequest(lot_id=lot_id, sku=sku, limit=limit))

    async def sink_status(self) -> hpb.GetSinkStatusResponse:
        return await self._call(self._stub.GetSinkStatus, hpb.GetSinkStatusRequest())
