"""The surveys' catalogue columns, in MMU names, units and dtypes.

Measured quantities are the truth plus measurement noise set by the local
conditions: flux errors from the sky sigma and the object's noise-equivalent
area (Gaussian approximation of galaxy convolved with PSF), shapes from
Gaussian-equivalent second moments with S/N-scaled scatter. The selection cut
is applied to these *measured* magnitudes, as a survey would.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from whatsreal.surveys import HSC_CATALOG_ZERO_POINT, Survey, mag_to_depth_ivar

__all__ = ["hsc_catalog", "legacysurvey_catalog", "measured_fluxes", "object_nea"]

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
HLR_PER_SIGMA = np.sqrt(2.0 * np.log(2.0))  # half-light radius of a Gaussian in units of its sigma


def _shear_moments(sigma2: np.ndarray, g1: np.ndarray, g2: np.ndarray) -> tuple[np.ndarray, ...]:
    """Second moments (xx, yy, xy) of a profile of size sigma^2 sheared by (g1, g2);
    the determinant stays sigma^4, as for a GalSim shear."""
    g2sq = g1**2 + g2**2
    norm = sigma2 / (1 - g2sq)
    return norm * ((1 + g1) ** 2 + g2**2), norm * ((1 - g1) ** 2 + g2**2), norm * 2 * g2


def object_nea(re_arcsec: np.ndarray, fwhm: np.ndarray, scale: float) -> np.ndarray:
    """Noise-equivalent area (pixels) of a galaxy of half-light radius ``re`` seen
    through a PSF of ``fwhm``, in the Gaussian approximation 4*pi*sigma_tot^2."""
    sig2 = (np.asarray(re_arcsec)[:, None] / HLR_PER_SIGMA) ** 2 + (fwhm / FWHM_PER_SIGMA) ** 2
    return 4 * np.pi * sig2 / scale**2


def measured_fluxes(
    true_flux: np.ndarray, sigma_pix: np.ndarray, nea: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Measured flux and its 1-sigma error, both in image units."""
    err = sigma_pix * np.sqrt(nea)
    return true_flux + err * rng.standard_normal(true_flux.shape), err


def _snr(flux: np.ndarray, err: np.ndarray) -> np.ndarray:
    return np.clip(np.abs(flux) / err, 1.0, None)


