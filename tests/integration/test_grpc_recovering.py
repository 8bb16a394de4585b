"""A shard killed under load answers UNAVAILABLE with details while it recovers (issue 19).

Real Ray, real nats-server, real gRPC on 127.0.0.1. A raw stub (no retries) sees every
answer the server gives while a shard process is killed and Ray brings it back: each is
OK or UNAVAILABLE with ErrorInfo and RetryInfo — never CANCELLED, UNKNOWN or INTERNAL.
LotwiseClient meanwhile retries the same requests within its deadline and gets through.
Afterwards every refused request is sent again with its own request id, and the books
are exact: what was reserved and committed is exactly what left the shelf.
"""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

import grpc
import pytest
from google.rpc import error_details_pb2

from engine.api.client import LotwiseClient, RetryPolicy
from engine.api.errors import REASON_UNAVAILABLE, retry_delay_s, status_of_rpc_error
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc
from engine.bootstrap import running_engine
from engine.domain.catalog import Site, Sku
from engine.domain.commands import ReserveLine
from engine.domain.errors import FailedPrecondition
from engine.domain.holds import is_hold_aborted
from engine.runtime.types import HoldLine
from tests.conftest import AUTH_METADATA, engine_settings
from tests.integration.test_durability import pid_of, until_served

pytestmark = [pytest.mark.ray, pytest.mark.asyncio(loop_scope="session")]

SKUS = ("strip", "gauze", "tape", "swab")  # spread over both shards
SITE = "ward1"
STOCK = 10_000
CALLERS = 16
PATIENT = RetryPolicy(max_attempts=60, initial_backoff_s=0.05, max_backoff_s=0.5)


@dataclass
class Answers:
    """Every answer the raw stub got, and the requests it must send again."""

    codes: Counter[str] = field(default_factory=Counter)
    untyped: list[str] = field(default_factory=list)  # UNAVAILABLE without its details, or worse
    unanswered: list[pb.ReserveRequest | pb.CommitRequest] = field(default_factory=list)
    committed: set[str] = field(default_factory=set)  # hold ids whose commit was acknowledged


def typed_unavailable(err: grpc.aio.AioRpcError) -> bool:
    status = status_of_rpc_error(err)
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    if not infos:
        return False
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    return info.reason == REASON_UNAVAILABLE and retry_delay_s(status) is not None


async def send(stub: pb_grpc.InventoryStub, request: pb.ReserveRequest | pb.CommitRequest, book: Answers) -> bool:
    method = stub.Reserve if isinstance(request, pb.ReserveRequest) else stub.Commit
    try:
        await method(request, timeout=15, metadata=AUTH_METADATA)
        if isinstance(request, pb.CommitRequest):
            book.committed.add(request.hold_id)
    except grpc.aio.AioRpcError as err:
        book.codes[err.code().name] += 1
        if err.code() is not grpc.StatusCode.UNAVAILABLE or not typed_unavailable(err):
            book.untyped.append(f"{err.code().name}: {err.details()}")
        book.unanswered.append(request)
        return False
    book.codes["OK"] += 1
    return True


async def raw_caller(stub: pb_grpc.InventoryStub, k: int, stop: asyncio.Event, book: Answers) -> None:
    n = 0
    while not stop.is_set():
        hold_id = f"raw{k}-{n}"
        n += 1
        line = pb.ReserveLine(sku=SKUS[n % len(SKUS)], site=SITE, qty=1)
        reserve = pb.ReserveRequest(request_id=f"r-{hold_id}", hold_id=hold_id, lines=[line], ttl_ms=600_000)
        if await send(stub, reserve, book):
            await send(stub, pb.CommitRequest(request_id=f"c-{hold_id}", hold_id=hold_id), book)
        else:
            book.unanswered.append(pb.CommitRequest(request_id=f"c-{hold_id}", hold_id=hold_id))


