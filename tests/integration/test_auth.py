"""Authentication and authorization over real gRPC (in-process shards, 127.0.0.1, port 0).

Tokens: missing / expired / not yet valid / wrong audience / wrong issuer / bad signature /
rotated keys. Grants: the same QueryStock by a shelf clerk, a site manager and a regional
manager; denials with their details; Execute batches checked per command; a site moved to
another org node; health and reflection open; history and dead letters scoped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from adapters.auth.files import WatchedFile, load_policy, load_secret, write_private
from engine.api.auth import AuthMetrics, Authorizer, ServerAuth, TokenSettings, TokenVerifier, mint_token
from engine.api.client import LotwiseClient, RetryPolicy
from engine.api.errors import status_of_rpc_error
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc
from engine.api.server import ApiMetrics, LotwiseServer, start_server
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension
from engine.domain.commands import ReserveLine
from engine.domain.errors import PermissionDenied
from engine.domain.inventory import StockQuery
from engine.runtime.gateway import Gateway
from engine.runtime.types import HoldLine

SECRET = b"k" * 48
OTHER_SECRET = b"z" * 48

POLICY = """
[roles]
admin = ["read", "read_cost", "reserve", "receive", "move", "adjust", "count", "admin"]
clerk = ["read", "move", "count"]
site_manager = ["read", "reserve", "receive", "move", "adjust", "count"]
regional_manager = ["read"]

[[grants]]
group = "admin"
role = "admin"
org = ""

[[grants]]
subject = "clerk"
role = "clerk"
site = "BOS"
bin = "A/1"

[[grants]]
subject = "manager"
role = "site_manager"
site = "BOS"

