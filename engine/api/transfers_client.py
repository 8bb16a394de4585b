"""TransfersClient: a small async Python client of lotwise.v1.Transfers.

    async with LotwiseClient("127.0.0.1:50051") as client:
        transfers = TransfersClient(client.channel, metadata=client.metadata)
        t = await transfers.create("T-1", "DC", "BOS", [TransferLine("GLU", 120)], request_id="T-1-create")

Every step carries the caller's request id, so a step that answered UNAVAILABLE (a shard
recovering, or another step written at the same moment) is sent again with the same id,
a bounded number of times within the timeout: the desk applies it once. Other refusals
raise the typed exceptions of engine.domain.errors (or RemoteError), as LotwiseClient's do.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import grpc

from engine.api.errors import from_rpc_error
from engine.api.gen.lotwise.v1 import transfers_pb2 as tpb
from engine.api.gen.lotwise.v1 import transfers_pb2_grpc as tpb_grpc
from engine.api.service_client import DEFAULT_TIMEOUT_S, ServiceClient
from engine.domain.transfer_flow import ReceiptLine, TransferLine

_Resp = TypeVar("_Resp")

MAX_ATTEMPTS = 4  # a step answered UNAVAILABLE is sent again (same id) at most this often in all
BACKOFF_S = (0.05, 0.2, 0.5)  # before the 2nd, 3rd and 4th attempt, ±50 % jitter


class TransfersClient(ServiceClient):
    """lotwise.v1.Transfers over a grpc.aio channel it does not own (e.g. LotwiseClient.channel)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(channel, timeout_s=timeout_s, metadata=metadata)
        self._stub = tpb_grpc.TransfersStub(channel)

    async def create(
        self,
        transfer_id: str,
        from_site: str,
        to_site: str,
        lines: Sequence[TransferLine],
        *,
        request_id: str,
        note: str = "",
    ) -> tpb.Transfer:
        request = tpb.CreateTransferRequest(
            request_id=request_id,
            transfer_id=transfer_id,
            from_site=from_site,
            to_site=to_site,
            lines=[tpb.TransferLine(sku=x.sku, qty=x.qty, lot_id=x.lot_id, unit_value=x.unit_value) for x in lines],
            note=note,
        )
        return (await self._call(self._stub.CreateTransfer, request)).transfer

    async def approve(self, transfer_id: str, *, request_id: str, note: str = "") -> tpb.Transfer:
        return await self._act(self._stub.ApproveTransfer, transfer_id, request_id, note)

    async def reject(self, transfer_id: str, *, request_id: str, note: str = "") -> tpb.Transfer:
        return await self._act(self._stub.RejectTransfer, transfer_id, request_id, note)

    async def cancel(self, transfer_id: str, *, request_id: str, note: str = "") -> tpb.Transfer:
        return await self._act(self._stub.CancelTransfer, transfer_id, request_id, note)

    async def ship(self, transfer_id: str, *, request_id: str, eta_ms: int = 0) -> tpb.Transfer:
        request = tpb.ShipTransferRequest(request_id=request_id, transfer_id=transfer_id, eta_ms=eta_ms)
        return (await self._call(self._stub.ShipTransfer, request)).transfer

    async def receive(
        self, transfer_id: str, lines: Sequence[ReceiptLine], *, request_id: str, final: bool = False
    ) -> tpb.Transfer:
        request = tpb.ReceiveTransferRequest(
            request_id=request_id,
            transfer_id=transfer_id,
            lines=[tpb.ReceiptLine(sku=x.sku, qty=x.qty, damaged_qty=x.damaged_qty, lot_id=x.lot_id) for x in lines],
            final=final,
        )
        return (await self._call(self._stub.ReceiveTransfer, request)).transfer

    async def get(self, transfer_id: str) -> tpb.Transfer:
        return (await self._call(self._stub.GetTransfer, tpb.GetTransferRequest(transfer_id=transfer_id))).transfer

    async def list(
        self,
        *,
        site: str = "",
        state: str = "",
        created_after_ms: int = 0,
        created_before_ms: int = 0,
        page_size: int = 0,
        page_token: str = "",
    ) -> tpb.ListTransfersResponse:
        request = tpb.ListTransfersRequest(
            site=site,
            state=state,
            created_after_ms=created_after_ms,
            created_before_ms=created_before_ms,
            page_size=page_size,
            page_token=page_token,
        )
        return await self._call(self._stub.ListTransfers, request)

    async def _act(
        self, method: Callable[..., Awaitable[tpb.TransferResponse]], transfer_id: str, request_id: str, note: str
    ) -> tpb.Transfer:
        request = tpb.TransferActionRequest(request_id=request_id, transfer_id=transfer_id, note=note)
        return (await self._call(method, request)).transfer

    async def _call(self, method: Callable[..., Awaitable[_Resp]], request: object) -> _Resp:
        """One call, sent again (the same request, so the same ids) on UNAVAILABLE while
        attempts and the timeout last; every other refusal raised typed at once."""
        deadline = time.monotonic() + self._timeout_s
        attempt = 0
        while True:  # bounded: MAX_ATTEMPTS
            try:
                return await method(request, timeout=max(deadline - time.monotonic(), 0.001), metadata=self._metadata)
            except grpc.aio.AioRpcError as err:
                attempt += 1
                pause = BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)] * random.uniform(0.5, 1.5)
                done = attempt >= MAX_ATTEMPTS or time.monotonic() + pause >= deadline
                if err.code() is not grpc.StatusCode.UNAVAILABLE or done:
                    raise from_rpc_error(err) from None
                await asyncio.sleep(pause)
