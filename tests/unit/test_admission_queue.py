"""The door's waiting room (engine.api.admission): CoDel with adaptive LIFO on a fake clock.

While the queue drains it is FIFO and may hold a call for the interval; once it stands
(not empty for a whole interval) it serves the freshest first and drops the stale after
the target; emptied, it is FIFO again. The WaitingRoom admits waiters as slots free,
most urgent first, and answers the others their refusal.
"""

from __future__ import annotations

import asyncio

import pytest

from engine.api.admission import (
    BOUND_COST,
    AdmissionLimits,
    CoDelQueue,
    Door,
    Priority,
    Refusal,
    Ticket,
    WaitingRoom,
)

TARGET, INTERVAL = 0.01, 0.1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def queue(now: float = 0.0, max_len: int = 100) -> CoDelQueue[str]:
    return CoDelQueue[str](TARGET, INTERVAL, max_len, now)


def drain(q: CoDelQueue[str], now: float) -> list[str]:
    out = []
    while (item := q.peek(now)) is not None:
        assert q.pop(now) == item
        out.append(item)
    return out


def test_a_queue_that_drains_is_fifo_and_keeps_its_entries_for_the_interval() -> None:
    q = queue()
    for k, name in enumerate("abc"):
        q.put(name, 0.001 * k)
    now = 0.05  # older than the target, younger than the interval: a burst, not a standing queue
    assert not q.standing(now)
    assert q.expire(now) == []
    assert drain(q, now) == ["a", "b", "c"]


def test_a_standing_queue_drops_the_stale_and_serves_the_freshest_first() -> None:
    q = queue()
    q.put("old1", 0.0)
    q.put("old2", 0.02)
    for k in range(3):  # arrivals keep coming: the queue never empties for a whole interval
        q.put(f"fresh{k}", 0.115 + 0.001 * k)
    now = 0.12
    assert q.standing(now)
    assert q.max_wait_s(now) == TARGET
    assert q.expire(now) == ["old1", "old2"]  # waited longer than the target: refused, not served late
    assert drain(q, now) == ["fresh2", "fresh1", "fresh0"]  # LIFO: the newest can still meet its deadline


def test_the_queue_returns_to_fifo_once_it_has_drained() -> None:
    q = queue()
    q.put("a", 0.0)
    q.put("b", 0.05)
    assert q.standing(0.2)
    assert q.expire(0.2) == ["a", "b"]  # drained (by drops): it was empty at 0.2
    q.put("c", 0.21)
    q.put("d", 0.22)
    now = 0.25
    assert not q.standing(now)
    assert q.max_wait_s(now) == INTERVAL
    assert drain(q, now) == ["c", "d"]


def test_a_full_queue_refuses_and_abandoned_entries_are_skipped() -> None:
    gone: set[str] = set()
    q = CoDelQueue[str](TARGET, INTERVAL, 2, 0.0, live=lambda item: item not in gone)
    assert q.put("a", 0.0)
    assert q.put("b", 0.0)
    assert not q.put("c", 0.0)  # bounded: refused at once
    gone.add("b")
    assert q.expire(0.0) == []
    assert drain(q, 0.001) == ["a"]  # "b" gave up: never served, never reported dropped


def room(max_cost: int = 2) -> tuple[Door, WaitingRoom, FakeClock]:
    clock = FakeClock()
    limits = AdmissionLimits(max_calls=100, max_cost=max_cost, target_loop_lag_ms=1e9)
    door = Door(limits, clock)
    return door, WaitingRoom(door), clock


def full(door: Door, priority: Priority) -> Refusal:
    entry = door.enter(1, priority, None)
    assert isinstance(entry, Refusal)
    assert entry.bound == BOUND_COST
    return entry


async def test_a_waiter_gets_the_slot_a_leaving_call_frees_most_urgent_first() -> None:
    door, waiting, _ = room(max_cost=2)
    first = door.enter(1, Priority.CRITICAL, None)
    second = door.enter(1, Priority.CRITICAL, None)
    assert isinstance(first, Ticket)
    assert isinstance(second, Ticket)
    reserve = asyncio.ensure_future(waiting.wait(1, full(door, Priority.RESERVE), 5.0))
    commit = asyncio.ensure_future(waiting.wait(1, full(door, Priority.CRITICAL), 5.0))
    await asyncio.sleep(0)
    assert len(waiting) == 2
    door.leave(first)
    waiting.wake()
    admitted = await commit
    assert isinstance(admitted, Ticket)  # the commit arrived later but is more urgent
    assert not reserve.done()
    door.leave(second)
    door.leave(admitted)
    waiting.wake()  # reserves may fill 80% of the bound: one slot of two
    assert isinstance(await reserve, Ticket)
    assert door.in_flight_cost == 1


async def test_a_waiter_whose_time_runs_out_gets_its_refusal_and_leaves_no_slot_behind() -> None:
    door, waiting, _ = room(max_cost=1)
    held = door.enter(1, Priority.CRITICAL, None)
    assert isinstance(held, Ticket)
    refusal = full(door, Priority.RESERVE)
    assert await waiting.wait(1, refusal, 0.02) is refusal  # its deadline came before a slot
    door.leave(held)
    waiting.wake()
    assert door.in_flight_cost == 0  # nobody was admitted for the call that gave up


async def test_a_stale_waiter_is_refused_when_the_queue_stands() -> None:
    door, waiting, clock = room(max_cost=1)
    held = door.enter(1, Priority.CRITICAL, None)
    assert isinstance(held, Ticket)
    refusal = full(door, Priority.RESERVE)
    stale = asyncio.ensure_future(waiting.wait(1, refusal, 5.0))
    await asyncio.sleep(0)
    clock.now += 0.15  # a whole interval without the queue emptying: it stands
    fresh = asyncio.ensure_future(waiting.wait(1, full(door, Priority.RESERVE), 5.0))
    await asyncio.sleep(0)
    door.leave(held)
    waiting.wake()
    assert await stale is refusal  # waited past the target: refused, not served late
    assert isinstance(await fresh, Ticket)  # the fresh one got the slot


async def test_a_cancelled_waiter_is_skipped_and_takes_no_slot() -> None:
    door, waiting, _ = room(max_cost=1)
    held = door.enter(1, Priority.CRITICAL, None)
    assert isinstance(held, Ticket)
    task = asyncio.ensure_future(waiting.wait(1, full(door, Priority.RESERVE), 5.0))
    await asyncio.sleep(0)
    task.cancel()  # its caller goes away while it waits
    with pytest.raises(asyncio.CancelledError):
        await task
    door.leave(held)
    waiting.wake()
    assert door.in_flight_cost == 0
    assert door.in_flight_calls == 0
    assert len(waiting) == 0