[[grants]]
subject = "regional"
role = "regional_manager"
org = "acme/east"
"""

SITES = (Site("BOS", "acme/east/boston"), Site("NYC", "acme/east/nyc"), Site("LA", "acme/west/la"))
BINS = ("A/1", "A/1/x", "A/10", "AA", "B")


@dataclass
class Engine:
    address: str
    secret_file: Path
    policy_file: Path
    metrics: AuthMetrics


@pytest_asyncio.fixture
async def engine(tmp_path: Path, local_gateway: Gateway) -> AsyncIterator[Engine]:
    secret_file, policy_file = tmp_path / "signing.key", tmp_path / "policy.toml"
    write_private(secret_file, SECRET)
    policy_file.write_text(POLICY)
    metrics = AuthMetrics(CollectorRegistry())
    verifier = TokenVerifier([WatchedFile(secret_file, load_secret, check_interval_s=0.0)], TokenSettings())
    authorizer = Authorizer(WatchedFile(policy_file, load_policy, check_interval_s=0.0).current, metrics)
    server: LotwiseServer
    server, port = await start_server(
        local_gateway,
        "127.0.0.1",
        0,
        metrics=ApiMetrics(CollectorRegistry()),
        admin=local_gateway,
        auth=ServerAuth(verifier, authorizer),
    )
    address = f"127.0.0.1:{port}"
    async with as_user(address, "root", ["admin"]) as admin:
        await admin.put_sku(Sku("GLU"))
        for site in SITES:
            await admin.put_site(site)
            for i, bin_ in enumerate(BINS):
                await admin.receive("GLU", site.site, "L1", 10**i, bin=bin_, status="available")
    yield Engine(address, secret_file, policy_file, metrics)
    await server.stop(grace_s=1.0)


def token(subject: str, groups: list[str] | None = None, secret: bytes = SECRET, **kw: object) -> str:
    return mint_token(secret, subject, groups or [], **kw)  # type: ignore[arg-type]


def as_user(address: str, subject: str, groups: list[str] | None = None) -> LotwiseClient:
    return LotwiseClient(address, token=token(subject, groups), retry=RetryPolicy(max_attempts=1), timeout_s=10)


def total(rows: list[object]) -> int:
    return sum(r.row.qty for r in rows)  # type: ignore[attr-defined]


# ---- authentication ----------------------------------------------------------------------


async def raw_call(address: str, metadata: tuple[tuple[str, str], ...]) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.InventoryStub(channel).ListSites(pb.ListSitesRequest(), metadata=metadata, timeout=10)
    return err.value


def reason(err: grpc.aio.AioRpcError) -> str:
    status = status_of_rpc_error(err)
    for any_ in status.details:
        info = error_details_pb2.ErrorInfo()
        if any_.Unpack(info):
            return info.reason
    return ""


@pytest.mark.parametrize(
    ("bearer", "expected"),
    [
        (None, "TOKEN_MISSING"),
        ("not-a-jwt", "TOKEN_INVALID"),
        (token("root", ["admin"], ttl_s=-120), "TOKEN_EXPIRED"),
        (token("root", ["admin"], not_before=4_000_000_000), "TOKEN_NOT_YET_VALID"),
        (token("root", ["admin"], settings=TokenSettings(audience="someone-else")), "TOKEN_WRONG_AUDIENCE"),
        (token("root", ["admin"], settings=TokenSettings(issuer="evil")), "TOKEN_WRONG_ISSUER"),
        (token("root", ["admin"], secret=OTHER_SECRET), "TOKEN_INVALID"),
    ],
)
async def test_bad_credentials_are_unauthenticated_with_a_reason(
    engine: Engine, bearer: str | None, expected: str
) -> None:
    metadata = () if bearer is None else (("authorization", f"Bearer {bearer}"),)
    err = await raw_call(engine.address, metadata)
    assert err.code() is grpc.StatusCode.UNAUTHENTICATED
    assert reason(err) == expected
    assert engine.metrics.unauthenticated.labels(expected)._value.get() >= 1


async def test_a_rotated_key_stops_old_tokens_and_accepts_new_ones(engine: Engine) -> None:
    old = token("root", ["admin"])
    async with LotwiseClient(engine.address, token=old, retry=RetryPolicy(max_attempts=1)) as client:
        assert len(await client.list_sites()) == 3  # verified and cached
        write_private(engine.secret_file, OTHER_SECRET)  # rotation: no restart
        err = await raw_call(engine.address, (("authorization", f"Bearer {old}"),))
        assert reason(err) == "TOKEN_INVALID"  # the cache does not outlive the key
    async with LotwiseClient(engine.address, token=token("root", ["admin"], secret=OTHER_SECRET)) as client:
        assert len(await client.list_sites()) == 3


async def test_health_and_reflection_answer_without_a_token(engine: Engine) -> None:
    async with grpc.aio.insecure_channel(engine.address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


# ---- role-based views --------------------------------------------------------------------


async def query(engine: Engine, subject: str, q: StockQuery | None = None) -> list[object]:
    async with as_user(engine.address, subject) as client:
        return list(await client.query_stock(q or StockQuery()))


async def test_the_same_query_returns_each_role_its_own_slice(engine: Engine) -> None:
    everything = 3 * sum(10**i for i in range(len(BINS)))
    async with as_user(engine.address, "root", ["admin"]) as admin:
        assert total(await admin.query_stock(StockQuery())) == everything
    # Clerk: BOS, bins A/1 and A/1/x — never A/10 or AA.
    assert total(await query(engine, "clerk")) == 1 + 10
    by_bin = await query(engine, "clerk", StockQuery(group_by=(Dimension.BIN,)))
    assert {dict(r.row.group)["bin"] for r in by_bin} == {"A/1", "A/1/x"}  # type: ignore[attr-defined]
    # A query that asks for more than the grant still gets only the grant (filter, not refusal).
    assert total(await query(engine, "clerk", StockQuery(sites=("BOS", "NYC")))) == 11
    # Site manager: all of BOS.
    assert total(await query(engine, "manager")) == sum(10**i for i in range(len(BINS)))
    # Regional manager: BOS and NYC (acme/east), never LA; group-by site and org roll-ups agree.
    rows = await query(engine, "regional", StockQuery(by_sku=False))
    assert {r.site: r.row.qty for r in rows} == {"BOS": 11111, "NYC": 11111}  # type: ignore[attr-defined]
    assert total(await query(engine, "regional", StockQuery(org_prefix="acme"))) == 2 * 11111
    assert total(await query(engine, "regional", StockQuery(org_prefix="acme/west"))) == 0


async def test_availability_is_scoped_to_the_bins_granted(engine: Engine) -> None:
    async with as_user(engine.address, "clerk") as clerk:
        avail = await clerk.get_availability("GLU", "BOS", (Dimension.BIN,))
        assert avail.available == 11
        with pytest.raises(PermissionDenied):
            await clerk.get_availability("GLU", "NYC")


async def test_a_site_moved_to_another_org_node_leaves_the_regional_view(engine: Engine) -> None:
    async with as_user(engine.address, "root", ["admin"]) as admin:
        await admin.put_site(Site("NYC", "acme/west/nyc"))
    assert {r.site for r in await query(engine, "regional", StockQuery(by_sku=False))} == {"BOS"}  # type: ignore[attr-defined]


# ---- writes ------------------------------------------------------------------------------


async def test_denials_name_the_action_and_resource_and_are_counted(engine: Engine) -> None:
    async with as_user(engine.address, "clerk") as clerk:
        await clerk.move("GLU", "BOS", "L1", 1, "A/1", "A/1/x", status="available")  # inside the grant
        for attempt in (
            clerk.move("GLU", "BOS", "L1", 1, "A/1", "A/10", status="available"),  # A/10 is not A/1
            clerk.receive("GLU", "BOS", "L2", 1, bin="A/1"),  # clerks do not receive
            clerk.adjust("GLU", "NYC", "L1", 5, bin="A/1", status="available"),  # another site
        ):
            with pytest.raises(PermissionDenied) as denied:
                await attempt
            assert "no grant for" in denied.value.message
    assert engine.metrics.denied.labels("move")._value.get() == 1
    assert engine.metrics.denied.labels("receive")._value.get() == 1
    assert engine.metrics.denied.labels("count")._value.get() == 1


async def test_denial_details_on_the_wire(engine: Engine) -> None:
    bearer = (("authorization", f"Bearer {token('clerk')}"),)
    async with grpc.aio.insecure_channel(engine.address) as channel:
        req = pb.ReceiveRequest(request_id="r1", sku="GLU", site="LA", lot_id="L9", qty=1)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.InventoryStub(channel).Receive(req, metadata=bearer, timeout=10)
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    info = error_details_pb2.ErrorInfo()
    assert status_of_rpc_error(err.value).details[0].Unpack(info)
    assert (info.reason, dict(info.metadata)) == ("PERMISSION_DENIED", {"action": "receive", "resource": "site:LA"})


async def test_holds_need_reserve_on_every_line(engine: Engine) -> None:
    async with as_user(engine.address, "manager") as manager:
        hold = await manager.reserve([HoldLine("GLU", "BOS", ReserveLine(2))], 60_000)
        await manager.commit(hold.hold_id)
        with pytest.raises(PermissionDenied):
            await manager.reserve(
                [HoldLine("GLU", "BOS", ReserveLine(1)), HoldLine("GLU", "LA", ReserveLine(1))], 60_000
            )
    async with as_user(engine.address, "root", ["admin"]) as admin:
        other = await admin.reserve([HoldLine("GLU", "LA", ReserveLine(1))], 60_000)
    async with as_user(engine.address, "manager") as manager:
        with pytest.raises(PermissionDenied):
            await manager.release(other.hold_id)
        with pytest.raises(PermissionDenied):
            await manager.get_hold(other.hold_id)


async def test_batched_commands_are_checked_one_by_one(engine: Engine) -> None:
    # The client coalesces concurrent calls into one Execute batch: each is checked alone.
    async with as_user(engine.address, "manager") as manager:
        results = await asyncio.gather(
            manager.receive("GLU", "BOS", "L3", 1, bin="B"),
            manager.receive("GLU", "NYC", "L3", 1, bin="B"),
            return_exceptions=True,
        )
    assert not isinstance(results[0], BaseException)
    assert isinstance(results[1], PermissionDenied)


async def test_catalog_and_admin_rpcs_need_an_engine_wide_admin_grant(engine: Engine) -> None:
    async with as_user(engine.address, "manager") as manager:
        with pytest.raises(PermissionDenied):
            await manager.put_site(Site("BOS", "acme/elsewhere"))
        with pytest.raises(PermissionDenied):
            await manager.verify()
        assert [s.site for s in await manager.list_sites()] == ["BOS"]  # listings show the grant only


async def test_a_policy_change_applies_without_a_restart(engine: Engine) -> None:
    assert total(await query(engine, "clerk")) == 11
    engine.policy_file.write_text(POLICY.replace('bin = "A/1"', 'bin = "A"'))
    assert total(await query(engine, "clerk")) == 1 + 10 + 100  # A covers A/1, A/1/x, A/10; not AA


async def test_whoami_says_whose_view_it_is(engine: Engine) -> None:
    async with as_user(engine.address, "clerk") as clerk:
        view = await clerk.whoami()
    assert (view.subject, view.auth) == ("clerk", True)
    assert view.scopes == (("site BOS bin A/1", ("read", "move", "count")),)
    assert view.line() == "view of clerk: site BOS bin A/1 [read, move, count]"
    async with as_user(engine.address, "root", ["admin"]) as admin:
        assert (await admin.whoami()).line().startswith("view of root (admin): everything [read, read_cost, ")
    async with as_user(engine.address, "nobody") as nobody:
        assert (await nobody.whoami()).line() == "view of nobody: no grants"


async def test_a_stream_is_authenticated_and_each_command_checked(engine: Engine) -> None:
    def batch(n: int, site: str) -> pb.CommandBatch:
        receive = pb.ReceiveRequest(request_id=f"s{n}", sku="GLU", site=site, lot_id="L5", qty=1, bin="B")
        return pb.CommandBatch(commands=[pb.Command(receive=receive)], batch_id=n)

    bearer = (("authorization", f"Bearer {token('manager')}"),)
    async with grpc.aio.insecure_channel(engine.address) as channel:
        stub = pb_grpc.InventoryStub(channel)
        replies = [r async for r in stub.Stream(iter([batch(1, "BOS"), batch(2, "LA")]), metadata=bearer, timeout=10)]
        by_id = {r.batch_id: r.replies[0] for r in replies}
        assert by_id[1].WhichOneof("reply") == "receive"
        assert (by_id[2].error.code, by_id[2].error.reason) == (
            grpc.StatusCode.PERMISSION_DENIED.value[0],
            "PERMISSION_DENIED",
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            _ = [r async for r in stub.Stream(iter([batch(3, "BOS")]), timeout=10)]
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_other_stubs_on_the_clients_channel_send_its_metadata(engine: Engine) -> None:
    from engine.api.gen.lotwise.v1 import admin_pb2 as apb
    from engine.api.gen.lotwise.v1 import admin_pb2_grpc as apb_grpc

    async with as_user(engine.address, "root", ["admin"]) as admin:
        # What the CLI's history, import and dead-letter commands do: their own stubs, the client's channel.
        stub = apb_grpc.AdminStub(admin.channel)
        stats = await stub.ShardStats(apb.ShardStatsRequest(), metadata=admin.metadata, timeout=10)
        assert len(stats.shards) == 2


async def test_cell_health_commands_need_their_grants(engine: Engine) -> None:
    """Count needs `count` on its bin; ExpireLots and OpenLot `move` on the whole site;
    ScrapOverAge `adjust` on the whole site: a shelf clerk may count their shelf only."""
    bearer = (("authorization", f"Bearer {token('clerk')}"),)
    line = pb.CountLine(lot_id="L1", qty=0)
    async with grpc.aio.insecure_channel(engine.address) as channel:
        stub = pb_grpc.InventoryStub(channel)
        ok = await stub.Count(
            pb.CountRequest(request_id="c1", sku="GLU", site="BOS", bin="A/1", lines=[line]),
            metadata=bearer,
            timeout=10,
        )
        assert [c.lot_id for c in ok.lots] == ["L1"]
        denied = (
            stub.Count(pb.CountRequest(request_id="c2", sku="GLU", site="BOS", bin="B", lines=[line]), metadata=bearer),
            stub.ExpireLots(pb.ExpireLotsRequest(request_id="e1", sku="GLU", site="BOS"), metadata=bearer),
            stub.OpenLot(pb.OpenLotRequest(request_id="o1", sku="GLU", site="BOS", lot_id="L1"), metadata=bearer),
            stub.ScrapOverAge(pb.ScrapOverAgeRequest(request_id="s1", sku="GLU", site="BOS"), metadata=bearer),
        )
        sale = pb.DeviceOperation(seq=1, at_ms=1, consume=pb.ConsumeRequest(sku="GLU", site="BOS", qty=1))
        offline = stub.ApplyDeviceOps(pb.ApplyDeviceOpsRequest(device_id="POS-1", ops=[sale]), metadata=bearer)
        denied = (*denied, offline)  # a device's op needs what the op itself needs (a consume: reserve)
        for call, action in zip(denied, ("count", "move", "move", "adjust", "reserve"), strict=True):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
            info = error_details_pb2.ErrorInfo()
            assert status_of_rpc_error(err.value).details[0].Unpack(info)
            assert info.metadata["action"] == action
