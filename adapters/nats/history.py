"""The NATS half of the history sink: the journal follower feeding history (DESIGN.md §8, §9).

The history sink is two parts: adapters.clickhouse.sink.HistoryFeed turns journal batches
into history inserts; the journal follower (adapters.nats.follower) is the durable
consumer that batches, retries, pauses, dead-letters and reports lag. `HistorySink` is the
two joined, with the history sink's own defaults (consumer `lotwise-history`, batches of at
most 20,000 movements, 1,000 messages or 1 s).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry

from adapters.clickhouse.sink import DEAD_LETTER_TAG, HistoryFeed, SinkConfig, SinkMetrics
from adapters.nats.follower import FollowerConfig, JournalFollower
from adapters.nats.journal import JournalConfig, NatsLink
from engine.domain.ports import HistoryStore, JournalEntry


def dead_letter_stream(journal: JournalConfig) -> str:
    return f"{journal.stream}_{DEAD_LETTER_TAG.upper()}_DLQ"


def dead_letter_subject(journal: JournalConfig) -> str:
    return f"lotwise.dlq.{DEAD_LETTER_TAG}.{journal.stream}"


def follower_config(config: SinkConfig) -> FollowerConfig:
    """The follower's bounds from the history sink's: a history batch is bounded by its
    rows, i.e. its movements."""
    return FollowerConfig(
        consumer=config.consumer,
        dead_letter_tag=DEAD_LETTER_TAG,
        description="Lotwise history sink",
        batch_max_movements=config.batch_max_rows,
        batch_max_messages=config.batch_max_messages,
        batch_max_ms=config.batch_max_ms,
        busy_batch_max_ms=config.busy_batch_max_ms,
        fetch_batch=config.fetch_batch,
        fetch_wait_s=config.fetch_wait_s,
        ack_wait_s=config.ack_wait_s,
        max_ack_pending=config.max_ack_pending,
        retry_initial_s=config.retry_initial_s,
        retry_max_s=config.retry_max_s,
        lag_interval_s=config.lag_interval_s,
        stop_timeout_s=config.stop_timeout_s,
        dead_letter_max_bytes=config.dead_letter_max_bytes,
        delay_samples=config.delay_samples,
    )


class HistorySink(JournalFollower):
    """Feeds a HistoryStore from the journal; `await start()`, `lag()`, `await stop()`."""

    def __init__(
        self,
        link: NatsLink,
        store: HistoryStore,
        config: SinkConfig | None = None,
        metrics: SinkMetrics | None = None,
        decode: Callable[[bytes], JournalEntry] | None = None,
    ) -> None:
        sink_metrics = metrics or SinkMetrics(CollectorRegistry())
        self.feed = HistoryFeed(store, sink_metrics, link.config.stream)
        super().__init__(link, self.feed, follower_config(config or SinkConfig()), sink_metrics, decode)
        self.metrics: SinkMetrics = sink_metrics

    @property
    def inserted_movements(self) -> int:
        return self.feed.inserted_movements
