"""Command batches on the wire: Execute and Stream of lotwise.v1.Inventory (DESIGN.md §7).

A batch is decoded once (by gRPC), its commands are handed to the gateway all at once —
so the gateway's micro-batcher packs the commands of one shard into one call to it — and
the replies are encoded once. Each command runs through the very handler its unary call
uses, so request ids, idempotency and refusals are the same on both paths; a refusal is
that command's reply, never the batch's.

Order. Commands of one batch that touch the same pair (or name the same hold) apply in
the batch's order; the others run concurrently. Each command's Footprint says which pairs
and holds it touches and whether it is *eager* — it queues all its shard ops in its first
step, before it suspends (engine.runtime.gateway.router.send_all), so a later command on
the same pair only has to start after it (commands start in the batch's order). A later
command waits for an earlier non-eager one (a multi-pair commit, whose commits follow a
pre-check read) on a shared key until that one has queued its last ops (router.ops_queued)
or ended; a *barrier* (a catalog change, a command naming a
hold whose pairs are unknown here) waits for every command before it, and every command
after it waits for it.

Bounds (TIGER_STYLE: every queue has one): at most MAX_BATCH_COMMANDS commands per batch
(beyond: RESOURCE_EXHAUSTED for the batch, reason BATCH_TOO_LARGE) and at most
MAX_STREAM_BATCHES_IN_FLIGHT batches running per stream (beyond: the server stops reading
the stream, so gRPC's flow control slows the caller down).
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from engine.api import convert
from engine.api.errors import ERROR_DOMAIN, REASON_INTERNAL, to_rpc_status
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.domain.errors import DomainError
from engine.runtime.gateway.router import ops_queued

log = structlog.get_logger("lotwise.api")

MAX_BATCH_COMMANDS = 1024
MAX_STREAM_BATCHES_IN_FLIGHT = 64
REASON_BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
REASON_MALFORMED_REQUEST = "MALFORMED_REQUEST"

# What a unary handler becomes for a batch: (the command's request, its deadline) → reply.
CommandHandler = Callable[[Any, float | None], Awaitable[Message]]


@dataclass(frozen=True, slots=True)
class Footprint:
    """What a command touches, for ordering the commands of one batch (see the module doc)."""

    keys: frozenset[Hashable] = frozenset()  # its pairs (and holds)
    eager: bool = False  # queues every shard op in its first step
    barrier: bool = False  # orders against every command of the batch


BARRIER = Footprint(barrier=True)
FootprintOf = Callable[[pb.Command], Footprint]
# Per command: the earlier commands it waits for, each (index, until it is done: else started).
Plan = list[list[tuple[int, bool]]]


def plan_order(footprints: Sequence[Footprint]) -> Plan | None:
    """What each command waits for so that commands sharing a key apply in batch order;
    None when nothing waits (every command may start at once, in order)."""
    plan: Plan = [[] for _ in footprints]
    last_on: dict[Hashable, int] = {}
    since_barrier: list[int] = []
    barrier: int | None = None
    for i, fp in enumerate(footprints):
        if fp.barrier:
            plan[i] = [(j, True) for j in (*([] if barrier is None else [barrier]), *since_barrier)]
            barrier, since_barrier = i, []
            last_on.clear()
            continue
        before = {last_on[k] for k in fp.keys if k in last_on}
        # An eager predecessor that starts at once has queued its ops before this one starts;
        # one that waits itself must be seen to start; a non-eager one, to end.
        waits = [
            (j, True) if not footprints[j].eager else (j, False)
            for j in sorted(before)
            if plan[j] or not footprints[j].eager
        ]
        if barrier is not None:
            waits.append((barrier, True))
        plan[i] = waits
        since_barrier.append(i)
        for k in fp.keys:
            last_on[k] = i
    return plan if any(plan) else None


class Undecodable:
    """A request whose bytes do not parse (invalid UTF-8 in a string, a truncated field).

    The lenient deserializers of `add_inventory_service` hand this to the method instead
    of raising inside gRPC — which would answer UNKNOWN with a Python class name — so the
    method answers INVALID_ARGUMENT with ErrorInfo MALFORMED_REQUEST.
    """

    __slots__ = ("error", "message_type")

    def __init__(self, message_type: str, error: str) -> None:
        self.message_type = message_type
        self.error = error

    def status(self) -> grpc.Status:
        return malformed_status([("", f"a {self.message_type} that does not decode: {self.error}")])


def lenient(message: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    """`message.FromString` that returns Undecodable instead of raising."""
    name = message.DESCRIPTOR.full_name

    def decode(data: bytes) -> Message | Undecodable:
        try:
            return message.FromString(data)
        except DecodeError as err:
            return Undecodable(name, str(err))

    return decode


class BatchRunner:
    """Checks a CommandBatch's shape and runs its commands concurrently."""

    def __init__(
        self,
        handlers: Mapping[str, CommandHandler],
        *,
        retry_delay_ms: int,
        max_commands: int = MAX_BATCH_COMMANDS,
        max_stream_batches: int = MAX_STREAM_BATCHES_IN_FLIGHT,
        footprint: FootprintOf | None = None,
    ) -> None:
        if max_commands < 1 or max_stream_batches < 1:
            raise ValueError("batch bounds must be ≥ 1")
        self._handlers = dict(handlers)
        # Without a footprint every command is a barrier: the batch runs one command at a time.
        self._footprint = footprint or (lambda _: BARRIER)
        self.retry_delay_ms = retry_delay_ms
        self.max_commands = max_commands
        self.max_stream_batches = max_stream_batches

    def check(self, batch: pb.CommandBatch) -> grpc.Status | None:
        """The status refusing the whole batch, or None when its commands may run."""
        size = len(batch.commands)
        if size > self.max_commands:
            return _too_large(size, self.max_commands)
        empty = [i for i, command in enumerate(batch.commands) if command.WhichOneof("command") is None]
        if empty:
            # The server cannot tell what such a slot meant (or it is a kind newer than this
            # server): answering the others as if the batch were whole could mislead.
            return malformed_status(
                [(f"commands[{i}]", "carries no command (or a kind this server does not know)") for i in empty[:16]]
            )
        return None

    async def run(self, batch: pb.CommandBatch, deadline: float | None) -> pb.ReplyBatch:
        """Every command's reply or error, in the batch's order (the batch must pass check)."""
        now = time.monotonic()
        commands = batch.commands
        if len(commands) == 1:
            results = [await self._one(commands[0], now, deadline)]
        else:
            plan = plan_order([self._footprint(c) for c in commands])
            if plan is None:
                results = await asyncio.gather(*(self._one(c, now, deadline) for c in commands))
            else:
                results = await self._run_ordered(commands, plan, now, deadline)
        out = pb.ReplyBatch(batch_id=batch.batch_id)
        for kind, result in results:
            getattr(out.replies.add(), kind).CopyFrom(result)
        return out

    async def _run_ordered(
        self, commands: Sequence[pb.Command], plan: Plan, now: float, deadline: float | None
    ) -> list[tuple[str, Message]]:
        """Every command as a task, each first waiting for what the plan says."""
        loop = asyncio.get_running_loop()
        watched = {j for waits in plan for j, _ in waits}
        started = {j: loop.create_future() for j in watched}
        done = {j: loop.create_future() for j in watched}

        def settle(future: asyncio.Future[None]) -> None:
            if not future.done():
                future.set_result(None)

        async def run(i: int, command: pb.Command) -> tuple[str, Message]:
            for j, until_done in plan[i]:
                await (done if until_done else started)[j]
            if i in started:
                started[i].set_result(None)
            if i in done:
                # "Done" for the commands behind it comes as soon as its last ops are
                # queued (a multi-pair commit's commits): theirs queue right behind them.
                ops_queued.set(functools.partial(settle, done[i]))
            try:
                return await self._one(command, now, deadline)
            finally:
                if i in done:
                    settle(done[i])

        return list(await asyncio.gather(*(run(i, c) for i, c in enumerate(commands))))

    async def _one(self, command: pb.Command, now: float, batch_deadline: float | None) -> tuple[str, Message]:
        kind = command.WhichOneof("command")
        assert kind is not None, "run() takes checked batches only"
        deadline = batch_deadline
        if command.timeout_ms > 0:
            own = now + command.timeout_ms / 1000
            deadline = own if deadline is None else min(deadline, own)
        try:
            return kind, await self._handlers[kind](getattr(command, kind), deadline)
        except DomainError as err:
            status = to_rpc_status(err, retry_delay_ms=self.retry_delay_ms)
            # As the unary path's interceptor does: every refusal is logged at info.
            log.info("batch command refused", kind=kind, code=err.code, error=err.message)
            return "error", convert.command_error_from_status(status)
        except Exception:  # a bug; asyncio.CancelledError (a BaseException) passes through
            incident_id = uuid.uuid4().hex[:16]
            log.exception("batch command failed", kind=kind, incident_id=incident_id)
            return "error", _internal(incident_id)


