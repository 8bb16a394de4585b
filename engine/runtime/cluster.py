"""Shards as Ray actors, and a gateway over them (DESIGN.md §6, §11).

Locally the engine starts its own Ray (embedded default); in production it joins an
existing cluster (`RayConfig.address`), where shard actors are found by name in the
engine's namespace, so several gateways share them. Everything here is given its limits
and its journal backend as arguments (engine.bootstrap reads the settings).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import ray
import structlog

from engine.domain.cell import CellLimits
from engine.domain.ports import BackendFactory
from engine.domain.statuses import DEFAULT_DICTIONARY, StatusDictionary
from engine.logs import configure_logging
from engine.runtime.batcher import BatchLimits, SendBatch
from engine.runtime.gateway import Gateway, GatewayConfig, ShardAdmin, ShardPorts
from engine.runtime.host import ShardHost, SnapshotPolicy
from engine.runtime.metrics import default_runtime_metrics
from engine.runtime.routing import Directory

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


class ShardActor(ShardHost):
    """A shard host in a Ray worker process of its own, logging as the engine is set to."""

    def __init__(self, *args: Any, log_level: str = "info", log_format: str = "console", **kwargs: Any) -> None:
        configure_logging(log_level, log_format)
        super().__init__(*args, **kwargs)


_REMOTE_SHARD = ray.remote(ShardActor)
_REMOTE_DIRECTORY = ray.remote(DirectoryActor)


@dataclass(frozen=True, slots=True)
class RayConfig:
    """Where Ray runs: '' starts a local Ray of our own, else the address of a cluster to join."""

    namespace: str = "lotwise"
    address: str = ""
    num_cpus: int | None = None  # of a local Ray; None: all


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """What the shards and the gateway over them are given (the composition root fills it)."""

    ray: RayConfig = field(default_factory=RayConfig)
    shards: int = 2
    statuses: StatusDictionary = DEFAULT_DICTIONARY
    cell_limits: CellLimits = field(default_factory=CellLimits)
    batch_limits: BatchLimits = field(default_factory=BatchLimits)
    snapshot_policy: SnapshotPolicy = field(default_factory=SnapshotPolicy)
    sweep_interval_ms: int = 1_000
    durable: bool = False  # the journal survives a restart (so a crashed shard may restart)
    shard_max_restarts: int = 100
    log_level: str = "info"
    log_format: str = "console"

    @property
    def embedded(self) -> bool:
        """This process owns the Ray and its actors (no cluster to join)."""
        return not self.ray.address


def init_ray(config: RayConfig) -> None:
    """Start (or join) Ray. Locally everything binds to 127.0.0.1."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {
        "namespace": config.namespace,
        "include_dashboard": False,
        "logging_level": "WARNING",
        "log_to_driver": True,
    }
    if config.address:
        kwargs["address"] = config.address
    else:
        # "local": always a new Ray of our own. Without it ray.init() joins whatever cluster
        # /tmp/ray/ray_current_cluster names (another project's, possibly unreachable).
        kwargs["address"] = "local"
        kwargs["_node_ip_address"] = "127.0.0.1"
        if config.num_cpus is not None:
            kwargs["num_cpus"] = config.num_cpus
    try:
        ray.init(**kwargs)
    except Exception as exc:  # a loaded machine can miss Ray's start-up deadlines once
        log.warning("ray start failed; trying once more", error=str(exc))
        ray.shutdown()
        ray.init(**kwargs)


def shard_actor(name: str, config: ClusterConfig, backend: BackendFactory) -> Any:
    """Find or start the shard actor `name` (named, so other gateways share it)."""
    return _REMOTE_SHARD.options(
        name=f"shard:{name}",
        namespace=config.ray.namespace,
        get_if_exists=True,
        # In a cluster the shards outlive any one gateway process; embedded, they die with it.
        lifetime=None if config.embedded else "detached",
        num_cpus=0,  # shards are I/O-and-CPU bound but few; do not let Ray's CPU accounting cap them
        # A crashed shard restarts and recovers from snapshot + journal; with the in-memory
        # journal it would come back empty, so it stays down (its calls answer UNAVAILABLE).
        max_restarts=config.shard_max_restarts if config.durable else 0,
        max_concurrency=64,
    ).remote(
        name,
        config.statuses,
        config.cell_limits,
        None,
        backend,
        config.sweep_interval_ms,
        config.snapshot_policy,
        log_level=config.log_level,
        log_format=config.log_format,
    )


def _sender(actor: Any) -> SendBatch:
    async def send(ops: list[Any]) -> list[Any]:
        return await actor.apply.remote(ops)

    return send


async def start_gateway(config: ClusterConfig, backend: BackendFactory) -> Gateway:
    """Start Ray if needed, find or start the shards and the directory, return a gateway.

    `backend` is how a shard (in its own process) reaches the journal: picklable, connects lazily."""
    init_ray(config.ray)
    names = tuple(f"{i:03d}" for i in range(config.shards))
    actors = {name: shard_actor(name, config, backend) for name in names}
    directory_actor = _REMOTE_DIRECTORY.options(
        name=DIRECTORY_ACTOR,
        namespace=config.ray.namespace,
        get_if_exists=True,
        num_cpus=0,
        lifetime=None if config.embedded else "detached",
    ).remote(Directory(names))
    store = RayDirectoryStore(directory_actor)
    directory = await store.load()
    if directory.shard_names != names:
        raise RuntimeError(
            f"the running engine has {len(directory.shard_names)} shards, this gateway was given {len(names)}"
        )
    # Every shard recovers (snapshot + journal) before the gateway serves; a corrupt journal
    # stops the start here, naming the stream and position.
    try:
        await asyncio.gather(*(actor.start.remote() for actor in actors.values()))
    except Exception:
        if config.embedded:  # nobody else will use these actors
            for actor in (*actors.values(), directory_actor):
                ray.kill(actor)
        raise

    async def factory(name: str) -> SendBatch:
        actor = actors.get(name) or shard_actor(name, config, backend)
        actors[name] = actor
        await actor.start.remote()
        return _sender(actor)

    senders = {name: _sender(actor) for name, actor in actors.items()}
    for name in directory.all_shards():
        if name not in senders:
            senders[name] = await factory(name)

    async def call(name: str, method: str) -> Any:
        actor = actors.get(name)
        if actor is None:
            await factory(name)
            actor = actors[name]
        return await getattr(actor, method).remote()

    observe = default_runtime_metrics().observer()
    admin = ShardAdmin(call, backend, config.cell_limits)
    close = _closer(actors, directory_actor, config.embedded)
    ports = ShardPorts(directory, senders, factory, store, actors, admin, close)
    return Gateway(ports, GatewayConfig(config.statuses, config.batch_limits, observe))


def _closer(actors: dict[str, Any], directory_actor: Any, embedded: bool) -> Callable[[], Awaitable[None]]:
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

    return close


def shutdown_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()
