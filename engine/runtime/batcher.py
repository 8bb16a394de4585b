"""Micro-batching between the gateway and one shard (DESIGN.md §7).

Ops queue per shard; a batch leaves at once when the shard is idle, and otherwise waits
for a free in-flight slot, filling up to `max_batch` meanwhile (so batches grow with the
load and stay small when idle). The queue is bounded: a full queue answers Overloaded
(RESOURCE_EXHAUSTED) instead of growing. An op whose caller's deadline passes before
dispatch — or would pass during the shard call, judged by the recent calls' duration —
is answered DeadlineExceeded and never sent, so it is never applied: under overload the
shard does not spend itself on answers nobody waits for, and the caller hears "not
applied" instead of a transport timeout's "outcome unknown".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from engine.domain.errors import DeadlineExceeded, Overloaded, Unavailable

_CALL_EWMA = 0.2  # weight of the newest shard call in `call_s`: a few calls make the estimate

SendBatch = Callable[[list[Any]], Awaitable[list[Any]]]
BatchObserver = Callable[[int, float, bool], None]  # (ops, seconds, ok) of each shard call

# Why the batcher answered ops with a refusal instead of the shard's answer (metrics label).
REFUSED_QUEUE = "queue"  # the shard's queue was full: Overloaded (RESOURCE_EXHAUSTED)
REFUSED_DEADLINE = "deadline"  # its deadline would pass before the answer: never sent
REFUSED_UNAVAILABLE = "unavailable"  # the shard call failed (a dead or restarting process)
REFUSED_RECOVERING = "recovering"  # the shard answered that it is recovering


@runtime_checkable
class RefusalObserver(Protocol):
    """An observer that also wants to hear of refusals: `refused(shard, reason, ops)`."""

    def refused(self, shard: str, reason: str, ops: int) -> None: ...


@dataclass(frozen=True, slots=True)
class BatchLimits:
    max_batch: int = 256
    window_ms: float = 1.0  # how long a batch may wait to fill while the shard is busy
    max_pending: int = 10_000
    max_in_flight: int = 2


class MicroBatcher:
    def __init__(
        self,
        name: str,
        send: SendBatch,
        limits: BatchLimits = BatchLimits(),
        observe: BatchObserver | None = None,
    ) -> None:
        self.name = name
        self._observe = observe
        # Refusals are counted where the observer can (RuntimeMetrics); a plain callable cannot.
        self._refused = observe.refused if isinstance(observe, RefusalObserver) else None
        self._send = send
        self._limits = limits
        self._pending: deque[tuple[Any, asyncio.Future[Any], float | None]] = deque()
        self._in_flight = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batches_sent = 0
        self.ops_sent = 0
        self.call_s = 0.0  # recent shard calls' duration (EWMA): what a dispatched op still needs

    def submit(self, op: Any, deadline: float | None = None, *, essential: bool = False) -> asyncio.Future[Any]:
        """Queue one op; the future resolves to the shard's answer for it.

        `essential` ops (the aborts that undo a refused hold) are queued even when the queue
        is full: refusing them would leave stock held until the hold's TTL. They stay
        bounded: at most one per line of the in-flight requests (max_concurrent_rpcs)."""
        if self._closed:
            raise Unavailable(f"shard {self.name} is shutting down")
        if not essential and len(self._pending) >= self._limits.max_pending:
            self._count_refused(REFUSED_QUEUE, 1)
            raise Overloaded(f"queue of shard {self.name}", self._limits.max_pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future, deadline))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wakeup.set()
        return future

    async def call(self, op: Any, deadline: float | None = None) -> Any:
        return await self.submit(op, deadline)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def _run(self) -> None:
        limits = self._limits
        while not self._closed:
            if not self._pending or self._in_flight >= limits.max_in_flight:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._in_flight and len(self._pending) < limits.max_batch:
                # Busy: give this batch a short window to fill before it takes a slot.
                await asyncio.sleep(limits.window_ms / 1000)
                if self._in_flight >= limits.max_in_flight:
                    continue
            elif not self._in_flight:
                # Idle: leave now, but after what is already due in this turn of the loop
                # (e.g. the commands of an Execute batch that waited for an earlier one on
                # the same pair to queue its ops), so ops that arrive together leave together.
                await asyncio.sleep(0)
            batch = self._take(limits.max_batch)
            if batch:
                self._in_flight += 1
                asyncio.get_running_loop().create_task(self._dispatch(batch))

    def _take(self, n: int) -> list[tuple[Any, asyncio.Future[Any]]]:
        """Up to `n` ops' worth: an op that carries several commands (a hold's parts,
        engine.domain.hold_parts) says so by its `weight`, so a batch — and the journal
        entry it becomes — stays as bounded as one of `n` plain ops (one such op alone may go)."""
        # An op whose deadline falls before the call can answer would be applied for nobody.
        answered_at = time.monotonic() + self.call_s
        batch: list[tuple[Any, asyncio.Future[Any]]] = []
        late = 0
        weight = 0
        while self._pending and weight < n:
            op = self._pending[0][0]
            op_weight: int = getattr(op, "weight", 1)
            if batch and weight + op_weight > n:
                break
            op, future, deadline = self._pending.popleft()
            if future.done():  # the caller gave up (cancelled): do not apply it
                continue
            if deadline is not None and deadline <= answered_at:
                future.set_exception(DeadlineExceeded())
                late += 1
                continue
            batch.append((op, future))
            weight += op_weight
        if late:
            self._count_refused(REFUSED_DEADLINE, late)
        return batch

    def _count_refused(self, reason: str, ops: int) -> None:
        if self._refused is not None:
            self._refused(self.name, reason, ops)

    async def _dispatch(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        started = time.perf_counter()
        ok = False
        try:
            results = await self._send([op for op, _ in batch])
            ok = True
        except Exception as exc:  # the shard (process) failed: the batch is not acknowledged
            failure = exc if isinstance(exc, Unavailable) else Unavailable(f"shard {self.name}: {exc}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            self._count_refused(REFUSED_UNAVAILABLE, len(batch))
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            self.batches_sent += 1
            self.ops_sent += len(batch)
            if self._refused is not None and results and isinstance(results[0], Unavailable):
                # A host that is not ready answers the whole batch Unavailable (host._unavailable).
                self._count_refused(REFUSED_RECOVERING, len(results))
        finally:
            elapsed_s = time.perf_counter() - started
            if ok:  # a failed call (a dead shard, a recovery) says nothing about the next one
                self.call_s += _CALL_EWMA * (elapsed_s - self.call_s)
            self._in_flight -= 1
            self._wakeup.set()
            if self._observe is not None:
                self._observe(len(batch), elapsed_s, ok)

    async def close(self) -> None:
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._pending:
            _, future, _ = self._pending.popleft()
            if not future.done():
                future.set_exception(Unavailable(f"shard {self.name} is shutting down"))
