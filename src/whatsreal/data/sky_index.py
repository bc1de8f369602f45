"""Nearest-neighbour queries on the sphere.

Positions become unit vectors (astropy does the conversion); a k-d tree over
them answers angular queries exactly, because chord length is a monotonic
function of angle: an angle theta is a chord 2 sin(theta / 2). This is the same
approach astropy's own matching uses, without building a SkyCoord result per
pair, so a million objects take seconds.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from scipy.spatial import cKDTree

__all__ = ["angle_to_chord", "chord_to_angle_deg", "tree", "unit_vectors"]


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """(N, 3) Cartesian unit vectors of ICRS positions given in degrees."""
    c = SkyCoord(np.asarray(ra_deg, dtype=float) * u.deg, np.asarray(dec_deg, dtype=float) * u.deg)
    return np.ascontiguousarray(c.cartesian.xyz.value.T)


def angle_to_chord(angle_deg: float | np.ndarray) -> float | np.ndarray:
    return 2.0 * np.sin(np.radians(angle_deg) / 2.0)


def chord_to_angle_deg(chord: np.ndarray) -> np.ndarray:
    return np.degrees(2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0)))


def tree(ra_deg: np.ndarray, dec_deg: np.ndarray) -> tuple[cKDTree, np.ndarray]:
    xyz = unit_vectors(ra_deg, dec_deg)
    return cKDTree(xyz), xyz
