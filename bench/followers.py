"""Journal followers: how fast the event bus publishes a journal backlog, and the follower's
own ceiling (a sink that does nothing).

    .venv/bin/python -m bench.followers                  # 2,000 journal batches: under a minute
    .venv/bin/python -m bench.followers --batches 400    # a quick look

No Ray and no network beyond 127.0.0.1: an embedded nats-server in a temp dir. A backlog of
`--batches` journal batches (each a receipt with finance and a reserve: two movements) is
journaled first; then each follower starts on a durable consumer of its own and the time
until it has acknowledged the whole backlog is measured.
- event bus: the production publisher (adapters.nats.bus.EventBusPublisher), both
  formats: 4 event messages per batch; prints event messages/s.
- null sink: the journal follower with a sink that returns at once: fetch, decode,
  batch, ack; prints journal messages/s.

Prints one line per follower; writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from adapters.nats.bus import BusMetrics, EventBusPublisher, engine_bus_config
from adapters.nats.follower import FollowerConfig, JournalFollower
from adapters.nats.journal import (
    JetStreamJournal,
    JournalConfig,
    NatsLink,
    engine_journal_config,
    ensure_stream,
    journal_stream_config,
)
from adapters.nats.server import EmbeddedNats, EmbeddedNatsConfig
from engine.domain.commands import Receive
from engine.domain.model import External, Finance, Lot, Movement, MovementKind, QuantKey
from engine.domain.ports import FollowedEntry, JournalEntry

MiB, GiB = 1024 * 1024, 1024 * 1024 * 1024
FINANCE = Finance(currency="EUR", unit_cost="4.20", unit_price="6.99", tax_rate="0.19", terms="2/10 n/30")


def batch(batch_seq: int) -> JournalEntry:
    """A receipt of one lot (its command with finance: the events' full payload) and a reserve."""
    lot_id, at_ms = f"lot-{batch_seq}", 1_767_225_600_000 + batch_seq
    key = QuantKey(lot_id, "A/01/P1", "available", "own")
    receive = Movement(
        2 * batch_seq - 1,
        MovementKind.RECEIVE,
        "sku-1",
        "site-1",
        lot_id,
        10,
        External.SUPPLIER,
        key,
        request_id=f"req-{batch_seq}",
        at_ms=at_ms,
        lot=Lot(lot_id, received_at_ms=at_ms, expires_at_ms=at_ms + 86_400_000),
    )
    reserve = Movement(
        2 * batch_seq,
        MovementKind.RESERVE,
        "sku-1",
        "site-1",
        lot_id,
        0,
        key,
        key,
        held_key=key,
        held_delta=3,
        hold_id=f"hold-{batch_seq}",
        request_id=f"req-{batch_seq}-r",
        at_ms=at_ms,
        expires_at_ms=at_ms + 60_000,
    )
    op = Receive(receive.request_id, "sku-1", "site-1", lot_id, 10, finance=FINANCE)
    return JournalEntry("s1", batch_seq, at_ms, (op,), (receive, reserve))


class NullSink:
    name = "null sink"

    async def apply(self, entries: tuple[FollowedEntry, ...]) -> None:
        return None


class NullMetrics:
    def __init__(self) -> None:
        registry = CollectorRegistry()
        self.lag_messages = Gauge("lag", "", registry=registry)
        self.stream_position = Gauge("stream", "", registry=registry)
        self.acked_position = Gauge("acked", "", registry=registry)
        self.failures = Counter("failures", "", registry=registry)
        self.dead_letters = Counter("dead_letters", "", registry=registry)
        self.delay = Histogram("delay", "", registry=registry)


async def journal_backlog(link: NatsLink, batches: int) -> None:
    _, js = await link.client()
    await ensure_stream(js, journal_stream_config(link.config))
    journal = JetStreamJournal(link)
    position = 0
    for batch_seq in range(1, batches + 1):
        position = await journal.append(batch(batch_seq), position)


async def timed(follower: JournalFollower) -> float:
    started = time.perf_counter()
    await follower.start()
    await follower.wait_caught_up(timeout_s=600, poll_s=0.01)
    elapsed_s = time.perf_counter() - started
    await follower.stop()
    return elapsed_s


async def run(nats: EmbeddedNats, batches: int) -> None:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    config: JournalConfig = dataclasses.replace(
        engine_journal_config(namespace, nats.url, client_name="lotwise-bench"), max_bytes=1 * GiB
    )
    link = NatsLink(config)
    await link.connect()
    try:
        await journal_backlog(link, batches)
        bus = engine_bus_config(namespace, nats.url, max_bytes=1 * GiB)
        publisher = EventBusPublisher(link, config, bus, BusMetrics(CollectorRegistry()))
        elapsed_s = await timed(publisher)
        published = publisher.published_events
        print(f"event bus: {published:,} event messages in {elapsed_s:.2f}s = {published / elapsed_s:,.0f} events/s")
        null = JournalFollower(
            link, NullSink(), FollowerConfig(consumer="lotwise-bench-null", dead_letter_tag="bench"), NullMetrics()
        )
        elapsed_s = await timed(null)
        print(f"null sink: {batches:,} journal messages in {elapsed_s:.2f}s = {batches / elapsed_s:,.0f} messages/s")
    finally:
        await link.close()


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.followers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=2_000, help="journal batches in the backlog")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lotwise-followers-bench-") as tmp:
        nats = EmbeddedNats(EmbeddedNatsConfig(data_dir=Path(tmp) / "nats", max_file_store_bytes=4 * GiB))
        await nats.start()
        try:
            await run(nats, args.batches)
        finally:
            await nats.stop()


if __name__ == "__main__":
    asyncio.run(main())
