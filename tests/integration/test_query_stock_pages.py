"""QueryStock by cursor over a real gRPC server with auth on, two shards: every page walk is
the whole answer, each row once with its full sums; a shelf clerk's pages hold their shelves
only; a bad cursor or page size is INVALID_ARGUMENT naming the field, never INTERNAL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2, status_pb2

from engine.api.auth import mint_token
from engine.api.client import LotwiseClient, RetryPolicy
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc
from engine.domain.catalog import Site, Sku
from engine.runtime.gateway import Gateway
from tests.auth_fixtures import start_authed_server

SECRET = b"q" * 48
POLICY = """
[roles]
admin = ["read", "receive", "admin"]
clerk = ["read"]

[[grants]]
group = "admin"
role = "admin"
org = ""

[[grants]]
subject = "clerk"
role = "clerk"
site = "BOS"
bin = "A"
"""
SKUS = [f"S{i:02d}" for i in range(30)]


@pytest_asyncio.fixture
async def address(tmp_path: Path, local_gateway: Gateway) -> AsyncIterator[str]:
    """30 skus at BOS (shelves A and B) and LA; the local gateway has two shards."""
    server, port = await start_authed_server(tmp_path, local_gateway, SECRET, POLICY)
    addr = f"127.0.0.1:{port}"
    token = mint_token(SECRET, "root", ["admin"])
    async with LotwiseClient(addr, token=token, retry=RetryPolicy(max_attempts=1), timeout_s=10) as admin:
        for sku in SKUS:
            await admin.put_sku(Sku(sku))
        for site in (Site("BOS", "acme/east/boston"), Site("LA", "acme/west/la")):
            await admin.put_site(site)
        for n, sku in enumerate(SKUS):
            await admin.receive(sku, "BOS", "L1", n + 1, bin="A/1", status="available")
            await admin.receive(sku, "BOS", "L2", 100, bin="B/2", status="qc_hold")
            await admin.receive(sku, "LA", "L1", 7, bin="A/1", status="available")
    yield addr
    await server.stop(grace_s=1.0)


async def _call(address: str, subject: str, request: pb.QueryStockRequest) -> pb.QueryStockResponse:
    groups = ["admin"] if subject == "root" else []
    metadata = (("authorization", f"Bearer {mint_token(SECRET, subject, groups)}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        reply: pb.QueryStockResponse = await pb_grpc.InventoryStub(channel).QueryStock(
            request, metadata=metadata, timeout=10
        )
        return reply


async def _walk(address: str, subject: str, request: pb.QueryStockRequest, page_size: int) -> list[pb.StockRow]:
    rows: list[pb.StockRow] = []
    paged = pb.QueryStockRequest()
    paged.CopyFrom(request)
    paged.page_size = page_size
    for _ in range(1_000):  # bounded: a cursor that never ends is a bug
        reply = await _call(address, subject, paged)
        assert len(reply.rows) <= page_size
        rows.extend(reply.rows)
        if not reply.next_page_token:
            return rows
        paged.page_token = reply.next_page_token
    raise AssertionError("the cursor never ended")


@pytest.mark.parametrize(
    "request_",
    [
        pb.QueryStockRequest(),
        pb.QueryStockRequest(by_site=False, group_by=[pb.DIMENSION_STATUS]),
        pb.QueryStockRequest(by_sku=False, group_by=[pb.DIMENSION_STATUS]),  # the shards' kept totals
        pb.QueryStockRequest(group_by=[pb.DIMENSION_BIN, pb.DIMENSION_LOT], bin_depth=1),
    ],
)
async def test_every_page_walk_is_the_whole_answer(address: str, request_: pb.QueryStockRequest) -> None:
    whole = list((await _call(address, "root", request_)).rows)
    assert whole
    assert not (await _call(address, "root", request_)).next_page_token  # unpaged: no cursor
    for size in (1, 4, 17, len(whole), 1_000):
        assert await _walk(address, "root", request_, size) == whole


async def test_a_page_is_never_refused_for_the_size_of_the_whole(address: str) -> None:
    small = pb.QueryStockRequest(limit=10)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _call(address, "root", small)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert len(await _walk(address, "root", small, 10)) == 60  # (sku, site): 30 skus × BOS, LA


async def test_a_shelf_clerk_sees_their_shelves_on_every_page(address: str) -> None:
    request = pb.QueryStockRequest(group_by=[pb.DIMENSION_BIN], bin_depth=1)
    rows = await _walk(address, "clerk", request, 7)
    assert [(r.sku, r.site, r.row.group[0].value) for r in rows] == [(sku, "BOS", "A") for sku in SKUS]
    assert sum(r.row.qty for r in rows) == sum(range(1, 31))  # L1 on A only: never shelf B, never LA


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.QueryStockRequest(page_size=1_001), "page_size"),
        (pb.QueryStockRequest(page_size=-3), "page_size"),
        (pb.QueryStockRequest(page_size=5, page_token="forged"), "page_token"),
        (pb.QueryStockRequest(page_token="forged"), "page_token"),
    ],
)
async def test_bad_paging_is_invalid_argument_by_field(
    address: str, request_: pb.QueryStockRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _call(address, "root", request_)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = status_pb2.Status.FromString(dict(refused.value.trailing_metadata())["grpc-status-details-bin"])
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details)
    assert [v.field for v in bad.field_violations] == [field]
