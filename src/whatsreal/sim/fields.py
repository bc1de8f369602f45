"""Smooth random fields and tilings over the patch: the sky's observing conditions.

Real observing conditions have two kinds of structure, and the instrument
encoder must be able to learn both from spatial neighbours: a smooth part
(atmosphere, dust), correlated over arcminutes, and a tile part (each region of a
coadd is built from its own set of exposures), constant inside a tile and jumping
at its edges. :class:`QuantileNormaliser` then gives a combination of the two the
exact marginal distribution the config asks for over a survey's footprint, and
:func:`tail_stretch` gives it the skewed tail real conditions have.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import gaussian_filter
from scipy.special import ndtri

__all__ = ["QuantileNormaliser", "SmoothField", "Tiling", "region_grid", "tail_stretch"]


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


def tail_stretch(g: np.ndarray, tail: float) -> np.ndarray:
    """Stretch the upper half of a standard-normal score: ``g`` below 0, ``g (1 + tail g)`` above.

    Observing conditions are skewed: seeing and sky noise have long tails toward bad
    values (poor nights, bright moon) and a sharp lower edge (the best the site
    gives). This keeps the median (g = 0 maps to 0) and the lower half of a
    log-normal, and pushes the upper percentiles out: with ``tail`` = 0.2 the 95th
    percentile sits 1.33 sigma-units above where a log-normal would put it.
    Monotonic for ``tail`` >= 0, so percentiles map through it exactly.
    """
    g = np.asarray(g, dtype=float)
    return np.where(g > 0, g * (1.0 + tail * g), g)


@dataclass
class QuantileNormaliser:
    """A monotone map from a raw field's values to standard-normal scores over a region.

    The raw values are measured on a grid covering the region; each new value is
    replaced by the normal quantile of its rank among them. Over that region the
    result is then N(0, 1) *exactly*, whatever the field's correlation length or the
    luck of the draw, so a finite patch samples the configured distribution of
    conditions faithfully (a handful of correlation cells would otherwise leave the
    spread to chance). Being monotone, it keeps the spatial pattern: neighbours that
    share raw values share scores, and tile edges stay sharp. Scores are clipped at
    ``clip`` sigma, which bounds the tails the PSF tables must cover.
    """

    reference: np.ndarray
    clip: float = 3.0

    def __post_init__(self) -> None:
        self._sorted = np.sort(np.ravel(self.reference))
        n = self._sorted.size
        self._u = (np.arange(n) + 0.5) / n

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        u = np.interp(raw, self._sorted, self._u)
        return np.clip(ndtri(u), -self.clip, self.clip)


def region_grid(
    x_range: tuple[float, float], y_range: tuple[float, float], spacing: float, max_points: int = 160_000
) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres of a regular grid over a box (arcmin), at most ``max_points`` of them:
    where the conditions' distribution is pinned (:class:`QuantileNormaliser`)."""
    width, height = x_range[1] - x_range[0], y_range[1] - y_range[0]
    spacing = max(spacing, float(np.sqrt(width * height / max_points)))
    nx, ny = max(int(np.ceil(width / spacing)), 1), max(int(np.ceil(height / spacing)), 1)
    xs = x_range[0] + (np.arange(nx) + 0.5) * width / nx
    ys = y_range[0] + (np.arange(ny) + 0.5) * height / ny
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    return gx.ravel(), gy.ravel()
