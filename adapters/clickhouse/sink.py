"""The history sink: journal batches → history store (DESIGN.md §8, §9, §12).

A FollowerSink (engine.domain.ports): the journal follower (adapters.nats.follower; wired
as adapters.nats.history.HistorySink) hands it bounded batches of journal entries in
journal order, and it turns their movements into history records and the catalog entries
they carry into one insert. The follower acks the journal messages only once the insert
returned: a crash anywhere loses nothing — unacked messages come back.

Never doubled, at three levels (the store's side: adapters.clickhouse.schema):
1. a retried insert (ClickHouse down, or its answer lost) carries the same
   `insert_deduplication_token` (a digest of the batch's journal positions), so ClickHouse
   stores it once — in the table and in the roll-up views, which a second copy would inflate;
2. a message delivered again (a sink crashed between insert and ack, or an ack was
   lost) is a journal batch the store already has: the insert looks its (shard,
   batch_seq) up and skips it, so the views see each movement once (the look-up runs for
   a batch flagged `redelivered` or reaching back to positions the store holds; a fresh
   batch past the newest stored position costs no query);
3. `movements` is a ReplacingMergeTree keyed by (sku, site, seq) and every query reads
   it with FINAL: whatever slips through is still counted once.
(Why (sku, site, seq) as the row's identity and not (shard, batch_seq, index): seq is per
cell and gap-free, it names a movement wherever its cell lives — a pinned pair moves to
another shard — and it is the order the queries want; (shard, batch_seq) names the
journal message, which is what a redelivery repeats, so the redelivery check uses it.)

A movement no history row can hold is rejected (EntryRejected): the follower moves its
journal message to the history dead letters with the reason (§12).
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from engine.domain.catalog import Sku
from engine.domain.history import HistoryBatch, HistoryRecord, unrepresentable
from engine.domain.ports import EntryRejected, FollowedEntry, HistoryStore

log = structlog.get_logger("lotwise.history.sink")

MiB = 1024 * 1024
CONSUMER = "lotwise-history"  # the durable consumer's name (one per journal stream)
DEAD_LETTER_TAG = "history"  # its dead letters: <journal>_HISTORY_DLQ on lotwise.dlq.history.<journal>
_DELAY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True, slots=True)
class SinkConfig:
    """Bounds of the history sink's follower. A batch closes at whichever bound it reaches first."""

    consumer: str = CONSUMER
    batch_max_rows: int = 20_000  # movements per insert
    batch_max_messages: int = 1_000  # journal messages per insert
    # How long a batch may wait to fill. Every insert costs chDB a part in `movements` and
    # in each roll-up view whatever its size (bench/README.md, "Cheaper hops"): one insert
    # a second keeps that cost off the orders, and history one second behind is fresh enough.
    batch_max_ms: float = 1_000.0
    # While the journal is busy, up to 2 s: half the inserts (and their parts and merges)
    # while the orders need the cores; history is at most ~2 s behind then.
    busy_batch_max_ms: float = 2_000.0
    fetch_batch: int = 256  # messages per pull
    fetch_wait_s: float = 1.0  # a pull with nothing to deliver ends after this (an idle sink wakes once a second)
    ack_wait_s: float = 30.0  # JetStream redelivers a message unacked this long
    max_ack_pending: int = 4_000  # messages delivered and not yet acked, at most
    retry_initial_s: float = 0.05  # backoff between failed inserts: doubles up to retry_max_s
    retry_max_s: float = 5.0
    lag_interval_s: float = 1.0  # how often the lag gauges are refreshed
    stop_timeout_s: float = 10.0  # a stop flushes what it holds for at most this long
    dead_letter_max_bytes: int = 64 * MiB
    delay_samples: int = 100_000  # recent journal→history delays kept for percentiles

    def __post_init__(self) -> None:
        for name in ("batch_max_rows", "batch_max_messages", "fetch_batch", "max_ack_pending", "delay_samples"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SinkConfig.{name} must be positive")
        if self.max_ack_pending < self.batch_max_messages:
            raise ValueError("SinkConfig.max_ack_pending must be ≥ batch_max_messages (a batch is acked at once)")


class SinkMetrics:
    """Prometheus metrics of the history sink and its follower. Pass a fresh
    CollectorRegistry in tests."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.lag_messages = Gauge(
            "lotwise_history_lag_messages", "Journal messages not yet in history (unacked)", registry=registry
        )
        self.stream_position = Gauge(
            "lotwise_history_stream_position", "Last position of the journal stream", registry=registry
        )
        self.acked_position = Gauge(
            "lotwise_history_acked_position", "Journal position up to which history has everything", registry=registry
        )
        self.movements = Counter("lotwise_history_movements_inserted", "Movements inserted", registry=registry)
        self.batches = Counter("lotwise_history_batches_inserted", "Batches inserted", registry=registry)
        self.duplicates = Counter(
            "lotwise_history_duplicates_skipped", "Redelivered movements already stored", registry=registry
        )
        self.failures = Counter("lotwise_history_insert_failures", "Failed insert attempts", registry=registry)
        self.dead_letters = Counter(
            "lotwise_history_dead_letters", "Messages sent to the dead letters", registry=registry
        )
        self.delay = Histogram(
            "lotwise_history_delay_seconds",
            "From journal append to acknowledged in history",
            buckets=_DELAY_BUCKETS_S,
            registry=registry,
        )
        self.insert_seconds = Histogram(
            "lotwise_history_insert_seconds",
            "Duration of one batch insert",
            buckets=_DELAY_BUCKETS_S,
            registry=registry,
        )


@functools.cache
def default_sink_metrics() -> SinkMetrics:
    """The process-wide sink metrics on prometheus_client's default registry (created once:
    several engines in one process, as in tests, share them)."""
    return SinkMetrics(REGISTRY)


def batch_token(stream: str, positions: Iterable[int]) -> str:
    """Names a batch by its journal positions: equal only for a retry of the very same batch."""
    ordered = sorted(positions)
    digest = hashlib.blake2b(digest_size=12)
    for position in ordered:
        digest.update(position.to_bytes(8, "big"))
    return f"{stream}:{ordered[0]}-{ordered[-1]}:{digest.hexdigest()}"


def history_batch(stream: str, entries: tuple[FollowedEntry, ...]) -> HistoryBatch:
    """The entries' movements as history records, and the newest catalog entry of each SKU
    they carry; raises EntryRejected for the first entry with a movement no row can hold."""
    from engine.domain.shard import PutSku

    records: list[HistoryRecord] = []
    skus: dict[str, Sku] = {}
    skus_at_ms = 0
    for followed in entries:
        entry = followed.entry
        reason = next((r for r in map(unrepresentable, entry.movements) if r), "")
        if reason:
            raise EntryRejected(followed.position, reason)
        records.extend(HistoryRecord(entry.shard, entry.batch_seq, followed.position, m) for m in entry.movements)
        for op in entry.ops:
            if isinstance(op, PutSku) and entry.now_ms >= skus_at_ms:
                skus[op.sku.sku] = op.sku
                skus_at_ms = entry.now_ms
    token = batch_token(stream, (e.position for e in entries))
    redelivered = any(e.redelivered for e in entries)
    return HistoryBatch(tuple(records), tuple(skus.values()), token, skus_at_ms, redelivered)


class HistoryFeed:
    """The history sink as a FollowerSink: one insert per journal batch the follower hands it."""

    name = "history sink"

    def __init__(self, store: HistoryStore, metrics: SinkMetrics, stream: str) -> None:
        self._store = store
        self.metrics = metrics
        self._stream = stream  # the journal's: part of every insert's deduplication token
        self.inserted_movements = 0

    async def apply(self, entries: tuple[FollowedEntry, ...]) -> None:
        if not entries:
            return
        batch = history_batch(self._stream, entries)
        if not batch.records and not batch.skus:
            return
        started = time.perf_counter()
        # Redelivered messages may be stored already (a sink died between insert and ack):
        # the store skips those journal batches, so nothing is counted twice.
        written = await self._store.insert(batch)
        self.metrics.insert_seconds.observe(time.perf_counter() - started)
        self.metrics.batches.inc()
        self.metrics.movements.inc(written)
        self.metrics.duplicates.inc(len(batch.records) - written)
        self.inserted_movements += written
        redelivered = sum(e.redelivered for e in entries)
        if redelivered:
            log.info(
                "redelivered journal batches inserted",
                messages=redelivered,
                skipped_movements=len(batch.records) - written,
            )
