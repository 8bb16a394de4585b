"""The whole engine from its settings: journal → Ray shards → gateway → services → gRPC + metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from engine.bootstrap.config import check_settings, cluster_config, ingest_config_of, journal_backend
from engine.bootstrap.documents import Desks, start_desks, transfer_flow_of
from engine.bootstrap.health import check_health_settings
from engine.bootstrap.http import http_skipped_because, start_http_gateway
from engine.health.hooks import HealthHooks
from engine.runtime.gateway import Gateway
from engine.settings import Settings

if TYPE_CHECKING:
    from adapters.envoy.gateway import EnvoyGateway
    from adapters.nats.bus import BusRuntime
    from adapters.nats.server import EmbeddedNats
    from engine.api.server import LotwiseServer, MetricsEndpoint
    from engine.bootstrap.console import ConsoleRuntime
    from engine.bootstrap.finance import FinanceRuntime
    from engine.bootstrap.health import HealthRuntime
    from engine.bootstrap.history import HistoryRuntime
    from engine.bootstrap.ingest import IngestRuntime
    from engine.bootstrap.replenish import ReplenishRuntime

log = structlog.get_logger("lotwise.app")


@dataclass(frozen=True, slots=True)
class RunningEngine:
    settings: Settings
    gateway: Gateway
    grpc_address: str  # host:port clients dial
    metrics_url: str  # "" when metrics are off
    nats: EmbeddedNats | None = None  # the embedded nats-server when this engine started one
    history: HistoryRuntime | None = None  # store, sink and service when history is on
    ingest: IngestRuntime | None = None  # consumer, dead letters and desk when ingestion is on
    bus: BusRuntime | None = None  # the business-event bus when it is on
    token_file: Path | None = None  # the admin token `up` wrote (engine.json names it); None: auth off or IdP
    replenish: ReplenishRuntime | None = None  # suggestions, their trigger follower and schedule
    health: HealthRuntime | None = None  # alerts, expiry watch, reconciliation, shelf counts when on
    console_url: str = ""  # the web console, http://host:port/; "" when it is off
    http_url: str = ""  # http://host:port of the HTTP/JSON gateway (Envoy); "" when it is off
    finance: FinanceRuntime | None = None  # the finance follower, store and desk when finance is on


class StartPhases:
    """Where start-up time goes: milliseconds per phase, for the "lotwise is up" log line."""

    def __init__(self) -> None:
        self._started = self._last = time.perf_counter()
        self.ms: dict[str, float] = {}

    def done(self, phase: str) -> None:
        now = time.perf_counter()
        self.ms[phase] = round((now - self._last) * 1000, 1)
        self._last = now

    def total_ms(self) -> float:
        return round((time.perf_counter() - self._started) * 1000, 1)


@dataclass(slots=True)
class _Parts:
    """What has been started so far, so the way down stops exactly that, in reverse."""

    nats: EmbeddedNats | None = None
    gateway: Gateway | None = None
    own_gateway: bool = False
    history: HistoryRuntime | None = None
    bus: BusRuntime | None = None
    ingest: IngestRuntime | None = None
    server: LotwiseServer | None = None
    metrics: MetricsEndpoint | None = None
    phases: StartPhases = field(default_factory=StartPhases)
    nats_url: str = ""
    desks: Desks | None = None  # the org tree and transfers
    console: ConsoleRuntime | None = None  # the web console, when on
    replenish: ReplenishRuntime | None = None
    health: HealthRuntime | None = None  # alerts, expiry rules, reconciliation, shelf counts
    hooks: HealthHooks = field(default_factory=HealthHooks)  # dead letters, excursions → alerts (bound later)
    http: EnvoyGateway | None = None  # the HTTP/JSON gateway in front of the gRPC server
    finance: FinanceRuntime | None = None


async def start_embedded_nats(settings: Settings) -> EmbeddedNats:
    """The embedded journal: a nats-server from the pip-installed binary, on 127.0.0.1."""
    from adapters.nats.server import EmbeddedNats, EmbeddedNatsConfig

    nats = EmbeddedNats(EmbeddedNatsConfig(data_dir=settings.data_dir / "nats", port=settings.nats_port))
    await nats.start()
    log.info("embedded nats-server started", url=nats.url, data_dir=str(settings.data_dir / "nats"))
    return nats


class _NoSigtermNotice(logging.Filter):
    """Ray started off the main thread says it set no SIGTERM handler: the CLI sets its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


