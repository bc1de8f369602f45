"""Observing conditions of one survey over the patch, and what they imply.

Per band: PSF FWHM (Moffat), sky noise per pixel and number of exposures. Seeing
and sky level vary smoothly (shared-across-bands plus per-band random fields)
and jump at tile edges (each tile is its own coadd); the exposure count is a
per-tile integer and deepens the sky as sqrt(N). Depths are *derived* from the
sky noise and the PSF's noise-equivalent area (NEA), so the catalogue's depth
columns are consistent with ``image_ivar`` by construction, as in a real
pipeline: 5-sigma flux = 5 * sigma_pix * sqrt(NEA).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from whatsreal.sim.fields import SmoothField, Tiling
from whatsreal.sim.psf import PsfModel, psf_model
from whatsreal.surveys import Survey

__all__ = ["SurveyConditions"]


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
    psf: PsfModel = field(init=False)

    def __post_init__(self) -> None:
        bands = self.survey.bands
        nb = len(bands)
        mk = lambda: SmoothField(  # noqa: E731 - a local factory keeps the five calls readable
            self.width_arcmin,
            self.height_arcmin,
            self.fields_cfg["correlation_arcmin"],
            self.fields_cfg["grid_arcmin"],
            self.rng,
        )
        self._seeing_shared = mk()
        self._seeing_band = [mk() for _ in range(nb)]
        self._psf_g1, self._psf_g2 = mk(), mk()
        self._sky_shared = mk()
        self._sky_band = [mk() for _ in range(nb)]
        self.tiling = Tiling(self.width_arcmin, self.height_arcmin, self.cfg["tile_arcmin"], self.rng)
        self._tile_seeing = self.rng.standard_normal((*self.tiling.shape, nb))
        self._tile_nobs = 1 + self.rng.poisson(self.cfg["nexp_mean"] - 1, size=(*self.tiling.shape, nb))
        self.psf = psf_model(self.cfg["psf_beta"], self.survey.pixel_scale)
        fwhm0 = np.array([self.cfg["psf_fwhm_arcsec"][b] for b in bands])
        depth0 = np.array([self.cfg["depth_mag"][b] for b in bands])
        self._fwhm0 = fwhm0
        # Sky sigma per pixel that gives the nominal depth at nominal seeing and exposures.
        flux5 = 10 ** (-0.4 * (depth0 - self.survey.zero_point))
        self._sigma0 = flux5 / (5.0 * np.sqrt(self.psf.nea_psf(fwhm0)))

    def at(self, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """Conditions at offsets (x, y) in arcmin; per-band arrays are (N, B)."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        cfg = self.cfg
        shared = self._seeing_shared(x, y)[:, None]
        per_band = np.stack([f(x, y) for f in self._seeing_band], axis=1)
        tile = self.tiling.lookup(x, y, self._tile_seeing)
        log_fwhm = (
            np.log10(self._fwhm0)[None, :]
            + cfg["psf_fwhm_scatter_dex"] * (0.8 * shared + 0.6 * per_band)
            + cfg["psf_tile_scatter_dex"] * tile
        )
        fwhm = 10**log_fwhm
        nobs = self.tiling.lookup(x, y, self._tile_nobs).astype(np.int16)
        sky = cfg["depth_scatter_mag"] * (
            0.6 * self._sky_shared(x, y)[:, None] + 0.8 * np.stack([f(x, y) for f in self._sky_band], axis=1)
        )
        sigma_pix = self._sigma0[None, :] * 10 ** (-0.4 * sky) * np.sqrt(cfg["nexp_mean"] / nobs)
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
