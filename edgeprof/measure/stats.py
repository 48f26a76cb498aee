"""Statistics of timing samples: order-statistic confidence intervals of the median, paired ratios, noise.

The 95% confidence interval of a median is distribution-free: with n samples sorted, the interval
[x_(l), x_(n-l+1)] covers the true median with probability 1 - 2*P(Binomial(n, 1/2) <= l-1), so we take
the largest l that keeps that probability at or above 95% (exact binomial from scipy.stats, no normal approximation).
Ratios to a baseline use the same interval on the paired log-ratios of samples taken in the same round.
Measured in several fresh worker processes (sessions), the interval is widened by the spread between sessions
(``session_interval``); ``distinct_levels`` tells a host whose per-round medians fall into separate levels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

NOISY_IQR_FRACTION = 0.10


@lru_cache(maxsize=4096)
def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """0-based ranks (lo, hi) of the order statistics bounding the median's CI, or None if n is too small."""
    from scipy import stats

    if n < 1:
        return None
    alpha_half = (1.0 - confidence) / 2.0
    # the largest l with P(B <= l - 1) <= alpha/2 for B ~ Binomial(n, 1/2)
    k = int(stats.binom.ppf(alpha_half, n, 0.5))  # smallest k with P(B <= k) >= alpha/2
    best = k + 1 if stats.binom.cdf(k, n, 0.5) <= alpha_half else k
    if best < 1:
        return None
    lo = best - 1  # x_(l) with 1-based l
    hi = n - best  # x_(n - l + 1), 0-based
    return lo, hi


