"""Physics sanity of the synthetic sky: fluxes, PSF sizes, noise, and spatial coherence."""

from __future__ import annotations

import galsim
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from whatsreal.data.mmu import read_catalog, read_images
from whatsreal.sim.psf import psf_model
from whatsreal.sim.render import ObjectSpec, band_fluxes, render_stamp
from whatsreal.surveys import SURVEYS, depth_ivar_to_mag


def _spec(survey: str, **kw) -> ObjectSpec:
    nb = len(SURVEYS[survey].bands)
    base = dict(
        seed=(1, 2, 3),
        mags=(21.0,) * nb,
        galaxy_class="normal",
        half_light_radius=0.4,
        sersic_n=1.0,
        e1=0.1,
        e2=-0.05,
        offset_arcsec=(0.0, 0.0),
        psf_fwhm=(0.7,) * nb if survey == "hsc" else (1.3,) * nb,
        psf_g=(0.0, 0.0),
        sky_sigma=(0.05,) * nb,
    )
    base.update(kw)
    return ObjectSpec(**base)


@pytest.mark.parametrize("survey", list(SURVEYS))
@pytest.mark.parametrize("sersic_n", [1.0, 4.0])
def test_noiseless_flux_matches_magnitude_and_zero_point(survey, sersic_n):
    sv = SURVEYS[survey]
    mags = tuple(20.0 + 0.3 * k for k in range(len(sv.bands)))
    stamp = render_stamp(_spec(survey, mags=mags, sersic_n=sersic_n, half_light_radius=0.3), sv, 96, 3.5)
    expected = 10 ** (-0.4 * (np.array(mags) - sv.zero_point))
    measured = stamp.model.sum(axis=(1, 2))
    # A de Vaucouleurs profile keeps a little light outside a 16-25" stamp.
    np.testing.assert_allclose(measured, expected, rtol=0.03 if sersic_n == 4.0 else 0.005)


def _fwhm_of_star(image: np.ndarray, scale: float) -> float:
    """FWHM of a star image: interpolate it finely and measure around its centroid."""
    ii = galsim.InterpolatedImage(galsim.Image(image.astype(float), scale=scale), x_interpolant="lanczos5")
    fine = scale / 10
    drawn = ii.drawImage(nx=301, ny=301, scale=fine, method="no_pixel")
    return drawn.calculateFWHM(center=drawn.true_center + ii.centroid / fine)


@pytest.mark.parametrize(
    ("survey", "fwhms"), [("hsc", (0.55, 0.7, 0.85, 1.0, 1.2)), ("legacysurvey", (1.0, 1.3, 1.6, 2.0))]
)
def test_rendered_star_has_the_recorded_psf_fwhm(survey, fwhms):
    sv = SURVEYS[survey]
    spec = _spec(survey, half_light_radius=1e-3, psf_fwhm=fwhms, offset_arcsec=(0.04, -0.07))
    stamp = render_stamp(spec, sv, 64, 3.5)
    measured = [_fwhm_of_star(stamp.model[b], sv.pixel_scale) for b in range(len(fwhms))]
    np.testing.assert_allclose(measured, fwhms, rtol=0.03)


def test_image_noise_matches_ivar():
    sv = SURVEYS["hsc"]
    spec = _spec("hsc", mags=(30.0,) * 5, sky_sigma=(0.02, 0.03, 0.05, 0.08, 0.2))
    stamp = render_stamp(spec, sv, 64, 3.5)
    measured = stamp.image.reshape(5, -1).std(axis=1)
    expected = 1 / np.sqrt(stamp.ivar.reshape(5, -1).mean(axis=1))
    np.testing.assert_allclose(measured, expected, rtol=0.06)


def test_pathologies_are_visible_and_consistent():
    sv = SURVEYS["legacysurvey"]
    clean = render_stamp(_spec("legacysurvey"), sv, 64, 3.5)
    noisy = render_stamp(_spec("legacysurvey", high_noise=True, high_noise_factor=6.0), sv, 64, 3.5)
    assert (noisy.ivar < clean.ivar.max() / 30).any(), "high-noise patch must lower ivar"
    resid = (noisy.image - noisy.model) * np.sqrt(noisy.ivar)
    assert 0.9 < resid.std() < 1.1, "noise in the patch must still match its ivar"
    sat = render_stamp(_spec("legacysurvey", saturated_star=True), sv, 64, 3.5)
    assert (~sat.mask).any() and (sat.ivar[~sat.mask] == 0).all(), "saturated pixels are masked, ivar 0"
    stripe = render_stamp(_spec("legacysurvey", stripe=True), sv, 64, 3.5)
    excess = (stripe.image - clean.image).max()
    assert excess > 3 * 0.05, "a stripe adds several sigma to some rows or columns"


