"""The event bus sink's contract (the FollowerSink that publishes business events), on the
events stream of the session's real nats-server: what a journal batch applied to it leaves
for the readers of the events stream — in order, each event once, intact.

Readers consume the stream's JSON subjects in stream order (adapters/nats/EVENTS.md);
`read` below is such a reader."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from adapters.nats.bus import BusConfig, BusMetrics, EventBusSink, decode_event_json, engine_bus_config
from adapters.nats.journal import JournalConfig, NatsLink, PullReader
from adapters.nats.server import EmbeddedNats
from engine.domain.commands import Receive
from engine.domain.events import BusinessEvent, business_events
from engine.domain.model import Finance
from engine.domain.ports import FollowedEntry
from tests.nats_fixtures import journal_entry, nats_server  # noqa: F401 - a real nats-server, session-scoped

MiB = 1024 * 1024
pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass(slots=True)
class Bus:
    link: NatsLink
    config: BusConfig
    sink: EventBusSink

    async def publish(self, entries: list[FollowedEntry]) -> None:
        await self.sink.apply(tuple(entries))

    async def read(self, after: int = 0, limit: int = 100) -> list[BusinessEvent]:
        """Skips `after` JSON events from the stream's oldest one, in stream order."""
        if after < 0 or limit <= 0:
            raise ValueError("after must be ≥ 0 and limit > 0")
        nc, js = await self.link.client()
        state = (await js.stream_info(self.config.stream)).state
        if not state.messages:
            return []
        end = int(state.last_seq or 0)
        # Every subject of the stream (not only the JSON ones), so the read ends at `end`
        # whichever format was published last.
        reader = PullReader(nc, js, self.config.stream, ">", int(state.first_seq or 1), self.link.config)
        json_prefix = self.config.subject_prefix + "."
        events: list[BusinessEvent] = []
        seen = 0
        async for batch in reader.batches():
            for delivered in batch:
                if delivered.subject.startswith(json_prefix):
                    seen += 1
                    if seen > after:
                        events.append(decode_event_json(delivered.data))
                        if len(events) >= limit:
                            return events
                if delivered.stream_seq >= end:
                    return events
        return events


@pytest_asyncio.fixture(loop_scope="session")
async def bus(nats_server: EmbeddedNats) -> AsyncIterator[Bus]:  # noqa: F811
    # Small read batches, so that reads span several pulls; a namespace of its own.
    link = NatsLink(JournalConfig(url=nats_server.url, read_batch=4, api_timeout_s=5.0))
    await link.connect()
    config = engine_bus_config(f"c{uuid.uuid4().hex[:8]}", nats_server.url, max_bytes=16 * MiB)
    sink = EventBusSink(link, config, BusMetrics(CollectorRegistry()))
    await sink.open()
    yield Bus(link, config, sink)
    await link.close()


FINANCE = Finance(currency="EUR", unit_cost="1.10", unit_price="2.35", tax_rate="0.07", terms="2/10 n/30")


def entries_of(batches: int, shard: str = "s1") -> list[FollowedEntry]:
    """Journal batches of a receipt (with finance) and a reserve, at positions 1, 2, …"""
    out: list[FollowedEntry] = []
    for batch_seq in range(1, batches + 1):
        entry = journal_entry(shard, batch_seq)
        receive = Receive(f"req-{batch_seq}", "sku-1", "site-1", f"lot-{batch_seq}", 10, finance=FINANCE)
        out.append(FollowedEntry(batch_seq, dataclasses.replace(entry, ops=(receive,))))
    return out


def events_of(entries: list[FollowedEntry]) -> list[BusinessEvent]:
    return [e for f in entries for e in business_events(f.entry, stream_seq=f.position)]


async def test_events_are_read_back_in_publish_order(bus: Bus) -> None:
    entries = entries_of(5)
    await bus.publish(entries[:2])
    await bus.publish(entries[2:])
    assert await bus.read(limit=100) == events_of(entries)


async def test_republishing_stores_nothing_twice(bus: Bus) -> None:
    entries = entries_of(3)
    await bus.publish(entries[:2])
    await bus.publish(entries)  # the first two again, then the rest
    await bus.publish([dataclasses.replace(entries[1], redelivered=True)])
    assert await bus.read(limit=100) == events_of(entries)


async def test_reads_resume_from_a_position(bus: Bus) -> None:
    entries = entries_of(4)
    events = events_of(entries)
    await bus.publish(entries)
    pages: list[BusinessEvent] = []
    after = 0
    for _ in range(10):  # bounded: 8 events in pages of 3
        page = await bus.read(after=after, limit=3)
        if not page:
            break
        pages += page
        after += len(page)
    assert pages == events
    assert await bus.read(after=len(events)) == []
    assert await bus.read(after=5, limit=2) == events[5:7]


async def test_finance_and_document_reference_arrive_intact(bus: Bus) -> None:
    [followed] = entries_of(1)
    entry = followed.entry
    doc_ref = "PO-2026-0042"
    ops = tuple(dataclasses.replace(op, doc_ref=doc_ref) for op in entry.ops)
    movements = tuple(dataclasses.replace(m, doc_ref=doc_ref) for m in entry.movements)
    await bus.publish([dataclasses.replace(followed, entry=dataclasses.replace(entry, ops=ops, movements=movements))])
    receipt, reserve = await bus.read()
    assert receipt.doc_ref == reserve.doc_ref == "PO-2026-0042"
    assert receipt.finance is not None
    assert (receipt.finance.currency, receipt.finance.unit_cost, receipt.finance.terms) == ("EUR", "1.10", "2/10 n/30")
    assert (receipt.finance.extended_cost, receipt.finance.extended_price, receipt.finance.tax_amount) == (
        "11.00",
        "23.50",
        "1.6450",
    )
    assert (receipt.finance.discount_pct, receipt.finance.discount_days, receipt.finance.net_days) == ("2", 10, 30)
    assert reserve.finance is None


async def test_an_empty_bus_reads_nothing(bus: Bus) -> None:
    assert await bus.read() == []
    await bus.publish([])
    assert await bus.read(after=3) == []
    with pytest.raises(ValueError, match="limit"):
        await bus.read(limit=0)