def median_ci(samples, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median; (nan, nan) when there are too few samples (n < 6 at 95%)."""
    x = np.sort(np.asarray(samples, dtype=float))
    ranks = median_ci_ranks(len(x), confidence)
    if ranks is None:
        return (math.nan, math.nan)
    return float(x[ranks[0]]), float(x[ranks[1]])


def relative_halfwidth(median: float, lo: float, hi: float) -> float:
    """The larger distance from the median to a CI bound, as a fraction of the median."""
    if not (median > 0) or math.isnan(lo) or math.isnan(hi):
        return math.inf
    return max(median - lo, hi - median) / median


def summarize(samples_ms) -> dict:
    """Median, mean, std, min, p90, p99, IQR, n, CI bounds, relative CI half-width and the noisy flag."""
    x = np.asarray(samples_ms, dtype=float)
    n = int(x.size)
    if n == 0:
        keys = ("median_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "p90_ms", "p99_ms", "iqr_ms",
                "ci95_low_ms", "ci95_high_ms", "rel_ci")
        return {**{k: math.nan for k in keys}, "n": 0, "noisy": False}
    median = float(np.median(x))
    q1, q3 = np.percentile(x, [25, 75])
    lo, hi = median_ci(x)
    iqr = float(q3 - q1)
    return {
        "median_ms": median,
        "mean_ms": float(x.mean()),
        "std_ms": float(x.std(ddof=1)) if n > 1 else math.nan,
        "min_ms": float(x.min()),
        "max_ms": float(x.max()),
        "p90_ms": float(np.percentile(x, 90)),
        "p99_ms": float(np.percentile(x, 99)),
        "iqr_ms": iqr,
        "n": n,
        "ci95_low_ms": lo,
        "ci95_high_ms": hi,
        "rel_ci": relative_halfwidth(median, lo, hi),
        "noisy": bool(median > 0 and iqr / median > NOISY_IQR_FRACTION),
    }


def paired_ratio(current, baseline) -> tuple[float, float, float]:
    """Median of paired ratios current_i / baseline_i with its 95% CI, from log-ratios.

    The pairs are samples taken in the same interleaved round, so drift of the machine between
    rounds cancels. Returns (ratio, lo, hi); lo/hi are nan with fewer than 6 pairs.
    """
    c = np.asarray(current, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if c.shape != b.shape or c.size == 0:
        raise ValueError("paired_ratio needs two equally long, non-empty sample lists")
    logs = np.log(c) - np.log(b)
    lo, hi = median_ci(logs)
    return float(np.exp(np.median(logs))), float(np.exp(lo)), float(np.exp(hi))


# -- sessions: per-process offsets ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SessionCI:
    """A median (of log values, given back on the original scale) with its 95% CI over several sessions.

    ``within`` and ``between`` are the two parts of the CI's half-width on the log scale (round-to-round noise;
    offsets of whole sessions), ``between_share`` the share of one round's variance that lies between sessions
    (nan with one session), ``sessions`` and ``n`` how many sessions and values it was computed from.
    """

    value: float
    lo: float
    hi: float
    within: float
    between: float
    between_share: float
    sessions: int
    n: int

    @property
    def rel_halfwidth(self) -> float:
        """The larger distance from the value to a bound, as a fraction of the value (inf when unknown)."""
        return relative_halfwidth(self.value, self.lo, self.hi)


@dataclass(frozen=True)
class BetweenEstimate:
    """The variance of the session offsets on the log scale (raw: it may be negative when the sessions agree better
    than their rounds' noise predicts) with its degrees of freedom; pooled over several targets by ``pool``."""

    var: float
    df: int

    @staticmethod
    def pool(estimates) -> BetweenEstimate | None:
        """The degrees-of-freedom-weighted mean of several estimates (None when none has a degree of freedom)."""
        usable = [e for e in estimates if e is not None and e.df > 0 and math.isfinite(e.var)]
        df = sum(e.df for e in usable)
        if df == 0:
            return None
        return BetweenEstimate(sum(e.var * e.df for e in usable) / df, df)


def _session_parts(arrays: list[np.ndarray], confidence: float):
    """(center, d_lo, d_hi, within, between estimate or None, round variance) of log values grouped by session."""
    values = np.concatenate(arrays)
    center = float(np.median(values))
    medians = np.array([np.median(a) for a in arrays])
    deviations = np.concatenate([a - m for a, m in zip(arrays, medians, strict=True)])
    lo_d, hi_d = median_ci(deviations, confidence)  # with one session: median_ci(values) - center
    if math.isnan(lo_d):
        return center, math.nan, math.nan, math.inf, None, math.nan
    mid = float(np.median(deviations))
    d_lo, d_hi = mid - lo_d, hi_d - mid
    within = max(d_lo, d_hi)
    from scipy import stats

    z = float(stats.norm.ppf(0.5 + confidence / 2))
    n = values.size
    per_value = (within / z) ** 2 * n  # variance of the median of k values ~ per_value / k (all sessions pooled)
    var_round = per_value * 2 / math.pi  # the median of k values has ~ (pi/2) sigma^2 / k
    if len(arrays) < 2:
        return center, d_lo, d_hi, within, None, var_round
    # what each session's own round-to-round noise puts into its median: that session's robust spread (MAD), so a
    # session of a few noisy rounds and one of many quiet rounds are each judged by their own noise
    expected = []
    for a, m in zip(arrays, medians, strict=True):
        if a.size >= 4:
            sigma2 = (1.4826 * float(np.median(np.abs(a - m)))) ** 2
            expected.append(sigma2 * math.pi / 2 / a.size)
        else:
            expected.append(per_value / a.size)
    raw = float(np.var(medians, ddof=1)) - float(np.mean(expected))
    return center, d_lo, d_hi, within, BetweenEstimate(raw, len(arrays) - 1), var_round


def between_estimate(groups, confidence: float = 0.95) -> BetweenEstimate | None:
    """The raw session-offset variance of log values grouped by session, for pooling (None under 2 sessions)."""
    arrays = _clean(groups)
    if len(arrays) < 2:
        return None
    return _session_parts(arrays, confidence)[4]


def _clean(groups) -> list[np.ndarray]:
    arrays = [np.asarray(g, dtype=float) for g in groups]
    arrays = [a[np.isfinite(a)] for a in arrays]
    return [a for a in arrays if a.size]


def session_interval(groups, confidence: float = 0.95, pooled: BetweenEstimate | None = None) -> SessionCI:
    """The median of log values grouped by session (one fresh worker process per session), with a CI that covers
    both the noise between rounds and the offset each process carries.

    A variance-components interval on the log scale, centred on the median of all values: the *within* part is the
    distribution-free order-statistic CI (as ``median_ci``) of the median of the values' deviations from their own
    session's median, so it holds the round-to-round noise alone; the *between* part is a Student-t interval on the
    session effects, whose variance is the variance of the session medians minus what each session's own
    round-to-round noise (its MAD) puts into its median (never below zero). ``pooled`` replaces that variance and
    its ``sessions - 1`` degrees of freedom by an estimate pooled over several targets measured in the same sessions
    (``BetweenEstimate.pool``): the offsets are the host's and the runtime's, and three sessions alone give a t
    quantile of 4.3. The two parts are added in quadrature on each side. With one session the CI is the
    order-statistic CI of the median, as before sessions. Values are logs (of paired ratios, or of times);
    ``value``, ``lo`` and ``hi`` are exp'd.
    """
    from scipy import stats

    arrays = _clean(groups)
    sessions = len(arrays)
    n = int(sum(a.size for a in arrays))
    if n == 0:
        return SessionCI(math.nan, math.nan, math.nan, math.inf, math.nan, math.nan, 0, 0)
    center, d_lo, d_hi, within, own, var_round = _session_parts(arrays, confidence)
    if math.isnan(d_lo):
        return SessionCI(math.exp(center), math.nan, math.nan, math.inf, math.nan, math.nan, sessions, n)
    between, share = 0.0, math.nan
    if sessions >= 2 and own is not None:
        estimate = pooled if pooled is not None and pooled.df >= own.df else own
        var_between = max(0.0, estimate.var)
        between = float(stats.t.ppf(0.5 + confidence / 2, estimate.df)) * math.sqrt(var_between / sessions)
        own_var = max(0.0, own.var)
        share = own_var / (own_var + var_round) if own_var + var_round > 0 else 0.0
    lo = math.exp(center - math.hypot(d_lo, between))
    hi = math.exp(center + math.hypot(d_hi, between))
    return SessionCI(math.exp(center), lo, hi, within, between, share, sessions, n)


# -- distinct levels (a bimodal host) ------------------------------------------------------------------------------
LEVEL_GAP_FACTOR = 3.0  # a gap between two levels is over this many times the larger spread inside them ...
LEVEL_MIN_GAP = 0.01  # ... and over 1% (on the log scale)
LEVEL_MIN_SHARE = 0.10  # each level holds at least 10% of the values ...
LEVEL_MIN_COUNT = 3  # ... and at least 3


def distinct_levels(values) -> int:
    """How many distinct levels positive values (per-round medians) fall into: 1 for one level, 2 for a bimodal
    host, and so on; 0 without values.

    Sorted on the log scale, the values are split at gaps over ``LEVEL_MIN_GAP``, widest first, leaving at least
    ``LEVEL_MIN_COUNT`` values and ``LEVEL_MIN_SHARE`` of all on each side; then neighbouring groups are merged
    again while the gap between them is no more than ``LEVEL_GAP_FACTOR`` times the larger standard deviation of
    the two (the smallest such gap first). One slow round, or a spread without a gap, stays one level.
    """
    x = np.asarray(values, dtype=float)
    x = np.sort(np.log(x[np.isfinite(x) & (x > 0)]))
    if x.size == 0:
        return 0
    min_size = max(LEVEL_MIN_COUNT, math.ceil(LEVEL_MIN_SHARE * x.size))
    levels = [x]
    i = 0
    while i < len(levels):
        halves = _split_level(levels[i], min_size)
        if halves is None:
            i += 1
        else:
            levels[i:i + 1] = halves
    while len(levels) > 1:
        ratios = [(float(b[0] - a[-1]) / max(float(np.std(a, ddof=1)), float(np.std(b, ddof=1)), 1e-12), k)
                  for k, (a, b) in enumerate(zip(levels[:-1], levels[1:], strict=True))]
        ratio, k = min(ratios)
        if ratio > LEVEL_GAP_FACTOR:
            break
        levels[k:k + 2] = [np.concatenate(levels[k:k + 2])]
    return len(levels)


def _split_level(x: np.ndarray, min_size: int) -> list[np.ndarray] | None:
    """``x`` cut at its widest gap that leaves ``min_size`` values on each side, if that gap is over the minimum."""
    if x.size < 2 * min_size:
        return None
    gaps = np.diff(x)
    allowed = gaps[min_size - 1: x.size - min_size]  # cuts leaving at least min_size values on each side
    cut = min_size - 1 + int(np.argmax(allowed))
    if float(gaps[cut]) > LEVEL_MIN_GAP:
        return [x[: cut + 1], x[cut + 1:]]
    return None
    gaps = np.diff(x)
    allowed = gaps[min_size - 1: x.size - min_size]  # cuts leaving at least min_size values on each side
    cut = min_size - 1 + int(np.argmax(allowed))
    left, right = x[: cut + 1], x[cut + 1:]
    spread = max(float(np.std(left, ddof=1)), float(np.std(right, ddof=1)))
    gap = float(gaps[cut])
    if gap > LEVEL_MIN_GAP and gap > LEVEL_GAP_FACTOR * spread:
        return [left, right]
    return None
