"""The client's auto-batcher: concurrent calls coalesce into Execute batches (DESIGN.md §7).

As TigerBeetle's clients do: a call appends its command to a queue and waits for its own
reply; the queue is sent as one CommandBatch when it is full (by commands or bytes) or
when the event loop next runs its ready callbacks — that is, once every task that was
ready has had its turn to add a command — so a lone caller pays no waiting time and 64
concurrent callers share one round trip. Batches are sent without waiting for the ones
in flight (pipelining). Every caller keeps its own deadline (the command's `timeout_ms`,
and a local timer) and gets its own reply or its own error.

Bounds: at most `max_batch_commands` commands and about `max_batch_bytes` bytes per batch;
at most `max_pending_commands` commands queued or in flight per client — a caller beyond
waits (within its deadline) for room.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import grpc
from google.rpc import status_pb2

from engine.api import convert
from engine.api.batch import MAX_BATCH_COMMANDS
from engine.api.errors import status_of_rpc_error
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc
from engine.api.timeout_header import timeout_metadata
from engine.domain.errors import DeadlineExceeded


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """How a client coalesces concurrent calls (see the module doc)."""

    max_batch_commands: int = MAX_BATCH_COMMANDS  # the server refuses more
    max_batch_bytes: int = 1024 * 1024  # well under the server's 4 MiB message bound
    max_pending_commands: int = 8 * MAX_BATCH_COMMANDS  # queued + in flight

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch_commands <= MAX_BATCH_COMMANDS:
            raise ValueError(f"max_batch_commands must be in 1..{MAX_BATCH_COMMANDS}")
        if self.max_batch_bytes < 1 or self.max_pending_commands < self.max_batch_commands:
            raise ValueError("max_batch_bytes must be ≥ 1 and max_pending_commands ≥ max_batch_commands")


class CallFailed(Exception):
    """One attempt of a call ended with this status (a command's error or the batch's)."""

    def __init__(self, status: status_pb2.Status, *, whole_batch: bool = False) -> None:
        super().__init__(status.message)
        self.status = status
        self.whole_batch = whole_batch  # the Execute call itself failed (transport, UNIMPLEMENTED, ...)


class _Pending:
    __slots__ = ("command", "deadline", "future", "size_bytes")

    def __init__(self, command: pb.Command, deadline: float, future: asyncio.Future[pb.Reply]) -> None:
        self.command = command
        self.size_bytes = command.ByteSize()
        self.deadline = deadline
        self.future = future


class AutoBatcher:
    """One client's queue of commands and its batches in flight (one event loop)."""

    def __init__(self, stub: pb_grpc.InventoryStub, metadata: tuple[tuple[str, str], ...], policy: BatchPolicy) -> None:
        self._stub = stub
        self._metadata = metadata
        self._policy = policy
        self._queue: list[_Pending] = []
        self._queue_bytes = 0
        self._flush_handle: asyncio.Handle | None = None
        self._room = asyncio.Semaphore(policy.max_pending_commands)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._closed = False

    async def submit(self, command: pb.Command, deadline: float) -> pb.Reply:
        """The command's reply (never an error reply: that raises CallFailed)."""
        if self._closed:
            raise RuntimeError("the client is closed")
        loop = asyncio.get_running_loop()
        if self._room.locked():  # the queue is full: wait for room, within the deadline
            try:
                await asyncio.wait_for(self._room.acquire(), max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                raise DeadlineExceeded("no room in the client's batch queue before the deadline; not sent") from None
        else:
            await self._room.acquire()  # returns at once, without a task
        try:
            future: asyncio.Future[pb.Reply] = loop.create_future()
            self._enqueue(_Pending(command, deadline, future), loop)
            timer = loop.call_at(_loop_time(loop, deadline), _expire, future)
            try:
                reply = await future
            finally:
                timer.cancel()
        finally:
            self._room.release()
        if reply.WhichOneof("reply") == "error":
            raise CallFailed(convert.status_from_command_error(reply.error))
        return reply

    async def close(self) -> None:
        """Fail what is queued, cancel what is in flight."""
        self._closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("the client was closed before the call was sent"))
        self._queue.clear()
        for task in list(self._in_flight):
            task.cancel()
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    def _enqueue(self, pending: _Pending, loop: asyncio.AbstractEventLoop) -> None:
        if self._queue and self._queue_bytes + pending.size_bytes > self._policy.max_batch_bytes:
            self._flush()  # this command would make the batch too big: send what is there
        self._queue.append(pending)
        self._queue_bytes += pending.size_bytes
        if len(self._queue) >= self._policy.max_batch_commands:
            self._flush()
        elif self._flush_handle is None:
            # After every callback that is ready now: the tasks woken with this one add theirs.
            self._flush_handle = loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._queue:
            return
        batch, self._queue, self._queue_bytes = self._queue, [], 0
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        now = time.monotonic()
        live = [p for p in batch if not p.future.done()]  # a caller that timed out or left
        if not live:
            return
        request = pb.CommandBatch()
        for pending in live:
            # The server drops a command whose own budget ran out; ceil: never shorter than asked.
            pending.command.timeout_ms = max(1, math.ceil((pending.deadline - now) * 1000))
            request.commands.append(pending.command)
        timeout_s = max(max(p.deadline for p in live) - now, 0.0)
        try:
            metadata = (*self._metadata, timeout_metadata(timeout_s))  # the door's wire-wait measure
            reply = await self._stub.Execute(request, timeout=timeout_s, metadata=metadata)
        except grpc.aio.AioRpcError as err:
            _fail(live, CallFailed(status_of_rpc_error(err), whole_batch=True))
            return
        except BaseException as exc:  # cancelled by close(), or a bug: no caller may hang
            _fail(live, exc if isinstance(exc, Exception) else RuntimeError("the batch was cancelled"))
            raise
        if len(reply.replies) != len(live):
            _fail(live, RuntimeError(f"the server answered {len(reply.replies)} replies to {len(live)} commands"))
            return
        for pending, one in zip(live, reply.replies, strict=True):
            if not pending.future.done():
                pending.future.set_result(one)


def _fail(batch: list[_Pending], exc: BaseException) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(exc)


def _expire(future: asyncio.Future[pb.Reply]) -> None:
    if not future.done():
        # As a transport DEADLINE_EXCEEDED: the command may or may not have been applied;
        # a retry with the same request id learns which.
        future.set_exception(DeadlineExceeded("deadline exceeded while the batch was in flight; outcome unknown"))


def _loop_time(loop: asyncio.AbstractEventLoop, deadline: float) -> float:
    """A time.monotonic() deadline on the loop's clock (the same clock on CPython, but say so)."""
    return loop.time() + (deadline - time.monotonic())
