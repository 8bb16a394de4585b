"""The door (engine.api.admission): cost bounds by priority, deadline-aware refusals, loop-lag
shedding, typed overload statuses; and the client's retry budget (issue 19)."""

from __future__ import annotations

import random
import time

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from engine.api.admission import (
    BOUND_CALLS,
    BOUND_COST,
    BOUND_DEADLINE,
    BOUND_LOOP,
    AdmissionLimits,
    Door,
    Priority,
    Refusal,
    Shedder,
    Ticket,
    core_channel_args,
    weigh,
)
from engine.api.autobatch import CallFailed
from engine.api.client import AdaptiveThrottle, LotwiseClient, RetryBudget, RetryPolicy
from engine.api.errors import (
    REASON_OVERLOADED,
    from_rpc_status,
    is_retryable,
    overload_status,
    retry_delay_s,
    to_rpc_status,
)
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.domain.errors import Overloaded


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def quiet_limits(**overrides: object) -> AdmissionLimits:
    """Limits whose loop-lag shedding never fires (these tests drive the clock by hand)."""
    return AdmissionLimits(**{"target_loop_lag_ms": 1e9, **overrides})  # type: ignore[arg-type]


def test_each_priority_fills_only_its_share_of_the_cost_bound() -> None:
    door = Door(quiet_limits(max_cost=10), clock=FakeClock())
    assert isinstance(door.enter(6, Priority.READ, None), Ticket)  # reads: 60% of 10
    refused = door.enter(1, Priority.READ, None)
    assert isinstance(refused, Refusal)
    assert (refused.bound, refused.limit) == (BOUND_COST, 6)
    assert isinstance(door.enter(2, Priority.RESERVE, None), Ticket)  # reserves: 80%
    assert isinstance(door.enter(1, Priority.RESERVE, None), Refusal)
    assert isinstance(door.enter(1, Priority.WRITE, None), Ticket)  # other writes: 90%
    assert isinstance(door.enter(1, Priority.CRITICAL, None), Ticket)  # commits: all of it
    assert isinstance(door.enter(1, Priority.CRITICAL, None), Refusal)
    assert (door.in_flight_calls, door.in_flight_cost) == (4, 10)


def test_leaving_frees_the_cost_and_a_batch_larger_than_the_bound_fits_an_empty_door() -> None:
    door = Door(quiet_limits(max_cost=10), clock=FakeClock())
    big = door.enter(50, Priority.WRITE, None)
    assert isinstance(big, Ticket)
    assert isinstance(door.enter(1, Priority.CRITICAL, None), Refusal)
    door.leave(big)
    assert (door.in_flight_calls, door.in_flight_cost) == (0, 0)
    assert isinstance(door.enter(1, Priority.CRITICAL, None), Ticket)


def test_calls_are_bounded_by_count_too() -> None:
    door = Door(quiet_limits(max_calls=2, max_cost=1000), clock=FakeClock())
    assert isinstance(door.enter(1, Priority.CRITICAL, None), Ticket)
    assert isinstance(door.enter(1, Priority.CRITICAL, None), Ticket)
    refused = door.enter(1, Priority.CRITICAL, None)
    assert isinstance(refused, Refusal)
    assert refused.bound == BOUND_CALLS


def test_a_call_that_cannot_meet_its_deadline_is_refused_at_once() -> None:
    clock = FakeClock()
    door = Door(quiet_limits(max_cost=10_000), clock=clock)
    # Measured throughput: 100 commands in 1 s of busy time.
    first = door.enter(100, Priority.WRITE, None)
    assert isinstance(first, Ticket)
    clock.now += 1.0
    door.leave(first)
    backlog = door.enter(200, Priority.WRITE, None)  # 2 s of work ahead of the next call
    assert isinstance(backlog, Ticket)
    assert door.queue_delay_s() == pytest.approx(2.0)
    late = door.enter(1, Priority.CRITICAL, time_remaining_s=1.0)
    assert isinstance(late, Refusal)
    assert late.bound == BOUND_DEADLINE
    assert late.retry_delay_ms == door.limits.max_retry_delay_ms  # 2 s, capped at the longest hint
    assert isinstance(door.enter(1, Priority.CRITICAL, time_remaining_s=5.0), Ticket)


def test_a_call_arriving_without_time_left_is_refused_even_on_an_idle_door() -> None:
    door = Door(quiet_limits(), clock=FakeClock())
    refused = door.enter(1, Priority.CRITICAL, time_remaining_s=0.0005)
    assert isinstance(refused, Refusal)
    assert refused.bound == BOUND_DEADLINE
    assert isinstance(door.enter(1, Priority.CRITICAL, time_remaining_s=0.5), Ticket)


def test_an_idle_server_is_not_mistaken_for_a_slow_one() -> None:
    clock = FakeClock()
    door = Door(quiet_limits(), clock=clock)
    one = door.enter(1, Priority.WRITE, None)
    assert isinstance(one, Ticket)
    clock.now += 0.001
    door.leave(one)
    clock.now += 60.0  # a long pause with nothing in flight is not busy time
    assert isinstance(door.enter(1, Priority.WRITE, time_remaining_s=0.05), Ticket)


def test_the_shedder_grows_while_the_loop_lags_and_spares_commits() -> None:
    shedder = Shedder(target_lag_s=0.02, now=0.0)
    now = 0.0
    for _ in range(10):  # ten windows in which even the smallest lag is 50 ms
        for _ in range(5):
            now += Shedder.WINDOW_S / 4
            shedder.observe(0.05, now)
    assert shedder.p == pytest.approx(Shedder.STEP * 10, abs=2 * Shedder.STEP)  # about one step per window
    assert shedder.probability(Priority.CRITICAL) == 0.0
    assert shedder.probability(Priority.READ) > shedder.probability(Priority.RESERVE) > 0
    assert shedder.probability(Priority.RESERVE) > shedder.probability(Priority.WRITE)
    high = shedder.p
    for _ in range(5):  # the loop keeps up again: the probability comes down
        now += Shedder.WINDOW_S * 1.1
        shedder.observe(0.001, now)
    assert shedder.p < high
    shedder.reset()
    assert shedder.p == 0.0


