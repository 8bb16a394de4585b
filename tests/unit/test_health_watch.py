"""The expiry watch over in-process shards and in-memory stores: timers, the journal
sink, idempotent sweeps with durable progress, the timer bound."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import pytest_asyncio

from adapters.memory.documents import InMemoryDocuments
from adapters.memory.health import InMemoryAlertStore, InMemoryHealthPublisher
from engine import bootstrap
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension
from engine.domain.clock import ManualClock
from engine.domain.commands import ExpireLots, Receive, ReserveLine
from engine.domain.model import MS_PER_DAY, MovementKind
from engine.domain.ports import FollowedEntry
from engine.health import sweep
from engine.health.alerts import AlertQuery
from engine.health.desk import AlertDesk
from engine.health.expiry_rules import SCHEMA, parse_rules
from engine.health.expiry_sink import ExpirySink
from engine.health.sweep import ExpiryWatch
from engine.runtime.gateway import Gateway
from engine.runtime.types import HoldLine
from tests.nats_fixtures import journal_entry

pytestmark = pytest.mark.asyncio

RULES = parse_rules(
    {
        "schema": SCHEMA,
        "expired_status": "expired",
        "rules": [{"category": "*", "near_expiry_days": 10, "near_status": "promo_locked"}],
    }
)
TERMINAL = frozenset({"expired", "damaged"})


class Rig:
    def __init__(self, gw: Gateway, clock: ManualClock, docs: InMemoryDocuments, pub: InMemoryHealthPublisher) -> None:
        self.gw, self.clock, self.docs, self.pub = gw, clock, docs, pub
        self.alerts = AlertDesk(InMemoryAlertStore(), pub, clock.now_ms)
        self.watch = self.new_watch()

    def new_watch(self) -> ExpiryWatch:
        """A watch as a restarted engine builds it: same documents, nothing in memory."""
        return ExpiryWatch(self.gw, self.docs, self.alerts, self.pub, RULES, TERMINAL, self.clock.now_ms)

    async def receive(self, lot: str, qty: int, days: float) -> None:
        expires = self.clock.now_ms() + int(days * MS_PER_DAY)
        await self.gw.execute(Receive(f"r-{lot}", "SKU", "S1", lot, qty, status="available", expires_at_ms=expires))

    async def by_status(self) -> dict[str, int]:
        seen = await self.gw.get_availability("SKU", "S1", (Dimension.STATUS,))
        return {dict(r.group)["status"]: r.qty for r in seen.rows if r.qty}


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = ManualClock()
    gw = bootstrap.local_gateway(shards=1, clock=clock, sweep_interval_ms=0)
    await gw.put_sku(Sku("SKU"))
    await gw.put_site(Site("S1"))
    yield Rig(gw, clock, InMemoryDocuments(), InMemoryHealthPublisher())
    await gw.close()


async def test_a_sweep_is_idempotent_and_its_progress_survives_a_restart(rig: Rig) -> None:
    await rig.receive("NEAR", 4, days=5)
    await rig.receive("FAR", 6, days=200)
    first = await rig.watch.sweep()
    assert (first.tasks, first.moves) == (1, 1)
    assert await rig.by_status() == {"promo_locked": 4, "available": 6}
    again = await rig.new_watch().sweep()  # a restarted engine
    assert (again.tasks, again.moves) == (0, 0)
    assert list(rig.pub.events) == ["promo:S1:SKU:NEAR"]
    assert await rig.new_watch().last_sweep_ms() == rig.clock.now_ms()


async def test_timers_act_at_the_crossing_and_not_before(rig: Rig) -> None:
    await rig.receive("L", 3, days=12)
    await rig.watch.sweep()  # schedules the window's start, 2 days from now
    assert rig.watch.next_timer_ms() == rig.clock.now_ms() + 2 * MS_PER_DAY
    rig.clock.advance(2 * MS_PER_DAY - 1)
    assert (await rig.watch.run_due()).tasks == 0
    rig.clock.advance(1)
    due = await rig.watch.run_due()
    assert (due.tasks, due.moves, due.latencies_ms) == (1, 1, [0.0, 0.0])
    assert rig.watch.next_timer_ms() == rig.clock.now_ms() + 10 * MS_PER_DAY  # then the expiry
    rig.clock.advance(10 * MS_PER_DAY)
    assert (await rig.watch.run_due()).moves == 1
    assert await rig.by_status() == {"expired": 3}
    [expired] = await rig.alerts.list(AlertQuery(kinds=("expired",)))
    assert expired.evidence[0].startswith("health:expiry:")


async def test_the_journal_sink_schedules_received_lots_and_redelivery_changes_nothing(rig: Rig) -> None:
    sink = ExpirySink(rig.watch)
    entries = tuple(FollowedEntry(i, journal_entry("s0", i)) for i in (1, 2))
    await sink.apply(entries)
    timers = rig.watch.timers()
    assert timers == 2
    await sink.apply(tuple(FollowedEntry(e.position, e.entry, redelivered=True) for e in entries))
    assert rig.watch.timers() == timers


async def test_the_timer_heap_is_bounded(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep, "MAX_TIMERS", 3)
    for i in range(5):
        rig.watch.schedule("SKU", f"S{i}", rig.clock.now_ms() + i)
    assert (rig.watch.timers(), rig.watch.dropped_timers) == (3, 2)


class FlakyAlerts(InMemoryAlertStore):
    """Refuses the first `failures` writes, as a store away for a moment would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def put(self, alert: Any, expected_revision: int) -> int:
        if self.failures > 0:
            self.failures -= 1
            raise OSError("alert store away")
        return await super().put(alert, expected_revision)


