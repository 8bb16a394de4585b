"""Ingestion through a real nats-server into in-process shards (no Ray): every event type
end to end in both encodings, exactly-once under duplicates and redeliveries, dead
letters that never block the messages behind them, and a consumer killed mid-stream."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats
import orjson
import pytest
import pytest_asyncio
from nats.js import JetStreamContext

from adapters.nats.ingest.apply import Applied, Applier
from adapters.nats.ingest.consumer import IngestMetrics
from adapters.nats.ingest.events import encode_avro
from adapters.nats.server import EmbeddedNats
from engine import bootstrap
from engine.bootstrap.ingest import IngestRuntime, start_ingest
from engine.domain.clock import ManualClock
from engine.domain.deadletters import DeadLetterCode
from engine.domain.errors import Unavailable
from engine.runtime.gateway import Gateway
from tests.ingest_fixtures import NOW_MS, event, hospital_config, load_hospital, quants, strip_barcode
from tests.nats_fixtures import nats_server  # noqa: F401

pytestmark = pytest.mark.asyncio(loop_scope="session")

_ns = itertools.count(1)
FAST = {"backoff_s": (0.05, 0.1), "refused_deliveries": 2, "max_deliver": 3, "ack_wait_s": 1.0, "idle_wait_s": 0.2}


@dataclass
class Rig:
    gw: Gateway
    ingest: IngestRuntime
    js: JetStreamContext
    nc: Any
    namespace: str
    server_url: str

    def subject(self, source: str, device: str, fmt: str = "json") -> str:
        mid = "avro." if fmt.startswith("avro") else ""
        return f"lotwise.{self.namespace}.in.{mid}{source}.{device}"

    async def send(self, source: str, device: str, raw: dict[str, Any] | bytes, fmt: str = "json") -> None:
        """fmt: "json", "avro" (the current schema, single-object) or "avro-v1" (a bare
        version-1 record, as senders wrote before)."""
        if isinstance(raw, bytes):
            data = raw
        elif fmt.startswith("avro"):
            data = encode_avro(raw, 1 if fmt == "avro-v1" else 0)
        else:
            data = orjson.dumps(raw)
        await self.js.publish(self.subject(source, device, fmt), data)

    async def settle(self) -> None:
        await self.ingest.consumer.wait_idle(timeout_s=30)


async def make_rig(url: str, applier_wrapper: Any = None, **consumer: Any) -> Rig:
    namespace = f"ing{next(_ns)}"
    gw = bootstrap.local_gateway(shards=2, clock=ManualClock(NOW_MS), sweep_interval_ms=0)
    await load_hospital(gw)
    config = hospital_config(namespace, **{**FAST, **consumer})
    ingest = await start_ingest(
        gw, config, namespace=namespace, nats_url=url, metrics=IngestMetrics(registry=_registry())
    )
    if applier_wrapper is not None:
        ingest.consumer._applier = applier_wrapper(ingest.consumer._applier)
    nc = await nats.connect(url)
    return Rig(gw, ingest, nc.jetstream(), nc, namespace, url)


def _registry() -> Any:
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()


@pytest_asyncio.fixture(loop_scope="session")
async def rig(nats_server: EmbeddedNats) -> AsyncIterator[Rig]:  # noqa: F811
    r = await make_rig(nats_server.url)
    yield r
    await close(r)


async def close(r: Rig) -> None:
    await r.ingest.stop()
    await r.nc.close()
    await r.gw.close()


async def dead(r: Rig) -> list[Any]:
    return await r.ingest.dead_letters.list(limit=100)


@pytest.mark.parametrize("fmt", ["json", "avro", "avro-v1"])
async def test_every_event_type_end_to_end(rig: Rig, fmt: str) -> None:
    r = rig
    fin = {"currency": "USD", "unit_cost": "3.10", "unit_price": "5.00", "tax_rate": "0.08", "terms": "2/10 n/30"}
    cab = [
        event("scan_take", cabinet_id="ICU-1", barcode=strip_barcode("L100"), qty=2, doc_ref="case-1", finance=fin),
        event("scan_return", cabinet_id="ICU-1", barcode=strip_barcode("L100"), qty=1),
        event("door", cabinet_id="ICU-1", state="open", user="nurse-7"),
        event(
            "rfid_count",
            cabinet_id="ICU-1",
            items=[{"sku": "strip", "lot": "L100", "qty": 8}, {"sku": "strip", "lot": "L200", "qty": 4}],
        ),
        event("temperature_excursion", cabinet_id="ICU-1", temp_c=12.0, limit_c=8.0),
    ]
    for raw in cab:
        await r.send("cabinet", "ICU-1", raw, fmt)
    wms = [
        event(
            "receipt",
            site="WH1",
            asn="ASN-9",
            lines=[{"sku": "cath", "lot": "C9", "qty": 20, "bin": "DOCK", "expiry": "2028-02-29"}],
            finance=fin,
        ),
        event("qc", site="WH1", sku="cath", lot="C9", qty=20, bin="DOCK", result="pass"),
        event("putaway", site="WH1", sku="cath", lot="C9", qty=20, from_bin="DOCK", to_bin="B/02", status="available"),
        event("pick", site="WH1", sku="cath", lot="C9", qty=5, bin="B/02"),
        event("pack", site="WH1", sku="cath", lot="C9", qty=5, bin="B/02"),
        event("ship", site="WH1", lines=[{"sku": "cath", "lot": "C9", "qty": 5, "bin": "B/02"}]),
        event("cycle_count", site="WH1", bin="B/01", lines=[{"sku": "cath", "lot": "C1", "qty": 49}]),
        event(
            "transfer_out", site="WH1", to_site="ed", transfer_id="T-7", lines=[{"sku": "cath", "lot": "C1", "qty": 9}]
        ),
        event("transfer_in", site="ed", transfer_id="T-7", lines=[{"sku": "cath", "lot": "C1", "qty": 9, "bin": "D1"}]),
    ]
    for raw in wms:
        await r.send("wms", "WH1", raw, fmt)
    await r.settle()
    assert await dead(r) == []
    assert await quants(r.gw, "strip", "icu") == {
        ("L100", "CAB1", "quality_frozen", "own"): 8,
        ("L200", "CAB1", "quality_frozen", "own"): 4,
    }
    assert r.ingest.consumer.doors["ICU-1"].open
    assert await quants(r.gw, "cath", "dc") == {
        ("C1", "B/01", "available", "own"): 40,
        ("C9", "B/02", "available", "own"): 15,
    }
    assert await quants(r.gw, "cath", "ed") == {("C1", "D1", "receiving", "own"): 9}


async def test_duplicates_and_redeliveries_are_applied_once(nats_server: EmbeddedNats) -> None:  # noqa: F811
    failed_once: set[str] = set()

    class FlakyAfterApply:
        """Applies, then fails the first time: the ack is never sent, JetStream redelivers."""

        def __init__(self, inner: Applier) -> None:
            self.inner = inner

        def ordering_keys(self, e: Any) -> Any:
            return self.inner.ordering_keys(e)

        async def apply(self, e: Any, deadline: float | None = None) -> Applied:
            applied = await self.inner.apply(e, deadline)
            if e.event_id not in failed_once:
                failed_once.add(e.event_id)
                raise Unavailable("reply lost")
            return applied

    r = await make_rig(nats_server.url, FlakyAfterApply)
    try:
        take = event("scan_take", cabinet_id="ICU-1", sku="strip", qty=3)
        receipt = event("receipt", site="dc", lines=[{"sku": "cath", "lot": "C2", "qty": 7}])
        for _ in range(3):  # the sender retried: three copies in the stream
            await r.send("cabinet", "ICU-1", take)
            await r.send("wms", "dc", receipt)
        await r.settle()
        assert sum((await quants(r.gw, "strip", "icu")).values()) == 12
        assert (await quants(r.gw, "cath", "dc"))[("C2", "", "receiving", "own")] == 7
        assert failed_once == {take["event_id"], receipt["event_id"]}
        assert await dead(r) == []
    finally:
        await close(r)


async def test_bad_messages_go_to_dead_letters_while_good_ones_flow(rig: Rig) -> None:
    r = rig
    bad: list[tuple[str, bytes | dict[str, Any], DeadLetterCode]] = [
        ("cabinet", b"\xff\x00 not json", DeadLetterCode.DECODE),
        ("cabinet", event("scan_take", cabinet_id="ICU-1", qty="three", sku="strip"), DeadLetterCode.SCHEMA),
        ("cabinet", event("teleport", cabinet_id="ICU-1"), DeadLetterCode.SCHEMA),
        ("cabinet", event("scan_take", cabinet_id="GHOST-9", sku="strip"), DeadLetterCode.UNKNOWN_REF),
        ("cabinet", event("scan_take", cabinet_id="ICU-1", sku="unicorn"), DeadLetterCode.UNKNOWN_REF),
        ("cabinet", event("scan_take", cabinet_id="ICU-1", sku="strip", qty=-4), DeadLetterCode.INVALID),
        ("cabinet", event("scan_take", cabinet_id="ICU-1", barcode="(01)09506000134353"), DeadLetterCode.INVALID),
        (
            "wms",
            event("receipt", site="mars", lines=[{"sku": "cath", "lot": "X", "qty": 1}]),
            DeadLetterCode.UNKNOWN_REF,
        ),
        ("wms", event("pack", site="dc", sku="cath", lot="C1", qty=1), DeadLetterCode.REFUSED),  # nothing in picking
        (
            "wms",
            event("qc", site="dc", sku="cath", lot="C1", qty=1, result="pass", from_status="packed"),
            DeadLetterCode.REFUSED,
        ),
    ]
    good = [event("scan_take", cabinet_id="ICU-1", sku="strip", qty=1) for _ in range(5)]
    for (source, raw, _), ok in zip(bad, itertools.cycle(good), strict=False):
        await r.send(source, "X", raw)
        await r.send("cabinet", "ICU-1", ok)
    await r.settle()
    letters = await dead(r)
    by_payload = {s.letter.payload: s.letter for s in letters}
    assert len(letters) == len(bad)
    for _, raw, code in bad:
        payload = raw if isinstance(raw, bytes) else orjson.dumps(raw)
        letter = by_payload[payload]  # the original bytes, untouched
        assert letter.code is code, (raw, letter.reason)
        assert letter.reason
    assert sum((await quants(r.gw, "strip", "icu")).values()) == 10  # all five good ones applied


@pytest.mark.parametrize("pulls_in_hand", [1, 2])
async def test_a_consumer_killed_mid_stream_resumes_without_loss_or_double(
    nats_server: EmbeddedNats,  # noqa: F811
    pulls_in_hand: int,
) -> None:
    r = await make_rig(nats_server.url, fetch_batch=16, max_concurrency=8, pulls_in_hand=pulls_in_hand)
    try:
        n = 400
        await asyncio.gather(
            *(r.send("cabinet", "ICU-1", event("scan_take", cabinet_id="ICU-1", sku="strip", qty=1)) for _ in range(n))
        )
        await wait_for(lambda: r.ingest.consumer.applied >= 60)
        await r.ingest.consumer.abort()  # a crash: in-flight events applied but not acked
        first = r.ingest.consumer.applied
        assert first < n
        from adapters.nats.ingest.consumer import IngestConsumer

        again = IngestConsumer(
            r.ingest.link,
            r.ingest.consumer.config,
            r.ingest.consumer._applier,
            r.ingest.dead_letters,
            IngestMetrics(registry=_registry()),
        )
        await again.start()
        r.ingest.consumer = again
        await r.settle()
        # 15 strips on the books: the first 15 takes consumed stock, the other 385 were
        # shortfalls; each take applied exactly once shows in the journal's movements.
        assert await quants(r.gw, "strip", "icu") == {}
        taken = await consumed_units(r.gw, "strip", "icu")
        assert taken == n
    finally:
        await close(r)


async def wait_for(condition: Any, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def consumed_units(gw: Gateway, sku: str, site: str) -> int:
    """Units issued at a pair per the journal: consumed from stock + shortfalls."""
    from engine.domain.model import MovementKind

    backend = gw._admin.backend if gw._admin else None  # type: ignore[attr-defined]
    assert backend is not None
    total = 0
    for shard in gw.directory.all_shards():
        journal = (await backend()).journal
        async for _, entry in journal.read(shard, 0):
            for m in entry.movements:
                if m.sku == sku and m.site == site and m.kind in (MovementKind.CONSUME, MovementKind.DISCREPANCY):
                    total += m.qty
    return total
