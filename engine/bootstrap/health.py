"""Stock health wired from the settings (issue 15): the alert desk over its store, the
expiry watch (timers + daily sweep) fed by a journal follower, reconciliation, proposals
and shelf counts, and their Prometheus metrics.

With a durable journal the alerts live in a JetStream key-value bucket and alerts/health
events are published on NATS (adapters.nats.health); with `journal=memory` in memory."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from engine.api.health import HealthDesks
from engine.bootstrap.config import SettingsProblem
from engine.domain.clock import SystemClock
from engine.domain.documents import DocumentStore
from engine.domain.ports import Clock, HistoryStore
from engine.domain.statuses import Role, StatusDictionary
from engine.health.alerts import Alert
from engine.health.books import BooksPort, CellBooks, HistoryBooks
from engine.health.desk import AlertDesk
from engine.health.expiry_rules import ExpiryRules, RulesError, default_rules, parse_rules
from engine.health.expiry_sink import ExpirySink
from engine.health.hooks import AlertingDeadLetters, HealthHooks
from engine.health.ports import AlertStore, HealthPublisher
from engine.health.reconcile import TOLERANCE_SCHEMA, Tolerances, parse_tolerances
from engine.health.services import ProposalDesk, Reconciled, ReconcileHooks, Reconciler, ShelfDesk
from engine.health.shelf import SalesReps, ShelfRules, parse_sales_reps
from engine.health.sweep import ExpiryWatch, StockPort, WatchHooks
from engine.settings import Settings

log = structlog.get_logger("lotwise.health")
RESERVED_NAMESPACES = frozenset({"alerts", "health", "snapshots"})
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 30_000, 300_000)


class HealthMetrics:
    """Alerts by kind and transition, expiry actions and their crossing → action latency,
    reconciliation drift; and the gauges every journal follower keeps."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.alerts = Counter(
            "lotwise_alerts",
            "Alert transitions, by kind and transition (opened, repeated, acknowledged, closed)",
            ["kind", "transition"],
            registry=registry,
        )
        self.expiry_actions = Counter(
            "lotwise_expiry_actions",
            "Expiry rule actions (promotion, near_expiry, expiry)",
            ["action"],
            registry=registry,
        )
        self.expiry_latency = Histogram(
            "lotwise_expiry_action_latency_ms",
            "From a lot crossing its limit to the rule's action (timers)",
            buckets=LATENCY_BUCKETS_MS,
            registry=registry,
        )
        self.recon_lines = Counter(
            "lotwise_reconciliation_lines", "Snapshot lines reconciled, by class", ["class"], registry=registry
        )
        self.recon_accuracy = Gauge(
            "lotwise_reconciliation_record_accuracy",
            "Matching lines ÷ lines of the last snapshot, by source",
            ["source"],
            registry=registry,
        )
        self.recon_value_at_risk = Gauge(
            "lotwise_reconciliation_value_at_risk",
            "Value of real differences of the last snapshot, by source",
            ["source"],
            registry=registry,
        )
        # what FollowerMetrics asks of every journal follower
        self.lag_messages = Gauge(
            "lotwise_health_lag_messages", "Journal messages the expiry follower has not acked", registry=registry
        )
        self.stream_position = Gauge(
            "lotwise_health_journal_position", "Last position of the journal stream", registry=registry
        )
        self.acked_position = Gauge(
            "lotwise_health_acked_position", "Journal position the expiry follower acked", registry=registry
        )
        self.failures = Counter(
            "lotwise_health_follower_failures", "Failed applies of the expiry follower", registry=registry
        )
        self.dead_letters = Counter(
            "lotwise_health_dead_letters", "Journal messages the expiry follower dead-lettered", registry=registry
        )
        self.delay = Histogram(
            "lotwise_health_follower_delay_seconds",
            "From journal append to the expiry follower's ack",
            registry=registry,
        )

    def on_transition(self, alert: Alert, transition: str) -> None:
        self.alerts.labels(alert.kind, transition).inc()

    def on_action(self, kind: str, latency_ms: float) -> None:
        self.expiry_actions.labels(kind).inc()
        if latency_ms >= 0:
            self.expiry_latency.observe(latency_ms)

    def on_report(self, r: Reconciled) -> None:
        for klass, n in r.report.by_class.items():
            self.recon_lines.labels(klass).inc(n)
        self.recon_accuracy.labels(r.source).set(r.report.record_accuracy)
        self.recon_value_at_risk.labels(r.source).set(r.report.value_at_risk)


@functools.cache
def default_health_metrics() -> HealthMetrics:
    return HealthMetrics(REGISTRY)


