"""`lotwise replenish …` against a real Replenishment service over gRPC, with no Ray: shards
in this process, 90 days of history, the real policy. Each command runs through typer's
CliRunner (in a worker thread, so this loop keeps serving) with --target; tables, json,
csv and the exit codes (0 ok, 1 refused, 2 usage)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from click.testing import Result
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from adapters.memory.history import InMemoryHistoryStore
from adapters.memory.replenish import InMemoryReplenishStore
from adapters.memory.replenish_events import InMemoryReplenishEvents
from engine import bootstrap
from engine.api.server import ApiMetrics, start_server
from engine.cli import app
from engine.domain.catalog import Site, Sku
from engine.domain.clock import SystemClock
from engine.domain.commands import Receive
from engine.domain.history import HistoryBatch, HistoryRecord
from engine.domain.model import External, Movement, MovementKind, QuantKey
from engine.replenish.planning import PolicyPlanner
from engine.replenish.service import ReplenishService

pytestmark = pytest.mark.asyncio(loop_scope="session")

ENV = {"NO_COLOR": "1", "COLUMNS": "220", "TERM": "dumb"}
DAY_MS = 86_400_000
SKU, SITE = "BRG-6204", "HW-DC"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def target() -> AsyncIterator[str]:
    gateway = bootstrap.local_gateway(shards=2, sweep_interval_ms=0)
    clock = SystemClock()
    history = InMemoryHistoryStore()
    q = QuantKey("L0", "", "available", "own")
    records = [
        HistoryRecord(
            "s0",
            d,
            d,
            Movement(
                d,
                MovementKind.CONSUME,
                SKU,
                SITE,
                "L0",
                5,
                q,
                External.CUSTOMER,
                doc_ref=f"SO-{d}",
                at_ms=clock.now_ms() - d * DAY_MS,
            ),
        )
        for d in range(1, 91)
    ]
    await history.insert(HistoryBatch(tuple(records)))
    service = ReplenishService(
        InMemoryReplenishStore(), gateway, PolicyPlanner(), clock, history=history, actions=InMemoryReplenishEvents()
    )
    await gateway.put_sku(Sku(SKU))
    await gateway.put_site(Site(SITE, "hw"))
    await gateway.execute(Receive("r1", SKU, SITE, "L1", 12, status="available", doc_ref="ASN-1"))
    server, port = await start_server(
        gateway, "127.0.0.1", 0, metrics=ApiMetrics(CollectorRegistry()), replenishment=service
    )
    yield f"127.0.0.1:{port}"
    await server.stop(0.5)
    await gateway.close()


async def lotwise(target: str, *args: str) -> Result:
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, app, ["replenish", *args, "--target", target], env=ENV)


async def test_the_planner_s_day(target: str, tmp_path: Path) -> None:
    r = await lotwise(
        target,
        "set-supplier",
        SKU,
        SITE,
        "skf",
        "--moq",
        "50",
        "--multiple",
        "10",
        "--lead-time",
        "7",
        "--lead-time",
        "6",
        "--lead-time",
        "8",
        "--keeper",
        "keeper-li",
    )
    assert r.exit_code == 0, r.output
    r = await lotwise(target, "suppliers", "--format", "json")
    assert r.exit_code == 0, r.output
    assert [(s["supplier"], s["moq"], s["multiple"]) for s in json.loads(r.output)] == [("skf", 50, 10)]

    r = await lotwise(target, "recompute")
    assert r.exit_code == 0, r.output
    assert "1 pair(s) recomputed" in r.output

    r = await lotwise(target, "list", "--format", "csv")
    assert r.exit_code == 0, r.output
    (row,) = list(csv.DictReader(io.StringIO(r.output)))
    assert (row["sku"], row["site"], row["state"], row["supplier"]) == (SKU, SITE, "open", "skf")
    version, qty = int(row["version"]), int(row["qty"])
    assert qty >= 50

    r = await lotwise(target, "list")
    assert r.exit_code == 0, r.output
    assert SKU in r.output
    assert "skf" in r.output

    r = await lotwise(target, "explain", SKU, SITE)
    assert r.exit_code == 0, r.output
    for label in ("demand 7 / 14 / 30 d", "safety stock", "reorder point", "MOQ / multiple", "× 1.15", "rule trace"):
        assert label in r.output, label
    r = await lotwise(target, "explain", SKU, SITE, "--format", "json")
    explained = json.loads(r.output)
    assert explained["trace"][0]["rule"] == "policy.trigger"
    assert explained["panel"]["MOQ / multiple"] == "50 / 10"

    r = await lotwise(target, "override", SKU, SITE, "--version", str(version), "--qty", "0", "--reason", "x")
    assert r.exit_code == 2, r.output  # usage: nothing sent
    r = await lotwise(target, "reject", SKU, SITE, "--version", str(version), "--reason", " ")
    assert r.exit_code == 2, r.output
    r = await lotwise(target, "accept", SKU, SITE, "--version", str(version + 5))
    assert r.exit_code == 1, r.output  # refused: a stale version
    assert "STALE_SUGGESTION" in r.output or "not the current one" in r.output
    r = await lotwise(target, "accept", SKU, SITE, "--version", str(version))
    assert r.exit_code == 0, r.output
    assert "accepted" in r.output
    assert str(qty) in r.output

    r = await lotwise(target, "adoption", "--format", "json")
    assert r.exit_code == 0, r.output
    total = next(x for x in json.loads(r.output) if x["by"] == "total")
    assert (total["decided"], total["accepted"], total["acceptance_rate"]) == (1, 1, 1.0)

    r = await lotwise(target, "health", "--format", "csv")
    assert r.exit_code == 0, r.output
    assert SKU in r.output

    good = tmp_path / "factors.json"
    good.write_text(
        json.dumps(
            [
                {
                    "factor_id": "p1",
                    "kind": "promotion",
                    "from_day": "2026-01-01",
                    "to_day": "2026-01-02",
                    "multiplier": 1.3,
                    "source": "crm",
                }
            ]
        )
    )
    r = await lotwise(target, "factors", str(good))
    assert r.exit_code == 0, r.output
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            [{"factor_id": "w", "kind": "weather", "from_day": "2026-01-01", "to_day": "2026-01-02", "multiplier": 9}]
        )
    )
    r = await lotwise(target, "factors", str(bad))
    assert r.exit_code == 1, r.output
    assert "factors[0].multiplier" in r.output
    bad.write_text("{not json")
    r = await lotwise(target, "factors", str(bad))
    assert r.exit_code == 2, r.output

    r = await lotwise(target, "explain", "NO-SUCH", SITE)
    assert r.exit_code == 1, r.output


async def test_every_command_has_help() -> None:
    runner = CliRunner()
    for command in (
        "list",
        "explain",
        "accept",
        "reject",
        "override",
        "adoption",
        "suppliers",
        "set-supplier",
        "factors",
        "health",
        "recompute",
    ):
        r = await asyncio.to_thread(runner.invoke, app, ["replenish", command, "--help"], env=ENV)
        assert r.exit_code == 0, (command, r.output)
        assert "--format" in r.output or command in ("factors",), command