def hsc_catalog(
    survey: Survey,
    obs: pd.DataFrame,
    cond: dict[str, np.ndarray],
    ebv: np.ndarray,
    flux: np.ndarray,
    err: np.ndarray,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """HSC PDR3 columns (lower case) for the objects in ``obs``."""
    n = len(obs)
    to_njy = 10 ** (-0.4 * (survey.zero_point - HSC_CATALOG_ZERO_POINT))
    cols: dict[str, np.ndarray] = {
        "tract": np.full(n, 9813, dtype=np.int32),
        "patch": (cond["tile_x"] * 100 + cond["tile_y"]).astype(np.int32),
    }
    snr_i = _snr(flux[:, survey.band_index("i")], err[:, survey.band_index("i")])
    sig2_gal = (obs["half_light_radius_arcsec"].to_numpy() / HLR_PER_SIGMA) ** 2
    for k, b in enumerate(survey.bands):
        r = survey.extinction_coeff[k]
        cols[f"a_{b}"] = (r * ebv).astype(np.float32)
        cols[f"{b}_extendedness_value"] = np.ones(n, dtype=np.float32)
        f_njy, e_njy = flux[:, k] * to_njy, err[:, k] * to_njy
        with np.errstate(invalid="ignore", divide="ignore"):
            mag = np.where(f_njy > 0, HSC_CATALOG_ZERO_POINT - 2.5 * np.log10(f_njy), np.nan)
        cols[f"{b}_cmodel_mag"] = mag.astype(np.float32)
        cols[f"{b}_cmodel_magerr"] = (2.5 / np.log(10) * e_njy / np.abs(f_njy)).astype(np.float32)
        cols[f"{b}_cmodel_flux"] = f_njy.astype(np.float32)
        cols[f"{b}_cmodel_fluxerr"] = e_njy.astype(np.float32)
        psf2 = (cond["psf_fwhm"][:, k] / FWHM_PER_SIGMA) ** 2
        p11, p22, p12 = _shear_moments(psf2, cond["psf_g1"], cond["psf_g2"])
        g11, g22, g12 = _shear_moments(sig2_gal, obs["e1"].to_numpy(), obs["e2"].to_numpy())
        noise = 1.0 / snr_i
        for name, gal, psf in (("11", g11, p11), ("22", g22, p22), ("12", g12, p12)):
            scatter = noise * np.sqrt(g11 + p11) * np.sqrt(g22 + p22) * rng.standard_normal(n)
            cols[f"{b}_sdssshape_shape{name}"] = (gal + psf + scatter).astype(np.float32)
            cols[f"{b}_sdssshape_psf_shape{name}"] = psf.astype(np.float32)
    return pd.DataFrame(cols, index=obs.index)


def _brick(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Legacy Survey brick names (0.25 deg bricks) like b'0450p047'."""
    rac = np.round(ra * 4) / 4
    decc = np.round(dec * 4) / 4
    return np.array(
        [f"{r * 10:04.0f}{'p' if d >= 0 else 'm'}{abs(d) * 10:03.0f}".encode() for r, d in zip(rac, decc, strict=True)],
        dtype="S8",
    )


def legacysurvey_catalog(
    survey: Survey,
    obs: pd.DataFrame,
    cond: dict[str, np.ndarray],
    ebv: np.ndarray,
    flux: np.ndarray,
    err: np.ndarray,
    ra: np.ndarray,
    dec: np.ndarray,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Legacy DR10 sweep columns (upper case) for the objects in ``obs``."""
    n = len(obs)
    brick = _brick(ra, dec)
    objid = np.zeros(n, dtype=np.int32)
    for name in np.unique(brick):
        sel = np.flatnonzero(brick == name)
        objid[sel] = rng.permutation(sel.size) + rng.integers(0, 3000)
    snr_z = _snr(flux[:, survey.band_index("z")], err[:, survey.band_index("z")])
    sersic = obs["sersic_n"].to_numpy()
    re = obs["half_light_radius_arcsec"].to_numpy()
    cols: dict[str, np.ndarray] = {
        "RA": ra,
        "DEC": dec,
        "BRICKNAME": brick,
        "OBJID": objid,
        "TYPE": np.where(sersic < 1.5, b"EXP", np.where(sersic > 3.0, b"DEV", b"SER")).astype("S3"),
        "SERSIC": sersic.astype(np.float32),
        "EBV": ebv.astype(np.float32),
        "SHAPE_R": (re * (1 + rng.standard_normal(n) / snr_z)).astype(np.float32),
        "SHAPE_E1": (obs["e1"].to_numpy() + rng.standard_normal(n) / snr_z).astype(np.float32),
        "SHAPE_E2": (obs["e2"].to_numpy() + rng.standard_normal(n) / snr_z).astype(np.float32),
        "MASKBITS": np.zeros(n, dtype=np.int16),
    }
    for k, b in enumerate(survey.bands):
        B = b.upper()
        cols[f"FLUX_{B}"] = flux[:, k].astype(np.float32)
        cols[f"FLUX_IVAR_{B}"] = (1.0 / err[:, k] ** 2).astype(np.float32)
        cols[f"MW_TRANSMISSION_{B}"] = (10 ** (-0.4 * survey.extinction_coeff[k] * ebv)).astype(np.float32)
        cols[f"NOBS_{B}"] = cond["nobs"][:, k].astype(np.int16)
        cols[f"PSFSIZE_{B}"] = cond["psf_fwhm"][:, k].astype(np.float32)
        cols[f"PSFDEPTH_{B}"] = mag_to_depth_ivar(cond["psfdepth_mag"][:, k], survey.zero_point).astype(np.float32)
        cols[f"GALDEPTH_{B}"] = mag_to_depth_ivar(cond["galdepth_mag"][:, k], survey.zero_point).astype(np.float32)
    return pd.DataFrame(cols, index=obs.index)
