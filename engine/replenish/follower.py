"""The replenishment trigger: a FollowerSink of the journal (adapters/nats/follower.py, its
own durable consumer), off the order path.

A consumption (anything issued to `@customer`) or a receipt moves a pair's position: the
pair is recomputed, so crossing the reorder point raises a suggestion within a second of
the scan. A batch's pairs are de-duplicated and recomputed with bounded concurrency; the
batch is acknowledged once every pair's suggestion is stored (a failure leaves it
unacknowledged and the follower retries it). Today's consumption and supplier receipts
are noted once per journal position, so a redelivered batch is not counted twice. Gifts
(an issue at unit price 0) are counted for data health.
"""

from __future__ import annotations

import asyncio
import functools
import time
from decimal import Decimal, InvalidOperation

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from engine.domain.model import External, Movement
from engine.domain.ports import FollowedEntry
from engine.replenish.service import ReplenishService

log = structlog.get_logger("lotwise.replenish.follower")

SINK_NAME = "replenishment"
MAX_PAIRS_PER_BATCH = 5_000  # pairs recomputed per applied batch, at most (the rest: next schedule)
_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ReplenishFollowerMetrics:
    """The follower's own gauges (FollowerMetrics) and the trigger's counters."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.lag_messages = Gauge(
            "lotwise_replenish_lag_messages", "Journal messages not yet applied", registry=registry
        )
        self.stream_position = Gauge("lotwise_replenish_stream_position", "Journal's last position", registry=registry)
        self.acked_position = Gauge("lotwise_replenish_acked_position", "Applied up to here", registry=registry)
        self.failures = Counter("lotwise_replenish_apply_failures", "Failed applies (retried)", registry=registry)
        self.dead_letters = Counter(
            "lotwise_replenish_dead_letters", "Journal messages dead-lettered", registry=registry
        )
        self.delay = Histogram(
            "lotwise_replenish_delay_seconds", "Journal append → applied", buckets=_BUCKETS_S, registry=registry
        )
        self.recomputed = Counter(
            "lotwise_replenish_pairs_recomputed", "Pairs recomputed by the trigger", registry=registry
        )
        self.recompute_seconds = Histogram(
            "lotwise_replenish_recompute_seconds", "One pair's recompute", buckets=_BUCKETS_S, registry=registry
        )


def _is_zero(text: str) -> bool:
    try:
        return bool(text) and Decimal(text) == 0
    except InvalidOperation:
        return False


class ReplenishTrigger:
    """engine.domain.ports.FollowerSink: recompute the pairs a batch moved."""

    def __init__(
        self, service: ReplenishService, metrics: ReplenishFollowerMetrics | None = None, concurrency: int = 8
    ) -> None:
        if concurrency <= 0:
            raise ValueError("concurrency must be positive")
        self.service = service
        self.metrics = metrics
        self._limit = asyncio.Semaphore(concurrency)
        self._noted_upto = 0  # journal positions up to here were counted already

    @property
    def name(self) -> str:
        return SINK_NAME

    async def apply(self, entries: tuple[FollowedEntry, ...]) -> None:
        dirty: dict[tuple[str, str], None] = {}
        for followed in entries:
            fresh = followed.position > self._noted_upto
            for m in followed.entry.movements:
                if self._moves_position(m, fresh):
                    dirty.setdefault((m.sku, m.site), None)
            if fresh:
                self._note_gifts(followed)
        pairs = list(dirty)[:MAX_PAIRS_PER_BATCH]
        if len(dirty) > len(pairs):
            log.warning("trigger batch over its bound; the rest waits for the schedule", pairs=len(dirty))
        await asyncio.gather(*(self._recompute(sku, site) for sku, site in pairs))
        if entries:
            self._noted_upto = max(self._noted_upto, *(e.position for e in entries))

    def _moves_position(self, m: Movement, fresh: bool) -> bool:
        if m.dst == External.CUSTOMER:
            if fresh:
                self.service.note_consumed(m.sku, m.site, m.qty, m.at_ms)
            return True
        if m.src == External.SUPPLIER:
            if fresh:
                self.service.note_received(m.sku, m.site, m.qty)
            return True
        return m.kind.value in ("receive", "adjust", "discrepancy", "expire")

    def _note_gifts(self, followed: FollowedEntry) -> None:
        for op in followed.entry.ops:
            finance = getattr(op, "finance", None)
            if finance is None or type(op).__name__ not in ("Consume", "Commit", "Sell"):
                continue
            if _is_zero(finance.unit_price):
                sku, site = getattr(op, "sku", ""), getattr(op, "site", "")
                if isinstance(sku, str) and isinstance(site, str) and sku and site:
                    self.service.note_gift(sku, site, with_tax=bool(finance.tax_rate))

    async def _recompute(self, sku: str, site: str) -> None:
        async with self._limit:
            started = time.perf_counter()
            await self.service.recompute(sku, site, "journal")
            if self.metrics is not None:
                self.metrics.recomputed.inc()
                self.metrics.recompute_seconds.observe(time.perf_counter() - started)


@functools.cache
def default_metrics() -> ReplenishFollowerMetrics:
    """The process-wide metrics on prometheus_client's default registry (created once)."""
    return ReplenishFollowerMetrics(REGISTRY)