def expiry_rules_of(settings: Settings, statuses: StatusDictionary) -> ExpiryRules:
    path = settings.health_expiry_rules
    if path is None:
        return default_rules()
    try:
        return parse_rules(json.loads(path.read_text()), frozenset(statuses.statuses))
    except OSError as exc:
        raise SettingsProblem("health_expiry_rules", f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, RulesError) as exc:
        raise SettingsProblem("health_expiry_rules", f"{path}: {exc}") from None


def tolerances_of(path: Path | None) -> Tolerances:
    if path is None:
        return parse_tolerances({"schema": TOLERANCE_SCHEMA, "tolerances": [{"category": "*", "qty_abs": 0}]})
    try:
        return parse_tolerances(json.loads(path.read_text()))
    except OSError as exc:
        raise SettingsProblem("health_tolerances", f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise SettingsProblem("health_tolerances", f"{path}: {exc}") from None


def sales_reps_of(path: Path | None) -> SalesReps:
    if path is None:
        return SalesReps()
    try:
        return parse_sales_reps(json.loads(path.read_text()))
    except OSError as exc:
        raise SettingsProblem("health_sales_reps", f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise SettingsProblem("health_sales_reps", f"{path}: {exc}") from None


def check_health_settings(settings: Settings) -> None:
    """Read and check the files stock health names (SettingsProblem naming the field)."""
    if settings.health:
        from engine.bootstrap.config import statuses_of

        if settings.namespace in RESERVED_NAMESPACES:
            # lotwise.<ns>.alerts.> would overlap the default namespace's lotwise.alerts.> (and so on)
            raise SettingsProblem("namespace", f"{settings.namespace!r} is reserved by stock health's subjects")
        expiry_rules_of(settings, statuses_of(settings))
        tolerances_of(settings.health_tolerances)
        sales_reps_of(settings.health_sales_reps)


def terminal_statuses(statuses: StatusDictionary, rules: ExpiryRules) -> frozenset[str]:
    """Statuses the watch leaves alone: not on hand or leaving the site, and where the
    rules send expired stock."""
    out = {s.name for s in statuses.statuses.values() if not s.on_hand or s.terminal_out}
    out |= {r.expired_status for r in rules.rules.values()}
    out.add(statuses.role(Role.REJECTED))
    return frozenset(out)


def on_hand_statuses(statuses: StatusDictionary) -> frozenset[str]:
    return frozenset(s.name for s in statuses.statuses.values() if s.on_hand)


@dataclass(slots=True)
class HealthRuntime:
    alerts: AlertDesk
    watch: ExpiryWatch
    reconciler: Reconciler
    proposals: ProposalDesk
    shelf: ShelfDesk
    sink: ExpirySink
    publisher: HealthPublisher | None
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    follower: object | None = None  # the JournalFollower feeding `sink` (durable journal only)
    intake: object | None = None  # snapshots from NATS (durable journal only)
    close_store: Callable[[], Awaitable[None]] | None = None

    def desks(self) -> HealthDesks:
        return HealthDesks(self.alerts, self.reconciler, self.proposals, self.shelf, self.watch)

    async def stop(self) -> None:
        self.stop_event.set()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self.task, 10.0)
        for part in (self.intake, self.follower):
            stop = getattr(part, "stop", None)
            if stop is not None:
                await stop()
        if self.close_store is not None:
            await self.close_store()


@dataclass(frozen=True, slots=True)
class HealthParts:
    """What start_health builds the runtime over: tests pass in-memory ones."""

    store: AlertStore
    publisher: HealthPublisher | None
    documents: DocumentStore
    close: Callable[[], Awaitable[None]] | None = None


async def open_health_parts(settings: Settings, nats_url: str, documents: DocumentStore) -> HealthParts:
    if settings.journal == "memory" or not nats_url:
        from adapters.memory.health import InMemoryAlertStore, InMemoryHealthPublisher

        return HealthParts(InMemoryAlertStore(), InMemoryHealthPublisher(), documents)
    from adapters.nats.health import connect_health, engine_health_config

    health = await connect_health(engine_health_config(settings.namespace, nats_url, settings.journal_replicas))
    return HealthParts(health.alerts, health.publisher, documents, health.close)


def build_health(
    settings: Settings,
    stock: StockPort,
    statuses: StatusDictionary,
    parts: HealthParts,
    *,
    clock: Clock | None = None,
    history: HistoryStore | None = None,
    metrics: HealthMetrics | None = None,
) -> HealthRuntime:
    """The desks over their parts (no task started: `start_health` runs them)."""
    now_ms = (clock or SystemClock()).now_ms
    m = metrics or default_health_metrics()
    rules = expiry_rules_of(settings, statuses)
    alerts = AlertDesk(parts.store, parts.publisher, now_ms, m.on_transition)
    watch = ExpiryWatch(
        stock,
        parts.documents,
        alerts,
        parts.publisher,
        rules,
        terminal_statuses(statuses, rules),
        now_ms,
        WatchHooks(on_action=m.on_action),
        sweep_interval_ms=int(settings.health_expiry_sweep_s * 1000),
        expired_role=statuses.role(Role.EXPIRED),
    )
    on_hand = on_hand_statuses(statuses)
    books: BooksPort = HistoryBooks(history, on_hand) if history is not None else CellBooks(stock, on_hand)
    proposals = ProposalDesk(parts.documents, stock, parts.publisher, now_ms)
    reconciler = Reconciler(
        books,
        parts.documents,
        alerts,
        proposals,
        tolerances_of(settings.health_tolerances),
        now_ms,
        statuses.role(Role.READY),
        settings.health_reconcile_skew_ms,
        ReconcileHooks(on_report=m.on_report),
    )
    shelf = ShelfDesk(
        stock,
        proposals,
        parts.publisher,
        ShelfRules(
            confidence_threshold=settings.health_shelf_confidence,
            sales_reps=sales_reps_of(settings.health_sales_reps),
        ),
        on_hand,
        now_ms,
    )
    return HealthRuntime(
        alerts, watch, reconciler, proposals, shelf, ExpirySink(watch, alerts), parts.publisher, close_store=parts.close
    )


async def start_health(
    settings: Settings,
    stock: StockPort,
    statuses: StatusDictionary,
    nats_url: str,
    documents: DocumentStore,
    *,
    history: HistoryStore | None = None,
    clock: Clock | None = None,
    hooks: HealthHooks | None = None,
) -> HealthRuntime:
    """Build, follow the journal and take snapshots from NATS (durable journal only), run
    the watch's loop; `hooks` (dead letters, excursions) raise alerts from now on."""
    parts = await open_health_parts(settings, nats_url, documents)
    runtime = build_health(settings, stock, statuses, parts, clock=clock, history=history)
    hooks = hooks or HealthHooks()
    hooks.bind(runtime.alerts)
    try:
        if settings.journal == "nats" and nats_url:
            runtime.follower = await _start_follower(settings, nats_url, runtime.sink)
            runtime.intake = await _start_intake(settings, nats_url, runtime.reconciler, hooks)
        runtime.task = asyncio.get_running_loop().create_task(
            runtime.watch.run(runtime.stop_event), name="expiry-watch"
        )
    except BaseException:
        await runtime.stop()
        raise
    log.info("stock health started", rules=runtime.watch.rules.version, follower=runtime.follower is not None)
    return runtime


async def _start_follower(settings: Settings, nats_url: str, sink: ExpirySink) -> object:
    from adapters.nats.follower import FollowerConfig, JournalFollower
    from adapters.nats.journal import NatsLink, engine_journal_config

    journal = engine_journal_config(
        settings.namespace, nats_url, settings.journal_replicas, client_name="lotwise-health"
    )
    link = NatsLink(journal)
    await link.connect()
    config = FollowerConfig(
        consumer="lotwise-health-expiry", dead_letter_tag="health", batch_max_ms=50.0, busy_batch_max_ms=500.0
    )
    follower = JournalFollower(link, sink, config, default_health_metrics())
    try:
        await follower.start()
    except BaseException:
        await link.close()
        raise

    class _Running:
        def __init__(self) -> None:
            self.follower = follower  # its lag, for operators and benches

        async def stop(self) -> None:
            await follower.stop()
            await link.close()

    return _Running()


async def _start_intake(settings: Settings, nats_url: str, reconciler: Reconciler, hooks: HealthHooks) -> object:
    from adapters.nats.deadletter import NatsDeadLetters, dead_letter_config
    from adapters.nats.journal import NatsLink, engine_journal_config
    from adapters.nats.snapshots import SnapshotIntake, engine_snapshot_config

    journal = engine_journal_config(
        settings.namespace, nats_url, settings.journal_replicas, client_name="lotwise-snapshots"
    )
    link = NatsLink(journal)
    await link.connect()
    try:
        store = NatsDeadLetters(link, dead_letter_config(settings.namespace, nats_url, settings.journal_replicas))
        await store.ensure()
        config = engine_snapshot_config(settings.namespace, nats_url, settings.journal_replicas)
        intake = SnapshotIntake(link, config, reconciler.submit, AlertingDeadLetters(store, hooks))
        await intake.start()
    except BaseException:
        await link.close()
        raise

    class _Running:
        def __init__(self) -> None:
            self.intake = intake

        async def stop(self) -> None:
            await intake.stop()
            await link.close()

    return _Running()
