"""Alerts from what exists (issue 15 item 8) and snapshots over NATS (item 4), on a real
nats-server with in-process shards:

- ingestion's dead letters raise one dead_letter alert per code, counted, carrying the
  dead letters' seqs; a temperature excursion raises a temperature alert at the cabinet;
- a WMS snapshot published on NATS is reconciled; a bad one goes to the dead letters
  with its code (and raises its alert), and is acknowledged."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import nats
import orjson
import pytest_asyncio
from prometheus_client import CollectorRegistry

from adapters.memory.documents import InMemoryDocuments
from adapters.memory.health import InMemoryAlertStore, InMemoryHealthPublisher
from adapters.nats.deadletter import NatsDeadLetters, dead_letter_config
from adapters.nats.ingest.consumer import IngestMetrics
from adapters.nats.journal import NatsLink, engine_journal_config
from adapters.nats.server import EmbeddedNats
from adapters.nats.snapshots import SnapshotIntake, engine_snapshot_config
from engine import bootstrap
from engine.bootstrap.health import HealthMetrics, HealthParts, HealthRuntime, build_health
from engine.bootstrap.ingest import IngestRuntime, start_ingest
from engine.domain.clock import ManualClock
from engine.health.alerts import AlertQuery
from engine.health.hooks import AlertingDeadLetters, HealthHooks
from engine.runtime.gateway import Gateway
from engine.settings import Settings
from tests.ingest_fixtures import NOW_MS, event, hospital_config, load_hospital

_ns = itertools.count(1)
FAST = {"backoff_s": (0.05, 0.1), "refused_deliveries": 2, "max_deliver": 3, "ack_wait_s": 1.0, "idle_wait_s": 0.2}


class Rig:
    def __init__(self, gw: Gateway, health: HealthRuntime, ingest: IngestRuntime, nc: Any, namespace: str) -> None:
        self.gw, self.health, self.ingest, self.nc, self.namespace = gw, health, ingest, nc, namespace

    async def send(self, source: str, device: str, raw: dict[str, Any]) -> None:
        await self.nc.jetstream().publish(f"lotwise.{self.namespace}.in.{source}.{device}", orjson.dumps(raw))


@pytest_asyncio.fixture
async def rig(nats_server: EmbeddedNats) -> AsyncIterator[Rig]:
    namespace = f"hk{next(_ns)}"
    clock = ManualClock(NOW_MS)
    gw = bootstrap.local_gateway(shards=2, clock=clock, sweep_interval_ms=0)
    await load_hospital(gw)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    parts = HealthParts(InMemoryAlertStore(), InMemoryHealthPublisher(), InMemoryDocuments())
    health = build_health(settings, gw, gw.statuses, parts, clock=clock, metrics=HealthMetrics(CollectorRegistry()))
    hooks = HealthHooks()
    hooks.bind(health.alerts)
    ingest = await start_ingest(
        gw,
        hospital_config(namespace, **FAST),
        namespace=namespace,
        nats_url=nats_server.url,
        metrics=IngestMetrics(registry=CollectorRegistry()),
        hooks=hooks,
    )
    nc = await nats.connect(nats_server.url)
    yield Rig(gw, health, ingest, nc, namespace)
    await ingest.stop()
    await nc.close()
    await gw.close()


async def test_dead_letters_and_excursions_raise_alerts(rig: Rig) -> None:
    await rig.send("cabinet", "ICU-1", event("scan_take", cabinet_id="ICU-1", barcode="nonsense", qty=1))
    await rig.send("cabinet", "ICU-1", event("scan_take", cabinet_id="ICU-1", barcode="nonsense-2", qty=1))
    await rig.send("cabinet", "NOPE", event("scan_take", cabinet_id="NOPE", barcode="x", qty=1))
    await rig.send("cabinet", "ICU-1", event("temperature_excursion", cabinet_id="ICU-1", temp_c=12.0, limit_c=8.0))
    await rig.ingest.consumer.wait_idle(timeout_s=30)
    letters = await rig.ingest.dead_letters.list(limit=100)
    assert len(letters) == 3
    dead = await rig.health.alerts.list(AlertQuery(kinds=("dead_letter",)))
    by_code = {a.subject: a for a in dead}
    assert sum(a.count for a in dead) == 3  # every letter counted, on one alert per code
    assert {e for a in dead for e in a.evidence if e.startswith("dlq:")} == {f"dlq:{s.seq}" for s in letters}
    assert set(by_code) == {s.letter.code.value for s in letters}
    temp = await rig.health.alerts.list(AlertQuery(kinds=("temperature",)))
    assert len(temp) == 1
    assert (temp[0].scope.site, temp[0].scope.bin, temp[0].severity, temp[0].subject) == (
        "icu",
        "CAB1",
        "critical",
        "ICU-1",
    )


async def test_snapshots_over_nats_are_reconciled_and_bad_ones_dead_lettered(
    rig: Rig, nats_server: EmbeddedNats
) -> None:
    link = NatsLink(engine_journal_config(rig.namespace, nats_server.url, client_name="test-snapshots"))
    await link.connect()
    store = NatsDeadLetters(link, dead_letter_config(rig.namespace, nats_server.url))
    await store.ensure()
    hooks = HealthHooks()
    hooks.bind(rig.health.alerts)
    config = engine_snapshot_config(rig.namespace, nats_server.url)
    intake = SnapshotIntake(link, config, rig.health.reconciler.submit, AlertingDeadLetters(store, hooks))
    await intake.start()
    try:
        js = rig.nc.jetstream()
        good = {
            "schema": "lotwise.stock_snapshot/1",
            "snapshot_id": "wms-1",
            "source": "wms:hospital",
            "as_of_ms": NOW_MS,
            "lines": [{"site": "dc", "sku": "cath", "lot_id": "C1", "qty": 48}],
        }
        await js.publish(f"{config.subject_prefix}.wms", json.dumps(good).encode())
        await js.publish(f"{config.subject_prefix}.wms", b"{not json")
        await js.publish(
            f"{config.subject_prefix}.wms",
            json.dumps({**good, "snapshot_id": "wms-2", "lines": [{"site": "dc"}]}).encode(),
        )
        bad_value = {**good, "snapshot_id": "wms-3", "lines": [{"site": "dc", "sku": "cath", "qty": -4}]}
        await js.publish(f"{config.subject_prefix}.wms", json.dumps(bad_value).encode())
        for _ in range(100):
            if intake.applied + intake.dead_lettered >= 4:
                break
            await asyncio.sleep(0.1)
        assert (intake.applied, intake.dead_lettered) == (1, 3)
        report = await rig.health.reconciler.get("wms-1")
        assert (report.report.lines, report.report.by_class["real"]) == (1, 1)
        assert report.differences[0].diff == -2
        codes = sorted(s.letter.code.value for s in await store.list(limit=100))
        assert codes == ["decode_error", "invalid_value", "schema_violation"]
        dead = await rig.health.alerts.list(AlertQuery(kinds=("dead_letter",)))
        assert {a.subject for a in dead} == set(codes)
    finally:
        await intake.stop()
        await link.close()
