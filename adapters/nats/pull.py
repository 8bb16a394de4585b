"""What every durable pull consumer of Lotwise shares: the history sink, the event bus and
ingestion each follow a stream with a bound pull subscription that must survive the link
reconnecting from scratch, a background task that must stop cleanly or at once, a position
to report and to wait for, and a way to forget that position."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from nats.js.errors import NotFoundError

from adapters.nats.journal import NatsLink

_T = TypeVar("_T")


class DurablePull:
    """A pull subscription bound to an existing durable consumer, made again whenever the
    link had to reconnect from scratch (a subscription belongs to one connection).

    The client may buffer as many messages as the consumer lets be unacknowledged
    (`max_ack_pending`, the server's own bound): a smaller client-side limit would make
    nats-py drop messages a late pull delivers ("slow consumer"), and each dropped message
    waits out ack_wait before JetStream sends it again."""

    def __init__(self, link: NatsLink, stream: str, durable: str, max_ack_pending: int, max_msg_bytes: int) -> None:
        self._link = link
        self.stream = stream
        self.durable = durable
        self._max_pending = max_ack_pending + 64  # + the status messages pulls end with
        self._max_msg_bytes = max_msg_bytes
        self._psub: Any = None
        self._nc: Any = None

    async def get(self) -> Any:
        nc, js = await self._link.client()
        if self._psub is None or nc is not self._nc:
            self._psub = await js.pull_subscribe_bind(
                durable=self.durable,
                stream=self.stream,
                pending_msgs_limit=self._max_pending,
                pending_bytes_limit=self._max_pending * self._max_msg_bytes,
            )
            self._nc = nc
        return self._psub

    async def close(self) -> None:
        psub, self._psub, self._nc = self._psub, None, None
        if psub is not None:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()


async def cancel_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait until it has finished, whatever it raised."""
    if task is None:
        return
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await task


async def finish_task(task: asyncio.Task[Any] | None, timeout_s: float) -> bool:
    """Let `task` finish on its own for at most `timeout_s`, then cancel it. True when it
    finished in time (a stopping consumer flushed what it held)."""
    if task is None:
        return True
    finished = True
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout_s)
    except (TimeoutError, Exception):
        finished = False
    await cancel_task(task)
    return finished


@dataclass(frozen=True, slots=True)
class Positions:
    """Where a stream is, and how far a durable consumer of it has got (asks the server)."""

    stream_position: int  # the stream's last sequence
    acked_position: int  # the consumer's ack floor
    pending_messages: int  # not yet delivered + delivered and not yet acked


async def consumer_positions(link: NatsLink, stream: str, consumer: str, timeout_s: float) -> Positions:
    _, js = await link.client()
    info = await js.consumer_info(stream, consumer, timeout=timeout_s)
    state = (await js.stream_info(stream)).state
    return Positions(
        stream_position=int(state.last_seq or 0),
        acked_position=int(info.ack_floor.stream_seq if info.ack_floor else 0),
        pending_messages=int((info.num_pending or 0) + (info.num_ack_pending or 0)),
    )


async def wait_until(
    probe: Callable[[], Awaitable[_T]], done: Callable[[_T], bool], timeout_s: float, poll_s: float, what: str
) -> _T:
    """Poll `probe` until `done` says so; TimeoutError naming `what` and the last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} still behind after {timeout_s}s: {value}")
        await asyncio.sleep(poll_s)


async def delete_consumer(link: NatsLink, consumer: str, stream: str = "") -> None:
    """Forget a durable consumer's position (on the journal unless `stream` names another
    stream): its next follower starts again from the stream's first message."""
    _, js = await link.client()
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(stream or link.config.stream, consumer)
