"""The percentile bootstrap of R^2: exact per resample, paired across predictors, and calibrated on a toy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score

from whatsreal.experiments.bootstrap import (
    BootstrapR2,
    bootstrap_config,
    bootstrap_counts,
    percentile_ci,
    r2_point,
    r2_replicates,
    resampled_medians,
)

from .conftest import tiny_config


def test_counts_are_seeded_resamples_of_the_rows():
    c = bootstrap_counts(50, 20, 3)
    assert c.shape == (20, 50) and (c.sum(axis=1) == 50).all()
    np.testing.assert_array_equal(c, bootstrap_counts(50, 20, 3))
    assert not np.array_equal(c, bootstrap_counts(50, 20, 4))


def test_each_replicate_is_sklearn_r2_of_the_resampled_rows():
    rng = np.random.default_rng(0)
    y = rng.normal(size=80)
    pred = y + rng.normal(size=80)
    y[3], pred[7] = np.nan, np.inf  # rows without a label or a prediction drop out
    counts = bootstrap_counts(80, 5, 1)
    reps = r2_replicates(y, pred, counts)
    ok = np.isfinite(y) & np.isfinite(pred)
    for b in range(5):
        rows = np.repeat(np.arange(80), counts[b])
        rows = rows[ok[rows]]
        assert reps[b] == pytest.approx(r2_score(y[rows], pred[rows]), abs=1e-10)
    assert r2_point(y, pred) == pytest.approx(r2_score(y[ok], pred[ok]), abs=1e-12)
    assert np.isnan(r2_point(np.ones(10), np.zeros(10)))  # constant truth: undefined


def test_percentile_ci_needs_enough_finite_resamples():
    reps = np.c_[np.linspace(0, 1, 101), np.r_[np.full(20, np.nan), np.linspace(0, 1, 81)]]
    lo, hi = percentile_ci(reps, 0.9)
    assert lo[0] == pytest.approx(0.05) and hi[0] == pytest.approx(0.95)
    assert np.isnan(lo[1]) and np.isnan(hi[1])  # 20 % undefined resamples: no interval


def _coverage(n_rep: int, n: int, confidence: float, seed: int) -> float:
    """Fraction of toy regressions whose interval covers the planted population R^2 (= 0.5)."""
    rng = np.random.default_rng(seed)
    covered = 0
    for k in range(n_rep):
        x = rng.normal(size=n)
        y = x + rng.normal(size=n)  # a fixed predictor x explains half the variance of y: R^2 = 1 - 1/2
        boot = BootstrapR2.for_rows(n, 400, k, confidence)
        boot.add("x", y, x)
        lo, hi = boot.ci("x")
        covered += bool(lo[0] <= 0.5 <= hi[0])
    return covered / n_rep


def test_bootstrap_interval_covers_a_planted_r2_at_its_nominal_rate():
    assert 0.88 <= _coverage(200, 300, 0.95, 0) <= 0.99
    # The check has teeth: an interval built for 50 % must cover far less often.
    assert _coverage(200, 300, 0.5, 0) < 0.7


def test_paired_difference_is_tighter_than_the_unpaired_one_and_centred():
    rng = np.random.default_rng(2)
    n = 400
    y = rng.normal(size=n)
    shared = rng.normal(size=n)  # pair-level difficulty both predictors share
    a = y + 0.6 * shared + 0.2 * rng.normal(size=n)
    b = y + 0.6 * shared + 0.35 * rng.normal(size=n)
    boot = BootstrapR2.for_rows(n, 1000, 0, 0.95)
    boot.add("a", y, a)
    boot.add("b", y, b)
    d, lo, hi = boot.diff("a", "b")
    assert d[0] == pytest.approx(r2_score(y, a) - r2_score(y, b))
    assert lo[0] > 0  # a is better, and pairing makes that visible
    unpaired = BootstrapR2.for_rows(n, 1000, 99, 0.95)
    unpaired.add("b", y, b)
    wide = percentile_ci(boot.replicates["a"] - unpaired.replicates["b"], 0.95)
    assert (hi[0] - lo[0]) < 0.5 * (wide[1][0] - wide[0][0])


def test_columns_are_independent_and_config_is_read():
    rng = np.random.default_rng(3)
    y = rng.normal(size=(100, 2))
    p = y + rng.normal(size=(100, 2))
    boot = BootstrapR2.for_rows(100, 200, 0, 0.95)
    both = boot.add("p", y, p)
    alone = BootstrapR2.for_rows(100, 200, 0, 0.95)
    alone.add("p1", y[:, 1], p[:, 1])
    assert both[1] == pytest.approx(alone.point["p1"][0])
    np.testing.assert_allclose(boot.replicates["p"][:, 1], alone.replicates["p1"][:, 0])
    assert bootstrap_config(tiny_config(experiments={"bootstrap": {"n_resamples": 10}})) == (10, 0, 0.95)


@pytest.mark.parametrize("n", [1, 2, 7, 8])
def test_resampled_medians_equal_the_median_of_each_drawn_sample(n):
    values = np.round(np.random.default_rng(n).normal(size=n), 1)  # rounded: ties
    counts = bootstrap_counts(n, 200, seed=3)
    expected = [np.median(np.repeat(values, c)) for c in counts]
    np.testing.assert_allclose(resampled_medians(values, counts), expected)
    np.testing.assert_allclose(resampled_medians(values, counts.astype(np.float64)), expected)
