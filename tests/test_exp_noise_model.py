"""Fig 7, the noise model: the slope fit, the neighbour-set selection, the measurements, and the
whole experiment on the tiny sky with a tiny untrained model (and with stand-in samplers whose
answer is known)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from whatsreal.experiments import noise_model
from whatsreal.experiments.noise_model import (
    AXES,
    NOISE_COLUMNS,
    SLOPE_COLUMNS,
    artifact_in_crop,
    background_noise,
    candidate_anchors,
    cutout_sky_sigma,
    fit_loglog_slope,
    run_noise_model,
    select_conditioning_sets,
    source_size,
    truth_conditions,
)
from whatsreal.layout import DatasetLayout

from .conftest import merge_into, save_untrained_checkpoint, tiny_model_config

SMALL_UNET = {
    "block_out_channels": [8, 16, 16],
    "down_block_types": ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
}
"""Cross-attention only at 12x12: fast to sample on a CPU, with every code path."""
N_GALAXIES = 4


def _cfg(**overrides: dict) -> dict:
    cfg = tiny_model_config()
    merge_into(
        cfg,
        {
            "model": {"unet": SMALL_UNET},
            "sample": {"method": "heun", "steps": 2},
            "experiments": {
                "noise_model": {
                    "n_galaxies": N_GALAXIES,
                    "n_artifacts": 2,
                    "n_bootstrap": 200,
                    "directions": ["hsc", "legacysurvey"],
                }
            },
        },
    )
    merge_into(cfg, overrides)
    return cfg


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """A tiny untrained model saved the way Lightning saves one."""
    return save_untrained_checkpoint(_cfg(), tmp_path_factory.mktemp("nm_ckpt"))


def _catalogs(data) -> dict[str, object]:
    return {s: DatasetLayout(data).catalog(s) for s in ("hsc", "legacysurvey")}


def _run(cfg, checkpoint, data, truth, tmp_path, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    run_noise_model(
        cfg,
        checkpoint,
        DatasetLayout(data),
        _catalogs(data),
        truth,
        tmp_path / f"{name}.png",
        tmp_path / f"{name}.csv",
        tmp_path / f"{name}_slopes.csv",
    )
    return pd.read_csv(tmp_path / f"{name}.csv"), pd.read_csv(tmp_path / f"{name}_slopes.csv")


# --------------------------------------------------------------------------- the slope fit


@pytest.mark.parametrize("planted", [0.8, 0.3, 1.0])
def test_slope_fit_recovers_a_planted_power_law_pooled_over_galaxies(planted):
    """noise = c_g * sigma^b with a per-galaxy c_g (x30 range) and 5 % scatter: b inside the CI,
    a wrong slope outside it."""
    rng = np.random.default_rng(1)
    sigma = np.array([0.04, 0.06, 0.09, 0.13, 0.2])
    c = rng.uniform(0.1, 3.0, size=16)
    x = np.tile(sigma, 16)
    groups = np.repeat(np.arange(16), 5)
    y = c[groups] * x**planted * np.exp(rng.normal(0, 0.05, x.size))
    fit = fit_loglog_slope(x, y, groups, n_boot=500, seed=0)
    assert fit.ci_lo <= planted <= fit.ci_hi
    assert abs(fit.slope - planted) < 0.05 and fit.ci_hi - fit.ci_lo < 0.1
    assert not fit.ci_lo <= planted + 0.2 <= fit.ci_hi
    assert fit.n_groups == 16 and fit.n_points == 80
    # Without per-galaxy intercepts the spread of c_g would drown the slope: that is why they are there.
    x2 = rng.uniform(0.04, 0.2, 80)
    pooled = fit_loglog_slope(x2, c[groups] * x2**planted, None, n_boot=500, seed=0)
    assert pooled.ci_hi - pooled.ci_lo > fit.ci_hi - fit.ci_lo


def test_slope_fit_without_groups_and_degenerate_inputs():
    rng = np.random.default_rng(2)
    x = rng.uniform(0.5, 2.0, 300)
    y = 2.0 * x**0.6 * np.exp(rng.normal(0, 0.1, 300))
    y[:5] = [np.nan, -1.0, 0.0, np.inf, np.nan]  # dropped, not fatal
    fit = fit_loglog_slope(x, y, None, n_boot=500, seed=0)
    assert fit.ci_lo <= 0.6 <= fit.ci_hi and fit.n_points == 295
    assert np.isnan(fit_loglog_slope(np.ones(10), np.arange(1, 11.0)).slope), "no spread in x: no slope"
    assert np.isnan(fit_loglog_slope([1.0], [2.0]).slope)
    one = fit_loglog_slope([1.0, 2.0, 4.0], [1.0, 2.0, 4.0], groups=np.zeros(3))
    assert one.slope == pytest.approx(1.0) and np.isnan(one.ci_lo), "one galaxy: a slope, no interval"


# --------------------------------------------------------------------------- set selection


def test_set_selection_on_a_planted_condition_is_monotone_and_nearest():
    """Pair i has value i; its neighbours are i+1..i+5 (mean i+3). The set of each percentile
    is the candidate whose members' mean is nearest the percentile of the members' values."""
    n, k = 200, 5
    value = np.arange(n, dtype=float)
    nbr = (np.arange(n)[:, None] + np.arange(1, k + 1)[None]) % n
    nbr[7, 3:] = -1  # a padded set
    bad = np.zeros(n, dtype=bool)
    bad[50] = True  # a member with a labelled artefact
    exclude = np.array([100, 120])
    cand = candidate_anchors(nbr, exclude, bad, max_sets=10_000, n_levels=5, rng=np.random.default_rng(0))
    assert 7 not in cand, "full sets only, when there are enough"
    for a in (45, 46, 47, 48, 49):
        assert a not in cand, "sets with an artefact-labelled member are left out"
    assert 100 not in cand and 95 not in cand, "neither a generated galaxy nor a set containing one"
    sets = select_conditioning_sets(value, nbr, cand, [5, 25, 50, 75, 95])
    assert sets["value"].is_monotonic_increasing and sets["value"].nunique() == 5
    assert sets["level"].is_monotonic_increasing
    for s in sets.itertuples():
        means = np.array([value[nbr[a]].mean() for a in cand])
        assert abs(s.value - s.level) == pytest.approx(np.abs(means - s.level).min())
        assert s.value == pytest.approx(value[list(s.members)].mean()), "a set's value is its members' mean"
        assert s.anchor_value == value[s.anchor] and list(s.members) == list(nbr[s.anchor])
    few = candidate_anchors(nbr, exclude, bad, max_sets=20, n_levels=5, rng=np.random.default_rng(0))
    assert len(few) == 20 and set(few) <= set(cand)


def test_set_selection_on_the_tiny_sky_follows_the_true_condition(tiny_data, tiny_sky):
    cfg, data = tiny_data
    _, raw, _ = tiny_sky
    truth = pd.read_parquet(raw / "truth.parquet")
    for survey in ("hsc", "legacysurvey"):
        meta = pd.read_parquet(DatasetLayout(data).meta(survey))
        cond = truth_conditions(truth, meta, survey, list(cfg["preprocess"]["bands"]))
        nbr = np.load(DatasetLayout(data).neighbours(survey, "spatial"))["index"]
        bad = cond["pathology"].to_numpy() != ""
        cand = candidate_anchors(nbr, np.array([0, 1]), bad, 2000, 5, np.random.default_rng(0))
        for axis in AXES:
            v = cond[axis].to_numpy()
            assert np.isfinite(v).all() and (v > 0).all()
            sets = select_conditioning_sets(v, nbr, cand, [5, 25, 50, 75, 95])
            assert sets["value"].is_monotonic_increasing, (survey, axis)
            assert sets["value"].iloc[-1] > sets["value"].iloc[0], (survey, axis)
            members = np.unique(nbr[cand][nbr[cand] >= 0])
            lo, hi = np.percentile(v[members], [5, 95])
            assert sets["value"].iloc[0] < np.median(v[members]) < sets["value"].iloc[-1]
            assert (np.abs(sets["value"] - sets["level"]) <= 0.1 * (hi - lo)).all(), "a set near every level"


def test_truth_conditions_average_bands_and_tolerate_band_averaged_columns():
    truth = pd.DataFrame(
        {
            "truth_id": [0, 1],
            "hsc_psf_fwhm_g": [0.6, 1.0],
            "hsc_psf_fwhm_r": [0.8, 1.2],
            "hsc_psf_fwhm_y": [9.0, 9.0],  # not a model band: left out
            "hsc_sky_sigma": [0.1, 0.2],  # a band-averaged column
            "hsc_stripe": [False, True],
        }
    )
    meta = pd.DataFrame({"pair": [0, 1, 2], "truth_id": pd.array([1, 0, pd.NA], dtype="Int64")})
    got = truth_conditions(truth, meta, "hsc", ["g", "r"])
    np.testing.assert_allclose(got["psf_fwhm"], [1.1, 0.7, np.nan])
    np.testing.assert_allclose(got["sky_sigma"], [0.2, 0.1, np.nan])
    assert list(got["pathology"]) == ["stripe", "", ""]
    with pytest.raises(KeyError, match="psf_fwhm"):
        truth_conditions(truth.drop(columns=[c for c in truth if "psf" in c]), meta, "hsc", ["g"])


# --------------------------------------------------------------------------- measurements


def test_measurements_on_planted_images():
    rng = np.random.default_rng(0)
    noisy = rng.normal(0, 0.3, size=(4, 48, 48))
    noisy[:, 20:28, 20:28] += 50  # a bright centre does not enter the background estimate
    assert background_noise(noisy) == pytest.approx(0.3, rel=0.08)
    yy, xx = np.mgrid[:48, :48] - 23.5
    sizes = []
    for s in (1.5, 3.0, 4.5):
        blob = 5.0 * np.exp(-(yy**2 + xx**2) / (2 * s**2)) + rng.normal(0, 0.05, (4, 48, 48)) - 0.7
        sizes.append(source_size(blob))
    np.testing.assert_allclose(sizes, [1.5, 3.0, 4.5], rtol=0.08)
    assert np.isnan(source_size(rng.normal(0, 1, (4, 48, 48)) * 0 + np.nan))
    # Raw cutouts: the median sigma over valid central pixels, band-averaged.
    image = np.zeros((2, 2, 20, 20), dtype=np.float32)
    ivar = np.full_like(image, 4.0)
    ivar[:, 1] = 1.0  # band 2 has sigma 1
    ivar[1, :, :5, :] = 0.0  # a quarter of the second cutout is bad and does not count
    sigma, bad = cutout_sky_sigma(image, ivar, crop=20)
    np.testing.assert_allclose(sigma, [0.75, 0.75])
    np.testing.assert_allclose(bad, [0.0, 0.25])
    mask = np.ones((2, 20, 20), dtype=bool)  # one mask for all bands (Legacy layout), True = clean
    mask[0, :10] = False
    _, bad = cutout_sky_sigma(image, ivar, crop=10, mask=mask)
    np.testing.assert_allclose(bad, [0.5, 0.0])


@pytest.mark.parametrize("inside", [True, False])
def test_artifact_in_crop_sees_each_signature_only_inside_the_crop(inside):
    rng = np.random.default_rng(3)
    s, crop = 64, 48
    yy, xx = np.mgrid[:s, :s] - 31.5
    galaxy = 400 * np.exp(-(yy**2 / 30 + xx**2 / 8))  # bright, elongated: not a stripe

    def clean() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image = galaxy[None] + rng.normal(0, 1.0, (4, s, s))
        return image, np.ones((4, s, s)), np.ones((4, s, s), dtype=bool)

    image, ivar, mask = clean()
    assert not artifact_in_crop(image, ivar, mask, crop)
    at = 30 if inside else 3  # rows 8..55 are the crop
    image, ivar, mask = clean()
    mask[2, at, 40] = False
    assert artifact_in_crop(image, ivar, mask, crop, kind="saturated_star") is inside
    image, ivar, mask = clean()
    ivar[:, at : at + 4, 50:60] = 0.1
    assert artifact_in_crop(image, ivar, mask, crop, kind="high_noise") is inside
    assert not artifact_in_crop(image, ivar, mask, crop, kind="saturated_star"), "only the label's signature"
    image, ivar, mask = clean()
    image[1, :, at : at + 2] += 4.0  # a 2-px column stripe of 4 sigma in one band
    assert artifact_in_crop(image, ivar, mask, crop, kind="stripe") is inside
    assert artifact_in_crop(image, ivar, mask, crop) is inside


# --------------------------------------------------------------------------- the experiment


@pytest.mark.slow  # samples the tiny model for every condition set (13 s on the shared 2-core machine)
def test_noise_model_runs_end_to_end(tiny_data, tiny_sky, checkpoint, tmp_path):
    _, data = tiny_data
    _, raw, _ = tiny_sky
    cfg = _cfg()
    table, slopes = _run(cfg, checkpoint, data, raw / "truth.parquet", tmp_path, "a")
    assert list(table.columns) == list(NOISE_COLUMNS) and list(slopes.columns) == list(SLOPE_COLUMNS)
    cond = table[table["kind"] == "conditioning"]
    assert len(cond) == 2 * len(AXES) * 5 * N_GALAXIES, "one row per direction, axis, percentile and galaxy"
    split = pd.read_parquet(DatasetLayout(data).split).set_index("pair")["split"]
    assert (split[cond["galaxy_pair"].unique()] == "val").all(), "the generated galaxies are held out"
    assert cond["galaxy_pair"].nunique() == N_GALAXIES
    truth = pd.read_parquet(raw / "truth.parquet")
    for (direction, axis), sub in cond.groupby(["direction", "axis"]):
        per_level = sub.groupby("percentile")["conditioning_value"].agg(["first", "nunique"])
        assert list(per_level.index) == [5, 25, 50, 75, 95]
        assert (per_level["nunique"] == 1).all(), "every galaxy gets the same set at a percentile"
        assert per_level["first"].is_monotonic_increasing, (direction, axis)
        np.testing.assert_allclose(sub["conditioning_value"], sub[f"conditioning_{axis}"])
        # The set is a real spatial neighbour set and its value the members' true mean.
        nbr = np.load(DatasetLayout(data).neighbours(direction, "spatial"))["index"]
        meta = pd.read_parquet(DatasetLayout(data).meta(direction))
        c = truth_conditions(truth, meta, direction, list(cfg["preprocess"]["bands"]))
        for row in sub.drop_duplicates("percentile").itertuples():
            members = [int(q) for q in row.set_pairs.split()]
            assert members == [int(q) for q in nbr[row.set_anchor_pair] if q >= 0]
            assert row.conditioning_value == pytest.approx(c[axis].to_numpy()[members].mean())
            assert not set(members) & set(cond["galaxy_pair"]), "a galaxy never conditions itself"
    assert np.isfinite(cond["output_noise"]).all() and (cond["output_noise"] > 0).all()
    assert np.isfinite(cond["real_noise"]).all()
    assert len(slopes) == 4 and set(zip(slopes["direction"], slopes["axis"], strict=True)) == {
        (d, a) for d in ("hsc", "legacysurvey") for a in AXES
    }
    noise = slopes[slopes["axis"] == "sky_sigma"]
    assert (noise["n_galaxies"] == N_GALAXIES).all() and (noise["n_levels"] == 5).all()
    numbers = noise[["slope", "ci_lo", "ci_hi", "real_slope", "real_ci_lo", "real_ci_hi", "ratio"]].to_numpy()
    assert np.isfinite(numbers).all()
    assert (noise["real_slope"] > 0.5).all(), "real images: more sky noise, more preprocessed noise"
    assert (noise["slope"].abs() < 0.3).all(), "an untrained model does not follow its conditioning"
    art = table[table["kind"] == "artifact_removal"]
    assert len(art) == 2 and art["note"].str.contains("pathology").all()
    assert art["note"].str.contains("noiseless truth").all() and art["note"].str.contains("inside the crop").all()
    assert (tmp_path / "a.png").stat().st_size > 40_000
    # The same seed gives the same tables.
    again, again_slopes = _run(cfg, checkpoint, data, raw / "truth.parquet", tmp_path, "b")
    pd.testing.assert_frame_equal(again, table)
    pd.testing.assert_frame_equal(again_slopes, slopes)


def test_a_sampler_that_copies_its_conditioning_matches_the_real_slope(
    tiny_data, tiny_sky, checkpoint, tmp_path, monkeypatch
):
    """A stand-in decoder that outputs the mean of its instrument images (x sqrt(n), so that the
    noise level is the members'): its noise follows the set's sky sigma, so its slope is the real
    images' (ratio near 1); the untrained model's is not (above)."""

    def copy_members(net, batch, n_samples, steps, method, seed, device, x0=None):
        mask = batch["instrument_mask"].numpy()[:, :, None, None, None]
        n = mask.sum(axis=1)
        return ((batch["instrument"].numpy() * mask).sum(axis=1) / np.sqrt(n))[:, None]

    monkeypatch.setattr(noise_model, "sample_posterior", copy_members)
    _, data = tiny_data
    _, raw, _ = tiny_sky
    cfg = _cfg(experiments={"noise_model": {"directions": ["hsc"]}})
    table, slopes = _run(cfg, checkpoint, data, raw / "truth.parquet", tmp_path, "c")
    assert set(table.loc[table["kind"] == "conditioning", "direction"]) == {"hsc"} and len(slopes) == 2
    row = slopes.set_index("axis").loc["sky_sigma"]
    assert row["slope"] > 0.5 and 0.5 < row["ratio"] < 1.5, row.to_dict()


def test_noise_model_on_real_data_reads_the_conditions_from_the_pixels(tiny_data, tiny_sky, checkpoint, tmp_path):
    """Without a truth table the sky sigma is the median sqrt(1/ivar) of the raw cutouts, the PSF FWHM
    the catalogue's, and the artefacts the most masked cutouts."""
    _, data = tiny_data
    _, raw, _ = tiny_sky
    cfg = _cfg(experiments={"noise_model": {"directions": ["hsc"]}})
    table, slopes = _run(cfg, checkpoint, data, None, tmp_path, "r")
    cond = table[table["kind"] == "conditioning"]
    assert len(cond) == len(AXES) * 5 * N_GALAXIES and len(slopes) == 2
    truth = pd.read_parquet(raw / "truth.parquet")
    meta = pd.read_parquet(DatasetLayout(data).meta("hsc"))
    true = truth_conditions(truth, meta, "hsc", list(cfg["preprocess"]["bands"]))
    sets = cond.drop_duplicates(["axis", "percentile"])
    for axis in AXES:
        sub = sets[sets["axis"] == axis]
        assert sub["conditioning_value"].is_monotonic_increasing
        truth_mean = [true[axis].to_numpy()[[int(q) for q in s.split()]].mean() for s in sub["set_pairs"]]
        assert spearmanr(sub["conditioning_value"], truth_mean).statistic > 0.8, axis
    art = table[table["kind"] == "artifact_removal"]
    assert len(art) >= 1 and art["note"].str.contains("bad pixels").all()
    assert not art["note"].str.contains("noiseless").any()
