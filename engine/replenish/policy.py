"""The ordering policy: from one pair's history, position and supplier terms to a `Suggestion`.

    d̂      = the kernel's rate (blend for smooth demand, SBA/TSB otherwise) × seasonal index
    F      = mean over the horizon (P + C days) of the bounded factors' product × demand buffer
    L̄, σL  = mean of the last receipts with the quote weighed by its precision (`lead_time_batch`);
             σL = max(sL, 0.1·L̄); SE = σL/√(n + w), L̄'s own error
    P      = L̄ + R
    σ_LTD  = √(P·σd² + d̂²·(σL,eff² + SE²))
    SS     = z·σ_LTD (smooth) | NB quantile(CSL; μ = d̂·P, var = max(σ_LTD², μ(1+ε))) − μ (otherwise)
    ROP    = d̂·F·(L̄ + R) + SS      (the buffer multiplies demand only, never the safety stock)
    S      = ROP + d̂·F'·(C − R)     the ROP's L̄ + R covers the review: S covers L̄ + C (C = R: base stock);
                                    F' = F without the buffer: the ROP is checked at every review,
                                    so a sudden order during the cycle brings the next order forward;
                                    the buffer covers the risk period, when nothing can be done
    IP     = on hand − held − backorders + arrivals with ETA ≤ today + P + open purchase to-dos
    q      = ⌈S − IP⌉ when IP ≤ ROP, else 0 → MOQ → multiple (up) → shelf-life cap → rules
    cap    = d̂·factors·(L̄ + shelf life − min remaining days) − IP, expected sales (no buffer):
             the position sells first (also during the lead time), then the new lot has its
             sellable days; the notes' d̂·(SL − min) − on hand ignored both the lead time's sales
             and the lots in transit

`suggest` always returns a Suggestion: when nothing is to be ordered its qty is 0 and `reason`
says why (above the reorder point, no demand, a rule stopped it), so a planner can ask "why not".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy.stats import nbinom, norm

from engine.replenish.kernels import (
    ESTIMATOR_NAMES,
    METHOD_NAMES,
    METHOD_SMOOTH,
    SBC_NAMES,
    BatchForecast,
    forecast_batch,
)
from engine.replenish.model import (
    AppliedFactor,
    Arrival,
    DemandHistory,
    Factor,
    LeadTime,
    Method,
    PairPosition,
    Panel,
    PolicySettings,
    RuleLine,
    Suggestion,
    SupplierTerms,
)
from engine.replenish.rules import Rule, RuleContext, apply_rules, enforce_limits, round_to_terms, shelf_life_cap

FloatArray = npt.NDArray[np.float64]
IntLike = int | npt.NDArray[np.integer]
FloatLike = float | npt.NDArray[np.floating]

MAX_FACTORS = 200  # factors read per suggestion: a calendar, not a feed


@lru_cache(maxsize=256)
def z_of(service_level: float) -> float:
    """Φ⁻¹(CSL): computed by scipy outside numba, cached per service level."""
    return float(norm.ppf(service_level))


def lead_time_batch(
    receipts: npt.ArrayLike, stated: npt.ArrayLike, settings: PolicySettings, fallback: npt.ArrayLike = 7.0
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """L̄, σL and the error of L̄ per pair from its last receipts (`receipts[pairs, k]`, NaN = none;
    the last `lead_time_receipts` columns are read) and the supplier's stated lead time (NaN = none).

    L̄ = (Σ receipts + w·stated) / (n + w): a few noisy receipts are pulled towards the quote, many
    outweigh it. w is the quote's precision in receipts, (s / (`lead_time_quote_cv`·stated))² with s
    the receipts' sample spread floored at `lead_time_floor`·stated — a quote trusted to ±10 % is worth
    one receipt of a supplier whose lead times vary by 10 %, sixteen of one whose vary by 40 % — or
    the fixed `lead_time_prior` (`lead_time_prior_by_spread` off). When the receipts' mean lies
    further from the quote than 2·s/√n + `lead_time_quote_cv`·stated, the quote is contradicted — a
    supplier that is late keeps being late — and the receipts alone count. Without receipts: the
    quote, else `fallback`. σL = the receipts' sample spread (0 below two), floored at
    `lead_time_floor`·L̄. The error of L̄ is its standard error, σL/√(n + w) (σL without receipts)."""
    r = np.asarray(receipts, np.float64)
    rows = len(np.atleast_1d(np.asarray(stated))) if r.ndim != 2 else r.shape[0]
    r = r[:, -settings.lead_time_receipts :] if r.ndim == 2 else np.full((rows, 0), np.nan)
    quoted = np.broadcast_to(np.asarray(stated, np.float64), (rows,))
    fall = np.broadcast_to(np.asarray(fallback, np.float64), (rows,))
    seen = ~np.isnan(r)
    n = seen.sum(axis=1)
    total = np.where(seen, r, 0.0).sum(axis=1)
    sample = total / np.maximum(n, 1)
    dev = np.where(seen, r - sample[:, None], 0.0)
    spread = np.where(n >= 2, np.sqrt((dev**2).sum(axis=1) / np.maximum(n - 1, 1)), 0.0)
    has_quote = ~np.isnan(quoted)
    q = np.where(has_quote, quoted, 0.0)
    s = np.maximum(spread, settings.lead_time_floor * q)
    agrees = np.abs(sample - q) <= 2.0 * s / np.sqrt(np.maximum(n, 1)) + settings.lead_time_quote_cv * q + 1e-9
    w = np.where(has_quote & (agrees | (n == 0)), quote_weight(s, q, settings), 0.0)
    mean = np.where(n + w > 0, (total + w * q) / np.maximum(n + w, 1e-12), np.where(has_quote, q, fall))
    sigma = np.maximum(spread, settings.lead_time_floor * mean)
    error = sigma / np.sqrt(np.maximum(n + w, 1.0))
    return mean, sigma, error


def quote_weight(spread: FloatArray, quote: FloatArray, settings: PolicySettings) -> FloatArray:
    """The quote's weight in L̄, in receipts: its precision over one receipt's, (s / (cv·quote))², or
    the fixed `lead_time_prior`. At most 100 receipts (a quote trusted to the day still yields to a
    hundred receipts that disagree with it inside the contradiction test's band)."""
    if not settings.lead_time_prior_by_spread:
        return np.full_like(quote, settings.lead_time_prior)
    trust = np.maximum(settings.lead_time_quote_cv * quote, 1e-9)
    return np.minimum((spread / trust) ** 2, 100.0)


def lead_time_stats(
    supplier: SupplierTerms, settings: PolicySettings
) -> tuple[float, float, float, tuple[LeadTime, ...]]:
    """L̄, σL, the error of L̄ of one pair (`lead_time_batch` on one row), and the receipts used."""
    used = supplier.lead_times[-settings.lead_time_receipts :]
    stated = math.nan if supplier.stated_lead_time_days is None else supplier.stated_lead_time_days
    days = np.array([[lt.days for lt in used]], dtype=np.float64).reshape(1, len(used))
    mean, sigma, error = lead_time_batch(days, stated, settings, supplier.default_lead_time_days)
    return float(mean[0]), float(sigma[0]), float(error[0]), used


def horizon_factors(
    history: DemandHistory, factors: Sequence[Factor], settings: PolicySettings, days: int
) -> tuple[float, tuple[AppliedFactor, ...]]:
    """Mean over the next `days` days of the product of the factors in force each day (bounded per kind)."""
    if days <= 0 or not factors:
        return 1.0, ()
    first = history.today
    last = first + timedelta(days=days - 1)
    product = np.ones(days, np.float64)
    applied: list[AppliedFactor] = []
    for factor in factors[:MAX_FACTORS]:
        lo, hi = settings.bounds_of(factor.kind)
        bounded = min(max(factor.multiplier, lo), hi)
        start = max(factor.start, first)
        end = min(factor.end, last)
        if end < start:
            continue
        a, b = (start - first).days, (end - first).days + 1
        product[a:b] *= bounded
        applied.append(
            AppliedFactor(factor.kind, factor.source, factor.start, factor.end, factor.multiplier, bounded, b - a)
        )
    return float(product.mean()), tuple(applied)


def safety_stock_batch(
    method: npt.NDArray[np.int8],
    rate: FloatArray,
    sigma_d: FloatArray,
    lead_mean: FloatArray,
    lead_sigma: FloatArray,
    review: int,
    csl: float,
    eps: float,
) -> tuple[FloatArray, FloatArray]:
    """(SS, σ_LTD) per pair: normal for smooth demand; negative binomial for the others (SS floored at 0)."""
    p = lead_mean + review
    var = p * sigma_d**2 + rate**2 * lead_sigma**2
    sigma_ltd = np.sqrt(var)
    ss = z_of(csl) * sigma_ltd
    mu = rate * p
    nb = (method != METHOD_SMOOTH) & (mu > 0)
    ss = np.where(method == METHOD_SMOOTH, ss, 0.0)
    if np.any(nb):
        m = mu[nb]
        v = np.maximum(var[nb], m * (1.0 + eps))
        quantile = nbinom.ppf(csl, m * m / (v - m), m / v)
        ss[nb] = np.maximum(quantile - m, 0.0)
        sigma_ltd[nb] = np.sqrt(v)
    return ss, sigma_ltd


def safety_stock(
    method: Method,
    rate: float,
    sigma_d: float,
    lead_mean: float,
    lead_sigma: float,
    review: int,
    csl: float,
    eps: float,
) -> tuple[float, float]:
    """(SS, σ_LTD) of one pair (the batch function on one row)."""
    code = np.array([METHOD_NAMES.index(method)], np.int8)
    one = np.array([1.0])
    ss, sigma_ltd = safety_stock_batch(
        code, one * rate, one * sigma_d, one * lead_mean, one * lead_sigma, review, csl, eps
    )
    return float(ss[0]), float(sigma_ltd[0])


@dataclass(frozen=True, slots=True, eq=False)
class BatchPolicy:
    """The policy's numbers per pair, before rules: what a full recompute or the simulator needs."""

    demand_rate: FloatArray  # d̂ × factors × buffer
    safety_stock: FloatArray
    sigma_ltd: FloatArray
    reorder_point: FloatArray
    order_up_to: FloatArray
    position: npt.NDArray[np.int64]
    triggered: npt.NDArray[np.bool_]
    raw_qty: npt.NDArray[np.int64]  # ⌈S − IP⌉ when triggered
    cap: npt.NDArray[np.int64]  # shelf-life cap (NO_CAP without one)
    qty: npt.NDArray[np.int64]  # after MOQ, multiple and the shelf-life cap


NO_CAP = np.iinfo(np.int64).max


def rounded_batch(qty: IntLike, moq: IntLike, multiple: IntLike, cap: IntLike) -> npt.NDArray[np.int64]:
    """MOQ then multiple (up), then the cap wins: rounded down to the multiple, 0 below the MOQ."""
    q = np.asarray(qty, np.int64)
    mult = np.asarray(multiple, np.int64)
    floor = -(-np.asarray(moq, np.int64) // mult) * mult
    up = np.maximum(-(-q // mult) * mult, floor)
    up = np.where(q > 0, up, 0)
    capped = (np.asarray(cap, np.int64) // mult) * mult
    over = up > cap
    return np.where(over, np.where(capped >= np.maximum(floor, 1), capped, 0), up)


def cycle_days(settings: PolicySettings, shelf: npt.NDArray[np.int64], sellable: npt.NDArray[np.int64]) -> FloatArray:
    """The cycle C per pair: `horizon_days`, but for a perishable at most `shelf_life_cycle` of its
    sellable days (≥ the review period): a week's lot of a 5-day product is mostly thrown away."""
    c = float(settings.horizon_days)
    short = np.maximum(np.floor(sellable * settings.shelf_life_cycle), settings.review_days)
    return np.where(shelf > 0, np.minimum(c, short), c).astype(np.float64)


SQRT_PI = math.sqrt(math.pi)


def effective_lead_sigma(lead_sigma: FloatArray, cycle: FloatArray, settings: PolicySettings) -> FloatArray:
    """The lead-time spread the safety stock covers. The textbook d̂²·σL² assumes one order out at a
    time. Ordering every I = max(C, R) days with each order's lead time drawn on its own, orders
    overtake each other and what is still out when a lead time ends is a sum over the orders in
    flight: Var = (d̂·I)²·Σ_j P(L > j·I)(1 − P(L > j·I)) ≈ d̂²·I·σL/√π for a normal L (∫Φ(1−Φ) =
    1/√π). So σL² becomes min(σL², I·σL/√π): the same for weekly orders and a σL of a few days,
    far less for daily orders. `independent_lead_times` False (a supplier whose delays come in
    runs: strikes, a port) keeps the textbook term."""
    if not settings.independent_lead_times:
        return lead_sigma
    interval = np.maximum(cycle, float(settings.review_days))
    return np.sqrt(np.minimum(lead_sigma**2, interval * lead_sigma / SQRT_PI))


def lead_sigma_priced(
    lead_sigma: FloatArray, lead_error: FloatArray, cycle: FloatArray, settings: PolicySettings
) -> FloatArray:
    """The lead-time spread σ_LTD carries: the orders' own spread (`effective_lead_sigma`) and, with
    `lead_time_estimate_in_ss`, the error of L̄ on top, √(σL,eff² + SE(L̄)²). The error is one bias
    every order in flight shares (all are planned with the same L̄), so overtaking does not average
    it away: d̂²·SE² is the variance of lead-time demand that a wrong L̄ adds."""
    own = effective_lead_sigma(lead_sigma, cycle, settings)
    if not settings.lead_time_estimate_in_ss:
        return own
    return np.sqrt(own**2 + lead_error**2)


def buffer_share(settings: PolicySettings) -> float:
    """The share of the buffer's units held as the least reserve: 1 from `buffer_full_from` up; below
    it z / z(buffer_full_from) (0 at a service level of 0.5). The buffer is the protection the product
    promises at the default service level; a planner asking for less protection gets less, not the
    same stock under a lower number."""
    if settings.service_level >= settings.buffer_full_from:
        return 1.0
    return max(z_of(settings.service_level), 0.0) / z_of(settings.buffer_full_from)


def cycle_stock_days(cycle: FloatArray, settings: PolicySettings) -> FloatArray:
    """The days of demand S holds beyond the ROP: C − R with `cycle_beyond_review` (the ROP's risk
    period L̄ + R already covers the days until the next review, so S covers L̄ + C), else C."""
    if not settings.cycle_beyond_review:
        return cycle
    return np.maximum(cycle - settings.review_days, 0.0)


def cycle_rate_batch(rate: FloatArray, factors: FloatArray, settings: PolicySettings) -> FloatArray:
    """The daily rate the cycle's days are stocked at: d̂ × factors, × the buffer only with
    `buffer_on_cycle`. The buffer is a reserve for sudden orders while an order is on its way; once
    it has arrived, the reorder point is checked at every review, so a sudden order during the
    cycle brings the next order forward instead of needing stock on the shelf."""
    return rate * factors * (settings.demand_buffer if settings.buffer_on_cycle else 1.0)


def policy_batch(
    fc: BatchForecast,
    settings: PolicySettings,
    *,
    on_hand: IntLike,
    lead_mean: FloatLike,
    lead_sigma: FloatLike,
    lead_error: FloatLike = 0.0,
    held: IntLike = 0,
    backorders: IntLike = 0,
    in_transit_within: IntLike = 0,
    open_todos: IntLike = 0,
    moq: IntLike = 0,
    multiple: IntLike = 1,
    factor_multiplier: FloatLike = 1.0,
    shelf_life_days: IntLike = 0,
    min_remaining_days: IntLike = 0,
) -> BatchPolicy:
    """SS, ROP, S, IP and the order quantity of every pair in `fc` (scalars broadcast).

    `lead_error` is the standard error of L̄ (`lead_time_batch`). `shelf_life_days` 0 means no
    shelf life. `suggest` runs this on one row, so the numbers a planner sees for one pair are the
    ones a full recompute produces for it."""
    rows = len(fc)

    def f(x: FloatLike) -> FloatArray:
        return np.broadcast_to(np.asarray(x, np.float64), (rows,))

    def i(x: IntLike) -> npt.NDArray[np.int64]:
        return np.broadcast_to(np.asarray(x, np.int64), (rows,))

    rate = fc.rate
    l_mean, l_sigma = f(lead_mean), f(lead_sigma)
    shelf = i(shelf_life_days)
    sellable = np.maximum(shelf - i(min_remaining_days), 0)
    cycle = cycle_days(settings, shelf, sellable)
    demand_rate = rate * f(factor_multiplier) * settings.demand_buffer
    ss, sigma_ltd = safety_stock_batch(
        fc.method,
        rate,
        fc.sigma,
        l_mean,
        lead_sigma_priced(l_sigma, f(lead_error), cycle, settings),
        settings.review_days,
        settings.service_level,
        settings.nb_epsilon,
    )
    risk = l_mean + settings.review_days
    if settings.buffer_in_safety_stock:
        # the buffer is the least reserve, counted towards the safety stock: both cover demand above
        # the forecast during the risk period, so the larger one is held, not their sum
        # (at a service level below `buffer_full_from`, only its share: `buffer_share`)
        ss = np.maximum(ss, (demand_rate - rate * f(factor_multiplier)) * risk * buffer_share(settings))
        rop = rate * f(factor_multiplier) * risk + ss
    else:
        rop = demand_rate * risk + ss
    order_up_to = rop + cycle_rate_batch(rate, f(factor_multiplier), settings) * cycle_stock_days(cycle, settings)
    position = i(on_hand) - i(held) - i(backorders) + i(in_transit_within) + i(open_todos)
    triggered = (rate > 0) & (position <= rop)
    raw = np.where(triggered, np.maximum(np.ceil(order_up_to - position - 1e-9), 0), 0).astype(np.int64)
    sells = rate * f(factor_multiplier)  # what is expected to sell: the buffer is a reserve, not sales
    shelf_cap = np.maximum(np.floor(sells * (l_mean + sellable) - position), 0).astype(np.int64)
    cap = np.where(shelf > 0, shelf_cap, NO_CAP)
    qty = rounded_batch(np.minimum(raw, cap), i(moq), i(multiple), cap)
    return BatchPolicy(demand_rate, ss, sigma_ltd, rop, order_up_to, position, triggered, raw, cap, qty)


def forecast_one(
    history: DemandHistory, settings: PolicySettings, seasonal_days: int, risk_days: int | None = None
) -> BatchForecast:
    """The batch kernel on one row: the single-pair path is the batch path."""
    return forecast_batch(
        history.demand[np.newaxis, :],
        history.censored[np.newaxis, :],
        settings,
        promo=history.promo[np.newaxis, :],
        seasonal_days=seasonal_days,
        risk_days=risk_days,
    )


def risk_days_of(lead_mean: FloatLike, settings: PolicySettings) -> npt.NDArray[np.int64]:
    """The risk period P = L̄ + R in whole days (⌈L̄⌉ + R): the horizon the forecast competition
    scores and the safety stock covers."""
    return (np.ceil(np.asarray(lead_mean, np.float64)) + settings.review_days).astype(np.int64)


def _health(history: DemandHistory, fc: BatchForecast, supplier: SupplierTerms, settings: PolicySettings) -> list[str]:
    flags: list[str] = []
    if not supplier.lead_times:
        flags.append("lead_time_default")
    if history.days < 30:
        flags.append("short_history")
    window = history.censored[-settings.sbc_window_days :]
    if len(window) and window.mean() > 0.2:
        flags.append("censored_share_high")
    if int(fc.valid_days[0]) == 0 and history.days > 0:
        flags.append("no_uncensored_day")
    return flags


def suggest(
    history: DemandHistory,
    position: PairPosition,
    supplier: SupplierTerms,
    settings: PolicySettings,
    rules: Sequence[Rule] = (),
    factors: Sequence[Factor] = (),
    context: RuleContext | None = None,
) -> Suggestion:
    """The suggestion for one pair. Never None: qty 0 with a `reason` when nothing is to be ordered."""
    suggestion = draft(history, position, supplier, settings, factors)
    ctx = context or RuleContext(sku=history.sku, site=history.site, supplier_id=supplier.supplier_id)
    ctx = replace(ctx, today=history.today, shelf_life_days=position.shelf_life_days)
    suggestion = round_to_terms(suggestion, "policy.moq", "MOQ then order multiple (supplier terms)")
    if position.shelf_life_days is not None:
        suggestion = shelf_life_cap(suggestion, position.shelf_life_days, position.min_remaining_days)
    suggestion = apply_rules(suggestion, ctx, rules)
    return enforce_limits(suggestion)


def split_in_transit(
    arrivals: Sequence[Arrival], today: date, lead_mean: float, settings: PolicySettings
) -> tuple[int, int]:
    """(units counted, units only shown): an arrival counts when its ETA falls by today + P
    (P = L̄ + R, the risk period): one due later cannot cover what sells before an order
    placed today arrives."""
    cutoff = today + timedelta(days=math.ceil(lead_mean + settings.review_days))
    within = sum(a.qty for a in arrivals if a.eta <= cutoff)
    return within, sum(a.qty for a in arrivals) - within


def draft(
    history: DemandHistory,
    position: PairPosition,
    supplier: SupplierTerms,
    settings: PolicySettings,
    factors: Sequence[Factor] = (),
) -> Suggestion:
    """The policy's numbers for one pair, before MOQ, caps and rules (qty = raw qty)."""
    lead_mean, lead_sigma, lead_error, used = lead_time_stats(supplier, settings)
    horizon = math.ceil(lead_mean) + settings.review_days + settings.horizon_days
    fc = forecast_one(history, settings, horizon, int(risk_days_of(lead_mean, settings)))
    factor_mult, applied = horizon_factors(history, factors, settings, horizon)
    within, beyond = split_in_transit(position.in_transit, history.today, lead_mean, settings)
    n = policy_batch(
        fc,
        settings,
        on_hand=position.on_hand,
        held=position.held,
        backorders=position.backorders,
        in_transit_within=within,
        open_todos=position.open_todos,
        lead_mean=lead_mean,
        lead_sigma=lead_sigma,
        lead_error=lead_error,
        factor_multiplier=factor_mult,
        shelf_life_days=position.shelf_life_days or 0,
        min_remaining_days=position.min_remaining_days if position.shelf_life_days else 0,
    )
    rate, demand_rate, rop = float(fc.rate[0]), float(n.demand_rate[0]), float(n.reorder_point[0])
    ip, triggered, raw = int(n.position[0]), bool(n.triggered[0]), int(n.raw_qty[0])
    if rate <= 0 and history.days and not int(fc.valid_days[0]):
        reason = "demand unknown: every day of the history is a stockout or a promotion; set a level by hand"
    elif rate <= 0:
        reason = f"no demand in the last {settings.sbc_window_days} uncensored days"
    elif not triggered:
        reason = f"inventory position {ip} is above the reorder point {rop:.1f}"
    else:
        reason = ""
    panel = replace(
        _panel(fc, settings, supplier, position, (lead_mean, lead_sigma, used), (within, beyond)),
        demand_rate=demand_rate,
        factor_multiplier=factor_mult,
        factors=applied,
        health=tuple(_health(history, fc, supplier, settings)),
    )
    panel = _with_reserve(panel, settings, (lead_mean, lead_sigma, lead_error, len(used)), rate * factor_mult, n)
    return Suggestion(
        sku=history.sku,
        site=history.site,
        supplier_id=supplier.supplier_id,
        today=history.today,
        qty=raw,
        raw_qty=raw,
        method=METHOD_NAMES[int(fc.method[0])],  # type: ignore[arg-type]
        sbc_class=SBC_NAMES[int(fc.sbc_class[0])],  # type: ignore[arg-type]
        reorder_point=rop,
        order_up_to=float(n.order_up_to[0]),
        safety_stock=float(n.safety_stock[0]),
        inventory_position=ip,
        coverage_days=(position.on_hand + within + position.open_todos) / demand_rate if demand_rate > 0 else None,
        service_level=settings.service_level,
        z=z_of(settings.service_level),
        sigma_ltd=float(n.sigma_ltd[0]),
        triggered=triggered,
        reason=reason,
        qty_cap=None,
        unit_cost=supplier.unit_cost,
        panel=panel,
        trace=(_trigger_line(triggered, ip, rop, _cycle_note(settings, rate * factor_mult, rop, n), raw, rate),),
    )


def _panel(
    fc: BatchForecast,
    settings: PolicySettings,
    supplier: SupplierTerms,
    position: PairPosition,
    lead: tuple[float, float, tuple[LeadTime, ...]],
    transit: tuple[int, int],
) -> Panel:
    """The panel's estimates and terms; the caller fills in the horizon's factors, rate and health."""
    return Panel(
        m7=float(fc.m7[0]),
        m14=float(fc.m14[0]),
        m30=float(fc.m30[0]),
        blend=float(fc.blend[0]),
        sigma=float(fc.sigma[0]),
        adi=float(fc.adi[0]),
        cv2=float(fc.cv2[0]),
        croston=float(fc.croston[0]),
        sba=float(fc.sba[0]),
        tsb=float(fc.tsb[0]),
        base_rate=float(fc.rate[0]),
        demand_rate=0.0,
        seasonal_index=float(fc.seasonal_index[0]),
        buffer=settings.demand_buffer,
        factor_multiplier=1.0,
        factors=(),
        lead_times=lead[2],
        lead_time_mean=lead[0],
        lead_time_sigma=lead[1],
        review_days=settings.review_days,
        in_transit_within=transit[0],
        in_transit_beyond=transit[1],
        open_todos=position.open_todos,
        on_hand=position.on_hand,
        held=position.held,
        backorders=position.backorders,
        moq=supplier.moq,
        multiple=supplier.multiple,
        uncensored_days=int(fc.valid_days[0]),
        spikes_stripped=int(fc.spikes[0]),
        health=(),
        estimator=ESTIMATOR_NAMES[int(fc.estimator[0])],
        risk_days=int(risk_days_of(lead[0], settings)),
        error_blend=float(fc.error_blend[0]),
        error_window=float(fc.error_window[0]),
        error_origins=int(fc.error_origins[0]),
        daily_sigma=float(fc.daily_sigma[0]),
    )


def _with_reserve(
    panel: Panel, settings: PolicySettings, lead: tuple[float, float, float, int], sells: float, n: BatchPolicy
) -> Panel:
    """The panel's lead-time estimate, buffer and cycle numbers: the quote's weight in L̄ (from
    SE = σL/√(n + w)), L̄'s error, the buffer's share and units over L̄ + R, and S − ROP in days."""
    mean, sigma, error, receipts = lead
    share = buffer_share(settings) if settings.buffer_in_safety_stock else 1.0
    rate = float(cycle_rate_batch(np.array([sells]), np.ones(1), settings)[0])
    return replace(
        panel,
        lead_time_quote_weight=max((sigma / error) ** 2 - receipts, 0.0) if error > 0 else 0.0,
        lead_time_error=error,
        lead_time_error_priced=settings.lead_time_estimate_in_ss,
        buffer_share=share,
        buffer_units=(panel.demand_rate - sells) * (mean + settings.review_days) * share,
        cycle_stock_days=float(n.order_up_to[0] - n.reorder_point[0]) / rate if rate > 0 else 0.0,
    )


def _cycle_note(settings: PolicySettings, sells: float, rop: float, n: BatchPolicy) -> str:
    """'S = ROP + C d × rate': how the order-up-to level was built, in the planner's words."""
    s = float(n.order_up_to[0])
    rate = float(cycle_rate_batch(np.array([sells]), np.ones(1), settings)[0])
    days = (s - rop) / rate if rate > 0 else 0.0
    where = "the buffer on the cycle too" if settings.buffer_on_cycle else "the buffer covers L̄ + R only"
    if settings.cycle_beyond_review:
        where += f"; C {settings.horizon_days} d − R {settings.review_days} d: the ROP covers the review"
    return f"S {s:.1f} = ROP + {days:.0f} d × {rate:.2f}/day ({where})"


def _trigger_line(triggered: bool, ip: int, rop: float, cycle: str, raw: int, rate: float) -> RuleLine:
    if rate <= 0:
        return RuleLine("policy.trigger", "policy", "qty", "0", "0", "no demand: nothing to order")
    if not triggered:
        return RuleLine("policy.trigger", "policy", "qty", "0", "0", f"IP {ip} > ROP {rop:.1f}: no order")
    return RuleLine("policy.trigger", "policy", "qty", "0", str(raw), f"IP {ip} ≤ ROP {rop:.1f}: order up to {cycle}")


__all__ = ["draft", "forecast_one", "horizon_factors", "lead_time_stats", "safety_stock", "suggest", "z_of"]