async def serve_stream(
    runner: BatchRunner, requests: AsyncIterator[pb.CommandBatch], context: grpc.aio.ServicerContext
) -> None:
    """Answer each batch of a stream as soon as it is done, at most `max_stream_batches` at once."""
    window = asyncio.Semaphore(runner.max_stream_batches)
    write_lock = asyncio.Lock()  # grpc.aio allows one write at a time
    running: set[asyncio.Task[None]] = set()
    remaining = context.time_remaining()
    deadline = None if remaining is None else time.monotonic() + max(remaining, 0.0)

    async def answer(batch: pb.CommandBatch) -> None:
        try:
            reply = await runner.run(batch, deadline)
            async with write_lock:
                await context.write(reply)
        finally:
            window.release()

    try:
        try:
            async for batch in requests:
                if isinstance(batch, Undecodable):
                    await context.abort_with_status(batch.status())
                refusal = runner.check(batch)
                if refusal is not None:
                    await context.abort_with_status(refusal)
                await window.acquire()  # a full window stops reading: flow control, not a refusal
                task = asyncio.create_task(answer(batch))
                running.add(task)
                task.add_done_callback(running.discard)
        except DecodeError:
            await context.abort_with_status(malformed_status([("", "a CommandBatch that does not decode")]))
        if running:
            await asyncio.gather(*running)
    finally:
        for task in running:
            task.cancel()


