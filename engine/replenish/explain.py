"""A suggestion in words (`explain`) and as a plain, JSON-ready dict (`suggestion_dict`) for the panel.

The API and the CLI both read these, so a planner sees the same numbers and the same sentences
wherever they look. The dict form is versioned (`schema`): only ever extended with new keys.
"""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from engine.replenish.model import SCHEMA_VERSION, Panel, Suggestion


def _n(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "∞"


def _competition(p: Panel) -> str:
    """Which smooth level won the forecast competition over the risk period, and by what errors."""
    if p.estimator == "stationarity":
        return (
            f"Level: {p.error_origins} past forecasts scored (too few to compare): the stationarity test "
            f"chose; σ per day {_n(p.sigma)}."
        )
    return (
        f"Level: over the last {p.error_origins} days, {p.risk_days}-day demand was forecast with RMSE "
        f"{_n(p.error_blend)} by the blend and {_n(p.error_window)} by the 90-day mean → {p.estimator} used; "
        f"the safety stock's σ is its error, {_n(p.sigma)} per √day (daily σ {_n(p.daily_sigma)})."
    )


def _lead_estimate(p: Panel) -> str:
    """How sure L̄ is: the quote's weight among the receipts and L̄'s standard error (priced or not)."""
    priced = "priced in σ_LTD as d̂²·SE²" if p.lead_time_error_priced else "not priced"
    return (
        f"Lead-time estimate: the quote weighs as {_n(p.lead_time_quote_weight)} receipt(s); "
        f"L̄'s standard error {_n(p.lead_time_error)} d ({priced})."
    )


def _buffer(s: Suggestion) -> str:
    """The buffer's units over L̄ + R and the share of them held at this service level."""
    p = s.panel
    share = "in full" if p.buffer_share >= 1.0 else f"at {p.buffer_share:.0%} (service level below the buffer's)"
    return f"Buffer ×{_n(p.buffer)}: {_n(p.buffer_units)} units over L̄ + R, {share}; the reserve is the larger."


def explain(s: Suggestion) -> list[str]:
    """One sentence per step, in the order the policy took them."""
    p = s.panel
    lines = [
        f"{s.sku} @ {s.site}: order {s.qty} from {s.supplier_id}"
        + (f" (raw {s.raw_qty})" if s.raw_qty != s.qty else "")
        + (f" — {s.reason}" if s.reason else ""),
        f"Demand: m7 {_n(p.m7)}, m14 {_n(p.m14)}, m30 {_n(p.m30)} → blend {_n(p.blend)}/day; "
        f"σ {_n(p.sigma)}; {p.uncensored_days} uncensored days, {p.spikes_stripped} spikes stripped.",
        _competition(p),
        f"Pattern: ADI {_n(p.adi)}, CV² {_n(p.cv2)} → {s.sbc_class}, method {s.method} "
        f"(Croston {_n(p.croston)}, SBA {_n(p.sba)}, TSB {_n(p.tsb)}).",
        f"Rate d̂ {_n(p.base_rate)}/day (seasonal index {_n(p.seasonal_index)}); "
        f"× factors {_n(p.factor_multiplier)} × buffer {_n(p.buffer)} = {_n(p.demand_rate)}/day.",
    ]
    lines.extend(
        f"Factor {f.kind} from {f.source} ({f.start.isoformat()}…{f.end.isoformat()}): "
        f"×{_n(f.requested)}"
        + (f" bounded to ×{_n(f.applied)}" if f.applied != f.requested else "")
        + f" on {f.days_in_horizon} day(s) of the horizon."
        for f in p.factors
    )
    receipts = (
        ", ".join(f"{lt.days} d (received {lt.received_on.isoformat()})" for lt in p.lead_times) or "none (default)"
    )
    lines += [
        f"Lead time: last receipts {receipts} → L̄ {_n(p.lead_time_mean)} d, σL {_n(p.lead_time_sigma)} d; "
        f"review {p.review_days} d.",
        _lead_estimate(p),
        f"Service level {s.service_level:.1%} → z {_n(s.z)}; σ_LTD {_n(s.sigma_ltd)}; "
        f"safety stock {_n(s.safety_stock)}.",
        _buffer(s),
        f"Reorder point {_n(s.reorder_point)}; order-up-to {_n(s.order_up_to)} "
        f"(ROP + {_n(p.cycle_stock_days)} days of demand).",
        f"Position: on hand {p.on_hand} − held {p.held} − backorders {p.backorders} + in transit {p.in_transit_within} "
        f"+ to-dos {p.open_todos} = {s.inventory_position} (in transit beyond the horizon, not counted: "
        f"{p.in_transit_beyond}).",
        f"Supplier terms: MOQ {p.moq}, multiple {p.multiple}"
        + (f", unit cost {s.unit_cost}" if s.unit_cost is not None else "")
        + (f"; cap {s.qty_cap}" if s.qty_cap is not None else "")
        + ".",
    ]
    if s.coverage_days is not None:
        lines.append(f"Coverage: {_n(s.coverage_days)} days at the current rate.")
    lines.extend(
        f"[{line.rule_id}] {line.template}: {line.field} {line.before} → {line.after} — {line.why}" for line in s.trace
    )
    if p.health:
        lines.append("Data health: " + ", ".join(p.health))
    return lines


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no infinity: an ADI without demand reads as null
    return value


def suggestion_dict(s: Suggestion) -> dict[str, Any]:
    """Every field of the suggestion, panel and trace as JSON-ready values, plus `schema` and `explanation`."""
    out: dict[str, Any] = {"schema": SCHEMA_VERSION}
    out.update(_plain(s))
    out["lead_times"] = [{"days": lt.days, "received_on": lt.received_on.isoformat()} for lt in s.panel.lead_times]
    out["value"] = None if s.value is None else str(s.value)
    out["explanation"] = explain(s)
    return out
