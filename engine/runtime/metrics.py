"""Prometheus metrics of the write path: how batches form and how long shard calls take."""

from __future__ import annotations

import functools
from collections.abc import Callable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_CALL_BUCKETS_S = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class RuntimeMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.batch_ops = Histogram(
            "lotwise_shard_batch_ops", "ops per shard call (micro-batch size)", buckets=_BATCH_SIZES, registry=registry
        )
        self.call_seconds = Histogram(
            "lotwise_shard_call_duration_seconds",
            "round trip of one shard call (batch), gateway side",
            buckets=_CALL_BUCKETS_S,
            registry=registry,
        )
        self.failed_batches = Counter(
            "lotwise_shard_failed_batches", "shard calls that failed (answered UNAVAILABLE)", registry=registry
        )
        self.refused_ops = Counter(
            "lotwise_shard_refused_ops",
            "ops the gateway answered with a refusal instead of the shard's answer, by shard and reason "
            "(queue: RESOURCE_EXHAUSTED; deadline: DEADLINE_EXCEEDED, never sent; "
            "unavailable, recovering: UNAVAILABLE)",
            ("shard", "reason"),
            registry=registry,
        )
        self.shard_recoveries = Gauge(
            "lotwise_shard_recoveries",
            "recoveries of a shard since its data dir was made (crashed processes replaced, rebuilds)",
            ["shard"],
            registry=registry,
        )

    def observer(self) -> Callable[[int, float, bool], None]:
        """What MicroBatcher tells of each shard call (and, as a RefusalObserver, of refusals)."""
        return _Observer(self)


class _Observer:
    def __init__(self, metrics: RuntimeMetrics) -> None:
        self._metrics = metrics

    def __call__(self, ops: int, seconds: float, ok: bool) -> None:
        self._metrics.batch_ops.observe(ops)
        self._metrics.call_seconds.observe(seconds)
        if not ok:
            self._metrics.failed_batches.inc()

    def refused(self, shard: str, reason: str, ops: int) -> None:
        self._metrics.refused_ops.labels(shard, reason).inc(ops)


@functools.cache
def default_runtime_metrics() -> RuntimeMetrics:
    return RuntimeMetrics(REGISTRY)
