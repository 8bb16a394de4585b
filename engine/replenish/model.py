"""The replenishment room's value objects: what a suggestion is computed from and what it says.

Everything here is a frozen, slotted dataclass validated at construction: a bad value raises
`InvalidArgument` naming the field (DESIGN.md §12), so the policy never sees one. Quantities are
integers in the sku's base unit, days are days, money is `Decimal` (never float), dates are UTC
calendar days. Demand arrays are numpy (the kernels read them as they are, no copy per pair).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Literal

import numpy as np
import numpy.typing as npt

from engine.domain.errors import FieldViolation, InvalidArgument

SCHEMA_VERSION = 1  # of Suggestion's dict form (explain.suggestion_dict); bump on an incompatible change

MAX_HISTORY_DAYS = 800  # a bound on one pair's history (≈ 2 years + margin); the kernels never see more
MAX_LEAD_TIMES = 50  # receipts kept per supplier terms; the policy reads the last few

Method = Literal["smooth", "sba", "tsb", "none"]
SbcClass = Literal["smooth", "erratic", "intermittent", "lumpy", "no_demand"]
FactorKind = Literal["promotion", "weather", "footfall", "event"]
FACTOR_KINDS: tuple[FactorKind, ...] = ("promotion", "weather", "footfall", "event")

FloatArray = npt.NDArray[np.floating]
BoolArray = npt.NDArray[np.bool_]


def _check(violations: list[FieldViolation]) -> None:
    if violations:
        raise InvalidArgument(violations)


def _count(name: str, value: int, out: list[FieldViolation], minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        out.append(FieldViolation(name, f"must be an integer ≥ {minimum}, got {value!r}"))


def _finite(name: str, value: float, out: list[FieldViolation], lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        out.append(FieldViolation(name, f"must be a finite number, got {value!r}"))
    elif not lo <= value <= hi:
        out.append(FieldViolation(name, f"must be within [{lo}, {hi}], got {value!r}"))


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True, eq=False)
class DemandHistory:
    """Daily net demand of one (sku, site), oldest → newest.

    `demand[-1]` is the last complete day, `today - 1`; `demand[0]` is `today - len(demand)`.
    Net demand = sales and issues − matched customer returns (no adjustments, scrap or transfers);
    a day of net returns counts as a day without demand. `censored[i]` marks a stockout day (the
    shelf was empty, so the true demand is unknown): such days are left out of every estimate.
    `promo[i]` marks a promotion day: left out of the baseline, promotions come back as factors.
    """

    sku: str
    site: str
    today: date
    demand: FloatArray
    censored: BoolArray
    promo: BoolArray

    def __post_init__(self) -> None:
        out: list[FieldViolation] = []
        for name in ("sku", "site"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                out.append(FieldViolation(name, "must be a non-empty string"))
        demand = np.asarray(self.demand)
        if demand.ndim != 1 or not np.issubdtype(demand.dtype, np.number) or demand.dtype == np.bool_:
            out.append(FieldViolation("demand", "must be a 1-D numeric array"))
        elif len(demand) > MAX_HISTORY_DAYS:
            out.append(FieldViolation("demand", f"at most {MAX_HISTORY_DAYS} days, got {len(demand)}"))
        elif not np.all(np.isfinite(demand)):
            out.append(FieldViolation("demand", "every day must be a finite number"))
        for name in ("censored", "promo"):
            mask = np.asarray(getattr(self, name))
            if mask.dtype != np.bool_ or mask.shape != demand.shape:
                out.append(FieldViolation(name, f"must be a boolean array of the demand's length {len(demand)}"))
        _check(out)

    @classmethod
    def of(
        cls,
        sku: str,
        site: str,
        today: date,
        demand: Iterable[float],
        censored: Iterable[bool] | None = None,
        promo: Iterable[bool] | None = None,
    ) -> DemandHistory:
        """From plain sequences; missing masks are all False."""
        values = np.asarray(list(demand), dtype=np.float64)
        cens = np.zeros(len(values), np.bool_) if censored is None else np.asarray(list(censored), dtype=np.bool_)
        prom = np.zeros(len(values), np.bool_) if promo is None else np.asarray(list(promo), dtype=np.bool_)
        return cls(sku, site, today, values, cens, prom)

    @property
    def days(self) -> int:
        return len(self.demand)

    @property
    def first_day(self) -> date:
        return self.today - timedelta(days=self.days)


@dataclass(frozen=True, slots=True)
class Arrival:
    """Goods on their way: an open purchase or transfer, `qty` expected on `eta`."""

    qty: int
    eta: date
    reference: str = ""  # the purchase / transfer id, shown in the panel

    def __post_init__(self) -> None:
        out: list[FieldViolation] = []
        _count("qty", self.qty, out)
        _check(out)


@dataclass(frozen=True, slots=True)
class PairPosition:
    """Where one (sku, site) stands now.

    `on_hand` is sellable stock only (available, unexpired, not quarantined); `held` is what
    holds reserve of it; `backorders` are owed to customers. `in_transit` arrivals are split by
    the policy: an ETA within today + P (lead time + review) counts, a later one is only shown.
    `open_todos` are accepted purchase to-dos not yet sent as orders: they count in full.
    Shelf life: `shelf_life_days` is what a fresh receipt has, `min_remaining_days` how many
    days before its expiry a lot stops being sellable; `earliest_expiry` is the stock's.
    """

    sku: str
    site: str
    on_hand: int
    held: int = 0
    backorders: int = 0
    in_transit: tuple[Arrival, ...] = ()
    open_todos: int = 0
    earliest_expiry: date | None = None
    shelf_life_days: int | None = None
    min_remaining_days: int = 0

    def __post_init__(self) -> None:
        out: list[FieldViolation] = []
        for name in ("on_hand", "held", "backorders", "open_todos", "min_remaining_days"):
            _count(name, getattr(self, name), out)
        if self.shelf_life_days is not None:
            _count("shelf_life_days", self.shelf_life_days, out, minimum=1)
        if not all(isinstance(a, Arrival) for a in self.in_transit):
            out.append(FieldViolation("in_transit", "must be a tuple of Arrival"))
        _check(out)


@dataclass(frozen=True, slots=True)
class LeadTime:
    """One receipt from the supplier: ordered on `ordered_on`, received on `received_on`."""

    ordered_on: date
    received_on: date

    def __post_init__(self) -> None:
        if self.received_on < self.ordered_on:
            raise InvalidArgument((FieldViolation("received_on", "must not be before ordered_on"),))

    @property
    def days(self) -> int:
        return (self.received_on - self.ordered_on).days


@dataclass(frozen=True, slots=True)
class SupplierTerms:
    """The designated supplier's terms for one (sku, site).

    `lead_times` oldest → newest (the policy reads the last `settings.lead_time_receipts`);
    `default_lead_time_days` is used, and flagged, when there is no receipt yet.
    `order_weekdays` are the days the supplier takes orders (0 = Monday … 6 = Sunday).
    `unit_cost` is a Decimal in the company's currency (None: unknown, value caps cannot apply).
    """

    supplier_id: str
    moq: int = 1
    multiple: int = 1
    lead_times: tuple[LeadTime, ...] = ()
    default_lead_time_days: float = 7.0
    order_weekdays: frozenset[int] = frozenset(range(7))
    unit_cost: Decimal | None = None
    stated_lead_time_days: float | None = None  # what the supplier quotes: L̄ is shrunk towards it

    def __post_init__(self) -> None:
        out: list[FieldViolation] = []
        if not isinstance(self.supplier_id, str) or not self.supplier_id:
            out.append(FieldViolation("supplier_id", "must be a non-empty string"))
        _count("moq", self.moq, out)
        _count("multiple", self.multiple, out, minimum=1)
        _finite("default_lead_time_days", self.default_lead_time_days, out, 0.0, 365.0)
        if self.stated_lead_time_days is not None:
            _finite("stated_lead_time_days", self.stated_lead_time_days, out, 0.0, 365.0)
        if len(self.lead_times) > MAX_LEAD_TIMES:
            out.append(FieldViolation("lead_times", f"at most {MAX_LEAD_TIMES} receipts"))
        if not self.order_weekdays or not all(isinstance(d, int) and 0 <= d <= 6 for d in self.order_weekdays):
            out.append(FieldViolation("order_weekdays", "must be a non-empty set of 0 (Monday) … 6 (Sunday)"))
        if self.unit_cost is not None and (
            not isinstance(self.unit_cost, Decimal) or not self.unit_cost.is_finite() or self.unit_cost < 0
        ):
            out.append(FieldViolation("unit_cost", "must be a finite Decimal ≥ 0"))
        _check(out)


@dataclass(frozen=True, slots=True)
class Factor:
    """An outside multiplier on demand over a date range (inclusive): a promotion, a weather
    index, expected footfall, an event. Bounded by `PolicySettings.factor_bounds` when applied."""

    kind: FactorKind
    start: date
    end: date
    multiplier: float
    source: str

    def __post_init__(self) -> None:
        out: list[FieldViolation] = []
        if self.kind not in FACTOR_KINDS:
            out.append(FieldViolation("kind", f"must be one of {', '.join(FACTOR_KINDS)}, got {self.kind!r}"))
        if self.end < self.start:
            out.append(FieldViolation("end", "must not be before start"))
        _finite("multiplier", self.multiplier, out, 1e-9, 100.0)
        if not isinstance(self.source, str) or not self.source:
            out.append(FieldViolation("source", "must name where the factor comes from"))
        _check(out)


def _default_bounds() -> tuple[tuple[FactorKind, float, float], ...]:
    return (("promotion", 0.5, 4.0), ("weather", 0.7, 1.5), ("footfall", 0.5, 2.0), ("event", 0.5, 3.0))


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """The policy's knobs, with the defaults of the replenishment notes.

    Windows are blended as d̂ = w7·m7 + w14·m14 + w30·m30. `demand_buffer` is the 15 % for sudden
    orders while an order is on its way: its units over the risk period L̄ + R count towards the
    safety stock (SS = max(z·σ_LTD, buffer units); `buffer_in_safety_stock` off: it multiplies
    demand and SS comes on top); never on the cycle's days unless `buffer_on_cycle`.
    `horizon_days` is the cycle C: the order-up-to level covers C days of demand beyond the ROP.
    """

    weights: tuple[float, float, float] = (0.5, 0.3, 0.2)
    service_level: float = 0.95
    review_days: int = 1
    demand_buffer: float = 1.15
    # the buffer also on the cycle's days (S = ROP + d̂·F·buffer·C); off, the cycle is at d̂·F: a
    # sudden order during the cycle brings the next order forward (the ROP is checked every review)
    buffer_on_cycle: bool = False
    # the buffer's units over L̄ + R count towards the safety stock: SS = max(z·σ_LTD, (buffer − 1)·d̂·F·P)
    # and ROP = d̂·F·P + SS; off, the buffer multiplies demand and SS comes on top
    buffer_in_safety_stock: bool = True
    adi_threshold: float = 1.32
    cv2_threshold: float = 0.49
    alpha: float = 0.1  # Croston/SBA smoothing; TSB uses it for both size and probability
    sbc_window_days: int = 90
    horizon_days: int = 7
    spike_k: float = 3.0
    spike_neighbours: int = 3  # a spike must also stand out from the days this close (0: no check)
    strip_promo: bool = True
    factor_bounds: tuple[tuple[FactorKind, float, float], ...] = field(default_factory=_default_bounds)
    seasonal_min_days: int = 395  # 13 months before a same-period-last-year index is used
    seasonal_bounds: tuple[float, float] = (0.5, 2.0)
    seasonal_z: float = 2.0  # last year's change must exceed this many standard errors (0: any change)
    seasonal_matches_level: bool = True  # the index's base is the level's window (90 days when stationary)
    lead_time_receipts: int = 12  # the last receipts read for L̄ and σL (fewer when fewer exist)
    lead_time_prior: float = 3.0  # the supplier's stated lead time counts as this many receipts in L̄
    lead_time_quote_cv: float = 0.1  # receipts further than 2 s/√n + this × the quote contradict it
    lead_time_floor: float = 0.1  # σL ≥ this × L̄
    # the quote's weight in L̄ by precision: w = (s / (lead_time_quote_cv·quote))² receipts (the quote
    # trusted to ±lead_time_quote_cv, s the receipts' spread) instead of the fixed `lead_time_prior`
    lead_time_prior_by_spread: bool = True
    # the estimate's own error, Var(L̄) = s² / (n + w), priced in σ_LTD as d̂²·Var(L̄): it is one error
    # shared by every order in flight, so orders overtaking each other do not average it away
    lead_time_estimate_in_ss: bool = True
    independent_lead_times: bool = True  # each order's lead time its own draw (policy.effective_lead_sigma)
    stationary_z: float = 2.5  # 0: always the 7/14/30 blend (kernels: the stationarity test)
    shelf_life_cycle: float = 0.5  # the cycle C is at most this share of a perishable's sellable days
    tsb_after_adi: float = 2.0  # a trailing run of zero days longer than this × ADI switches SBA → TSB
    nb_epsilon: float = 0.05  # negative binomial: variance ≥ μ(1 + ε)
    # the forecast competition (kernels._risk_errors): the last this many origins' risk-period
    # forecasts of the blend and the window mean are scored; 0 turns it off (the stationarity test
    # picks the level, σ is daily σ·√P)
    error_origins: int = 90
    error_min_origins: int = 30  # fewer scored origins than this: the stationarity test decides
    # a level the stationarity test says moved is followed by the blend whatever the scores: they
    # cannot see a move newer than the last risk period that is over
    moves_override_scores: bool = True
    # the cycle stock beyond the reorder point is C − R days, not C: the ROP's risk period L̄ + R
    # already covers demand until the next review, so S covers L̄ + C (the textbook order-up-to of
    # a C-day cycle); off, S = ROP + C days. C = R (daily orders, daily review) is base stock
    cycle_beyond_review: bool = True
    # the service level from which the buffer is the least reserve in full; below it the buffer's
    # units fall with z in proportion (z / z(buffer_full_from), none at 0.5). The default 0.5 holds
    # the 15 % at every service level: the service level prices the spread, the buffer is
    # the reserve for sudden orders a planner configured (bench/README.md, sixth run: letting it
    # fall gives the curve a bottom but loses the ≥ 30 % target there)
    buffer_full_from: float = 0.5

    def __post_init__(self) -> None:
        out: list[FieldViolation] = []
        if len(self.weights) != 3:
            out.append(FieldViolation("weights", "must be three weights (7, 14, 30 days)"))
        else:
            for i, w in enumerate(self.weights):
                _finite(f"weights[{i}]", w, out, 0.0, 1.0)
            if not out and not math.isclose(sum(self.weights), 1.0, abs_tol=1e-9):
                out.append(FieldViolation("weights", f"must add up to 1, got {sum(self.weights)}"))
        _finite("service_level", self.service_level, out, 0.5, 0.9999)
        _count("review_days", self.review_days, out, minimum=1)
        _finite("demand_buffer", self.demand_buffer, out, 1.0, 3.0)
        _finite("adi_threshold", self.adi_threshold, out, 1.0, 100.0)
        _finite("cv2_threshold", self.cv2_threshold, out, 0.0, 100.0)
        _finite("alpha", self.alpha, out, 0.001, 1.0)
        _count("sbc_window_days", self.sbc_window_days, out, minimum=30)
        _count("horizon_days", self.horizon_days, out, minimum=0)
        _finite("spike_k", self.spike_k, out, 1.0, 100.0)
        _count("spike_neighbours", self.spike_neighbours, out)
        if not out and self.spike_neighbours > 30:
            out.append(FieldViolation("spike_neighbours", f"must be ≤ 30, got {self.spike_neighbours}"))
        _count("seasonal_min_days", self.seasonal_min_days, out, minimum=395)
        _count("lead_time_receipts", self.lead_time_receipts, out, minimum=1)
        _finite("lead_time_prior", self.lead_time_prior, out, 0.0, 100.0)
        _finite("lead_time_quote_cv", self.lead_time_quote_cv, out, 0.0, 10.0)
        _finite("lead_time_floor", self.lead_time_floor, out, 0.0, 1.0)
        _finite("stationary_z", self.stationary_z, out, 0.0, 10.0)
        _finite("seasonal_z", self.seasonal_z, out, 0.0, 10.0)
        _finite("shelf_life_cycle", self.shelf_life_cycle, out, 0.05, 1.0)
        _finite("buffer_full_from", self.buffer_full_from, out, 0.5, 0.9999)
        _finite("tsb_after_adi", self.tsb_after_adi, out, 1.0, 100.0)
        _finite("nb_epsilon", self.nb_epsilon, out, 0.0, 10.0)
        _count("error_origins", self.error_origins, out)
        if not out and self.error_origins > 365:
            out.append(FieldViolation("error_origins", f"must be ≤ 365, got {self.error_origins}"))
        _count("error_min_origins", self.error_min_origins, out, minimum=1)
        lo, hi = self.seasonal_bounds
        if not 0 < lo <= 1 <= hi:
            out.append(FieldViolation("seasonal_bounds", "must be (lo, hi) with 0 < lo ≤ 1 ≤ hi"))
        kinds = [b[0] for b in self.factor_bounds]
        if sorted(kinds) != sorted(FACTOR_KINDS):
            out.append(FieldViolation("factor_bounds", f"must bound each kind once: {', '.join(FACTOR_KINDS)}"))
        for kind, flo, fhi in self.factor_bounds:
            if not 0 < flo <= 1 <= fhi:
                out.append(FieldViolation(f"factor_bounds.{kind}", "must be (lo, hi) with 0 < lo ≤ 1 ≤ hi"))
        _check(out)

    def bounds_of(self, kind: FactorKind) -> tuple[float, float]:
        for k, lo, hi in self.factor_bounds:
            if k == kind:
                return lo, hi
        raise KeyError(kind)  # unreachable: __post_init__ checked every kind is bounded


# ---------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class AppliedFactor:
    """A factor as the policy used it: the multiplier asked for, the bounded one, on how many of
    the horizon's days it was in force."""

    kind: FactorKind
    source: str
    start: date
    end: date
    requested: float
    applied: float
    days_in_horizon: int


