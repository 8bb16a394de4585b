"""Admission control at the door of lotwise.v1.Inventory (DESIGN.md §7, §12; issue 19).

Under overload the server must spend its one event loop on calls it can finish in time,
and refuse the others at once, cheaply and in words a client understands. So:

- gRPC core's own limits are set explicitly (`core_channel_args`) and high enough that
  core never refuses or cancels a call itself; the aio server hands every call to Python,
  where this module decides. No call is refused outside Lotwise's control.
- The bound is on what in-flight work costs, not only on how many RPCs there are: a
  unary command costs 1, an Execute batch costs its number of commands.
- Priorities: each priority may fill only its share of the bound, so the last slices stay
  free for commits and releases (which free stock); reads are shed first, then new
  reserves, then other writes. Health checks and reflection are never refused.
- Deadline-aware: a call whose remaining deadline is shorter than the current queueing
  delay estimate (in-flight cost / measured throughput, Little's law) is refused at once
  instead of being started and then abandoned.
- A call the calls/cost bound refuses may wait briefly in the waiting room for a slot
  (`WaitingRoom`, a `CoDelQueue` per priority): FIFO while the queue drains now and then,
  LIFO with a short wait once it stands, so the calls served are fresh ones that can still
  meet their deadline and the stale ones are refused rather than served late.
- The wait in front of the door (in transit and in gRPC core's queue of calls Python has
  not yet asked for, where the calls stand when the server's per-call Python work is the
  bottleneck) is measured without comparing clocks: the caller sends the timeout it set
  in the `lotwise-timeout-ms` header, core starts the server-side deadline when it parses
  the headers, so sent timeout − `time_remaining()` is what the call waited before the
  door (`WireWait`, CoDel on that queue). While it stands above `wire_target_ms`, calls
  that waited longer than their priority's share of the target are refused at once.
  A missing or malformed header is ignored (never a failed call): the door then acts as
  it does without this signal.
- Every refusal is RESOURCE_EXHAUSTED with ErrorInfo{reason OVERLOADED, metadata: the
  bound} and a RetryInfo hint (how long the excess should take to drain); refusals are
  counted in Prometheus and logged sampled (one line per bound per second with a count).

`Door` is the accounting (no gRPC, unit-tested); `AdmissionInterceptor` puts it in front
of every unary method. Streams (Stream, health Watch) pass: their flow control bounds them.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Generic, TypeVar, cast

import grpc
import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from engine.api.errors import overload_status
from engine.api.timeout_header import TIMEOUT_HEADER, parse_sent_timeout_s

log = structlog.get_logger("lotwise.api")


class Priority(IntEnum):
    """Lower values are admitted longer: each may fill only its share of the cost bound."""

    CRITICAL = 0  # commit, release: they free stock held by earlier reserves
    WRITE = 1  # stock commands and catalog puts
    RESERVE = 2  # new holds: they take stock, so they wait for the commits of older ones
    READ = 3  # answers that can be asked again: shed first


# The share of the cost bound each priority may fill. The gaps are the head room kept for
# the more urgent ones: at 100% load reads are long refused, reserves shortly after.
SHARES: dict[Priority, float] = {Priority.CRITICAL: 1.0, Priority.WRITE: 0.9, Priority.RESERVE: 0.8, Priority.READ: 0.6}

_METHOD_PRIORITY: dict[str, Priority] = {
    "Commit": Priority.CRITICAL,
    "Release": Priority.CRITICAL,
    "Reserve": Priority.RESERVE,
    "Sell": Priority.RESERVE,  # a reserve and its commit in one: it takes new stock
    "GetHold": Priority.READ,
    "GetAvailability": Priority.READ,
    "QueryStock": Priority.READ,
    "ListSites": Priority.READ,
    "ListSkus": Priority.READ,
}
# A batch's command kinds (the oneof field names of lotwise.v1.Command).
_COMMAND_PRIORITY: dict[str, Priority] = {
    "commit": Priority.CRITICAL,
    "release": Priority.CRITICAL,
    "reserve": Priority.RESERVE,
    "sell": Priority.RESERVE,
    "get_hold": Priority.READ,
    "get_availability": Priority.READ,
}
_NEVER_REFUSED = ("/grpc.health.v1.Health/", "/grpc.reflection.")  # probes must tell the truth

DEFAULT_MAX_RETRY_DELAY_MS = 2_000

BOUND_CALLS = "calls"
BOUND_COST = "cost"
BOUND_DEADLINE = "queue_delay"
BOUND_LOOP = "loop_lag"
BOUND_WIRE = "wire_wait"

# The metadata header in which a caller sends the timeout (ms, decimal) it set on the call.

# How many wire targets a call of each priority may have waited before the wire-wait
# shedder refuses it: reads first, then reserves, then other writes, commits last.
_WIRE_WEIGHT: dict[Priority, float] = {
    Priority.CRITICAL: 4.0,
    Priority.WRITE: 2.0,
    Priority.RESERVE: 1.0,
    Priority.READ: 0.5,
}

# How much of the loop-lag shedding probability each priority takes (see Shedder).
_LAG_WEIGHT: dict[Priority, float] = {
    Priority.CRITICAL: 0.0,
    Priority.WRITE: 0.5,
    Priority.RESERVE: 1.0,
    Priority.READ: 2.0,
}


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """The door's bounds; built from the settings at start-up."""

    max_calls: int = 2_048  # unary RPCs in flight (an Execute batch is one call)
    max_cost: int = 4_096  # commands in flight (an Execute batch counts each of its commands)
    min_retry_delay_ms: int = 100  # the shortest back-off RetryInfo suggests
    max_retry_delay_ms: int = DEFAULT_MAX_RETRY_DELAY_MS  # and the longest
    deadline_aware: bool = True  # refuse a call whose deadline is shorter than the queueing delay
    min_time_left_ms: float = 2.0  # a call arriving with less time left is refused unread
    target_loop_lag_ms: float = 50.0  # above it (a standing queue in front of the door) shed by priority
    log_every_s: float = 1.0  # one sampled log line per bound at most this often
    # The waiting room (CoDelQueue): a call the calls/cost bound refuses may wait this long
    # for a slot while the queue drains now and then, only `queue_target_ms` once it stands.
    max_waiting: int = 256  # per priority; beyond it a call is refused at once
    queue_target_ms: float = 10.0
    queue_interval_ms: float = 100.0
    # CoDel on the wait in front of the door (`WireWait`; callers that send TIMEOUT_HEADER):
    # once every such call for `wire_interval_ms` waited longer than `wire_target_ms`, the
    # ones that waited beyond their priority's share of the target are refused.
    wire_shedding: bool = True
    wire_target_ms: float = 30.0
    wire_interval_ms: float = 100.0
    # The longest a reserve may have waited before the door and still be served, standing
    # queue or not (reads ½×, other writes 2×, commits and releases 4×); 0: no such cap.
    # The waits there are not FIFO (every call the aio server holds shares its one loop), so
    # a queue can pass CoDel's test — some call gets through quickly every interval — while
    # others wait a second: served that late, a call is late for its caller anyway, and
    # refusing it sends its caller into a back-off that thins the queue for all.
    wire_max_wait_ms: float = 150.0

    def __post_init__(self) -> None:
        if self.max_calls < 1 or self.max_cost < 1:
            raise ValueError("admission bounds must be ≥ 1")
        if not 0 <= self.min_retry_delay_ms <= self.max_retry_delay_ms:
            raise ValueError("need 0 ≤ min_retry_delay_ms ≤ max_retry_delay_ms")
        if self.max_waiting < 0 or not 0 <= self.queue_target_ms <= self.queue_interval_ms:
            raise ValueError("need max_waiting ≥ 0 and 0 ≤ queue_target_ms ≤ queue_interval_ms")
        if not 0 < self.wire_target_ms <= self.wire_interval_ms:
            raise ValueError("need 0 < wire_target_ms ≤ wire_interval_ms")
        if self.wire_max_wait_ms != 0 and not self.wire_max_wait_ms >= self.wire_target_ms:
            raise ValueError("need wire_max_wait_ms = 0 (no cap) or ≥ wire_target_ms")


