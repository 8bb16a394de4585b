"""The numba kernels against hand-computed values and against statsforecast (the golden reference)."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays

from engine.domain.errors import InvalidArgument
from engine.replenish.kernels import (
    ESTIMATOR_BLEND,
    ESTIMATOR_STATIONARITY,
    ESTIMATOR_WINDOW,
    METHOD_SBA,
    METHOD_SMOOTH,
    METHOD_TSB,
    SBC_ERRATIC,
    SBC_INTERMITTENT,
    SBC_LUMPY,
    SBC_NO_DEMAND,
    SBC_SMOOTH,
    forecast_batch,
)
from engine.replenish.model import PolicySettings

S = PolicySettings()


def one(y: list[float], censored: list[bool] | None = None, promo: list[bool] | None = None, **kw: object):
    arr = np.asarray([y], dtype=np.float64)
    cens = None if censored is None else np.asarray([censored])
    prom = None if promo is None else np.asarray([promo])
    return forecast_batch(arr, cens, PolicySettings(**kw) if kw else S, promo=prom)  # type: ignore[arg-type]


def test_windows_blend_sigma_and_sbc_by_hand() -> None:
    f = one(list(range(30)))
    assert f.m7[0] == pytest.approx(26.0)  # 23..29
    assert f.m14[0] == pytest.approx(22.5)  # 16..29
    assert f.m30[0] == pytest.approx(14.5)  # 0..29
    assert f.blend[0] == pytest.approx(0.5 * 26 + 0.3 * 22.5 + 0.2 * 14.5)
    assert f.sigma[0] == pytest.approx(float(np.std(np.arange(30), ddof=1)))
    assert f.adi[0] == pytest.approx(30 / 29)
    assert f.cv2[0] == pytest.approx(70 / 225)  # sizes 1..29: variance 70, mean 15
    assert f.sbc_class[0] == SBC_SMOOTH
    assert f.method[0] == METHOD_SMOOTH
    assert f.rate[0] == pytest.approx(f.blend[0])


def test_censored_days_are_left_out_and_an_empty_window_takes_the_longer_one() -> None:
    y = [10.0] * 16 + [4.0] * 7 + [0.0] * 7
    cens = [False] * 23 + [True] * 7  # the last week was a stockout: zero sales say nothing
    f = one(y, cens)
    assert f.m14[0] == pytest.approx(4.0)  # the 7 valid days of the last 14
    assert f.m7[0] == pytest.approx(4.0)  # no valid day in the last 7: takes m14
    assert f.m30[0] == pytest.approx((16 * 10 + 7 * 4) / 23)
    assert f.valid_days[0] == 23


def test_croston_sba_tsb_by_hand() -> None:
    # sizes 3, 5 at positions 2, 6: size 3 → 3.2; interval 3 → 3 + 0.1·(4 − 3) = 3.1
    f = one([0, 0, 3, 0, 0, 0, 5])
    assert f.croston[0] == pytest.approx(3.2 / 3.1)
    assert f.sba[0] == pytest.approx(3.2 / 3.1 * 0.95)
    prob = 0.0
    for hit in (0, 0, 1, 0, 0, 0):
        prob += 0.1 * (hit - prob)
    prob += 0.1 * (1 - prob)
    assert f.tsb[0] == pytest.approx(prob * 3.2)


def test_croston_family_matches_statsforecast() -> None:
    from statsforecast.models import TSB, CrostonClassic, CrostonSBA

    rng = np.random.default_rng(7)
    rows, days = 300, 150
    occurs = rng.random((rows, days)) < rng.uniform(0.05, 0.9, (rows, 1))
    y = (occurs * rng.integers(1, 20, (rows, days))).astype(np.float64)
    y[:, -1] = np.where(y.sum(axis=1) == 0, 1.0, y[:, -1])  # statsforecast's no-demand path is a naive forecast
    f = forecast_batch(y, None, PolicySettings(spike_k=100.0))
    for i in range(rows):
        assert f.croston[i] == pytest.approx(CrostonClassic().forecast(y[i], 1)["mean"][0], abs=1e-12)
        assert f.sba[i] == pytest.approx(CrostonSBA().forecast(y[i], 1)["mean"][0], abs=1e-12)
        assert f.tsb[i] == pytest.approx(TSB(alpha_d=0.1, alpha_p=0.1).forecast(y[i], 1)["mean"][0], abs=1e-12)


def test_a_spike_is_stripped_from_the_baseline() -> None:
    y = [10.0] * 59 + [100.0]
    f = one(y)
    assert f.spikes[0] == 1
    assert f.m7[0] == pytest.approx(10.0)
    kept = one(y, spike_k=100.0)
    assert kept.spikes[0] == 0
    assert kept.m7[0] == pytest.approx((6 * 10 + 100) / 7)


def test_sparse_sales_are_not_spikes() -> None:
    y = [0.0] * 200
    for i in range(0, 200, 20):
        y[i] = 1.0
    f = one(y)
    assert f.spikes[0] == 0
    assert f.sbc_class[0] == SBC_INTERMITTENT


def test_promotion_days_are_stripped_only_when_asked() -> None:
    y = [5.0] * 23 + [20.0] * 7
    promo = [False] * 23 + [True] * 7
    assert one(y, promo=promo).m30[0] == pytest.approx(5.0)
    assert one(y, promo=promo, strip_promo=False).m30[0] == pytest.approx((23 * 5 + 7 * 20) / 30)


def test_sbc_classes() -> None:
    rng = np.random.default_rng(3)
    smooth = rng.poisson(20, 90).astype(float)
    erratic = rng.choice([1.0, 40.0], 90)
    intermittent = np.where(np.arange(90) % 5 == 0, 4.0, 0.0)
    lumpy = np.where(np.arange(90) % 5 == 0, rng.choice([1.0, 30.0], 90), 0.0)
    none = np.zeros(90)
    f = forecast_batch(np.vstack([smooth, erratic, intermittent, lumpy, none]), None, PolicySettings(spike_k=50.0))
    assert list(f.sbc_class) == [SBC_SMOOTH, SBC_ERRATIC, SBC_INTERMITTENT, SBC_LUMPY, SBC_NO_DEMAND]
    assert f.method[2] == METHOD_SBA
    assert f.rate[4] == 0.0
    assert math.isinf(f.adi[4])


def test_a_long_silence_switches_to_tsb() -> None:
    y = [3.0 if i % 3 == 0 else 0.0 for i in range(60)] + [0.0] * 30
    f = one(y)
    assert f.method[0] == METHOD_TSB  # 30 zero days > 2 × ADI
    assert f.rate[0] == pytest.approx(f.tsb[0])
    assert f.tsb[0] < f.sba[0]


def test_same_period_last_year_index() -> None:
    y = np.full(400, 10.0)
    n = len(y)
    ly = n - 365
    y[ly : ly + 8] = 15.0  # last year, the 8 days matching the coming horizon sold 1.5×
    f = forecast_batch(y, None, PolicySettings(spike_k=50.0), seasonal_days=8)
    assert f.seasonal_index[0] == pytest.approx(1.5)
    assert f.rate[0] == pytest.approx(f.blend[0] * 1.5)
    short = forecast_batch(y[-390:], None, PolicySettings(spike_k=50.0), seasonal_days=8)
    assert short.seasonal_index[0] == 1.0  # fewer than 13 months: no index
    y[ly : ly + 8] = 100.0
    assert forecast_batch(y, None, PolicySettings(spike_k=50.0), seasonal_days=8).seasonal_index[0] == 2.0  # clamped


def test_a_last_year_change_within_its_noise_is_no_season() -> None:
    rng = np.random.default_rng(3)
    y = rng.poisson(10, 400).astype(np.float64)
    ly = len(y) - 365
    y[ly : ly + 8] = rng.poisson(11, 8)  # last year's coming days sold ~10 % more: within a week's noise
    gated = forecast_batch(y, None, S, seasonal_days=8)
    assert gated.seasonal_index[0] == 1.0
    ungated = forecast_batch(y, None, PolicySettings(seasonal_z=0.0), seasonal_days=8)
    assert ungated.seasonal_index[0] != 1.0  # every change counted (as before 2026-12-07)


def test_the_seasonal_index_is_measured_from_the_levels_own_window() -> None:
    # stationary demand: the level is the 90-day mean, so last year's coming days are compared
    # with last year's 90 days before them (8 % lower for 60 of them), not with the last 30
    y = np.full(500, 100.0)
    ly = len(y) - 365
    y[ly - 90 : ly - 30] = 80.0
    f = forecast_batch(y, None, S, seasonal_days=8)
    assert bool(f.stationary[0])
    assert f.seasonal_index[0] == pytest.approx(100.0 / ((60 * 80 + 30 * 100) / 90))
    old = forecast_batch(y, None, PolicySettings(seasonal_matches_level=False), seasonal_days=8)
    assert old.seasonal_index[0] == 1.0  # the last 30 days before, alone, saw no change


def test_a_spike_stands_out_from_its_neighbours_a_level_that_moved_does_not() -> None:
    base = np.array([8.0, 12.0] * 50)
    spike = base.copy()
    spike[80] = 40.0  # one sudden order
    f = one(list(spike))
    assert f.spikes[0] == 1
    moved = np.concatenate([base, np.full(5, 40.0)])  # the level moved: the last five days
    g = one(list(moved))
    assert g.spikes[0] == 0
    assert g.m7[0] == pytest.approx((40.0 * 5 + 8.0 + 12.0) / 7)
    struck = one(list(moved), spike_neighbours=0)  # no neighbour check (as before 2026-12-07)
    assert struck.spikes[0] == 5


def test_negative_days_count_as_no_demand() -> None:
    assert one([5.0, -3.0, 5.0, 5.0]).m7[0] == pytest.approx(15 / 4)


def test_float32_input_agrees_with_float64() -> None:
    rng = np.random.default_rng(11)
    y = rng.poisson(3, (50, 120)).astype(np.float64)
    a = forecast_batch(y, None, S)
    b = forecast_batch(y.astype(np.float32), None, S)
    np.testing.assert_allclose(a.rate, b.rate, rtol=1e-12)


def test_bad_input_is_refused_with_the_field() -> None:
    with pytest.raises(InvalidArgument, match="censored"):
        forecast_batch(np.zeros((2, 10)), np.zeros((2, 9), bool), S)
    with pytest.raises(InvalidArgument, match="demand"):
        forecast_batch(np.full((1, 5), np.nan), None, S)
    with pytest.raises(InvalidArgument, match="demand"):
        forecast_batch(np.zeros((1, 2, 3)), None, S)


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 120)), elements=st.integers(0, 50).map(float)),
    st.data(),
)
def test_batch_rows_equal_single_rows(demand: np.ndarray, data: st.DataObject) -> None:
    censored = data.draw(arrays(np.bool_, demand.shape))
    batch = forecast_batch(demand, censored, S)
    for i in range(demand.shape[0]):
        single = forecast_batch(demand[i : i + 1], censored[i : i + 1], S)
        for name in ("m7", "m14", "m30", "blend", "sigma", "sba", "tsb", "rate", "method", "sbc_class"):
            assert getattr(single, name)[0] == getattr(batch, name)[i] or (
                math.isnan(getattr(single, name)[0]) and math.isnan(getattr(batch, name)[i])
            ), name
        assert batch.rate[i] >= 0


def test_the_large_days_of_a_lumpy_series_are_kept() -> None:
    y = [0.0] * 120
    for i, size in zip(range(0, 120, 4), [1, 2, 1, 40, 1, 3, 2, 1, 50, 2] * 3, strict=False):
        y[i] = float(size)
    f = one(y)
    assert f.sbc_class[0] == SBC_LUMPY
    assert f.spikes[0] == 0  # on an intermittent series the rare large days are the demand


def test_the_parallel_kernel_agrees_with_the_serial_one() -> None:
    from engine.replenish.kernels import PARALLEL_MIN_ROWS

    rng = np.random.default_rng(21)
    rows = PARALLEL_MIN_ROWS + 44
    y = rng.poisson(rng.uniform(0.1, 20, (rows, 1)), (rows, 200)).astype(np.float32)
    cens = rng.random((rows, 200)) < 0.05
    batch = forecast_batch(y, cens, S)  # parallel
    for i in range(0, rows, 15):
        single = forecast_batch(y[i : i + 1], cens[i : i + 1], S)  # serial
        assert single.rate[0] == batch.rate[i]
        assert single.sigma[0] == batch.sigma[i]
        assert single.method[0] == batch.method[i]


def test_stationary_demand_takes_the_long_windows_level() -> None:
    rng = np.random.default_rng(3)
    y = rng.poisson(10.0, 120).astype(float)
    f = one(list(y), error_origins=0)  # the stationarity test alone (the competition scores below)
    assert f.stationary[0]
    assert f.estimator[0] == ESTIMATOR_STATIONARITY
    assert f.m_window[0] == pytest.approx(y[-90:].mean())
    assert f.rate[0] == f.level[0] == f.m_window[0]  # not the noisier 7/14/30 blend
    assert f.sigma[0] == pytest.approx(float(np.std(y[-90:], ddof=1)))
    off = one(list(y), stationary_z=0.0, error_origins=0)
    assert not off.stationary[0]
    assert off.rate[0] == pytest.approx(off.blend[0])


@pytest.mark.parametrize(
    ("last_days", "factor"),
    [(10, 1.8), (14, 0.5), (7, 3.0)],  # a level shift up, a drop, a promotion nobody announced
)
def test_a_level_that_moved_is_followed_by_the_blend(last_days: int, factor: float) -> None:
    rng = np.random.default_rng(4)
    base = rng.poisson(10.0, 120).astype(float)
    y = np.concatenate([base[: 120 - last_days], rng.poisson(10.0 * factor, last_days).astype(float)])
    f = one(list(y), promo=[False] * 120, strip_promo=False)
    assert not f.stationary[0]
    assert f.rate[0] == pytest.approx(f.blend[0])
    assert abs(f.rate[0] - 10.0 * factor) < abs(f.m_window[0] - 10.0 * factor)  # closer to the new level


def test_a_short_history_is_never_called_stationary() -> None:
    assert not one([10.0, 11.0, 9.0] * 15).stationary[0]  # 45 days: fewer than 60 in the window


def reference_errors(y: np.ndarray, risk: int, origins: int) -> tuple[float, float, int]:
    """The competition's scores in plain numpy, one origin at a time (no censored or spike days)."""

    def before(o: int, w: int) -> float:
        return float(y[max(0, o - w) : o].mean())

    eb, ew, used = 0.0, 0.0, 0
    for o in range(max(30, len(y) - risk - origins + 1), len(y) - risk + 1):
        actual = float(y[o : o + risk].sum())
        blend = 0.5 * before(o, 7) + 0.3 * before(o, 14) + 0.2 * before(o, 30)
        eb += (actual - blend * risk) ** 2
        ew += (actual - before(o, 90) * risk) ** 2
        used += 1
    return math.sqrt(eb / used), math.sqrt(ew / used), used