async def client_caller(client: LotwiseClient, k: int, stop: asyncio.Event) -> tuple[int, int]:
    """Orders through LotwiseClient: its retries carry them across the recovery. A reserve
    retried after UNAVAILABLE may find its hold rolled back (HOLD_ABORTED, a definite
    answer: nothing held): the order is placed again under new ids. (orders, aborted)"""
    done = aborted = 0
    while not stop.is_set():
        line = HoldLine(SKUS[(k + done + aborted) % len(SKUS)], SITE, ReserveLine(1))
        try:
            hold = await client.reserve([line], 600_000)
        except FailedPrecondition as err:
            if not is_hold_aborted(err):
                raise
            aborted += 1
            continue
        await client.commit(hold.hold_id)
        done += 1
    return done, aborted


async def test_a_recovering_shard_answers_typed_unavailable_and_the_books_stay_exact(ray_session: None) -> None:
    async with (
        running_engine(engine_settings(snapshot_min_tail_ops=40, snapshot_tail_fraction=0, standby=False)) as running,
        LotwiseClient(running.grpc_address, timeout_s=30, retry=PATIENT) as client,
    ):
        await client.put_site(Site(SITE, "acme"), request_id="seed-site")
        for sku in SKUS:
            await client.put_sku(Sku(sku), request_id=f"seed-{sku}")
            await client.receive(sku, SITE, "L1", STOCK, status="available", request_id=f"seed-rcv-{sku}")
        stub = pb_grpc.InventoryStub(client.channel)
        book, stop = Answers(), asyncio.Event()
        raw = [asyncio.create_task(raw_caller(stub, k, stop, book)) for k in range(CALLERS)]
        retried = [asyncio.create_task(client_caller(client, k, stop)) for k in range(CALLERS // 2)]
        actors = running.gateway.handles
        for victim in sorted(actors):  # each shard once, while the load runs
            await asyncio.sleep(1.0)
            os.kill(await pid_of(actors[victim]), signal.SIGKILL)
            await asyncio.sleep(2.0)
        stop.set()
        await asyncio.gather(*raw)
        by_client = await asyncio.gather(*retried)
        orders_by_client = sum(done for done, _ in by_client)

        assert book.untyped == [], book.untyped[:5]
        assert set(book.codes) <= {"OK", "UNAVAILABLE"}, book.codes
        assert book.codes["UNAVAILABLE"] > 0, "no call met a recovering shard: the test proved nothing"
        assert orders_by_client > 0

        # Every refused request again, same ids: each lands once (or answers its first answer).
        aborted: set[str] = set()
        for request in book.unanswered:
            if request.hold_id in aborted:
                continue  # its reserve was rolled back: there is nothing to commit
            if not await until_served(lambda request=request: send_retried(client, request, book)):
                aborted.add(request.hold_id)
        committed = len(book.committed) + orders_by_client
        left = 0
        for sku in SKUS:
            availability = await until_served(lambda sku=sku: client.get_availability(sku, SITE))
            assert sum(r.held for r in availability.rows) == 0
            left += sum(r.qty for r in availability.rows)
        assert len(SKUS) * STOCK - left == committed
        ok, checks = await client.verify()
        assert ok, [c for c in checks if not c.ok]
        # The refusals are counted, by shard and reason, on /metrics.
        text = await asyncio.to_thread(scrape, running.metrics_url)
        refused = [line for line in text.splitlines() if line.startswith("lotwise_shard_refused_ops_total{")]
        assert any('reason="unavailable"' in line or 'reason="recovering"' in line for line in refused), refused


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


async def send_retried(client: LotwiseClient, request: pb.ReserveRequest | pb.CommitRequest, book: Answers) -> bool:
    """Send a refused request again with its own ids; False if its hold was rolled back."""
    if isinstance(request, pb.CommitRequest):
        await client.commit(request.hold_id, request_id=request.request_id)
        book.committed.add(request.hold_id)
        return True
    line = request.lines[0]
    lines = [HoldLine(line.sku, line.site, ReserveLine(line.qty))]
    try:
        await client.reserve(lines, request.ttl_ms, hold_id=request.hold_id, request_id=request.request_id)
    except FailedPrecondition as err:
        if not is_hold_aborted(err):
            raise
        return False
    return True