def start_ray_quietly(settings: Settings) -> None:
    """Start (or join) Ray from any thread."""
    from engine.bootstrap.ray import start_ray

    ray_worker_log = logging.getLogger("ray._private.worker")
    notice = _NoSigtermNotice()
    ray_worker_log.addFilter(notice)
    try:
        start_ray(settings)
    finally:
        ray_worker_log.removeFilter(notice)


async def start_gateway(settings: Settings, nats_url: str, phases: StartPhases | None = None) -> Gateway:
    """Ray shards over the journal at `nats_url` (or in memory), and a gateway over them."""
    from engine.bootstrap.ray import start_ray
    from engine.runtime.cluster import start_gateway as start_cluster

    start_ray(settings)
    if phases is not None:
        phases.done("ray")
    return await start_cluster(cluster_config(settings), journal_backend(settings, nats_url))


async def start_history_runtime(settings: Settings, nats_url: str) -> HistoryRuntime:
    """History (DESIGN §8): a sink from the journal into ClickHouse (chDB embedded under
    the data dir, or a server), and the lotwise.v1.History service over it. This process
    owns the chDB path, so queries are served here too."""
    from engine.bootstrap.history import history_config, journal_config_for, start_history

    config = history_config(settings.data_dir, settings.namespace, settings.history_dsn)
    config = replace(config, store=replace(config.store, rollup_ttl_days=settings.history_rollup_ttl_days))
    journal = journal_config_for(settings.namespace, nats_url, settings.journal_replicas)
    return await start_history(config, journal)


async def start_ingest_runtime(
    settings: Settings, gateway: Gateway, nats_url: str, desks: Desks | None = None, hooks: HealthHooks | None = None
) -> IngestRuntime:
    """Ingestion (IoT cabinets and WMS over NATS) with its dead letters; WMS transfer
    events naming an engine transfer advance it through the desks."""
    from engine.bootstrap.documents import WmsTransferSteps
    from engine.bootstrap.ingest import start_ingest

    return await start_ingest(
        gateway,
        ingest_config_of(settings),
        namespace=settings.namespace,
        nats_url=nats_url,
        replicas=settings.journal_replicas,
        transfers=WmsTransferSteps(desks.transfers) if desks is not None else None,
        hooks=hooks if settings.health else None,
    )


async def start_bus_runtime(settings: Settings, nats_url: str) -> BusRuntime:
    """The business-event bus: every journaled movement, in order, as JSON and/or Avro."""
    from adapters.nats.bus import engine_bus_config, start_bus
    from adapters.nats.journal import engine_journal_config

    formats = tuple(settings.events_formats.split(","))
    bus = engine_bus_config(settings.namespace, nats_url, settings.journal_replicas, formats=formats)
    journal = engine_journal_config(settings.namespace, nats_url, settings.journal_replicas, client_name="lotwise-bus")
    return await start_bus(bus, journal)


async def start_replenish_runtime(settings: Settings, gateway: Gateway, parts: _Parts) -> ReplenishRuntime:
    """Replenishment (issue 14): its store and events beside the journal, its trigger
    follower on it, reading positions from the gateway and demand from the history."""
    from engine.bootstrap.replenish import start_replenish

    history = parts.history.store if parts.history is not None else None
    hooks = parts.hooks if settings.health else None  # keeper alerts → alerts (bound when health runs)
    transit = parts.desks.transfers if parts.desks is not None else None  # shipped transfers' ETAs
    return await start_replenish(settings, gateway, parts.nats_url or settings.nats_url, history, hooks, transit)


