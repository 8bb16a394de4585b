"""The composition root: settings → Ray shards → gateway → gRPC server + metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog

from engine.runtime.gateway import Gateway
from engine.settings import Settings

log = structlog.get_logger("lotwise.app")


@dataclass(frozen=True, slots=True)
class RunningEngine:
    settings: Settings
    gateway: Gateway
    grpc_address: str  # host:port clients dial
    metrics_url: str  # "" when metrics are off
    nats: Any = None  # the embedded nats-server (EmbeddedNats) when this engine started one
    history: Any = None  # the history runtime (store, sink, service) when history is on
    ingest: Any = None  # the ingestion runtime (consumer, dead letters, desk) when ingestion is on
    bus: Any = None  # the business-event bus runtime when it is on


async def start_embedded_nats(settings: Settings) -> Any:
    """The embedded journal: a nats-server from the pip-installed binary, on 127.0.0.1."""
    from adapters.nats.server import EmbeddedNats, EmbeddedNatsConfig

    nats = EmbeddedNats(EmbeddedNatsConfig(data_dir=settings.data_dir / "nats", port=settings.nats_port))
    await nats.start()
    log.info("embedded nats-server started", url=nats.url, data_dir=str(settings.data_dir / "nats"))
    return nats


async def start_history_runtime(settings: Settings, nats_url: str) -> Any:
    """History (DESIGN §8): a sink from the journal into ClickHouse (chDB embedded under
    the data dir, or a server), and the lotwise.v1.History service over it. This process
    owns the chDB path, so queries are served here too."""
    from dataclasses import replace

    from adapters.clickhouse.runtime import history_config, journal_config_for, start_history

    config = history_config(settings.data_dir, settings.namespace, settings.history_dsn)
    config = replace(config, store=replace(config.store, rollup_ttl_days=settings.history_rollup_ttl_days))
    journal = journal_config_for(settings.namespace, nats_url, settings.journal_replicas)
    return await start_history(config, journal)


async def start_ingest_runtime(settings: Settings, gateway: Gateway, nats_url: str) -> Any:
    """Ingestion (issue: IoT cabinets and WMS over NATS) with its dead letters."""
    from adapters.nats.ingest.config import load_ingest_config
    from adapters.nats.ingest.runtime import start_ingest

    config = load_ingest_config(settings.ingest_config, settings.namespace)
    return await start_ingest(
        gateway, config, namespace=settings.namespace, nats_url=nats_url, replicas=settings.journal_replicas
    )


async def start_bus_runtime(settings: Settings, nats_url: str) -> Any:
    """The business-event bus: every journaled movement, in order, as JSON and/or Avro."""
    from adapters.nats.bus import engine_bus_config, start_bus
    from adapters.nats.journal import engine_journal_config

    formats = tuple(settings.events_formats.split(","))
    bus = engine_bus_config(settings.namespace, nats_url, settings.journal_replicas, formats=formats)
    journal = engine_journal_config(settings.namespace, nats_url, settings.journal_replicas, client_name="lotwise-bus")
    return await start_bus(bus, journal)


@asynccontextmanager
async def running_engine(settings: Settings, *, gateway: Gateway | None = None) -> AsyncIterator[RunningEngine]:
    """Start everything, yield where it listens, stop it all on exit (in reverse order).

    `gateway` lets tests and embedders supply an in-process one (no Ray).
    """
    from engine.api.server import ServerOptions, start_metrics_http, start_server
    from engine.runtime.cluster import start_gateway

    own_gateway = gateway is None
    nats: Any = None
    server: Any = None
    metrics: Any = None
    history: Any = None
    ingest: Any = None
    bus: Any = None
    gw = gateway
    try:
        if gw is None:
            nats_url = settings.nats_url
            if settings.journal == "nats" and not nats_url:
                nats = await start_embedded_nats(settings)
                nats_url = nats.url
            gw = await start_gateway(settings, nats_url)
            if settings.history and settings.journal == "nats":
                history = await start_history_runtime(settings, nats_url)
            if settings.events and settings.journal == "nats":
                bus = await start_bus_runtime(settings, nats_url)
            if settings.ingest and settings.journal == "nats":
                ingest = await start_ingest_runtime(settings, gw, nats_url)
        options = ServerOptions(max_concurrent_rpcs=settings.max_concurrent_rpcs)
        server, port = await start_server(
            gw,
            settings.host,
            settings.port,
            options,
            admin=gw,
            history=history.service if history else None,
            dead_letters=ingest.desk if ingest else None,
        )
        metrics = start_metrics_http(settings.metrics_port, addr=settings.host)
        address = f"{settings.host}:{port}"
        metrics_url = f"http://{settings.host}:{metrics.port}/metrics"
        log.info("lotwise is up", grpc=address, metrics=metrics_url, shards=len(gw.directory.all_shards()))
        yield RunningEngine(settings, gw, address, metrics_url, nats, history, ingest, bus)
    finally:
        if ingest is not None:
            await ingest.stop()  # first: it applies through the gateway and the server
        if server is not None:
            await server.stop(2.0)
        if metrics is not None:
            metrics.stop()
        if bus is not None:
            await bus.stop()
        if history is not None:
            await history.stop()  # the sink flushes and acks what it holds
        if own_gateway and gw is not None:
            await gw.close()
        if nats is not None:
            await nats.stop()
