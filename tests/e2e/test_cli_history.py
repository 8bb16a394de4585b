"""`lotwise history …` against a real History service, with no Ray.

The rig: shards in this process (Gateway.local) on a JetStream journal of a real
nats-server, the history sink feeding chDB (start_history), and the gRPC server serving
Inventory + Admin + History (start_server). A few receipts, a hold committed, a
scan-take; once the sink has caught up, each `lotwise history` command runs through
typer's CliRunner (in a worker thread, so this loop keeps serving) with --target.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from click.testing import Result
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from adapters.clickhouse.store import HistoryStoreConfig
from adapters.nats.server import EmbeddedNats
from engine.api.server import start_server
from engine.bootstrap.history import HistoryConfig, journal_config_for, start_history
from engine.cli import app
from engine.domain.catalog import Site, Sku
from engine.domain.commands import Consume, Receive, ReserveLine
from engine.domain.model import MS_PER_DAY
from engine.runtime.gateway import Gateway
from engine.runtime.types import HoldLine
from tests.history_fixtures import chdb_dsn_for_session  # noqa: F401 - the session's chDB path
from tests.integration.test_history import FAST_SINK, nats_backend
from tests.nats_fixtures import nats_server  # noqa: F401 - a real nats-server, session-scoped

pytestmark = pytest.mark.asyncio(loop_scope="session")

ENV = {"NO_COLOR": "1", "COLUMNS": "220", "TERM": "dumb"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def target(nats_server: EmbeddedNats, chdb_dsn_for_session: str) -> AsyncIterator[str]:  # noqa: F811
    journal_config = journal_config_for(f"c{uuid.uuid4().hex[:8]}", nats_server.url)
    gateway = Gateway.local(shards=2, sweep_interval_ms=0, backend=nats_backend(journal_config))
    database = f"t_{uuid.uuid4().hex[:12]}"
    config = HistoryConfig(HistoryStoreConfig(dsn=chdb_dsn_for_session, database=database), FAST_SINK)
    runtime = server = None
    try:
        for sku in ("sku-a", "sku-b"):
            await gateway.put_sku(Sku(sku))
        for site in ("north", "south"):
            await gateway.put_site(Site(site, "acme"))
        now = time.time_ns() // 1_000_000
        soon, later = now + 5 * MS_PER_DAY, now + 200 * MS_PER_DAY
        for cmd in (
            Receive(
                "r1", "sku-a", "north", "L1", 40, bin="A/01", status="available", expires_at_ms=soon, doc_ref="PO-1"
            ),
            Receive("r2", "sku-a", "south", "L1", 10, status="available", expires_at_ms=soon, doc_ref="TR-1"),
            Receive("r3", "sku-b", "north", "L2", 20, bin="B/01", status="available", expires_at_ms=later),
        ):
            await gateway.execute(cmd)
        await gateway.reserve(
            "res-1", "H1", [HoldLine("sku-a", "north", ReserveLine(5))], ttl_ms=600_000, doc_ref="SO-1"
        )
        await gateway.commit("com-1", "H1", doc_ref="SO-1")
        await gateway.execute(Consume("con-1", "sku-a", "north", 3, doc_ref="TK-1"))
        runtime = await start_history(config, journal_config, CollectorRegistry())
        assert runtime.sink is not None
        await runtime.sink.wait_caught_up(timeout_s=20)
        server, port = await start_server(gateway, "127.0.0.1", 0, admin=gateway, history=runtime.service)
        yield f"127.0.0.1:{port}"
    finally:
        if server is not None:
            await server.stop(0.5)
        if runtime is not None:
            await runtime.store.command("DROP DATABASE IF EXISTS {db}")
            await runtime.stop()
        await gateway.close()


async def lotwise(target: str, *args: str) -> Result:
    """`lotwise history ARGS --target TARGET`, in a worker thread (the CLI runs its own loop)."""
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, app, ["history", *args, "--target", target], env=ENV)


def rows(output: str) -> list[list[str]]:
    """The table rows of rich's output (headers and footers left out), as lists of cells."""
    lines = [line for line in output.splitlines() if line.startswith("│")]
    cells = [[c.strip() for c in line.strip("│ ").split("│")] for line in lines]
    return [row for row in cells if row[0] not in ("total", "sku", "doc", "site", "bin", "days left")]


