"""Journal followers: how fast they catch up a backlog, and what each costs per movement
at a steady trickle (the regime of a serving engine).

    .venv/bin/python -m bench.followers                  # 2,000 journal batches: under a minute
    .venv/bin/python -m bench.followers --batches 400    # a quick look
    .venv/bin/python -m bench.followers --trickle-rate 100 --trickle-s 10   # CPU per movement

No Ray and no network beyond 127.0.0.1: an embedded nats-server in a temp dir. A backlog of
`--batches` journal batches (each a receipt with finance and a reserve: two movements) is
journaled first; then each follower starts on a durable consumer of its own and the time
until it has acknowledged the whole backlog is measured.
- event bus: the production publisher (adapters.nats.bus.EventBusPublisher), both
  formats: 4 event messages per batch; prints event messages/s.
- null sink: the journal follower with a sink that returns at once: fetch, decode,
  batch, ack; prints journal messages/s.

Trickle (`--trickle-rate` journal batches per second for `--trickle-s`): each follower —
the history sink into an embedded chDB (production defaults), the event bus, the null sink
— follows a fresh journal while it is written at that rate, and the CPU of this process
(every thread, chDB's included) and of nats-server until the follower has caught up, less
the same run with no follower (the writing alone), is divided by the movements. That is
the follower's cost per movement as a serving engine pays it (small batches, wake-ups).

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

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from adapters.clickhouse.sink import SinkMetrics
from adapters.clickhouse.store import HistoryStoreConfig, chdb_dsn, open_store
from adapters.nats.bus import BusMetrics, EventBusPublisher, engine_bus_config
from adapters.nats.follower import FollowerConfig, JournalFollower
from adapters.nats.history import HistorySink
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


MOVEMENTS_PER_BATCH = 2  # batch(): a receipt and a reserve
TRICKLE_STREAM_BYTES = 128 * MiB
MAX_TRICKLE_RATE = 1_000  # journal batches per second: far above what one writer here appends
WARM_UP_BATCHES = 20  # journal batches written and followed before the CPU is counted


def _cpu_s(nats_proc: psutil.Process) -> tuple[float, float]:
    """CPU seconds so far of this process (all threads) and of nats-server."""
    t = nats_proc.cpu_times()
    return time.process_time(), t.user + t.system


async def _write_at(journal: JetStreamJournal, rate: float, seconds: float, first: int = 1) -> int:
    """Append journal batches `first`, `first + 1`, … at `rate` per second for `seconds`;
    returns how many."""
    n = max(1, round(rate * seconds))
    started = time.perf_counter()
    position = first - 1  # the journal's position before batch `first` (one message each)
    for i in range(n):
        position = await journal.append(batch(first + i), position)
        await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.perf_counter()))
    return n


async def trickle_one(
    nats: EmbeddedNats, tmp: Path, kind: str, rate: float, seconds: float
) -> tuple[float, float, int]:
    """(process CPU s, nats CPU s, pulls) of writing a fresh journal at `rate` with `kind` following."""
    namespace = f"bench-{kind.replace(' ', '-')}-{uuid.uuid4().hex[:6]}"
    # Small streams: every run's streams stay on the server until it stops (its store is bounded).
    config = dataclasses.replace(
        engine_journal_config(namespace, nats.url, client_name="lotwise-bench"), max_bytes=TRICKLE_STREAM_BYTES
    )
    link = NatsLink(config)
    await link.connect()
    _, js = await link.client()
    await ensure_stream(js, journal_stream_config(config))
    nats_proc = next(p for p in psutil.Process().children(recursive=True) if "nats-server" in p.name())
    follower: JournalFollower | None = None
    store = None
    try:
        if kind == "history sink":
            store = await open_store(
                HistoryStoreConfig(dsn=chdb_dsn(tmp / "history"), database=namespace.replace("-", "_"))
            )
            follower = HistorySink(link, store, metrics=SinkMetrics(CollectorRegistry()))
        elif kind == "event bus":
            bus = engine_bus_config(namespace, nats.url, max_bytes=TRICKLE_STREAM_BYTES)
            follower = EventBusPublisher(link, config, bus, BusMetrics(CollectorRegistry()))
        elif kind == "null sink":
            follower = JournalFollower(
                link, NullSink(), FollowerConfig(consumer="lotwise-bench-null", dead_letter_tag="bench"), NullMetrics()
            )
        journal = JetStreamJournal(link)
        if follower is not None:
            await follower.start()
        # Warm-up, not counted: the first insert into a fresh chDB database costs ~0.8 s
        # once per process, which a serving engine pays at start, not per movement.
        await _write_at(journal, rate, WARM_UP_BATCHES / rate, first=1)
        if follower is not None:
            await follower.wait_caught_up(timeout_s=600, poll_s=0.05)
        cpu0, nats0 = _cpu_s(nats_proc)
        pulls0 = getattr(follower, "pulls", 0)
        await _write_at(journal, rate, seconds, first=WARM_UP_BATCHES + 1)
        if follower is not None:
            await follower.wait_caught_up(timeout_s=600, poll_s=0.05)
        cpu1, nats1 = _cpu_s(nats_proc)
        return cpu1 - cpu0, nats1 - nats0, getattr(follower, "pulls", 0) - pulls0
    finally:
        if follower is not None:
            await follower.stop()
        if store is not None:
            await store.close()
        await link.close()


async def trickle(nats: EmbeddedNats, tmp: Path, rate: float, seconds: float) -> None:
    base_cpu, base_nats, _ = await trickle_one(nats, tmp, "writing alone", rate, seconds)
    movements = max(1, round(rate * seconds)) * MOVEMENTS_PER_BATCH
    print(f"writing alone: {base_cpu:.2f} s CPU here, {base_nats:.2f} s nats-server ({movements:,} movements)")
    for kind in ("history sink", "event bus", "null sink"):
        cpu, nats_cpu, pulls = await trickle_one(nats, tmp, kind, rate, seconds)
        own_us = 1e6 * (cpu - base_cpu) / movements
        nats_us = 1e6 * (nats_cpu - base_nats) / movements
        print(f"{kind}: {own_us:,.0f} µs CPU per movement here + {nats_us:,.0f} µs in nats-server, {pulls:,} pulls")


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.followers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=2_000, help="journal batches in the backlog")
    parser.add_argument(
        "--trickle-rate", type=float, default=0.0, help="journal batches/s of the trickle run (0: the backlog run)"
    )
    parser.add_argument("--trickle-s", type=float, default=10.0, help="seconds of writing in the trickle run")
    args = parser.parse_args(argv)
    if not 0 <= args.trickle_rate <= MAX_TRICKLE_RATE or not 0 < args.trickle_s <= 300:
        parser.error(f"--trickle-rate must be in [0, {MAX_TRICKLE_RATE}] and --trickle-s in (0, 300]")
    with tempfile.TemporaryDirectory(prefix="lotwise-followers-bench-") as tmp:
        nats = EmbeddedNats(EmbeddedNatsConfig(data_dir=Path(tmp) / "nats", max_file_store_bytes=4 * GiB))
        await nats.start()
        try:
            if args.trickle_rate:
                await trickle(nats, Path(tmp), args.trickle_rate, args.trickle_s)
            else:
                await run(nats, args.batches)
        finally:
            await nats.stop()


if __name__ == "__main__":
    asyncio.run(main())
