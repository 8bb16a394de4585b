"""Wiring finance (issue 16): the store (ClickHouse/chDB beside history), the finance
follower on the journal (its own durable consumer), the desk behind lotwise.v1.Accounting
and the posted-voucher events. `running_engine` calls `start_finance` once the journal
exists and passes `runtime.desk` to the gRPC server; `runtime.stop()` on the way down."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from dataclasses import dataclass
from typing import Protocol

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from adapters.clickhouse.finance import ClickHouseFinanceStore, FinanceStoreConfig, open_finance_store
from adapters.nats.finance_documents import NatsFinanceDocuments
from adapters.nats.finance_events import NatsPostedVouchers
from adapters.nats.follower import DELAY_BUCKETS_S, FollowerConfig, JournalFollower
from adapters.nats.journal import NatsLink, engine_journal_config
from engine.bootstrap.config import SettingsProblem
from engine.bootstrap.history import history_config
from engine.domain.catalog import Site
from engine.domain.errors import InvalidArgument
from engine.domain.orgtree import OrgTree
from engine.finance.exports import default_profiles
from engine.finance.follower import CONSUMER, DEAD_LETTER_TAG, FinanceFeed
from engine.finance.mapping import Rules, default_rules, load_rules
from engine.finance.service import FinanceDesk
from engine.finance.setup import LedgerSetup, default_setup, load_setup, with_org
from engine.settings import Settings

log = structlog.get_logger("lotwise.finance")


class FinanceMetrics:
    """The finance follower's gauges and counters (adapters.nats.follower.FollowerMetrics)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.lag_messages = Gauge("lotwise_finance_lag_messages", "Journal messages not yet booked", registry=registry)
        self.stream_position = Gauge("lotwise_finance_stream_position", "Last journal position", registry=registry)
        self.acked_position = Gauge(
            "lotwise_finance_acked_position", "Journal position booked up to", registry=registry
        )
        self.failures = Counter("lotwise_finance_apply_failures", "Failed finance applies", registry=registry)
        self.dead_letters = Counter(
            "lotwise_finance_dead_letters", "Journal messages finance dead-lettered", registry=registry
        )
        self.delay = Histogram(
            "lotwise_finance_delay_seconds", "From journal append to booked", buckets=DELAY_BUCKETS_S, registry=registry
        )
        self.vouchers = Counter("lotwise_finance_vouchers", "Vouchers prepared by the follower", registry=registry)


@functools.cache
def default_finance_metrics() -> FinanceMetrics:
    return FinanceMetrics()


def finance_rules_of(settings: Settings) -> Rules:
    try:
        return load_rules(settings.finance_rules) if settings.finance_rules else default_rules()
    except InvalidArgument as exc:
        raise SettingsProblem("finance_rules", "; ".join(v.description for v in exc.violations)) from None


def finance_setup_of(settings: Settings) -> LedgerSetup:
    try:
        return (
            load_setup(settings.finance_ledgers)
            if settings.finance_ledgers
            else default_setup(settings.finance_currency)
        )
    except InvalidArgument as exc:
        raise SettingsProblem(
            "finance_ledgers", "; ".join(f"{v.field} {v.description}" for v in exc.violations)
        ) from None


def finance_store_config(settings: Settings) -> FinanceStoreConfig:
    """Beside history: the same DSN (one chDB path per process), a database of its own."""
    history = history_config(settings.data_dir, settings.namespace, settings.history_dsn)
    return FinanceStoreConfig(dsn=history.store.dsn, database=f"{history.store.database}_finance")


# Voucher lag target (issue 16): p99 ≤ 1 s behind the journal. A journal entry waits at most
# one window for its batch, then for that batch to be booked and committed, so the window may
# take at most half of the target: the other half is the batch's booking (~0.1–0.15 ms of CPU
# per movement: ~0.2–0.3 s for the 2,000 movements of a 400 ms window at 5,000 movements/s)
# and its commit (a fixed ~15–40 ms of chDB CPU). Shorter windows cost more commits a second
# (at 200 ms, 5 commits/s: ~0.1–0.2 of a core in fixed costs alone at 5,000 movements/s),
# which a follower that already needs most of a core cannot afford. The window was 1 s: that
# alone put the p99 above the target whenever the journal was busy.
BUSY_BATCH_MAX_MS = 400.0
LAG_TARGET_MS = 1_000.0


