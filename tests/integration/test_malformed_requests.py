"""Bytes that do not decode are the caller's mistake on every service: INVALID_ARGUMENT with
ErrorInfo MALFORMED_REQUEST, never UNKNOWN, and nothing changes (engine.api.registration)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2, status_pb2

from engine.api.batch import REASON_MALFORMED_REQUEST
from engine.api.gen.lotwise.v1 import admin_pb2 as apb
from engine.api.gen.lotwise.v1 import admin_pb2_grpc as apb_grpc
from engine.api.server import start_server
from engine.runtime.gateway import Gateway

# PinPairRequest{sku: b"\xff"}: invalid UTF-8 in a string field.
BAD_PIN = b"\x0a\x01\xff"
# ImportChunk{rows: [ImportRow{sku: Sku{sku: b"\xff"}}]}.
_BAD_SKU_ROW = b"\x12\x03" + BAD_PIN
BAD_CHUNK = b"\x12" + bytes([len(_BAD_SKU_ROW)]) + _BAD_SKU_ROW


def _raw(value: bytes) -> bytes:
    return value


@pytest_asyncio.fixture
async def target(local_gateway: Gateway) -> AsyncIterator[str]:
    server, _ = await start_server(local_gateway, "127.0.0.1", 0, admin=local_gateway)
    yield f"127.0.0.1:{server.port}"
    await server.stop(grace_s=1.0)


def assert_malformed(err: grpc.aio.AioRpcError) -> None:
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT, err
    status = status_pb2.Status()
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status.ParseFromString(value)
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status.details)
    assert info.reason == REASON_MALFORMED_REQUEST


async def test_a_unary_admin_call_that_does_not_decode_is_invalid_argument(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/lotwise.v1.Admin/PinPair", request_serializer=_raw, response_deserializer=_raw)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(BAD_PIN)
        assert_malformed(refused.value)


async def test_an_import_chunk_that_does_not_decode_ends_the_stream_invalid_argument(
    target: str, local_gateway: Gateway
) -> None:
    skus_before = await local_gateway.list_skus()
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.stream_stream("/lotwise.v1.Admin/Import", request_serializer=_raw, response_deserializer=_raw)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in call(iter([BAD_CHUNK])):
                pass
        assert_malformed(refused.value)
        # Nothing changed, and the same server still answers well-formed calls.
        assert await local_gateway.list_skus() == skus_before
        stats = await apb_grpc.AdminStub(channel).ShardStats(apb.ShardStatsRequest())
        assert stats.shards
