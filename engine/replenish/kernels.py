"""numba kernels: every demand estimate of many (sku, site) pairs in one parallel pass.

One row = one pair's daily net demand, oldest → newest (last column = yesterday). A day counts
("valid") unless it is censored (a stockout), a promotion day (when promotions are stripped) or a
spike (a non-zero day above mean + k·σ of the recent non-zero sizes that also stands k·σ above
the days around it: a level that moved is not a spike). Over the valid days:

- m7 / m14 / m30: means over the valid days among the last 7 / 14 / 30 calendar days. A window
  without a valid day takes the next longer window's mean (m7 ← m14 ← m30 ← the SBC window's
  mean ← the whole history's ← 0): a week of stockout says nothing about the level, the month
  still does; a stockout longer than the SBC window leaves only the older history (SBC over it too).
- σ: sample standard deviation over the last 30 calendar days' valid days (the SBC window when
  fewer than 2 are valid there).
- stationarity: when each of m7, m14 and m30 lies within `stationary_z` standard errors of the
  SBC window's mean (σ_w·√(1/n_k − 1/n_w), σ_w over that window), nothing in the last month says
  the level moved; the level is then the window's mean and σ the window's σ (three times the
  days: a steadier level and spread than the 7/14/30 blend, which stays for series that moved —
  a promotion's after-effect, a level shift, a trend). `stationary_z` 0 turns this off.
- SBC (Syntetos-Boylan-Croston) over the last `sbc_window` days: ADI = valid days / non-zero
  days; CV² = population variance / mean² of the non-zero sizes.
- Croston / SBA / TSB over the whole valid history (censored days dropped, not zero-filled),
  initialised as statsforecast does: size = first non-zero size, first interval = its index + 1,
  TSB probability = (first day ≠ 0); SBA = Croston × (1 − α/2).
- a same-period-last-year index once the history is long enough: the mean of last year's days
  over the coming horizon divided by the mean of last year's days the level was measured over
  (90 when stationary, else 30), clamped; 1 when the change is within `seasonal_z` standard errors.

`forecast_batch` (Python) allocates the outputs, runs the kernel and returns a `BatchForecast`;
`policy.suggest` calls the same function with one row, so single and batch paths cannot drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit, prange

from engine.domain.errors import FieldViolation, InvalidArgument
from engine.replenish.model import PolicySettings

# Method and SBC class codes in the kernel's int8 outputs; names in model.Method / model.SbcClass.
METHOD_NONE, METHOD_SMOOTH, METHOD_SBA, METHOD_TSB = 0, 1, 2, 3
METHOD_NAMES = ("none", "smooth", "sba", "tsb")
SBC_NO_DEMAND, SBC_SMOOTH, SBC_ERRATIC, SBC_INTERMITTENT, SBC_LUMPY = 0, 1, 2, 3, 4
SBC_NAMES = ("no_demand", "smooth", "erratic", "intermittent", "lumpy")
# which smooth level is used: the stationarity test (too few forecast origins to compare), or the
# estimator whose risk-period forecasts erred less (the blend or the SBC window's mean)
ESTIMATOR_STATIONARITY, ESTIMATOR_BLEND, ESTIMATOR_WINDOW = 0, 1, 2
ESTIMATOR_NAMES = ("stationarity", "blend", "window")

YEAR_DAYS = 365
MAX_BATCH_DAYS = 800  # a bound on the columns one call reads (model.MAX_HISTORY_DAYS)
DEFAULT_RISK_DAYS = 7  # the lead time assumed when the caller passes no risk period (risk = this + R)
SPIKE_MIN_NONZERO = 5  # fewer non-zero days than this: no spike can be told from normal demand


@dataclass(frozen=True, slots=True, eq=False)
class BatchForecast:
    """The kernel's outputs, one entry per pair (row of the input)."""

    m7: npt.NDArray[np.float64]
    m14: npt.NDArray[np.float64]
    m30: npt.NDArray[np.float64]
    blend: npt.NDArray[np.float64]
    sigma: npt.NDArray[np.float64]  # per √day, what SS uses: the risk-period error's when measured
    adi: npt.NDArray[np.float64]  # inf when there is no non-zero day
    cv2: npt.NDArray[np.float64]
    croston: npt.NDArray[np.float64]
    sba: npt.NDArray[np.float64]
    tsb: npt.NDArray[np.float64]
    seasonal_index: npt.NDArray[np.float64]
    rate: npt.NDArray[np.float64]  # the chosen method's daily rate × seasonal index
    level: npt.NDArray[np.float64]  # the smooth level: the window's mean when stationary, else the blend
    m_window: npt.NDArray[np.float64]  # mean of the valid days of the SBC window (90 days)
    stationary: npt.NDArray[np.bool_]  # the short windows agree with the SBC window's mean
    sbc_class: npt.NDArray[np.int8]
    method: npt.NDArray[np.int8]
    valid_days: npt.NDArray[np.int32]  # uncensored, non-promo, non-spike days in the history
    spikes: npt.NDArray[np.int32]
    trailing_zeros: npt.NDArray[np.int32]  # valid zero days since the last non-zero one
    # the forecast competition over the risk period (`risk_days` summed): RMSE of the blend's and of
    # the window mean's forecasts over the last origins, how many origins, which estimator won
    error_blend: npt.NDArray[np.float64]
    error_window: npt.NDArray[np.float64]
    error_origins: npt.NDArray[np.int32]
    estimator: npt.NDArray[np.int8]  # ESTIMATOR_*: 0 = the stationarity test decided (too few origins)
    daily_sigma: npt.NDArray[np.float64]  # σ of daily demand (30 days, or the window when stationary)

    def __len__(self) -> int:
        return len(self.rate)

    def subset(self, index: npt.NDArray[np.integer] | slice) -> BatchForecast:
        """The same estimates for some pairs only (rows selected by `index`)."""
        return BatchForecast(**{name: getattr(self, name)[index] for name in self.__dataclass_fields__})

    def method_name(self, i: int) -> str:
        return METHOD_NAMES[int(self.method[i])]

    def sbc_name(self, i: int) -> str:
        return SBC_NAMES[int(self.sbc_class[i])]


