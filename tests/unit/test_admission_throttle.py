"""The client's adaptive throttle (issue 19): when the engine refuses most of what it is
sent, the client refuses a share of the attempts itself — typed `Throttled`, an
`Overloaded` never sent — so that refusals stop costing the engine calls."""

from __future__ import annotations

import random
import time

import grpc
import pytest
from google.rpc import status_pb2

from engine.api.admission import BOUND_WIRE
from engine.api.autobatch import CallFailed
from engine.api.client import (
    UNTHROTTLED_COMMANDS,
    AdaptiveThrottle,
    LotwiseClient,
    RetryBudget,
    RetryPolicy,
    Throttled,
    accepted,
)
from engine.api.errors import overload_status
from engine.domain.errors import Overloaded


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_nothing_is_throttled_while_the_engine_accepts_at_least_one_in_k() -> None:
    throttle = AdaptiveThrottle(k=2, clock=FakeClock(), rng=random.Random(1))
    for i in range(1_000):
        throttle.answered(accepted=i % 2 == 0)  # half refused: exactly 1/k accepted
    assert throttle.reject_probability() == 0.0
    assert all(throttle.allow() for _ in range(1_000))
    assert throttle.throttled == 0


def test_refusals_beyond_one_in_k_are_throttled_with_the_sre_probability() -> None:
    throttle = AdaptiveThrottle(k=2, clock=FakeClock(), rng=random.Random(2), max_reject=0.99)
    for i in range(100):
        throttle.answered(accepted=i % 10 == 0)  # 10 accepted of 100
    assert throttle.reject_probability() == pytest.approx((100 - 2 * 10) / 101)
    refused = sum(not throttle.allow() for _ in range(2_000))
    assert refused == throttle.throttled
    assert 1_500 < refused < 1_700  # ~79 %
    # Attempts refused here are not counted: the probability does not feed on itself.
    assert throttle.reject_probability() == pytest.approx((100 - 2 * 10) / 101)


def test_once_the_engine_accepts_what_it_is_sent_the_throttle_lets_go_at_once() -> None:
    throttle = AdaptiveThrottle(k=1.2, clock=FakeClock(), rng=random.Random(8))
    for _ in range(200):
        throttle.answered(accepted=False)  # a burst refused: most attempts throttled...
    assert throttle.reject_probability() == 0.9  # ...but never all: some must show the recovery
    sent = 0
    for _ in range(5_000):  # the engine has recovered: what gets through is accepted
        if throttle.allow():
            sent += 1
            throttle.answered(accepted=True)
        if throttle.reject_probability() == 0.0:
            break
    assert throttle.reject_probability() == 0.0
    assert sent < 1_100  # the counts' ratio, not a slow decay, ended it


def test_accepts_earn_the_traffic_back_and_old_counts_decay() -> None:
    clock = FakeClock()
    throttle = AdaptiveThrottle(k=2, half_life_s=5.0, clock=clock, rng=random.Random(3))
    for _ in range(100):
        throttle.answered(accepted=False)
    assert throttle.reject_probability() == 0.9  # at most max_reject
    clock.now += 5.0  # one half-life: both counts halve, the ratio stays
    assert throttle.reject_probability() == 0.9
    assert throttle.requests == pytest.approx(50.0)
    for _ in range(50):  # the engine recovered: 2 × 50 accepts ≥ 50 + 50 requests
        throttle.answered(accepted=True)
    assert throttle.reject_probability() == 0.0


def test_counted_when_answered_so_a_burst_in_flight_is_not_a_refusal() -> None:
    throttle = AdaptiveThrottle(k=2, clock=FakeClock(), rng=random.Random(4))
    assert all(throttle.allow() for _ in range(500))  # 500 calls sent at once, none answered yet
    assert throttle.requests == 0


def test_k_zero_is_off_and_bad_settings_are_refused() -> None:
    off = AdaptiveThrottle(k=0, clock=FakeClock())
    for _ in range(100):
        off.answered(accepted=False)
    assert off.reject_probability() == 0.0
    assert off.allow()
    for k, half_life, max_reject in ((0.5, 5.0, 0.9), (-1, 5.0, 0.9), (2, 0.0, 0.9), (2, 5.0, 1.0), (2, 5.0, -0.1)):
        with pytest.raises(ValueError, match="need k"):
            AdaptiveThrottle(k=k, half_life_s=half_life, max_reject=max_reject)


