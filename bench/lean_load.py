"""A lean raw-gRPC load generator for bench/overload.py: the server, not the client, saturates.

LotwiseClient spends ~0.5–1 ms of CPU per call (domain types, auto-batching, futures);
at a few thousand calls per second that is the load generator's whole core, so an
overload curve driven by it measures the client. Here requests are bytes built by
concatenation (the per-order part is the request id; the rest is encoded once), answers
of unary calls are not decoded at all (the hold id is ours), and only an Execute reply
or a refusal's status is parsed. The retry behaviour is LotwiseClient's: the same request
id, RetryPolicy's jittered exponential back-off with the server's RetryInfo as a floor,
never past the deadline, a RetryBudget so retries cannot amplify the overload, and (unless
`throttle=False`) its AdaptiveThrottle: attempts refused locally are counted apart
("throttled"), and (with `limit="aimd"`) its ConcurrencyLimit, or (`limit="gradient"`)
a GradientLimit: an attempt beyond the channel's limit fails at once, locally, counted
"throttled" too. A caller whose call ends
refused (shed or throttled) waits a back-off — the server's RetryInfo, at least a jittered
one — before its next call, as a user told "overloaded, retry later" would; a closed loop
that came back at once would not.

Wire format used (protos/lotwise/v1/inventory.proto): ReserveRequest{request_id=1,
hold_id=2, lines=3, ttl_ms=4}, CommitRequest{request_id=1, hold_id=2},
CommandBatch{commands=1}, Command{reserve=6, commit=7}, ReplyBatch{replies=1},
Reply{error=16}. `check_encoding` proves the concatenation equals protobuf's at start.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import grpc

from engine.api.client import AdaptiveThrottle, ConcurrencyLimit, RetryBudget, RetryPolicy, accepted, limit_answer
from engine.api.errors import is_retryable, retry_delay_s, status_of_rpc_error
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gradient import GradientLimit
from engine.api.timeout_header import timeout_metadata

OUTCOMES = ("ok", "shed", "throttled", "deadline", "cancelled_unknown", "other")
_RETRYABLE_CODES = (grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], grpc.StatusCode.UNAVAILABLE.value[0])
_DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
_OVERLOADED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
_CANCELLED_UNKNOWN = (grpc.StatusCode.CANCELLED.value[0], grpc.StatusCode.UNKNOWN.value[0])


@dataclass
class Tally:
    """What one worker saw in the measured window."""

    orders: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    latencies_ms: list[float] = field(default_factory=list)  # successful calls (commands) only
    # Those that succeeded at their first attempt: the wait the door lets a call have,
    # without the back-offs of retried ones.
    first_latencies_ms: list[float] = field(default_factory=list)
    throttled_retries: int = 0
    cpu_s: float = 0.0  # this worker's CPU over the window (user + system)
    # How late this process's event loop ran a 5 ms timer, sampled over the window: when
    # it is long, the callers' latency is the load process's own queue, not the server's.
    loop_lag_ms: list[float] = field(default_factory=list)

    def outcome(self, code: int) -> None:
        if code == _OVERLOADED:
            self.outcomes["shed"] += 1
        elif code == _DEADLINE:
            self.outcomes["deadline"] += 1
        elif code in _CANCELLED_UNKNOWN:
            self.outcomes["cancelled_unknown"] += 1
        else:
            self.outcomes["other"] += 1


LAG_PROBE_S = 0.005


async def probe_loop_lag(tally: Tally, stop_at: float) -> None:
    """Sample how late the loop wakes a timer until `stop_at` (into `tally.loop_lag_ms`)."""
    while (now := time.monotonic()) < stop_at:
        await asyncio.sleep(LAG_PROBE_S)
        tally.loop_lag_ms.append(max(time.monotonic() - now - LAG_PROBE_S, 0.0) * 1000)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


class Encoder:
    """Pre-encoded orders: only the request ids are encoded per call."""

    def __init__(self, skus: int, site: str, ttl_ms: int) -> None:
        self._suffix = [
            pb.ReserveRequest(
                lines=[pb.ReserveLine(sku=f"sku-{i}", site=site, qty=1)], ttl_ms=ttl_ms
            ).SerializeToString()
            for i in range(skus)
        ]

    def reserve(self, hold_id: bytes, sku: int) -> bytes:
        return _field(1, hold_id) + _field(2, hold_id) + self._suffix[sku % len(self._suffix)]

    def commit(self, hold_id: bytes) -> bytes:
        return _field(1, b"c-" + hold_id) + _field(2, hold_id)

    @staticmethod
    def batch(commands: list[bytes]) -> bytes:
        return b"".join(_field(1, command) for command in commands)

    def reserve_command(self, hold_id: bytes, sku: int) -> bytes:
        return _field(6, self.reserve(hold_id, sku))

    def commit_command(self, hold_id: bytes) -> bytes:
        return _field(7, self.commit(hold_id))


def check_encoding(encoder: Encoder, site: str, ttl_ms: int) -> None:
    """The hand-made bytes are what protobuf makes (a changed proto fails here, not silently)."""
    line = pb.ReserveLine(sku="sku-3", site=site, qty=1)
    want = pb.ReserveRequest(request_id="h1", hold_id="h1", lines=[line], ttl_ms=ttl_ms)
    if pb.ReserveRequest.FromString(encoder.reserve(b"h1", 3)) != want:
        raise AssertionError("lean ReserveRequest encoding differs from protobuf's")
    if pb.CommitRequest.FromString(encoder.commit(b"h1")) != pb.CommitRequest(request_id="c-h1", hold_id="h1"):
        raise AssertionError("lean CommitRequest encoding differs from protobuf's")
    batch = pb.CommandBatch.FromString(
        Encoder.batch([encoder.reserve_command(b"h1", 3), encoder.commit_command(b"h1")])
    )
    if [c.WhichOneof("command") for c in batch.commands] != ["reserve", "commit"] or batch.commands[0].reserve != want:
        raise AssertionError("lean CommandBatch encoding differs from protobuf's")


class LeanCaller:
    """Raw calls with LotwiseClient's retry behaviour; one per worker (shares the budget)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        tally: Tally,
        deadline_s: float,
        wire_header: bool = True,
        throttle: bool = True,
        pause_after_refusal: bool = True,
        limit: str = "",
        tolerance: float = 0.0,
    ) -> None:
        # No serializers: requests and answers are bytes.
        raw = grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]
        self._reserve: raw = channel.unary_unary("/lotwise.v1.Inventory/Reserve")
        self._commit: raw = channel.unary_unary("/lotwise.v1.Inventory/Commit")
        self._execute: raw = channel.unary_unary("/lotwise.v1.Inventory/Execute")
        self._tally = tally
        self._deadline_s = deadline_s
        self._policy = RetryPolicy()
        self._rng = random.Random()
        self.budget = RetryBudget()
        self.throttle = AdaptiveThrottle() if throttle else None
        # One per channel, as LotwiseClient's: "aimd", "gradient", or "" (none); `tolerance`
        # > 0 sets the GradientLimit's (0: its default).
        self.limit: ConcurrencyLimit | GradientLimit | None = None
        if limit == "aimd":
            self.limit = ConcurrencyLimit()
        elif limit == "gradient":
            self.limit = GradientLimit(tolerance=tolerance) if tolerance > 0 else GradientLimit()
        elif limit:
            raise ValueError(f"unknown limit {limit!r}: 'aimd', 'gradient' or ''")
        self._wire_header = wire_header  # False: a caller as before issue 19's wire wait (no header)
        self._pause = pause_after_refusal  # False: the next call follows a refused one at once

    def _allow(self, cost: int = 1, critical: bool = False) -> bool:
        """The adaptive throttle's word on an attempt of `cost` commands (tallied if refused);
        commits (`critical`) are never throttled, as LotwiseClient's."""
        throttle = self.throttle
        if throttle is None or critical or all([throttle.allow() for _ in range(cost)]):
            return True
        self._tally.outcomes["throttled"] += cost
        return False

    def _acquire(self, cost: int = 1, critical: bool = False) -> float | None:
        """A slot under the concurrency limit (its start), or None: refused, tallied "throttled"."""
        if self.limit is None:
            return 0.0
        started = self.limit.try_acquire(cost, critical)
        if started is None:
            self._tally.outcomes["throttled"] += cost
        return started

    def _release(self, started: float, cost: int, answer: str) -> None:
        if self.limit is not None:
            self.limit.release(started, cost, answer)

    def _answered_code(self, code: int, cost: int = 1) -> None:
        if self.throttle is not None:
            for _ in range(cost):
                self.throttle.answered(accepted(code))

    async def back_off(self, hint_s: float | None = None) -> None:
        """Before the next call after a refused one: RetryInfo, at least a jittered back-off."""
        if self._pause:
            await asyncio.sleep(self._policy.backoff_s(self._policy.max_attempts, self._rng, hint_s))

    def _metadata(self, timeout_s: float) -> tuple[tuple[str, str], ...]:
        """The timeout header the door measures the wait before it by (LotwiseClient sends it too)."""
        return (timeout_metadata(timeout_s),) if self._wire_header else ()

    async def unary(self, reserve: bool, request: bytes) -> bool:
        """One unary call (with retries); True when it succeeded."""
        method = self._reserve if reserve else self._commit
        started = time.monotonic()
        deadline = started + self._deadline_s
        attempt = 0
        while True:
            attempt += 1
            if not self._allow(critical=not reserve) or (slot := self._acquire(critical=not reserve)) is None:
                await self.back_off()
                return False
            timeout_s = max(deadline - time.monotonic(), 0.001)
            try:
                await method(request, timeout=timeout_s, metadata=self._metadata(timeout_s))
            except grpc.aio.AioRpcError as err:
                code = err.code().value[0]
                self._release(slot, 1, limit_answer(code))
                self._answered_code(code)
                delay = self._retry_delay(err, attempt, deadline)
                if delay is None:
                    self._tally.outcome(code)
                    if code == _OVERLOADED:
                        await self.back_off(retry_delay_s(status_of_rpc_error(err)))
                    return False
                await asyncio.sleep(delay)
                continue
            self._release(slot, 1, "ok")
            self._answered_code(0)
            self.budget.on_success()
            self._tally.outcomes["ok"] += 1
            elapsed_ms = (time.monotonic() - started) * 1000
            self._tally.latencies_ms.append(elapsed_ms)
            if attempt == 1:
                self._tally.first_latencies_ms.append(elapsed_ms)
            return True

    async def execute(self, commands: list[bytes], critical: bool = False) -> list[bool]:
        """One Execute batch (with retries); which commands succeeded. A batch the door
        refuses is sent again whole, commands refused retryably again on their own."""
        started = time.monotonic()
        deadline = started + self._deadline_s
        ok = [False] * len(commands)
        todo = list(range(len(commands)))
        attempt = 0
        while todo:
            attempt += 1
            cost = len(todo)
            if not self._allow(cost, critical) or (slot := self._acquire(cost, critical)) is None:
                await self.back_off()
                return ok
            timeout_s = max(deadline - time.monotonic(), 0.001)
            try:
                raw = await self._execute(
                    Encoder.batch([commands[k] for k in todo]),
                    timeout=timeout_s,
                    metadata=self._metadata(timeout_s),
                )
            except grpc.aio.AioRpcError as err:
                code = err.code().value[0]
                self._release(slot, cost, limit_answer(code))
                self._answered_code(code, len(todo))
                delay = self._retry_delay(err, attempt, deadline, len(todo))
                if delay is None:
                    for _ in todo:
                        self._tally.outcome(code)
                    if code == _OVERLOADED:
                        await self.back_off(retry_delay_s(status_of_rpc_error(err)))
                    return ok
                await asyncio.sleep(delay)
                continue
            # A batch answered with commands refused for load counts as refused for the limit.
            reply = pb.ReplyBatch.FromString(raw)
            shed = any(answer.error.code == _OVERLOADED for answer in reply.replies if answer.HasField("error"))
            self._release(slot, cost, "overloaded" if shed else "ok")
            todo = self._answered(reply, todo, ok, started, attempt == 1)
            if todo:
                delay = self._command_retry_delay(len(todo), attempt, deadline)
                if delay is None:
                    self._tally.outcomes["shed"] += len(todo)  # retryable refusals, not retried
                    await self.back_off()
                    return ok
                await asyncio.sleep(delay)
        return ok

    def _answered(
        self, reply: pb.ReplyBatch, todo: list[int], ok: list[bool], started: float, first: bool
    ) -> list[int]:
        """Tally a batch's replies; the commands to retry (refused retryably)."""
        elapsed_ms = (time.monotonic() - started) * 1000
        retry = []
        for k, answer in zip(todo, reply.replies, strict=True):
            if answer.WhichOneof("reply") != "error":
                self._answered_code(0)
                ok[k] = True
                self.budget.on_success()
                self._tally.outcomes["ok"] += 1
                self._tally.latencies_ms.append(elapsed_ms)
                if first:
                    self._tally.first_latencies_ms.append(elapsed_ms)
            elif answer.error.code in _RETRYABLE_CODES:
                self._answered_code(answer.error.code)
                retry.append(k)
            else:
                self._answered_code(answer.error.code)
                self._tally.outcome(answer.error.code)
        return retry

    def _retry_delay(self, err: grpc.aio.AioRpcError, attempt: int, deadline: float, cost: int = 1) -> float | None:
        """The back-off before retrying a refused call, or None: not retryable, out of
        attempts, out of budget (each command takes a token) or out of time."""
        status = status_of_rpc_error(err)
        if not is_retryable(status):
            return None
        return self._delay(cost, attempt, deadline, retry_delay_s(status))

    def _command_retry_delay(self, cost: int, attempt: int, deadline: float) -> float | None:
        return self._delay(cost, attempt, deadline, None)

    def _delay(self, cost: int, attempt: int, deadline: float, hint_s: float | None) -> float | None:
        allowed = all([self.budget.on_retryable_failure() for _ in range(cost)])
        if not allowed:
            self._tally.throttled_retries += cost
            return None
        if attempt >= self._policy.max_attempts:
            return None
        delay = self._policy.backoff_s(attempt, self._rng, hint_s)
        return delay if time.monotonic() + delay < deadline else None