Vec = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


@njit(cache=True)
def _window_mean(y: Vec, valid: Mask, n: int, w: int) -> tuple[float, int]:
    """Mean and count of the valid days among the `w` days before column `n` (NaN when none)."""
    total = 0.0
    count = 0
    for j in range(max(0, n - w), n):
        if valid[j]:
            total += y[j]
            count += 1
    return (total / count if count else math.nan), count


@njit(cache=True)
def _nonzero_moments(y: Vec, valid: Mask, lo: int, n: int) -> tuple[int, float, float]:
    """Count, sum and sum of squares of the valid non-zero days in [lo, n)."""
    nz = 0
    s1 = 0.0
    s2 = 0.0
    for j in range(lo, n):
        if valid[j] and y[j] > 0:
            s1 += y[j]
            s2 += y[j] * y[j]
            nz += 1
    return nz, s1, s2


@njit(cache=True)
def _neighbours_mean(y: Vec, valid: Mask, j: int, days: int) -> float:
    """Mean of the valid days within `days` of column j, j itself left out (NaN when none); a day
    already struck as a spike (negative, see `_strip_spikes`) counts with its value."""
    total = 0.0
    count = 0
    for i in range(max(0, j - days), min(len(y), j + days + 1)):
        if i != j and (valid[i] or y[i] < 0):
            total += abs(y[i])
            count += 1
    return total / count if count else math.nan