def test_catalog_depths_agree_with_ivar_and_psf(tiny_sky):
    """Legacy PSFDEPTH must be what image_ivar and the PSF imply: 5 sigma_pix sqrt(NEA)."""
    cfg, raw, _ = tiny_sky
    sv = SURVEYS["legacysurvey"]
    cat = read_catalog(raw / "legacysurvey")
    psf = psf_model(cfg["simulation"]["surveys"]["legacysurvey"]["psf_beta"], sv.pixel_scale)
    checked = 0
    for file, grp in cat.groupby("file"):
        ivar = read_images(raw / "legacysurvey" / file, grp["row"].to_numpy()[:20], ("image_ivar",))["image_ivar"]
        for j, (_, row) in enumerate(grp.head(20).iterrows()):
            for k, b in enumerate(sv.bands):
                sigma = 1 / np.sqrt(np.median(ivar[j, k]))
                implied = sv.zero_point - 2.5 * np.log10(5 * sigma * np.sqrt(psf.nea_psf(row[f"PSFSIZE_{b.upper()}"])))
                assert depth_ivar_to_mag(row[f"PSFDEPTH_{b.upper()}"]) == pytest.approx(implied, abs=0.01)
                checked += 1
    assert checked > 0


def _pair_differences(x: np.ndarray, y: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    tree = cKDTree(np.column_stack([x, y]))
    near = np.array(sorted(tree.query_pairs(r=3.0)))
    rand = rng.integers(0, len(x), size=(len(near), 2))
    return float(np.median(np.abs(v[near[:, 0]] - v[near[:, 1]]))), float(
        np.median(np.abs(v[rand[:, 0]] - v[rand[:, 1]]))
    )


@pytest.mark.parametrize("survey", list(SURVEYS))
@pytest.mark.parametrize("quantity", ["psf_fwhm_r", "psfdepth_mag_r", "sky_sigma_i"])
def test_neighbours_share_conditions(tiny_sky, survey, quantity):
    """Objects within 3' see much more similar conditions than random pairs."""
    _, raw, _ = tiny_sky
    truth = pd.read_parquet(raw / "truth.parquet")
    t = truth[truth[f"in_{survey}"]]
    ra, dec = t[f"{survey}_ra"].to_numpy(), t[f"{survey}_dec"].to_numpy()
    x = (ra - ra.mean()) * np.cos(np.radians(dec.mean())) * 60
    y = (dec - dec.mean()) * 60
    near, rand = _pair_differences(x, y, t[f"{survey}_{quantity}"].to_numpy(), np.random.default_rng(0))
    assert near < 0.5 * rand, f"{survey} {quantity}: neighbours differ by {near:.4f}, random pairs by {rand:.4f}"


def test_truth_is_physically_wired(tiny_sky):
    _, raw, _ = tiny_sky
    truth = pd.read_parquet(raw / "truth.parquet")
    # Farther galaxies of the same mass are fainter and smaller on the sky.
    mid = truth[(truth["log_mstar"] > 10.0) & (truth["log_mstar"] < 10.5)]
    assert np.corrcoef(mid["redshift"], mid["mag_r"])[0, 1] > 0.5
    assert np.corrcoef(mid["redshift"], np.log(mid["half_light_radius_arcsec"]))[0, 1] < -0.2
    # Quenched galaxies are redder and more concentrated.
    q, sf = truth[truth["quenched"]], truth[~truth["quenched"]]
    assert (q["mag_g"] - q["mag_r"]).median() > (sf["mag_g"] - sf["mag_r"]).median() + 0.1
    assert q["sersic_n"].median() > sf["sersic_n"].median() + 1.0
    # Rare classes exist and carry their extra components.
    classes = set(truth["galaxy_class"].astype(str))
    assert {"normal", "merger", "lens"} <= classes
    assert truth.loc[truth["galaxy_class"] == "lens", "einstein_radius_arcsec"].notna().all()
    assert truth.loc[truth["galaxy_class"] == "normal", "einstein_radius_arcsec"].isna().all()


def test_band_fluxes_zero_points():
    assert band_fluxes(27.0, 27.0) == pytest.approx(1.0)
    assert band_fluxes(22.5, 22.5) == pytest.approx(1.0)
    assert band_fluxes(20.0, 22.5) == pytest.approx(10.0)