def test_a_lagging_loop_sheds_reserves_but_admits_commits() -> None:
    door = Door(AdmissionLimits(target_loop_lag_ms=20), clock=FakeClock())
    door.shedder.p = 0.95
    door._random = random.Random(7)
    assert isinstance(door.enter(1, Priority.RESERVE, None), Ticket)  # a lone call is not a queue
    reserves = [door.enter(1, Priority.RESERVE, None) for _ in range(200)]
    shed = [r for r in reserves if isinstance(r, Refusal)]
    assert len(shed) > 150
    assert all(r.bound == BOUND_LOOP for r in shed)
    assert all(isinstance(door.enter(1, Priority.CRITICAL, None), Ticket) for _ in range(50))


def _batch(*kinds: str) -> pb.CommandBatch:
    batch = pb.CommandBatch()
    for kind in kinds:
        command = batch.commands.add()
        getattr(command, kind).SetInParent()
    return batch


def test_a_call_weighs_its_commands_and_the_most_urgent_one_decides() -> None:
    assert weigh("/lotwise.v1.Inventory/Reserve", pb.ReserveRequest()) == (1, Priority.RESERVE)
    assert weigh("/lotwise.v1.Inventory/Commit", pb.CommitRequest()) == (1, Priority.CRITICAL)
    assert weigh("/lotwise.v1.Inventory/GetAvailability", None) == (1, Priority.READ)
    assert weigh("/lotwise.v1.Inventory/Receive", None) == (1, Priority.WRITE)
    execute = "/lotwise.v1.Inventory/Execute"
    assert weigh(execute, _batch("reserve", "reserve", "commit")) == (3, Priority.CRITICAL)
    assert weigh(execute, _batch("get_availability", "get_hold")) == (2, Priority.READ)
    assert weigh(execute, _batch("receive", "reserve")) == (2, Priority.WRITE)


def test_core_limits_are_explicit_and_above_the_door() -> None:
    args = dict(core_channel_args(AdmissionLimits(max_calls=2048)))
    assert args["grpc.server.max_pending_requests"] >= 8 * 2048
    assert args["grpc.server.max_pending_requests_hard_limit"] > args["grpc.server.max_pending_requests"]
    assert "grpc.server_max_unrequested_time_in_server" in args


def test_an_overload_status_is_typed_names_its_bound_and_says_when_to_retry() -> None:
    status = overload_status("in-flight commands", 3276, bound=BOUND_COST, retry_delay_ms=250, priority="reserve")
    assert status.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    rich = status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    infos = [d for d in rich.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert info.reason == REASON_OVERLOADED
    assert dict(info.metadata) == {
        "what": "in-flight commands",
        "limit": "3276",
        "bound": "cost",
        "priority": "reserve",
    }
    assert retry_delay_s(rich) == pytest.approx(0.25)
    assert is_retryable(rich)
    err = from_rpc_status(rich)
    assert isinstance(err, Overloaded)
    assert (err.what, err.limit) == ("in-flight commands", 3276)


def test_a_shard_queue_overload_names_the_queue_bound() -> None:
    rich = to_rpc_status(Overloaded("queue of shard shard-0", 10))
    info = error_details_pb2.ErrorInfo()
    next(d for d in rich.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)).Unpack(info)
    assert info.metadata["bound"] == "queue"


# ---- the client's retry budget ----


def test_the_budget_stops_retries_once_half_the_tokens_are_spent_and_successes_earn_them_back() -> None:
    budget = RetryBudget(max_tokens=10, token_ratio=0.5)
    assert [budget.on_retryable_failure() for _ in range(6)] == [True, True, True, True, False, False]
    assert budget.throttled == 2
    for _ in range(4):
        budget.on_success()
    assert budget.tokens == pytest.approx(6.0)
    assert budget.on_retryable_failure() is False  # 5 left: not more than half
    for _ in range(4):
        budget.on_success()
    assert budget.on_retryable_failure() is True
    with pytest.raises(ValueError, match="must be > 0"):
        RetryBudget(max_tokens=0)


async def test_an_exhausted_budget_makes_the_client_fail_fast_instead_of_retrying() -> None:
    overloaded = overload_status("in-flight commands", 8, bound=BOUND_COST, retry_delay_ms=1)
    status = status_pb2.Status.FromString(dict(overloaded.trailing_metadata)["grpc-status-details-bin"])
    attempts = 0

    async def refused(deadline: float) -> None:
        nonlocal attempts
        attempts += 1
        raise CallFailed(status)

    budget = RetryBudget(max_tokens=4, token_ratio=0.1)
    retry = RetryPolicy(max_attempts=10, initial_backoff_s=0.001, max_backoff_s=0.002)
    off = AdaptiveThrottle(k=0)  # the budget alone (the throttle: test_admission_throttle.py)
    async with LotwiseClient("127.0.0.1:1", retry=retry, retry_budget=budget, batching=None, throttle=off) as client:
        with pytest.raises(Overloaded):
            await client._with_retries(refused, time.monotonic() + 5)
        assert attempts == 2  # 4 tokens: one retry while more than half is left, then none
        attempts = 0
        with pytest.raises(Overloaded):
            await client._with_retries(refused, time.monotonic() + 5)
        assert attempts == 1  # the budget is spent: no retry amplifies the overload
        assert budget.throttled == 2