@njit(cache=True)
def _strip_spikes(y: Vec, valid: Mask, lo: int, spike_k: float, neighbours: int) -> int:
    """Marks invalid every non-zero day above mean + k·σ of the recent non-zero sizes that also
    stands out from its own neighbours (the valid days within `neighbours` days either side) by
    k·σ; returns how many.

    Sizes, not all days: on an intermittent series every sale would be a "spike" of the daily mean.
    Neighbours: a sudden order lifts one day, a level that moved lifts the days around it too —
    striking those would hold the level down exactly when demand rose (`neighbours` 0: no check)."""
    n = len(y)
    nz, s1, s2 = _nonzero_moments(y, valid, lo, n)
    if nz < SPIKE_MIN_NONZERO:
        return 0
    mu = s1 / nz
    sd = math.sqrt(max(s2 / nz - mu * mu, 0.0))
    if sd <= 0:
        return 0
    limit = mu + spike_k * sd
    spikes = 0
    for j in range(n):
        if valid[j] and y[j] > limit:
            if neighbours > 0:
                around = _neighbours_mean(y, valid, j, neighbours)
                if not math.isnan(around) and y[j] <= around + spike_k * sd:
                    continue
            # struck, and marked negative (days are ≥ 0 here) so that a later neighbour's check
            # still counts it: no spike hides its neighbour. Every reader skips invalid days.
            y[j] = -y[j]
            valid[j] = False
            spikes += 1
    return spikes


@njit(cache=True)
def _sigma(y: Vec, valid: Mask, lo: int, mean: float, count: int) -> float:
    """Sample standard deviation of the valid days in [lo, n) around `mean` (0 with fewer than 2)."""
    if count < 2:
        return 0.0
    acc = 0.0
    for j in range(max(lo, 0), len(y)):
        if valid[j]:
            acc += (y[j] - mean) ** 2
    return math.sqrt(acc / (count - 1))


@njit(cache=True)
def _croston_tsb(y: Vec, valid: Mask, alpha: float) -> tuple[float, float, int, int]:
    """(Croston, TSB, valid days, trailing zero days) over the valid days, statsforecast's initialisation."""
    pos = 0
    last_pos = -1
    size = 0.0
    interval = 0.0
    prob = 0.0
    trailing = 0
    for j in range(len(y)):
        if not valid[j]:
            continue
        hit = 1.0 if y[j] > 0 else 0.0
        prob = hit if pos == 0 else prob + alpha * (hit - prob)
        if hit:
            if last_pos < 0:
                size = y[j]
                interval = pos + 1.0
            else:
                size += alpha * (y[j] - size)
                interval += alpha * ((pos - last_pos) - interval)
            last_pos = pos
            trailing = 0
        else:
            trailing += 1
        pos += 1
    if last_pos < 0:
        return 0.0, 0.0, pos, trailing
    return (size / interval if interval != 0 else size), prob * size, pos, trailing


@njit(cache=True)
def _window_var(y: Vec, valid: Mask, n: int, w: int, mean: float) -> float:
    """Sample variance of the valid days among the `w` days before column `n` (0 with fewer than 2)."""
    acc = 0.0
    count = 0
    for j in range(max(0, n - w), n):
        if valid[j]:
            acc += (y[j] - mean) ** 2
            count += 1
    return acc / (count - 1) if count >= 2 else 0.0


@njit(cache=True)
def _seasonal_index(
    y: Vec, valid: Mask, days: int, min_days: int, lo: float, hi: float, ref_days: int, z: float
) -> float:
    """Last year's mean over the coming `days` ÷ last year's mean over the `ref_days` before, clamped.

    `ref_days` is the window the level was measured over (90 days when stationary, else 30), so
    the index carries the level from where it was measured to the coming days. A change no
    larger than `z` standard errors of the two means (a day's variance at least its mean, as for
    counts) is noise, not a season: the index is then 1 (z 0: every change counts)."""
    n = len(y)
    if n < min_days or days <= 0:
        return 1.0
    ly = n - YEAR_DAYS  # tomorrow is column n; the same day a year earlier is column n − 365
    end = min(n, ly + days)
    ahead, ca = _window_mean(y, valid, end, end - ly)
    before, cb = _window_mean(y, valid, ly, ref_days)
    if ca == 0 or cb == 0 or before <= 0:
        return 1.0
    if z > 0:
        va = max(_window_var(y, valid, end, end - ly, ahead), ahead)
        vb = max(_window_var(y, valid, ly, ref_days, before), before)
        if abs(ahead - before) <= z * math.sqrt(va / ca + vb / cb):
            return 1.0
    return min(max(ahead / before, lo), hi)


