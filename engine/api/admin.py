"""The Admin gRPC servicer: verify, shard stats, snapshots, pins (operators only)."""

from __future__ import annotations

from typing import Any, Protocol

import grpc

from engine.api.gen.lotwise.v1 import admin_pb2 as apb
from engine.api.gen.lotwise.v1 import admin_pb2_grpc as apb_grpc
from engine.api.servicer import _rpc
from engine.domain.commands import check_id
from engine.domain.errors import FieldViolation, InvalidArgument
from engine.runtime.types import ShardCheck

ADMIN_SERVICE_NAME = apb.DESCRIPTOR.services_by_name["Admin"].full_name  # "lotwise.v1.Admin"


class AdminGateway(Protocol):
    async def verify(self) -> list[ShardCheck]: ...

    async def shard_stats(self) -> list[dict[str, Any]]: ...

    async def snapshot(self) -> dict[str, int]: ...

    async def pin(self, sku: str, site: str) -> str: ...


def check_to_pb(check: ShardCheck) -> apb.ShardCheck:
    return apb.ShardCheck(
        shard=check.shard,
        batch_seq=check.batch_seq,
        live_hash=check.live_hash,
        rebuilt_hash=check.rebuilt_hash,
        ok=check.ok,
        error=check.error,
        replayed_batches=check.replayed_batches,
    )


def stat_to_pb(stat: dict[str, Any]) -> apb.ShardStat:
    return apb.ShardStat(**{field: stat[field] for field in apb.ShardStat.DESCRIPTOR.fields_by_name})


class AdminServicer(apb_grpc.AdminServicer):
    def __init__(self, gateway: AdminGateway, *, retry_delay_ms: int) -> None:
        self.gateway = gateway
        self.retry_delay_ms = retry_delay_ms  # read by _rpc when it answers a DomainError

    @_rpc
    async def Verify(self, request: apb.VerifyRequest, context: grpc.aio.ServicerContext) -> apb.VerifyResponse:
        checks = await self.gateway.verify()
        return apb.VerifyResponse(ok=all(c.ok for c in checks), shards=[check_to_pb(c) for c in checks])

    @_rpc
    async def ShardStats(
        self, request: apb.ShardStatsRequest, context: grpc.aio.ServicerContext
    ) -> apb.ShardStatsResponse:
        return apb.ShardStatsResponse(shards=[stat_to_pb(s) for s in await self.gateway.shard_stats()])

    @_rpc
    async def Snapshot(self, request: apb.SnapshotRequest, context: grpc.aio.ServicerContext) -> apb.SnapshotResponse:
        return apb.SnapshotResponse(batch_seq=await self.gateway.snapshot())

    @_rpc
    async def PinPair(self, request: apb.PinPairRequest, context: grpc.aio.ServicerContext) -> apb.PinPairResponse:
        out: list[FieldViolation] = []
        check_id(request.sku, "sku", out)
        check_id(request.site, "site", out)
        if out:
            raise InvalidArgument(out)
        return apb.PinPairResponse(shard=await self.gateway.pin(request.sku, request.site))
