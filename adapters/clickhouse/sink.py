"""The history sink: journal stream → history store (DESIGN.md §8, §9, §12).

A durable JetStream pull consumer over every shard's subject, explicit acks. Journal
messages are decoded and buffered until a bound is reached (rows, messages or time),
then inserted as one batch and only then acknowledged: a message is acked only once its
movements are stored, so a crash anywhere loses nothing — unacked messages come back.

Never doubled, at three levels (the store's side: adapters.clickhouse.schema):
1. a retried insert (ClickHouse down, or its answer lost) carries the same
   `insert_deduplication_token` (a digest of the batch's content), so ClickHouse stores
   it once — in the table and in the roll-up views, which a second copy would inflate;
2. a message delivered again (a sink crashed between insert and ack, or an ack was
   lost) is a journal batch the store already has: the insert looks its (shard,
   batch_seq) up and skips it, so the views see each movement once;
3. `movements` is a ReplacingMergeTree keyed by (sku, site, seq) and every query reads
   it with FINAL: whatever slips through is still counted once.
(Why (sku, site, seq) as the row's identity and not (shard, batch_seq, index): seq is per
cell and gap-free, it names a movement wherever its cell lives — a pinned pair moves to
another shard — and it is the order the queries want; (shard, batch_seq) names the
journal message, which is what a redelivery repeats, so the redelivery check uses it.)

When the store is down the sink keeps its batch, retries with capped exponential
backoff, tells JetStream it is still working on the messages (so they are not
redelivered meanwhile) and fetches nothing more: it pauses, bounded, and catches up
when the store is back. Undecodable messages go to a dead-letter stream with their
reason and are acknowledged only after that (§12).

Lag = journal messages not yet acknowledged by the sink: a Prometheus gauge, and `lag()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import api
from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from adapters.nats.journal import JournalConfig, NatsLink, ensure_stream
from adapters.nats.pull import DurablePull, cancel_task, consumer_positions, finish_task, wait_until
from engine.domain.catalog import Sku
from engine.domain.history import HistoryBatch, HistoryRecord, unrepresentable
from engine.domain.ports import HistoryStore, JournalEntry

log = structlog.get_logger("lotwise.history.sink")

MiB = 1024 * 1024
_H_REASON = "Lotwise-Reason"
_H_STREAM_SEQ = "Lotwise-Stream-Seq"
_H_SUBJECT = "Lotwise-Subject"
_DELAY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True, slots=True)
class SinkConfig:
    """Bounds of the sink. A batch closes at whichever bound it reaches first."""

    consumer: str = "lotwise-history"  # the durable consumer's name (one per journal stream)
    batch_max_rows: int = 20_000  # movements per insert
    batch_max_messages: int = 1_000  # journal messages per insert
    batch_max_ms: float = 200.0  # how long a batch may wait to fill
    fetch_batch: int = 256  # messages per pull
    fetch_wait_s: float = 0.2  # a pull with nothing to deliver ends after this
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


def dead_letter_stream(journal: JournalConfig) -> str:
    return f"{journal.stream}_HISTORY_DLQ"


def dead_letter_subject(journal: JournalConfig) -> str:
    # Outside the journal's subject space: the journal stream must never capture it.
    return f"lotwise.dlq.history.{journal.stream}"


class SinkMetrics:
    """Prometheus metrics of the sink. Pass a fresh CollectorRegistry in tests."""

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


@dataclass(frozen=True, slots=True)
class SinkLag:
    stream_position: int  # the journal's last message
    acked_position: int  # every message up to here is in history
    pending_messages: int  # journal messages not yet acknowledged by the sink
    buffered_messages: int  # of which: held by this sink, waiting for their insert
    stalled: bool  # the last insert failed (the store is down): the sink is retrying


@dataclass(slots=True)
class _Batch:
    """What the sink holds between fetch and ack."""

    msgs: dict[int, Msg] = field(default_factory=dict)  # stream seq → its newest delivery
    records: list[HistoryRecord] = field(default_factory=list)
    redelivered: int = 0  # messages delivered before (a previous sink may have stored them)
    skus: dict[str, Sku] = field(default_factory=dict)
    skus_at_ms: int = 0
    opened: float = 0.0  # monotonic time of the first message
    acked: set[int] = field(default_factory=set)  # acked already (a flush that failed half-way)

    def due(self, config: SinkConfig, now: float) -> bool:
        if not self.msgs:
            return False
        return (
            len(self.records) >= config.batch_max_rows
            or len(self.msgs) >= config.batch_max_messages
            or (now - self.opened) * 1000 >= config.batch_max_ms
        )

    def token(self, stream: str) -> str:
        """Names this exact content: equal only for a retry of the very same batch."""
        digest = hashlib.blake2b(digest_size=12)
        for seq in sorted(self.msgs):
            digest.update(seq.to_bytes(8, "big"))
        return f"{stream}:{min(self.msgs)}-{max(self.msgs)}:{digest.hexdigest()}"


class HistorySink:
    """Feeds a HistoryStore from the journal; `await start()`, `lag()`, `await stop()`."""

    def __init__(
        self,
        link: NatsLink,
        store: HistoryStore,
        config: SinkConfig = SinkConfig(),
        metrics: SinkMetrics | None = None,
        decode: Callable[[bytes], JournalEntry] | None = None,
    ) -> None:
        from adapters.nats.codec import decode_entry

        self._link = link
        self._journal = link.config
        self._store = store
        self.config = config
        self.metrics = metrics or SinkMetrics(CollectorRegistry())
        self._decode = decode or decode_entry
        self._batch = _Batch()
        self._pull = DurablePull(
            link, link.config.stream, config.consumer, config.max_ack_pending, link.config.max_msg_size
        )
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._stalled = False
        self._next_lag_at = 0.0
        self.delays_s: deque[float] = deque(maxlen=config.delay_samples)
        self.inserted_movements = 0
        self.acked_messages = 0

    @property
    def consumer(self) -> str:
        return self.config.consumer

    @property
    def stream(self) -> str:
        return self._journal.stream

    # ---- lifecycle ----

    async def start(self) -> None:
        """Make sure the journal stream, the dead-letter stream and the durable consumer
        exist, then start consuming in the background."""
        from adapters.nats.journal import journal_stream_config

        _, js = await self._link.client()
        try:
            await js.stream_info(self.stream)
        except NotFoundError:  # the shards have not written yet: create it as they would
            await ensure_stream(js, journal_stream_config(self._journal))
        await ensure_stream(js, self._dead_letter_config())
        await js.add_consumer(self.stream, config=self._consumer_config(), timeout=self._journal.api_timeout_s)
        await self._pull.get()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"history-sink:{self.stream}")
        log.info("history sink started", stream=self.stream, consumer=self.consumer)

    async def stop(self) -> None:
        """Stop fetching, insert and ack what is held (bounded by stop_timeout_s; what does
        not make it stays unacked and is redelivered to the next sink)."""
        self._stopping.set()
        if not await finish_task(self._task, self.config.stop_timeout_s):
            log.warning("history sink stopped before its batch was stored; it will be redelivered")
        self._task = None
        await self._pull.close()
        log.info("history sink stopped", stream=self.stream, acked=self.acked_messages)

    async def abort(self) -> None:
        """Stop at once: no flush, no ack (what a crash looks like to JetStream)."""
        self._stopping.set()
        await cancel_task(self._task)
        self._task = None
        self._batch = _Batch()
        await self._pull.close()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ---- the loop ----

    async def _run(self) -> None:
        backoff_s = self.config.retry_initial_s
        while True:
            stopping = self._stopping.is_set()
            try:
                if not stopping:
                    await self._fill()
                if self._batch.msgs and (stopping or self._batch.due(self.config, time.monotonic())):
                    await self._flush()
                await self._refresh_lag()
                backoff_s = self.config.retry_initial_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS down, a bug: log, back off (bounded), keep going
                log.warning("history sink step failed", error=f"{type(exc).__name__}: {exc}", retry_in_s=backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self.config.retry_max_s)
            if stopping and not self._batch.msgs:
                return

    async def _fill(self) -> None:
        """One pull, for no more than the batch has room for; waits at most until the
        open batch is due."""
        batch, config = self._batch, self.config
        room = min(config.batch_max_messages - len(batch.msgs), config.fetch_batch)
        if room <= 0 or len(batch.records) >= config.batch_max_rows:
            return
        wait_s = config.fetch_wait_s
        if batch.msgs:
            wait_s = max(0.001, min(wait_s, config.batch_max_ms / 1000 - (time.monotonic() - batch.opened)))
        psub = await self._pull.get()
        try:
            msgs = await psub.fetch(batch=room, timeout=wait_s)
        except TimeoutError:
            return
        except nats.errors.TimeoutError:
            return
        for msg in msgs:
            await self._take(msg)

    async def _take(self, msg: Msg) -> None:
        meta = msg.metadata
        seq = meta.sequence.stream
        batch = self._batch
        if seq in batch.msgs:  # delivered again while we still hold it: keep the newest delivery
            batch.msgs[seq] = msg
            return
        try:
            entry = self._decode(msg.data)
        except Exception as exc:  # whatever the codec raises, the message is not an entry
            await self._dead_letter(msg, f"undecodable journal entry: {type(exc).__name__}: {exc}")
            return
        reasons = [r for r in (unrepresentable(m) for m in entry.movements) if r]
        if reasons:
            await self._dead_letter(msg, reasons[0])
            return
        if not batch.msgs:
            batch.opened = time.monotonic()
        batch.msgs[seq] = msg
        records = [HistoryRecord(entry.shard, entry.batch_seq, seq, m) for m in entry.movements]
        batch.records.extend(records)
        if meta.num_delivered > 1:
            batch.redelivered += 1
        self._take_catalog(entry)

    def _take_catalog(self, entry: JournalEntry) -> None:
        from engine.domain.shard import PutSku

        for op in entry.ops:
            if isinstance(op, PutSku) and entry.now_ms >= self._batch.skus_at_ms:
                self._batch.skus[op.sku.sku] = op.sku
                self._batch.skus_at_ms = entry.now_ms

    async def _flush(self) -> None:
        batch = self._batch
        if batch.records or batch.skus:
            out = HistoryBatch(
                tuple(batch.records), tuple(batch.skus.values()), batch.token(self.stream), batch.skus_at_ms
            )
            started = time.perf_counter()
            # Redelivered messages may be stored already (a sink died between insert and
            # ack): the store skips those journal batches, so nothing is counted twice.
            written = await self._retrying(lambda: self._store.insert(out))
            self.metrics.insert_seconds.observe(time.perf_counter() - started)
            self.metrics.batches.inc()
            self.metrics.movements.inc(written)
            self.metrics.duplicates.inc(len(batch.records) - written)
            self.inserted_movements += written
            if batch.redelivered:
                log.info(
                    "redelivered journal batches inserted",
                    messages=batch.redelivered,
                    skipped_movements=len(batch.records) - written,
                )
        await self._ack(batch)
        self._batch = _Batch()

    async def _retrying(self, call: Callable[[], Any]) -> Any:
        """Retry until the store answers; meanwhile keep the held messages from being
        redelivered. Bounded in memory (nothing more is fetched) and in backoff."""
        backoff_s = self.config.retry_initial_s
        last_progress = time.monotonic()
        attempt = 0
        while True:
            try:
                result = await call()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                self._stalled = True
                self.metrics.failures.inc()
                (log.warning if attempt == 1 or attempt % 20 == 0 else log.debug)(
                    "history insert failed; retrying",
                    attempt=attempt,
                    error=f"{type(exc).__name__}: {exc}",
                    held_messages=len(self._batch.msgs),
                    retry_in_s=backoff_s,
                )
                if self._stopping.is_set() and attempt >= 3:
                    raise
                if time.monotonic() - last_progress >= self.config.ack_wait_s / 3:
                    await self._in_progress()
                    last_progress = time.monotonic()
                await self._refresh_lag()
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self.config.retry_max_s)
                continue
            if self._stalled:
                log.info("history store is back; catching up", attempts=attempt + 1)
            self._stalled = False
            return result

    async def _ack(self, batch: _Batch) -> None:
        now_s = time.time()
        for seq, msg in batch.msgs.items():
            if seq in batch.acked:
                continue
            await msg.ack()
            batch.acked.add(seq)
            delay_s = max(0.0, now_s - msg.metadata.timestamp.timestamp())
            self.delays_s.append(delay_s)
            self.metrics.delay.observe(delay_s)
            self.acked_messages += 1
        nc, _ = await self._link.client()
        # Acks are buffered by the client: push them out now, so a crash right after this
        # does not make JetStream redeliver what is stored (harmless, but wasted work).
        await nc.flush(timeout=self._journal.api_timeout_s)

    async def _in_progress(self) -> None:
        with contextlib.suppress(Exception):
            for msg in self._batch.msgs.values():
                await msg.in_progress()

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        _, js = await self._link.client()
        seq = msg.metadata.sequence.stream
        headers = {_H_REASON: reason[:1_000], _H_STREAM_SEQ: str(seq), _H_SUBJECT: msg.subject}
        await js.publish(
            dead_letter_subject(self._journal), msg.data, headers=headers, timeout=self._journal.ack_timeout_s
        )
        await msg.term()  # only after the dead letter is stored: never silently dropped
        self.metrics.dead_letters.inc()
        log.error("journal message dead-lettered", stream=self.stream, position=seq, reason=reason)

    # ---- lag ----

    async def lag(self) -> SinkLag:
        """Where the journal is vs what history has acknowledged (asks the server)."""
        at = await consumer_positions(self._link, self.stream, self.consumer, self._journal.api_timeout_s)
        lag = SinkLag(
            stream_position=at.stream_position,
            acked_position=at.acked_position,
            pending_messages=at.pending_messages,
            buffered_messages=len(self._batch.msgs),
            stalled=self._stalled,
        )
        self.metrics.lag_messages.set(lag.pending_messages)
        self.metrics.stream_position.set(lag.stream_position)
        self.metrics.acked_position.set(lag.acked_position)
        return lag

    async def _refresh_lag(self) -> None:
        now = time.monotonic()
        if now < self._next_lag_at:
            return
        self._next_lag_at = now + self.config.lag_interval_s
        with contextlib.suppress(Exception):  # the gauges are best effort; lag() raises
            await self.lag()

    async def wait_caught_up(self, timeout_s: float = 30.0, poll_s: float = 0.05) -> SinkLag:
        """Until every journal message so far is in history (tests, the bench, ops)."""
        return await wait_until(
            self.lag,
            lambda lag: lag.pending_messages == 0 and lag.buffered_messages == 0,
            timeout_s,
            poll_s,
            "history sink",
        )

    # ---- NATS plumbing ----

    def _consumer_config(self) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            name=self.consumer,
            durable_name=self.consumer,
            description="Lotwise history sink",
            filter_subject=f"{self._journal.subject_prefix}.>",
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.config.ack_wait_s,
            max_deliver=-1,  # redeliver until stored: history must not miss a batch
            max_ack_pending=self.config.max_ack_pending,
            max_waiting=16,
            num_replicas=self._journal.replicas,
        )

    def _dead_letter_config(self) -> api.StreamConfig:
        return api.StreamConfig(
            name=dead_letter_stream(self._journal),
            description="Journal messages the history sink could not use, with the reason",
            subjects=[dead_letter_subject(self._journal)],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            # Full: the next dead letter is refused, the sink retries and its lag grows
            # (alerting) — older letters are never dropped silently (DESIGN §12).
            discard=api.DiscardPolicy.NEW,
            max_bytes=self.config.dead_letter_max_bytes,
            max_msg_size=self._journal.max_msg_size,
            num_replicas=self._journal.replicas,
        )


async def delete_consumer(link: NatsLink, consumer: str) -> None:
    """Forget the sink's position (history will be fed again from the journal's start)."""
    _, js = await link.client()
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(link.config.stream, consumer)