def core_channel_args(limits: AdmissionLimits) -> list[tuple[str, Any]]:
    """gRPC core's own admission, made explicit and set out of the way.

    Core queues a call it has read but Python has not yet asked for; beyond
    `max_pending_requests` it starts refusing at random (early detection) and beyond the
    hard limit always, and a call left there longer than `max_unrequested_time_in_server`
    is cancelled — refusals Lotwise would never see, meter or explain. The door refuses
    cheaply, so the aio server keeps asking for calls and this queue stays short; the
    limits sit well above what the door admits so core is never the one to say no.
    """
    pending = max(8 * limits.max_calls, 16_384)
    return [
        ("grpc.server.max_pending_requests", pending),
        ("grpc.server.max_pending_requests_hard_limit", 2 * pending),
        ("grpc.server_max_unrequested_time_in_server", 30),  # seconds: longer than any sane deadline
        ("grpc.max_concurrent_streams", 1_000_000),  # per connection: the door bounds the calls
    ]


# Fine below the wire target (30 ms), coarse up to the longest deadline a bench sets.
WAIT_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0,
)  # fmt: skip


class AdmissionMetrics:
    """Prometheus metrics of the door. Pass a fresh CollectorRegistry in tests."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.refused = Counter(
            "lotwise_admission_refused",
            "calls refused at the door (RESOURCE_EXHAUSTED OVERLOADED), by bound and priority",
            ("bound", "priority"),
            registry=registry,
        )
        self.in_flight_cost = Gauge(
            "lotwise_admission_in_flight_cost", "commands admitted and not yet answered", registry=registry
        )
        self.queue_delay = Gauge(
            "lotwise_admission_queue_delay_seconds",
            "the door's estimate of how long a newly admitted call waits (in-flight cost / throughput)",
            registry=registry,
        )
        self.wire_wait = Histogram(
            "lotwise_admission_wire_wait_seconds",
            f"how long a call waited before the door (sent {TIMEOUT_HEADER} minus time remaining)",
            buckets=WAIT_BUCKETS_S,
            registry=registry,
        )
        self.waiting = Gauge(
            "lotwise_admission_waiting", "calls in the door's waiting room, waiting for a slot", registry=registry
        )
        # With the wire wait, the server's share of what a caller sees: what is left of the
        # caller's latency is the response path and the caller's own process (bench/overload.py).
        self.admitted = Histogram(
            "lotwise_admission_admitted_seconds",
            "how long an admitted call took from the door until its handler returned",
            buckets=WAIT_BUCKETS_S,
            registry=registry,
        )


@functools.cache
def default_admission_metrics() -> AdmissionMetrics:
    """The process-wide metrics on prometheus_client's default registry (created once)."""
    return AdmissionMetrics(REGISTRY)