@pytest.mark.parametrize("risk", [2, 8, 15])
def test_the_competitions_scores_match_a_plain_reference(risk: int) -> None:
    y = np.random.default_rng(5).poisson(6.0, 200).astype(float)
    f = forecast_batch(y[None, :], None, PolicySettings(spike_k=100.0), risk_days=risk)
    blend, window, used = reference_errors(y, risk, 90)
    assert f.error_origins[0] == used == 90
    assert f.error_blend[0] == pytest.approx(blend)
    assert f.error_window[0] == pytest.approx(window)


def test_steady_demand_keeps_the_window_mean_and_its_error_is_the_spread() -> None:
    y = np.random.default_rng(6).poisson(10.0, 200).astype(float)
    f = forecast_batch(y[None, :], None, PolicySettings(spike_k=100.0), risk_days=8)
    assert f.error_window[0] < f.error_blend[0]  # the blend's short windows add noise, no signal
    assert f.estimator[0] == ESTIMATOR_WINDOW
    assert f.rate[0] == f.m_window[0]
    assert f.sigma[0] == pytest.approx(f.error_window[0] / math.sqrt(8))  # per √day: P·σ² = MSE
    assert f.daily_sigma[0] == pytest.approx(float(np.std(y[-90:], ddof=1)))


def test_a_trend_is_followed_by_the_blend_and_its_lag_is_in_the_spread() -> None:
    y = 5.0 + 0.1 * np.arange(200.0)  # no noise at all: daily σ knows nothing of the lag
    f = forecast_batch(y[None, :], None, PolicySettings(spike_k=100.0), risk_days=8)
    assert f.error_blend[0] < f.error_window[0]
    assert f.estimator[0] == ESTIMATOR_BLEND
    assert f.rate[0] == pytest.approx(f.blend[0])
    assert f.sigma[0] == pytest.approx(f.error_blend[0] / math.sqrt(8))
    assert f.sigma[0] > 0.5  # the blend lags the trend by days: the risk period's forecast errs by that