async def _start_services(settings: Settings, parts: _Parts) -> Gateway:
    """The journal, the shards and what follows the journal (history, bus, ingestion)."""
    nats_url = settings.nats_url
    if settings.journal == "nats" and not nats_url:
        # Ray and the nats-server start side by side: each mostly waits for its processes.
        ray_started = asyncio.ensure_future(asyncio.to_thread(start_ray_quietly, settings))
        try:
            parts.nats = await start_embedded_nats(settings)
        except BaseException:
            with contextlib.suppress(Exception):
                await ray_started
            raise
        nats_url = parts.nats.url
        parts.phases.done("nats")
        await ray_started
    parts.nats_url = nats_url
    # The followers need only the journal: they open (chDB, consumers) while the shard
    # actors start in their own processes, on the other core.
    followers = asyncio.ensure_future(_start_followers(settings, parts, nats_url))
    try:
        gateway = parts.gateway = await start_gateway(settings, nats_url, parts.phases)
    except BaseException:
        with contextlib.suppress(Exception):
            await followers  # so that the way down stops what they started
        raise
    parts.own_gateway = True
    parts.phases.done("shards")
    await followers
    parts.phases.done("followers")
    if settings.journal != "nats":  # the journal followers need a durable journal
        return gateway
    if settings.ingest:
        parts.desks = await start_desks(settings, gateway, nats_url)  # before ingestion: it advances transfers
        parts.ingest = await start_ingest_runtime(settings, gateway, nats_url, parts.desks, parts.hooks)
        parts.phases.done("ingest")
    return gateway


async def _start_followers(settings: Settings, parts: _Parts, nats_url: str) -> None:
    """History and the event bus, when on (they need a durable journal)."""
    if settings.journal != "nats":
        return
    if settings.history:
        parts.history = await start_history_runtime(settings, nats_url)
    if settings.events:
        parts.bus = await start_bus_runtime(settings, nats_url)
    if settings.finance:  # issue 16: vouchers at the event, off the order path
        from engine.bootstrap.finance import start_finance

        parts.finance = await start_finance(settings, nats_url)


async def _stop(parts: _Parts) -> None:
    if parts.console is not None:
        await parts.console.stop()  # its pages call the server: down before it
    if parts.http is not None:
        await parts.http.stop()  # before the gRPC server: HTTP callers are drained by Envoy first
    if parts.ingest is not None:
        await parts.ingest.stop()  # first: it applies through the gateway and the server
    if parts.server is not None:
        await parts.server.stop(2.0)
    if parts.health is not None:
        await parts.health.stop()  # its timers and follower, before the documents close
    if parts.metrics is not None:
        parts.metrics.stop()
    if parts.replenish is not None:
        await parts.replenish.stop()
    if parts.bus is not None:
        await parts.bus.stop()
    if parts.finance is not None:
        await parts.finance.stop()
    if parts.history is not None:
        await parts.history.stop()  # the sink flushes and acks what it holds
    if parts.desks is not None:
        await parts.desks.close()  # the transfer-event publisher, then the documents
    if parts.own_gateway and parts.gateway is not None:
        await parts.gateway.close()
    if parts.nats is not None:
        await parts.nats.stop()


async def _start_stock_health(settings: Settings, gateway: Gateway, parts: _Parts) -> HealthRuntime | None:
    """Stock health (issue 15) over the documents of the desks, history when it is on."""
    if not settings.health or parts.desks is None:
        return None
    from engine.bootstrap.health import start_health

    history = parts.history.store if parts.history else None
    nats_url = parts.nats_url or settings.nats_url
    return await start_health(
        settings, gateway, gateway.statuses, nats_url, parts.desks.documents, history=history, hooks=parts.hooks
    )


def _settle_collector() -> None:
    """The cyclic collector of the engine's process, once everything has started.

    This process holds what start-up made for good (Ray, gRPC, chDB's and the followers'
    modules and state: ~350,000 tracked objects) and churns short-lived ones per movement
    (every follower's batch, every call). Each full collection walked all of it: ~0.3–1 s
    at a time on the event loop under load, ~15 % of its samples in a followers-on profile
    (bench/README.md, "The collector of the engine's process"). Start-up's objects leave the
    collector's generations (`gc.freeze`), and young collections come every 10,000
    allocations rather than 700, as in the shards' processes."""
    from engine.runtime.host import freeze_long_lived, raise_young_threshold

    raise_young_threshold()
    freeze_long_lived(collect_young=True)


