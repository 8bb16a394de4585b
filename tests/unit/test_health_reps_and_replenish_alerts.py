"""Replenishment's keeper alerts become alerts of the one model, with the suggestion behind
them; shelf lists go to the site's named sales rep (issue 15 items 5 and 8)."""

from __future__ import annotations

import pytest

from adapters.memory.documents import InMemoryDocuments
from adapters.memory.health import InMemoryAlertStore, InMemoryHealthPublisher
from adapters.memory.replenish_events import InMemoryReplenishEvents
from engine import bootstrap
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import Receive
from engine.health.alerts import AlertQuery
from engine.health.desk import AlertDesk
from engine.health.hooks import AlertingActions, HealthHooks
from engine.health.services import ProposalDesk, ShelfDesk
from engine.health.shelf import SalesReps, ShelfCount, ShelfRules, parse_sales_reps
from engine.replenish.actions import KEEPER_ALERTED, RFQ_REQUESTED, ReplenishEvent


def keeper_event(kind: str = KEEPER_ALERTED, version: int = 3, *, flagged: bool = False) -> ReplenishEvent:
    return ReplenishEvent(
        f"{kind}:HW-DC:BRG-6204:{version}", kind, "BRG-6204", "HW-DC", version, 50, "skf", "keeper-li", "wu",
        False, flagged, 1_767_225_600_000, 41.3, 6.1, 4.4, 3,
    )  # fmt: skip


@pytest.mark.asyncio
async def test_a_keeper_alert_raises_one_replenishment_alert_per_pair_with_its_suggestion() -> None:
    clock = ManualClock()
    pub = InMemoryHealthPublisher()
    desk = AlertDesk(InMemoryAlertStore(), pub, clock.now_ms)
    hooks = HealthHooks()
    events = InMemoryReplenishEvents()
    actions = AlertingActions(events, hooks)
    await actions.publish(keeper_event())  # before stock health runs: the event, no alert
    hooks.bind(desk)
    await actions.publish(keeper_event(RFQ_REQUESTED))  # not the keeper's: no alert
    await actions.publish(keeper_event(version=4, flagged=True))
    await actions.publish(keeper_event(version=5))
    assert [e.event_id for e in events.events][-1] == "keeper_alerted:HW-DC:BRG-6204:5"
    [alert] = await desk.list(AlertQuery(kinds=("replenishment",)))
    assert (alert.scope.site, alert.scope.sku, alert.count) == ("HW-DC", "BRG-6204", 2)
    assert alert.severity == "warning"  # the flagged one raised it so
    assert "keeper-li" in alert.summary
    assert "reorder point 41.3" in alert.summary
    assert {"keeper_alerted:HW-DC:BRG-6204:5", "suggestion:HW-DC:BRG-6204:5"} <= set(alert.evidence)
    assert [a.kind for a in pub.alerts] == ["replenishment"]  # opened once; the repeat counts


def test_sales_reps_are_data_checked_whole() -> None:
    reps = parse_sales_reps({"schema": "lotwise.sales_reps/1", "reps": {"ST-1": "rep-wang", "*": "rep-desk"}})
    assert (reps.rep_for("ST-1"), reps.rep_for("ST-9")) == ("rep-wang", "rep-desk")
    assert SalesReps({"ST-1": "rep-wang"}).rep_for("ST-9") == ""
    with pytest.raises(ValueError, match=r"reps\['ST-2'\].*; unknown keys: extra"):
        parse_sales_reps({"schema": "lotwise.sales_reps/1", "reps": {"ST-2": "a b"}, "extra": 1})
    with pytest.raises(ValueError, match="schema"):
        parse_sales_reps({"reps": {}})


@pytest.mark.asyncio
async def test_shelf_lists_go_to_the_sites_named_sales_rep() -> None:
    clock = ManualClock()
    gw = bootstrap.local_gateway(shards=1, clock=clock, sweep_interval_ms=0)
    try:
        await gw.put_sku(Sku("MILK"))
        for site in ("ST-1", "ST-2"):
            await gw.put_site(Site(site))
            await gw.execute(Receive(f"r-{site}", "MILK", site, "L1", 4, bin="A/1", status="available"))
        pub = InMemoryHealthPublisher()
        proposals = ProposalDesk(InMemoryDocuments(), gw, pub, clock.now_ms)
        rules = ShelfRules(sales_reps=SalesReps({"ST-1": "rep-wang"}))
        shelf = ShelfDesk(gw, proposals, pub, rules, frozenset({"available"}), clock.now_ms)
        counts = (ShelfCount("ST-1", "A/1", "MILK", 0, 0.97), ShelfCount("ST-2", "A/1", "MILK", 0, 0.97))
        await shelf.submit("cam-1", "camera", counts)
        lists = {e.site: e for e in pub.events.values() if e.kind == "out_of_stock"}
        assert (lists["ST-1"].recipient, lists["ST-1"].body["sales_rep"]) == ("rep-wang", "rep-wang")
        assert (lists["ST-2"].recipient, lists["ST-2"].body["sales_rep"]) == ("", "")  # nobody named: the site's
    finally:
        await gw.close()
