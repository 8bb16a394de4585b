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
        self.shard_recoveries = Gauge(
            "lotwise_shard_recoveries",
            "recoveries of a shard since its data dir was made (crashed processes replaced, rebuilds)",
            ["shard"],
            registry=registry,
        )

    def observer(self) -> Callable[[int, float, bool], None]:
        def observe(ops: int, seconds: float, ok: bool) -> None:
            self.batch_ops.observe(ops)
            self.call_seconds.observe(seconds)
            if not ok:
                self.failed_batches.inc()

        return observe


@functools.cache
def default_runtime_metrics() -> RuntimeMetrics:
    return RuntimeMetrics(REGISTRY)
