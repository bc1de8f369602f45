"""The sky patch: a tangent-plane box around a centre, handled with astropy.

Positions are drawn and fields are evaluated in arcminute offsets (x east, y
north) from the patch centre, in astropy's ``SkyOffsetFrame``, so patches at any
declination keep their shape and area.
"""

from __future__ import annotations

from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy_healpix import HEALPix

from whatsreal.surveys import HEALPIX_NSIDE

__all__ = ["Patch", "healpix_of"]


@dataclass(frozen=True)
class Patch:
    """A rectangular patch of sky in offset coordinates (arcmin)."""

    ra_center: float
    dec_center: float
    width_arcmin: float
    height_arcmin: float

    @classmethod
    def from_config(cls, footprint: dict) -> Patch:
        return cls(
            float(footprint["ra_center"]),
            float(footprint["dec_center"]),
            float(footprint["width_arcmin"]),
            float(footprint["height_arcmin"]),
        )

    @property
    def area_arcmin2(self) -> float:
        return self.width_arcmin * self.height_arcmin

    @property
    def center(self) -> SkyCoord:
        return SkyCoord(self.ra_center * u.deg, self.dec_center * u.deg)

    def to_radec(self, x_arcmin: np.ndarray, y_arcmin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Offsets (arcmin) to ICRS RA/Dec in degrees."""
        frame = self.center.skyoffset_frame()
        offs = SkyCoord(lon=np.asarray(x_arcmin) * u.arcmin, lat=np.asarray(y_arcmin) * u.arcmin, frame=frame)
        icrs = offs.icrs
        return icrs.ra.deg, icrs.dec.deg

    def to_offsets(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ICRS RA/Dec (deg) to offsets (arcmin) from the centre."""
        c = SkyCoord(np.asarray(ra) * u.deg, np.asarray(dec) * u.deg).transform_to(self.center.skyoffset_frame())
        return c.lon.wrap_at(180 * u.deg).arcmin, c.lat.arcmin

    def in_fraction_box(
        self, x: np.ndarray, y: np.ndarray, ra_min: float, ra_max: float, dec_min: float, dec_max: float
    ) -> np.ndarray:
        """True where (x, y) lies in the sub-box given as fractions of the patch extent."""
        fx = x / self.width_arcmin + 0.5
        fy = y / self.height_arcmin + 0.5
        return (fx >= ra_min) & (fx < ra_max) & (fy >= dec_min) & (fy < dec_max)


def healpix_of(ra: np.ndarray, dec: np.ndarray, nside: int = HEALPIX_NSIDE) -> np.ndarray:
    """Nested healpix index (MMU's sharding) of each position."""
    hp = HEALPix(nside=nside, order="nested")
    return np.asarray(hp.lonlat_to_healpix(np.asarray(ra) * u.deg, np.asarray(dec) * u.deg), dtype=np.int64)