async def test_status_shows_the_sink_caught_up(target: str) -> None:
    result = await lotwise(target, "status")
    assert result.exit_code == 0, result.output
    assert "caught up" in result.output
    assert re.search(r"pending messages\s+0", result.output)


async def test_balance_now_by_site_and_lot(target: str) -> None:
    result = await lotwise(target, "balance", "--sku", "sku-a", "--by", "site", "--by", "lot")
    assert result.exit_code == 0, result.output
    got = {(r[0], r[1]): (r[2], r[3]) for r in rows(result.output)}
    assert got == {("north", "L1"): ("32", "0"), ("south", "L1"): ("10", "0")}


async def test_balance_in_the_past_is_empty_and_filters_apply(target: str) -> None:
    result = await lotwise(target, "balance", "--at", "2020-01-01T00:00Z")
    assert result.exit_code == 0, result.output
    assert "0 units" in result.output
    result = await lotwise(target, "balance", "--by", "bin", "--bin-prefix", "B", "--lot", "L2")
    assert result.exit_code == 0, result.output
    assert rows(result.output) == [["B/01", "20", "0"]]


async def test_movements_page_through_with_the_cursor(target: str) -> None:
    result = await lotwise(target, "movements", "--sku", "sku-a", "--site", "north", "--limit", "2")
    assert result.exit_code == 0, result.output
    assert [r[4] for r in rows(result.output)] == ["receive", "reserve"]
    cursor = re.search(r"next cursor: (\S+)", result.output)
    assert cursor is not None
    result = await lotwise(target, "movements", "--sku", "sku-a", "--site", "north", "--cursor", cursor.group(1))
    assert result.exit_code == 0, result.output
    assert [r[4] for r in rows(result.output)] == ["commit", "consume"]
    assert "last page" in result.output
    result = await lotwise(target, "movements", "--doc", "SO-1", "--from", "2020-01-01", "--to", str(2**50))
    assert result.exit_code == 0, result.output
    assert {r[4] for r in rows(result.output)} == {"reserve", "commit"}


async def test_consumption_and_turnover(target: str) -> None:
    result = await lotwise(target, "consumption", "sku-a", "north", "--days", "7")
    assert result.exit_code == 0, result.output
    assert "8 consumed over 7 days" in result.output  # 5 committed + 3 scanned out
    result = await lotwise(target, "turnover", "sku-a", "north", "--days", "7")
    assert result.exit_code == 0, result.output
    [row] = rows(result.output)
    assert row[:3] == ["sku-a", "north", "7"]
    assert row[4] == "8"


async def test_expiry_lists_the_soon_expiring_lots(target: str) -> None:
    result = await lotwise(target, "expiry", "--within-days", "30")
    assert result.exit_code == 0, result.output
    lots = {(r[0], r[1], r[2], r[5]) for r in rows(result.output) if len(r) == 7}
    assert lots == {("sku-a", "north", "L1", "32"), ("sku-a", "south", "L1", "10")}
    assert "42 units in 2 lots" in result.output


async def test_trace_follows_a_lot_to_both_sites(target: str) -> None:
    result = await lotwise(target, "trace", "L1", "--sku", "sku-a")
    assert result.exit_code == 0, result.output
    assert "2 sites" in result.output
    docs = {r[0] for r in rows(result.output) if len(r) == 8}
    assert {"PO-1", "TR-1", "SO-1", "TK-1"} <= docs


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["balance", "--at", "yesterday-ish"], "--at: cannot read 'yesterday-ish' as a time"),
        (["movements", "--from", "2026-02-01", "--to", "2026-01-01"], "--from (2026-02-01) is after --to"),
        (["balance", "--by", "colour"], "Invalid value for '--by'"),
        (["consumption", "sku-a", "north", "--days", "0"], "--days must be in 1..3660"),
        (["expiry", "--within-days", "9999"], "--within-days must be in 1..3650"),
    ],
)
async def test_bad_usage_is_one_line_and_exit_2(target: str, args: list[str], message: str) -> None:
    result = await lotwise(target, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


async def test_a_refusal_by_the_server_exits_1(target: str) -> None:
    result = await lotwise(target, "movements", "--cursor", "not-a-cursor")
    assert result.exit_code == 1, result.output
    assert "lotwise: error: invalid argument (INVALID_ARGUMENT)" in result.output
    assert "cursor" in result.output
