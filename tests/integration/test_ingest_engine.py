"""The whole loop on the real engine (Ray shards, embedded nats-server, gRPC): a cabinet
scan-take published on NATS is visible in the next central GetAvailability / QueryStock,
leaves as a business event with its financial context, and a bad event lands in the
dead-letter stream, is listed by `lotwise dlq`, and once its cause is fixed, replayed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import nats
import orjson
import pytest
import pytest_asyncio

from adapters.nats.bus import decode_event
from engine.api.client import LotwiseClient
from engine.bootstrap import RunningEngine, running_engine
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension
from engine.domain.inventory import StockQuery
from tests.conftest import engine_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONFIG = """
[cabinets.ICU-CAB-9]
site = "icu9"
bin = "CAB"

[gtins]
"09506000134352" = "strip9"
"""


@pytest_asyncio.fixture(loop_scope="session")
async def engine(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningEngine]:
    path = tmp_path_factory.mktemp("ingest") / "ingest.toml"
    path.write_text(CONFIG)
    async with running_engine(engine_settings(ingest_config=path, history=False)) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def client(engine: RunningEngine) -> AsyncIterator[LotwiseClient]:
    async with LotwiseClient(engine.grpc_address, timeout_s=30) as c:
        await c.put_sku(Sku("strip9", "Glucose strips"))
        await c.put_site(Site("icu9", "h/icu", "cabinet"))
        await c.put_site(Site("dc9", "h", "central_warehouse"))
        await c.receive("strip9", "icu9", "L1", 20, bin="CAB", status="available", expires_at_ms=int(4e12))
        yield c


def inbound(engine: RunningEngine, device: str) -> str:
    return f"lotwise.{engine.settings.namespace}.in.cabinet.{device}"


async def test_a_cabinet_scan_take_is_visible_centrally_and_leaves_as_a_business_event(
    engine: RunningEngine, client: LotwiseClient
) -> None:
    nc = await nats.connect(engine.nats.url)
    try:
        events = await nc.subscribe(f"lotwise.{engine.settings.namespace}.events.consume.>")
        avro = await nc.subscribe(f"lotwise.{engine.settings.namespace}.avro.events.consume.>")
        take = {
            "event_id": "icu9-take-1",
            "type": "scan_take",
            "cabinet_id": "ICU-CAB-9",
            "barcode": "(01)09506000134352(10)L1",
            "qty": 3,
            "doc_ref": "case-77",
            "finance": {"currency": "EUR", "unit_price": "2.50", "tax_rate": "0.10"},
        }
        published = time.perf_counter()
        await nc.jetstream().publish(inbound(engine, "ICU-CAB-9"), orjson.dumps(take))
        while (await client.get_availability("strip9", "icu9")).available != 17:
            assert time.perf_counter() - published < 10, "the take never became visible"
            await asyncio.sleep(0.002)
        rows = await client.query_stock(StockQuery(skus=("strip9",), group_by=(Dimension.LOT,)))
        assert [(r.site, dict(r.row.group)["lot"], r.row.qty) for r in rows] == [("icu9", "L1", 17)]

        for sub in (events, avro):
            msg = await sub.next_msg(timeout=10)
            event = decode_event(msg.data, msg.headers["Content-Type"])
            assert (event.kind, event.sku, event.site, event.qty, event.doc_ref) == (
                "consume",
                "strip9",
                "icu9",
                3,
                "case-77",
            )
            assert event.finance is not None
            fin = event.finance
            assert (fin.currency, Decimal(fin.extended_price), Decimal(fin.tax_amount)) == ("EUR", 7.5, Decimal("0.75"))
    finally:
        await nc.close()


async def test_a_bad_event_is_dead_lettered_listed_and_replayed_once_fixed(
    engine: RunningEngine, client: LotwiseClient
) -> None:
    nc = await nats.connect(engine.nats.url)
    try:
        take = {"event_id": "icu9-take-2", "type": "scan_take", "cabinet_id": "ICU-CAB-9", "sku": "gauze9", "qty": 2}
        await nc.jetstream().publish(inbound(engine, "ICU-CAB-9"), orjson.dumps(take))
        await engine.ingest.consumer.wait_idle(timeout_s=15)
    finally:
        await nc.close()
    listed = await lotwise("dlq", "list", "--target", engine.grpc_address)
    assert "unknown_reference" in listed.stdout
    assert "icu9-take-2" in listed.stdout
    letters = await client.list_dead_letters(code="unknown_reference")
    seq = next(s.seq for s in letters.letters if s.letter.event_id == "icu9-take-2")
    shown = await lotwise("dlq", "show", str(seq), "--target", engine.grpc_address)
    assert "gauze9" in shown.stdout  # the original payload, pretty-printed

    # The cause: a sku not in the catalog yet. Add it (and stock), then replay.
    await client.put_sku(Sku("gauze9", "Gauze"))
    await client.receive("gauze9", "icu9", "G1", 5, bin="CAB", status="available")
    replayed = await lotwise("dlq", "replay", str(seq), "--target", engine.grpc_address)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    await engine.ingest.consumer.wait_idle(timeout_s=15)
    assert (await client.get_availability("gauze9", "icu9")).available == 3
    remaining = await client.list_dead_letters()
    assert all(s.letter.event_id != "icu9-take-2" for s in remaining.letters)


async def lotwise(*args: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).with_name("lotwise")
    # The session's admin token (tests/conftest.py) goes along, as it would from a user's shell.
    env = {"NO_COLOR": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin", "LOTWISE_TOKEN": os.environ["LOTWISE_TOKEN"]}
    return await asyncio.to_thread(
        subprocess.run, [str(cli), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )
