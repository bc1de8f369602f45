"""What in a swapped half the decoder's loss responds to: the truth differences of each swap and
the joint regression of the swap gains on them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from whatsreal.experiments.conditioning_sensitivity import (
    PROPERTIES,
    SENSITIVITY_BY_TIME_COLUMNS,
    sensitivity_by_time,
    sensitivity_table,
    swap_differences,
    time_bin_edges,
)

BANDS = ["g", "r", "i", "z"]


def _truth(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """A truth table of ``n`` galaxies with the columns survey_targets reads, for HSC."""
    cols: dict[str, np.ndarray] = {"truth_id": np.arange(n) + 100}
    for name in ("redshift", "log_mstar", "log_ssfr", "sersic_n", "e1", "e2"):
        cols[name] = rng.normal(size=n)
    cols["half_light_radius_arcsec"] = np.exp(rng.normal(-0.3, 0.4, n))
    mag = rng.uniform(19, 24, n)
    sigma = np.exp(rng.normal(-3, 0.3, n))
    fwhm = rng.normal(0.65, 0.12, n)
    for b in BANDS:
        cols[f"mag_{b}"] = mag
        cols[f"hsc_sky_sigma_{b}"] = sigma
        cols[f"hsc_psf_fwhm_{b}"] = fwhm
        cols[f"hsc_psfdepth_mag_{b}"] = 27 - 2.5 * np.log10(sigma * fwhm)
    return pd.DataFrame(cols)


def _swaps(n_pairs: int, draws: int, rng: np.random.Generator) -> pd.DataFrame:
    """Every pair swapped with random other pairs, ``draws`` times, for both halves, gains 0."""
    rows = []
    for half in ("instrument", "physics"):
        for d in range(draws):
            partner = (np.arange(n_pairs) + rng.integers(1, n_pairs, n_pairs)) % n_pairs
            rows.append(
                pd.DataFrame(
                    {
                        "survey": "hsc",
                        "half": half,
                        "draw": d,
                        "pair": np.arange(n_pairs),
                        "partner": partner,
                        "gain": 0.0,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def _planted(n_pairs: int = 120, draws: int = 6, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Swap differences whose instrument gains grow with the sky-noise mismatch only, and whose
    physics gains grow with the magnitude mismatch only, plus noise."""
    rng = np.random.default_rng(seed)
    truth = _truth(n_pairs, rng)
    ids = {"hsc": pd.Series(truth["truth_id"].to_numpy(), index=np.arange(n_pairs))}
    diffs = swap_differences(_swaps(n_pairs, draws, rng), truth, ids, BANDS)
    inst = diffs["half"] == "instrument"
    noise = rng.normal(0, 0.004, len(diffs))
    diffs["gain"] = np.where(inst, 0.01 * diffs["d:log sky noise"], 0.006 * diffs["d:magnitude"]) + noise
    return diffs, truth


def test_differences_are_in_standard_deviations_of_the_scored_rows():
    rng = np.random.default_rng(1)
    truth = _truth(40, rng)
    ids = {"hsc": pd.Series(truth["truth_id"].to_numpy(), index=np.arange(40))}
    diffs = swap_differences(_swaps(40, 2, rng), truth, ids, BANDS)
    r = diffs[diffs["half"] == "instrument"].iloc[3]
    fwhm = truth["hsc_psf_fwhm_g"].to_numpy()
    want = abs(fwhm[int(r["partner"])] - fwhm[int(r["pair"])]) / fwhm.std(ddof=1)
    assert r["d:PSF FWHM"] == pytest.approx(want)
    log_sigma = np.log(truth["hsc_sky_sigma_g"].to_numpy())
    want = abs(log_sigma[int(r["partner"])] - log_sigma[int(r["pair"])]) / log_sigma.std(ddof=1)
    assert r["d:log sky noise"] == pytest.approx(want)
    phys = diffs[diffs["half"] == "physics"]
    assert phys["d:PSF FWHM"].isna().all() and phys["d:magnitude"].notna().all(), "each half its own properties"


def test_a_row_without_truth_gets_no_difference():
    rng = np.random.default_rng(2)
    truth = _truth(20, rng)
    ids = pd.Series(truth["truth_id"].to_numpy(), index=np.arange(20))
    ids[5] = -1  # real data, or a row the truth table does not know
    diffs = swap_differences(_swaps(20, 2, rng), truth, {"hsc": ids}, BANDS)
    touched = (diffs["pair"] == 5) | (diffs["partner"] == 5)
    inst = diffs["half"] == "instrument"
    assert diffs.loc[touched & inst, "d:PSF FWHM"].isna().all()
    assert diffs.loc[~touched & inst, "d:PSF FWHM"].notna().all()


def test_the_regression_finds_the_planted_property_and_not_the_other():
    diffs, _ = _planted()
    table = sensitivity_table(diffs, n_resamples=400, seed=0, confidence=0.95).set_index(["half", "property"])
    sky = table.loc[("instrument", "log sky noise")]
    assert sky["ci_lo"] > 0 and sky["slope"] == pytest.approx(0.01, rel=0.15)
    psf = table.loc[("instrument", "PSF FWHM")]
    assert psf["ci_lo"] < 0 < psf["ci_hi"], "the PSF mismatch was given no effect"
    mag = table.loc[("physics", "magnitude")]
    assert mag["ci_lo"] > 0 and mag["slope"] == pytest.approx(0.006, rel=0.2)
    size = table.loc[("physics", "log half-light radius")]
    assert size["ci_lo"] < 0 < size["ci_hi"]
    assert set(table.reset_index()["property"]) == {p.label for props in PROPERTIES.values() for p in props}
    assert (table["n_pairs"] == 120).all() and (table["n_swaps"] == 720).all()


def test_the_interval_covers_a_planted_slope_at_about_its_nominal_rate():
    """Bootstrap over anchors: of 60 independent skies, about 95 % of the intervals cover 0.01
    (92 % over 150 skies of 60 anchors: the percentile interval is a little short with so
    few clusters)."""
    covered = 0
    for seed in range(60):
        diffs, _ = _planted(n_pairs=60, draws=4, seed=100 + seed)
        row = sensitivity_table(diffs, n_resamples=300, seed=seed, confidence=0.95)
        sky = row[(row["half"] == "instrument") & (row["property"] == "log sky noise")].iloc[0]
        covered += sky["ci_lo"] <= 0.01 <= sky["ci_hi"]
    assert covered >= 51, covered


def test_too_few_anchors_give_nan_not_an_error():
    diffs, _ = _planted(n_pairs=120)
    few = diffs[diffs["pair"].isin([0, 1]) & diffs["partner"].isin([0, 1])]
    table = sensitivity_table(few, n_resamples=50, seed=0, confidence=0.95)
    assert table["slope"].isna().all() and (table["n_pairs"] <= 2).all()


def test_the_time_bins_find_where_on_the_path_a_planted_property_pays():
    """The PSF mismatch is given an effect only in the upper half of t, the sky noise at every t: the per-bin
    fit must find the PSF slope in the upper bins alone, and the sky-noise slope in all."""
    diffs, _ = _planted(n_pairs=200, draws=8, seed=3)
    rng = np.random.default_rng(4)
    diffs["t"] = rng.uniform(0, 1, len(diffs))
    inst = diffs["half"] == "instrument"
    late = (diffs["t"] >= time_bin_edges(diffs["t"].to_numpy(), 4)[2]).to_numpy()  # the upper two bins
    diffs.loc[inst & late, "gain"] += 0.02 * diffs.loc[inst & late, "d:PSF FWHM"]
    table = sensitivity_by_time(diffs, bins=4, n_resamples=300, seed=0, confidence=0.95)
    assert list(table.columns) == list(SENSITIVITY_BY_TIME_COLUMNS)
    psf = table[(table["half"] == "instrument") & (table["property"] == "PSF FWHM")].sort_values("t_lo")
    sky = table[(table["half"] == "instrument") & (table["property"] == "log sky noise")]
    assert len(psf) == 4 and psf["t_lo"].iloc[0] == 0.0 and psf["t_hi"].iloc[-1] == 1.0
    early, later = psf[psf["t_hi"] <= 0.55], psf[psf["t_lo"] >= 0.45]
    assert len(early) == 2 and len(later) == 2
    assert (early["ci_lo"] < 0).all() and (early["ci_hi"] > 0).all(), "no PSF effect was planted in the lower half"
    assert (later["ci_lo"] > 0).all() and np.allclose(later["slope"], 0.02, rtol=0.3)
    assert (sky["ci_lo"] > 0).all(), "the sky noise pays at every t"
    assert table.groupby(["half", "property"])["n_swaps"].sum().eq(200 * 8).all(), "every swap in one bin"


def test_time_bins_hold_equal_counts_and_merge_when_times_repeat():
    t = np.random.default_rng(0).beta(5, 1, 1000)  # bunched near 1, as a logit-normal sampler can be
    edges = time_bin_edges(t, 4)
    assert edges[0] == 0.0 and edges[-1] == 1.0 and len(edges) == 5
    counts = np.histogram(t, edges)[0]
    assert counts.min() >= 240
    assert list(time_bin_edges(np.full(50, 0.3), 4)) == [0.0, 0.3, 1.0]
    with pytest.raises(ValueError, match="time bins"):
        time_bin_edges(t, 0)


def test_swaps_without_a_time_column_are_refused():
    diffs, _ = _planted(n_pairs=30, draws=2)
    with pytest.raises(ValueError, match="'t'"):
        sensitivity_by_time(diffs, 2, n_resamples=20, seed=0, confidence=0.95)
