"""HTTP/JSON through a real Envoy in front of a real gRPC server (auth on, in-process shards):
authentication, the authorization matrix, error mapping, idempotency, REST flows, health,
the OpenAPI document, limits, and the supervision of the Envoy process."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from adapters.envoy.gateway import EnvoyConfig, EnvoyError, EnvoyGateway
from engine.api.auth import mint_token
from engine.api.client import LotwiseClient, RetryPolicy
from engine.api.server import LotwiseServer
from engine.bootstrap.http import DESCRIPTOR, OPENAPI
from engine.domain.catalog import Site, Sku
from engine.domain.shard import Expect
from engine.runtime.gateway import Gateway
from tests.auth_fixtures import start_authed_server
from tests.http_client import Answer, http

SECRET = b"w" * 48
POLICY = """
[roles]
admin = ["read", "reserve", "receive", "move", "adjust", "count", "admin"]
clerk = ["read", "reserve"]

[[grants]]
group = "admin"
role = "admin"
org = ""

[[grants]]
subject = "clerk"
role = "clerk"
site = "BOS"
"""


def token(subject: str, groups: list[str] | None = None) -> str:
    return mint_token(SECRET, subject, groups or [])


ADMIN = token("root", ["admin"])
CLERK = token("clerk")


@dataclass
class Stack:
    url: str
    server: LotwiseServer
    envoy: EnvoyGateway
    gateway: Gateway


@pytest_asyncio.fixture
async def stack(tmp_path: Path, local_gateway: Gateway) -> AsyncIterator[Stack]:
    """GLU stocked at BOS and LA (10 each in bin A/1); NYC known but empty."""
    server, port = await start_authed_server(tmp_path, local_gateway, SECRET, POLICY)
    async with LotwiseClient(f"127.0.0.1:{port}", token=ADMIN, retry=RetryPolicy(max_attempts=1)) as admin:
        await admin.put_sku(Sku("GLU"))
        for site in (Site("BOS", "acme/east/boston"), Site("LA", "acme/west/la"), Site("NYC", "acme/east/nyc")):
            await admin.put_site(site)
        for site in ("BOS", "LA"):
            await admin.receive("GLU", site, "L1", 10, bin="A/1", status="available")
    envoy = EnvoyGateway(EnvoyConfig(tmp_path / "envoy", "127.0.0.1", port, DESCRIPTOR, OPENAPI))
    await envoy.start()
    yield Stack(envoy.url, server, envoy, local_gateway)
    await envoy.stop()
    await server.stop(grace_s=1.0)


def status_of(answer: Answer) -> tuple[int, int]:
    """(HTTP status, google.rpc.Status code) of an error answer."""
    assert answer.content_type.startswith("application/json"), answer
    return answer.status, answer.json()["code"]


def details(answer: Answer, kind: str) -> list[dict[str, object]]:
    return [d for d in answer.json()["details"] if d["@type"].endswith(kind)]


async def test_no_token_is_401_with_a_json_status(stack: Stack) -> None:
    missing = await http(stack.url, "GET", "/v1/sites/BOS/skus/GLU/availability")
    assert status_of(missing) == (401, 16)
    assert "token" in missing.json()["message"].lower()
    forged = await http(stack.url, "GET", "/v1/skus", token=mint_token(b"x" * 48, "root", ["admin"]))
    assert status_of(forged) == (401, 16)
    auto = await http(stack.url, "POST", "/lotwise.v1.Inventory/ListSkus", {})
    assert status_of(auto) == (401, 16)


async def test_a_clerk_of_one_site_reads_it_and_nothing_else(stack: Stack) -> None:
    mine = await http(stack.url, "GET", "/v1/sites/BOS/skus/GLU/availability", token=CLERK)
    assert (mine.status, mine.json()["available"]) == (200, "10")
    theirs = await http(stack.url, "GET", "/v1/sites/LA/skus/GLU/availability", token=CLERK)
    assert status_of(theirs) == (403, 7)
    rows = await http(stack.url, "POST", "/v1/stock:query", {}, token=CLERK)
    assert [(r["site"], r["row"]["qty"]) for r in rows.json()["rows"]] == [("BOS", "10")]
    everything = await http(stack.url, "POST", "/v1/stock:query", {}, token=ADMIN)
    assert [r["site"] for r in everything.json()["rows"]] == ["BOS", "LA"]
    sites = await http(stack.url, "GET", "/v1/sites", token=CLERK)
    assert [s["site"] for s in sites.json()["sites"]] == ["BOS"]
    hold = {"request_id": "clerk-la", "lines": [{"sku": "GLU", "site": "LA", "qty": "1"}], "ttl_ms": "60000"}
    assert status_of(await http(stack.url, "POST", "/v1/holds", hold, token=CLERK)) == (403, 7)
    assert status_of(await http(stack.url, "POST", "/v1/admin:snapshot", {}, token=CLERK)) == (403, 7)
    put = {"sku": {"name": "not yours"}}
    assert status_of(await http(stack.url, "PUT", "/v1/skus/GLU", put, token=CLERK)) == (403, 7)


async def test_list_holds_over_http_is_scoped_too(stack: Stack) -> None:
    for site in ("BOS", "LA"):
        line = {"sku": "GLU", "site": site, "qty": "1"}
        body = {"request_id": f"h-{site}", "lines": [line], "ttl_ms": "60000"}
        assert (await http(stack.url, "POST", "/v1/holds", body, token=ADMIN)).status == 200
    admin = await http(stack.url, "GET", "/v1/holds?states=HOLD_STATE_ACTIVE", token=ADMIN)
    assert [h["hold_id"] for h in admin.json()["holds"]] == ["h-BOS", "h-LA"]
    clerk = await http(stack.url, "GET", "/v1/holds", token=CLERK)
    assert [h["hold_id"] for h in clerk.json()["holds"]] == ["h-BOS"]
    page = await http(stack.url, "GET", "/v1/holds?page_size=1", token=ADMIN)
    token_ = page.json()["next_page_token"]
    rest = await http(stack.url, "GET", f"/v1/holds?page_size=1&page_token={token_}", token=ADMIN)
    assert [h["hold_id"] for h in rest.json()["holds"]] == ["h-LA"]
    assert rest.json()["next_page_token"] == ""


async def test_errors_map_to_http_statuses_with_their_details(stack: Stack, local_gateway: Gateway) -> None:
    bad = {"request_id": "r1", "lot_id": "L1", "qty": "-1"}
    invalid = await http(stack.url, "POST", "/v1/sites/BOS/skus/GLU:receive", bad, token=ADMIN)
    assert status_of(invalid) == (400, 3)
    violations = details(invalid, "google.rpc.BadRequest")[0]["field_violations"]
    assert [v["field"] for v in violations] == ["qty"]  # type: ignore[index]
    too_much = {"request_id": "r2", "lines": [{"sku": "GLU", "site": "BOS", "qty": "99"}], "ttl_ms": "60000"}
    short = await http(stack.url, "POST", "/v1/holds", too_much, token=ADMIN)
    assert status_of(short) == (400, 9)  # FAILED_PRECONDITION: Envoy's mapping is 400
    info = details(short, "google.rpc.ErrorInfo")[0]
    assert (info["reason"], info["metadata"]) == (
        "INSUFFICIENT_STOCK",
        {"available": "10", "requested": "99", "site": "BOS", "sku": "GLU"},
    )
    missing = await http(stack.url, "GET", "/v1/holds/no-such-hold", token=ADMIN)
    assert status_of(missing) == (404, 5)
    assert details(missing, "google.rpc.ResourceInfo")[0]["resource_name"] == "no-such-hold"
    batch = {"commands": [{"get_hold": {"hold_id": "x"}}] * 1025}
    assert status_of(await http(stack.url, "POST", "/v1/batches", batch, token=ADMIN)) == (429, 8)
    # A cell on its way to this shard (a hand-off): the shard answers UNAVAILABLE with RetryInfo.
    await local_gateway.router.to_pair("GLU", "NYC", Expect("GLU", "NYC"), None)
    moving = await http(stack.url, "GET", "/v1/sites/NYC/skus/GLU/availability", token=ADMIN)
    assert status_of(moving) == (503, 14)
    assert details(moving, "google.rpc.RetryInfo")
    unknown = await http(stack.url, "GET", "/v1/no-such-route", token=ADMIN)
    assert unknown.status == 404
    unimplemented = await http(stack.url, "POST", "/lotwise.v1.History/GetSinkStatus", {}, token=ADMIN)
    assert status_of(unimplemented) == (501, 12)  # this server runs without history


async def test_a_request_id_answers_once_and_refuses_another_payload(stack: Stack) -> None:
    body = {
        "request_id": "idem-1",
        "hold_id": "idem",
        "lines": [{"sku": "GLU", "site": "BOS", "qty": "2"}],
        "ttl_ms": "60000",
    }
    first = await http(stack.url, "POST", "/v1/holds", body, token=ADMIN)
    again = await http(stack.url, "POST", "/v1/holds", body, token=ADMIN)
    assert first.status == again.status == 200
    assert first.json() == again.json()
    stock = await http(stack.url, "GET", "/v1/sites/BOS/skus/GLU/availability", token=ADMIN)
    assert stock.json()["available"] == "8"  # held once, not twice
    other = {**body, "lines": [{"sku": "GLU", "site": "BOS", "qty": "3"}]}
    conflict = await http(stack.url, "POST", "/v1/holds", other, token=ADMIN)
    assert status_of(conflict) == (409, 6)
    assert details(conflict, "google.rpc.ErrorInfo")[0]["reason"] == "REQUEST_ID_REUSED"


async def test_rest_flow_reserve_then_commit(stack: Stack) -> None:
    put = await http(
        stack.url, "PUT", "/v1/skus/STRIP", {"request_id": "p1", "sku": {"name": "Test strips"}}, token=ADMIN
    )
    assert put.json()["sku"] == {
        "sku": "STRIP",
        "name": "Test strips",
        "unit": "ea",
        "opened_shelf_life_days": 0,
        "opened_shelf_life_hours": 0,
        "substitutes": [],
    }
    receipt = {"request_id": "rc1", "lot_id": "L9", "qty": "6", "status": "available", "bin": "B/2"}
    received = await http(stack.url, "POST", "/v1/sites/BOS/skus/STRIP:receive", receipt, token=ADMIN)
    assert received.json() == {"lot_id": "L9", "qty": "6"}
    hold = {
        "request_id": "rs1",
        "hold_id": "order-7",
        "lines": [{"sku": "STRIP", "site": "BOS", "qty": "4"}],
        "ttl_ms": "60000",
    }
    reserved = await http(stack.url, "POST", "/v1/holds", hold, token=CLERK)
    assert reserved.json()["hold"]["state"] == "HOLD_STATE_ACTIVE"
    committed = await http(
        stack.url,
        "POST",
        "/v1/holds/order-7:commit",
        {"request_id": "cm1", "lines": [{"sku": "STRIP", "site": "BOS", "qty": "3"}]},
        token=CLERK,
    )
    assert committed.status == 200, committed.body
    assert (committed.json()["committed_qty"], committed.json()["released_qty"]) == ("3", "1")
    read = await http(stack.url, "GET", "/v1/holds/order-7", token=CLERK)
    assert read.json()["hold"]["state"] == "HOLD_STATE_COMMITTED"
    sliced = await http(
        stack.url,
        "GET",
        "/v1/sites/BOS/skus/STRIP/availability?group_by=DIMENSION_BIN&filter.bin_prefix=B",
        token=CLERK,
    )
    assert sliced.json()["available"] == "3"
    assert [g["value"] for r in sliced.json()["rows"] for g in r["group"]] == ["B/2"]


async def test_health_and_openapi_need_no_token(stack: Stack) -> None:
    healthy = await http(stack.url, "GET", "/healthz")
    assert healthy.status == 200
    doc = await http(stack.url, "GET", "/openapi.json")
    assert (doc.status, doc.content_type) == (200, "application/json")
    assert doc.body == OPENAPI.read_bytes()
    await stack.server.health.enter_graceful_shutdown()  # what `stop()` does first
    for _ in range(100):  # Envoy checks every second; two failures mark it unhealthy
        if (await http(stack.url, "GET", "/healthz")).status == 503:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("/healthz did not turn 503 after the engine stopped serving")


async def test_bodies_over_the_message_limit_are_refused_as_429(stack: Stack) -> None:
    huge = {"request_id": "big", "lines": [], "doc_ref": "x" * (5 * 1024 * 1024)}
    refused = await http(stack.url, "POST", "/v1/holds", huge, token=ADMIN)
    assert status_of(refused) == (429, 8)  # the gRPC server's 4 MiB message bound, as for a gRPC caller
    assert "larger than max" in refused.json()["message"]


async def test_envoy_stops_kills_and_says_why_it_cannot_start(stack: Stack, tmp_path: Path) -> None:
    port = stack.envoy.port
    await stack.envoy.kill()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more
    await stack.envoy.start()  # same port, as the config fixed it
    assert (await http(stack.url, "GET", "/healthz")).status == 200
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = EnvoyConfig(
            tmp_path / "busy",
            "127.0.0.1",
            stack.server.port,
            DESCRIPTOR,
            OPENAPI,
            port=taken.getsockname()[1],
            start_timeout_s=5,
        )
        with pytest.raises(EnvoyError, match="envoy"):
            await EnvoyGateway(busy).start()
    with pytest.raises(EnvoyError, match="not found"):
        await EnvoyGateway(
            EnvoyConfig(tmp_path / "x", "127.0.0.1", 1, DESCRIPTOR, OPENAPI, binary=tmp_path / "nope")
        ).start()
