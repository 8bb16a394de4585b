"""Bulk load over lotwise.v1.Admin/Import: a real gRPC server over in-process shards, no Ray."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from engine import bootstrap
from engine.api.client import LotwiseClient
from engine.api.gen.lotwise.v1 import admin_pb2 as apb
from engine.api.import_client import ImportTally, import_file, send_chunks
from engine.api.importer import IMPORT_MAX_CHUNK_ROWS
from engine.api.server import ApiMetrics, start_server
from engine.domain.errors import Overloaded
from engine.domain.inventory import StockQuery
from engine.runtime.gateway import Gateway
from engine.runtime.routing import Directory

SKUS = 20
SITES = 5
LOTS = 3_000


@pytest_asyncio.fixture
async def engine() -> AsyncIterator[tuple[Gateway, LotwiseClient]]:
    gateway = bootstrap.local_gateway(shards=2, sweep_interval_ms=0)
    server, port = await start_server(gateway, "127.0.0.1", 0, metrics=ApiMetrics(CollectorRegistry()), admin=gateway)
    async with LotwiseClient(f"127.0.0.1:{port}", timeout_s=30.0) as client:
        yield gateway, client
    await server.stop(0.5)
    await gateway.close()


def catalog_and_lots(path: Path, lots: int = LOTS) -> Path:
    """A mixed CSV: the catalog first, then lots spread over every pair."""
    lines = ["record,sku,site,name,org_path,lot_id,qty,expires_at,bin,status"]
    lines += [f"sku,S{i},,Sku {i},,,,,," for i in range(SKUS)]
    lines += [f"site,,W{j},Ward {j},acme/east,,,,," for j in range(SITES)]
    lines += [
        f"lot,S{k % SKUS},W{(k // SKUS) % SITES},,,L{k},{1 + k % 9},2027-03-31,A/{k % 4},available" for k in range(lots)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def expected_units(lots: int = LOTS) -> int:
    return sum(1 + k % 9 for k in range(lots))


async def stock_totals(client: LotwiseClient) -> dict[tuple[str, str], tuple[int, int]]:
    rows = await client.query_stock(StockQuery())
    return {(r.sku, r.site): (r.row.qty, r.row.available) for r in rows}


async def test_a_file_of_thousands_of_lots_loads_and_a_rerun_changes_nothing(
    engine: tuple[Gateway, LotwiseClient], tmp_path: Path
) -> None:
    _, client = engine
    path = catalog_and_lots(tmp_path / "load.csv")
    seen: list[int] = []
    tally = await import_file(client.channel, path, chunk_rows=500, on_reply=lambda _, rows: seen.append(rows))
    assert (tally.skus, tally.sites, tally.lots, tally.refused) == (SKUS, SITES, LOTS, [])
    assert tally.units == expected_units()
    assert sum(seen) == SKUS + SITES + LOTS
    totals = await stock_totals(client)
    assert len(totals) == SKUS * SITES
    assert sum(qty for qty, _ in totals.values()) == expected_units()
    assert sum(available for _, available in totals.values()) == expected_units()
    assert {s.site for s in await client.list_sites()} == {f"W{j}" for j in range(SITES)}

    again = await import_file(client.channel, path, chunk_rows=700)
    assert (again.lots, again.refused) == (LOTS, [])  # the first answers, once more
    assert await stock_totals(client) == totals  # and nothing moved
    ok, checks = await client.verify()
    assert ok, checks


async def test_refused_rows_come_back_with_their_lines_and_the_rest_is_applied(
    engine: tuple[Gateway, LotwiseClient], tmp_path: Path
) -> None:
    _, client = engine
    catalog_and_lots(tmp_path / "catalog.csv", lots=0)
    assert (await import_file(client.channel, tmp_path / "catalog.csv")).refused == []
    lines = [
        "sku,site,lot_id,qty,status,expires_at",
        "S1,W1,A1,5,available,2027-01-01",  # 2
        "NOPE,W1,A2,5,available,",  # 3: unknown sku (the shard refuses)
        "S1,W1,A3,0,available,",  # 4: qty 0 (the gateway's checks refuse)
        "S1,W1,A4,5,teleported,",  # 5: unknown status
        "S1,W1,A5,five,available,",  # 6: does not parse (refused before sending)
        "S1,W1,A6,7,available,2027-02-30",  # 7: no such date
        "S1,W2,A7,3,,",  # 8
    ]
    path = tmp_path / "lots.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tally = await import_file(client.channel, path)
    assert (tally.rows, tally.lots, tally.units) == (7, 2, 8)
    assert [(r.line, r.code) for r in tally.refused] == [
        (3, "NOT_FOUND"),
        (4, "INVALID_ARGUMENT"),
        (5, "INVALID_ARGUMENT"),
        (6, "INVALID_ARGUMENT"),
        (7, "INVALID_ARGUMENT"),
    ]
    assert "qty" in tally.refused[1].reason
    assert "status" in tally.refused[2].reason
    totals = await stock_totals(client)
    assert totals[("S1", "W1")][0] == 5
    assert totals[("S1", "W2")][0] == 3
    assert ("NOPE", "W1") not in totals

    # Again: every good row was applied exactly once, the bad ones are refused again.
    again = await import_file(client.channel, path)
    assert [(r.line, r.code) for r in again.refused] == [(r.line, r.code) for r in tally.refused]
    assert await stock_totals(client) == totals
    # The bad rows fixed: just those apply (new content, new request ids).
    lines[2], lines[3] = "S2,W1,A2,5,available,", "S1,W1,A3,1,available,"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    fixed = await import_file(client.channel, path)
    assert [r.line for r in fixed.refused] == [5, 6, 7]
    totals_after = await stock_totals(client)
    assert (totals_after[("S1", "W1")][0], totals_after[("S2", "W1")][0]) == (5 + 1, 5)
    ok, checks = await client.verify()
    assert ok, checks


async def test_lots_of_a_pinned_pair_follow_it_to_its_own_shard(
    engine: tuple[Gateway, LotwiseClient], tmp_path: Path
) -> None:
    gateway, client = engine
    catalog_and_lots(tmp_path / "catalog.csv", lots=0)
    assert (await import_file(client.channel, tmp_path / "catalog.csv")).refused == []
    await gateway.pin("S0", "W0")
    # As a gateway that has not heard of the pin yet: the old shard answers CellMoved, and
    # those lots go the ordinary way, which follows the pair (and learns the pin).
    gateway._router.directory = Directory(gateway.directory.shard_names)
    path = catalog_and_lots(tmp_path / "lots.csv", lots=400)
    tally = await import_file(client.channel, path)
    assert (tally.lots, tally.refused, tally.units) == (400, [], expected_units(400))
    totals = await stock_totals(client)
    assert totals[("S0", "W0")][0] == sum(1 + k % 9 for k in range(400) if k % SKUS == 0 and (k // SKUS) % SITES == 0)
    assert sum(qty for qty, _ in totals.values()) == expected_units(400)
    ok, checks = await client.verify()
    assert ok, checks


async def test_a_chunk_beyond_the_bound_ends_the_stream_with_resource_exhausted(
    engine: tuple[Gateway, LotwiseClient],
) -> None:
    _, client = engine
    rows = [apb.ImportRow(line=i + 1, sku=apb.ImportRow().sku) for i in range(IMPORT_MAX_CHUNK_ROWS + 1)]
    for row in rows:
        row.sku.sku = f"S{row.line}"
    with pytest.raises(Overloaded):
        await send_chunks(client.channel, [apb.ImportChunk(chunk_seq=0, rows=rows)], ImportTally())
    assert await client.list_skus() == []  # nothing of the chunk was applied
