"""The client's concurrency limit (issue 19): attempts beyond a per-channel limit, AIMD on
first-try latency, are refused as `Throttled` before they wait anywhere in the engine —
reserves first, commits and releases never — and wait for a slot within their deadline."""

from __future__ import annotations

import asyncio
import collections
import time

import grpc
import pytest
from google.rpc import status_pb2

from engine.api.admission import BOUND_WIRE
from engine.api.autobatch import CallFailed
from engine.api.client import AdaptiveThrottle, ConcurrencyLimit, LotwiseClient, RetryPolicy, Throttled, limit_answer
from engine.api.errors import overload_status
from engine.domain.errors import Overloaded


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_attempts_beyond_the_limit_are_refused_at_once_and_counted() -> None:
    limit = ConcurrencyLimit(initial=4, min_limit=2, clock=FakeClock())
    starts = [limit.try_acquire() for _ in range(4)]
    assert None not in starts
    assert limit.try_acquire() is None
    assert limit.throttled == 1
    assert limit.in_flight == 4
    limit.release(starts[0])
    assert limit.try_acquire() is not None  # a freed slot is taken again


def test_critical_attempts_pass_a_full_limit_and_take_slots_from_reserves() -> None:
    limit = ConcurrencyLimit(initial=4, min_limit=2, clock=FakeClock())
    for _ in range(6):
        assert limit.try_acquire(critical=True) is not None  # commits: never refused
    assert limit.in_flight == 6
    assert limit.try_acquire() is None  # reserves wait for them
    assert limit.throttled == 1


def test_a_batch_larger_than_the_limit_passes_alone_and_only_alone() -> None:
    limit = ConcurrencyLimit(initial=4, min_limit=2, clock=FakeClock())
    started = limit.try_acquire(cost=8)
    assert started is not None  # nothing else in flight: never stuck
    assert limit.try_acquire() is None
    limit.release(started, cost=8, answer="other")
    assert limit.in_flight == 0
    assert limit.limit == 4
    assert limit.try_acquire(cost=3) is not None
    assert limit.try_acquire(cost=2) is None  # 3 + 2 > 4
    assert limit.throttled == 1 + 2  # commands, as the door counts them


def test_answers_within_the_target_grow_the_limit_about_one_per_round_trip() -> None:
    clock = FakeClock()
    limit = ConcurrencyLimit(initial=10, min_limit=2, latency_target_s=0.1, clock=clock)
    in_flight: collections.deque[float] = collections.deque()
    for _ in range(150):  # a full channel: every answer is followed by new attempts at once
        while (started := limit.try_acquire()) is not None:
            in_flight.append(started)
        clock.now += 0.002
        limit.release(in_flight.popleft())
    # +1/limit per answer: limit² grows by 2 per answer, 10² + 2·150 = 20², ~+1 per round trip
    assert 19 <= limit.limit <= 20.5


def test_an_idle_channel_does_not_grow_its_limit() -> None:
    clock = FakeClock()
    limit = ConcurrencyLimit(initial=10, min_limit=2, clock=clock)
    for _ in range(1_000):
        started = limit.try_acquire()
        assert started is not None
        clock.now += 0.01
        limit.release(started)  # 1 in flight of 10: no evidence the engine takes more
    assert limit.limit == 10


def test_late_answers_and_refusals_shrink_it_at_most_once_per_target() -> None:
    clock = FakeClock()
    limit = ConcurrencyLimit(initial=100, min_limit=4, latency_target_s=0.1, backoff_ratio=0.5, clock=clock)
    starts = [limit.try_acquire() for _ in range(50)]
    clock.now += 0.3
    for started in starts:  # one round of late answers: one decrease, not fifty
        assert started is not None
        limit.release(started)
    assert limit.limit == 50
    clock.now += 0.11
    started = limit.try_acquire()
    assert started is not None
    limit.release(started, answer="overloaded")  # refused for load, however fast
    assert limit.limit == 25
    for _ in range(20):
        clock.now += 0.11
        started = limit.try_acquire()
        assert started is not None
        limit.release(started, answer="overloaded")
    assert limit.limit == 4  # never below min_limit


