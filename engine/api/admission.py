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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, cast

import grpc
import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from engine.api.errors import overload_status

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

    def __post_init__(self) -> None:
        if self.max_calls < 1 or self.max_cost < 1:
            raise ValueError("admission bounds must be ≥ 1")
        if not 0 <= self.min_retry_delay_ms <= self.max_retry_delay_ms:
            raise ValueError("need 0 ≤ min_retry_delay_ms ≤ max_retry_delay_ms")


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


class Door:
    """The accounting of admission: in-flight calls and cost, throughput, refusals."""

    def __init__(
        self, limits: AdmissionLimits = AdmissionLimits(), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self._clock = clock
        self.in_flight_calls = 0
        self.in_flight_cost = 0
        self._throughput = Throughput(clock())
        self.shedder = Shedder(limits.target_loop_lag_ms / 1000, clock())
        self._random = random.Random()

    def queue_delay_s(self, extra_cost: int = 0) -> float:
        """How long a call admitted now should wait for the work ahead of it (0: unknown)."""
        rate = self._throughput.per_s()
        return 0.0 if rate is None else (self.in_flight_cost + extra_cost) / rate

    def enter(self, cost: int, priority: Priority, time_remaining_s: float | None) -> Ticket | Refusal:
        """Admit the call (a Ticket to hand back to `leave`) or say why not."""
        limits = self.limits
        self._throughput.advance(self._clock(), self.in_flight_calls > 0)
        if time_remaining_s is not None and time_remaining_s * 1000 < limits.min_time_left_ms:
            # It waited in front of the door until its caller (nearly) gave up: do no work for it.
            return self._refusal(BOUND_DEADLINE, "time left on arrival", int(limits.min_time_left_ms), priority, cost)
        shed_p = self.shedder.probability(priority)
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

    def leave(self, ticket: Ticket) -> None:
        self._throughput.advance(self._clock(), True, ticket.cost)
        self.in_flight_calls -= 1
        self.in_flight_cost -= ticket.cost

    def _refusal(self, bound: str, what: str, limit: int, priority: Priority, cost: int) -> Refusal:
        # Suggest the time the excess should take to drain at the measured throughput.
        limits = self.limits
        if bound == BOUND_DEADLINE:
            hint_s = self.queue_delay_s()
        elif bound == BOUND_LOOP:
            hint_s = 10 * self.shedder.lag_s  # the loop needs several windows to catch up
        else:
            excess = self.in_flight_cost + cost - limits.max_cost * SHARES[priority]
            rate = self._throughput.per_s()
            hint_s = 0.0 if rate is None else max(excess, 0.0) / rate
        delay_ms = min(max(int(hint_s * 1000), limits.min_retry_delay_ms), limits.max_retry_delay_ms)
        return Refusal(bound, what, limit, priority, delay_ms)


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

        probe = self._probe

        async def admitted(request: Any, context: grpc.aio.ServicerContext) -> Any:
            probe.touch()
            cost, priority = weigh(method, request)
            entry = door.enter(cost, priority, context.time_remaining())
            if isinstance(entry, Refusal):
                metrics.refused.labels(entry.bound, entry.priority.name.lower()).inc()
                self._log.refused(entry, method, door)
                await context.abort_with_status(_status(entry))
                raise AssertionError("abort_with_status returned")  # it always raises
            metrics.in_flight_cost.set(door.in_flight_cost)
            try:
                return await behavior(request, context)
            finally:
                door.leave(entry)
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
