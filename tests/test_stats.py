"""The statistics behind every figure: CI of the median, paired ratios, the noisy flag."""

import math

import numpy as np
import pytest

from edgeprof.measure.stats import median_ci, median_ci_ranks, paired_ratio, summarize


@pytest.mark.parametrize(
    "n, ranks",
    # textbook 95% order-statistic intervals for the median (1-based: 1..6, 6..15, 40..61)
    [(5, None), (6, (0, 5)), (20, (5, 14)), (100, (39, 60))],
)
def test_median_ci_ranks_match_tables(n, ranks):
    assert median_ci_ranks(n) == ranks


def test_median_ci_covers_true_median_about_95_percent():
    rng = np.random.default_rng(1)
    true_median = math.log(2)  # exponential(1)
    hits = sum(lo <= true_median <= hi for lo, hi in (median_ci(rng.exponential(size=40)) for _ in range(3000)))
    assert 0.94 <= hits / 3000 <= 0.985  # the exact method is slightly conservative


def test_median_ci_too_few_samples_is_nan():
    lo, hi = median_ci([1.0, 2.0, 3.0])
    assert math.isnan(lo) and math.isnan(hi)


def test_summarize_fields_and_noise_flag():
    quiet = summarize([10.0, 10.1, 9.9, 10.0, 10.05, 9.95, 10.0, 10.02])
    assert quiet["n"] == 8 and quiet["median_ms"] == pytest.approx(10.0, abs=0.03)
    assert quiet["ci95_low_ms"] <= quiet["median_ms"] <= quiet["ci95_high_ms"]
    assert quiet["min_ms"] == 9.9 and not quiet["noisy"]
    noisy = summarize([10, 14, 8, 12, 9, 15, 10, 11])
    assert noisy["noisy"]
    assert summarize([])["n"] == 0


def test_paired_ratio_recovers_known_ratio_under_shared_drift():
    rng = np.random.default_rng(2)
    drift = np.linspace(1.0, 1.5, 60)  # the machine slows down over the run: both sides see it
    base = 4.0 * drift * rng.normal(1, 0.01, 60)
    cur = 6.0 * drift * rng.normal(1, 0.01, 60)
    ratio, lo, hi = paired_ratio(cur, base)
    assert lo <= 1.5 <= hi and ratio == pytest.approx(1.5, rel=0.01)
    # unpaired medians would still be near 1.5 here, but the paired CI is tight despite the 50% drift
    assert hi - lo < 0.03


def test_paired_ratio_rejects_unequal_lengths():
    with pytest.raises(ValueError):
        paired_ratio([1, 2], [1])
