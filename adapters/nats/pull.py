"""What every durable pull consumer of Lotwise shares: the history sink, the event bus and
ingestion each follow a stream with a bound pull subscription that must survive the link
reconnecting from scratch, and a background task that must stop cleanly or at once."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from adapters.nats.journal import NatsLink


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
