"""The FollowerSink contract (engine.domain.ports): one suite, every production sink — the
history sink over the in-memory history store, and the event bus sink on the events
stream of the session's real nats-server.

What the journal follower relies on: a batch applied is observable in journal order, and
applying entries again — redelivered after a crash, retried after a failure, or fed again
from the journal's start — changes nothing. Observed = the (sku, site, seq) of every
movement the sink made durable, in the order its readers see them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from adapters.clickhouse.sink import HistoryFeed, SinkMetrics
from adapters.memory.history import InMemoryHistoryStore
from adapters.nats.bus import BusMetrics, EventBusSink, decode_event_json, engine_bus_config
from adapters.nats.journal import JournalConfig, NatsLink, PullReader
from adapters.nats.server import EmbeddedNats
from engine.domain.history import MovementQuery
from engine.domain.ports import FollowedEntry, FollowerSink
from tests.nats_fixtures import journal_entry, nats_server  # noqa: F401 - a real nats-server, session-scoped

pytestmark = pytest.mark.asyncio(loop_scope="session")

MiB = 1024 * 1024
Observed = list[tuple[str, str, int]]


@dataclass
class Backend:
    sink: FollowerSink
    observed: Callable[[], Awaitable[Observed]]
    close: Callable[[], Awaitable[None]]


async def _history(_: EmbeddedNats) -> Backend:
    store = InMemoryHistoryStore()

    async def observed() -> Observed:
        page = await store.movements(MovementQuery(page_size=1_000))
        return [(r.movement.sku, r.movement.site, r.movement.seq) for r in page.records]

    return Backend(HistoryFeed(store, SinkMetrics(CollectorRegistry()), "LOTWISE_JOURNAL_t"), observed, store.close)


async def _events(server: EmbeddedNats) -> Backend:
    link = NatsLink(JournalConfig(url=server.url, read_batch=8, api_timeout_s=5.0))
    await link.connect()
    config = engine_bus_config(f"k{uuid.uuid4().hex[:8]}", server.url, max_bytes=16 * MiB)
    sink = EventBusSink(link, config, BusMetrics(CollectorRegistry()))
    await sink.open()

    async def observed() -> Observed:
        nc, js = await link.client()
        state = (await js.stream_info(config.stream)).state
        if not state.messages:
            return []
        out: Observed = []
        # Every subject, so the read ends at the stream's last message; the JSON copies kept.
        reader = PullReader(nc, js, config.stream, ">", 1, link.config)
        async for batch in reader.batches():
            for delivered in batch:
                if delivered.subject.startswith(config.subject_prefix + "."):
                    event = decode_event_json(delivered.data)
                    out.append((event.sku, event.site, event.seq))
                if delivered.stream_seq >= int(state.last_seq or 0):
                    return out
        return out

    return Backend(sink, observed, link.close)


BACKENDS = {"history": _history, "events": _events}


@pytest_asyncio.fixture(params=sorted(BACKENDS), loop_scope="session")
async def backend(request: pytest.FixtureRequest, nats_server: EmbeddedNats) -> AsyncIterator[Backend]:  # noqa: F811
    made = await BACKENDS[request.param](nats_server)
    yield made
    await made.close()


def entries(first: int, count: int) -> tuple[FollowedEntry, ...]:
    """Journal batches at positions first…, each a receipt and a reserve of one lot."""
    return tuple(FollowedEntry(n, journal_entry("s1", n)) for n in range(first, first + count))


def movements_of(batch: tuple[FollowedEntry, ...]) -> Observed:
    return [(m.sku, m.site, m.seq) for f in batch for m in f.entry.movements]


async def test_a_batch_applied_is_observed_in_journal_order(backend: Backend) -> None:
    first, second = entries(1, 2), entries(3, 3)
    await backend.sink.apply(first)
    await backend.sink.apply(second)
    assert await backend.observed() == movements_of(first + second)


async def test_applying_entries_again_changes_nothing(backend: Backend) -> None:
    batch = entries(1, 3)
    await backend.sink.apply(batch)
    await backend.sink.apply(tuple(replace(f, redelivered=True) for f in batch))  # after a crash or a failure
    await backend.sink.apply(batch[1:2])  # fed again from the journal's start
    assert await backend.observed() == movements_of(batch)


async def test_an_empty_batch_changes_nothing(backend: Backend) -> None:
    await backend.sink.apply(())
    assert await backend.observed() == []
    assert backend.sink.name
