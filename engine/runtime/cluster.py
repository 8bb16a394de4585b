"""Shards as Ray actors, and a gateway over them (DESIGN.md §6, §11).

Locally the engine starts its own Ray (embedded default); in production it joins an
existing cluster (`ray_address`), where shard actors are found by name in the engine's
namespace, so several gateways share them.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import ray
import structlog

from engine.domain.cell import CellLimits
from engine.domain.statuses import DEFAULT_DICTIONARY, StatusDictionary, load_dictionary
from engine.runtime.batcher import BatchLimits, SendBatch
from engine.runtime.gateway import Gateway
from engine.runtime.metrics import default_runtime_metrics
from engine.runtime.routing import Directory
from engine.runtime.shard import ShardHost
from engine.settings import Settings

log = structlog.get_logger("lotwise.cluster")

DIRECTORY_ACTOR = "directory"


class DirectoryActor:
    """The shared directory of pins, so every gateway routes a pinned pair alike."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def load(self) -> Directory:
        return self.directory

    def save(self, directory: Directory) -> None:
        if directory.version >= self.directory.version:
            self.directory = directory


class RayDirectoryStore:
    def __init__(self, actor: Any) -> None:
        self._actor = actor

    async def load(self) -> Directory:
        return await self._actor.load.remote()

    async def save(self, directory: Directory) -> None:
        await self._actor.save.remote(replace(directory, pins=dict(directory.pins)))


_REMOTE_SHARD = ray.remote(ShardHost)
_REMOTE_DIRECTORY = ray.remote(DirectoryActor)


def init_ray(settings: Settings) -> None:
    """Start (or join) Ray. Locally everything binds to 127.0.0.1."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {
        "namespace": settings.namespace,
        "include_dashboard": False,
        "logging_level": "WARNING",
        "log_to_driver": True,
    }
    if settings.ray_address:
        kwargs["address"] = settings.ray_address
    else:
        kwargs["_node_ip_address"] = "127.0.0.1"
        if settings.ray_num_cpus is not None:
            kwargs["num_cpus"] = settings.ray_num_cpus
    ray.init(**kwargs)


def shard_actor(name: str, settings: Settings, statuses: StatusDictionary) -> Any:
    """Find or start the shard actor `name` (named, so other gateways share it)."""
    limits = CellLimits(
        dedupe_window_ms=settings.dedupe_window_ms,
        dedupe_max_entries=settings.dedupe_max_entries,
        resolved_hold_retention_ms=settings.resolved_hold_retention_ms,
    )
    return _REMOTE_SHARD.options(
        name=f"shard:{name}",
        namespace=settings.namespace,
        get_if_exists=True,
        # In a cluster the shards outlive any one gateway process; embedded, they die with it.
        lifetime="detached" if settings.ray_address else None,
        num_cpus=0,  # shards are I/O-and-CPU bound but few; do not let Ray's CPU accounting cap them
        max_restarts=0,  # with the in-memory journal a restarted shard would come back empty
        max_concurrency=64,
    ).remote(name, statuses, limits, None, None, settings.sweep_interval_ms)


def _sender(actor: Any) -> SendBatch:
    async def send(ops: list[Any]) -> list[Any]:
        return await actor.apply.remote(ops)

    return send


async def start_gateway(settings: Settings) -> Gateway:
    """Start Ray if needed, find or start the shards and the directory, return a gateway."""
    init_ray(settings)
    statuses = load_dictionary(settings.status_dictionary) if settings.status_dictionary else DEFAULT_DICTIONARY
    names = tuple(f"{i:03d}" for i in range(settings.shards))
    actors = {name: shard_actor(name, settings, statuses) for name in names}
    directory_actor = _REMOTE_DIRECTORY.options(
        name=DIRECTORY_ACTOR,
        namespace=settings.namespace,
        get_if_exists=True,
        num_cpus=0,
        lifetime="detached" if settings.ray_address else None,
    ).remote(Directory(names))
    store = RayDirectoryStore(directory_actor)
    directory = await store.load()
    if directory.shard_names != names:
        raise RuntimeError(
            f"the running engine has {len(directory.shard_names)} shards, this gateway was given {len(names)}"
        )
    for actor in actors.values():
        await actor.ping.remote()  # fail fast if a shard cannot start

    async def factory(name: str) -> SendBatch:
        actor = actors.get(name) or shard_actor(name, settings, statuses)
        actors[name] = actor
        return _sender(actor)

    limits = BatchLimits(settings.batch_max, settings.batch_window_ms, settings.queue_max, settings.max_in_flight)
    senders = {name: _sender(actor) for name, actor in actors.items()}
    for name in directory.all_shards():
        if name not in senders:
            senders[name] = await factory(name)

    embedded = not settings.ray_address

    async def close() -> None:
        for actor in actors.values():
            try:
                await actor.stop.remote()
            except Exception:  # a shard that is already gone has nothing to stop
                log.warning("shard stop failed", exc_info=True)
            if embedded:
                # The embedded engine owns its shards; in a cluster they outlive a gateway.
                ray.kill(actor)
        if embedded:
            ray.kill(directory_actor)

    observe = default_runtime_metrics().observer()
    return Gateway(directory, senders, factory, store, statuses, limits, close, actors, observe)


def shutdown_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()
