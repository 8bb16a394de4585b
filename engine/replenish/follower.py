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
    ) -> None:
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
        self._ready: dict[tuple[str, str], asyncio.Future[None]] = {}  # settled, waiting for a batch
        self._batcher: asyncio.Task[None] | None = None
        self._last_batch = 0.0
        self._noted_upto = 0  # journal positions up to here were counted already
        self._moved: dict[tuple[str, str], float] = {}  # settling pair → when it last moved
        self._behind = False  # the newest batch had journal messages pending behind it
        self._settling: dict[tuple[str, str], asyncio.Task[None]] = {}

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
        if entries:
            self._behind = max(entries, key=lambda e: e.position).behind > 0
        pairs = list(dirty)[:MAX_PAIRS_PER_BATCH]
        if len(dirty) > len(pairs):
            log.warning("trigger batch over its bound; the rest waits for the schedule", pairs=len(dirty))
        if self.settle_s > 0 and len(self._settling) + len(pairs) <= self.max_settling:
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
        """Recompute `pair` once it has not moved for `settle_s` (one waiting task per pair)."""
        self._moved[pair] = time.monotonic()
        if pair not in self._settling:
            self._settling[pair] = asyncio.get_running_loop().create_task(
                self._settled(pair), name=f"replenish-settle-{pair[0]}@{pair[1]}"
            )

    async def _settled(self, pair: tuple[str, str]) -> None:
        first = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                quiet_at = self._moved[pair] + self.settle_s
                if (now >= quiet_at and not self._behind) or now - first >= self.max_wait_s:
                    break
                wake = quiet_at if now < quiet_at else now + self.settle_s / 4  # behind: look again soon
                await asyncio.sleep(min(wake, first + self.max_wait_s) - now)
            del self._settling[pair]  # a move from here on starts a new wait (this recompute may miss it)
            self._moved.pop(pair, None)
            await self._in_batch(pair)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next move or the scheduled recompute tries again
            if self.metrics is not None:
                self.metrics.failures.inc()
            log.warning("pair not recomputed", sku=pair[0], site=pair[1], error=f"{type(exc).__name__}: {exc}")
        finally:
            if self._settling.get(pair) is asyncio.current_task():
                del self._settling[pair]

    async def _in_batch(self, pair: tuple[str, str]) -> None:
        """Recompute `pair` in the next batch (joining it if already waiting for one)."""
        loop = asyncio.get_running_loop()
        done = self._ready.get(pair)
        if done is None:
            done = self._ready[pair] = loop.create_future()
        if self._batcher is None:
            self._batcher = loop.create_task(self._batches(), name="replenish-batches")
        await done

    async def _batches(self) -> None:
        """Recompute the settled pairs, batch after batch, until none is left waiting."""
        try:
            while self._ready:
                wait = self._last_batch + self.min_batch_interval_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)  # pairs settling meanwhile join this batch
                part = dict(list(self._ready.items())[: self.batch_pairs])
                for pair in part:
                    del self._ready[pair]
                self._last_batch = time.monotonic()
                try:
                    results = await self._recompute(list(part))
                except Exception as exc:
                    results = [exc] * len(part)
                for done, failed in zip(part.values(), results, strict=True):
                    if done.done():
                        continue
                    if failed is None:
                        done.set_result(None)
                    else:
                        done.set_exception(failed)
        finally:
            self._batcher = None

    async def idle(self) -> None:
        """Wait until no pair is settling (tests, and a clean stop)."""
        while self._settling:
            await asyncio.gather(*list(self._settling.values()), return_exceptions=True)

    async def close(self) -> None:
        """Stop waiting: the pairs still settling are left to the scheduled recompute."""
        tasks = list(self._settling.values())
        if self._batcher is not None:
            tasks.append(self._batcher)
        for done in self._ready.values():
            done.cancel()
        self._ready.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._settling.clear()
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
