"""Generative-experiment statistics on planted inputs: counterfactual MSE and FITS (Fig 6),
power spectrum and autocorrelation (Fig 8), pixel-wise calibration (Fig 9 left)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from scipy.ndimage import gaussian_filter

from whatsreal.data.preprocess import model_pixels_to_flux
from whatsreal.experiments.calibration import ideal_z_std, pixel_z, run_calibration
from whatsreal.experiments.counterfactuals import MSE_COLUMNS, run_counterfactuals
from whatsreal.experiments.metrics import counterfactual_mse
from whatsreal.experiments.posterior_file import load_posterior
from whatsreal.experiments.spectra import SPATIAL_COLUMNS, radial_acf, radial_psd, run_spatial_structure
from whatsreal.io import write_npz, write_parquet

from .conftest import tiny_config


def _planted(path, direction: str, n: int = 5, s: int = 4, seed: int = 0, noise: float = 0.5) -> dict:
    """A posterior npz in the contract's layout: samples = target + Gaussian noise of std ``noise``."""
    rng = np.random.default_rng(seed)
    target = rng.normal(size=(n, 4, 16, 16)).astype(np.float32)
    post = {
        "pair": np.arange(10, 10 + n, dtype=np.int64),
        "object_id": np.array([f"{direction}-{i}" for i in range(n)]),
        "target": target,
        "physics": rng.normal(size=(n, 4, 16, 16)).astype(np.float32),
        "instrument": rng.normal(size=(n, 5, 4, 16, 16)).astype(np.float32),
        "instrument_mask": np.array([[True] * 5, [True, True, True, False, False]] * (n // 2) + [[True] * 5] * (n % 2)),
        "samples": (target[:, None] + noise * rng.normal(size=(n, s, 4, 16, 16))).astype(np.float32),
        "direction": np.array(direction),
    }
    write_npz(path, **post)
    return post


def _sections(cfg: dict) -> tuple[dict, dict, dict]:
    """run_counterfactuals' config arguments: its section, the sampler's and preprocessing's."""
    return cfg["experiments"]["counterfactuals"], cfg["sample"], cfg["preprocess"]


def _planted_meta(tmp_path, n_pairs: int = 20) -> dict[str, object]:
    """Each survey's metadata file as preprocessing writes it: positions by pair and the
    fitted normalisation in the parquet metadata."""
    out = {}
    for k, survey in enumerate(("hsc", "legacysurvey")):
        meta = pd.DataFrame(
            {
                "pair": np.arange(n_pairs),
                "object_id": [f"{survey}-{i - 10}" for i in range(n_pairs)],
                "ra": 150.0 + 0.01 * np.arange(n_pairs),
                "dec": 2.0 + 0.01 * np.arange(n_pairs),
            }
        )
        norm = {"norm_mean": 0.1 * (k + 1), "norm_std": 2.0 + k, "bad_pixels": 0, "blank_cutouts": 0}
        out[survey] = tmp_path / f"meta_{survey}.parquet"
        write_parquet(meta, out[survey], metadata={"whatsreal_normalisation": json.dumps(norm)})
    return out


def test_counterfactual_mse_equals_a_hand_computation(tmp_path):
    paths = [tmp_path / "posterior_hsc.npz", tmp_path / "posterior_legacysurvey.npz"]
    posts = [_planted(paths[0], "hsc", seed=1), _planted(paths[1], "legacysurvey", seed=2, noise=1.0)]
    cfg = tiny_config(experiments={"counterfactuals": {"n_show": 2}})
    fits_out = [tmp_path / "fits" / "counterfactuals_hsc.fits", tmp_path / "fits" / "counterfactuals_legacysurvey.fits"]
    meta = _planted_meta(tmp_path)
    df = run_counterfactuals(*_sections(cfg), paths, meta, tmp_path / "fig6.png", tmp_path / "mse.csv", fits_out)
    table = pd.read_csv(tmp_path / "mse.csv")
    assert list(table.columns) == list(MSE_COLUMNS)
    for post, (_, row) in zip(posts, table.iterrows(), strict=True):
        s, t = post["samples"], post["target"]
        by_hand = np.mean([np.mean((s[i, j] - t[i]) ** 2) for i in range(len(t)) for j in range(s.shape[1])])
        mean_hand = np.mean([np.mean((s[i].mean(0) - t[i]) ** 2) for i in range(len(t))])
        assert row["direction"] == str(post["direction"])
        assert row["n_galaxies"] == 5 and row["n_samples"] == 4
        assert row["mse_samples"] == pytest.approx(by_hand, rel=1e-6)
        assert row["mse_posterior_mean"] == pytest.approx(mean_hand, rel=1e-6)
    # samples = target + N(0, 0.5^2): per-sample MSE ~0.25; the mean of 4 samples ~0.25/4.
    assert table.loc[0, "mse_samples"] == pytest.approx(0.25, rel=0.1)
    assert table.loc[0, "mse_posterior_mean"] == pytest.approx(0.25 / 4, rel=0.15)
    assert df.loc[1, "mse_samples"] > 3 * df.loc[0, "mse_samples"]
    assert (tmp_path / "fig6.png").stat().st_size > 10_000


def test_fits_are_in_flux_units_with_a_celestial_wcs_and_round_trip(tmp_path):
    paths = [tmp_path / "posterior_legacysurvey.npz", tmp_path / "posterior_hsc.npz"]
    posts = [_planted(paths[0], "legacysurvey", n=3, seed=3), _planted(paths[1], "hsc", n=3, seed=4)]
    cfg = tiny_config(sample={"method": "euler", "steps": 7})
    meta = _planted_meta(tmp_path)
    # FITS outputs in the other order: each direction must land in its own file.
    fits_out = [tmp_path / "counterfactuals_hsc.fits", tmp_path / "counterfactuals_legacysurvey.fits"]
    run_counterfactuals(*_sections(cfg), paths, meta, tmp_path / "fig6.png", tmp_path / "mse.csv", fits_out)
    post = posts[1]
    flux = model_pixels_to_flux(post["samples"], "hsc", cfg["preprocess"], 0.1, 2.0)
    target = model_pixels_to_flux(post["target"], "hsc", cfg["preprocess"], 0.1, 2.0)
    with fits.open(tmp_path / "counterfactuals_hsc.fits") as hdul:
        assert hdul[0].header["DIRECTN"] == "legacysurvey->hsc" and hdul[0].header["NOBJECT"] == 3
        assert hdul[0].header["SAMPLER"] == "euler" and hdul[0].header["STEPS"] == 7
        assert len(hdul) == 1 + 3 * 3
        for i, oid in enumerate(post["object_id"]):
            mean, samples, real = hdul[oid], hdul[f"{oid}_SAMPLES"], hdul[f"{oid}_TARGET"]
            for h in (mean, samples, real):
                assert h.header["OBJECTID"] == oid and h.header["SURVEY"] == "hsc"
                assert h.header["RA"] == pytest.approx(150.0 + 0.01 * post["pair"][i])
            np.testing.assert_allclose(samples.data, flux[i], rtol=1e-6)
            np.testing.assert_allclose(mean.data, flux[i].mean(axis=0), rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(real.data, target[i], rtol=1e-6)
    oid = str(post["object_id"][0])
    ccd = CCDData.read(tmp_path / "counterfactuals_hsc.fits", hdu=oid)
    assert ccd.unit.is_equivalent("Jy") and ccd.wcs.has_celestial
    with fits.open(tmp_path / "counterfactuals_legacysurvey.fits") as hdul:
        assert hdul[0].header["DIRECTN"] == "hsc->legacysurvey"
        assert hdul[1].header["OBJECTID"] == "legacysurvey-0" and hdul[1].header["BUNIT"] == "nanomaggy"


def test_load_posterior_names_the_missing_array(tmp_path):
    write_npz(tmp_path / "bad.npz", pair=np.arange(2), samples=np.zeros((2, 2, 4, 8, 8)))
    with pytest.raises(KeyError, match=r"bad\.npz.*target"):
        load_posterior(tmp_path / "bad.npz")


def test_counterfactual_mse_of_a_perfect_posterior_is_zero():
    t = np.random.default_rng(0).normal(size=(3, 4, 8, 8)).astype(np.float32)
    assert counterfactual_mse(np.repeat(t[:, None], 5, axis=1), t) == (0.0, 0.0)


def test_white_noise_power_spectrum_is_flat_and_its_autocorrelation_vanishes():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 2.0, size=(200, 48, 48))
    freq, psd = radial_psd(noise)
    mean_psd = psd.mean(axis=0)
    assert freq[0] == pytest.approx(1 / 48) and freq[-1] == pytest.approx(0.5)
    np.testing.assert_allclose(mean_psd, 4.0, rtol=0.08)  # flat at the variance
    lags, acf = radial_acf(noise)
    mean_acf = acf.mean(axis=0)
    assert lags[0] == 0 and mean_acf[0] == pytest.approx(1.0)
    assert np.abs(mean_acf[1:]).max() < 0.02
    # Smoothed noise: a falling spectrum and a positive short-lag correlation (the test can fail).
    smooth = gaussian_filter(noise, sigma=(0, 1.5, 1.5))
    _, psd_s = radial_psd(smooth)
    low, high = psd_s.mean(0)[:3].mean(), psd_s.mean(0)[-5:].mean()
    assert low > 100 * high
    _, acf_s = radial_acf(smooth)
    assert acf_s.mean(0)[1] > 0.7


def test_spatial_structure_table_is_tidy_and_matches_for_a_copy(tmp_path):
    paths = [tmp_path / "posterior_hsc.npz", tmp_path / "posterior_legacysurvey.npz"]
    for p, d in zip(paths, ("hsc", "legacysurvey"), strict=True):
        post = _planted(p, d, n=4, s=3, noise=0.0)
        assert np.array_equal(post["samples"][:, 0], post["target"])
    df = run_spatial_structure(paths, tmp_path / "fig8.png", tmp_path / "spatial.csv")
    table = pd.read_csv(tmp_path / "spatial.csv")
    assert list(table.columns) == list(SPATIAL_COLUMNS)
    assert set(table["statistic"]) == {"psd", "acf"} and set(table["band"]) == {"g", "r", "i", "z"}
    assert set(table["direction"]) == {"hsc", "legacysurvey"}
    # samples identical to the truth: the same statistics and zero spread across samples
    np.testing.assert_allclose(df["posterior_mean"], df["truth"], rtol=1e-6, atol=1e-9)
    assert np.abs(df["posterior_std"]).max() < 1e-9
    assert (tmp_path / "fig8.png").stat().st_size > 10_000


def _toy(n: int, s: int, std_scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel Gaussian posteriors N(mu, sigma^2); truth drawn from it, samples with sigma * std_scale."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(n, 4, 12, 12))
    sigma = rng.uniform(0.2, 2.0, size=(n, 4, 12, 12))
    truth = mu + sigma * rng.normal(size=mu.shape)
    samples = mu[:, None] + std_scale * sigma[:, None] * rng.normal(size=(n, s, *mu.shape[1:]))
    return samples.astype(np.float32), truth.astype(np.float32)


def test_calibrated_toy_has_unit_z_and_an_overconfident_one_twice_that():
    samples, truth = _toy(40, 200, 1.0, seed=0)
    z, dropped = pixel_z(samples, truth)
    assert dropped == 0 and z.size == truth.size
    assert abs(z.mean()) < 0.03
    assert z.std() == pytest.approx(1.0, abs=0.03)
    assert ideal_z_std(200) == pytest.approx(1.0, abs=0.01)
    over, truth2 = _toy(40, 200, 0.5, seed=1)
    z_over, _ = pixel_z(over, truth2)
    assert z_over.std() == pytest.approx(2.0, rel=0.05)


def test_few_samples_inflate_z_as_the_student_t_reference_says():
    samples, truth = _toy(300, 8, 1.0, seed=2)
    z, _ = pixel_z(samples, truth)
    assert ideal_z_std(8) == pytest.approx(1.2550, abs=1e-3)
    assert z.std() == pytest.approx(ideal_z_std(8), rel=0.04)


def test_zero_sample_std_pixels_are_left_out_and_the_table_has_the_contract_columns(tmp_path):
    paths = [tmp_path / "posterior_hsc.npz", tmp_path / "posterior_legacysurvey.npz"]
    for p, d in zip(paths, ("hsc", "legacysurvey"), strict=True):
        post = _planted(p, d, n=4, s=6)
        post["samples"][0, :, 0, :2, :] = 1.5  # 32 pixels whose samples agree exactly
        write_npz(p, **post)
    z, dropped = pixel_z(load_posterior(paths[0])["samples"], load_posterior(paths[0])["target"])
    assert dropped == 32 and np.isfinite(z).all() and z.size == 4 * 4 * 16 * 16 - 32
    df = run_calibration(paths, tmp_path / "fig9.png", tmp_path / "calibration.csv")
    table = pd.read_csv(tmp_path / "calibration.csv")
    assert list(table.columns)[:4] == ["direction", "n_pixels", "z_mean", "z_std"]
    assert table.loc[0, "n_pixels"] == 4 * 4 * 16 * 16 - 32
    # planted samples = target + noise, so the target sits near the mean: |Z| is small, not N(0,1)
    assert (df["z_std"] < 0.8).all()
    assert (tmp_path / "fig9.png").stat().st_size > 10_000
