"""Shards as Ray actors, and a gateway over them (DESIGN.md §6, §11).

Locally the engine starts its own Ray (embedded default); in production it joins an
existing cluster (`RayConfig.address`), where shard actors are found by name in the
engine's namespace, so several gateways share them. Everything here is given its limits
and its journal backend as arguments (engine.bootstrap reads the settings).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ray
import structlog

from engine.domain.cell import CellLimits
from engine.domain.errors import Unavailable
from engine.domain.ports import BackendFactory
from engine.domain.statuses import DEFAULT_DICTIONARY, StatusDictionary
from engine.logs import configure_logging
from engine.runtime.batcher import BatchLimits, SendBatch
from engine.runtime.channel import ChannelBroken, ChannelClient, ChannelServer
from engine.runtime.gateway import Gateway, GatewayConfig, ShardAdmin, ShardPorts
from engine.runtime.gateway.router import DirectoryStore, MemoryDirectoryStore
from engine.runtime.host import ShardHost, SnapshotPolicy
from engine.runtime.metrics import RuntimeMetrics, default_runtime_metrics
from engine.runtime.routing import Directory

log = structlog.get_logger("lotwise.cluster")

DIRECTORY_ACTOR = "directory"


TAKE_OVER_ATTEMPTS = 3  # a standby that is gone too: the next epoch starts a fresh actor
WATCH_CALL_TIMEOUT_S = 5.0  # a shard slower than this to answer stats is busy, not dead
# A shard's stop waits up to 5 s for its append in flight and 30 s for a snapshot being
# saved; one that has not answered well after that is stuck, and the gateway's way down
# must not wait on it forever (embedded, it is killed; in a cluster it is left to Ray).
SHARD_STOP_TIMEOUT_S = 45.0


class DirectoryActor:
    """The shared directory of pins, so every gateway routes a pinned pair alike; and the
    epoch of each shard (which actor is its primary), so every gateway fails over alike."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.epochs: dict[str, int] = {}

    def epoch_of(self, shard: str) -> int:
        return self.epochs.get(shard, 0)

    def claim(self, shard: str, seen_epoch: int) -> tuple[int, bool]:
        # This actor runs one call at a time: exactly one gateway wins a take-over.
        return claim_epoch(self.epochs, shard, seen_epoch)

    def load(self) -> Directory:
        return self.directory

    def save(self, directory: Directory) -> None:
        if directory.version >= self.directory.version:
            self.directory = directory


def claim_epoch(epochs: dict[str, int], shard: str, seen_epoch: int) -> tuple[int, bool]:
    """The primary of `seen_epoch` is gone: the next epoch's actor takes over. The first
    caller wins (True); the others learn the epoch it moved to."""
    current = epochs.get(shard, 0)
    if current != seen_epoch:
        return current, False
    epochs[shard] = current + 1
    return current + 1, True


class LocalEpochs:
    """The shards' epochs of an embedded engine: one gateway, so kept in its process (no
    directory actor, one Ray worker fewer to start)."""

    def __init__(self) -> None:
        self._epochs: dict[str, int] = {}

    async def epoch_of(self, shard: str) -> int:
        return self._epochs.get(shard, 0)

    async def claim(self, shard: str, seen_epoch: int) -> tuple[int, bool]:
        return claim_epoch(self._epochs, shard, seen_epoch)


