"""Smooth random fields and tilings over the patch: the sky's observing conditions.

Real observing conditions have two kinds of structure, and the instrument
encoder must be able to learn both from spatial neighbours: a smooth part
(atmosphere, dust), correlated over tens of arcminutes, and a tile part (each
coadd tile or brick is built from its own set of exposures), constant inside a
tile and jumping at its edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import gaussian_filter

__all__ = ["SmoothField", "Tiling"]


@dataclass
class SmoothField:
    """A zero-mean, unit-variance Gaussian random field on the patch.

    White noise on a grid, smoothed by a Gaussian kernel of width
    ``correlation_arcmin`` (the kernel sigma), renormalised to unit variance and
    interpolated bilinearly. The grid extends one correlation length past the
    patch so the edges are not special.
    """

    width_arcmin: float
    height_arcmin: float
    correlation_arcmin: float
    grid_arcmin: float
    rng: np.random.Generator

    def __post_init__(self) -> None:
        pad = self.correlation_arcmin * 2
        nx = int(np.ceil((self.width_arcmin + 2 * pad) / self.grid_arcmin)) + 1
        ny = int(np.ceil((self.height_arcmin + 2 * pad) / self.grid_arcmin)) + 1
        xs = -self.width_arcmin / 2 - pad + self.grid_arcmin * np.arange(nx)
        ys = -self.height_arcmin / 2 - pad + self.grid_arcmin * np.arange(ny)
        white = self.rng.standard_normal((nx, ny))
        smooth = gaussian_filter(white, sigma=self.correlation_arcmin / self.grid_arcmin, mode="reflect")
        smooth = (smooth - smooth.mean()) / smooth.std()
        self._interp = RegularGridInterpolator((xs, ys), smooth, method="linear")

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._interp(np.column_stack([np.ravel(x), np.ravel(y)])).reshape(np.shape(x))


@dataclass
class Tiling:
    """Square tiles of side ``tile_arcmin`` with a random origin, covering the patch.

    Per-tile quantities are tables of shape ``shape`` (plus any trailing axes);
    :meth:`lookup` maps each position to its tile's entry, so everything in a tile
    shares it and values jump at tile edges.
    """

    width_arcmin: float
    height_arcmin: float
    tile_arcmin: float
    rng: np.random.Generator

    def __post_init__(self) -> None:
        self._origin = self.rng.uniform(0, self.tile_arcmin, size=2)
        ix0, iy0 = self._raw_index(-self.width_arcmin / 2, -self.height_arcmin / 2)
        ix1, iy1 = self._raw_index(self.width_arcmin / 2, self.height_arcmin / 2)
        self._lo = (int(ix0), int(iy0))
        self.shape = (int(ix1 - ix0) + 1, int(iy1 - iy0) + 1)

    def _raw_index(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        ix = np.floor((np.asarray(x) - self._origin[0]) / self.tile_arcmin).astype(np.int64)
        iy = np.floor((np.asarray(y) - self._origin[1]) / self.tile_arcmin).astype(np.int64)
        return ix, iy

    def index(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tile grid index of each position, clipped to the patch's tiles."""
        ix, iy = self._raw_index(x, y)
        ix = np.clip(ix - self._lo[0], 0, self.shape[0] - 1)
        iy = np.clip(iy - self._lo[1], 0, self.shape[1] - 1)
        return ix, iy

    def lookup(self, x: np.ndarray, y: np.ndarray, table: np.ndarray) -> np.ndarray:
        """``table[tile of (x, y)]`` for a table of shape ``self.shape + extra``."""
        ix, iy = self.index(x, y)
        return table[ix, iy]
