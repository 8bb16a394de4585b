"""The planner: the service's PairInputs → the policy (engine.replenish.policy.suggest, over
the batch kernels) → the stored panel and trace. The one place where the service's stored
records (engine.replenish.store) meet the maths' own value objects (engine.replenish.model).

Mappings worth knowing:
- the demand series ends with today so far, so the policy's `today` is tomorrow (its
  history ends the day before its `today`): a scan moves the 7-day window at once;
- on hand is sellable stock including what holds reserve (the policy subtracts `held`);
  stock arriving (in transit in, receiving, QC) has no ETA of its own in the cells: units on
  a shipped transfer take the ETA of its ship step (the policy counts them only when it
  falls by today + L̄ + R), the rest — no ETA given, receiving, QC, a transfer the WMS
  booked alone — counts as arriving now;
- lead-time samples (days, received at) become receipts ordered `days` before arrival,
  oldest first, and the supplier's stated lead time (0 = none) their prior; a pair
  without a designated supplier is planned against "unassigned" terms (MOQ 1, the
  default lead time) and flagged by the policy's health.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from engine.domain.errors import FieldViolation, InvalidArgument
from engine.replenish import model as m
from engine.replenish.kernels import forecast_batch
from engine.replenish.policy import (
    horizon_factors,
    lead_time_stats,
    policy_batch,
    risk_days_of,
    split_in_transit,
    suggest,
)
from engine.replenish.rules import Rule, RuleContext
from engine.replenish.service import PairInputs, Planned, StockPosition, day_of
from engine.replenish.store import AppliedFactor, LeadTimeSample, Panel, RuleLine, SupplierTerms
from engine.replenish.store import Factor as StoredFactor

UNASSIGNED = "unassigned"
MAX_HISTORY = m.MAX_HISTORY_DAYS


def lead_times_of(terms: SupplierTerms, today: date) -> tuple[m.LeadTime, ...]:
    out = []
    for s in sorted(terms.lead_times, key=lambda x: x.received_at_ms):  # oldest first
        received = day_of(s.received_at_ms) if s.received_at_ms else today
        out.append(m.LeadTime(received - timedelta(days=round(s.days)), received))
    return tuple(out[-m.MAX_LEAD_TIMES :])


def supplier_terms_of(terms: SupplierTerms | None, today: date, default_lead_days: float) -> m.SupplierTerms:
    if terms is None:
        return m.SupplierTerms(UNASSIGNED, moq=1, multiple=1, default_lead_time_days=default_lead_days)
    return m.SupplierTerms(
        terms.supplier,
        moq=terms.moq,
        multiple=max(terms.multiple, 1),
        lead_times=lead_times_of(terms, today),
        default_lead_time_days=default_lead_days,
        order_weekdays=frozenset(terms.order_weekdays) if terms.order_weekdays else frozenset(range(7)),
        stated_lead_time_days=terms.stated_lead_time_days or None,
    )


def factors_of(factors: Sequence[StoredFactor]) -> tuple[m.Factor, ...]:
    return tuple(
        m.Factor(
            f.kind,  # type: ignore[arg-type]  # checked against FACTOR_BOUNDS when stored
            date.fromisoformat(f.from_day),
            date.fromisoformat(f.to_day),
            f.multiplier,
            f.source or f.factor_id,
        )
        for f in factors
    )


def settings_of(inputs: PairInputs) -> m.PolicySettings:
    c = inputs.config
    level = inputs.supplier.service_level if inputs.supplier and inputs.supplier.service_level else c.service_level
    return _settings(c.weights, level, max(1, round(c.review_days)), c.buffer)


@functools.lru_cache(maxsize=1_024)
def _settings(weights: tuple[float, float, float], level: float, review_days: int, buffer: float) -> m.PolicySettings:
    """The settings of these knobs, built and checked once: the trigger's screen asks for them
    pair after pair (a frozen value: every pair with the same knobs shares it)."""
    return m.PolicySettings(weights=weights, service_level=level, review_days=review_days, demand_buffer=buffer)


def history_of(inputs: PairInputs) -> m.DemandHistory:
    demand = inputs.demand[-MAX_HISTORY:]
    censored = inputs.censored[-MAX_HISTORY:]
    return m.DemandHistory.of(inputs.sku, inputs.site, inputs.today + timedelta(days=1), demand, censored)


def arrivals_of(position: StockPosition, today: date) -> tuple[m.Arrival, ...]:
    """The cells' arriving units as arrivals: those of shipped transfers by their ETA (an
    ETA of 0 or in the past: today), earliest first, never more than the cells hold (a
    transfer document may lag a receipt); the remainder arrives today."""
    left, out = position.in_transit, []
    for qty, eta_ms in sorted(position.arrivals, key=lambda a: a[1]):
        take = min(qty, left)
        if take > 0:
            out.append(m.Arrival(take, max(today, day_of(eta_ms)) if eta_ms else today, "transfer (ship ETA)"))
            left -= take
    if left > 0:
        out.append(m.Arrival(left, today, "in transit / receiving (no ETA)"))
    return tuple(out)


def position_of(inputs: PairInputs) -> m.PairPosition:
    p = inputs.position
    arriving = arrivals_of(p, inputs.today)
    shelf = inputs.supplier.shelf_life_days if inputs.supplier and inputs.supplier.shelf_life_days > 0 else None
    return m.PairPosition(
        inputs.sku,
        inputs.site,
        on_hand=p.on_hand + p.held,
        held=p.held,
        in_transit=arriving,
        open_todos=inputs.open_todos,
        shelf_life_days=shelf,
    )


def planned_of(s: m.Suggestion, inputs: PairInputs) -> Planned:
    p = s.panel
    panel = Panel(
        mean_7d=p.m7,
        mean_14d=p.m14,
        mean_30d=p.m30,
        daily_demand=p.base_rate,
        method=s.method,
        demand_class=s.sbc_class,
        lead_times=tuple(
            LeadTimeSample(float(lt.days), _day_ms(lt.received_on)) for lt in reversed(p.lead_times)
        ),  # newest first
        lead_time_days=p.lead_time_mean,
        lead_time_sigma_days=p.lead_time_sigma,
        review_days=float(p.review_days),
        on_hand=p.on_hand,
        held=p.held,
        in_transit_within=p.in_transit_within,
        in_transit_beyond=p.in_transit_beyond,
        open_todos=p.open_todos,
        inventory_position=s.inventory_position,
        moq=p.moq,
        multiple=p.multiple,
        service_level=s.service_level,
        z=s.z,
        sigma_ltd=s.sigma_ltd,
        safety_stock=s.safety_stock,
        reorder_point=s.reorder_point,
        order_up_to=s.order_up_to,
        factors=tuple(AppliedFactor(f.kind, f.applied, f.source) for f in p.factors),
        raw_qty=s.raw_qty,
        final_qty=s.qty,
        coverage_days=s.coverage_days or 0.0,
        health_flags=p.health,
        censored_days=sum(inputs.censored),
        demand_rate=p.demand_rate,
        buffer=p.buffer,
        seasonal_index=p.seasonal_index,
        factor_multiplier=p.factor_multiplier,
        reason=s.reason,
        spikes_stripped=p.spikes_stripped,
    )
    trace = tuple(RuleLine(t.rule_id, t.template, t.field, t.before, t.after, t.why) for t in s.trace)
    return Planned(s.qty, s.triggered, panel, trace)


def _day_ms(day: date) -> int:
    return (day - date(1970, 1, 1)).days * 86_400_000


@dataclass(frozen=True, slots=True)
class PolicyPlanner:
    """engine.replenish.service.Planner over the policy, with the engine's rules (data)."""

    rules: tuple[Rule, ...] = ()
    categories: Callable[[str], str] = field(default=lambda _sku: "")

    def __call__(self, inputs: Sequence[PairInputs]) -> list[Planned]:
        out = []
        for i in inputs:
            terms = supplier_terms_of(i.supplier, i.today, i.config.default_lead_time_days)
            context = RuleContext(i.sku, i.site, terms.supplier_id, category=self.categories(i.sku))
            s = suggest(
                history_of(i), position_of(i), terms, settings_of(i), self.rules, factors_of(i.factors), context
            )
            out.append(planned_of(s, i))
        return out

    def screen(self, inputs: Sequence[PairInputs]) -> list[bool]:
        """Which pairs are at or below their reorder point, computed for all at once by the
        batch kernels and the batch policy (the same numbers `suggest` gives one pair).
        A full recompute plans in full only these, and the pairs whose stored suggestion
        still asks for an order."""
        out = [True] * len(inputs)
        groups: dict[m.PolicySettings, list[int]] = {}
        for n, i in enumerate(inputs):
            groups.setdefault(settings_of(i), []).append(n)
        for settings, rows in groups.items():
            if len({len(inputs[n].demand) for n in rows}) != 1:
                continue  # ragged histories: these pairs are planned one by one
            for n, hit in zip(rows, _triggered(settings, [inputs[n] for n in rows]), strict=True):
                out[n] = hit
        return out


