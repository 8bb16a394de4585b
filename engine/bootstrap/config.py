"""Settings → the typed configs the runtime and the adapters are given.

The only module that reads `engine.settings.Settings` field by field: everything below
the composition root receives small config dataclasses and ports as arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from adapters.nats.ingest.config import IngestConfig, IngestConfigError, load_ingest_config
from engine.domain.cell import CellLimits
from engine.domain.ports import Backend, BackendFactory
from engine.domain.statuses import DEFAULT_DICTIONARY, DictionaryError, StatusDictionary, load_dictionary
from engine.runtime.batcher import BatchLimits
from engine.runtime.host import SnapshotPolicy
from engine.settings import Settings

if TYPE_CHECKING:  # imported when used: importing Ray takes a while and most callers need none
    from adapters.nats.journal import JournalConfig
    from engine.runtime.cluster import ClusterConfig, RayConfig


class SettingsProblem(Exception):
    """A setting that parses but cannot be used (an unreadable file, a bad ingestion map).
    Names the field, so the CLI can point at the flag or environment variable."""

    field: str
    message: str

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_settings(settings: Settings) -> None:
    """Read every file the settings name, now: a typo must stop start-up before Ray does.
    Raises SettingsProblem naming the first bad field."""
    statuses_of(settings)
    ingest_config_of(settings)


def statuses_of(settings: Settings) -> StatusDictionary:
    path = settings.status_dictionary
    if path is None:
        return DEFAULT_DICTIONARY
    try:
        return load_dictionary(path)
    except OSError as exc:
        raise SettingsProblem("status_dictionary", f"cannot read {path}: {exc.strerror or exc}") from None
    except DictionaryError as exc:
        raise SettingsProblem("status_dictionary", str(exc)) from None


def ingest_config_of(settings: Settings) -> IngestConfig:
    """The ingestion map (devices, GTINs, subjects); with no file, nothing is mapped yet."""
    path: Path | None = settings.ingest_config
    try:
        return load_ingest_config(path, settings.namespace)
    except IngestConfigError as exc:
        raise SettingsProblem("ingest_config", f"{exc} (got {str(path)!r})") from None


def ray_config(settings: Settings) -> RayConfig:
    from engine.runtime.cluster import RayConfig

    return RayConfig(namespace=settings.namespace, address=settings.ray_address, num_cpus=settings.ray_num_cpus)


def cell_limits(settings: Settings) -> CellLimits:
    return CellLimits(
        dedupe_window_ms=settings.dedupe_window_ms,
        dedupe_max_entries=settings.dedupe_max_entries,
        resolved_hold_retention_ms=settings.resolved_hold_retention_ms,
        out_of_stock_retention_ms=settings.out_of_stock_retention_ms,
    )


def cluster_config(settings: Settings) -> ClusterConfig:
    from engine.runtime.cluster import ClusterConfig

    return ClusterConfig(
        ray=ray_config(settings),
        shards=settings.shards,
        statuses=statuses_of(settings),
        cell_limits=cell_limits(settings),
        batch_limits=BatchLimits(
            settings.batch_max, settings.batch_window_ms, settings.queue_max, settings.max_in_flight
        ),
        snapshot_policy=SnapshotPolicy(
            settings.snapshot_min_tail_ops,
            settings.snapshot_interval_ms,
            settings.snapshot_tail_fraction,
            max(settings.snapshot_min_tail_ops, settings.snapshot_max_tail_ops),
        ),
        sweep_interval_ms=settings.sweep_interval_ms,
        durable=settings.journal == "nats",
        shard_max_restarts=settings.shard_max_restarts,
        standby=settings.standby and settings.journal == "nats",
        channel=settings.shard_channel,
        follow_interval_ms=settings.standby_follow_interval_ms,
        recoveries_path=settings.data_dir / "recoveries.json",
        log_level=settings.log_level,
        log_format=settings.log_format,
    )


def journal_backend(settings: Settings, nats_url: str) -> BackendFactory:
    """How a shard (in its own process) reaches the journal: picklable, connects lazily."""
    if settings.journal == "memory":
        from adapters.memory.backend import in_memory_backend

        return in_memory_backend
    from adapters.nats.journal import engine_journal_config

    return nats_backend(engine_journal_config(settings.namespace, nats_url, settings.journal_replicas))


def nats_backend(config: JournalConfig) -> BackendFactory:
    """The JetStream journal and snapshot bucket of `config`, connected when a shard starts."""

    async def connect() -> Backend:
        from adapters.nats.journal import connect_journal

        journal, snapshots, close = await connect_journal(config)
        return Backend(journal, snapshots, close)

    return connect
