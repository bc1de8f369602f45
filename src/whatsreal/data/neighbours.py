"""The instrument views: for each object, other objects of the same survey.

Mode ``spatial`` (the paper's): the k nearest other objects within a radius,
because observing conditions vary smoothly over the sky, so they share the
anchor's PSF, depth and exposures. Mode ``random`` (the ablation): as many random
other objects as the spatial mode found, so the two differ only in *which*
neighbours, not how many.
"""

from __future__ import annotations

import logging

import numpy as np

from whatsreal.data.sky_index import angle_to_chord, chord_to_angle_deg, tree, unit_vectors

__all__ = ["MODES", "count_histogram", "random_neighbours", "spatial_neighbours"]

log = logging.getLogger(__name__)
MODES = ("spatial", "random")


def spatial_neighbours(ra: np.ndarray, dec: np.ndarray, k: int, radius_arcmin: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (N, k) of the k nearest *other* objects within ``radius_arcmin``, nearest first,
    -1 where there are fewer; and their separations in arcmin (NaN where padded)."""
    n = len(ra)
    t, xyz = tree(ra, dec)
    dist, idx = t.query(
        xyz, k=min(k + 1, max(n, 1)), distance_upper_bound=angle_to_chord(radius_arcmin / 60.0), workers=-1
    )
    dist, idx = dist.reshape(n, -1), idx.reshape(n, -1)
    # Drop the object itself by index, not by distance (duplicated positions exist in real
    # catalogues): a stable sort moves the self entry to the end of its row.
    is_self = idx == np.arange(n)[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)[:, :k]
    dist = np.take_along_axis(dist, order, axis=1)[:, :k]
    missing = (idx >= n) | np.take_along_axis(is_self, order, axis=1)[:, :k]
    if idx.shape[1] < k:  # fewer objects than k + 1 in the whole catalogue
        pad = k - idx.shape[1]
        idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=n)
        dist = np.pad(dist, ((0, 0), (0, pad)), constant_values=np.inf)
        missing = np.pad(missing, ((0, 0), (0, pad)), constant_values=True)
    index = np.where(missing, -1, idx).astype(np.int64)
    sep = np.where(missing, np.nan, chord_to_angle_deg(np.where(missing, 0.0, dist)) * 60.0).astype(np.float32)
    return index, sep


def random_neighbours(
    ra: np.ndarray, dec: np.ndarray, counts: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """For object i, ``counts[i]`` distinct random other objects (the ablation), -1 padded to k."""
    n = len(ra)
    counts = np.minimum(np.asarray(counts), max(n - 1, 0))
    draw = rng.integers(0, max(n - 1, 1), size=(n, k))
    draw = draw + (draw >= np.arange(n)[:, None])  # skip self: shift [i, n-1) up by one
    for i in np.flatnonzero([len(set(r[:c])) < c for r, c in zip(draw, counts, strict=True)]):
        draw[i, : counts[i]] = rng.choice(np.delete(np.arange(n), i), size=counts[i], replace=False)
    index = np.where(np.arange(k)[None, :] < counts[:, None], draw, -1).astype(np.int64)
    xyz = unit_vectors(ra, dec)
    safe = np.where(index >= 0, index, 0)
    chord = np.linalg.norm(xyz[safe] - xyz[:, None, :], axis=2)
    sep = np.where(index >= 0, chord_to_angle_deg(chord) * 60.0, np.nan).astype(np.float32)
    return index, sep


def count_histogram(index: np.ndarray) -> dict[int, int]:
    """How many objects have 0..k neighbours."""
    counts = (index >= 0).sum(axis=1)
    return {c: int((counts == c).sum()) for c in range(index.shape[1] + 1)}
