"""Journal followers: how fast they catch up a backlog, and what each costs per movement
at a steady trickle (the regime of a serving engine).

    .venv/bin/python -m bench.followers                  # 2,000 journal batches: under a minute
    .venv/bin/python -m bench.followers --batches 400    # a quick look
    .venv/bin/python -m bench.followers --trickle-rate 100 --trickle-s 10   # CPU per movement
    .venv/bin/python -m bench.followers --trickle-rate 150 --trickle-s 8 --pairs-per-batch 10 \
        --followers bus,null                  # 3,000 movements/s, 20 per journal batch

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
`--pairs-per-batch` puts that many receipt + reserve pairs in each journal batch (a busy
shard's batches carry many commands): movements/s = 2 × pairs × rate, beyond what one
writer appends one batch at a time. `--followers` picks some of history, bus, null;
`--profile-dir` writes a cProfile of each follower's counted window there (its CPU figures
then include the profiler's own).

Prints one line per follower (and the movements/s it kept up with); writes nothing but
the profiles.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def batch(batch_seq: int, pairs: int = 1, shard: str = "s1") -> JournalEntry:
    """`pairs` receipts of one lot each (their commands with finance: the events' full
    payload), each followed by a reserve of it: 2 × `pairs` movements, as a shard's batch
    of that many commands journals them."""
    at_ms = 1_767_225_600_000 + batch_seq
    ops: list[Receive] = []
    movements: list[Movement] = []
    for pair in range(pairs):
        n = (batch_seq - 1) * pairs + pair + 1  # 1, 2, … over every batch of this shape
        lot_id = f"lot-{n}"
        key = QuantKey(lot_id, "A/01/P1", "available", "own")
        receive = Movement(
            2 * n - 1,
            MovementKind.RECEIVE,
            "sku-1",
            "site-1",
            lot_id,
            10,
            External.SUPPLIER,
            key,
            request_id=f"req-{n}",
            at_ms=at_ms,
            lot=Lot(lot_id, received_at_ms=at_ms, expires_at_ms=at_ms + 86_400_000),
        )
        reserve = Movement(
            2 * n,
            MovementKind.RESERVE,
            "sku-1",
            "site-1",
            lot_id,
            0,
            key,
            key,
            held_key=key,
            held_delta=3,
            hold_id=f"hold-{n}",
            request_id=f"req-{n}-r",
            at_ms=at_ms,
            expires_at_ms=at_ms + 60_000,
        )
        ops.append(Receive(receive.request_id, "sku-1", "site-1", lot_id, 10, finance=FINANCE))
        movements += (receive, reserve)
    return JournalEntry(shard, batch_seq, at_ms, tuple(ops), tuple(movements))


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


MOVEMENTS_PER_PAIR = 2  # batch(): a receipt and a reserve per pair
MAX_PAIRS_PER_BATCH = 100  # a shard's micro-batch is bounded too
FOLLOWERS = ("history sink", "event bus", "null sink")
TRICKLE_STREAM_BYTES = 128 * MiB
MAX_TRICKLE_RATE = 1_000  # journal batches per second: far above what one writer here appends
WARM_UP_BATCHES = 20  # journal batches written and followed before the CPU is counted


def _cpu_s(nats_proc: psutil.Process) -> tuple[float, float]:
    """CPU seconds so far of this process (all threads) and of nats-server."""
    t = nats_proc.cpu_times()
    return time.process_time(), t.user + t.system


async def _write_at(journal: JetStreamJournal, shape: Trickle, seconds: float, first: int, shard: str) -> int:
    """Append journal batches `first`, `first + 1`, … at `shape.rate` per second for
    `seconds`; returns how many. Each run's shard is its own, so its messages are bytes no
    earlier run wrote: the followers' shared decode (DecodedCache) cannot answer a later
    follower from an earlier one's run, and every follower pays its decode."""
    n = max(1, round(shape.rate * seconds))
    started = time.perf_counter()
    position = first - 1  # the journal's position before batch `first` (one message each)
    for i in range(n):
        position = await journal.append(batch(first + i, shape.pairs, shard), position)
        await asyncio.sleep(max(0.0, started + (i + 1) / shape.rate - time.perf_counter()))
    return n


@dataclasses.dataclass(frozen=True, slots=True)
class Trickle:
    """What the trickle run writes and who follows it."""

    rate: float  # journal batches per second
    seconds: float  # of writing, counted
    pairs: int = 1  # receipt + reserve pairs per journal batch: 2 × pairs movements each
    followers: tuple[str, ...] = FOLLOWERS
    profile_dir: Path | None = None  # cProfile of each follower's counted window goes here

    @property
    def movements(self) -> int:
        return max(1, round(self.rate * self.seconds)) * MOVEMENTS_PER_PAIR * self.pairs


@dataclasses.dataclass(frozen=True, slots=True)
class Counted:
    """What one trickle run spent while it was counted."""

    cpu_s: float  # this process, every thread
    nats_cpu_s: float  # nats-server
    pulls: int  # the follower's fetch requests
    wall_s: float  # from the first counted append until the follower caught up


