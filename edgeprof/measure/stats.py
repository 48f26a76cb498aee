"""Statistics of timing samples: order-statistic confidence intervals of the median, paired ratios, noise.

The 95% confidence interval of a median is distribution-free: with n samples sorted, the interval
[x_(l), x_(n-l+1)] covers the true median with probability 1 - 2*P(Binomial(n, 1/2) <= l-1), so we take
the largest l that keeps that probability at or above 95% (exact binomial from scipy.stats, no normal approximation).
Ratios to a baseline use the same interval on the paired log-ratios of samples taken in the same round.
"""

from __future__ import annotations

import math
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
