"""The PSF: a Moffat profile, parametrised by the FWHM a survey would report.

Surveys measure PSF sizes on pixelated images, so their FWHM (HSC's
``image_psf_fwhm``, Legacy's ``PSFSIZE``) is that of the *effective* PSF,
atmosphere and optics convolved with the pixel. Conditions here are specified
the same way: :meth:`PsfModel.profile` returns the pre-pixel Moffat whose
pixel-convolved FWHM is the requested one, found by inverting a table measured
once per (beta, pixel scale). The noise-equivalent areas (NEA) that turn sky
noise into 5-sigma depths are tabulated on the same grid.
"""

from __future__ import annotations

from functools import cache, cached_property

import galsim
import numpy as np

__all__ = ["GALDEPTH_HALF_LIGHT_ARCSEC", "GSPARAMS", "PsfModel", "psf_model"]

GSPARAMS = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=2e-3)
"""Rendering accuracy: sub-percent flux errors at a fraction of the default cost."""
GALDEPTH_HALF_LIGHT_ARCSEC = 0.45
"""Legacy's GALDEPTH is defined for a round exponential galaxy of this half-light radius."""
_FINE = 10
"""Oversampling of the grid on which effective FWHMs are measured."""


class PsfModel:
    """A Moffat PSF family on one survey's pixel grid."""

    def __init__(self, beta: float, pixel_scale: float) -> None:
        self.beta = float(beta)
        self.pixel_scale = float(pixel_scale)
        self._grid = np.geomspace(0.2, 4.0, 41)  # intrinsic (pre-pixel) FWHM, arcsec

    @cached_property
    def _effective_grid(self) -> np.ndarray:
        """Pixel-convolved FWHM for each intrinsic FWHM of the grid, measured finely sampled."""
        pixel = galsim.Pixel(self.pixel_scale)
        fine = self.pixel_scale / _FINE
        out = []
        for f in self._grid:
            prof = galsim.Convolve(galsim.Moffat(beta=self.beta, fwhm=f), pixel)
            n = int(np.ceil(6 * f / fine + 6 * _FINE)) | 1
            img = prof.drawImage(nx=n, ny=n, scale=fine, method="no_pixel")
            out.append(img.calculateFWHM())
        return np.array(out)

    @property
    def min_fwhm(self) -> float:
        """Smallest effective FWHM (arcsec) the model represents: about the pixel itself."""
        return float(self._effective_grid[0] * 1.01)

    @property
    def max_fwhm(self) -> float:
        """Largest effective FWHM (arcsec) the model represents, past any survey's worst seeing."""
        return float(self._grid[-1] * 0.99)

    def intrinsic_fwhm(self, effective_fwhm: float | np.ndarray) -> np.ndarray:
        """The pre-pixel Moffat FWHM whose pixel-convolved FWHM is ``effective_fwhm``."""
        eff = np.asarray(effective_fwhm, dtype=float)
        if np.any(eff <= self._effective_grid[0]) or np.any(eff > self._grid[-1]):
            raise ValueError(
                f"PSF FWHM {eff} outside the modelled range ({self._effective_grid[0]:.2f}, {self._grid[-1]:.2f}] "
                f'arcsec at {self.pixel_scale}"/pixel'
            )
        return np.interp(eff, self._effective_grid, self._grid)

    def profile(self, fwhm: float, g1: float = 0.0, g2: float = 0.0) -> galsim.GSObject:
        """The pre-pixel PSF whose drawn (pixel-convolved) FWHM is ``fwhm`` arcsec."""
        intrinsic = float(self.intrinsic_fwhm(fwhm))
        return galsim.Moffat(beta=self.beta, fwhm=intrinsic, gsparams=GSPARAMS).shear(g1=g1, g2=g2)

    def _nea_of(self, prof: galsim.GSObject) -> float:
        """NEA in pixels: 1 / sum(p^2) for the pixel-integrated unit-flux profile."""
        size = int(np.ceil(12 * 4.0 / self.pixel_scale)) | 1
        p = prof.withFlux(1.0).drawImage(nx=size, ny=size, scale=self.pixel_scale).array
        return float(1.0 / np.sum(p**2))

    @cached_property
    def _nea_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        eff = np.geomspace(self._effective_grid[0] * 1.01, self.max_fwhm, 41)
        gal = galsim.Exponential(half_light_radius=GALDEPTH_HALF_LIGHT_ARCSEC)
        psf = [self.profile(f) for f in eff]
        return (
            eff,
            np.array([self._nea_of(p) for p in psf]),
            np.array([self._nea_of(galsim.Convolve(gal, p)) for p in psf]),
        )

    def nea_psf(self, fwhm: np.ndarray) -> np.ndarray:
        """Point-source NEA (pixels) for PSFs of the given (effective) FWHM in arcsec."""
        eff, nea, _ = self._nea_tables
        return np.exp(np.interp(np.log(fwhm), np.log(eff), np.log(nea)))

    def nea_gal(self, fwhm: np.ndarray) -> np.ndarray:
        """NEA (pixels) of Legacy's GALDEPTH reference galaxy seen through the PSF."""
        eff, _, nea = self._nea_tables
        return np.exp(np.interp(np.log(fwhm), np.log(eff), np.log(nea)))


@cache
def psf_model(beta: float, pixel_scale: float) -> PsfModel:
    """One shared model per (beta, pixel scale) and process: its tables are built once."""
    return PsfModel(beta, pixel_scale)