async def test_an_alert_that_cannot_be_stored_waits_and_the_move_is_not_redone(rig: Rig) -> None:
    store = FlakyAlerts(failures=1)
    rig.alerts = AlertDesk(store, rig.pub, rig.clock.now_ms)
    watch = rig.new_watch()
    await rig.receive("OLD", 2, days=1)
    rig.clock.advance(MS_PER_DAY)
    done = await watch.sweep()
    assert done.moves == 1  # the move counts although its alert could not be stored
    assert await rig.alerts.list(AlertQuery(kinds=("expired",))) == []
    await watch.raise_deferred()
    [alert] = await rig.alerts.list(AlertQuery(kinds=("expired",)))
    assert alert.scope.lot == "OLD"
    assert await rig.by_status() == {"expired": 2}


async def test_discrepancy_movements_raise_one_counted_alert_with_their_movements(rig: Rig) -> None:
    sink = ExpirySink(rig.watch, rig.alerts)
    base = journal_entry("s0", 1)
    taken = replace(base.movements[1], kind=MovementKind.DISCREPANCY, qty=2, seq=7, request_id="pos-9")
    entry = replace(base, movements=(taken,))
    await sink.apply((FollowedEntry(1, entry),))
    await sink.apply((FollowedEntry(2, replace(entry, movements=(replace(taken, seq=8),))),))
    [alert] = await rig.alerts.list(AlertQuery(kinds=("discrepancy",)))
    assert (alert.count, alert.scope.site, alert.scope.lot) == (2, "site-1", "lot-1")
    assert alert.evidence == ("mv:sku-1@site-1#7", "mv:sku-1@site-1#8")


class _Recording:
    """The gateway, recording each command the watch sends."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.commands: list[Any] = []

    async def query_stock(self, q: Any, deadline: float | None = None) -> Any:
        return await self.gw.query_stock(q, deadline)

    async def execute(self, cmd: Any, deadline: float | None = None) -> Any:
        self.commands.append(cmd)
        return await self.gw.execute(cmd, deadline)


async def test_expiry_is_the_cells_expire_lots_held_units_too_once_per_lot(rig: Rig) -> None:
    """At expiry the watch sends ExpireLots (the journaled expire movement, idempotent):
    every bin of the lot moves, held units too (their holds cut, said in the alert), and a
    second row of the same lot finds nothing left — one move, one alert."""
    expires = rig.clock.now_ms() + MS_PER_DAY
    for bin_ in ("A/1", "B/2"):
        await rig.gw.execute(Receive(f"r-{bin_[0]}", "SKU", "S1", "L", 5, bin_, "available", expires_at_ms=expires))
    await rig.gw.reserve("rq-1", "h-1", [HoldLine("SKU", "S1", ReserveLine(3, bin_prefix="A/1"))], 7 * MS_PER_DAY)
    stock = _Recording(rig.gw)
    watch = ExpiryWatch(stock, rig.docs, rig.alerts, rig.pub, RULES, TERMINAL, rig.clock.now_ms)
    rig.clock.advance(MS_PER_DAY)
    result = await watch.sweep()
    assert [type(c) for c in stock.commands] == [ExpireLots, ExpireLots]  # a row each; the second finds nothing
    assert (result.moves, result.refused) == (1, 0)
    assert await rig.by_status() == {"expired": 10}
    hold = await rig.gw.get_hold("h-1")
    assert hold.held_qty == 0
    [alert] = await rig.alerts.list(AlertQuery(kinds=("expired",)))
    assert "10 of lot L expired" in alert.summary
    assert "3 held units: holds cut" in alert.summary
    again = await watch.sweep()
    assert again.moves == 0
