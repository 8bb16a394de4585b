"""The EventBus contract: one suite, every backend (the in-memory reference and the NATS
events stream on the session's real nats-server)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from adapters.nats.bus import NatsEventBus, engine_bus_config
from adapters.nats.journal import JournalConfig, NatsLink
from adapters.nats.server import EmbeddedNats
from engine.domain.commands import Receive
from engine.domain.events import BusinessEvent, EventBus, InMemoryEventBus, business_events
from engine.domain.model import Finance
from tests.nats_fixtures import journal_entry

MiB = 1024 * 1024
pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _memory(_: EmbeddedNats) -> tuple[EventBus, Callable[[], Awaitable[None]]]:
    async def close() -> None:
        return None

    return InMemoryEventBus(), close


async def _nats(server: EmbeddedNats) -> tuple[EventBus, Callable[[], Awaitable[None]]]:
    # Small read batches, so that reads span several pulls; a namespace of its own.
    link = NatsLink(JournalConfig(url=server.url, read_batch=4, api_timeout_s=5.0))
    await link.connect()
    bus = NatsEventBus(link, engine_bus_config(f"c{uuid.uuid4().hex[:8]}", server.url, max_bytes=16 * MiB))
    await bus.ensure_stream()
    return bus, link.close


BACKENDS = {"memory": _memory, "nats": _nats}


@pytest_asyncio.fixture(params=sorted(BACKENDS), loop_scope="session")
async def bus(request: pytest.FixtureRequest, nats_server: EmbeddedNats) -> AsyncIterator[EventBus]:
    made, close = await BACKENDS[request.param](nats_server)
    yield made
    await close()


FINANCE = Finance(currency="EUR", unit_cost="1.10", unit_price="2.35", tax_rate="0.07", terms="2/10 n/30")


def events_of(batches: int, shard: str = "s1") -> list[BusinessEvent]:
    out: list[BusinessEvent] = []
    for batch_seq in range(1, batches + 1):
        entry = journal_entry(shard, batch_seq)
        receive = Receive(f"req-{batch_seq}", "sku-1", "site-1", f"lot-{batch_seq}", 10, finance=FINANCE)
        out += business_events(dataclasses.replace(entry, ops=(receive,)), stream_seq=batch_seq)
    return out


async def test_events_are_read_back_in_publish_order(bus: EventBus) -> None:
    events = events_of(5)
    await bus.publish(events[:4])
    await bus.publish(events[4:])
    assert await bus.read(limit=100) == events


async def test_republishing_stores_nothing_twice(bus: EventBus) -> None:
    events = events_of(3)
    await bus.publish(events[:4])
    await bus.publish(events)  # the first four again, then the rest
    await bus.publish(events[2:3])
    assert await bus.read(limit=100) == events


async def test_reads_resume_from_a_position(bus: EventBus) -> None:
    events = events_of(4)
    await bus.publish(events)
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


async def test_finance_and_document_reference_arrive_intact(bus: EventBus) -> None:
    events = [dataclasses.replace(e, doc_ref="PO-2026-0042") for e in events_of(1)]
    await bus.publish(events)
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


async def test_an_empty_bus_reads_nothing(bus: EventBus) -> None:
    assert await bus.read() == []
    await bus.publish([])
    assert await bus.read(after=3) == []
    with pytest.raises(ValueError, match="limit"):
        await bus.read(limit=0)
