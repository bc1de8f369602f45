"""Observing conditions of one survey over the patch, and what they imply.

Per band: PSF FWHM (Moffat), sky noise per pixel and number of exposures.

**Distributions.** The instrument encoder can only learn conditions that vary, so
they vary as much as in the real surveys. Per object and band,

- ``log10 FWHM = log10(median) + psf_fwhm_scatter_dex * S(g, psf_fwhm_tail)``,
- ``sky sigma = sigma_0 * 10**(0.4 * sky_scatter_mag * S(g', sky_tail)) * sqrt(nexp / nobs)``,
- ``nobs = 1 + Poisson(nexp - 1)`` per tile (median ``nexp``; stratified over the tiles),
  or a binomial of the same mean and ``nexp_dispersion`` times its variance (HSC's
  dithers cover the area more evenly than DECaLS's independent passes),

where g, g' are standard-normal scores and S is
:func:`~whatsreal.sim.fields.tail_stretch` (log-normal below the median, a longer
tail toward bad seeing and bright sky above it, truncated at 3 sigma). sigma_0 is
the sky noise that gives the configured median 5-sigma point-source depth
``depth_mag`` at the median FWHM and ``nexp`` exposures. Depths are *derived* from
the sky noise and the PSF's noise-equivalent area (NEA), 5-sigma flux =
5 sigma_pix sqrt(NEA), so the catalogue's depth columns agree with ``image_ivar``
by construction, as in a real pipeline; depth, sky sigma and exposure count are
three related but different quantities (depth also worsens with seeing).

**Spatial structure.** Each score is a mix of a smooth random field (kernel
``fields.correlation_arcmin``; a part shared by all bands, correlation
``band_correlation``) and a tile part that jumps at tile edges (fraction
``tile_fraction`` of the variance; tiles of ``tile_arcmin``, about one CCD of the
dithered exposures), mapped to exact N(0, 1) over the survey's footprint
(:class:`~whatsreal.sim.fields.QuantileNormaliser`). Objects within 3' (the
instrument encoder's neighbours) therefore share their conditions, while a
60' x 60' patch holds ~100 independent cells and ~45-100 tiles and spans the
whole configured distribution.

**Where the default numbers come from** (``simulation.surveys.*`` in the config
schema; the same list is in config/README.md). Values marked ~ are approximations
read from the papers' figures and text, not exact table entries.

- HSC-SSP PDR3 (Aihara et al. 2022, PASJ 74, 247; the HSC-SSP survey pages): Wide
  layer to ~26 mag (5 sigma, point source) in all bands at full depth; median
  i-band seeing ~0.6", the other bands ~0.7-0.8" (defaults g 0.77, r 0.74, i 0.62,
  z 0.68, y 0.70 and depths 26.6, 26.2, 26.0, 25.3, 24.5, ~). Nominal exposure
  10 min in g, r (4 x 2.5 min) and 20 min in i, z, y (Aihara et al. 2019, PDR2;
  taken here as 6 exposures, ~), the dithers covering the area about evenly
  (``nexp_dispersion`` 0.4: 2-6 exposures in g, r and 4-8 in i, z, y, 5-95%, ~).
  The per-object seeing spread (i: 5-95% ~0.47-0.9", range ~0.4-1.0") gives
  0.075 dex with a 0.2 tail; the depth spread (several tenths of a mag, with a
  shallow tail from partially-covered and bright-sky regions) gives 0.2 mag of sky
  scatter on top of the exposure-count term (~). MMU's HSC sample (``pdr3_dud_22.5``) is the Deep and
  UltraDeep layers, ~1 and ~2 mag deeper than Wide (r ~27 and ~28, survey pages);
  raise ``depth_mag`` by 1 for a Deep-like sky.
- DESI Legacy Imaging Surveys DR10 south, DECam (Dey et al. 2019, AJ 157, 168;
  legacysurvey.org DECaLS and DR10 pages): DECaLS point-source depth goals
  g 24.7, r 23.9, z 23.0 (the defaults; i 23.4 interpolated, ~), met in median
  conditions with three passes whose per-pass depth is kept nearly uniform by
  dynamic exposure times (hence a smaller sky scatter, 0.15 mag); the DESI galaxy
  depth requirement (0.45" exponential) is g 24.0, r 23.4, z 22.5, which the
  simulated GALDEPTH meets over ~70-80% of the default patch (the survey aimed at
  ~90%: these depths are if anything a little shallow). Seeing ~1.0-2.0" with
  median ~1.3" in r (defaults g 1.45, r 1.30, i 1.20, z 1.15, ~), 0.061 dex with a
  0.3 tail toward bad seeing. Exposure counts: median 3 per band (three passes),
  independent passes (Poisson, 1 to 5 per position 5-95%; DR5 release notes: of
  the g-band area ~40% has 3 or more passes and ~30% only one, ~).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import binom, poisson

from whatsreal.sim.fields import QuantileNormaliser, SmoothField, Tiling, region_grid, tail_stretch
from whatsreal.sim.psf import PsfModel, psf_model
from whatsreal.surveys import Survey

__all__ = ["SCORE_CLIP", "SurveyConditions", "exposure_cdf"]

SCORE_CLIP = 3.0
"""Condition scores are truncated at this many sigma: the PSF tables must cover the extremes."""


def _extra_exposures(nexp: float, dispersion: float) -> Any:
    """The law of ``nobs - 1`` (a frozen scipy distribution): mean ``nexp - 1``, variance
    ``dispersion`` times that; None when every tile has exactly one exposure.

    Poisson for ``dispersion`` = 1 (independent passes, as DECaLS's), binomial below
    (a dithering pattern that covers most of the area about equally often, as HSC's).
    """
    mean = nexp - 1.0
    if mean <= 0:
        return None
    if dispersion >= 1.0:
        return poisson(mean)
    trials = max(round(mean / (1.0 - dispersion)), int(np.ceil(mean)))
    return binom(trials, mean / trials)


def exposure_cdf(nobs: np.ndarray | int, nexp: float, dispersion: float) -> np.ndarray:
    """P(exposure count <= ``nobs``) for a band configured with ``nexp`` and ``nexp_dispersion``."""
    law = _extra_exposures(nexp, dispersion)
    nobs = np.asarray(nobs, dtype=float)
    return (nobs >= 1).astype(float) if law is None else law.cdf(nobs - 1)


def _stratified_exposures(
    nexp: np.ndarray, dispersion: float, shape: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Exposure counts per tile and band, (nx, ny, B), by stratified sampling of their law
    (see :func:`exposure_cdf`).

    Tiles are ranked at random and tile k of n gets the law's quantile at (k + 1/2) / n,
    so even a few dozen tiles hold the configured mix of shallow and deep coverage (iid
    draws would leave the median to chance).
    """
    n = int(np.prod(shape))
    out = np.ones((n, nexp.size), dtype=np.int64)
    for k, mean in enumerate(nexp):
        u = (np.argsort(rng.permutation(n)) + 0.5) / n
        law = _extra_exposures(float(mean), dispersion)
        if law is not None:
            out[:, k] += law.ppf(u).astype(np.int64)
    return out.reshape(*shape, nexp.size)


@dataclass
class SurveyConditions:
    """Observing conditions of one survey, evaluable at any position in the patch."""

    survey: Survey
    cfg: dict
    """The survey's ``simulation.surveys.<name>`` config block."""
    width_arcmin: float
    height_arcmin: float
    fields_cfg: dict
    rng: np.random.Generator
    region: tuple[float, float, float, float] | None = None
    """(x0, x1, y0, y1) arcmin: where the distributions are pinned (the survey's footprint);
    the whole patch when None."""
    psf: PsfModel = field(init=False)

    def __post_init__(self) -> None:
        bands = self.survey.bands
        nb = len(bands)
        cfg = self.cfg
        mk = lambda: SmoothField(  # noqa: E731 - a local factory keeps the calls readable
            self.width_arcmin,
            self.height_arcmin,
            self.fields_cfg["correlation_arcmin"],
            self.fields_cfg["grid_arcmin"],
            self.rng,
        )
        # Draw order is part of the sky's definition: changing it changes every condition.
        self._seeing_smooth = [mk() for _ in range(nb + 1)]  # [shared, per band...]
        self._sky_smooth = [mk() for _ in range(nb + 1)]
        self._psf_g1, self._psf_g2 = mk(), mk()
        self.tiling = Tiling(self.width_arcmin, self.height_arcmin, cfg["tile_arcmin"], self.rng)
        self._seeing_tile = self.rng.standard_normal((*self.tiling.shape, nb + 1))
        self._sky_tile = self.rng.standard_normal((*self.tiling.shape, nb + 1))
        self._nexp = np.array([cfg["nexp"][b] for b in bands], dtype=float)
        if np.any(self._nexp < 1):
            raise ValueError(f"simulation.surveys.{self.survey.name}.nexp: every band needs at least 1 exposure")
        self._tile_nobs = _stratified_exposures(self._nexp, cfg["nexp_dispersion"], self.tiling.shape, self.rng)
        self.psf = psf_model(cfg["psf_beta"], self.survey.pixel_scale)
        self._fwhm0 = np.array([cfg["psf_fwhm_arcsec"][b] for b in bands])
        self._check_psf_range()
        depth0 = np.array([cfg["depth_mag"][b] for b in bands])
        # Sky sigma per pixel that gives the median depth at median seeing and nexp exposures.
        flux5 = 10 ** (-0.4 * (depth0 - self.survey.zero_point))
        self._sigma0 = flux5 / (5.0 * np.sqrt(self.psf.nea_psf(self._fwhm0)))

        x0, x1, y0, y1 = self.region or (
            -self.width_arcmin / 2,
            self.width_arcmin / 2,
            -self.height_arcmin / 2,
            self.height_arcmin / 2,
        )
        gx, gy = region_grid((x0, x1), (y0, y1), self.fields_cfg["grid_arcmin"] / 2)
        seeing_ref = self._raw(gx, gy, self._seeing_smooth, self._seeing_tile)
        sky_ref = self._raw(gx, gy, self._sky_smooth, self._sky_tile)
        self._seeing_norm = [QuantileNormaliser(seeing_ref[:, k], SCORE_CLIP) for k in range(nb)]
        self._sky_norm = [QuantileNormaliser(sky_ref[:, k], SCORE_CLIP) for k in range(nb)]

    @property
    def reference_sky_sigma(self) -> np.ndarray:
        """Per band, the sky sigma at median seeing, median sky and ``nexp`` exposures: the
        scale of the configured sky-noise distribution."""
        return self._sigma0.copy()

    def _check_psf_range(self) -> None:
        """The extreme seeing the distribution allows must be one the PSF model can draw."""
        sd, tail = self.cfg["psf_fwhm_scatter_dex"], self.cfg["psf_fwhm_tail"]
        lo = self._fwhm0 * 10 ** (-sd * SCORE_CLIP)
        hi = self._fwhm0 * 10 ** (sd * float(tail_stretch(SCORE_CLIP, tail)))
        if lo.min() <= self.psf.min_fwhm or hi.max() >= self.psf.max_fwhm:
            raise ValueError(
                f"simulation.surveys.{self.survey.name}: psf_fwhm_arcsec, psf_fwhm_scatter_dex and psf_fwhm_tail "
                f'give seeing from {lo.min():.2f}" to {hi.max():.2f}" at {SCORE_CLIP:g} sigma; the PSF model covers '
                f'{self.psf.min_fwhm:.2f}" to {self.psf.max_fwhm:.2f}" at {self.survey.pixel_scale}"/pixel'
            )

    def _raw(self, x: np.ndarray, y: np.ndarray, smooth: list[SmoothField], tile: np.ndarray) -> np.ndarray:
        """Unnormalised scores (N, B): smooth and tile parts, each a shared plus a per-band term."""
        rho, w = self.cfg["band_correlation"], self.cfg["tile_fraction"]
        a, b = np.sqrt(rho), np.sqrt(1.0 - rho)
        shared = smooth[0](x, y)
        tiles = self.tiling.lookup(x, y, tile)
        out = np.empty((np.size(x), len(smooth) - 1))
        for k, f in enumerate(smooth[1:]):
            s = a * shared + b * f(x, y)
            t = a * tiles[:, 0] + b * tiles[:, k + 1]
            out[:, k] = np.sqrt(1.0 - w) * s + np.sqrt(w) * t
        return out

    def scores(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Standard-normal seeing and sky scores (N, B) at offsets (x, y): N(0, 1) over the region."""
        x = np.ravel(np.asarray(x, dtype=float))
        y = np.ravel(np.asarray(y, dtype=float))
        seeing = self._raw(x, y, self._seeing_smooth, self._seeing_tile)
        sky = self._raw(x, y, self._sky_smooth, self._sky_tile)
        for k in range(seeing.shape[1]):
            seeing[:, k] = self._seeing_norm[k](seeing[:, k])
            sky[:, k] = self._sky_norm[k](sky[:, k])
        return seeing, sky

    def at(self, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """Conditions at offsets (x, y) in arcmin; per-band arrays are (N, B)."""
        x = np.ravel(np.asarray(x, dtype=float))
        y = np.ravel(np.asarray(y, dtype=float))
        cfg = self.cfg
        g_seeing, g_sky = self.scores(x, y)
        fwhm = self._fwhm0[None, :] * 10 ** (cfg["psf_fwhm_scatter_dex"] * tail_stretch(g_seeing, cfg["psf_fwhm_tail"]))
        nobs = self.tiling.lookup(x, y, self._tile_nobs).astype(np.int16)
        sky = cfg["sky_scatter_mag"] * tail_stretch(g_sky, cfg["sky_tail"])
        sigma_pix = self._sigma0[None, :] * 10 ** (0.4 * sky) * np.sqrt(self._nexp[None, :] / nobs)
        zp = self.survey.zero_point
        psfdepth = zp - 2.5 * np.log10(5 * sigma_pix * np.sqrt(self.psf.nea_psf(fwhm)))
        galdepth = zp - 2.5 * np.log10(5 * sigma_pix * np.sqrt(self.psf.nea_gal(fwhm)))
        e_sigma = cfg["psf_ellipticity_sigma"]
        ix, iy = self.tiling.index(x, y)
        return {
            "psf_fwhm": fwhm,
            "psf_g1": e_sigma * self._psf_g1(x, y),
            "psf_g2": e_sigma * self._psf_g2(x, y),
            "nobs": nobs,
            "sky_sigma": sigma_pix,
            "psfdepth_mag": psfdepth,
            "galdepth_mag": galdepth,
            "tile_x": ix,
            "tile_y": iy,
        }
