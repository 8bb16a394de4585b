"""ListHolds over a real gRPC server with auth on: filters, paging over two shards, the
caller's grants (a clerk sees the holds on their shelves only), refusals, the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from engine.api.auth import mint_token
from engine.api.client import LotwiseClient, RetryPolicy
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import ReserveLine
from engine.domain.errors import InvalidArgument, PermissionDenied
from engine.runtime.gateway import Gateway
from engine.runtime.types import HoldLine
from tests.auth_fixtures import start_authed_server

SECRET = b"h" * 48
POLICY = """
[roles]
admin = ["read", "reserve", "receive", "admin"]
clerk = ["read"]
manager = ["read", "reserve"]

[[grants]]
group = "admin"
role = "admin"
org = ""

[[grants]]
subject = "clerk"
role = "clerk"
site = "BOS"
bin = "A"

[[grants]]
subject = "manager"
role = "manager"
site = "BOS"

[[grants]]
subject = "nobody"
role = "clerk"
site = "NOWHERE"
"""


def as_user(address: str, subject: str, groups: list[str] | None = None) -> LotwiseClient:
    token = mint_token(SECRET, subject, groups or [])
    return LotwiseClient(address, token=token, retry=RetryPolicy(max_attempts=1), timeout_s=10)


@pytest_asyncio.fixture
async def address(tmp_path: Path, local_gateway: Gateway) -> AsyncIterator[str]:
    """Two sites, two skus; 12 holds at BOS bin A (h00..h11), one at BOS bin B, one across BOS and LA."""
    server, port = await start_authed_server(tmp_path, local_gateway, SECRET, POLICY)
    addr = f"127.0.0.1:{port}"
    async with as_user(addr, "root", ["admin"]) as admin:
        for sku in ("GLU", "STRIP"):
            await admin.put_sku(Sku(sku))
        for site in (Site("BOS", "acme/east/boston"), Site("LA", "acme/west/la")):
            await admin.put_site(site)
            for sku in ("GLU", "STRIP"):
                await admin.receive(sku, site.site, "L1", 100, bin="A/1", status="available")
                await admin.receive(sku, site.site, "L2", 100, bin="B", status="available")
        for i in range(12):
            sku = "GLU" if i % 2 == 0 else "STRIP"
            line = ReserveLine(1, bin_prefix="A")
            await admin.reserve([HoldLine(sku, "BOS", line)], 60_000 + i * 1_000, hold_id=f"h{i:02d}")
        await admin.reserve([HoldLine("GLU", "BOS", ReserveLine(2, bin_prefix="B"))], 60_000, hold_id="shelf-b")
        await admin.reserve(
            [HoldLine("GLU", "BOS", ReserveLine(1, bin_prefix="A")), HoldLine("GLU", "LA", ReserveLine(1))],
            60_000,
            hold_id="span",
        )
        await admin.commit("h00")
        await admin.release("h01")
    yield addr
    await server.stop(grace_s=1.0)


async def all_pages(client: LotwiseClient, page_size: int, **filters: object) -> list[str]:
    ids: list[str] = []
    token = ""
    for _ in range(100):  # bounded: a cursor that never ends is a bug
        holds, token = await client.list_holds(page_size=page_size, page_token=token, **filters)  # type: ignore[arg-type]
        assert len(holds) <= page_size
        ids += [h.hold_id for h in holds]
        if not token:
            return ids
    raise AssertionError("the cursor never ended")


async def test_pages_over_both_shards_see_every_hold_once_in_order(address: str) -> None:
    async with as_user(address, "root", ["admin"]) as admin:
        every = [f"h{i:02d}" for i in range(12)] + ["shelf-b", "span"]
        for size in (1, 3, 5, 14, 100):
            assert await all_pages(admin, size) == every
        holds, token = await admin.list_holds(page_size=14)
        assert token == ""
        span = next(h for h in holds if h.hold_id == "span")
        assert [(p.sku, p.site) for p in span.parts] == [("GLU", "BOS"), ("GLU", "LA")]
        assert span.held_qty == 2


async def test_filters_by_pair_site_state_and_expiry(address: str, manual_clock: ManualClock) -> None:
    async with as_user(address, "root", ["admin"]) as admin:
        la, _ = await admin.list_holds(site="LA")
        assert [(h.hold_id, [p.site for p in h.parts]) for h in la] == [("span", ["LA"])]
        pair, _ = await admin.list_holds(sku="STRIP", site="BOS")
        assert [h.hold_id for h in pair] == [f"h{i:02d}" for i in range(1, 12, 2)]
        done, _ = await admin.list_holds(states=["committed", "released"])
        assert [(h.hold_id, h.state.value) for h in done] == [("h00", "committed"), ("h01", "released")]
        soon = manual_clock.now_ms() + 62_500
        expiring, _ = await admin.list_holds(states=["active"], expiring_before_ms=soon)
        assert [h.hold_id for h in expiring] == ["h02", "shelf-b", "span"]
        manual_clock.advance(62_100)
        expired, _ = await admin.list_holds(states=["expired"])
        assert [h.hold_id for h in expired] == ["h02", "shelf-b", "span"]


async def test_one_call_sales_are_not_listed_as_holds(address: str) -> None:
    async with as_user(address, "root", ["admin"]) as admin:
        await admin.sell([HoldLine("GLU", "LA", ReserveLine(3))], request_id="sale-1")
        two = [HoldLine("GLU", "LA", ReserveLine(1)), HoldLine("STRIP", "LA", ReserveLine(1))]
        await admin.sell(two, request_id="sale-2")  # the coordinated path, with a hold header
        listed, _ = await admin.list_holds(site="LA")
        assert [h.hold_id for h in listed] == ["span"]


async def test_a_clerk_sees_only_the_holds_on_their_shelves(address: str) -> None:
    async with as_user(address, "clerk") as clerk:
        seen = await all_pages(clerk, 4)
        # Bin A of BOS only: not shelf-b (bin B); span's BOS part (bin A/1), never its LA part.
        assert seen == [f"h{i:02d}" for i in range(2, 12)] + ["span"]  # h00/h01 resolved: allocations left
        holds, _ = await clerk.list_holds(site="LA")
        assert holds == []
        spans, _ = await clerk.list_holds(sku="GLU", site="BOS", states=["active"])
        span = next(h for h in spans if h.hold_id == "span")
        assert [p.site for p in span.parts] == ["BOS"]
    async with as_user(address, "manager") as manager:
        seen = await all_pages(manager, 50)
        assert {"shelf-b", "span"} <= set(seen)
        holds, _ = await manager.list_holds(site="LA")
        assert holds == []
    async with as_user(address, "stranger") as stranger:
        with pytest.raises(PermissionDenied):
            await stranger.list_holds()


async def test_malformed_requests_are_refused_with_field_violations(address: str) -> None:
    async with as_user(address, "root", ["admin"]) as admin:
        with pytest.raises(InvalidArgument) as err:
            await admin.list_holds(page_size=5_000, page_token="garbage", expiring_before_ms=-5, sku="bad sku")
        fields = {v.field for v in err.value.violations}
        assert {"page_size", "page_token"} <= fields
        with pytest.raises(InvalidArgument) as partial:
            await admin.list_holds(states=["partial"])
        assert [v.field for v in partial.value.violations] == ["states[0]"]


async def test_the_cli_lists_holds_as_json_and_refuses_bad_flags(address: str) -> None:
    env = {**os.environ, "LOTWISE_TOKEN": mint_token(SECRET, "root", ["admin"])}
    cli = [sys.executable, "-m", "engine.cli", "holds", "list", "--target", address]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], env=env, capture_output=True, text=True, check=False, timeout=60)

    done = await asyncio.to_thread(run, "--site", "LA", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert [(r["hold_id"], r["site"], r["state"]) for r in json.loads(done.stdout)] == [("span", "LA", "active")]
    table = await asyncio.to_thread(run, "--page-size", "2")
    assert (table.returncode, "next page: --page-token" in table.stdout) == (0, True), table.stderr
    bad = await asyncio.to_thread(run, "--page-size", "0")
    assert (bad.returncode, "--page-size" in bad.stderr) == (2, True)
    late = await asyncio.to_thread(run, "--expiring-before", "tomorrow")
    assert late.returncode == 2