def test_which_answers_count_as_accepted() -> None:
    assert not accepted(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])  # refused for overload
    # A shard recovering is not overload: its callers retry until it is back, unthrottled.
    for code in (grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE):
        assert accepted(code.value[0]), code


def test_throttled_is_a_typed_overload_that_was_never_sent() -> None:
    err = Throttled()
    assert isinstance(err, Overloaded)
    assert err.code == "RESOURCE_EXHAUSTED"
    assert "not sent" in str(err)
    assert "throttle" in err.message


async def test_the_client_throttles_after_refusals_and_sends_again_after_accepts() -> None:
    overloaded = overload_status("wait before the door", 150, bound=BOUND_WIRE, retry_delay_ms=1)
    status = status_pb2.Status.FromString(dict(overloaded.trailing_metadata)["grpc-status-details-bin"])
    sent = 0

    async def refused(deadline: float) -> None:
        nonlocal sent
        sent += 1
        raise CallFailed(status)

    async def answered(deadline: float) -> str:
        nonlocal sent
        sent += 1
        return "ok"

    throttle = AdaptiveThrottle(k=2, rng=random.Random(5))
    async with LotwiseClient("127.0.0.1:1", retry=RetryPolicy(max_attempts=1), batching=None, throttle=throttle) as c:
        outcomes: dict[str, int] = {"shed": 0, "throttled": 0}
        for _ in range(200):
            try:
                await c._with_retries(refused, time.monotonic() + 5)
            except Throttled:
                outcomes["throttled"] += 1
            except Overloaded:
                outcomes["shed"] += 1
        assert outcomes["throttled"] > 150  # most never cost the engine a call
        assert sent == outcomes["shed"] == 200 - throttle.throttled
        assert sent >= 1  # some still go, to notice the engine recover
        throttle.accepts += 1_000  # as if the engine had answered a while
        assert await c._with_retries(answered, time.monotonic() + 5) == "ok"
        assert throttle.reject_probability() == 0.0


async def test_commits_and_releases_are_never_throttled_but_their_answers_count() -> None:
    assert {"commit", "release"} <= UNTHROTTLED_COMMANDS
    assert "reserve" not in UNTHROTTLED_COMMANDS
    throttle = AdaptiveThrottle(k=2, rng=random.Random(6))
    for _ in range(1_000):
        throttle.answered(accepted=False)
    sent = 0

    async def answered(deadline: float) -> str:
        nonlocal sent
        sent += 1
        return "ok"

    async with LotwiseClient("127.0.0.1:1", batching=None, throttle=throttle) as client:
        for _ in range(50):
            assert await client._with_retries(answered, time.monotonic() + 5, throttled=False) == "ok"
    assert sent == 50
    assert throttle.throttled == 0
    assert throttle.accepts == pytest.approx(50, rel=0.01)


def test_a_few_refusals_are_no_evidence_and_the_default_k_is_strict() -> None:
    throttle = AdaptiveThrottle(clock=FakeClock(), rng=random.Random(7))
    throttle.answered(accepted=True)
    for _ in range(8):
        throttle.answered(accepted=False)
    assert throttle.reject_probability() == 0.0  # 9 answers: below min_requests
    throttle.answered(accepted=False)
    assert throttle.reject_probability() == pytest.approx((10 - 1.2) / 11)
    strict = AdaptiveThrottle(clock=FakeClock())
    for i in range(100):
        strict.answered(accepted=i % 5 != 0)  # 20 % refused: more than 1 - 1/1.2
    assert strict.reject_probability() > 0


def test_the_throttles_hint_grows_with_what_it_refuses() -> None:
    throttle = AdaptiveThrottle(half_life_s=2.0, clock=FakeClock())
    assert throttle.retry_after_s() == 0.0  # nothing refused: no wait
    for _ in range(1_000):
        throttle.answered(accepted=False)
    assert throttle.retry_after_s() == pytest.approx(2.0 * 0.9 / 20)  # 90 ms at max_reject
    assert Throttled(retry_after_s=0.09).retry_after_s == 0.09