@njit(cache=True)
def _stationary(
    means: tuple[float, float, float], counts: tuple[int, int, int], mw: float, cw: int, sigma_w: float, z: float
) -> bool:
    """Whether m7, m14 and m30 each lie within z standard errors of the window's mean (nested windows:
    Var(m_k − m_w) = σ²·(1/n_k − 1/n_w)); a month without valid days says nothing either way."""
    if z <= 0 or cw < 60 or counts[2] < 14:
        return False
    for k in range(3):
        ck = counts[k]
        if ck == 0 or ck >= cw:
            continue
        se = sigma_w * math.sqrt(1.0 / ck - 1.0 / cw)
        if abs(means[k] - mw) > z * se + 1e-12:
            return False
    return True


@njit(cache=True)
def _prefix(y: Vec, valid: Mask) -> tuple[Vec, npt.NDArray[np.int64]]:
    """Running sums of the valid days' demand and of their count: any window's mean in O(1)."""
    n = len(y)
    total = np.zeros(n + 1, np.float64)
    count = np.zeros(n + 1, np.int64)
    for j in range(n):
        total[j + 1] = total[j] + (y[j] if valid[j] else 0.0)
        count[j + 1] = count[j] + (1 if valid[j] else 0)
    return total, count


@njit(cache=True)
def _mean_before(total: Vec, count: npt.NDArray[np.int64], o: int, w: int, fallback: float) -> float:
    """Mean of the valid days among the `w` days before column `o` (`fallback` when none)."""
    lo = max(0, o - w)
    c = count[o] - count[lo]
    return (total[o] - total[lo]) / c if c else fallback


@njit(cache=True)
def _risk_errors(y: Vec, valid: Mask, risk: int, origins: int, params: Vec) -> tuple[float, float, int]:
    """Mean squared out-of-sample errors of the risk period's demand (`risk` days summed) forecast by
    the 7/14/30 blend and by the SBC window's mean, over the last `origins` forecast origins whose
    risk period is already over: (MSE blend, MSE window, origins used).

    Each origin o forecasts from the days before o only, as the policy would have on that day, and
    is compared with what the `risk` days from o sold (the valid days' mean × `risk`: a stockout
    or promotion day inside the period is not a zero). This is the forecast competition per series
    and, at once, the spread the safety stock must cover at the aggregation it covers: daily σ·√P
    misses both the level's own error and demand that comes in runs (a month's rate)."""
    n = len(y)
    if risk <= 0 or origins <= 0:
        return 0.0, 0.0, 0
    total, count = _prefix(y, valid)
    window = int(params[5])
    eb = 0.0
    ew = 0.0
    used = 0
    for o in range(max(30, n - risk - origins + 1), n - risk + 1):
        c = count[o + risk] - count[o]
        cw = count[o] - count[max(0, o - window)]
        if c == 0 or cw == 0:
            continue
        actual = (total[o + risk] - total[o]) / c * risk
        mw = _mean_before(total, count, o, window, 0.0)
        m30 = _mean_before(total, count, o, 30, mw)
        m14 = _mean_before(total, count, o, 14, m30)
        m7 = _mean_before(total, count, o, 7, m14)
        blend = params[0] * m7 + params[1] * m14 + params[2] * m30
        eb += (actual - blend * risk) ** 2
        ew += (actual - mw * risk) ** 2
        used += 1
    if used == 0:
        return 0.0, 0.0, 0
    return eb / used, ew / used, used


@njit(cache=True)
def stationary_z_ok(params: Vec) -> bool:
    """Whether the stationarity test is on (`stationary_z` > 0)."""
    return params[12] > 0


@njit(cache=True)
def _classify(nz: int, adi: float, cv2: float, adi_thr: float, cv2_thr: float) -> int:
    if nz == 0:
        return SBC_NO_DEMAND
    if adi <= adi_thr:
        return SBC_SMOOTH if cv2 <= cv2_thr else SBC_ERRATIC
    return SBC_INTERMITTENT if cv2 <= cv2_thr else SBC_LUMPY