@dataclass(frozen=True, slots=True)
class Ticket:
    """An admitted call: what it costs, returned to the door when it ends."""

    cost: int
    priority: Priority


@dataclass(frozen=True, slots=True)
class Refusal:
    """A call refused at the door: which bound, its limit, and a back-off hint."""

    bound: str
    what: str
    limit: int
    priority: Priority
    retry_delay_ms: int


class Throughput:
    """Commands completed per second of busy time, over a decaying window.

    Busy time only (some call in flight): an idle server must not look slow, or the first
    calls after a pause would be refused for a queue that is not there.
    """

    HALF_LIFE_S = 1.0

    def __init__(self, now: float) -> None:
        self._busy_s = 0.0
        self._done = 0.0
        self._last = now
        self._epoch = now

    def advance(self, now: float, busy: bool, done: int = 0) -> None:
        """Account the time since the last event (busy or idle) and `done` commands finished now."""
        if busy:
            self._busy_s += now - self._last
        self._done += done
        self._last = now
        if now - self._epoch >= self.HALF_LIFE_S:  # halve both: recent seconds dominate
            self._busy_s *= 0.5
            self._done *= 0.5
            self._epoch = now

    def per_s(self) -> float | None:
        """None until there is enough busy time to say (then no deadline refusals)."""
        if self._busy_s < 0.02 or self._done < 1:
            return None
        return self._done / self._busy_s


