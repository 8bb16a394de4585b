"""`lotwise alerts …` and `lotwise reconcile …` against a real gRPC server (in-process
shards, stock health over in-memory stores); each command runs through typer's CliRunner
in a worker thread, as a user would run it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from click.testing import Result
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from adapters.memory.documents import InMemoryDocuments
from adapters.memory.health import InMemoryAlertStore, InMemoryHealthPublisher
from engine import bootstrap
from engine.api.server import ApiMetrics, start_server
from engine.bootstrap.health import HealthMetrics, HealthParts, build_health
from engine.cli import app
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension
from engine.domain.clock import ManualClock
from engine.domain.commands import Receive
from engine.domain.model import MS_PER_DAY
from engine.runtime.gateway import Gateway
from engine.settings import Settings

pytestmark = pytest.mark.asyncio(loop_scope="session")
ENV = {"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"}


class Rig:
    def __init__(self, target: str, gateway: Gateway, clock: ManualClock) -> None:
        self.target, self.gateway, self.clock = target, gateway, clock


@pytest_asyncio.fixture(loop_scope="session")
async def rig() -> AsyncIterator[Rig]:
    clock = ManualClock()
    gateway = bootstrap.local_gateway(shards=1, clock=clock, sweep_interval_ms=0)
    parts = HealthParts(InMemoryAlertStore(), InMemoryHealthPublisher(), InMemoryDocuments())
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    health = build_health(
        settings, gateway, gateway.statuses, parts, clock=clock, metrics=HealthMetrics(CollectorRegistry())
    )
    server, port = await start_server(
        gateway, "127.0.0.1", 0, metrics=ApiMetrics(CollectorRegistry()), stock_health=health.desks()
    )
    await gateway.put_sku(Sku("PASTE"))
    await gateway.put_site(Site("ST-9"))
    try:
        yield Rig(f"127.0.0.1:{port}", gateway, clock)
    finally:
        await server.stop(0.5)
        await gateway.close()


async def lotwise(target: str, *args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, [*args, "--target", target], env=ENV)


async def test_sweep_then_list_ack_close(rig: Rig) -> None:
    now = rig.clock.now_ms()
    receive = Receive("r-1", "PASTE", "ST-9", "L1", 6, status="available", expires_at_ms=now + 2 * MS_PER_DAY)
    await rig.gateway.execute(receive)
    swept = await lotwise(rig.target, "reconcile", "sweep", "--format", "json")
    assert swept.exit_code == 0, swept.output
    assert json.loads(swept.output)[0]["promotion_tasks"] == 1
    listed = await lotwise(rig.target, "alerts", "list", "--kind", "near_expiry", "--format", "json")
    assert listed.exit_code == 0, listed.output
    [alert] = json.loads(listed.output)
    assert (alert["site"], alert["lot_id"], alert["state"]) == ("ST-9", "L1", "opened")
    table = await lotwise(rig.target, "alerts", "list")
    assert alert["alert_id"] in table.output
    acked = await lotwise(
        rig.target, "alerts", "ack", alert["alert_id"], "--note", "on the promo shelf", "--format", "csv"
    )
    assert acked.exit_code == 0, acked.output
    assert "acknowledged" in acked.output
    closed = await lotwise(rig.target, "alerts", "close", alert["alert_id"])
    assert closed.exit_code == 0, closed.output
    again = await lotwise(rig.target, "alerts", "ack", alert["alert_id"])
    assert again.exit_code == 1
    assert "ALERT_CLOSED" in again.output


async def test_usage_and_refusals_exit_codes(rig: Rig, tmp_path: Path) -> None:
    assert (await lotwise(rig.target, "alerts", "list", "--limit", "0")).exit_code == 2
    missing = await lotwise(rig.target, "alerts", "show", "al-expired-feed")
    assert missing.exit_code == 1
    assert "NOT_FOUND" in missing.output
    assert (await lotwise(rig.target, "reconcile", "submit", str(tmp_path / "none.json"))).exit_code == 2
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert (await lotwise(rig.target, "reconcile", "submit", str(tmp_path / "bad.json"))).exit_code == 2
    assert (await lotwise(rig.target, "reconcile", "proposals", "--state", "maybe")).exit_code == 2


async def test_two_snapshots_propose_and_approval_applies(rig: Rig, tmp_path: Path) -> None:
    far = rig.clock.now_ms() + 400 * MS_PER_DAY
    await rig.gateway.execute(Receive("r-2", "PASTE", "ST-9", "L7", 10, status="available", expires_at_ms=far))
    for sid in ("s-1", "s-2"):
        doc = {
            "snapshot_id": sid,
            "source": "erp:books",
            "as_of_ms": rig.clock.now_ms(),
            "lines": [{"site": "ST-9", "sku": "PASTE", "lot_id": "L7", "status": "available", "qty": 7}],
        }
        (tmp_path / f"{sid}.json").write_text(json.dumps(doc))
        result = await lotwise(rig.target, "reconcile", "submit", str(tmp_path / f"{sid}.json"), "--format", "json")
        assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["real"] == 1
    [pid] = report["proposal_ids"].split()
    pending = await lotwise(rig.target, "reconcile", "proposals", "--state", "proposed", "--format", "json")
    assert [p["proposal_id"] for p in json.loads(pending.output)] == [pid]
    approved = await lotwise(rig.target, "reconcile", "approve", pid, "--format", "json")
    assert approved.exit_code == 0, approved.output
    assert json.loads(approved.output)[0]["state"] == "approved"
    seen = await rig.gateway.get_availability("PASTE", "ST-9", (Dimension.LOT,))
    assert {dict(r.group)["lot"]: r.qty for r in seen.rows}["L7"] == 7  # applied through Adjust on approval
