"""The gradient concurrency limit (issue 19): a caller's attempts in flight are bounded where
the engine answers in about `tolerance` times its unloaded latency (the quickest answer of
the last seconds), not at a fixed latency target. Fake clock throughout."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine.api.client import AdaptiveThrottle, LotwiseClient, RetryPolicy, Throttled
from engine.api.gradient import GradientLimit, WindowedMin


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_round(limit: GradientLimit, clock: FakeClock, wanted: int, base_s: float, per_call_s: float) -> list[float]:
    """One round trip of a FIFO engine: `wanted` callers try to send; the admitted attempts are
    answered in order, the k-th after base + k × per_call (a queue in front of one server)."""
    starts = [s for s in (limit.try_acquire() for _ in range(wanted)) if s is not None]
    t0 = clock.now
    rtts = []
    for k, started in enumerate(starts):
        clock.now = t0 + base_s + (k + 1) * per_call_s
        rtts.append(clock.now - started)
        limit.release(started)
    return rtts


def test_under_a_standing_overload_it_settles_where_answers_take_tolerance_times_the_quickest() -> None:
    clock = FakeClock()
    limit = GradientLimit(initial=32, min_limit=4, tolerance=2.0, clock=clock)
    # 400 callers, an engine that serves one call per ms after 2 ms on the wire.
    for _ in range(300):
        rtts = run_round(limit, clock, 400, 0.002, 0.001)
    assert limit.noload_s == pytest.approx(0.003)  # the first answer of a round: no queue ahead
    mean = sum(rtts) / len(rtts)
    assert mean <= 2.0 * 0.003 * 1.5  # about tolerance × unloaded, not 100 ms
    assert 4 <= limit.limit <= 16  # the engine is kept busy (a queue of a dozen), no more
    assert limit.in_flight == 0
    assert limit.throttled > 300 * 380  # the rest was refused where it stood, never sent


def test_by_default_it_settles_closer_to_the_unloaded_latency() -> None:
    """The default tolerance (1.25) keeps the answers nearer the unloaded latency than 2.0
    does on the same standing overload — the queue it keeps is the √limit allowance."""
    means = {}
    for tolerance in (2.0, None):
        clock = FakeClock()
        kwargs = {} if tolerance is None else {"tolerance": tolerance}
        limit = GradientLimit(initial=32, min_limit=4, clock=clock, **kwargs)
        for _ in range(300):
            rtts = run_round(limit, clock, 400, 0.002, 0.001)
        means[tolerance] = sum(rtts) / len(rtts)
    assert means[None] < means[2.0]
    assert means[None] <= 0.0065  # 6 ms against 8.5 ms with 2.0 (3 ms unloaded)


def test_it_grows_while_answers_stay_quick_and_the_limit_is_used() -> None:
    clock = FakeClock()
    limit = GradientLimit(initial=8, min_limit=4, clock=clock)
    for _ in range(100):
        run_round(limit, clock, 1_000, 0.002, 0.0)  # the engine answers everything in 2 ms
    assert limit.limit > 30  # +√limit × smoothing a round (≥ 5 ms), as long as latency holds


def test_an_idle_caller_does_not_grow_a_limit_it_never_tested() -> None:
    clock = FakeClock()
    limit = GradientLimit(initial=32, clock=clock)
    for _ in range(200):
        run_round(limit, clock, 3, 0.002, 0.0)  # 3 in flight of 32: app-limited
    assert limit.limit == 32


def test_overload_refusals_shrink_it_at_the_steepest_gradient_and_other_errors_do_not_move_it() -> None:
    clock = FakeClock()
    limit = GradientLimit(initial=64, min_limit=4, clock=clock)
    run_round(limit, clock, 64, 0.002, 0.0)  # a reference: answers in 2 ms
    before = limit.limit
    for _ in range(5):  # a shard recovering: slow UNAVAILABLE answers say nothing about load
        starts = [limit.try_acquire() for _ in range(64)]
        clock.now += 5.0
        for started in starts:
            assert started is not None
            limit.release(started, answer="other")
    assert limit.limit == before
    for _ in range(3):
        started = limit.try_acquire()
        assert started is not None
        clock.now += 0.01
        limit.release(started, answer="overloaded")
    # Each round: 0.8 × limit + 0.2 × (limit / 2 + √limit).
    expected = before
    for _ in range(3):
        expected = 0.8 * expected + 0.2 * (expected / 2 + expected**0.5)
    assert limit.limit == pytest.approx(expected)


def test_critical_attempts_pass_a_full_limit_and_a_large_batch_passes_alone() -> None:
    clock = FakeClock()
    limit = GradientLimit(initial=4, min_limit=2, max_limit=8, clock=clock)
    slots = [limit.try_acquire() for _ in range(4)]
    assert limit.try_acquire() is None
    assert limit.try_acquire(critical=True) is not None  # commits and releases free stock
    assert limit.in_flight == 5
    for started in slots:
        assert started is not None
        limit.release(started)
    limit.release(clock.now)
    assert limit.try_acquire(cost=50) is not None  # nothing else in flight: it must fit somewhere
    assert limit.try_acquire(cost=1) is None


def test_the_unloaded_latency_is_forgotten_after_its_window() -> None:
    window = WindowedMin(10.0, now=0.0)
    assert window.value() is None
    window.add(0.002, 1.0)
    window.add(0.050, 6.0)  # a new bucket: the quick answer is still remembered
    assert window.value() == 0.002
    window.add(0.040, 11.5)  # a bucket later: the 2 ms one is gone
    assert window.value() == 0.040
    window.add(0.030, 40.0)  # after a long silence both buckets are stale
    assert window.value() == 0.030


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0}, {"min_limit": 8, "initial": 4}, {"tolerance": 0.5}, {"smoothing": 0}, {"noload_window_s": 0}],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="need"):
        GradientLimit(**kwargs)


async def test_the_client_takes_it_as_its_concurrency_limit() -> None:
    sent = 0
    release = asyncio.Event()

    async def slow(deadline: float) -> str:
        nonlocal sent
        sent += 1
        await release.wait()
        return "ok"

    limit = GradientLimit(initial=4, min_limit=2)
    no_retry = RetryPolicy(max_attempts=1)
    async with LotwiseClient(
        "127.0.0.1:1", retry=no_retry, batching=None, throttle=AdaptiveThrottle(k=0), concurrency_limit=limit
    ) as client:
        held = [asyncio.create_task(client._with_retries(slow, time.monotonic() + 5)) for _ in range(4)]
        await asyncio.sleep(0.01)
        with pytest.raises(Throttled, match="concurrency limit"):
            await client._with_retries(slow, time.monotonic() + 5)
        release.set()
        assert await asyncio.gather(*held) == ["ok"] * 4
    assert sent == 4
    assert limit.in_flight == 0


def test_it_keeps_room_for_two_of_the_largest_batches_so_the_engine_does_not_idle_between_them() -> None:
    clock = FakeClock()
    limit = GradientLimit(initial=8, min_limit=4, clock=clock)
    started = limit.try_acquire(cost=8)
    assert started is not None
    assert limit.limit == 16
    assert limit.try_acquire(cost=8) is not None  # the next batch on its way while one is served
    assert limit.try_acquire(cost=8) is None
    clock.now += 0.002
    limit.release(clock.now - 0.002, cost=8)  # one quick answer: the reference
    assert limit.try_acquire(cost=8) is not None
    for _ in range(15):  # answers far slower than the quickest: the steepest gradient, every round
        clock.now += 0.2
        limit.release(clock.now - 0.2, cost=8)
        assert limit.try_acquire(cost=8) is not None
    assert limit.noload_s == pytest.approx(0.002)
    assert limit.limit == 16  # never below two batches
