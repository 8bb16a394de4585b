"""Replenishment's wiring: the store (JetStream KV, or memory with `journal=memory`), the
action events, the service, its journal follower (its own durable consumer) and the
scheduled full recompute (DESIGN.md §9, §14)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from engine.bootstrap.config import SettingsProblem, statuses_of
from engine.domain.clock import SystemClock
from engine.domain.errors import InvalidArgument
from engine.domain.ports import HistoryStore
from engine.health.hooks import AlertingActions, HealthHooks
from engine.replenish.actions import ActionSink
from engine.replenish.demand import DemandBatch, HistoryReturns, HistoryStockouts, ReturnDays, StockoutDays
from engine.replenish.health import HealthCounts
from engine.replenish.planning import PolicyPlanner
from engine.replenish.rules import Rule, load_rules
from engine.replenish.service import ReplenishConfig, ReplenishService, StockReader, TransitReader
from engine.replenish.store import ReplenishStore
from engine.settings import Settings

log = structlog.get_logger("lotwise.replenish")

FOLLOWER_CONSUMER = "lotwise-replenish"
FOLLOWER_TAG = "replenish"


@dataclass(slots=True)
class ReplenishRuntime:
    service: ReplenishService
    store: ReplenishStore
    actions: ActionSink | None
    follower: object | None = None  # adapters.nats.follower.JournalFollower
    trigger: object | None = None  # engine.replenish.follower.ReplenishTrigger (its settling pairs)
    link: object | None = None  # its NATS link
    schedule: asyncio.Task[None] | None = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # the factor feed and its parts

    async def stop(self) -> None:
        if self.schedule is not None:
            self.schedule.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.schedule
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                await close()
        if self.follower is not None:
            await self.follower.stop()  # type: ignore[attr-defined]
        if self.trigger is not None:
            await self.trigger.close()  # type: ignore[attr-defined]
        if self.link is not None:
            await self.link.close()  # type: ignore[attr-defined]
        if self.actions is not None:
            await self.actions.close()
        await self.store.close()
        log.info("replenishment stopped")


def replenish_config_of(settings: Settings) -> ReplenishConfig:
    return ReplenishConfig(
        service_level=settings.replenish_service_level,
        buffer=settings.replenish_buffer,
        recompute_interval_s=settings.replenish_recompute_interval_s,
    )


def rules_of(settings: Settings) -> tuple[Rule, ...]:
    """The rules file named in the settings, validated whole (a bad one stops the start)."""
    if settings.replenish_rules is None:
        return ()
    try:
        return load_rules(settings.replenish_rules)
    except InvalidArgument as exc:
        raise SettingsProblem("replenish_rules", str(exc)) from None


def stockouts_of(history: HistoryStore | None) -> StockoutDays | None:
    """Stockout days from the daily_balance roll-up when the history is ClickHouse (the
    engine's), else from the history's movements."""
    if history is None:
        return None
    from adapters.clickhouse.store import ClickHouseHistoryStore

    if isinstance(history, ClickHouseHistoryStore):
        from adapters.clickhouse.replenish import ClickHouseStockouts

        return ClickHouseStockouts(history)
    return HistoryStockouts(history)


def returns_of(history: HistoryStore | None) -> ReturnDays | None:
    """Customers' returns matched to the pair's sales: one ClickHouse query, else the movements."""
    if history is None:
        return None
    from adapters.clickhouse.store import ClickHouseHistoryStore

    if isinstance(history, ClickHouseHistoryStore):
        from adapters.clickhouse.replenish import ClickHouseReturns

        return ClickHouseReturns(history)
    return HistoryReturns(history)


def aggregated_of(history: HistoryStore | None) -> tuple[DemandBatch | None, HealthCounts | None]:
    """The trigger's reads for many pairs at once, aggregated in the store, when the history is
    ClickHouse; otherwise none (the service reads pair by pair from the movements)."""
    if history is None:
        return None, None
    from adapters.clickhouse.store import ClickHouseHistoryStore

    if isinstance(history, ClickHouseHistoryStore):
        from adapters.clickhouse.replenish import ClickHouseDemandBatch, ClickHouseHealthCounts

        return ClickHouseDemandBatch(history), ClickHouseHealthCounts(history)
    return None, None


async def _open_store(settings: Settings, nats_url: str) -> ReplenishStore:
    if settings.journal == "memory" or not nats_url:
        from adapters.memory.replenish import InMemoryReplenishStore

        return InMemoryReplenishStore()
    from adapters.nats.replenish import connect_replenish_store, engine_replenish_store_config

    return await connect_replenish_store(
        engine_replenish_store_config(settings.namespace, nats_url, settings.journal_replicas)
    )


async def _open_actions(settings: Settings, nats_url: str) -> ActionSink:
    if settings.journal == "memory" or not nats_url:
        from adapters.memory.replenish_events import InMemoryReplenishEvents

        return InMemoryReplenishEvents()
    from adapters.nats.replenish_events import engine_replenish_bus_config, start_replenish_events

    return await start_replenish_events(
        engine_replenish_bus_config(settings.namespace, nats_url, settings.journal_replicas)
    )


async def _schedule(service: ReplenishService, interval_s: float) -> None:
    """The full recompute every `interval_s` (the first one after one interval)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await service.recompute_all("schedule")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next round tries again; the trigger keeps working meanwhile
            log.warning("scheduled recompute failed", error=f"{type(exc).__name__}: {exc}")


async def start_replenish(
    settings: Settings,
    stock: StockReader,
    nats_url: str,
    history: HistoryStore | None,
    hooks: HealthHooks | None = None,
    transit: TransitReader | None = None,
) -> ReplenishRuntime:
    """`hooks`: stock health's, bound once it runs — keeper alerts then raise alerts too."""
    planner = PolicyPlanner(rules_of(settings))
    store = await _open_store(settings, nats_url)
    try:
        actions = await _open_actions(settings, nats_url)
    except BaseException:
        await store.close()
        raise
    if hooks is not None:
        actions = AlertingActions(actions, hooks)
    config = replenish_config_of(settings)
    batch, health_counts = aggregated_of(history)
    service = ReplenishService(
        store,
        stock,
        planner,
        SystemClock(),
        history=history,
        actions=actions,
        config=config,
        stockouts=stockouts_of(history),
        returns=returns_of(history),
        batch=batch,
        health_counts=health_counts,
        transit=transit,
    )
    runtime = ReplenishRuntime(service, store, actions)
    try:
        if settings.journal == "nats" and nats_url:
            await _start_follower(runtime, settings, nats_url)
            await _start_factor_feed(runtime, settings, nats_url)
        if config.recompute_interval_s > 0:
            runtime.schedule = asyncio.get_running_loop().create_task(
                _schedule(service, config.recompute_interval_s), name="replenish-schedule"
            )
    except BaseException:
        await runtime.stop()
        raise
    return runtime


async def _start_follower(runtime: ReplenishRuntime, settings: Settings, nats_url: str) -> None:
    from adapters.nats.follower import FollowerConfig, JournalFollower
    from adapters.nats.journal import NatsLink, engine_journal_config
    from engine.replenish.follower import SETTLE_S, ReplenishFollowerMetrics, ReplenishTrigger, default_metrics

    journal = engine_journal_config(
        settings.namespace, nats_url, settings.journal_replicas, client_name="lotwise-replenish"
    )
    link = NatsLink(journal)
    await link.connect()
    runtime.link = link
    metrics: ReplenishFollowerMetrics = default_metrics()
    # Small batches, applied soon: a scan should raise its suggestion within a second.
    config = FollowerConfig(
        consumer=FOLLOWER_CONSUMER,
        dead_letter_tag=FOLLOWER_TAG,
        description="Lotwise replenishment trigger",
        batch_max_messages=256,
        batch_max_ms=20.0,
        busy_batch_max_ms=250.0,  # while the journal is busy (its settling waits up to 0.5 s anyway)
        fetch_batch=256,
        max_ack_pending=2_048,
    )
    # Settling: a quick run of scans is recomputed once, from all of them (follower.py).
    # The cells' own dictionary: the trigger's floors need to know which statuses are sellable.
    trigger = ReplenishTrigger(runtime.service, metrics, settle_s=SETTLE_S, statuses=statuses_of(settings))
    follower = JournalFollower(link, trigger, config, metrics)
    await follower.start()
    runtime.follower, runtime.trigger = follower, trigger


async def _start_factor_feed(runtime: ReplenishRuntime, settings: Settings, nats_url: str) -> None:
    """Outside factors published on NATS; refused ones go to the engine's dead letters."""
    from adapters.nats.deadletter import connect_dead_letters, dead_letter_config
    from adapters.nats.replenish_factors import engine_factor_feed_config, start_factor_feed

    dead_letters, close_dead_letters = await connect_dead_letters(
        dead_letter_config(settings.namespace, nats_url, settings.journal_replicas)
    )
    runtime.closers.append(close_dead_letters)
    config = engine_factor_feed_config(settings.namespace, nats_url, settings.journal_replicas)
    feed, link = await start_factor_feed(config, runtime.service.put_factors, dead_letters)
    runtime.closers.append(link.close)
    runtime.closers.append(feed.stop)