async def test_a_client_whose_throttle_saw_many_refusals_completes_a_call_once_the_engine_is_healthy() -> None:
    """A local refusal is retried as a RESOURCE_EXHAUSTED is: after the throttle's hint plus
    jitter, within the deadline. Before, the call failed `Throttled` at its first refusal
    (bench/console.py's 300 consumes right after 100,000 receipts)."""
    sent = 0

    async def healthy(deadline: float) -> str:
        nonlocal sent
        sent += 1
        return "ok"

    for seed in range(6):  # each seed: the throttle refuses the first attempt(s) differently
        throttle = AdaptiveThrottle(rng=random.Random(seed))
        for _ in range(1_000):
            throttle.answered(accepted=False)  # a burst of refusals: 9 of 10 attempts refused
        assert throttle.reject_probability() == 0.9
        async with LotwiseClient("127.0.0.1:1", batching=None, throttle=throttle, rng=random.Random(seed)) as client:
            started = time.monotonic()
            assert await client._with_retries(healthy, started + 5) == "ok"
            assert time.monotonic() - started < 5
    assert sent == 6  # one attempt sent per call: the refused ones never were


async def test_local_refusals_end_throttled_at_the_deadline_and_at_once_without_retries() -> None:
    async def never(deadline: float) -> str:
        raise AssertionError("a throttled attempt must not be sent")

    shut = AdaptiveThrottle(max_reject=0.999999, rng=random.Random(9))
    for _ in range(100_000):
        shut.answered(accepted=False)
    async with LotwiseClient("127.0.0.1:1", batching=None, throttle=shut) as client:
        started = time.monotonic()
        with pytest.raises(Throttled) as refused:
            await client._with_retries(never, started + 0.5)
        # Never a back-off that ends past the caller's deadline (0.5 s); the slack is only for
        # a loaded machine waking the loop late, far below a second back-off's worth.
        assert time.monotonic() - started < 1.0
        assert refused.value.retry_after_s > 0
        assert shut.throttled > 1  # waited out and asked again
    async with LotwiseClient("127.0.0.1:1", batching=None, throttle=shut, retry=RetryPolicy(max_attempts=1)) as c:
        before = shut.throttled
        started = time.monotonic()
        with pytest.raises(Throttled):
            await c._with_retries(never, started + 5)
        assert shut.throttled == before + 1  # retries off: the first refusal is the answer
        assert time.monotonic() - started < 1.0  # no back-off at all (its deadline is 5 s away)
    bounded = RetryPolicy(max_local_refusals=3)
    async with LotwiseClient("127.0.0.1:1", batching=None, throttle=shut, retry=bounded) as c:
        before = shut.throttled
        with pytest.raises(Throttled):
            await c._with_retries(never, time.monotonic() + 60)
        assert shut.throttled == before + 4  # the first refusal and three more, whatever the deadline


async def test_under_a_standing_overload_local_refusals_are_not_retried_past_the_budget() -> None:
    """The engine refuses everything: its refusals drain the retry budget, and then a local
    refusal fails at once too — so retrying what the throttle refused cannot amplify the
    overload: the engine sees at most what the throttle lets through plus the budget's retries."""
    overloaded = overload_status("wait before the door", 150, bound=BOUND_WIRE, retry_delay_ms=1)
    status = status_pb2.Status.FromString(dict(overloaded.trailing_metadata)["grpc-status-details-bin"])
    sent = 0

    async def refused(deadline: float) -> None:
        nonlocal sent
        sent += 1
        raise CallFailed(status)

    budget = RetryBudget(max_tokens=20)
    throttle = AdaptiveThrottle(rng=random.Random(10))
    async with LotwiseClient(
        "127.0.0.1:1", batching=None, throttle=throttle, retry_budget=budget, rng=random.Random(11)
    ) as client:
        outcomes = {"shed": 0, "throttled": 0}
        started = time.monotonic()
        for _ in range(200):
            try:
                await client._with_retries(refused, time.monotonic() + 5)
            except Throttled:
                outcomes["throttled"] += 1
            except Overloaded:
                outcomes["shed"] += 1
        assert outcomes["shed"] + outcomes["throttled"] == 200
        assert not budget.allows_retry()
        assert sent < 60  # 200 calls; without the throttle and budget they would send 800
        assert outcomes["throttled"] > 150  # most failed where they stood, never sent
        assert time.monotonic() - started < 10  # once the budget is spent, refusals are immediate
