"""Stock in transit by its ETA (issue 14): the cells' arriving units split by the ship
steps' ETAs, counted in the inventory position only when due by today + L̄ + R; units
without an ETA count as arriving now, as before."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest

from engine.domain.cell import SliceRow
from engine.domain.clock import ManualClock
from engine.replenish import model as m
from engine.replenish.planning import PolicyPlanner, arrivals_of, position_of
from engine.replenish.policy import split_in_transit
from engine.replenish.service import PairInputs, ReplenishConfig, ReplenishService, StockPosition, day_start_ms
from engine.replenish.store import LeadTimeSample, SupplierTerms

TODAY = date(2026, 3, 1)
DAY_MS = 86_400_000


def _ms(day: date) -> int:
    return day_start_ms(day)


def test_units_on_a_transfer_take_its_eta_and_the_rest_arrives_today() -> None:
    far, near = TODAY + timedelta(days=40), TODAY + timedelta(days=2)
    position = StockPosition(0, 0, 50, 0, arrivals=((20, _ms(far)), (10, _ms(near))))
    assert arrivals_of(position, TODAY) == (
        m.Arrival(10, near, "transfer (ship ETA)"),
        m.Arrival(20, far, "transfer (ship ETA)"),
        m.Arrival(20, TODAY, "in transit / receiving (no ETA)"),
    )


def test_no_eta_or_a_late_one_is_today_and_documents_never_count_more_than_the_cells() -> None:
    late = _ms(TODAY - timedelta(days=3))
    position = StockPosition(0, 0, 25, 0, arrivals=((10, 0), (10, late), (30, _ms(TODAY + timedelta(days=9)))))
    assert arrivals_of(position, TODAY) == (
        m.Arrival(10, TODAY, "transfer (ship ETA)"),
        m.Arrival(10, TODAY, "transfer (ship ETA)"),
        m.Arrival(5, TODAY + timedelta(days=9), "transfer (ship ETA)"),  # a receipt the document lags
    )
    assert arrivals_of(StockPosition(0, 0, 0, 0, arrivals=((10, 0),)), TODAY) == ()
    assert arrivals_of(StockPosition(0, 0, 7, 0), TODAY) == (m.Arrival(7, TODAY, "in transit / receiving (no ETA)"),)


def test_the_split_is_at_today_plus_lead_time_plus_review() -> None:
    settings = m.PolicySettings(review_days=1)
    arrivals = [m.Arrival(3, TODAY + timedelta(days=d)) for d in (0, 7, 8, 9)]
    assert split_in_transit(arrivals, TODAY, 6.2, settings) == (9, 3)  # cutoff today + ⌈7.2⌉: day 8 counts
    assert split_in_transit((), TODAY, 6.2, settings) == (0, 0)


def _inputs(position: StockPosition, sku: str = "BRG") -> PairInputs:
    terms = SupplierTerms(
        sku, "X", "skf", lead_times=tuple(LeadTimeSample(7, _ms(TODAY) - i * DAY_MS) for i in (1, 2, 3))
    )
    return PairInputs(sku, "X", TODAY, (5.0,) * 90, (False,) * 90, position, terms, (), 0, ReplenishConfig())


def test_a_transfer_due_after_the_horizon_does_not_hold_back_the_order() -> None:
    """5 a day, 7-day lead times: 100 units arriving in 40 days leave the pair below its
    reorder point; the same 100 without an ETA (as before) or due in 3 days cover it."""
    far = StockPosition(10, 0, 100, 0, arrivals=((100, _ms(TODAY + timedelta(days=40))),))
    near = StockPosition(10, 0, 100, 0, arrivals=((100, _ms(TODAY + timedelta(days=3))),))
    unknown = StockPosition(10, 0, 100, 0)
    planned = PolicyPlanner()([_inputs(far), _inputs(near), _inputs(unknown)])
    assert [(p.panel.in_transit_within, p.panel.in_transit_beyond) for p in planned] == [(0, 100), (100, 0), (100, 0)]
    assert [p.below_reorder_point for p in planned] == [True, False, False]
    assert planned[0].panel.inventory_position == 10
    assert position_of(_inputs(far)).in_transit == (m.Arrival(100, TODAY + timedelta(days=40), "transfer (ship ETA)"),)


def test_the_batch_screen_splits_in_transit_as_the_full_policy_does() -> None:
    inputs = [
        _inputs(StockPosition(10, 0, 100, 0, arrivals=((100, _ms(TODAY + timedelta(days=d))),)), f"S{d}")
        for d in range(0, 30, 3)
    ]
    planner = PolicyPlanner()
    full = [p.below_reorder_point for p in planner(inputs)]
    assert planner.screen(inputs) == full
    assert 0 < sum(full) < len(full)


@dataclass
class _Availability:
    rows: tuple[SliceRow, ...]


class _Stock:
    async def get_availability(self, sku: str, site: str, group_by: Sequence[Any] = ()) -> _Availability:
        return _Availability((SliceRow((("status", "in_transit_in"),), 30, 0, 0, 30, 0),))


class _Transit:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    async def arriving(self, sku: str, site: str) -> list[tuple[int, int]]:
        self.asked.append((sku, site))
        return [(30, 123 * DAY_MS)]


@pytest.mark.asyncio
async def test_the_service_reads_the_etas_beside_the_cells() -> None:
    transit = _Transit()
    service = ReplenishService(_InMemoryStore(), _Stock(), PolicyPlanner(), ManualClock(), transit=transit)
    inputs = await service.inputs("BRG", "X")
    assert (inputs.position.in_transit, inputs.position.arrivals) == (30, ((30, 123 * DAY_MS),))
    assert transit.asked == [("BRG", "X")]
    plain = await ReplenishService(_InMemoryStore(), _Stock(), PolicyPlanner(), ManualClock()).inputs("BRG", "X")
    assert (plain.position.in_transit, plain.position.arrivals) == (30, ())


def _InMemoryStore() -> Any:
    from adapters.memory.replenish import InMemoryReplenishStore

    return InMemoryReplenishStore()
