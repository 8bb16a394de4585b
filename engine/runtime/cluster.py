"""Shards as Ray actors, and a gateway over them (DESIGN.md §6, §11).

Locally the engine starts its own Ray (embedded default); in production it joins an
existing cluster (`ray_address`), where shard actors are found by name in the engine's
namespace, so several gateways share them.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from typing import Any

import ray
import structlog

from engine.domain.cell import CellLimits
from engine.domain.statuses import DEFAULT_DICTIONARY, StatusDictionary, load_dictionary
from engine.logs import configure_logging
from engine.runtime.batcher import BatchLimits, SendBatch
from engine.runtime.gateway import Gateway, GatewayConfig, ShardAdmin, ShardPorts
from engine.runtime.host import Backend, BackendFactory, ShardHost, SnapshotPolicy, in_memory_backend
from engine.runtime.metrics import default_runtime_metrics
from engine.runtime.routing import Directory
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


class ShardActor(ShardHost):
    """A shard host in a Ray worker process of its own, logging as the engine is set to."""

    def __init__(self, *args: Any, log_level: str = "info", log_format: str = "console", **kwargs: Any) -> None:
        configure_logging(log_level, log_format)
        super().__init__(*args, **kwargs)


_REMOTE_SHARD = ray.remote(ShardActor)
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
        # "local": always a new Ray of our own. Without it ray.init() joins whatever cluster
        # /tmp/ray/ray_current_cluster names (another project's, possibly unreachable).
        kwargs["address"] = "local"
        kwargs["_node_ip_address"] = "127.0.0.1"
        if settings.ray_num_cpus is not None:
            kwargs["num_cpus"] = settings.ray_num_cpus
    try:
        ray.init(**kwargs)
    except Exception as exc:  # a loaded machine can miss Ray's start-up deadlines once
        log.warning("ray start failed; trying once more", error=str(exc))
        ray.shutdown()
        ray.init(**kwargs)


def cell_limits(settings: Settings) -> CellLimits:
    return CellLimits(
        dedupe_window_ms=settings.dedupe_window_ms,
        dedupe_max_entries=settings.dedupe_max_entries,
        resolved_hold_retention_ms=settings.resolved_hold_retention_ms,
    )


def journal_backend(settings: Settings, nats_url: str) -> BackendFactory:
    """How a shard (in its own process) reaches the journal: picklable, connects lazily."""
    if settings.journal == "memory":
        return in_memory_backend
    from adapters.nats.journal import engine_journal_config

    config = engine_journal_config(settings.namespace, nats_url, settings.journal_replicas)

    async def connect() -> Backend:
        from adapters.nats.journal import connect_journal

        journal, snapshots, close = await connect_journal(config)
        return Backend(journal, snapshots, close)

    return connect


def shard_actor(name: str, settings: Settings, statuses: StatusDictionary, backend: BackendFactory) -> Any:
    """Find or start the shard actor `name` (named, so other gateways share it)."""
    durable = settings.journal == "nats"
    limits = cell_limits(settings)
    return _REMOTE_SHARD.options(
        name=f"shard:{name}",
        namespace=settings.namespace,
        get_if_exists=True,
        # In a cluster the shards outlive any one gateway process; embedded, they die with it.
        lifetime="detached" if settings.ray_address else None,
        num_cpus=0,  # shards are I/O-and-CPU bound but few; do not let Ray's CPU accounting cap them
        # A crashed shard restarts and recovers from snapshot + journal; with the in-memory
        # journal it would come back empty, so it stays down (its calls answer UNAVAILABLE).
        max_restarts=settings.shard_max_restarts if durable else 0,
        max_concurrency=64,
    ).remote(
        name,
        statuses,
        limits,
        None,
        backend,
        settings.sweep_interval_ms,
        SnapshotPolicy(settings.snapshot_every_batches, settings.snapshot_interval_ms),
        log_level=settings.log_level,
        log_format=settings.log_format,
    )


def _sender(actor: Any) -> SendBatch:
    async def send(ops: list[Any]) -> list[Any]:
        return await actor.apply.remote(ops)

    return send


async def start_gateway(settings: Settings, nats_url: str = "") -> Gateway:
    """Start Ray if needed, find or start the shards and the directory, return a gateway.

    `nats_url` is where the journal is (the embedded server's, or settings.nats_url)."""
    init_ray(settings)
    statuses = load_dictionary(settings.status_dictionary) if settings.status_dictionary else DEFAULT_DICTIONARY
    backend = journal_backend(settings, nats_url or settings.nats_url)
    names = tuple(f"{i:03d}" for i in range(settings.shards))
    actors = {name: shard_actor(name, settings, statuses, backend) for name in names}
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
    # Every shard recovers (snapshot + journal) before the gateway serves; a corrupt journal
    # stops the start here, naming the stream and position.
    try:
        await asyncio.gather(*(actor.start.remote() for actor in actors.values()))
    except Exception:
        if not settings.ray_address:  # embedded: nobody else will use these actors
            for actor in (*actors.values(), directory_actor):
                ray.kill(actor)
        raise

    async def factory(name: str) -> SendBatch:
        actor = actors.get(name) or shard_actor(name, settings, statuses, backend)
        actors[name] = actor
        await actor.start.remote()
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

    async def call(name: str, method: str) -> Any:
        actor = actors.get(name)
        if actor is None:
            await factory(name)
            actor = actors[name]
        return await getattr(actor, method).remote()

    observe = default_runtime_metrics().observer()
    admin = ShardAdmin(call, backend, cell_limits(settings))
    ports = ShardPorts(directory, senders, factory, store, actors, admin, close)
    return Gateway(ports, GatewayConfig(statuses, limits, observe))


def shutdown_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()