def malformed_status(violations: list[tuple[str, str]]) -> grpc.Status:
    """INVALID_ARGUMENT for a whole request (a batch), with BadRequest and ErrorInfo MALFORMED_REQUEST."""
    bad = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in violations]
    )
    info = error_details_pb2.ErrorInfo(reason=REASON_MALFORMED_REQUEST, domain=ERROR_DOMAIN)
    message = "malformed request: " + "; ".join(f"{f}: {d}" if f else d for f, d in violations)
    return _grpc_status(code_pb2.INVALID_ARGUMENT, message, [bad, info])


def _too_large(size: int, limit: int) -> grpc.Status:
    # "larger than max" marks it as never retryable as is (engine.api.errors.is_retryable).
    info = error_details_pb2.ErrorInfo(
        reason=REASON_BATCH_TOO_LARGE,
        domain=ERROR_DOMAIN,
        metadata={"what": "batch commands", "limit": str(limit), "size": str(size)},
    )
    message = f"a batch of {size} commands is larger than max {limit} commands; split it"
    return _grpc_status(code_pb2.RESOURCE_EXHAUSTED, message, [info])


def _internal(incident_id: str) -> pb.CommandError:
    return pb.CommandError(
        code=code_pb2.INTERNAL,
        message=f"internal error (incident {incident_id})",
        reason=REASON_INTERNAL,
        domain=ERROR_DOMAIN,
        metadata={"incident_id": incident_id},
    )


def _grpc_status(code: int, message: str, details: list[Message]) -> grpc.Status:
    status = status_pb2.Status(code=code, message=message)
    for detail in details:
        status.details.add().Pack(detail)
    return rpc_status.to_status(status)
