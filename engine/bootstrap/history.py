"""Wiring history: the store, the sink and the gRPC service over them (DESIGN.md §8, §11).

`running_engine` calls `start_history` once the journal exists and passes
`runtime.service` to the gRPC server; `runtime.stop()` on the way down. With the embedded
default the store is chDB under the engine's data dir, owned by this process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry

from adapters.clickhouse.sink import SinkConfig, SinkMetrics, default_sink_metrics
from adapters.clickhouse.store import ClickHouseHistoryStore, HistoryStoreConfig, chdb_dsn, open_store
from adapters.nats.history import HistorySink
from adapters.nats.journal import JournalConfig, NatsLink, engine_journal_config
from engine.api.history import HistoryServicer

log = structlog.get_logger("lotwise.history")


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    store: HistoryStoreConfig
    sink: SinkConfig = field(default_factory=SinkConfig)
    run_sink: bool = True  # False: serve queries only (another process feeds the store)


def history_config(data_dir: Path, namespace: str, dsn: str = "", database: str = "") -> HistoryConfig:
    """The embedded default: chDB at <data_dir>/history, one database per namespace.
    `dsn` (http(s)://...) points at a ClickHouse server instead."""
    db = database or "lotwise_" + re.sub(r"[^A-Za-z0-9_]", "_", namespace)
    return HistoryConfig(HistoryStoreConfig(dsn=dsn or chdb_dsn(Path(data_dir) / "history"), database=db))


def journal_config_for(namespace: str, nats_url: str, replicas: int = 1) -> JournalConfig:
    """The journal the shards of `namespace` write (named in one place, the journal adapter)."""
    return engine_journal_config(namespace, nats_url, replicas, client_name="lotwise-history")


@dataclass(slots=True)
class HistoryRuntime:
    store: ClickHouseHistoryStore
    sink: HistorySink | None
    service: HistoryServicer  # pass to engine.api.server.start_server(history=...)
    link: NatsLink | None

    async def stop(self) -> None:
        """Sink first (it flushes and acks what it holds), then the store and the link."""
        if self.sink is not None:
            await self.sink.stop()
        await self.store.close()
        if self.link is not None:
            await self.link.close()
        log.info("history stopped")


async def start_history(
    config: HistoryConfig, journal: JournalConfig, registry: CollectorRegistry | None = None
) -> HistoryRuntime:
    """Open the store (migrating its schema), start the sink on the journal, build the
    servicer. Raises Unavailable when the store cannot be opened (e.g. its chdb path is
    owned by another process)."""
    store = await open_store(config.store)
    link: NatsLink | None = None
    sink: HistorySink | None = None
    try:
        if config.run_sink:
            link = NatsLink(journal)
            await link.connect()
            sink = HistorySink(
                link, store, config.sink, SinkMetrics(registry) if registry is not None else default_sink_metrics()
            )
            await sink.start()
    except BaseException:
        if link is not None:
            await link.close()
        await store.close()
        raise
    return HistoryRuntime(store, sink, HistoryServicer(store, sink), link)