@dataclass(frozen=True, slots=True)
class RuleLine:
    """One line of a suggestion's trace: which rule (or policy step) changed what, and why."""

    rule_id: str
    template: str
    field: str
    before: str
    after: str
    why: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True, slots=True)
class Panel:
    """The key parameters behind a suggestion, as a planner reads them."""

    m7: float
    m14: float
    m30: float
    blend: float  # w7·m7 + w14·m14 + w30·m30 (the smooth baseline)
    sigma: float  # σ of daily demand over the last 30 uncensored days
    adi: float
    cv2: float
    croston: float
    sba: float
    tsb: float
    base_rate: float  # the method's daily rate × seasonal index: d̂
    demand_rate: float  # d̂ × the horizon's factors × buffer: what lead time and cycle demand use
    seasonal_index: float
    buffer: float
    factor_multiplier: float  # mean over the horizon of the bounded factors' product
    factors: tuple[AppliedFactor, ...]
    lead_times: tuple[LeadTime, ...]  # the receipts used (newest last)
    lead_time_mean: float  # L̄
    lead_time_sigma: float  # σL, after the floor
    review_days: int
    in_transit_within: int
    in_transit_beyond: int
    open_todos: int
    on_hand: int
    held: int
    backorders: int
    moq: int
    multiple: int
    uncensored_days: int
    spikes_stripped: int
    health: tuple[str, ...]
    # the forecast competition over the risk period P (kernels._risk_errors): the estimator used for
    # the smooth level ("blend", "window", or "stationarity" with too few scored origins), the RMSE
    # of each candidate's P-day forecasts over `error_origins` past origins, and the daily σ the
    # error replaced in the safety stock (`sigma` is then the error per √day)
    estimator: str = "stationarity"
    risk_days: int = 0
    error_blend: float = math.nan
    error_window: float = math.nan
    error_origins: int = 0
    daily_sigma: float = math.nan
    # the quote's weight in L̄ (in receipts) and L̄'s standard error, priced in σ_LTD when
    # `lead_time_estimate_in_ss` (policy.lead_time_batch); the share of the buffer held as the least
    # reserve (policy.buffer_share) and the buffer's units; the days of demand S holds beyond the ROP
    lead_time_quote_weight: float = 0.0
    lead_time_error: float = 0.0
    lead_time_error_priced: bool = False
    buffer_share: float = 1.0
    buffer_units: float = 0.0
    cycle_stock_days: float = 0.0


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A replenishment proposal for one (sku, site) with its panel and trace.

    `qty` is final (after MOQ, multiple, caps and rules); `raw_qty` = ⌈S − IP⌉ before any of them.
    A suggestion with `qty == 0` says why in `reason` (no order needed, or a rule stopped it).
    """

    sku: str
    site: str
    supplier_id: str
    today: date
    qty: int
    raw_qty: int
    method: Method
    sbc_class: SbcClass
    reorder_point: float
    order_up_to: float
    safety_stock: float
    inventory_position: int
    coverage_days: float | None  # (on hand + counted in transit) / demand rate; None without demand
    service_level: float
    z: float
    sigma_ltd: float
    triggered: bool  # IP ≤ ROP
    reason: str
    qty_cap: int | None  # the lowest hard upper limit set on the way (shelf life, budget, cover, ...)
    unit_cost: Decimal | None
    panel: Panel
    trace: tuple[RuleLine, ...]

    @property
    def value(self) -> Decimal | None:
        """The order's value at unit cost, or None when the cost is unknown."""
        return None if self.unit_cost is None else self.unit_cost * self.qty