def test_with_too_few_scored_origins_the_stationarity_test_decides() -> None:
    y = np.random.default_rng(7).poisson(10.0, 100).astype(float)  # origins 30…92: 63 scored
    f = forecast_batch(y[None, :], None, PolicySettings(error_min_origins=64), risk_days=8)
    assert f.error_origins[0] == 63
    assert f.estimator[0] == ESTIMATOR_STATIONARITY
    assert f.sigma[0] == f.daily_sigma[0]
    off = forecast_batch(y[None, :], None, PolicySettings(error_origins=0), risk_days=8)
    assert off.error_origins[0] == 0
    assert off.estimator[0] == ESTIMATOR_STATIONARITY


def test_a_stockout_inside_a_risk_period_is_not_scored_as_zero_demand() -> None:
    y = np.random.default_rng(8).poisson(10.0, 200).astype(float)
    censored = np.zeros(200, bool)
    censored[150:154] = True
    hidden = y.copy()
    hidden[150:154] = 0.0  # what the shelf recorded: nothing sold, because nothing was there
    f = forecast_batch(hidden[None, :], censored[None, :], PolicySettings(spike_k=100.0), risk_days=8)
    seen = forecast_batch(y[None, :], None, PolicySettings(spike_k=100.0), risk_days=8)
    assert f.error_window[0] < seen.error_window[0] * 1.25  # not the 40-unit misses zeros would make


def test_risk_days_and_error_origins_are_bounded() -> None:
    with pytest.raises(InvalidArgument) as e:
        forecast_batch(np.ones((1, 100)), None, S, risk_days=0)
    assert "risk_days" in str(e.value)
    with pytest.raises(InvalidArgument):
        PolicySettings(error_origins=366)
    with pytest.raises(InvalidArgument):
        PolicySettings(error_min_origins=0)
