"""The ordering policy: hand-computed suggestions, the note's anchors, and properties over random inputs."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from engine.domain.errors import InvalidArgument
from engine.replenish import (
    Arrival,
    DemandHistory,
    Factor,
    LeadTime,
    PairPosition,
    PolicySettings,
    SupplierTerms,
    explain,
    forecast_batch,
    suggest,
    suggestion_dict,
)
from engine.replenish.policy import lead_time_stats, policy_batch, z_of
from engine.replenish.rules import rounded

TODAY = date(2026, 12, 7)  # a Monday


def lead_times(*days: int) -> tuple[LeadTime, ...]:
    out = []
    for i, d in enumerate(days):
        ordered = TODAY - timedelta(days=100 - 20 * i)
        out.append(LeadTime(ordered, ordered + timedelta(days=d)))
    return tuple(out)


def flat(rate: float = 10.0, days: int = 60) -> DemandHistory:
    return DemandHistory.of("bearing-6204", "wh-1", TODAY, [rate] * days)


SUPPLIER = SupplierTerms("acme", moq=0, multiple=1, lead_times=lead_times(4, 5, 6), unit_cost=Decimal("2.50"))


def test_hand_computed_smooth_suggestion() -> None:
    s = suggest(flat(), PairPosition("bearing-6204", "wh-1", on_hand=50), SUPPLIER, PolicySettings())
    # L̄ 5, sL 1, σL = max(1, 0.5) = 1; L̄'s error 1/√3 (3 receipts, no quote); σd 0 →
    # σ_LTD = 10·√(1 + 1/3) = 11.547; SS = 1.645·11.547 = 18.99
    assert s.panel.lead_time_mean == 5.0
    assert s.panel.lead_time_sigma == 1.0
    assert s.panel.lead_time_error == pytest.approx(1 / math.sqrt(3))
    assert s.sigma_ltd == pytest.approx(10 * math.sqrt(4 / 3))
    assert s.safety_stock == pytest.approx(z_of(0.95) * 11.547005)
    assert s.z == pytest.approx(1.6448536, abs=1e-6)
    assert s.panel.demand_rate == pytest.approx(11.5)  # 10 × buffer 1.15
    # demand over L̄ + R; the buffer's 0.15·10·6 = 9 units lie inside the safety stock's 16.4
    assert s.reorder_point == pytest.approx(10 * (5 + 1) + s.safety_stock)
    # the cycle at d̂ (no buffer) over C − R = 6 days: the ROP's L̄ + R already covers the review
    assert s.order_up_to == pytest.approx(s.reorder_point + 10 * 6)
    assert s.inventory_position == 50
    assert s.triggered
    assert s.raw_qty == math.ceil(s.order_up_to - 50)
    assert s.qty == s.raw_qty == 89  # ⌈60 + 18.99 + 60 − 50⌉
    assert "S 139.0 = ROP + 6 d × 10.00/day (the buffer covers L̄ + R only; C 7 d − R 1 d" in s.trace[0].why
    assert s.method == "smooth"
    assert s.sbc_class == "smooth"
    assert s.coverage_days == pytest.approx(50 / 11.5)


def test_the_buffer_multiplies_demand_never_safety_stock() -> None:
    pos = PairPosition("bearing-6204", "wh-1", on_hand=0)
    rng = np.random.default_rng(1)
    h = DemandHistory.of("bearing-6204", "wh-1", TODAY, rng.poisson(10, 90))
    on_top = PolicySettings(buffer_in_safety_stock=False)  # the buffer on top of the safety stock
    with_buffer = suggest(h, pos, SUPPLIER, on_top)
    without = suggest(h, pos, SUPPLIER, PolicySettings(demand_buffer=1.0, buffer_in_safety_stock=False))
    assert with_buffer.safety_stock == without.safety_stock
    assert with_buffer.reorder_point - with_buffer.safety_stock == pytest.approx(
        1.15 * (without.reorder_point - without.safety_stock)
    )


def test_the_buffer_covers_the_risk_period_not_the_cycle() -> None:
    # the reorder point is checked at every review: a sudden order during the cycle brings the next
    # order forward, so the cycle's days are stocked at d̂; the buffer covers L̄ + R, when nothing
    # can be done. `buffer_on_cycle` puts it on the cycle too (as before 2026-12-07).
    pos = PairPosition("bearing-6204", "wh-1", on_hand=0)
    now = suggest(flat(), pos, SUPPLIER, PolicySettings(buffer_in_safety_stock=False))
    before = suggest(flat(), pos, SUPPLIER, PolicySettings(buffer_on_cycle=True, buffer_in_safety_stock=False))
    assert now.reorder_point == before.reorder_point == pytest.approx(11.5 * 6 + now.safety_stock)
    assert now.order_up_to - now.reorder_point == pytest.approx(10 * 6)  # C − R = 6 days
    assert before.order_up_to - before.reorder_point == pytest.approx(11.5 * 6)
    assert "the buffer on the cycle too" in before.trace[0].why


def test_the_buffer_counts_towards_the_safety_stock() -> None:
    # flat demand 10/day: σd 0, σ_LTD = d̂·√(σL² + SE²) = 10·√(1 + 1/3) = 11.55; the buffer over
    # L̄ + R = 6 days is 0.15·10·6 = 9
    pos = PairPosition("bearing-6204", "wh-1", on_hand=50)
    sigma_ltd = 10 * math.sqrt(4 / 3)
    high = suggest(flat(), pos, SUPPLIER, PolicySettings(buffer_in_safety_stock=True))
    assert high.safety_stock == pytest.approx(z_of(0.95) * sigma_ltd)  # 19.0 > 9: the buffer is inside it
    assert high.reorder_point == pytest.approx(10 * 6 + z_of(0.95) * sigma_ltd)
    # the buffer in full at every service level (`buffer_full_from` 0.5): z·σ_LTD 2.9 < 9
    full = PolicySettings(buffer_in_safety_stock=True, service_level=0.6, buffer_full_from=0.5)
    low = suggest(flat(), pos, SUPPLIER, full)
    assert low.safety_stock == pytest.approx(9.0)  # the buffer is the least reserve
    assert low.reorder_point == pytest.approx(10 * 6 + 9.0)
    on_top = suggest(flat(), pos, SUPPLIER, PolicySettings(buffer_in_safety_stock=False))
    assert on_top.reorder_point == pytest.approx(11.5 * 6 + z_of(0.95) * sigma_ltd)  # the sum: protected twice
    assert high.reorder_point < on_top.reorder_point


def test_the_panel_names_the_estimator_that_won_and_its_errors() -> None:
    rng = np.random.default_rng(2)
    h = DemandHistory.of("bearing-6204", "wh-1", TODAY, rng.poisson(10, 200))
    s = suggest(h, PairPosition("bearing-6204", "wh-1", on_hand=0), SUPPLIER, PolicySettings())
    p = s.panel
    assert p.risk_days == 6
    assert p.error_origins == 90
    assert p.estimator in ("window", "blend")
    assert p.sigma == pytest.approx((p.error_window if p.estimator == "window" else p.error_blend) / math.sqrt(6))
    line = next(x for x in explain(s) if x.startswith("Level:"))
    assert f"RMSE {p.error_blend:.2f} by the blend and {p.error_window:.2f} by the 90-day mean" in line
    assert f"→ {p.estimator} used" in line


def test_no_order_above_the_reorder_point_says_why() -> None:
    s = suggest(flat(), PairPosition("bearing-6204", "wh-1", on_hand=1000), SUPPLIER, PolicySettings())
    assert s.qty == 0
    assert not s.triggered
    assert "above the reorder point" in s.reason


def test_no_demand_no_order() -> None:
    s = suggest(flat(0.0), PairPosition("bearing-6204", "wh-1", on_hand=0), SUPPLIER, PolicySettings())
    assert s.qty == 0
    assert s.method == "none"
    assert "no demand" in s.reason


def test_in_transit_counts_only_within_lead_time_plus_review() -> None:
    pos = PairPosition(
        "bearing-6204",
        "wh-1",
        on_hand=10,
        in_transit=(Arrival(30, TODAY + timedelta(days=6)), Arrival(500, TODAY + timedelta(days=7))),
        open_todos=5,
    )
    s = suggest(flat(), pos, SUPPLIER, PolicySettings())  # P = 5 + 1 = 6 days
    assert s.panel.in_transit_within == 30
    assert s.panel.in_transit_beyond == 500
    assert s.inventory_position == 10 + 30 + 5
    held = suggest(
        flat(), PairPosition("bearing-6204", "wh-1", on_hand=10, held=4, backorders=2), SUPPLIER, PolicySettings()
    )
    assert held.inventory_position == 4


def test_lead_time_is_the_mean_of_the_last_receipts_with_a_floored_spread() -> None:
    three = PolicySettings(lead_time_receipts=3)
    terms = SupplierTerms("acme", lead_times=lead_times(30, 10, 10, 10))
    mean, sigma, _, used = lead_time_stats(terms, three)
    assert (mean, sigma, len(used)) == (10.0, 1.0, 3)  # spread 0 floored at 0.1·L̄
    mean, sigma, _, used = lead_time_stats(terms, PolicySettings())  # 12 by default: all four
    assert (mean, len(used)) == (15.0, 4)
    assert sigma == pytest.approx(10.0)
    mean, sigma, _, _ = lead_time_stats(SupplierTerms("acme", lead_times=lead_times(2, 4, 9)), three)
    assert mean == 5.0
    assert sigma == pytest.approx(float(np.std([2, 4, 9], ddof=1)))
    mean, sigma, _, used = lead_time_stats(SupplierTerms("acme", default_lead_time_days=12), PolicySettings())
    assert (mean, sigma, used) == (12.0, pytest.approx(1.2), ())
    s = suggest(flat(), PairPosition("x", "y", on_hand=0), SupplierTerms("acme"), PolicySettings())
    assert "lead_time_default" in s.panel.health


@pytest.mark.parametrize(
    ("qty", "moq", "multiple", "expected"),
    [
        (32, 0, 6, 36),  # Odoo: min 10, max 40, multiple 6, forecast 8 → 40 − 8 = 32 → 36
        (1, 15, 3, 15),  # Dolibarr #38783: MOQ 15, multiple 3
        (6, 15, 3, 15),
        (12, 15, 3, 15),
        (16, 15, 3, 18),
        (1, 10, 3, 12),  # a MOQ that is not a multiple is rounded up first
        (0, 10, 3, 0),
    ],
)
def test_moq_then_multiple(qty: int, moq: int, multiple: int, expected: int) -> None:
    assert rounded(qty, moq, multiple) == expected


def test_moq_and_multiple_in_a_suggestion() -> None:
    terms = SupplierTerms("acme", moq=200, multiple=24, lead_times=lead_times(4, 5, 6))
    s = suggest(flat(), PairPosition("bearing-6204", "wh-1", on_hand=50), terms, PolicySettings())
    assert s.raw_qty == 89
    assert s.qty == 216  # MOQ 200 → 9 cases of 24
    assert [line.rule_id for line in s.trace] == ["policy.trigger", "policy.moq"]


def test_shelf_life_caps_what_can_be_sold_before_expiry() -> None:
    pos = PairPosition("milk", "store-1", on_hand=5, shelf_life_days=8, min_remaining_days=2)
    # the buffer on top; the fifth run's cycle (C days beyond the ROP) and L̄ without its error, so the
    # hand computation is the cap's alone
    old = PolicySettings(buffer_in_safety_stock=False, cycle_beyond_review=False, lead_time_estimate_in_ss=False)
    s = suggest(flat(), pos, SUPPLIER, old)
    cap = math.floor(10 * (5 + 6) - 5)  # sells 10/day over the lead time 5 + sellable 6 days, less the position
    assert s.qty_cap == cap == 105
    # the cycle is capped at half the 6 sellable days: S = 11.5·(5 + 1) + SS + 10·3
    assert s.order_up_to == pytest.approx(11.5 * 6 + s.safety_stock + 10 * 3)
    assert s.qty == cap < s.raw_qty == 111
    assert any(line.template == "shelf_life_cap" and line.changed for line in s.trace)


def test_a_cap_below_the_moq_means_no_order() -> None:
    pos = PairPosition("milk", "store-1", on_hand=5, shelf_life_days=2, min_remaining_days=2)
    terms = SupplierTerms("acme", moq=100, multiple=10, lead_times=lead_times(4, 5, 6))
    s = suggest(flat(), pos, terms, PolicySettings())
    assert s.qty_cap == 10 * 5 - 5
    assert s.qty == 0
    assert "below the MOQ" in s.reason


def test_factors_are_bounded_and_applied_over_the_horizon() -> None:
    pos = PairPosition("bearing-6204", "wh-1", on_hand=0)
    horizon = 5 + 1 + 7
    promo = Factor("promotion", TODAY, TODAY + timedelta(days=horizon - 1), 2.0, "promo calendar #12")
    s = suggest(flat(), pos, SUPPLIER, PolicySettings(), factors=(promo,))
    assert s.panel.factor_multiplier == pytest.approx(2.0)
    assert s.panel.demand_rate == pytest.approx(10 * 2 * 1.15)
    assert s.panel.factors[0].days_in_horizon == horizon
    hot = Factor("weather", TODAY, TODAY + timedelta(days=100), 3.0, "weather index")
    s = suggest(flat(), pos, SUPPLIER, PolicySettings(), factors=(hot,))
    assert s.panel.factors[0].applied == 1.5  # weather clamped to [0.7, 1.5]
    later = Factor("event", TODAY + timedelta(days=300), TODAY + timedelta(days=301), 2.0, "fair")
    assert suggest(flat(), pos, SUPPLIER, PolicySettings(), factors=(later,)).panel.factors == ()


def test_intermittent_items_use_sba_and_a_negative_binomial_safety_stock() -> None:
    y = [0.0] * 120
    for i in range(0, 120, 6):
        y[i] = 3.0
    h = DemandHistory.of("valve", "wh-1", TODAY, y)
    s = suggest(h, PairPosition("valve", "wh-1", on_hand=0), SUPPLIER, PolicySettings())
    assert s.method == "sba"
    assert s.sbc_class == "intermittent"
    assert s.panel.base_rate == pytest.approx(s.panel.sba)
    assert s.safety_stock >= 0
    assert s.qty > 0


def test_single_pair_and_batch_agree() -> None:
    rng = np.random.default_rng(5)
    demand = rng.poisson(rng.uniform(0.2, 30, (20, 1)), (20, 200)).astype(np.float64)
    censored = rng.random((20, 200)) < 0.05
    settings_ = PolicySettings()
    horizon = 5 + 1 + 7
    batch = forecast_batch(demand, censored, settings_, seasonal_days=horizon, risk_days=5 + 1)
    for i in range(20):
        h = DemandHistory("s", "w", TODAY, demand[i], censored[i], np.zeros(200, bool))
        s = suggest(h, PairPosition("s", "w", on_hand=0), SUPPLIER, settings_)
        assert s.panel.base_rate == batch.rate[i]
        assert (s.panel.m7, s.panel.m14, s.panel.m30, s.panel.sigma) == (
            batch.m7[i],
            batch.m14[i],
            batch.m30[i],
            batch.sigma[i],
        )
        assert s.method == batch.method_name(i)


def test_explanations_name_every_step() -> None:
    terms = SupplierTerms("acme", moq=200, multiple=24, lead_times=lead_times(4, 5, 6), unit_cost=Decimal("2.50"))
    s = suggest(flat(), PairPosition("bearing-6204", "wh-1", on_hand=50), terms, PolicySettings())
    text = "\n".join(explain(s))
    for needle in ("m7 10.00", "L̄ 5.00", "z 1.64", "Reorder point", "MOQ 200", "[policy.moq]", "89 → 216"):
        assert needle in text, needle
    d = suggestion_dict(s)
    assert d["schema"] == 1
    assert d["qty"] == 216
    assert d["unit_cost"] == "2.50"
    assert d["value"] == "540.00"
    assert d["panel"]["lead_times"][0]["received_on"]
    assert d["trace"][1]["after"] == "216"
    import json

    json.dumps(d)  # JSON-ready as it is


def test_bad_inputs_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidArgument, match="multiple"):
        SupplierTerms("acme", multiple=0)
    with pytest.raises(InvalidArgument, match="service_level"):
        PolicySettings(service_level=1.0)
    with pytest.raises(InvalidArgument, match="weights"):
        PolicySettings(weights=(0.5, 0.5, 0.5))
    with pytest.raises(InvalidArgument, match="censored"):
        DemandHistory("s", "w", TODAY, np.zeros(5), np.zeros(4, bool), np.zeros(5, bool))
    with pytest.raises(InvalidArgument, match="on_hand"):
        PairPosition("s", "w", on_hand=-1)
    with pytest.raises(InvalidArgument, match="end"):
        Factor("promotion", TODAY, TODAY - timedelta(days=1), 2.0, "x")
    with pytest.raises(InvalidArgument, match="kind"):
        Factor("rain", TODAY, TODAY, 2.0, "x")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="received_on"):
        LeadTime(TODAY, TODAY - timedelta(days=1))


# ---------------------------------------------------------------- properties

demand_rows = st.lists(st.integers(0, 40), min_size=1, max_size=150)


@st.composite
def cases(draw: st.DrawFn) -> tuple[DemandHistory, PairPosition, SupplierTerms]:
    y = draw(demand_rows)
    cens = draw(st.lists(st.booleans(), min_size=len(y), max_size=len(y)))
    h = DemandHistory.of("s", "w", TODAY, y, cens)
    pos = PairPosition(
        "s",
        "w",
        on_hand=draw(st.integers(0, 500)),
        held=draw(st.integers(0, 50)),
        in_transit=tuple(
            Arrival(q, TODAY + timedelta(days=d))
            for q, d in draw(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 30)), max_size=3))
        ),
        shelf_life_days=draw(st.none() | st.integers(1, 60)),
        min_remaining_days=draw(st.integers(0, 5)),
    )
    terms = SupplierTerms(
        "acme",
        moq=draw(st.integers(0, 120)),
        multiple=draw(st.integers(1, 24)),
        lead_times=lead_times(*draw(st.lists(st.integers(0, 20), max_size=4))),
    )
    return h, pos, terms


@settings(max_examples=150, deadline=None)
@given(cases(), st.floats(0.5, 0.999))
def test_quantity_respects_terms_and_caps(case: tuple[DemandHistory, PairPosition, SupplierTerms], csl: float) -> None:
    h, pos, terms = case
    s = suggest(h, pos, terms, PolicySettings(service_level=csl))
    assert s.qty >= 0
    assert s.raw_qty >= 0
    if s.qty > 0:
        assert s.qty >= terms.moq
        assert s.qty % terms.multiple == 0
        assert s.triggered
    else:
        assert s.reason
    if s.qty_cap is not None:
        assert s.qty <= s.qty_cap
    assert s.safety_stock >= 0


@settings(max_examples=100, deadline=None)
@given(cases(), st.floats(0.5, 0.99), st.floats(0.0, 0.009))
def test_monotone_in_service_level(
    case: tuple[DemandHistory, PairPosition, SupplierTerms], lo: float, step: float
) -> None:
    h, pos, terms = case
    a = suggest(h, pos, terms, PolicySettings(service_level=lo))
    b = suggest(h, pos, terms, PolicySettings(service_level=lo + step))
    assert b.safety_stock >= a.safety_stock - 1e-9
    assert b.reorder_point >= a.reorder_point - 1e-9
    assert b.qty >= a.qty


@settings(max_examples=100, deadline=None)
@given(cases())
def test_policy_batch_gives_the_suggestions_numbers(case: tuple[DemandHistory, PairPosition, SupplierTerms]) -> None:
    h, pos, terms = case
    settings_ = PolicySettings()
    s = suggest(h, pos, terms, settings_)
    mean, sigma, error, _ = lead_time_stats(terms, settings_)
    fc = forecast_batch(h.demand[np.newaxis], h.censored[np.newaxis], settings_, seasonal_days=math.ceil(mean) + 1 + 7)
    b = policy_batch(
        fc,
        settings_,
        on_hand=pos.on_hand,
        held=pos.held,
        in_transit_within=s.panel.in_transit_within,
        lead_mean=mean,
        lead_sigma=sigma,
        lead_error=error,
        moq=terms.moq,
        multiple=terms.multiple,
        shelf_life_days=pos.shelf_life_days or 0,
        min_remaining_days=pos.min_remaining_days,
    )
    assert b.qty[0] == s.qty
    assert b.raw_qty[0] == s.raw_qty
    assert b.reorder_point[0] == s.reorder_point
    assert b.safety_stock[0] == s.safety_stock


def test_a_stockout_longer_than_the_window_falls_back_on_the_older_history() -> None:
    y = [10.0] * 100 + [0.0] * 100
    censored = [False] * 100 + [True] * 100  # out of stock for 100 days: the shelf was empty, not the demand
    h = DemandHistory.of("bearing-6204", "wh-1", TODAY, y, censored)
    s = suggest(h, PairPosition("bearing-6204", "wh-1", on_hand=0), SUPPLIER, PolicySettings())
    assert s.panel.m7 == s.panel.m30 == pytest.approx(10.0)
    assert s.method == "smooth"
    assert s.qty > 0
    assert "censored_share_high" in s.panel.health


def test_without_any_uncensored_day_the_reason_says_demand_is_unknown() -> None:
    h = DemandHistory.of("bearing-6204", "wh-1", TODAY, [0.0] * 40, [True] * 40)
    s = suggest(h, PairPosition("bearing-6204", "wh-1", on_hand=0), SUPPLIER, PolicySettings())
    assert s.qty == 0
    assert s.reason.startswith("demand unknown")
    assert "no_uncensored_day" in s.panel.health
    empty = suggest(
        DemandHistory.of("x", "y", TODAY, []), PairPosition("x", "y", on_hand=0), SUPPLIER, PolicySettings()
    )
    assert empty.qty == 0
    assert "short_history" in empty.panel.health


def test_a_factor_counts_only_its_days_inside_the_horizon() -> None:
    pos = PairPosition("bearing-6204", "wh-1", on_hand=0)
    horizon = 5 + 1 + 7  # ⌈L̄⌉ + R + C
    promo = Factor("promotion", TODAY + timedelta(days=10), TODAY + timedelta(days=20), 3.0, "promo #7")
    s = suggest(flat(), pos, SUPPLIER, PolicySettings(), factors=(promo,))
    inside = horizon - 10  # days 10, 11, 12 of the horizon
    assert s.panel.factors[0].days_in_horizon == inside
    assert s.panel.factor_multiplier == pytest.approx((horizon - inside + 3.0 * inside) / horizon)
    text = "\n".join(explain(s))
    assert "Factor promotion from promo #7" in text
    assert f"on {inside} day(s) of the horizon" in text
    capped = suggest(flat(), pos, SUPPLIER, PolicySettings(), factors=(replace_multiplier(promo, 9.0),))
    assert "bounded to ×4.00" in "\n".join(explain(capped))  # promotions are bounded to [0.5, 4]


def replace_multiplier(f: Factor, multiplier: float) -> Factor:
    return Factor(f.kind, f.start, f.end, multiplier, f.source)


def test_health_flags_reach_the_explanation() -> None:
    s = suggest(flat(days=10), PairPosition("x", "y", on_hand=0), SupplierTerms("acme"), PolicySettings())
    assert set(s.panel.health) == {"lead_time_default", "short_history"}
    assert explain(s)[-1] == "Data health: lead_time_default, short_history"
    assert "none (default)" in "\n".join(explain(s))


def test_a_few_noisy_receipts_are_shrunk_towards_the_stated_lead_time() -> None:
    s = PolicySettings(lead_time_prior_by_spread=False)  # the quote counts as 3 receipts
    noisy = SupplierTerms("acme", lead_times=lead_times(6, 9), stated_lead_time_days=10.0)
    mean, sigma, _, _ = lead_time_stats(noisy, s)
    assert mean == pytest.approx((6 + 9 + 3 * 10) / 5)
    # by precision (the default): s 2.121 against the quote's 10 % (1 d) → w = 4.5 receipts
    assert lead_time_stats(noisy, PolicySettings())[0] == pytest.approx((6 + 9 + 4.5 * 10) / 6.5)
    assert sigma == pytest.approx(float(np.std([6, 9], ddof=1)))  # the spread is the receipts' own
    many = SupplierTerms("acme", lead_times=lead_times(*[9, 11] * 6), stated_lead_time_days=10.0)
    assert lead_time_stats(many, s)[0] == pytest.approx(10.0)
    quoted_only = SupplierTerms("acme", stated_lead_time_days=4.0, default_lead_time_days=12)
    assert lead_time_stats(quoted_only, s)[0] == 4.0  # no receipt yet: the quote, not the engine default
    assert lead_time_stats(quoted_only, PolicySettings(lead_time_prior=0.0))[0] == 4.0


def test_a_supplier_that_is_always_late_contradicts_its_quote() -> None:
    late = SupplierTerms("acme", lead_times=lead_times(14, 15, 14, 16, 15), stated_lead_time_days=7.0)
    mean, _, _, _ = lead_time_stats(late, PolicySettings())
    assert mean == pytest.approx(np.mean([14, 15, 14, 16, 15]))  # the quote is ignored, not averaged in


def test_the_lead_time_batch_agrees_with_one_pair() -> None:
    from engine.replenish.policy import lead_time_batch

    receipts = np.array([[6, 9, np.nan], [np.nan, np.nan, np.nan], [14, 15, 16]], np.float64)
    mean, sigma, _ = lead_time_batch(receipts, np.array([10.0, np.nan, 7.0]), PolicySettings(), fallback=5.0)
    assert mean[0] == pytest.approx((6 + 9 + 4.5 * 10) / 6.5)  # the quote weighs (2.121 / 1)² = 4.5
    assert (mean[1], sigma[1]) == (5.0, pytest.approx(0.5))  # neither receipts nor quote: the fallback
    assert mean[2] == pytest.approx(15.0)


def test_daily_orders_cover_less_lead_time_spread_than_weekly_ones() -> None:
    """Orders that overtake each other average lateness out: σL² → min(σL², I·σL/√π)."""
    from engine.replenish.policy import effective_lead_sigma

    sl = np.array([3.0])
    assert effective_lead_sigma(sl, np.array([1.0]), PolicySettings())[0] == pytest.approx(
        math.sqrt(3 / math.sqrt(math.pi))
    )
    assert effective_lead_sigma(sl, np.array([7.0]), PolicySettings())[0] == pytest.approx(3.0)
    runs = PolicySettings(independent_lead_times=False)
    assert effective_lead_sigma(sl, np.array([1.0]), runs)[0] == pytest.approx(3.0)
    terms = SupplierTerms("acme", lead_times=lead_times(2, 8, 5))
    daily = suggest(flat(), PairPosition("x", "y", on_hand=0), terms, PolicySettings(horizon_days=1))
    weekly = suggest(flat(), PairPosition("x", "y", on_hand=0), terms, PolicySettings(horizon_days=7))
    assert daily.safety_stock < weekly.safety_stock


def test_a_perishables_cycle_is_capped_by_its_shelf_life() -> None:
    fresh = PairPosition("milk", "store-1", on_hand=0, shelf_life_days=4)
    s = suggest(flat(), fresh, SUPPLIER, PolicySettings())
    assert s.order_up_to == pytest.approx(s.reorder_point + 10 * 1)  # half of 4 sellable days, less R
    long_life = PairPosition("milk", "store-1", on_hand=0, shelf_life_days=60)
    long = suggest(flat(), long_life, SUPPLIER, PolicySettings())
    assert long.order_up_to == pytest.approx(long.reorder_point + 10 * 6)


# ---------------------------------------------------------------- the sixth run's formulas (2026-12-07)


def test_the_quote_weighs_by_its_precision_against_the_receipts() -> None:
    """w = (s / (cv·quote))²: receipts 9, 11, 13 (s 2) against a quote of 12 trusted to ±10 % (1.2 d)
    → w = (2 / 1.2)² = 2.778; L̄ = (33 + 2.778·12) / 5.778 = 11.481; SE = 2 / √5.778 = 0.832."""
    from engine.replenish.policy import lead_time_batch

    receipts = np.array([[9.0, 11.0, 13.0]])
    mean, sigma, error = lead_time_batch(receipts, np.array([12.0]), PolicySettings())
    assert mean[0] == pytest.approx((33 + 12 * 25 / 9) / (3 + 25 / 9))
    assert mean[0] == pytest.approx(11.4808, abs=1e-4)
    assert sigma[0] == pytest.approx(2.0)
    assert error[0] == pytest.approx(2 / math.sqrt(3 + 25 / 9))
    # the fixed weight (the fifth run): the quote counts as 3 receipts, SE = 2 / √6
    fixed = PolicySettings(lead_time_prior_by_spread=False)
    mean, _, error = lead_time_batch(receipts, np.array([12.0]), fixed)
    assert (mean[0], error[0]) == (pytest.approx((33 + 36) / 6), pytest.approx(2 / math.sqrt(6)))
    # a steadier supplier (s 1, floored at 0.1·12 = 1.2) weighs the quote as one receipt: SE 1.2 / √4
    steady = lead_time_batch(np.array([[11.0, 12.0, 13.0]]), np.array([12.0]), PolicySettings())
    assert steady[0][0] == pytest.approx(12.0)
    assert steady[2][0] == pytest.approx(0.6)


def test_the_lead_time_estimates_error_is_priced_in_the_safety_stock() -> None:
    """σ_LTD² = P·σd² + d̂²·(σL,eff² + SE²): σL 2 on weekly orders (σL,eff 2), SE 0.8 → √4.64."""
    from engine.replenish.policy import lead_sigma_priced

    priced = lead_sigma_priced(np.array([2.0]), np.array([0.8]), np.array([7.0]), PolicySettings())
    assert priced[0] == pytest.approx(math.sqrt(4 + 0.64))
    off = PolicySettings(lead_time_estimate_in_ss=False)
    assert lead_sigma_priced(np.array([2.0]), np.array([0.8]), np.array([7.0]), off)[0] == pytest.approx(2.0)
    # daily orders: σL,eff² = 1·2/√π = 1.128, the estimate's error is not averaged away: √(1.128 + 0.64)
    daily = lead_sigma_priced(np.array([2.0]), np.array([0.8]), np.array([1.0]), PolicySettings())
    assert daily[0] == pytest.approx(math.sqrt(2 / math.sqrt(math.pi) + 0.64))


def test_below_its_service_level_the_buffer_falls_with_z() -> None:
    """`buffer_full_from` 0.95: the buffer's 9 units (0.15·10·6) in full from 0.95; at 0.8 a share
    z(0.8)/z(0.95) = 0.8416 / 1.6449 = 0.5117 of them, 4.605 units; none at 0.5 (z 0), where the
    safety stock is z·σ_LTD = 0."""
    from engine.replenish.policy import buffer_share

    falls = replace(PolicySettings(), buffer_full_from=0.95)
    assert buffer_share(falls) == 1.0
    assert buffer_share(replace(falls, service_level=0.8)) == pytest.approx(0.841621 / 1.644854, abs=1e-6)
    assert buffer_share(replace(falls, service_level=0.5)) == 0.0
    assert buffer_share(PolicySettings(service_level=0.5)) == 1.0  # the default: in full at every level
    pos = PairPosition("bearing-6204", "wh-1", on_hand=50)
    receipts = SupplierTerms("acme", lead_times=lead_times(5, 5, 5))  # σL = 0.1·5 = 0.5, SE 0.5/√3
    low = suggest(flat(), pos, receipts, replace(falls, service_level=0.8))
    z_sigma = z_of(0.8) * 10 * math.sqrt(0.5 * 0.5 + 0.25 / 3)  # σL,eff 0.5 (weekly), + SE²
    assert low.safety_stock == pytest.approx(max(z_sigma, 9 * 0.841621 / 1.644854), rel=1e-5)
    assert low.panel.buffer_share == pytest.approx(0.5117, abs=1e-4)
    assert low.panel.buffer_units == pytest.approx(4.605, abs=1e-3)
    none = suggest(flat(), pos, receipts, replace(falls, service_level=0.5))
    assert none.safety_stock == 0.0
    assert none.reorder_point == pytest.approx(60.0)
    full = suggest(flat(), pos, receipts, PolicySettings(service_level=0.5))
    assert full.safety_stock == pytest.approx(9.0)  # the default: the buffer in full at every level
    lines = explain(low)
    assert any("Buffer ×1.15: 4.61 units over L̄ + R, at 51% (service level below" in line for line in lines)


def test_the_order_up_to_level_holds_the_cycle_beyond_the_review() -> None:
    """S = ROP + d̂·(C − R): weekly 6 days of 10/day; daily (C = R = 1) base stock, S = ROP."""
    pos = PairPosition("bearing-6204", "wh-1", on_hand=0)
    weekly = suggest(flat(), pos, SUPPLIER, PolicySettings())
    assert weekly.order_up_to - weekly.reorder_point == pytest.approx(60.0)
    assert weekly.panel.cycle_stock_days == pytest.approx(6.0)
    daily = suggest(flat(), pos, SUPPLIER, PolicySettings(horizon_days=1))
    assert daily.order_up_to == pytest.approx(daily.reorder_point)
    before = suggest(flat(), pos, SUPPLIER, PolicySettings(cycle_beyond_review=False))
    assert before.order_up_to - before.reorder_point == pytest.approx(70.0)
    assert any("(ROP + 6.00 days of demand)" in line for line in explain(weekly))
