"""Routing and micro-batching: every op a gateway sends goes through here (DESIGN.md §6–7).

An op goes to its pair's shard (or a named shard) through that shard's micro-batcher. A
pair can move while an op is in flight (a hot pair pinned to a shard of its own): the
old shard answers CellMoved and the router follows, learning the new directory.

`send_all` queues several ops at once, in the order given, before awaiting any: one
future per op and no task, and the ops keep their order in each shard's queue (a
request's ops, and the ops of the commands of one Execute batch, apply in the order they
were sent; engine.api.batch relies on it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import replace
from typing import Any, Protocol, TypeAlias

from engine.domain.errors import DomainError
from engine.domain.shard import Adopt, CellAdopting, CellMoved, Expect, HandOff
from engine.runtime.batcher import BatchLimits, BatchObserver, MicroBatcher, SendBatch
from engine.runtime.routing import Directory, pinned_shard_name

MAX_REROUTES = 12  # a pair can move while a request is in flight; bounded retries
REROUTE_BACKOFF_S = 0.002  # doubled per wait for a hand-off to land (≈ 4 s in all)

# Where an op goes: its pair's shard, or a shard by name.
Target: TypeAlias = tuple[str, str] | str

# Told when the request running in this context has queued the last of its shard ops
# (send_all with last=True): engine.api.batch lets the batch's next command on the same
# pairs start then, instead of when the request ends. Per asyncio task (a context each).
ops_queued: ContextVar[Callable[[], None] | None] = ContextVar("ops_queued", default=None)


class ShardFactory(Protocol):
    """Starts (or finds) a shard by name and returns how to send it a batch."""

    async def __call__(self, name: str) -> SendBatch: ...


class DirectoryStore(Protocol):
    """Where gateways share the directory of pins (a Ray actor in a cluster)."""

    async def load(self) -> Directory: ...

    async def save(self, directory: Directory) -> None: ...


class MemoryDirectoryStore:
    def __init__(self, directory: Directory) -> None:
        self._directory = directory

    async def load(self) -> Directory:
        return replace(self._directory, pins=dict(self._directory.pins))

    async def save(self, directory: Directory) -> None:
        self._directory = replace(directory, pins=dict(directory.pins))


def raise_if_refused(result: Any) -> Any:
    """A shard answers a refusal as a value (one per op of a batch): raise it here."""
    if isinstance(result, DomainError):
        raise result
    return result


class Router:
    """The directory of shards and one micro-batcher per shard."""

    def __init__(
        self,
        directory: Directory,
        senders: Mapping[str, SendBatch],
        factory: ShardFactory,
        store: DirectoryStore,
        limits: BatchLimits = BatchLimits(),
        observe: BatchObserver | None = None,
    ) -> None:
        self.directory = directory
        self._factory = factory
        self._store = store
        self._limits = limits
        self._observe = observe
        self._batchers = {name: MicroBatcher(name, send, limits, observe) for name, send in senders.items()}

    async def _batcher(self, name: str) -> MicroBatcher:
        batcher = self._batchers.get(name)
        if batcher is None:
            batcher = MicroBatcher(name, await self._factory(name), self._limits, self._observe)
            self._batchers[name] = batcher
        return batcher

    async def to_shard(self, name: str, op: Any, deadline: float | None, essential: bool = False) -> Any:
        return await (await self._batcher(name)).submit(op, deadline, essential=essential)

    async def to_pair(self, sku: str, site: str, op: Any, deadline: float | None, essential: bool = False) -> Any:
        """Send an op to its pair's shard; follow a hand-off if the pair moved meanwhile."""
        route = self.directory.shard_for(sku, site)
        backoff_s = REROUTE_BACKOFF_S
        for _ in range(MAX_REROUTES):
            result = await self.to_shard(route, op, deadline, essential)
            if isinstance(result, CellMoved):
                route = result.to_shard  # follow the pair; learn the new directory too
                self.directory = await self._store.load()
            elif isinstance(result, CellAdopting):
                await asyncio.sleep(backoff_s)  # the snapshot is on its way: wait, briefly
                backoff_s *= 2
            else:
                return result
        return result

    async def send_all(
        self,
        sends: Sequence[tuple[Target, Any]],
        deadline: float | None,
        *,
        essential: bool = False,
        return_exceptions: bool = False,
        deadlines: Sequence[float | None] | None = None,
        last: bool = False,
    ) -> list[Any]:
        """Queue every op now, in order, then await their answers (as `asyncio.gather`
        does, exceptions included when asked); a pair that moved meanwhile is followed.
        `deadlines`, when given, is each op's own instead of `deadline`; `last` says these
        are the request's last ops (ops_queued is told once they are queued)."""
        routes = [target if isinstance(target, str) else self.directory.shard_for(*target) for target, _ in sends]
        for name in dict.fromkeys(routes):
            await self._batcher(name)  # does not suspend once the shard's queue exists
        own = list(deadlines) if deadlines is not None else [deadline] * len(sends)
        told = ops_queued.get() if last else None
        if told is not None:
            # Told before queueing: what it wakes runs only after this step has queued every
            # op below, but before the shard's batcher (woken by the first op) takes them,
            # so both leave in one shard call.
            told()
        futures = [
            self._submit(name, op, op_deadline, essential)
            for name, (_, op), op_deadline in zip(routes, sends, own, strict=True)
        ]
        results = list(await asyncio.gather(*futures, return_exceptions=return_exceptions))
        moved = [i for i, r in enumerate(results) if isinstance(r, CellMoved | CellAdopting)]
        if moved:  # rare (a hand-off): follow each such pair as to_pair does
            followed = await asyncio.gather(
                *(self._follow(sends[i][0], sends[i][1], own[i], essential, results[i]) for i in moved),
                return_exceptions=return_exceptions,
            )
            for i, result in zip(moved, followed, strict=True):
                results[i] = result
        return results

    def _submit(self, name: str, op: Any, deadline: float | None, essential: bool) -> asyncio.Future[Any]:
        try:
            return self._batchers[name].submit(op, deadline, essential=essential)
        except DomainError as exc:  # a full queue, a closing shard: that op's answer, not the others'
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed

    async def _follow(self, target: Target, op: Any, deadline: float | None, essential: bool, first: Any) -> Any:
        if isinstance(target, str):
            return first  # a named shard does not move
        if isinstance(first, CellMoved):
            self.directory = await self._store.load()
        else:
            await asyncio.sleep(REROUTE_BACKOFF_S)
        return await self.to_pair(target[0], target[1], op, deadline, essential)

    async def broadcast(self, op: Any, deadline: float | None) -> list[Any]:
        names = self.directory.all_shards()
        return list(await asyncio.gather(*(self.to_shard(name, op, deadline) for name in names)))

    async def home(self, hold_id: str, op: Any, deadline: float | None) -> Any:
        """Send an op to the shard that keeps the hold's header."""
        return await self.to_shard(self.directory.home_for(hold_id), op, deadline)

    async def pin(self, sku: str, site: str) -> str:
        """Give a hot pair a shard of its own: snapshot hand-off from its current shard."""
        target = pinned_shard_name(sku, site)
        current = self.directory.shard_for(sku, site)
        if current == target:
            return target
        # Expect first, so ops that follow the hand-off to the target wait for the cell
        # instead of finding an empty one there.
        raise_if_refused(await self.to_shard(target, Expect(sku, site), None))
        blob, skus, sites = raise_if_refused(await self.to_shard(current, HandOff(sku, site, target), None))
        raise_if_refused(await self.to_shard(target, Adopt(sku, site, blob, skus, sites), None))
        directory = await self._store.load()
        directory.pins[(sku, site)] = target
        directory.version += 1
        await self._store.save(directory)
        self.directory = directory
        return target

    def queue_depths(self) -> dict[str, int]:
        return {name: b.pending for name, b in self._batchers.items()}

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()