def test_answers_that_say_nothing_about_load_leave_it_as_it_is() -> None:
    clock = FakeClock()
    limit = ConcurrencyLimit(initial=8, min_limit=2, clock=clock)
    starts = [limit.try_acquire() for _ in range(8)]
    clock.now += 5.0  # a shard recovering: slow UNAVAILABLE answers
    for started in starts:
        assert started is not None
        limit.release(started, answer=limit_answer(grpc.StatusCode.UNAVAILABLE.value[0]))
    assert limit.limit == 8
    assert limit_answer(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]) == "overloaded"
    assert limit_answer(grpc.StatusCode.FAILED_PRECONDITION.value[0]) == "ok"  # answered by the engine


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0}, {"min_limit": 8, "initial": 4}, {"latency_target_s": 0}, {"backoff_ratio": 1.0}],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="min_limit"):
        ConcurrencyLimit(**kwargs)


async def test_the_client_refuses_beyond_its_limit_as_throttled_never_sending_it() -> None:
    sent = 0
    release = asyncio.Event()

    async def slow(deadline: float) -> str:
        nonlocal sent
        sent += 1
        await release.wait()
        return "ok"

    limit = ConcurrencyLimit(initial=4, min_limit=2)
    off = AdaptiveThrottle(k=0)
    no_retry = RetryPolicy(max_attempts=1)  # the refusal itself, not waited out
    async with LotwiseClient(
        "127.0.0.1:1", retry=no_retry, batching=None, throttle=off, concurrency_limit=limit
    ) as client:
        deadline = time.monotonic() + 5
        held = [asyncio.create_task(client._with_retries(slow, deadline)) for _ in range(4)]
        await asyncio.sleep(0.01)
        with pytest.raises(Throttled) as refused:
            await client._with_retries(slow, deadline)
        assert isinstance(refused.value, Overloaded)  # typed as the engine's refusal: back off, call again
        assert "concurrency limit" in str(refused.value)
        assert sent == 4
        # Commits and releases pass a full limit.
        commit = asyncio.create_task(client._with_retries(slow, deadline, throttled=False))
        await asyncio.sleep(0.01)
        assert sent == 5
        release.set()
        assert await asyncio.gather(*held, commit) == ["ok"] * 5
        assert limit.in_flight == 0
        assert limit.throttled == 1


async def test_an_overload_refusal_frees_the_slot_and_shrinks_the_limit() -> None:
    overloaded = overload_status("wait before the door", 150, bound=BOUND_WIRE, retry_delay_ms=1)
    status = status_pb2.Status.FromString(dict(overloaded.trailing_metadata)["grpc-status-details-bin"])

    async def refused(deadline: float) -> None:
        raise CallFailed(status)

    limit = ConcurrencyLimit(initial=8, min_limit=2)
    off = AdaptiveThrottle(k=0)
    no_retry = RetryPolicy(max_attempts=1)
    async with LotwiseClient(
        "127.0.0.1:1", retry=no_retry, batching=None, throttle=off, concurrency_limit=limit
    ) as client:
        with pytest.raises(Overloaded) as shed:
            await client._with_retries(refused, time.monotonic() + 5)
        assert not isinstance(shed.value, Throttled)  # the engine's own refusal
    assert limit.in_flight == 0
    assert limit.limit < 8


async def test_with_retries_an_attempt_beyond_the_limit_waits_for_a_slot_within_its_deadline() -> None:
    """A refusal of the limit is waited out as the engine's would be: the call is sent once
    a slot is free; with none freed before its deadline it ends `Throttled`, never sent."""
    sent = 0
    release = asyncio.Event()

    async def slow(deadline: float) -> str:
        nonlocal sent
        sent += 1
        await release.wait()
        return "ok"

    limit = ConcurrencyLimit(initial=4, min_limit=2, latency_target_s=0.02)
    async with LotwiseClient(
        "127.0.0.1:1", batching=None, throttle=AdaptiveThrottle(k=0), concurrency_limit=limit
    ) as c:
        held = [asyncio.create_task(c._with_retries(slow, time.monotonic() + 5)) for _ in range(4)]
        await asyncio.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(Throttled, match="concurrency limit") as refused:
            await c._with_retries(slow, started + 0.3)  # no slot frees before its deadline
        # It waited for a slot (not refused at once) and gave up at its deadline: the slots
        # are held until `release` below, so a call that ignored its deadline would not come
        # back at all. No upper bound close to 0.3 s: a loaded machine wakes the loop late.
        assert 0.2 < time.monotonic() - started < 2.0
        assert refused.value.retry_after_s == 0.02  # the limit's hint: a round trip
        assert sent == 4
        waiting = asyncio.create_task(c._with_retries(slow, time.monotonic() + 5))
        await asyncio.sleep(0.1)
        assert sent == 4
        assert not waiting.done()  # still waiting for a slot, not failed
        release.set()
        assert await asyncio.gather(*held, waiting) == ["ok"] * 5
        assert sent == 5
        assert limit.in_flight == 0
