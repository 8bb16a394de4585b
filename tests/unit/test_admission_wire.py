"""The wait before the door (issue 19): measured from the timeout the caller says it set,
fed to CoDel, shed by priority once it stands; its histogram and the waiting room's gauge."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from engine.api.admission import (
    BOUND_COST,
    BOUND_WIRE,
    AdmissionInterceptor,
    AdmissionLimits,
    AdmissionMetrics,
    Door,
    Priority,
    Refusal,
    Ticket,
    wire_wait_s,
)
from engine.api.timeout_header import TIMEOUT_HEADER, parse_sent_timeout_s, timeout_metadata


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def wire_door(**overrides: Any) -> tuple[Door, FakeClock]:
    """A door with wire target 30 ms, interval 100 ms, no cap on the wait (CoDel alone);
    loop-lag shedding off (clock by hand)."""
    clock = FakeClock()
    limits = AdmissionLimits(
        **{
            "target_loop_lag_ms": 1e9,
            "wire_target_ms": 30,
            "wire_interval_ms": 100,
            "wire_max_wait_ms": 0,
            **overrides,
        }
    )
    return Door(limits, clock=clock), clock


def stand(door: Door, clock: FakeClock, waited_s: float = 0.2) -> None:
    """Commits (never shed at this wait) that waited above target for a whole interval."""
    for _ in range(3):
        ticket = door.enter(1, Priority.CRITICAL, 1.0, waited_s=min(waited_s, 0.1))
        assert isinstance(ticket, Ticket)
        door.leave(ticket)
        clock.now += 0.05


def test_the_header_carries_the_timeout_and_bad_values_are_ignored() -> None:
    key, value = timeout_metadata(1.9995)
    assert key == TIMEOUT_HEADER
    assert parse_sent_timeout_s(value) == pytest.approx(1.9995)
    assert parse_sent_timeout_s("2000") == 2.0
    for bad in ("", "abc", "nan", "inf", "-inf", "-5", "0", "1e99", "9" * 40, b"2000"):
        assert parse_sent_timeout_s(bad) is None, bad


def test_the_wait_is_the_sent_timeout_minus_the_time_remaining() -> None:
    assert wire_wait_s(((TIMEOUT_HEADER, "2000"),), 1.75) == pytest.approx(0.25)
    assert wire_wait_s((("authorization", "x"), (TIMEOUT_HEADER, "2000")), 2.0005) == 0.0  # rounding: no wait
    assert wire_wait_s((("authorization", "x"),), 1.0) is None  # no header: unknown
    assert wire_wait_s(((TIMEOUT_HEADER, "soon"),), 1.0) is None  # bad header: unknown, not an error
    assert wire_wait_s(((TIMEOUT_HEADER, "2000"),), None) is None  # no deadline on the call
    assert wire_wait_s(None, 1.0) is None


def test_a_passing_burst_is_not_shed() -> None:
    door, clock = wire_door()
    assert isinstance(door.enter(1, Priority.RESERVE, 1.0, waited_s=0.5), Ticket)  # above target, not standing yet
    clock.now += 0.09
    assert isinstance(door.enter(1, Priority.RESERVE, 1.0, waited_s=0.01), Ticket)  # within target: it passes
    clock.now += 0.09
    assert isinstance(door.enter(1, Priority.RESERVE, 1.0, waited_s=0.5), Ticket)
    assert not door.wire.standing(clock.now)


def test_a_standing_wait_sheds_by_priority_with_a_back_off_hint() -> None:
    door, clock = wire_door()
    stand(door, clock)
    assert door.wire.standing(clock.now)
    refused = door.enter(1, Priority.RESERVE, 1.0, waited_s=0.04)
    assert isinstance(refused, Refusal)
    assert (refused.bound, refused.limit, refused.priority) == (BOUND_WIRE, 30, Priority.RESERVE)
    assert refused.retry_delay_ms == 100  # its 40 ms wait, raised to the shortest hint
    long_wait = door.enter(1, Priority.RESERVE, 1.0, waited_s=0.4)
    assert isinstance(long_wait, Refusal)
    assert long_wait.retry_delay_ms == 400  # its wait
    # Reads go at half the target, other writes at twice it, commits at four times.
    assert isinstance(door.enter(1, Priority.READ, 1.0, waited_s=0.02), Ticket)  # within target: ends the run
    stand(door, clock)
    assert isinstance(door.enter(1, Priority.READ, 1.0, waited_s=0.031), Refusal)
    assert isinstance(door.enter(1, Priority.WRITE, 1.0, waited_s=0.05), Ticket)
    assert isinstance(door.enter(1, Priority.WRITE, 1.0, waited_s=0.07), Refusal)
    assert isinstance(door.enter(1, Priority.CRITICAL, 1.0, waited_s=0.11), Ticket)
    assert isinstance(door.enter(1, Priority.CRITICAL, 1.0, waited_s=0.13), Refusal)


def test_a_call_within_target_ends_the_standing_queue() -> None:
    door, clock = wire_door()
    stand(door, clock)
    assert isinstance(door.enter(1, Priority.RESERVE, 1.0, waited_s=0.01), Ticket)
    assert isinstance(door.enter(1, Priority.RESERVE, 1.0, waited_s=0.2), Ticket)  # a new run starts
    clock.now += 0.06
    assert isinstance(door.enter(1, Priority.RESERVE, 1.0, waited_s=0.2), Ticket)  # not an interval yet
    clock.now += 0.06
    assert isinstance(door.enter(1, Priority.RESERVE, 1.0, waited_s=0.2), Refusal)  # stood an interval again


def test_a_quiet_interval_ends_the_standing_queue() -> None:
    door, clock = wire_door()
    stand(door, clock)
    clock.now += 0.5  # the load stopped: nothing measured for longer than the interval
    assert isinstance(door.enter(1, Priority.WRITE, 1.0, waited_s=0.2), Ticket)
    assert not door.wire.standing(clock.now)


def test_callers_without_the_header_are_admitted_as_before() -> None:
    door, clock = wire_door()
    stand(door, clock)
    assert isinstance(door.enter(1, Priority.RESERVE, 1.0), Ticket)  # waited unknown
    assert isinstance(door.enter(1, Priority.RESERVE, 1.0, waited_s=0.5, shed=False), Ticket)  # from the room
    off, off_clock = wire_door(wire_shedding=False)
    stand(off, off_clock)
    assert isinstance(off.enter(1, Priority.RESERVE, 1.0, waited_s=0.5), Ticket)


@pytest.mark.parametrize(("target", "interval"), [(0, 100), (-1, 100), (200, 100)])
def test_wire_settings_are_validated(target: float, interval: float) -> None:
    with pytest.raises(ValueError, match="wire_target_ms"):
        AdmissionLimits(wire_target_ms=target, wire_interval_ms=interval)


class Aborted(Exception):
    pass


class FakeContext:
    """The two questions the door asks of a call, and its abort."""

    def __init__(self, metadata: tuple[tuple[str, str], ...], remaining_s: float) -> None:
        self._metadata = metadata
        self._remaining_s = remaining_s
        self.status: grpc.Status | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def time_remaining(self) -> float:
        return self._remaining_s

    async def abort_with_status(self, status: grpc.Status) -> None:
        self.status = status
        raise Aborted


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels or None)
    assert value is not None, name
    return value


async def test_the_interceptor_meters_the_wait_and_refuses_a_stale_call_typed() -> None:
    door, clock = wire_door()
    registry = CollectorRegistry()
    interceptor = AdmissionInterceptor(door, AdmissionMetrics(registry))

    async def behavior(request: Any, context: Any) -> str:
        return "done"

    admitted = interceptor._admit("/lotwise.v1.Inventory/Reserve", behavior)
    stale = ((TIMEOUT_HEADER, "2000"),)
    assert await admitted(None, FakeContext(stale, 1.8)) == "done"  # 200 ms before the door: run starts
    clock.now += 0.06
    assert await admitted(None, FakeContext(stale, 1.8)) == "done"  # not standing for an interval yet
    clock.now += 0.06
    context = FakeContext(stale, 1.8)
    with pytest.raises(Aborted):
        await admitted(None, context)
    assert context.status is not None
    assert context.status.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert sample(registry, "lotwise_admission_refused_total", bound=BOUND_WIRE, priority="reserve") == 1
    assert sample(registry, "lotwise_admission_wire_wait_seconds_count") == 3
    assert sample(registry, "lotwise_admission_wire_wait_seconds_bucket", le="0.1") == 0
    assert await admitted(None, FakeContext(((TIMEOUT_HEADER, "x"),), 1.8)) == "done"  # bad header: not metered
    assert sample(registry, "lotwise_admission_wire_wait_seconds_count") == 3


async def test_the_waiting_gauge_counts_calls_in_the_waiting_room() -> None:
    door, _ = wire_door(max_calls=1, max_cost=1)
    registry = CollectorRegistry()
    interceptor = AdmissionInterceptor(door, AdmissionMetrics(registry))
    release = asyncio.Event()

    async def behavior(request: Any, context: Any) -> str:
        await release.wait()
        return "done"

    admitted = interceptor._admit("/lotwise.v1.Inventory/Commit", behavior)
    first = asyncio.create_task(admitted(None, FakeContext((), 5.0)))
    await asyncio.sleep(0)
    assert door.in_flight_cost == 1
    second = asyncio.create_task(admitted(None, FakeContext((), 5.0)))
    await asyncio.sleep(0)
    assert sample(registry, "lotwise_admission_waiting") == 1
    refused = door.enter(1, Priority.CRITICAL, None)
    assert isinstance(refused, Refusal)
    assert refused.bound in ("calls", BOUND_COST)
    release.set()
    assert await asyncio.gather(first, second) == ["done", "done"]
    assert sample(registry, "lotwise_admission_waiting") == 0


def test_a_call_that_waited_beyond_the_cap_is_refused_even_when_no_queue_stands() -> None:
    door, clock = wire_door(wire_max_wait_ms=150)
    # The queue passes CoDel's test (a quick call every interval), yet some calls wait long.
    for _ in range(3):
        assert isinstance(door.enter(1, Priority.RESERVE, 1.0, waited_s=0.01), Ticket)
        clock.now += 0.05
    assert not door.wire.standing(clock.now)
    assert isinstance(door.enter(1, Priority.RESERVE, 1.0, waited_s=0.149), Ticket)  # within the cap
    late = door.enter(1, Priority.RESERVE, 1.0, waited_s=0.151)
    assert isinstance(late, Refusal)
    assert late.bound == BOUND_WIRE
    assert late.limit == 150
    assert late.retry_delay_ms == 151  # its wait: by then the queue it stood in has drained
    # By priority: reads half the cap, other writes twice, commits and releases four times.
    assert isinstance(door.enter(1, Priority.READ, 1.0, waited_s=0.08), Refusal)
    assert isinstance(door.enter(1, Priority.WRITE, 1.0, waited_s=0.29), Ticket)
    assert isinstance(door.enter(1, Priority.WRITE, 1.0, waited_s=0.31), Refusal)
    assert isinstance(door.enter(1, Priority.CRITICAL, 1.0, waited_s=0.59), Ticket)
    commit = door.enter(1, Priority.CRITICAL, 1.0, waited_s=0.61)
    assert isinstance(commit, Refusal)
    assert commit.limit == 600


def test_the_cap_is_off_at_zero_and_for_callers_that_send_no_header() -> None:
    off, _ = wire_door(wire_max_wait_ms=0)
    assert isinstance(off.enter(1, Priority.RESERVE, 1.9, waited_s=1.5), Ticket)
    capped, _ = wire_door(wire_max_wait_ms=150)
    assert isinstance(capped.enter(1, Priority.RESERVE, 1.9, waited_s=None), Ticket)
    unshed, _ = wire_door(wire_max_wait_ms=150, wire_shedding=False)
    assert isinstance(unshed.enter(1, Priority.RESERVE, 1.9, waited_s=1.5), Ticket)
    assert AdmissionLimits().wire_max_wait_ms == 150  # on by default


@pytest.mark.parametrize("cap", [-1, 10, 29.9])
def test_a_cap_below_the_target_is_refused_at_start(cap: float) -> None:
    with pytest.raises(ValueError, match="wire_max_wait_ms"):
        AdmissionLimits(wire_target_ms=30, wire_max_wait_ms=cap)
