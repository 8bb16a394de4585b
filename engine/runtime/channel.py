"""A direct channel from a gateway to a shard on the same machine (DESIGN.md §7).

An op batch used to travel as a Ray actor call: the caller's core worker, the actor's core
worker thread, a hand-off into the actor's event loop and back, and Ray's task bookkeeping
on both sides — about 1 ms and 1.5 ms of CPU per call on this machine, whatever the batch
holds, and the largest share of a one-client order (bench/README.md, "Cheaper hops").
The shard's batches now go over a Unix socket that the shard actor opens in its own
event loop: one write and one read per call on each side.

Ray still starts, names, supervises and fences the shard; every other method (stats,
start, promote, snapshots) stays a Ray call. Only `apply` takes this path, and only when
the gateway runs on the shard's node (a Unix socket does not leave the machine); across
nodes the batches stay Ray calls.

Order. The server starts each frame's apply in arrival order, as Ray starts an actor's
calls in submission order, so batches in flight to a shard apply in the order the
gateway's micro-batcher sent them. Once the channel is open, the supervisor's next batch
waits for the Ray calls still in flight to land before it takes the channel.

Failure. A connection that breaks (the shard's process died, or the shard stopped) fails
every call waiting on it with ChannelBroken: their outcome is unknown, as when a Ray
actor call fails, and the caller answers UNAVAILABLE (clients retry with the same
request ids). Frames are bounded (MAX_FRAME_BYTES) and so are the calls a connection
runs at once (MAX_CALLS_IN_FLIGHT: beyond them the server stops reading).

The socket lives in a directory only this user can enter (mode 0700): what it carries is
pickled, exactly as Ray's own calls are, so no other user may connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import shutil
import struct
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger("lotwise.channel")

_HEADER = struct.Struct("!IQ")  # body bytes, call id
MAX_FRAME_BYTES = 1 << 30  # one batch (or its answers) pickled; a bulk load's batch is far smaller
MAX_CALLS_IN_FLIGHT = 64  # per connection, as the shard actor's Ray max_concurrency
_OK, _RAISED = 0, 1  # the answer is the results, or the exception apply raised

Apply = Callable[[list[Any]], Awaitable[list[Any]]]


class ChannelBroken(ConnectionError):
    """The connection to the shard is gone; calls waiting on it have an unknown outcome."""


def _frame(call_id: int, payload: Any) -> bytes:
    body = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    if len(body) > MAX_FRAME_BYTES:
        raise ValueError(f"a channel frame of {len(body)} bytes is over {MAX_FRAME_BYTES}")
    return _HEADER.pack(len(body), call_id) + body


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    size, call_id = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size > MAX_FRAME_BYTES:
        raise ChannelBroken(f"a channel frame of {size} bytes is over {MAX_FRAME_BYTES}")
    return call_id, await reader.readexactly(size)


class ChannelServer:
    """The shard's end: answers each frame with `apply`'s results (in the shard's loop)."""

    def __init__(self, apply: Apply) -> None:
        self._apply = apply
        self._server: asyncio.AbstractServer | None = None
        self._dir: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.path = ""
        self.calls = 0  # frames answered (the shard's stats show it)

    async def start(self) -> str:
        """Listen (idempotent); the socket's path."""
        if self._server is None:
            self._dir = tempfile.mkdtemp(prefix="lotwise-shard-")  # mode 0700: this user only
            self.path = os.path.join(self._dir, "apply.sock")
            self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        return self.path

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        room = asyncio.Semaphore(MAX_CALLS_IN_FLIGHT)
        self._writers.add(writer)
        try:
            while True:
                call_id, body = await _read_frame(reader)
                await room.acquire()  # full: stop reading (the caller's writes back up)
                # A task per frame, created in arrival order: each apply starts in that order.
                task = asyncio.get_running_loop().create_task(self._answer(call_id, body, writer, room))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError, ChannelBroken):
            pass  # the gateway went away (or sent garbage): its calls are its own to retry
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, call_id: int, body: bytes, writer: asyncio.StreamWriter, room: asyncio.Semaphore) -> None:
        try:
            try:
                answer: tuple[int, Any] = (_OK, await self._apply(pickle.loads(body)))
            except Exception as exc:  # apply's own failure travels back, as Ray would carry it
                answer = (_RAISED, exc)
            self.calls += 1
            try:
                frame = _frame(call_id, answer)
            except Exception as exc:  # an answer that does not pickle must still end the call
                frame = _frame(call_id, (_RAISED, RuntimeError(f"shard answer not sendable: {exc!r}")))
            if not writer.is_closing():
                writer.write(frame)
        finally:
            room.release()

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        for writer in list(self._writers):
            writer.close()  # the gateways' waiting calls fail now, as when the process ends
        for task in list(self._tasks):
            task.cancel()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class ChannelClient:
    """The gateway's end: one connection, many calls in flight, answers matched by id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._broken: ChannelBroken | None = None
        self._receiver = asyncio.get_running_loop().create_task(self._receive())

    @classmethod
    async def connect(cls, path: str) -> ChannelClient:
        reader, writer = await asyncio.open_unix_connection(path)
        return cls(reader, writer)

    @property
    def open(self) -> bool:
        return self._broken is None

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    async def call(self, ops: list[Any]) -> list[Any]:
        if self._broken is not None:
            raise self._broken
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        frame = _frame(call_id, ops)
        self._waiting[call_id] = future
        try:
            self._writer.write(frame)
            if self._writer.transport.get_write_buffer_size() > MAX_FRAME_BYTES:
                await self._writer.drain()  # the shard reads slower than we write: wait
        except Exception as exc:
            self._waiting.pop(call_id, None)
            self._fail(ChannelBroken(f"channel write failed: {exc}"))
            raise ChannelBroken(f"channel write failed: {exc}") from exc
        try:
            kind, value = await future
        finally:
            self._waiting.pop(call_id, None)
        if kind == _RAISED:
            raise value
        return list(value)

    async def _receive(self) -> None:
        try:
            while True:
                call_id, body = await _read_frame(self._reader)
                future = self._waiting.pop(call_id, None)
                if future is not None and not future.done():
                    future.set_result(pickle.loads(body))
        except asyncio.CancelledError:
            self._fail(ChannelBroken("channel closed"))
            raise
        except Exception as exc:  # EOF (the shard's process died or stopped), a reset, garbage
            self._fail(ChannelBroken(f"channel to the shard lost: {type(exc).__name__}: {exc}"))

    def _fail(self, broken: ChannelBroken) -> None:
        if self._broken is None:
            self._broken = broken
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(broken)
        self._writer.close()

    async def close(self) -> None:
        self._fail(ChannelBroken("channel closed"))
        self._receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._receiver
