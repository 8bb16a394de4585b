"""`lotwise import FILE` against a real Admin service over in-process shards, no Ray.

The gRPC server runs in this test's loop; each command runs through typer's CliRunner in
a worker thread (the CLI runs its own loop), as in test_cli_dlq.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from click.testing import Result
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from engine import bootstrap
from engine.api.server import ApiMetrics, start_server
from engine.cli import app
from engine.domain.inventory import StockQuery
from engine.runtime.gateway import Gateway

ENV = {"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"}


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[tuple[str, Gateway]]:
    gateway = bootstrap.local_gateway(shards=2, sweep_interval_ms=0)
    server, port = await start_server(gateway, "127.0.0.1", 0, metrics=ApiMetrics(CollectorRegistry()), admin=gateway)
    try:
        yield f"127.0.0.1:{port}", gateway
    finally:
        await server.stop(0.5)
        await gateway.close()


async def lotwise(target: str, *args: str) -> Result:
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, app, ["import", *args, "--target", target], env=ENV)


async def units(gateway: Gateway) -> int:
    return sum(r.row.qty for r in await gateway.query_stock(StockQuery()))


async def test_import_reports_refused_rows_writes_rejects_and_a_rerun_changes_nothing(
    rig: tuple[str, Gateway], tmp_path: Path
) -> None:
    target, gateway = rig
    path = tmp_path / "load.csv"
    rows = ["record,sku,site,org_path,lot_id,qty", "sku,S1,,,,", "site,,W1,acme,,"]
    rows += [f"lot,S1,W1,,L{k},2" for k in range(200)]
    rows += ["lot,S9,W1,,X1,1", "lot,S1,W1,,X2,-3"]  # lines 204 (unknown sku), 205 (negative)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")

    result = await lotwise(target, str(path), "--chunk-rows", "64")
    assert result.exit_code == 1, result.output
    assert "200 lots (400 units" in result.stdout
    assert f"{path}:204: NOT_FOUND" in result.stderr
    assert f"{path}:205: INVALID_ARGUMENT" in result.stderr
    rejects = path.with_name("load.csv.rejects.csv")
    with rejects.open(encoding="utf-8") as f:
        written = list(csv.DictReader(f))
    assert [(r["file"], r["line"], r["code"]) for r in written] == [
        (str(path), "204", "NOT_FOUND"),
        (str(path), "205", "INVALID_ARGUMENT"),
    ]
    assert await units(gateway) == 400

    again = await lotwise(target, str(path), "-q", "--rejects", str(tmp_path / "again.csv"))
    assert again.exit_code == 1, again.output
    assert (tmp_path / "again.csv").exists()
    assert await units(gateway) == 400  # the same request ids: nothing was received twice


async def test_a_file_that_cannot_be_imported_exits_2_and_sends_nothing(
    rig: tuple[str, Gateway], tmp_path: Path
) -> None:
    target, gateway = rig
    bad_header = tmp_path / "lots.csv"
    bad_header.write_text("sku,site,lot_id,quantity\nS1,W1,L1,5\n", encoding="utf-8")
    result = await lotwise(target, str(bad_header))
    assert result.exit_code == 2, result.output
    assert "unknown column 'quantity'" in result.stderr
    assert "missing column 'qty'" in result.stderr

    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("sku,name\nS1,Kompressen groß\n".encode("latin-1"))
    result = await lotwise(target, str(latin1))
    assert result.exit_code == 2, result.output
    assert "line 2 is not UTF-8" in result.stderr
    assert await gateway.list_skus() == []


async def test_a_clean_file_exits_0(rig: tuple[str, Gateway], tmp_path: Path) -> None:
    target, gateway = rig
    path = tmp_path / "skus.jsonl"
    path.write_text('{"sku": "S1", "name": "Strip"}\n{"sku": "S2"}\n', encoding="utf-8")
    result = await lotwise(target, str(path))
    assert result.exit_code == 0, result.output
    assert "2 skus" in result.stdout
    assert [s.sku for s in await gateway.list_skus()] == ["S1", "S2"]


async def test_an_unknown_format_is_a_usage_error(rig: tuple[str, Gateway], tmp_path: Path) -> None:
    target, _ = rig
    path = tmp_path / "skus.csv"
    path.write_text("sku\nS1\n", encoding="utf-8")
    result = await lotwise(target, str(path), "--format", "xml")
    assert result.exit_code == 2
    assert "--format must be one of csv, jsonl, parquet" in result.stderr