class Shedder:
    """Sheds a share of the calls while the event loop lags (CoDel's idea, AIMD's control).

    Calls wait in front of the door too — in gRPC core's queue of calls Python has not yet
    asked for — and the door cannot count them. What it can see is the loop they all
    share: when even the smallest lag of a 250 ms window is above the target, a queue is
    standing, not passing. The shedding probability then grows by a step each window and
    falls by half a step each window without one, so it settles where the loop keeps up.
    Reads take twice the probability, reserves all of it, other writes half, commits and
    releases none (they free stock; refusing them would only lengthen the overload).
    """

    WINDOW_S = 0.25
    STEP = 0.05
    MAX_P = 0.95

    def __init__(self, target_lag_s: float, now: float) -> None:
        self._target_s = target_lag_s
        self._window_end = now + self.WINDOW_S
        self._window_min = float("inf")
        self.p = 0.0
        self.lag_s = 0.0

    def observe(self, lag_s: float, now: float) -> None:
        self.lag_s = lag_s
        self._window_min = min(self._window_min, lag_s)
        if now < self._window_end:
            return
        if self._window_min > self._target_s:
            self.p = min(self.MAX_P, self.p + self.STEP)
        else:
            self.p = max(0.0, self.p - self.STEP / 2)
        self._window_min = float("inf")
        self._window_end = now + self.WINDOW_S

    def reset(self) -> None:
        """Nothing arrives: no queue can stand, so the next burst starts unshed."""
        self.p = 0.0
        self.lag_s = 0.0
        self._window_min = float("inf")

    def probability(self, priority: Priority) -> float:
        return min(1.0, self.p * _LAG_WEIGHT[priority])


class WireWait:
    """CoDel on the queue in front of the door, from the waits the callers' headers reveal.

    A queue that passes (a burst) lets some call through within the target; a standing
    one does not. So, as in CoDel, the queue stands once every wait observed for a whole
    interval was above the target, and stops standing at the first wait within it. While
    it stands, refusing the calls that already waited long (cheaply, with a back-off hint)
    is what shortens it: their callers back off instead of queueing again at once.
    """

    def __init__(self, target_s: float, interval_s: float, max_wait_s: float = 0.0) -> None:
        self.target_s = target_s
        self._interval_s = interval_s
        self.max_wait_s = max_wait_s  # 0: no cap
        self._above_since: float | None = None  # the first wait above target of this run
        self.last_s = 0.0  # the latest wait observed
        self._seen_at = float("-inf")  # when it was observed

    def observe(self, waited_s: float, now: float) -> None:
        if now - self._seen_at > self._interval_s:
            # Nothing measured for an interval (the load stopped): no evidence that the queue
            # still stands, so a lone late call (an operator's verify) starts a new run.
            self._above_since = None
        self.last_s = waited_s
        self._seen_at = now
        if waited_s <= self.target_s:
            self._above_since = None
        elif self._above_since is None:
            self._above_since = now

    def standing(self, now: float) -> bool:
        return self._above_since is not None and now - self._above_since >= self._interval_s

    def limit_s(self, priority: Priority) -> float:
        """How long a call of `priority` may have waited and still be admitted while it stands."""
        return self.target_s * _WIRE_WEIGHT[priority]

    def cap_s(self, priority: Priority) -> float | None:
        """How long a call of `priority` may have waited and still be admitted at all."""
        return self.max_wait_s * _WIRE_WEIGHT[priority] if self.max_wait_s > 0 else None


def wire_wait_s(metadata: Any, time_remaining_s: float | None) -> float | None:
    """How long the call waited before the door: sent timeout − time remaining (None: unknown).

    gRPC core starts the server-side deadline when it parses the headers, so the difference
    is the time in transit and in core's queue, with no clock compared between machines."""
    if time_remaining_s is None or not metadata:
        return None
    for key, value in metadata:
        if key == TIMEOUT_HEADER:
            sent_s = parse_sent_timeout_s(value)
            # grpc-timeout is rounded up on the wire: a few µs below zero mean "no wait".
            return None if sent_s is None else max(sent_s - time_remaining_s, 0.0)
    return None


