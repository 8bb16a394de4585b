"""Routing and micro-batching: every op a gateway sends goes through here (DESIGN.md §6–7).

An op goes to its pair's shard (or a named shard) through that shard's micro-batcher. A
pair can move while an op is in flight (a hot pair pinned to a shard of its own): the
old shard answers CellMoved and the router follows, learning the new directory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from engine.domain.errors import DomainError
from engine.domain.shard import Adopt, CellAdopting, CellMoved, Expect, HandOff
from engine.runtime.batcher import BatchLimits, BatchObserver, MicroBatcher, SendBatch
from engine.runtime.routing import Directory, pinned_shard_name

MAX_REROUTES = 12  # a pair can move while a request is in flight; bounded retries
REROUTE_BACKOFF_S = 0.002  # doubled per wait for a hand-off to land (≈ 4 s in all)


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