class ActorEpochs:
    """The shards' epochs in the directory actor, shared by every gateway of a cluster."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    async def epoch_of(self, shard: str) -> int:
        return int(await self._actor.epoch_of.remote(shard))

    async def claim(self, shard: str, seen_epoch: int) -> tuple[int, bool]:
        epoch, won = await self._actor.claim.remote(shard, seen_epoch)
        return int(epoch), bool(won)


Epochs = LocalEpochs | ActorEpochs


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
        self._channel: ChannelServer | None = None

    async def open_channel(self) -> tuple[str, str]:
        """(this process's Ray node, the Unix socket its batches may come over): a gateway on
        the same node sends `apply` there instead of as Ray calls (engine.runtime.channel)."""
        if self._channel is None:
            self._channel = ChannelServer(self.apply)
        path = await self._channel.start()
        return ray.get_runtime_context().get_node_id(), path

    async def stats(self) -> dict[str, Any]:
        return {**await super().stats(), "channel_calls": 0 if self._channel is None else self._channel.calls}

    async def stop(self, snapshot_grace_s: float = 30.0) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
        await super().stop(snapshot_grace_s)


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
    # A warm standby actor per shard follows its journal and takes over when the primary's
    # process dies (DESIGN §9); needs the durable journal. Off: Ray restarts the primary.
    standby: bool = False
    # A gateway sends a shard on its own node the op batches over a Unix socket instead of
    # as Ray calls (engine.runtime.channel); off: every batch is a Ray call.
    channel: bool = True
    follow_interval_ms: int = 200  # how often a standby reads the journal's new entries
    watch_interval_ms: int = 1_000  # how often the gateway checks its shards (and their standbys)
    recoveries_path: Path | None = None  # where the gateway keeps the shards' recovery counts
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


def actor_name(shard: str, epoch: int) -> str:
    """The Ray name of the actor that is (or will be) the primary of `shard` at `epoch`."""
    return f"shard:{shard}" if epoch == 0 else f"shard:{shard}@{epoch}"


def shard_actor(name: str, config: ClusterConfig, backend: BackendFactory, epoch: int = 0) -> Any:
    """Find or start the actor of shard `name` at `epoch` (named, so other gateways share it)."""
    # With standbys a dead primary is replaced by the next epoch's actor; a restarted one
    # would be a second writer (the journal's fence would stop it, at the cost of rebuilds).
    restarts = 0 if config.standby else config.shard_max_restarts
    return _REMOTE_SHARD.options(
        name=actor_name(name, epoch),
        namespace=config.ray.namespace,
        get_if_exists=True,
        # In a cluster the shards outlive any one gateway process; embedded, they die with it.
        lifetime=None if config.embedded else "detached",
        num_cpus=0,  # shards are I/O-and-CPU bound but few; do not let Ray's CPU accounting cap them
        # A crashed shard restarts and recovers from snapshot + journal; with the in-memory
        # journal it would come back empty, so it stays down (its calls answer UNAVAILABLE).
        max_restarts=restarts if config.durable else 0,
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


class RecoveryLedger:
    """How often each shard was recovered (a crashed process replaced, or a rebuild after a
    failed append), kept in a small JSON file so the count survives restarts: operators see
    crashes in `lotwise shards` and in /metrics (lotwise_shard_recoveries).

    A shard host counts its own recoveries and names its process (`incarnation`); a new
    incarnation seen where another was is one crash (fail-over or Ray restart)."""

    def __init__(self, path: Path | None, metrics: RuntimeMetrics) -> None:
        self._path = path
        self._metrics = metrics
        self._seen: dict[str, tuple[str, int]] = {}  # shard → (incarnation, its recoveries)
        self.counts: dict[str, int] = self._load()

    def _load(self) -> dict[str, int]:
        if self._path is None or not self._path.exists():
            return {}
        try:
            raw = json.loads(self._path.read_text())
            return {str(k): int(v) for k, v in raw.get("recoveries", {}).items()}
        except (OSError, ValueError, AttributeError):
            log.warning("recovery counts unreadable; counting from zero", path=str(self._path))
            return {}

    def observe(self, stats: dict[str, Any]) -> int:
        """Fold one shard's stats in; the shard's recoveries to date (persisted if changed)."""
        shard, incarnation, own = stats["shard"], str(stats.get("incarnation", "")), int(stats["recoveries"])
        before = self._seen.get(shard)
        if before is None:
            added = max(0, own - 1)  # its first recovery is the start-up, not a crash
        elif before[0] == incarnation:
            added = max(0, own - before[1])
        else:
            added = 1 + max(0, own - 1)  # a new process: the crash, and its own rebuilds since
        self._seen[shard] = (incarnation, own)
        count = self.counts.get(shard, 0) + added
        if added:
            self.counts[shard] = count
            self._save()
        self._metrics.shard_recoveries.labels(shard=shard).set(count)
        return count

    def _save(self) -> None:
        if self._path is None:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            partial = self._path.with_suffix(".tmp")
            partial.write_text(json.dumps({"recoveries": self.counts}, sort_keys=True))
            partial.replace(self._path)  # atomic: a crash leaves the old file or the new
        except OSError:
            log.warning("recovery counts not saved", path=str(self._path), exc_info=True)


class ShardSupervisor:
    """One shard as this gateway reaches it: the primary actor of the current epoch, its
    warm standby (the next epoch's actor, following the journal), and the take-over.

    A call that finds the primary's process gone answers UNAVAILABLE (the client retries
    with the same request id) and starts the take-over: the directory actor names the next
    epoch (one gateway wins), the winner kills what is left of the old primary (the fence:
    no second writer) and every gateway promotes the standby (idempotent), which catches up
    with the journal's last entry and serves; its idempotency window is the journal's."""

    def __init__(self, shard: str, epoch: int, config: ClusterConfig, backend: BackendFactory, epochs: Epochs) -> None:
        self.shard = shard
        self.epoch = epoch
        self._config = config
        self._backend = backend
        self._epochs = epochs
        self.primary = shard_actor(shard, config, backend, epoch)
        self.standby: Any | None = None
        self.handles: dict[str, Any] = {}  # the gateway's view of the primaries, kept current here
        self.standby_state = "off" if not config.standby else "starting"  # as the last look found it
        self._taking_over: asyncio.Task[None] | None = None
        self._channel: tuple[int, ChannelClient] | None = None  # (the epoch it reaches, the channel)
        self._opening: asyncio.Task[None] | None = None
        self._opened_for = -1  # the last epoch a channel was tried for (once per primary)
        self._ray_in_flight = 0  # batches sent as Ray calls and not answered yet
        self._ray_drained = asyncio.Event()  # set while no Ray call is in flight
        self._ray_drained.set()
        self._background: set[asyncio.Task[Any]] = set()

    async def send(self, ops: list[Any]) -> list[Any]:
        if self._ray_in_flight and self._channel is not None and self._channel[0] == self.epoch:
            # The channel is open: let the Ray calls in flight land first, so this batch
            # cannot overtake them (under steady load there may never be a lull to switch in).
            await self._ray_drained.wait()
        primary, epoch = self.primary, self.epoch
        channel = self._usable_channel(epoch)
        if channel is not None:
            try:
                return await channel.call(ops)
            except ChannelBroken as exc:
                # The process died (or stopped): a Ray call tells which, and starts the take-over.
                self._drop_channel(channel)
                self._in_background(self._check_alive())
                raise Unavailable(f"shard {self.shard}: {exc}") from exc
        self._open_channel_soon(primary, epoch)
        self._ray_in_flight += 1
        self._ray_drained.clear()
        try:
            return await primary.apply.remote(ops)
        except ray.exceptions.RayActorError as exc:
            self.take_over_soon(epoch)
            raise Unavailable(f"shard {self.shard}: its process is gone; taking over") from exc
        finally:
            self._ray_in_flight -= 1
            if not self._ray_in_flight:
                self._ray_drained.set()

    def _usable_channel(self, epoch: int) -> ChannelClient | None:
        """The channel to this epoch's primary, once no Ray call is in flight to it: batches
        in flight on two paths could apply out of the order they were sent in."""
        if self._channel is None or self._ray_in_flight:
            return None
        channel_epoch, channel = self._channel
        if channel_epoch != epoch or not channel.open:
            self._drop_channel(channel)
            return None
        return channel

    def _drop_channel(self, channel: ChannelClient) -> None:
        if self._channel is not None and self._channel[1] is channel:
            self._channel = None
            self._in_background(channel.close())

    def _in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._background.discard)

    def _open_channel_soon(self, primary: Any, epoch: int) -> None:
        """Try once per primary: a shard on another node (or one that refused) stays on Ray."""
        if not self._config.channel or self._opened_for == epoch:
            return
        self._opened_for = epoch
        self._opening = asyncio.get_running_loop().create_task(self._open_channel(primary, epoch))

    async def _open_channel(self, primary: Any, epoch: int) -> None:
        """Connect to the primary's socket if it runs on this node; else stay on Ray calls."""
        try:
            node, path = await asyncio.wait_for(primary.open_channel.remote(), WATCH_CALL_TIMEOUT_S)
            if node != ray.get_runtime_context().get_node_id() or epoch != self.epoch:
                return
            channel = await asyncio.wait_for(ChannelClient.connect(path), WATCH_CALL_TIMEOUT_S)
        except Exception as exc:  # a dead primary is the send path's to find; Ray calls go on
            error = f"{type(exc).__name__}: {exc}"
            log.info("shard channel not opened; using Ray calls", shard=self.shard, error=error)
            return
        if epoch != self.epoch or self._channel is not None:
            await channel.close()
            return
        self._channel = (epoch, channel)

    async def _check_alive(self) -> None:
        try:
            await self.call("ping")  # a dead primary: the take-over starts (and ends) here
        except Exception:
            return
        self._opened_for = -1  # alive (or restarted in place by Ray): the next Ray call reconnects

    async def close_channel(self) -> None:
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        if self._channel is not None:
            channel, self._channel = self._channel[1], None
            await channel.close()

    async def call(self, method: str) -> Any:
        primary, epoch = self.primary, self.epoch
        try:
            return await getattr(primary, method).remote()
        except ray.exceptions.RayActorError:
            await self.take_over_soon(epoch)
            return await getattr(self.primary, method).remote()

    def take_over_soon(self, seen_epoch: int) -> asyncio.Task[None]:
        """One take-over at a time per shard; callers during it share it."""
        if self._taking_over is None or self._taking_over.done():
            self._taking_over = asyncio.get_running_loop().create_task(self._take_over(seen_epoch))
        return self._taking_over

    async def _take_over(self, seen_epoch: int) -> None:
        if seen_epoch != self.epoch:
            return  # already done since that call failed
        if not self._config.standby:
            # Ray restarts the process; start its recovery now rather than at the next call.
            with contextlib.suppress(Exception):
                await self.primary.start.remote()
            return
        for _ in range(TAKE_OVER_ATTEMPTS):
            epoch, won = await self._epochs.claim(self.shard, seen_epoch)
            successor = self.standby if won and self.standby is not None else None
            successor = successor or shard_actor(self.shard, self._config, self._backend, epoch)
            if won:
                with contextlib.suppress(Exception):
                    ray.kill(self.primary, no_restart=True)
            try:
                await successor.promote.remote()
            except ray.exceptions.RayActorError:
                seen_epoch = epoch  # the standby is gone too: the next epoch starts afresh
                continue
            old = self.epoch
            self.primary, self.epoch, self.standby = successor, epoch, None
            self.standby_state = "starting"
            self.handles[self.shard] = successor
            log.warning("shard taken over", shard=self.shard, epoch=epoch, from_epoch=old, by_this_gateway=won)
            return
        log.error("shard take-over failed", shard=self.shard, attempts=TAKE_OVER_ATTEMPTS)

    async def watch(self, ledger: RecoveryLedger) -> None:
        """One look: a dead primary is taken over even when no request comes; the standby
        is (re)started; the recovery count is brought up to date."""
        try:
            stats = await asyncio.wait_for(self.primary.stats.remote(), WATCH_CALL_TIMEOUT_S)
        except ray.exceptions.RayActorError:
            await self.take_over_soon(self.epoch)
            return
        except TimeoutError:
            return  # busy (or restarting), not known dead
        ledger.observe(stats)
        if self._config.standby and (self._taking_over is None or self._taking_over.done()):
            await self._keep_standby()

    async def _keep_standby(self) -> None:
        if self.standby is None:
            self.standby = shard_actor(self.shard, self._config, self._backend, self.epoch + 1)
            self.standby_state = "starting"
        try:
            self.standby_state = await asyncio.wait_for(
                self.standby.follow.remote(self._config.follow_interval_ms), WATCH_CALL_TIMEOUT_S
            )
        except ray.exceptions.RayActorError:
            self.standby, self.standby_state = None, "starting"  # gone: its name is free, the next look starts another
        except TimeoutError:
            pass

    def actors(self) -> list[Any]:
        return [a for a in (self.primary, self.standby) if a is not None]


async def _watch_forever(supervisors: dict[str, ShardSupervisor], ledger: RecoveryLedger, interval_s: float) -> None:
    while True:
        for supervisor in list(supervisors.values()):
            try:
                await supervisor.watch(ledger)
            except Exception:  # one shard's trouble must not stop the watch of the others
                log.warning("shard watch failed", shard=supervisor.shard, exc_info=True)
        await asyncio.sleep(interval_s)


async def start_gateway(config: ClusterConfig, backend: BackendFactory) -> Gateway:
    """Start Ray if needed, find or start the shards and the directory, return a gateway.

    `backend` is how a shard (in its own process) reaches the journal: picklable, connects lazily."""
    init_ray(config.ray)
    names = tuple(f"{i:03d}" for i in range(config.shards))
    directory_actor, store, epochs = _directory_for(config, names)
    directory = await store.load()
    if directory.shard_names != names:
        raise RuntimeError(
            f"the running engine has {len(directory.shard_names)} shards, this gateway was given {len(names)}"
        )
    epoch_list = await asyncio.gather(*(epochs.epoch_of(name) for name in names))
    supervisors = {
        name: ShardSupervisor(name, epoch, config, backend, epochs)
        for name, epoch in zip(names, epoch_list, strict=True)
    }
    # Every shard recovers (snapshot + journal) before the gateway serves; a corrupt journal
    # stops the start here, naming the stream and position.
    try:
        await asyncio.gather(*(s.primary.start.remote() for s in supervisors.values()))
    except Exception:
        if config.embedded:  # nobody else will use these actors
            for actor in (s.primary for s in supervisors.values()):
                ray.kill(actor)
        raise
    return await _gateway_over(config, backend, (directory_actor, store, epochs), directory, supervisors)


def _directory_for(config: ClusterConfig, names: tuple[str, ...]) -> tuple[Any, DirectoryStore, Epochs]:
    """(directory actor or None, the pins' store, the epochs). Embedded, this gateway is the
    only one: both live in its process. In a cluster, in the directory actor all gateways share."""
    if config.embedded:
        return None, MemoryDirectoryStore(Directory(names)), LocalEpochs()
    actor = _REMOTE_DIRECTORY.options(
        name=DIRECTORY_ACTOR,
        namespace=config.ray.namespace,
        get_if_exists=True,
        num_cpus=0,
        lifetime="detached",
    ).remote(Directory(names))
    return actor, RayDirectoryStore(actor), ActorEpochs(actor)


async def _gateway_over(
    config: ClusterConfig,
    backend: BackendFactory,
    shared: tuple[Any, DirectoryStore, Epochs],
    directory: Directory,
    supervisors: dict[str, ShardSupervisor],
) -> Gateway:
    directory_actor, store, epochs = shared
    metrics = default_runtime_metrics()
    ledger = RecoveryLedger(config.recoveries_path, metrics)
    # Gateway.handles: the primaries by shard (tests, benches); a take-over updates it.
    actors = {name: s.primary for name, s in supervisors.items()}
    for supervisor in supervisors.values():
        supervisor.handles = actors

    async def supervisor_of(name: str) -> ShardSupervisor:
        supervisor = supervisors.get(name)
        if supervisor is None:  # a pinned pair's shard, started on first use
            epoch = await epochs.epoch_of(name)
            supervisor = supervisors[name] = ShardSupervisor(name, epoch, config, backend, epochs)
            supervisor.handles = actors
            actors[name] = supervisor.primary
            await supervisor.primary.start.remote()
        return supervisor

    async def factory(name: str) -> SendBatch:
        return (await supervisor_of(name)).send

    senders: dict[str, SendBatch] = {name: s.send for name, s in supervisors.items()}
    for name in directory.all_shards():
        if name not in senders:
            senders[name] = await factory(name)

    async def call(name: str, method: str) -> Any:
        result = await (await supervisor_of(name)).call(method)
        if method == "stats":
            standby = supervisors[name].standby_state
            result = {**result, "recoveries": ledger.observe(result), "standby": standby}
        return result

    # Standbys start with the first look, after the gateway serves: they do not delay start-up.
    watcher = asyncio.get_running_loop().create_task(
        _watch_forever(supervisors, ledger, config.watch_interval_ms / 1000)
    )
    admin = ShardAdmin(call, backend, config.cell_limits)
    close = _closer(supervisors, directory_actor, config.embedded, watcher)
    ports = ShardPorts(directory, senders, factory, store, actors, admin, close)
    return Gateway(ports, GatewayConfig(config.statuses, config.batch_limits, metrics.observer()))


def _closer(
    supervisors: dict[str, ShardSupervisor], directory_actor: Any, embedded: bool, watcher: asyncio.Task[None]
) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        for supervisor in supervisors.values():
            await supervisor.close_channel()
            for actor in supervisor.actors():
                try:
                    await asyncio.wait_for(actor.stop.remote(), SHARD_STOP_TIMEOUT_S)
                except Exception:  # gone already (nothing to stop), or stuck (killed below when embedded)
                    log.warning("shard stop failed", shard=supervisor.shard, exc_info=True)
                if embedded:
                    # The embedded engine owns its shards; in a cluster they outlive a gateway.
                    ray.kill(actor)
        if embedded and directory_actor is not None:
            ray.kill(directory_actor)

    return close


def shutdown_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()