@njit(cache=True)
def _row(y: Vec, valid: Mask, params: Vec, si_days: int, risk: int, out: Vec) -> None:
    """Every estimate for one row; `valid` arrives as not-censored-and-not-promo, spikes are struck here.

    params: w7, w14, w30, alpha, spike_k, sbc_window, adi_thr, cv2_thr, si_min_days, si_lo, si_hi, tsb_after_adi,
    stationary_z, seasonal_z, seasonal_matches_level, spike_neighbours, error_origins, error_min_origins,
    moves_override_scores.
    out: m7 m14 m30 blend sigma adi cv2 croston sba tsb si rate sbc method valid spikes trailing_zeros
    level m_window stationary error_blend error_window error_origins estimator daily_sigma.
    """
    n = len(y)
    alpha, sbc_window = params[3], int(params[5])
    start = max(0, n - sbc_window)
    # Spikes are struck only from series that sell on most days: on an intermittent or lumpy
    # series the rare large days are the demand itself, and striking them would starve it.
    nz0, _, _ = _nonzero_moments(y, valid, start, n)
    _, cw0 = _window_mean(y, valid, n, sbc_window)
    spikes = _strip_spikes(y, valid, start, params[4], int(params[15])) if nz0 and cw0 / nz0 <= params[6] else 0

    # windows; an empty one takes the next longer one's mean
    m30, c30 = _window_mean(y, valid, n, 30)
    m14, c14 = _window_mean(y, valid, n, 14)
    m7, c7 = _window_mean(y, valid, n, 7)
    mw, cw = _window_mean(y, valid, n, sbc_window)
    if cw == 0:  # a stockout longer than the window: the older history is all there is to go on
        start = 0
        mw, cw = _window_mean(y, valid, n, n)
    mw = mw if cw else 0.0
    m30 = m30 if c30 else mw
    m14 = m14 if c14 else m30
    m7 = m7 if c7 else m14
    blend = params[0] * m7 + params[1] * m14 + params[2] * m30
    sigma_w = _sigma(y, valid, start, mw, cw)
    sigma = _sigma(y, valid, n - 30, m30, c30) if c30 >= 2 else sigma_w
    daily_sigma = sigma
    stationary = _stationary((m7, m14, m30), (c7, c14, c30), mw, cw, sigma_w, params[12])
    level = mw if stationary else blend
    if stationary:
        sigma = sigma_w
        daily_sigma = sigma_w
    # the forecast competition: with enough origins, the estimator whose risk-period forecasts erred
    # less is used, and its error is the spread (per √day, so that P·σ² is the error's variance)
    err_b, err_w, origins = _risk_errors(y, valid, risk, int(params[16]), params)
    chosen = ESTIMATOR_STATIONARITY
    if origins >= max(int(params[17]), 1):
        chosen = ESTIMATOR_WINDOW if err_w <= err_b else ESTIMATOR_BLEND
        # past scores cannot see a move newer than the last scored risk period: when the recent
        # windows say the level moved (the stationarity test fails), the blend follows it now
        if params[18] > 0 and stationary_z_ok(params) and not stationary:
            chosen = ESTIMATOR_BLEND
        stationary = chosen == ESTIMATOR_WINDOW
        level = mw if stationary else blend

    nz, s1, s2 = _nonzero_moments(y, valid, start, n)
    adi = cw / nz if nz else math.inf
    cv2 = 0.0
    if nz:
        mu = s1 / nz
        cv2 = max(s2 / nz - mu * mu, 0.0) / (mu * mu)
    croston, tsb, valid_days, trailing = _croston_tsb(y, valid, alpha)
    sba = croston * (1.0 - alpha / 2.0)
    si_ref = sbc_window if (stationary and params[14] > 0) else 30
    si = _seasonal_index(y, valid, si_days, int(params[8]), params[9], params[10], si_ref, params[13])

    sbc = _classify(nz, adi, cv2, params[6], params[7])
    if sbc == SBC_NO_DEMAND:
        method, rate = METHOD_NONE, 0.0
    elif sbc == SBC_SMOOTH:
        method, rate = METHOD_SMOOTH, level
        if chosen != ESTIMATOR_STATIONARITY:  # the spread of the chosen forecast's own errors
            sigma = math.sqrt((err_w if chosen == ESTIMATOR_WINDOW else err_b) / risk)
    elif trailing > params[11] * adi:  # a long silence: TSB's probability decays, SBA would not
        method, rate = METHOD_TSB, tsb
    else:
        method, rate = METHOD_SBA, sba
    out[0], out[1], out[2], out[3], out[4] = m7, m14, m30, blend, sigma
    out[5], out[6], out[7], out[8], out[9] = adi, cv2, croston, sba, tsb
    out[10], out[11], out[12], out[13] = si, rate * si, sbc, method
    out[14], out[15], out[16] = valid_days, spikes, trailing
    out[17], out[18], out[19] = level, mw, 1.0 if stationary else 0.0
    out[20], out[21], out[22] = math.sqrt(err_b), math.sqrt(err_w), origins
    out[23], out[24] = chosen, daily_sigma


