"""The replenishment trigger: a FollowerSink of the journal (adapters/nats/follower.py, its
own durable consumer), off the order path.

A consumption (anything issued to `@customer`) or a receipt moves a pair's position: the
pair is recomputed, so crossing the reorder point raises a suggestion within a second of
the scan. A batch's pairs are de-duplicated and recomputed with bounded concurrency; the
batch is acknowledged once every pair's suggestion is stored (a failure leaves it
unacknowledged and the follower retries it). Today's consumption and supplier receipts
are noted once per journal position, so a redelivered batch is not counted twice. Gifts
(an issue at unit price 0) are counted for data health.

Settling (`settle_s` > 0, the engine's default): the position is read from the cells, which
are ahead of this follower — a scan is in the cells before its journal entry reaches us. A
recompute started right after one scan of a quick run of scans would pair the cells' newest
position with a demand that lacks the later scans, and the next batch would store a second
version from the rest of the demand a moment later (a new pair showed v1 from 3 units and v2
from 9 ~180 ms apart). So a moved pair is recomputed once its scans have been quiet for
`settle_s` and the follower has caught up with the journal (the newest batch had nothing
pending behind it: a follower that lags by more than the quiet period would otherwise settle
before the last scans reach it) — at most `max_wait_s` after the first move — in the
background: the batch is
acknowledged once its demand is noted, and the scheduled full recompute covers a crash in
between. At most `max_settling` pairs wait; beyond that a batch recomputes its pairs at once.

Settling costs one loop for all pairs, not a task and a timer per moved pair: it wakes when the
next pair may be settled, and never before the next batch may start.

Every movement also goes to the service's floors under the pairs' positions
(engine.replenish.floor), in journal order, so a moved pair is screened without reading the
cells (ReplenishService.recompute_many).

Batches (issue 12 item 10): settled pairs are recomputed together, at most `batch_pairs` in one
ReplenishService.recompute_many — their daily demand, returns, stockout days and data health
read in one aggregated query per kind for all of them, not three or four per pair — and at
most one batch every `min_batch_interval_s`: pairs that settle while a batch waits or runs
join the next one (a pair is in a batch once however often it moved), so the trigger
recomputes at most batch_pairs / min_batch_interval_s pairs a second whatever the order rate.
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
from engine.domain.statuses import DEFAULT_DICTIONARY, StatusDictionary
from engine.replenish.service import ReplenishService

log = structlog.get_logger("lotwise.replenish.follower")

SINK_NAME = "replenishment"
MAX_PAIRS_PER_BATCH = 5_000  # pairs recomputed per applied batch, at most (the rest: next schedule)
SETTLE_S = 0.15  # the engine's quiet period before a moved pair is recomputed
MAX_WAIT_S = 0.5  # a pair that keeps moving is recomputed at least this often
MAX_SETTLING = 20_000  # pairs waiting to settle, at most
BATCH_PAIRS = 256  # pairs recomputed together (one aggregated read per kind), at most
MIN_BATCH_INTERVAL_S = 0.05  # batches start at most this often: ≤ 5,120 recomputes/s
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
            "lotwise_replenish_recompute_seconds",
            "One pair's recompute (its batch's duration)",
            buckets=_BUCKETS_S,
            registry=registry,
        )


def _is_zero(text: str) -> bool:
    try:
        return bool(text) and Decimal(text) == 0
    except InvalidOperation:
        return False


class ReplenishTrigger:
    """engine.domain.ports.FollowerSink: recompute the pairs a batch moved."""

    def __init__(
        self,
        service: ReplenishService,
        metrics: ReplenishFollowerMetrics | None = None,
        concurrency: int = 8,
        *,
        settle_s: float = 0.0,
        max_wait_s: float = MAX_WAIT_S,
        max_settling: int = MAX_SETTLING,
        batch_pairs: int = BATCH_PAIRS,
        min_batch_interval_s: float = MIN_BATCH_INTERVAL_S,
        statuses: StatusDictionary | None = DEFAULT_DICTIONARY,
    ) -> None:
        """`statuses`: the cells' status dictionary, for the floors under the positions (None:
        no floors, every moved pair's position is read from the cells)."""
        if concurrency <= 0:
            raise ValueError("concurrency must be positive")
        if settle_s < 0 or max_wait_s < settle_s or max_settling <= 0:
            raise ValueError("need 0 ≤ settle_s ≤ max_wait_s and max_settling > 0")
        if batch_pairs <= 0 or not 0 <= min_batch_interval_s <= 10:
            raise ValueError("need batch_pairs > 0 and 0 ≤ min_batch_interval_s ≤ 10")
        self.service = service
        self.metrics = metrics
        self.settle_s = settle_s
        self.max_wait_s = max_wait_s
        self.max_settling = max_settling
        self.concurrency = concurrency
        self.batch_pairs = batch_pairs
        self.min_batch_interval_s = min_batch_interval_s
        self._last_batch = 0.0
        self._noted_upto = 0  # journal positions up to here were counted already
        # settling pair → [when it first moved, when it last moved] (monotonic s), in first-move order
        self._moved: dict[tuple[str, str], list[float]] = {}
        self._behind = False  # the newest batch had journal messages pending behind it
        self._settler: asyncio.Task[None] | None = None  # the one settling loop, while pairs settle
        if statuses is not None:
            service.follow_positions(statuses)  # every movement goes to the floors under the positions

    @property
    def name(self) -> str:
        return SINK_NAME

    async def apply(self, entries: tuple[FollowedEntry, ...]) -> None:
        dirty: dict[tuple[str, str], None] = {}
        for followed in entries:
            fresh = followed.position > self._noted_upto
            for m in followed.entry.movements:
                self.service.note_movement(m, fresh)
                if self._moves_position(m, fresh):
                    dirty.setdefault((m.sku, m.site), None)
            if fresh:
                self._note_gifts(followed)
        if entries:
            self._behind = max(entries, key=lambda e: e.position).behind > 0
        pairs = list(dirty)[:MAX_PAIRS_PER_BATCH]
        if len(dirty) > len(pairs):
            log.warning("trigger batch over its bound; the rest waits for the schedule", pairs=len(dirty))
        if self.settle_s > 0 and len(self._moved) + len(pairs) <= self.max_settling:
            for pair in pairs:
                self._settle(pair)
        else:
            for i in range(0, len(pairs), self.batch_pairs):
                failed = [r for r in await self._recompute(pairs[i : i + self.batch_pairs]) if r is not None]
                if failed:
                    raise failed[0]  # the batch stays unacknowledged: the follower retries it
        if entries:
            self._noted_upto = max(self._noted_upto, *(e.position for e in entries))

    def _settle(self, pair: tuple[str, str]) -> None:
        """Recompute `pair` once it has not moved for `settle_s` (one settling loop for all)."""
        now = time.monotonic()
        moved = self._moved.get(pair)
        if moved is None:
            self._moved[pair] = [now, now]
        else:
            moved[1] = now
        if self._settler is None:
            self._settler = asyncio.get_running_loop().create_task(self._settling(), name="replenish-settle")

    def _due(self, now: float) -> tuple[list[tuple[str, str]], float]:
        """The pairs settled by now, and how long until the next one may be (one pass)."""
        due: list[tuple[str, str]] = []
        wake = self.max_wait_s
        for pair, (first, last) in self._moved.items():
            quiet_at = last + self.settle_s
            if (now >= quiet_at and not self._behind) or now - first >= self.max_wait_s:
                due.append(pair)
            else:
                at = quiet_at if now < quiet_at else now + self.settle_s / 4  # behind: look again soon
                wake = min(wake, min(at, first + self.max_wait_s) - now)
        return due, wake

    async def _settling(self) -> None:
        """While pairs settle: wake when the next may be settled (never before the next batch
        may start), recompute the settled ones together, at most `batch_pairs` at a time."""
        try:
            while self._moved:
                now = time.monotonic()
                due, wake = self._due(now)
                next_batch = self._last_batch + self.min_batch_interval_s - now
                if not due or next_batch > 0:
                    await asyncio.sleep(max(wake if not due else 0.0, next_batch, 0.001))
                    continue  # pairs moving meanwhile join this batch
                part = due[: self.batch_pairs]
                for pair in part:
                    del self._moved[pair]  # a move from here on starts a new wait (this recompute may miss it)
                self._last_batch = time.monotonic()
                try:
                    results = await self._recompute(part)
                except Exception as exc:  # the next move or the scheduled recompute tries again
                    results = [exc] * len(part)
                for pair, failed in zip(part, results, strict=True):
                    if failed is not None:
                        self._failed(pair, failed)
        finally:
            self._settler = None

    def _failed(self, pair: tuple[str, str], exc: Exception) -> None:
        if self.metrics is not None:
            self.metrics.failures.inc()
        log.warning("pair not recomputed", sku=pair[0], site=pair[1], error=f"{type(exc).__name__}: {exc}")

    async def idle(self) -> None:
        """Wait until no pair is settling (tests, and a clean stop)."""
        while self._settler is not None:
            await asyncio.gather(self._settler, return_exceptions=True)

    async def close(self) -> None:
        """Stop waiting: the pairs still settling are left to the scheduled recompute."""
        settler = self._settler
        if settler is not None:
            settler.cancel()
            await asyncio.gather(settler, return_exceptions=True)
        self._moved.clear()

    def _moves_position(self, m: Movement, fresh: bool) -> bool:
        if m.dst == External.CUSTOMER:
            if fresh:
                self.service.note_consumed(m.sku, m.site, m.qty, m.at_ms)
            return True
        if m.src == External.SUPPLIER:
            if fresh:
                self.service.note_received(m.sku, m.site, m.qty)
            return True
        if m.kind.value in ("receive", "adjust", "discrepancy", "expire"):
            self.service.forget_days(m.sku, m.site)  # e.g. a customer's return: its history changed
            return True
        return False

    def _note_gifts(self, followed: FollowedEntry) -> None:
        for op in followed.entry.ops:
            finance = getattr(op, "finance", None)
            if finance is None or type(op).__name__ not in ("Consume", "Commit", "Sell"):
                continue
            if _is_zero(finance.unit_price):
                sku, site = getattr(op, "sku", ""), getattr(op, "site", "")
                if isinstance(sku, str) and isinstance(site, str) and sku and site:
                    self.service.note_gift(sku, site, with_tax=bool(finance.tax_rate))

    async def _recompute(self, pairs: list[tuple[str, str]]) -> list[Exception | None]:
        """One batch: per pair None once its suggestion is stored, else what stopped it."""
        started = time.perf_counter()
        results = await self.service.recompute_many(pairs, "journal", concurrency=self.concurrency)
        elapsed = time.perf_counter() - started
        out: list[Exception | None] = [r if isinstance(r, Exception) else None for r in results]
        if self.metrics is not None:
            ok = sum(r is None for r in out)
            self.metrics.recomputed.inc(ok)
            for _ in range(ok):  # each pair waited for its whole batch
                self.metrics.recompute_seconds.observe(elapsed)
        return out


@functools.cache
def default_metrics() -> ReplenishFollowerMetrics:
    """The process-wide metrics on prometheus_client's default registry (created once)."""
    return ReplenishFollowerMetrics(REGISTRY)
