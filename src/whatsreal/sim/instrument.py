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
from functools import cached_property

import galsim
import numpy as np

from whatsreal.sim.fields import SmoothField, Tiling
from whatsreal.surveys import Survey

__all__ = ["GALDEPTH_HALF_LIGHT_ARCSEC", "PsfModel", "SurveyConditions"]

GALDEPTH_HALF_LIGHT_ARCSEC = 0.45
"""Legacy's GALDEPTH is defined for a round exponential galaxy of this half-light radius."""
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(frozen=True)
class PsfModel:
    """A Moffat PSF family on one survey's pixel grid, with tabulated NEAs."""

    beta: float
    pixel_scale: float

    def profile(self, fwhm: float, g1: float = 0.0, g2: float = 0.0) -> galsim.GSObject:
        return galsim.Moffat(beta=self.beta, fwhm=fwhm).shear(g1=g1, g2=g2)

    @cached_property
    def _fwhm_grid(self) -> np.ndarray:
        return np.geomspace(0.25, 4.0, 33)

    def _nea_of(self, prof: galsim.GSObject) -> float:
        """NEA in pixels, 1 / sum(p^2) for the pixel-integrated unit-flux profile."""
        size = int(np.ceil(12 * 4.0 / self.pixel_scale)) | 1
        p = prof.withFlux(1.0).drawImage(nx=size, ny=size, scale=self.pixel_scale).array
        return float(1.0 / np.sum(p**2))

    @cached_property
    def _nea_psf_table(self) -> np.ndarray:
        return np.array([self._nea_of(self.profile(f)) for f in self._fwhm_grid])

    @cached_property
    def _nea_gal_table(self) -> np.ndarray:
        gal = galsim.Exponential(half_light_radius=GALDEPTH_HALF_LIGHT_ARCSEC)
        return np.array([self._nea_of(galsim.Convolve(gal, self.profile(f))) for f in self._fwhm_grid])

    def nea_psf(self, fwhm: np.ndarray) -> np.ndarray:
        """Point-source NEA (pixels) for PSFs of the given FWHM (arcsec)."""
        return np.exp(np.interp(np.log(fwhm), np.log(self._fwhm_grid), np.log(self._nea_psf_table)))

    def nea_gal(self, fwhm: np.ndarray) -> np.ndarray:
        """NEA (pixels) of Legacy's GALDEPTH reference galaxy seen through the PSF."""
        return np.exp(np.interp(np.log(fwhm), np.log(self._fwhm_grid), np.log(self._nea_gal_table)))


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
        self.psf = PsfModel(beta=self.cfg["psf_beta"], pixel_scale=self.survey.pixel_scale)
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