N_OUT = 25


@njit(cache=True)
def _one(
    demand: npt.NDArray[np.floating],
    censored: npt.NDArray[np.bool_],
    promo: npt.NDArray[np.bool_],
    strip_promo: bool,
    params: Vec,
    si_days: npt.NDArray[np.int32],
    risk_days: npt.NDArray[np.int32],
    out: npt.NDArray[np.float64],
    i: int,
) -> None:
    n = demand.shape[1]
    y = np.empty(n, np.float64)
    valid = np.empty(n, np.bool_)
    for j in range(n):
        v = float(demand[i, j])
        y[j] = v if v > 0 else 0.0  # a day of net returns is a day without demand
        valid[j] = not censored[i, j] and not (strip_promo and promo[i, j])
    _row(y, valid, params, si_days[i], risk_days[i], out[i])


@njit(cache=True, parallel=True)
def _kernel(
    demand: npt.NDArray[np.floating],
    censored: npt.NDArray[np.bool_],
    promo: npt.NDArray[np.bool_],
    strip_promo: bool,
    params: Vec,
    si_days: npt.NDArray[np.int32],
    risk_days: npt.NDArray[np.int32],
    out: npt.NDArray[np.float64],
) -> None:
    for i in prange(demand.shape[0]):
        _one(demand, censored, promo, strip_promo, params, si_days, risk_days, out, i)


@njit(cache=True)
def _kernel_serial(
    demand: npt.NDArray[np.floating],
    censored: npt.NDArray[np.bool_],
    promo: npt.NDArray[np.bool_],
    strip_promo: bool,
    params: Vec,
    si_days: npt.NDArray[np.int32],
    risk_days: npt.NDArray[np.int32],
    out: npt.NDArray[np.float64],
) -> None:
    """The same rows one after another: for a few pairs, waking the thread pool costs more than it saves
    (and on a busy machine it waits for every worker thread to get a core)."""
    for i in range(demand.shape[0]):
        _one(demand, censored, promo, strip_promo, params, si_days, risk_days, out, i)


PARALLEL_MIN_ROWS = 256


def kernel_params(settings: PolicySettings) -> npt.NDArray[np.float64]:
    w7, w14, w30 = settings.weights
    lo, hi = settings.seasonal_bounds
    return np.array(
        [
            w7,
            w14,
            w30,
            settings.alpha,
            settings.spike_k,
            settings.sbc_window_days,
            settings.adi_threshold,
            settings.cv2_threshold,
            settings.seasonal_min_days,
            lo,
            hi,
            settings.tsb_after_adi,
            settings.stationary_z,
            settings.seasonal_z,
            1.0 if settings.seasonal_matches_level else 0.0,
            settings.spike_neighbours,
            settings.error_origins,
            settings.error_min_origins,
            1.0 if settings.moves_override_scores else 0.0,
        ],
        dtype=np.float64,
    )


def _as_2d(name: str, value: npt.ArrayLike, out: list[FieldViolation]) -> npt.NDArray[np.generic]:
    arr = np.asarray(value)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2:
        out.append(FieldViolation(name, f"must be a [pairs, days] array, got {arr.ndim} dimensions"))
    return arr


