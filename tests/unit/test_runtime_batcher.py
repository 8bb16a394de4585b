"""The micro-batcher: bounded, ordered, deadline-aware (DESIGN.md §7)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from engine.domain.errors import DeadlineExceeded, Overloaded, Unavailable
from engine.runtime.batcher import BatchLimits, MicroBatcher
from engine.runtime.metrics import RuntimeMetrics


class RecordingShard:
    """A shard stand-in that records every batch and answers each op with itself."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.batches: list[list[Any]] = []
        self.delay_s = delay_s
        self.fail = fail
        self.gate: asyncio.Event | None = None

    async def send(self, ops: list[Any]) -> list[Any]:
        self.batches.append(list(ops))
        if self.gate is not None:
            await self.gate.wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise ConnectionError("shard process died")
        return [("done", op) for op in ops]


async def test_idle_batcher_sends_at_once() -> None:
    shard = RecordingShard()
    batcher = MicroBatcher("s", shard.send, BatchLimits(window_ms=500))
    start = time.monotonic()
    assert await batcher.call("a") == ("done", "a")
    assert time.monotonic() - start < 0.25  # no window wait when the shard is idle
    await batcher.close()


async def test_batches_grow_under_load_and_keep_order() -> None:
    shard = RecordingShard(delay_s=0.01)
    batcher = MicroBatcher("s", shard.send, BatchLimits(max_batch=16, max_in_flight=1))
    results = await asyncio.gather(*(batcher.call(i) for i in range(100)))
    assert results == [("done", i) for i in range(100)]
    assert max(len(b) for b in shard.batches) == 16
    assert len(shard.batches) < 100  # ops were batched, not sent one by one
    assert [op for b in shard.batches for op in b] == list(range(100))  # arrival order kept
    await batcher.close()


async def test_full_queue_answers_overloaded() -> None:
    shard = RecordingShard()
    shard.gate = asyncio.Event()
    batcher = MicroBatcher("s", shard.send, BatchLimits(max_batch=1, max_pending=3, max_in_flight=1))
    first = batcher.submit("in-flight")
    await asyncio.sleep(0.01)  # the first op is now in flight, the queue is empty
    queued = [batcher.submit(i) for i in range(3)]
    with pytest.raises(Overloaded) as err:
        batcher.submit("one too many")
    assert err.value.limit == 3
    shard.gate.set()
    assert await first == ("done", "in-flight")
    assert [await f for f in queued] == [("done", i) for i in range(3)]
    await batcher.close()


async def test_expired_deadline_is_never_sent() -> None:
    shard = RecordingShard()
    batcher = MicroBatcher("s", shard.send)
    with pytest.raises(DeadlineExceeded):
        await batcher.call("late", deadline=time.monotonic() - 1)
    assert await batcher.call("on time", deadline=time.monotonic() + 5) == ("done", "on time")
    assert shard.batches == [["on time"]]
    await batcher.close()


async def test_an_op_that_would_expire_during_the_shard_call_is_never_sent() -> None:
    shard = RecordingShard(delay_s=0.2)
    batcher = MicroBatcher("s", shard.send)
    for i in range(5):  # the shard answers in ~200 ms: the batcher learns it
        await batcher.call(i)
    assert batcher.call_s > 0.1
    with pytest.raises(DeadlineExceeded):
        await batcher.call("too short", deadline=time.monotonic() + 0.05)
    assert await batcher.call("long enough", deadline=time.monotonic() + 5) == ("done", "long enough")
    assert [op for b in shard.batches for op in b] == [0, 1, 2, 3, 4, "long enough"]
    await batcher.close()


async def test_shard_failure_fails_the_whole_batch_unavailable() -> None:
    shard = RecordingShard(fail=True)
    batcher = MicroBatcher("s", shard.send)
    with pytest.raises(Unavailable, match="shard s"):
        await batcher.call("x")
    await batcher.close()


async def test_closed_batcher_refuses_and_fails_pending() -> None:
    shard = RecordingShard()
    shard.gate = asyncio.Event()
    batcher = MicroBatcher("s", shard.send, BatchLimits(max_batch=1, max_in_flight=1))
    batcher.submit("in flight")
    await asyncio.sleep(0.01)
    pending = batcher.submit("pending")
    await batcher.close()
    with pytest.raises(Unavailable):
        await pending
    with pytest.raises(Unavailable):
        batcher.submit("after close")


async def test_every_refusal_of_the_batcher_is_counted_by_shard_and_reason_on_metrics() -> None:
    """Queue full, deadline, a failed shard call, a recovering shard: each a labelled counter."""
    registry = CollectorRegistry()
    metrics = RuntimeMetrics(registry)
    shard = RecordingShard()
    shard.gate = asyncio.Event()
    batcher = MicroBatcher(
        "s7", shard.send, BatchLimits(max_batch=1, max_pending=1, max_in_flight=1), metrics.observer()
    )
    first = batcher.submit("in-flight")
    await asyncio.sleep(0.01)
    late = batcher.submit("late", deadline=time.monotonic() + 0.001)
    with pytest.raises(Overloaded):
        batcher.submit("one too many")
    await asyncio.sleep(0.01)  # "late" is past its deadline by the time a slot frees
    shard.gate.set()
    await first
    with pytest.raises(DeadlineExceeded):
        await late
    shard.fail = True
    with pytest.raises(Unavailable):
        await batcher.call("dead")
    await batcher.close()

    async def recovering(ops: list[Any]) -> list[Any]:
        return [Unavailable("shard r is recovering (recovering)")] * len(ops)

    other = MicroBatcher("r", recovering, BatchLimits(), metrics.observer())
    assert isinstance(await other.call("x"), Unavailable)
    await other.close()

    text = generate_latest(registry).decode()
    for shard_name, reason in (("s7", "queue"), ("s7", "deadline"), ("s7", "unavailable"), ("r", "recovering")):
        assert f'lotwise_shard_refused_ops_total{{reason="{reason}",shard="{shard_name}"}} 1.0' in text, text


class Parts:
    """An op that carries several commands (as engine.domain.hold_parts.HoldParts does)."""

    def __init__(self, weight: int) -> None:
        self.weight = weight


async def test_an_op_of_many_commands_weighs_them_in_a_batch() -> None:
    shard = RecordingShard()
    shard.gate = asyncio.Event()
    batcher = MicroBatcher("s", shard.send, BatchLimits(max_batch=100, max_in_flight=1))
    first = batcher.submit("in flight")
    await asyncio.sleep(0.01)  # it left alone; the rest queue behind it
    heavy = [batcher.submit(Parts(40)) for _ in range(5)]
    plain = [batcher.submit(i) for i in range(30)]
    big = batcher.submit(Parts(150))  # more than a batch: it goes, alone
    shard.gate.set()
    await asyncio.gather(first, *heavy, *plain, big)
    weights = [sum(getattr(op, "weight", 1) for op in batch) for batch in shard.batches[1:]]
    assert weights == [80, 80, 70, 150]  # never past 100, but for an op heavier alone
