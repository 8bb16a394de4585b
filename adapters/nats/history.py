"""The NATS half of the history sink: the journal follower feeding history (DESIGN.md §8, §9).

The history sink is two parts: adapters.clickhouse.sink.HistoryFeed turns journal batches
into history inserts; the journal follower (adapters.nats.follower) is the durable
consumer that batches, retries, pauses, dead-letters and reports lag. `HistorySink` is the
two joined, with the history sink's own defaults (consumer `lotwise-history`, batches of at
most 20,000 movements, 1,000 messages or 200 ms).
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
        super().__init__(
            link, self.feed, FollowerConfig(**(config or SinkConfig()).follower_bounds()), sink_metrics, decode
        )
        self.metrics: SinkMetrics = sink_metrics

    @property
    def inserted_movements(self) -> int:
        return self.feed.inserted_movements
