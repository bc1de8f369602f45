"""Fixed facts about the two surveys, as the Multimodal Universe (MMU) stores them.

These are properties of the instruments and of the MMU file format, not tunable
settings: pixel scales, photometric zero-points, band names and the extinction
coefficients that turn E(B-V) into per-band extinction. Observing *conditions*
(seeing, depth, exposure counts) are configuration and live in the config.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["HEALPIX_NSIDE", "SURVEYS", "SURVEY_ORDER", "Survey", "depth_ivar_to_mag", "mag_to_depth_ivar"]

HEALPIX_NSIDE = 16
"""MMU shards every dataset by nested healpix at this nside."""


@dataclass(frozen=True)
class Survey:
    """One survey's MMU conventions."""

    name: str
    bands: tuple[str, ...]
    """Short band names in file order, e.g. ('g', 'r', 'i', 'z', 'y')."""
    band_strings: tuple[str, ...]
    """The exact strings MMU writes into ``image_band``."""
    pixel_scale: float
    """Arcseconds per pixel."""
    zero_point: float
    """Magnitude of one image unit of flux (AB)."""
    extinction_coeff: tuple[float, ...]
    """R_b = A_b / E(B-V) per band (Schlafly & Finkbeiner 2011 style coefficients)."""
    mask_per_band: bool
    """HSC stores one mask per band; Legacy one mask shared by all bands."""

    def band_index(self, band: str) -> int:
        """Position of a short band name in this survey's arrays."""
        return self.bands.index(band)


SURVEYS: dict[str, Survey] = {
    "hsc": Survey(
        name="hsc",
        bands=("g", "r", "i", "z", "y"),
        band_strings=("hsc-g", "hsc-r", "hsc-i", "hsc-z", "hsc-y"),
        pixel_scale=0.168,
        zero_point=27.0,
        extinction_coeff=(3.240, 2.276, 1.633, 1.263, 1.075),
        mask_per_band=True,
    ),
    "legacysurvey": Survey(
        name="legacysurvey",
        bands=("g", "r", "i", "z"),
        band_strings=("des-g", "des-r", "des-i", "des-z"),
        pixel_scale=0.262,
        zero_point=22.5,
        extinction_coeff=(3.214, 2.165, 1.592, 1.211),
        mask_per_band=False,
    ),
}

HSC_CATALOG_ZERO_POINT = 31.4
"""HSC PDR3 catalogue fluxes (``*_cmodel_flux``) are in nJy, i.e. zero-point 31.4."""


def mag_to_depth_ivar(mag: ArrayLike, zero_point: float = 22.5) -> np.ndarray:
    """Legacy sweeps store PSFDEPTH/GALDEPTH as the inverse variance (1/nanomaggy^2)
    of a 5-sigma detection at ``mag``; this converts a depth in mag to that unit."""
    sigma = 10 ** (-0.4 * (np.asarray(mag, dtype=float) - zero_point)) / 5.0
    return 1.0 / sigma**2


def depth_ivar_to_mag(ivar: ArrayLike, zero_point: float = 22.5) -> np.ndarray:
    """Inverse of :func:`mag_to_depth_ivar`, elementwise."""
    return zero_point - 2.5 * np.log10(5.0 / np.sqrt(np.asarray(ivar, dtype=float)))


SURVEY_ORDER: tuple[str, ...] = tuple(SURVEYS)
"""Survey order wherever surveys are indexed (anchor codes, file lists): HSC = 0, Legacy = 1."""