def _release_collector() -> None:
    """After the engine stopped: what it froze goes back to the collector, so the cycles it
    left behind are freed (a process that starts engines one after another — tests, an
    embedder — would otherwise keep every stopped engine's cyclic garbage for good)."""
    import gc

    gc.unfreeze()


@asynccontextmanager
async def running_engine(settings: Settings, *, gateway: Gateway | None = None) -> AsyncIterator[RunningEngine]:
    """Start everything, yield where it listens, stop it all on exit (in reverse order).

    `gateway` lets tests and embedders supply an in-process one (no Ray)."""
    from engine.api.server import ServerOptions, start_metrics_http, start_server
    from engine.bootstrap.auth import server_credentials, start_auth
    from engine.runtime.host import raise_young_threshold

    # This process serves the API and the gateway and runs the followers: a bulk load's
    # chunks and a follower's batches make thousands of short-lived objects at a time, and
    # at CPython's 700 allocations per young collection they were collected over and over
    # (bench/README.md, "Bulk load", 2026-12-07). As in a process hosting shards.
    raise_young_threshold()
    check_settings(settings)  # a bad file named in the settings stops us before Ray starts
    check_health_settings(settings)  # the expiry rules and tolerances too
    transfer_flow_of(settings)  # the transfer flow too
    if settings.replenish:
        from engine.bootstrap.replenish import rules_of

        rules_of(settings)  # and the replenishment rules file
    if settings.finance:  # and the finance rules and ledgers
        from engine.bootstrap.finance import finance_rules_of, finance_setup_of

        finance_rules_of(settings)
        finance_setup_of(settings)
    auth = start_auth(settings)  # keys, policy and certificates too
    credentials = server_credentials(settings)
    parts = _Parts(gateway=gateway)
    try:
        gw = gateway if gateway is not None else await _start_services(settings, parts)
        if parts.desks is None:
            parts.desks = await start_desks(settings, gw, parts.nats_url or settings.nats_url)
        if parts.finance is not None:  # companies: the org tree's legal entities (issue 16)
            await parts.finance.follow_org(parts.desks.org, gw)
        if settings.replenish:
            parts.replenish = await start_replenish_runtime(settings, gw, parts)
        parts.health = await _start_stock_health(settings, gw, parts)
        options = ServerOptions(max_concurrent_rpcs=settings.max_concurrent_rpcs)
        parts.server, port = await start_server(
            gw,
            settings.host,
            settings.port,
            options,
            admin=gw,
            history=parts.history.service if parts.history else None,
            dead_letters=parts.ingest.desk if parts.ingest else None,
            auth=auth.server if auth else None,
            credentials=credentials,
            org=parts.desks.org,
            transfers=parts.desks.transfers,
            replenishment=parts.replenish.service if parts.replenish else None,
            stock_health=parts.health.desks() if parts.health else None,
            finance=parts.finance.desk if parts.finance else None,
        )
        parts.metrics = start_metrics_http(settings.metrics_port, addr=settings.host)
        parts.phases.done("grpc")
        if not http_skipped_because(settings):
            parts.http = await start_http_gateway(settings, port)
            parts.phases.done("http")
        address = f"{settings.host}:{port}"
        if settings.console:
            from engine.bootstrap.console import start_console

            parts.console = await start_console(settings, address)  # None when it cannot serve (logged)
            parts.phases.done("console")
        metrics_url = f"http://{settings.host}:{parts.metrics.port}/metrics"
        _settle_collector()
        log.info(
            "lotwise is up",
            grpc=address,
            metrics=metrics_url,
            console=parts.console.url if parts.console else "off",
            http=parts.http.url if parts.http else http_skipped_because(settings),
            shards=len(gw.directory.all_shards()),
            start_ms=parts.phases.total_ms(),
            phases_ms=parts.phases.ms,
        )
        yield RunningEngine(
            settings,
            gw,
            address,
            metrics_url,
            parts.nats,
            parts.history,
            parts.ingest,
            parts.bus,
            auth.token_file if auth else None,
            parts.replenish,
            parts.health,
            console_url=parts.console.url if parts.console else "",
            http_url=parts.http.url if parts.http else "",
            finance=parts.finance,
        )
    finally:
        await _stop(parts)
        _release_collector()