@functools.lru_cache(maxsize=65_536)
def _lead_stats(
    terms: SupplierTerms | None, today: date, default_lead_days: float, settings: m.PolicySettings
) -> tuple[float, float, float, tuple[m.LeadTime, ...]]:
    """lead_time_stats of the pair's terms: the same terms give the same numbers, and the
    trigger's screen meets the same terms pair after pair, batch after batch (kept per value)."""
    return lead_time_stats(supplier_terms_of(terms, today, default_lead_days), settings)


def _triggered(settings: m.PolicySettings, inputs: Sequence[PairInputs]) -> list[bool]:
    """The batch policy's `triggered` of pairs with the same settings and history length: the
    numbers `suggest` gives each, from arrays built for the whole batch at once (no
    DemandHistory, PairPosition or arrival per pair: the screen runs for every moved pair)."""
    stats = [_lead_stats(i.supplier, i.today, i.config.default_lead_time_days, settings) for i in inputs]
    horizons = [math.ceil(mean) + settings.review_days + settings.horizon_days for mean, _, _, _ in stats]
    demand = np.asarray([i.demand[-MAX_HISTORY:] for i in inputs], np.float64)
    censored = np.asarray([i.censored[-MAX_HISTORY:] for i in inputs], np.bool_)
    if demand.ndim != 2 or censored.shape != demand.shape or not np.isfinite(demand).all():
        raise InvalidArgument((FieldViolation("demand", "finite days, as many as the censored marks"),))
    fc = forecast_batch(
        demand,
        censored,
        settings,
        seasonal_days=np.asarray(horizons, np.int64),
        risk_days=risk_days_of(np.asarray([mean for mean, _, _, _ in stats], np.float64), settings),
    )
    multipliers = [
        horizon_factors(history_of(i), factors_of(i.factors), settings, days)[0] if i.factors else 1.0
        for i, days in zip(inputs, horizons, strict=True)
    ]
    positions = np.asarray(
        [_position_numbers(i, s[0], settings) for i, s in zip(inputs, stats, strict=True)], np.int64
    ).reshape(len(inputs), 5)
    numbers = policy_batch(
        fc,
        settings,
        on_hand=positions[:, 0],
        held=positions[:, 1],
        in_transit_within=positions[:, 2],
        open_todos=positions[:, 3],
        lead_mean=np.asarray([s[0] for s in stats], np.float64),
        lead_sigma=np.asarray([s[1] for s in stats], np.float64),
        lead_error=np.asarray([s[2] for s in stats], np.float64),
        factor_multiplier=np.asarray(multipliers, np.float64),
        # As `draft` passes them: a shelf life shortens the cycle, which moves the reorder point
        # (no backorders, no minimum remaining days: position_of sets neither).
        shelf_life_days=positions[:, 4],
    )
    return [bool(t) for t in numbers.triggered]


def _position_numbers(i: PairInputs, lead_mean: float, settings: m.PolicySettings) -> tuple[int, int, int, int, int]:
    """(on hand, held, in transit within the risk period, open to-dos, shelf life or 0) as
    position_of and split_in_transit give them, without building them for a pair with nothing
    arriving. A number position_of would refuse (a negative one) goes through it: its typed error."""
    p = i.position
    if min(p.on_hand, p.held, p.in_transit, i.open_todos) < 0:
        position_of(i)  # raises InvalidArgument, as the screen did before
    within = 0
    if p.in_transit > 0:
        within = split_in_transit(arrivals_of(p, i.today), i.today + timedelta(days=1), lead_mean, settings)[0]
    shelf = i.supplier.shelf_life_days if i.supplier and i.supplier.shelf_life_days > 0 else 0
    return p.on_hand + p.held, p.held, within, i.open_todos, shelf


core_planner = PolicyPlanner()
