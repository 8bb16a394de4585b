"""lotwise.v1.Admin over a real gRPC server and in-process shards: verify, stats, snapshots, pins."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from engine import bootstrap
from engine.api.client import LotwiseClient
from engine.bootstrap import running_engine
from engine.domain.catalog import Site, Sku
from engine.domain.commands import ReserveLine
from engine.domain.errors import InvalidArgument
from engine.domain.model import QuantKey
from engine.runtime.gateway import Gateway
from engine.runtime.types import HoldLine
from engine.settings import Settings


@pytest_asyncio.fixture
async def admin_setup() -> AsyncIterator[tuple[Gateway, LotwiseClient]]:
    gateway = bootstrap.local_gateway(shards=2, sweep_interval_ms=0)
    settings = Settings(port=0, metrics_port=0, journal="memory")
    async with running_engine(settings, gateway=gateway) as running, LotwiseClient(running.grpc_address) as client:
        await client.put_sku(Sku("strip"))
        for site in ("ward1", "ward2", "ward3"):
            await client.put_site(Site(site, "acme"))
            await client.receive("strip", site, "L1", 50, status="available", bin="A/1")
        for i in range(20):
            hold = await client.reserve([HoldLine("strip", "ward1", ReserveLine(1))], 60_000)
            if i % 2:
                await client.commit(hold.hold_id)
        yield gateway, client
        await gateway.close()


async def test_verify_is_clean_after_a_workload_and_after_a_snapshot(
    admin_setup: tuple[Gateway, LotwiseClient],
) -> None:
    _, client = admin_setup
    ok, checks = await client.verify()
    assert ok
    assert {c.shard for c in checks} == {"shard-0", "shard-1"}
    assert sum(c.batch_seq for c in checks) > 0
    assert all(c.live_hash == c.rebuilt_hash for c in checks)
    snapped = await client.snapshot()
    assert set(snapped) == {"shard-0", "shard-1"}
    await client.consume("strip", "ward2", 3)
    ok, checks = await client.verify()
    assert ok
    assert sum(c.replayed_batches for c in checks) == 1  # only what came after the snapshots


async def test_verify_catches_a_live_state_that_differs_from_the_journal(
    admin_setup: tuple[Gateway, LotwiseClient],
) -> None:
    gateway, client = admin_setup
    shard = gateway.directory.shard_for("strip", "ward3")
    cell = gateway.handles[shard].core.cells[("strip", "ward3")]
    cell.ledger.quants[QuantKey("L1", "A/1", "available", "own")].qty += 1  # a write that skipped the journal
    ok, checks = await client.verify()
    assert not ok
    bad = [c for c in checks if not c.ok]
    assert [c.shard for c in bad] == [shard]
    assert bad[0].live_hash != bad[0].rebuilt_hash


async def test_shard_stats_and_pin(admin_setup: tuple[Gateway, LotwiseClient]) -> None:
    _, client = admin_setup
    stats = await client.shard_stats()
    assert {s["shard"] for s in stats} == {"shard-0", "shard-1"}
    assert all(s["state"] == "ready" for s in stats)
    assert sum(s["cells"] for s in stats) == 3
    target = await client.pin_pair("strip", "ward1")
    assert target.startswith("pin-")
    assert (await client.get_availability("strip", "ward1")).available == 30  # 10 committed, 10 held
    assert len(await client.shard_stats()) == 3
    ok, _ = await client.verify()
    assert ok
    with pytest.raises(InvalidArgument):
        await client.pin_pair("", "ward1")
