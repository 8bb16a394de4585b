"""The composition root: settings become the typed configs and ports the layers below are given."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.memory.backend import in_memory_backend
from engine import bootstrap
from engine.bootstrap.config import cluster_config, ingest_config_of, journal_backend, ray_config, statuses_of
from engine.domain.catalog import Site, Sku
from engine.domain.cell import CellLimits
from engine.domain.clock import ManualClock
from engine.domain.commands import Receive
from engine.domain.statuses import DEFAULT_DICTIONARY
from engine.runtime.batcher import BatchLimits
from engine.runtime.host import ShardHost, SnapshotPolicy
from engine.settings import Settings


def test_cluster_config_carries_every_limit_of_the_settings() -> None:
    settings = Settings(
        namespace="n1",
        ray_address="ray://head:10001",
        ray_num_cpus=3,
        shards=5,
        batch_max=64,
        batch_window_ms=2.5,
        queue_max=900,
        max_in_flight=4,
        dedupe_window_ms=120_000,
        dedupe_max_entries=77,
        resolved_hold_retention_ms=5_000,
        sweep_interval_ms=250,
        snapshot_min_tail_ops=10,
        snapshot_tail_fraction=0.25,
        snapshot_max_tail_ops=5_000,
        snapshot_interval_ms=2_000,
        shard_max_restarts=7,
        log_level="warning",
        log_format="json",
    )
    config = cluster_config(settings)
    assert (config.ray.namespace, config.ray.address, config.ray.num_cpus) == ("n1", "ray://head:10001", 3)
    assert not config.embedded
    assert config.shards == 5
    assert config.batch_limits == BatchLimits(64, 2.5, 900, 4)
    assert config.cell_limits == CellLimits(
        dedupe_window_ms=120_000, dedupe_max_entries=77, resolved_hold_retention_ms=5_000
    )
    assert config.snapshot_policy == SnapshotPolicy(10, 2_000, 0.25, 5_000)
    assert (config.sweep_interval_ms, config.shard_max_restarts) == (250, 7)
    assert (config.log_level, config.log_format) == ("warning", "json")
    assert config.durable  # the default journal is JetStream
    assert config.statuses is DEFAULT_DICTIONARY


def test_a_local_ray_is_embedded_and_the_memory_journal_is_not_durable() -> None:
    settings = Settings(journal="memory")
    assert ray_config(settings).address == ""
    assert cluster_config(settings).embedded
    assert not cluster_config(settings).durable
    assert journal_backend(settings, "") is in_memory_backend


async def test_the_nats_journal_backend_connects_only_when_a_shard_starts() -> None:
    # Nothing listens on this port: building the factory must not try to connect.
    factory = journal_backend(Settings(journal="nats"), "nats://127.0.0.1:1")
    assert callable(factory)
    assert factory is not in_memory_backend


def test_a_bad_ingestion_map_is_named_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "ingest.toml"
    bad.write_text("[consumer]\nmax_deliver = 1\n")
    settings = Settings(ingest_config=bad)  # parses: the file is read by the composition root
    with pytest.raises(bootstrap.SettingsProblem) as caught:
        bootstrap.check_settings(settings)
    assert caught.value.field == "ingest_config"
    assert "consumer.max_deliver" in caught.value.message


def test_an_unreadable_status_dictionary_is_named(tmp_path: Path) -> None:
    settings = Settings(status_dictionary=tmp_path / "missing.json")
    with pytest.raises(bootstrap.SettingsProblem) as caught:
        statuses_of(settings)
    assert caught.value.field == "status_dictionary"
    assert "cannot read" in caught.value.message


def test_no_ingestion_file_maps_no_devices() -> None:
    config = ingest_config_of(Settings())
    assert not config.cabinets


def test_a_shard_host_needs_its_journal_backend_from_the_root() -> None:
    with pytest.raises(ValueError, match="no journal backend"):
        ShardHost("s0")


async def test_local_gateway_journals_every_shard_where_verify_reads_it() -> None:
    gateway = bootstrap.local_gateway(shards=2, clock=ManualClock(), sweep_interval_ms=0)
    try:
        await gateway.put_sku(Sku("strip", "Glucose test strips", "box"))
        await gateway.put_site(Site("ward1", "acme/east", "cabinet"))
        await gateway.execute(Receive("r1", "strip", "ward1", "L1", 5))
        checks = await gateway.verify()
        assert len(checks) == 2
        assert all(check.ok for check in checks)
        assert sum(check.replayed_batches for check in checks) >= 3  # the two puts and the receipt
    finally:
        await gateway.close()