def finance_follower_config() -> FollowerConfig:
    """The finance follower's bounds, as the engine runs it (bench.finance runs the same)."""
    return FollowerConfig(
        consumer=CONSUMER,
        dead_letter_tag=DEAD_LETTER_TAG,
        description="Lotwise finance",
        busy_batch_max_ms=BUSY_BATCH_MAX_MS,
    )


ORG_REFRESH_S = 30.0  # how often the companies are read again from the org tree and the sites


class OrgSource(Protocol):
    async def tree(self) -> OrgTree: ...


class SiteSource(Protocol):
    async def list_sites(self, org_prefix: str = "") -> list[Site]: ...


async def refresh_companies(feed: FinanceFeed, base: LedgerSetup, org: OrgSource, sites: SiteSource) -> int:
    """The companies from the org tree now (nearest legal entity of each site); how many
    sites book to a company of the tree."""
    setup = with_org(base, await org.tree(), await sites.list_sites())
    if setup.org_sites != feed.setup.org_sites or setup.companies != feed.setup.companies:
        await feed.use_setup(setup)
        log.info("finance companies from the org tree", companies=len(setup.companies), sites=len(setup.org_sites))
    return len(setup.org_sites)


async def _keep_companies(feed: FinanceFeed, base: LedgerSetup, org: OrgSource, sites: SiteSource) -> None:
    while True:  # until cancelled by stop()
        await asyncio.sleep(ORG_REFRESH_S)
        try:
            await refresh_companies(feed, base, org, sites)
        except Exception as exc:  # the tree or the catalog is away for now: keep the last companies
            log.warning("finance could not read the org tree", error=str(exc))


@dataclass(slots=True)
class FinanceRuntime:
    store: ClickHouseFinanceStore
    feed: FinanceFeed
    follower: JournalFollower
    desk: FinanceDesk
    link: NatsLink
    org_task: asyncio.Task[None] | None = None

    async def follow_org(self, org: OrgSource, sites: SiteSource) -> None:
        """Companies from the org tree: read now (before the engine serves), then every
        ORG_REFRESH_S. The ledgers file's site lists stay as the fallback."""
        base = self.feed.setup
        try:
            await refresh_companies(self.feed, base, org, sites)
        except Exception as exc:  # the engine still serves: the file's companies until the next read
            log.warning("finance could not read the org tree at start", error=str(exc))
        self.org_task = asyncio.get_running_loop().create_task(
            _keep_companies(self.feed, base, org, sites), name="finance-org"
        )

    async def stop(self) -> None:
        if self.org_task is not None:
            self.org_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.org_task
        await self.follower.stop()  # applies and acks what it holds
        await self.store.close()
        await self.link.close()
        log.info("finance stopped")


async def start_finance(settings: Settings, nats_url: str, registry: CollectorRegistry | None = None) -> FinanceRuntime:
    rules, setup = finance_rules_of(settings), finance_setup_of(settings)
    store = await open_finance_store(finance_store_config(settings))
    journal = engine_journal_config(
        settings.namespace, nats_url, settings.journal_replicas, client_name="lotwise-finance"
    )
    link = NatsLink(journal)
    try:
        await link.connect()
        documents = NatsFinanceDocuments(link, settings.namespace, journal)
        feed = FinanceFeed(store, setup, rules, documents)
        metrics = FinanceMetrics(registry) if registry is not None else default_finance_metrics()

        async def count(vouchers: tuple[object, ...]) -> None:
            metrics.vouchers.inc(len(vouchers))

        feed.on_vouchers = count
        follower = JournalFollower(link, feed, finance_follower_config(), metrics)
        await follower.start()
        posted = NatsPostedVouchers(link, settings.namespace, journal)
        desk = FinanceDesk(store, feed, default_profiles(), posted=posted)
    except BaseException:
        await link.close()
        await store.close()
        raise
    log.info("finance started", companies=[c.company for c in setup.companies], rules=rules.source)
    return FinanceRuntime(store, feed, follower, desk, link)
