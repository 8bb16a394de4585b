"""The locust file drives a real gRPC server headless and writes CSV (locust runs in its
own process: it monkeypatches with gevent, which must not meet this test's asyncio loop)."""

from __future__ import annotations

import asyncio
import csv
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from engine import bootstrap
from engine.api.admission import AdmissionLimits, AdmissionMetrics
from engine.api.server import ApiMetrics, start_server
from engine.domain.inventory import StockQuery
from engine.runtime.gateway import Gateway

pytestmark = pytest.mark.asyncio(loop_scope="session")
LOCUSTFILE = Path(__file__).resolve().parents[2] / "bench" / "locustfile.py"


@pytest_asyncio.fixture(loop_scope="session")
async def served() -> AsyncIterator[tuple[str, Gateway]]:
    gateway = bootstrap.local_gateway(shards=2, sweep_interval_ms=0)
    server, port = await start_server(gateway, "127.0.0.1", 0, metrics=ApiMetrics(CollectorRegistry()))
    try:
        yield f"127.0.0.1:{port}", gateway
    finally:
        await server.stop(0.5)
        await gateway.close()


@pytest_asyncio.fixture(loop_scope="session")
async def overloaded() -> AsyncIterator[str]:
    """A server whose door admits one call at a time and keeps no waiting room: with eight
    users, most calls that meet another in flight are shed."""
    gateway = bootstrap.local_gateway(shards=2, sweep_interval_ms=0)
    limits = AdmissionLimits(max_calls=1, max_cost=1, max_waiting=0, min_retry_delay_ms=10)
    server, port = await start_server(
        gateway,
        "127.0.0.1",
        0,
        metrics=ApiMetrics(CollectorRegistry()),
        admission=limits,
        admission_metrics=AdmissionMetrics(CollectorRegistry()),
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0.5)
        await gateway.close()


def locust_command(target: str, prefix: Path, workload: str) -> list[str]:
    return [
        str(Path(sys.executable).with_name("locust")),
        "-f",
        str(LOCUSTFILE),
        "--host",
        target,
        "--headless",
        "-u",
        "8",
        "-r",
        "8",
        "-t",
        "4s",
        "--stop-timeout",
        "10",  # let each user finish its order: a hold cut off before its commit stays held
        "--csv",
        str(prefix),
        "--workload",
        workload,
        "--skus",
        "20",
        "--sites",
        "2",
        "--only-summary",
    ]


async def test_locust_reports_shed_calls_apart_from_errors(overloaded: str, tmp_path: Path) -> None:
    cmd = locust_command(overloaded, tmp_path / "run", "pos-scarce")
    proc = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    with (tmp_path / "run_stats.csv").open() as f:
        stats = {row["Name"]: row for row in csv.DictReader(f)}
    shed = {name: row for name, row in stats.items() if name.endswith(" (shed)")}
    assert shed, sorted(stats)
    assert all(row["Type"] == "grpc-shed" for row in shed.values())
    assert sum(int(row["Request Count"]) for row in shed.values()) > 0
    # Shed calls are not errors: nothing failed, and the orders still went through.
    assert int(stats["Aggregated"]["Failure Count"]) == 0, stats["Aggregated"]
    assert int(stats["Reserve"]["Request Count"]) > 0


@pytest.mark.parametrize("workload", ["pos-scarce", "wms-bulk"])
async def test_locust_headless_reports_every_call_and_writes_csv(
    served: tuple[str, Gateway], tmp_path: Path, workload: str
) -> None:
    target, gateway = served
    cmd = locust_command(target, tmp_path / "run", workload)
    proc = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    with (tmp_path / "run_stats.csv").open() as f:
        stats = {row["Name"]: row for row in csv.DictReader(f)}
    assert int(stats["Reserve"]["Request Count"]) > 0
    assert int(stats["Aggregated"]["Failure Count"]) == 0, stats["Aggregated"]
    if workload == "pos-scarce":
        assert "Commit" in stats
        assert "Release" in stats
    else:
        assert int(stats["Receive"]["Request Count"]) > 0
    # The engine agrees with itself after the run: nothing oversold, nothing left held.
    rows = await gateway.query_stock(StockQuery(by_sku=False, by_site=False))
    assert all(r.row.held == 0 and r.row.qty >= 0 for r in rows)