class Door:
    """The accounting of admission: in-flight calls and cost, throughput, refusals."""

    def __init__(
        self, limits: AdmissionLimits = AdmissionLimits(), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self.clock = clock
        self.in_flight_calls = 0
        self.in_flight_cost = 0
        self._throughput = Throughput(clock())
        self.shedder = Shedder(limits.target_loop_lag_ms / 1000, clock())
        self.wire = WireWait(
            limits.wire_target_ms / 1000, limits.wire_interval_ms / 1000, limits.wire_max_wait_ms / 1000
        )
        self._random = random.Random()

    def queue_delay_s(self, extra_cost: int = 0) -> float:
        """How long a call admitted now should wait for the work ahead of it (0: unknown)."""
        rate = self._throughput.per_s()
        return 0.0 if rate is None else (self.in_flight_cost + extra_cost) / rate

    def enter(
        self,
        cost: int,
        priority: Priority,
        time_remaining_s: float | None,
        *,
        shed: bool = True,
        waited_s: float | None = None,
    ) -> Ticket | Refusal:
        """Admit the call (a Ticket to hand back to `leave`) or say why not.

        `waited_s`: how long the call waited before the door (`wire_wait_s`), None if its
        caller did not say. `shed=False` for a call leaving the waiting room: it was past
        the shedders once already, and a slot has just been freed for it."""
        limits = self.limits
        now = self.clock()
        self._throughput.advance(now, self.in_flight_calls > 0)
        if time_remaining_s is not None and time_remaining_s * 1000 < limits.min_time_left_ms:
            # It waited in front of the door until its caller (nearly) gave up: do no work for it.
            return self._refusal(BOUND_DEADLINE, "time left on arrival", int(limits.min_time_left_ms), priority, cost)
        if shed and waited_s is not None and limits.wire_shedding:
            refusal = self._shed_wire(waited_s, priority, cost, now)
            if refusal is not None:
                return refusal
        shed_p = self.shedder.probability(priority) if shed else 0.0
        # A lone call is not a queue: a busy machine (other processes) lags the loop too.
        if shed_p > 0 and self.in_flight_calls > 0 and self._random.random() < shed_p:
            lag_ms = int(self.shedder.lag_s * 1000)
            return self._refusal(
                BOUND_LOOP, f"event loop (lag {lag_ms} ms)", int(limits.target_loop_lag_ms), priority, cost
            )
        share = SHARES[priority]
        if self.in_flight_calls >= max(1, int(limits.max_calls * share)):
            return self._refusal(BOUND_CALLS, "in-flight calls", int(limits.max_calls * share), priority, 1)
        # A batch larger than the whole bound is still admitted onto an empty door: it must fit somewhere.
        cost_limit = max(1, int(limits.max_cost * share))
        if self.in_flight_cost > 0 and self.in_flight_cost + cost > cost_limit:
            return self._refusal(BOUND_COST, "in-flight commands", cost_limit, priority, cost)
        if limits.deadline_aware and time_remaining_s is not None and self.in_flight_cost > 0:
            # Only the work ahead counts: the call's own service time is the gateway's to judge.
            delay_s = self.queue_delay_s()
            if delay_s > time_remaining_s:
                what = f"queueing delay ({delay_s * 1000:.0f} ms) beyond the call's deadline"
                return self._refusal(BOUND_DEADLINE, what, int(delay_s * 1000), priority, cost)
        self.in_flight_calls += 1
        self.in_flight_cost += cost
        return Ticket(cost, priority)

    def _shed_wire(self, waited_s: float, priority: Priority, cost: int, now: float) -> Refusal | None:
        wire = self.wire
        wire.observe(waited_s, now)
        cap_s = wire.cap_s(priority)
        if cap_s is not None and waited_s > cap_s:
            limit_s = cap_s  # late for its caller whatever the queue does now
        elif wire.standing(now) and waited_s > wire.limit_s(priority):
            limit_s = wire.limit_s(priority)
        else:
            return None
        what = f"wait before the door ({waited_s * 1000:.0f} ms)"
        return self._refusal(BOUND_WIRE, what, int(limit_s * 1000), priority, cost)

    def leave(self, ticket: Ticket) -> None:
        self._throughput.advance(self.clock(), True, ticket.cost)
        self.in_flight_calls -= 1
        self.in_flight_cost -= ticket.cost

    def _refusal(self, bound: str, what: str, limit: int, priority: Priority, cost: int) -> Refusal:
        # Suggest the time the excess should take to drain at the measured throughput.
        limits = self.limits
        if bound == BOUND_DEADLINE:
            hint_s = self.queue_delay_s()
        elif bound == BOUND_LOOP:
            hint_s = 10 * self.shedder.lag_s  # the loop needs several windows to catch up
        elif bound == BOUND_WIRE:
            # The wait in front: by then the queue the call stood in has drained. (Twice it,
            # before the clients throttled themselves, made every retried success a second
            # or more late; the throttle now does the thinning.)
            hint_s = self.wire.last_s
        else:
            excess = self.in_flight_cost + cost - limits.max_cost * SHARES[priority]
            rate = self._throughput.per_s()
            hint_s = 0.0 if rate is None else max(excess, 0.0) / rate
        delay_ms = min(max(int(hint_s * 1000), limits.min_retry_delay_ms), limits.max_retry_delay_ms)
        return Refusal(bound, what, limit, priority, delay_ms)


_T = TypeVar("_T")
WAITABLE_BOUNDS = (BOUND_CALLS, BOUND_COST)  # full for now: a slot frees as soon as a call ends


class CoDelQueue(Generic[_T]):
    """Controlled delay with adaptive LIFO, for the door's waiting room (after CoDel and
    Facebook's server queues).

    While the queue empties now and then it is a buffer for bursts: FIFO, and an entry may
    wait `interval_s`. Once it has not been empty for a whole interval, a queue is
    standing — more arrives than leaves — and waiting longer only makes every answer late:
    the queue turns LIFO (the freshest call is the one that can still meet its deadline)
    and an entry may wait only `target_s`; the stale ones are dropped (refused, to be
    retried after a back-off) instead of served late. Emptied, it is FIFO again.

    Pure bookkeeping on the caller's clock; `live` tells entries whose caller is gone
    (they are skipped and purged lazily, so abandoning one costs nothing).
    """

    def __init__(
        self, target_s: float, interval_s: float, max_len: int, now: float, live: Callable[[_T], bool] = bool
    ) -> None:
        self._target_s = target_s
        self._interval_s = interval_s
        self._max_len = max_len
        self._live = live
        self._entries: deque[tuple[float, _T]] = deque()
        self._empty_at = now  # when the queue was last seen empty

    def __len__(self) -> int:
        return len(self._entries)

    def standing(self, now: float) -> bool:
        return bool(self._entries) and now - self._empty_at >= self._interval_s

    def max_wait_s(self, now: float) -> float:
        """How long an entry may wait now: the interval for a burst, the target once it stands."""
        return self._target_s if self.standing(now) else self._interval_s

    def put(self, item: _T, now: float) -> bool:
        """Queue `item`; False when the queue is full (refuse it at once)."""
        self._purge()
        if len(self._entries) >= self._max_len:
            return False
        if not self._entries:
            self._empty_at = now
        self._entries.append((now, item))
        return True

    def expire(self, now: float) -> list[_T]:
        """Drop and return the live entries that waited longer than they may now. The oldest
        are at the head in either discipline, so the drops stop at the first fresh one."""
        limit = self.max_wait_s(now)
        dropped: list[_T] = []
        while self._entries and (now - self._entries[0][0] > limit or not self._live(self._entries[0][1])):
            _, item = self._entries.popleft()
            if self._live(item):
                dropped.append(item)
        self._note_empty(now)
        return dropped

    def peek(self, now: float) -> _T | None:
        """The entry to serve next: the oldest while the queue drains, the newest once it stands."""
        self._purge()
        if not self._entries:
            self._note_empty(now)
            return None
        return self._entries[-1][1] if self.standing(now) else self._entries[0][1]

    def pop(self, now: float) -> _T:
        """Remove and return what `peek(now)` returned (same `now`)."""
        lifo = self.standing(now)
        _, item = self._entries.pop() if lifo else self._entries.popleft()
        self._note_empty(now)
        return item

    def _purge(self) -> None:
        while self._entries and not self._live(self._entries[0][1]):
            self._entries.popleft()
        while self._entries and not self._live(self._entries[-1][1]):
            self._entries.pop()

    def _note_empty(self, now: float) -> None:
        if not self._entries:
            self._empty_at = now


@dataclass(eq=False, slots=True)
class _Waiter:
    cost: int
    priority: Priority
    deadline: float | None  # on the door's clock
    refusal: Refusal  # what the door said when it arrived: its answer if no slot frees in time
    future: asyncio.Future[Ticket | Refusal]


def _waiting(waiter: _Waiter) -> bool:
    return not waiter.future.done()


class WaitingRoom:
    """Calls the calls/cost bound refuses wait here briefly for a slot (one CoDelQueue per
    priority, the most urgent served first) instead of being refused at once: a burst is
    absorbed, a standing overload is refused fresh-first. `wake` runs when a call leaves."""

    def __init__(self, door: Door) -> None:
        self._door = door
        limits = door.limits
        now = door.clock()
        self._queues = {
            p: CoDelQueue[_Waiter](
                limits.queue_target_ms / 1000, limits.queue_interval_ms / 1000, limits.max_waiting, now, _waiting
            )
            for p in Priority
        }

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    async def wait(self, cost: int, refusal: Refusal, time_remaining_s: float | None) -> Ticket | Refusal:
        """A Ticket once a slot frees for the call, else (queue full, waited its limit) `refusal`."""
        door, now = self._door, self._door.clock()
        queue = self._queues[refusal.priority]
        limit_s = queue.max_wait_s(now)
        deadline = None if time_remaining_s is None else now + time_remaining_s
        if time_remaining_s is not None:
            limit_s = min(limit_s, time_remaining_s - door.limits.min_time_left_ms / 1000)
        if limit_s <= 0:
            return refusal
        future: asyncio.Future[Ticket | Refusal] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(cost, refusal.priority, deadline, refusal, future)
        if not queue.put(waiter, now):
            return refusal
        try:
            return await asyncio.wait_for(asyncio.shield(future), limit_s)
        except TimeoutError:
            return self._abandon(waiter) or refusal
        except asyncio.CancelledError:  # the caller went away: a slot it got goes back
            entry = self._abandon(waiter)
            if isinstance(entry, Ticket):
                door.leave(entry)
                self.wake()
            raise

    def wake(self) -> None:
        """Admit waiters while there is room, most urgent first; refuse the stale ones."""
        door = self._door
        now = door.clock()
        for priority in Priority:
            queue = self._queues[priority]
            for stale in queue.expire(now):
                stale.future.set_result(stale.refusal)
            while (waiter := queue.peek(now)) is not None:
                remaining = None if waiter.deadline is None else waiter.deadline - now
                entry = door.enter(waiter.cost, priority, remaining, shed=False)
                if isinstance(entry, Refusal) and entry.bound in WAITABLE_BOUNDS:
                    return  # full again: the less urgent would not fit either
                queue.pop(now).future.set_result(entry)

    @staticmethod
    def _abandon(waiter: _Waiter) -> Ticket | Refusal | None:
        if waiter.future.done():
            return waiter.future.result()  # it got its answer as its time ran out
        waiter.future.cancel()  # `live` is now False: the queue skips it
        return None


def weigh(method: str, request: Any) -> tuple[int, Priority]:
    """What a call costs and how urgent it is, from its method and (for Execute) its commands."""
    name = method.rsplit("/", 1)[-1]
    if name == "Execute":
        commands = getattr(request, "commands", None)
        if not commands:  # undecodable or empty: refused by the servicer, cheaply
            return 1, Priority.WRITE
        # The most urgent command decides: a commit in a batch must not wait behind reserves.
        priority = min(_COMMAND_PRIORITY.get(c.WhichOneof("command") or "", Priority.WRITE) for c in commands)
        return len(commands), priority
    return 1, _METHOD_PRIORITY.get(name, Priority.WRITE)


class RefusalLog:
    """Sampled logging of refusals: the first of a bound at once, then a count per interval."""

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._every_s = every_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def refused(self, refusal: Refusal, method: str, door: Door) -> None:
        now = self._clock()
        bound = refusal.bound
        if now - self._last.get(bound, -1e18) < self._every_s:
            self._unlogged[bound] = self._unlogged.get(bound, 0) + 1
            return
        self._last[bound] = now
        log.warning(
            "overloaded: calls refused",
            bound=bound,
            method=method,
            priority=refusal.priority.name,
            refused=self._unlogged.pop(bound, 0) + 1,  # since the previous line of this bound
            in_flight_calls=door.in_flight_calls,
            in_flight_cost=door.in_flight_cost,
            queue_delay_ms=round(door.queue_delay_s() * 1000, 1),
            retry_delay_ms=refusal.retry_delay_ms,
        )


Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class AdmissionInterceptor(grpc.aio.ServerInterceptor):
    """Puts a Door in front of every unary method but health and reflection.

    Install it first (outermost): a refused call then costs no more than this check and
    its status, and never reaches the access log (the sampled refusal log stands for it).
    """

    def __init__(self, door: Door, metrics: AdmissionMetrics | None = None) -> None:
        self.door = door
        self._metrics = metrics or default_admission_metrics()
        self._log = RefusalLog(door.limits.log_every_s)
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}
        self._probe = LoopLagProbe(door)
        self.waiting_room = WaitingRoom(door)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or method.startswith(_NEVER_REFUSED):
            return handler
        wrapped = grpc.unary_unary_rpc_method_handler(
            # On a grpc.aio server every unary behaviour is a coroutine function (the stubs
            # type it as the sync server's).
            self._admit(method, cast(Behavior, handler.unary_unary)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = wrapped
        return wrapped

    def _admit(self, method: str, behavior: Behavior) -> Behavior:
        door = self.door
        metrics = self._metrics
        room = self.waiting_room
        probe = self._probe

        async def admitted(request: Any, context: grpc.aio.ServicerContext) -> Any:
            probe.touch()
            cost, priority = weigh(method, request)
            remaining = context.time_remaining()
            waited = wire_wait_s(context.invocation_metadata(), remaining)
            if waited is not None:
                metrics.wire_wait.observe(waited)
            entry = door.enter(cost, priority, remaining, waited_s=waited)
            if isinstance(entry, Refusal) and entry.bound in WAITABLE_BOUNDS:
                metrics.waiting.set(len(room) + 1)
                entry = await room.wait(cost, entry, context.time_remaining())
                metrics.waiting.set(len(room))
            if isinstance(entry, Refusal):
                metrics.refused.labels(entry.bound, entry.priority.name.lower()).inc()
                self._log.refused(entry, method, door)
                await context.abort_with_status(_status(entry))
                raise AssertionError("abort_with_status returned")  # it always raises
            metrics.in_flight_cost.set(door.in_flight_cost)
            admitted_at = time.perf_counter()
            try:
                return await behavior(request, context)
            finally:
                metrics.admitted.observe(time.perf_counter() - admitted_at)
                door.leave(entry)
                room.wake()
                metrics.in_flight_cost.set(door.in_flight_cost)
                metrics.queue_delay.set(door.queue_delay_s())

        return admitted


class LoopLagProbe:
    """Measures how late the event loop runs a timer, and tells the door's Shedder.

    A chain of timer callbacks, not a task: it runs only while calls arrive (it stops after
    a quiet second and the next call restarts it) and leaves nothing behind on a closed loop.
    """

    INTERVAL_S = 0.01
    QUIET_S = 1.0

    def __init__(self, door: Door) -> None:
        self._door = door
        self._handle: asyncio.TimerHandle | None = None
        self._last_call = 0.0

    def touch(self) -> None:
        loop = asyncio.get_running_loop()
        self._last_call = loop.time()
        if self._handle is None:
            self._schedule(loop)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        expected = loop.time() + self.INTERVAL_S
        self._handle = loop.call_at(expected, self._tick, loop, expected)

    def _tick(self, loop: asyncio.AbstractEventLoop, expected: float) -> None:
        now = loop.time()
        self._door.shedder.observe(max(now - expected, 0.0), now)
        if now - self._last_call > self.QUIET_S:
            self._handle = None  # idle: no lag to measure; the next call restarts the chain
            self._door.shedder.reset()
            return
        self._schedule(loop)


def _status(refusal: Refusal) -> grpc.Status:
    return overload_status(
        refusal.what,
        refusal.limit,
        bound=refusal.bound,
        retry_delay_ms=refusal.retry_delay_ms,
        priority=refusal.priority.name.lower(),
    )