def _follower(kind: str, link: NatsLink, config: JournalConfig, namespace: str, store: Any) -> JournalFollower | None:
    if kind == "history sink":
        return HistorySink(link, store, metrics=SinkMetrics(CollectorRegistry()))
    if kind == "event bus":
        bus = engine_bus_config(namespace, link.config.url, max_bytes=TRICKLE_STREAM_BYTES)
        return EventBusPublisher(link, config, bus, BusMetrics(CollectorRegistry()))
    if kind == "null sink":
        null = FollowerConfig(consumer="lotwise-bench-null", dead_letter_tag="bench")
        return JournalFollower(link, NullSink(), null, NullMetrics())
    return None  # writing alone


async def trickle_one(nats: EmbeddedNats, tmp: Path, kind: str, shape: Trickle) -> Counted:
    """What writing a fresh journal as `shape` says costs with `kind` following it."""
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
        follower = _follower(kind, link, config, namespace, store)
        journal = JetStreamJournal(link)
        if follower is not None:
            await follower.start()
        # Warm-up, not counted: the first insert into a fresh chDB database costs ~0.8 s
        # once per process, which a serving engine pays at start, not per movement.
        await _write_at(journal, shape, WARM_UP_BATCHES / shape.rate, 1, namespace)
        if follower is not None:
            await follower.wait_caught_up(timeout_s=600, poll_s=0.05)
        profile = (
            cProfile.Profile(time.process_time) if shape.profile_dir is not None and follower is not None else None
        )
        cpu0, nats0 = _cpu_s(nats_proc)
        pulls0, started = getattr(follower, "pulls", 0), time.perf_counter()
        if profile is not None:
            profile.enable()
        await _write_at(journal, shape, shape.seconds, WARM_UP_BATCHES + 1, namespace)
        if follower is not None:
            await follower.wait_caught_up(timeout_s=600, poll_s=0.05)
        if profile is not None:
            profile.disable()
        cpu1, nats1 = _cpu_s(nats_proc)
        if profile is not None and shape.profile_dir is not None:
            shape.profile_dir.mkdir(parents=True, exist_ok=True)
            profile.dump_stats(shape.profile_dir / f"{kind.replace(' ', '-')}.pstats")
        wall_s = time.perf_counter() - started
        return Counted(cpu1 - cpu0, nats1 - nats0, getattr(follower, "pulls", 0) - pulls0, wall_s)
    finally:
        if follower is not None:
            await follower.stop()
        if store is not None:
            await store.close()
        await link.close()


async def trickle(nats: EmbeddedNats, tmp: Path, shape: Trickle) -> None:
    base = await trickle_one(nats, tmp, "writing alone", shape)
    movements = shape.movements
    print(
        f"writing alone: {base.cpu_s:.2f} s CPU here, {base.nats_cpu_s:.2f} s nats-server "
        f"({movements:,} movements, {movements / base.wall_s:,.0f} movements/s)"
    )
    for kind in shape.followers:
        run = await trickle_one(nats, tmp, kind, shape)
        own_us = 1e6 * (run.cpu_s - base.cpu_s) / movements
        nats_us = 1e6 * (run.nats_cpu_s - base.nats_cpu_s) / movements
        print(
            f"{kind}: {own_us:,.0f} µs CPU per movement here + {nats_us:,.0f} µs in nats-server, "
            f"{run.pulls:,} pulls, {movements / run.wall_s:,.0f} movements/s"
        )


def _followers(text: str) -> tuple[str, ...]:
    names = {"history": "history sink", "bus": "event bus", "null": "null sink"}
    chosen = tuple(names.get(name.strip(), "") for name in text.split(","))
    if not chosen or "" in chosen:
        raise argparse.ArgumentTypeError(f"followers are a comma-separated list of {', '.join(names)}")
    return chosen


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.followers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=2_000, help="journal batches in the backlog")
    parser.add_argument(
        "--trickle-rate", type=float, default=0.0, help="journal batches/s of the trickle run (0: the backlog run)"
    )
    parser.add_argument("--trickle-s", type=float, default=10.0, help="seconds of writing in the trickle run")
    parser.add_argument(
        "--pairs-per-batch",
        type=int,
        default=1,
        help=f"receipt + reserve pairs per journal batch (1–{MAX_PAIRS_PER_BATCH}): movements/s = 2 × pairs × rate",
    )
    parser.add_argument(
        "--followers", type=_followers, default=FOLLOWERS, help="trickle: which of history,bus,null (default all)"
    )
    parser.add_argument("--profile-dir", type=Path, default=None, help="trickle: cProfile each follower's window here")
    args = parser.parse_args(argv)
    if not 0 <= args.trickle_rate <= MAX_TRICKLE_RATE or not 0 < args.trickle_s <= 300:
        parser.error(f"--trickle-rate must be in [0, {MAX_TRICKLE_RATE}] and --trickle-s in (0, 300]")
    if not 1 <= args.pairs_per_batch <= MAX_PAIRS_PER_BATCH:
        parser.error(f"--pairs-per-batch must be in [1, {MAX_PAIRS_PER_BATCH}]")
    with tempfile.TemporaryDirectory(prefix="lotwise-followers-bench-") as tmp:
        nats = EmbeddedNats(EmbeddedNatsConfig(data_dir=Path(tmp) / "nats", max_file_store_bytes=4 * GiB))
        await nats.start()
        try:
            if args.trickle_rate:
                shape = Trickle(
                    args.trickle_rate, args.trickle_s, args.pairs_per_batch, args.followers, args.profile_dir
                )
                await trickle(nats, Path(tmp), shape)
            else:
                await run(nats, args.batches)
        finally:
            await nats.stop()


if __name__ == "__main__":
    asyncio.run(main())