def forecast_batch(
    demand: npt.ArrayLike,
    censored: npt.ArrayLike | None,
    settings: PolicySettings,
    promo: npt.ArrayLike | None = None,
    seasonal_days: npt.ArrayLike | int | None = None,
    risk_days: npt.ArrayLike | int | None = None,
) -> BatchForecast:
    """Every estimate for `demand[pairs, days]` (float32 or float64, last column = yesterday).

    `censored` / `promo` are boolean masks of the same shape (None = all False). `seasonal_days`
    is, per pair or for all, how many coming days the same-period-last-year index looks at
    (the policy passes ⌈L̄⌉ + R + C); default review + horizon days.
    """
    out_v: list[FieldViolation] = []
    d = _as_2d("demand", demand, out_v)
    if out_v:
        raise InvalidArgument(out_v)
    if d.dtype not in (np.float32, np.float64):
        if not np.issubdtype(d.dtype, np.number) or d.dtype == np.bool_:
            raise InvalidArgument((FieldViolation("demand", f"must be numeric, got {d.dtype}"),))
        d = d.astype(np.float64)
    rows, days = d.shape
    if days > MAX_BATCH_DAYS:
        out_v.append(FieldViolation("demand", f"at most {MAX_BATCH_DAYS} days per pair, got {days}"))
    masks: list[npt.NDArray[np.bool_]] = []
    for name, mask in (("censored", censored), ("promo", promo)):
        m = np.zeros((rows, days), np.bool_) if mask is None else _as_2d(name, mask, out_v)
        if m.shape != (rows, days) or m.dtype != np.bool_:
            out_v.append(FieldViolation(name, f"must be a boolean array of shape {(rows, days)}"))
        masks.append(m.astype(np.bool_, copy=False))
    default_days = settings.review_days + settings.horizon_days
    si = np.broadcast_to(np.asarray(default_days if seasonal_days is None else seasonal_days), (rows,))
    if np.any(si < 0):
        out_v.append(FieldViolation("seasonal_days", "must be ≥ 0"))
    default_risk = DEFAULT_RISK_DAYS + settings.review_days
    risk = np.broadcast_to(np.asarray(default_risk if risk_days is None else risk_days), (rows,))
    if np.any(risk < 1):
        out_v.append(FieldViolation("risk_days", "must be ≥ 1"))
    if out_v:
        raise InvalidArgument(out_v)
    if not np.all(np.isfinite(d)):
        raise InvalidArgument((FieldViolation("demand", "every day must be a finite number"),))
    out = np.empty((rows, N_OUT), np.float64)
    kernel = _kernel if rows >= PARALLEL_MIN_ROWS else _kernel_serial
    kernel(
        np.ascontiguousarray(d),
        np.ascontiguousarray(masks[0]),
        np.ascontiguousarray(masks[1]),
        settings.strip_promo,
        kernel_params(settings),
        np.ascontiguousarray(si, dtype=np.int32),
        np.ascontiguousarray(risk, dtype=np.int32),
        out,
    )
    return BatchForecast(
        m7=out[:, 0].copy(),
        m14=out[:, 1].copy(),
        m30=out[:, 2].copy(),
        blend=out[:, 3].copy(),
        sigma=out[:, 4].copy(),
        adi=out[:, 5].copy(),
        cv2=out[:, 6].copy(),
        croston=out[:, 7].copy(),
        sba=out[:, 8].copy(),
        tsb=out[:, 9].copy(),
        seasonal_index=out[:, 10].copy(),
        rate=out[:, 11].copy(),
        sbc_class=out[:, 12].astype(np.int8),
        method=out[:, 13].astype(np.int8),
        valid_days=out[:, 14].astype(np.int32),
        spikes=out[:, 15].astype(np.int32),
        trailing_zeros=out[:, 16].astype(np.int32),
        level=out[:, 17].copy(),
        m_window=out[:, 18].copy(),
        stationary=out[:, 19] > 0.5,
        error_blend=out[:, 20].copy(),
        error_window=out[:, 21].copy(),
        error_origins=out[:, 22].astype(np.int32),
        estimator=out[:, 23].astype(np.int8),
        daily_sigma=out[:, 24].copy(),
    )
