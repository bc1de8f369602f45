"""One-to-one crossmatch of two catalogues: mutual nearest neighbours within a radius.

A pair (a, b) is kept only if b is a's nearest neighbour in catalogue B *and* a
is b's nearest in A, and they are closer than the radius. So no object is used
twice, and, unlike MMU's ``cross_match_datasets`` (nearest neighbour from one
side only, then a column merge that lets same-named columns overwrite each
other), the output keeps only row indices and ids, with survey-prefixed names.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from whatsreal.data.sky_index import angle_to_chord, chord_to_angle_deg, tree

__all__ = ["CrossmatchError", "crossmatch", "mutual_matches"]

log = logging.getLogger(__name__)


class CrossmatchError(ValueError):
    """The two catalogues cannot be matched (e.g. they do not overlap)."""


def mutual_matches(
    a: pd.DataFrame, b: pd.DataFrame, radius_arcsec: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Rows of ``a`` and ``b`` (each with ``ra, dec`` in degrees) that are each other's nearest
    neighbour within ``radius_arcsec``: ``(rows_a, rows_b, sep_arcsec, n_not_mutual)``, sorted by
    ``rows_a``. Empty arrays when nothing matches; :func:`crossmatch` and the N-way grouping
    (:mod:`whatsreal.data.groups`) decide whether that is an error."""
    tree_a, xyz_a = tree(a["ra"].to_numpy(), a["dec"].to_numpy())
    tree_b, xyz_b = tree(b["ra"].to_numpy(), b["dec"].to_numpy())
    limit = angle_to_chord(radius_arcsec / 3600.0)
    d_ab, i_ab = tree_b.query(xyz_a, k=1, distance_upper_bound=limit, workers=-1)
    _, i_ba = tree_a.query(xyz_b, k=1, distance_upper_bound=limit, workers=-1)
    rows_a = np.flatnonzero(np.isfinite(d_ab))
    rows_b = i_ab[rows_a]
    mutual = i_ba[rows_b] == rows_a
    rows_a, rows_b = rows_a[mutual], rows_b[mutual]
    sep = chord_to_angle_deg(d_ab[rows_a]) * 3600.0
    return rows_a.astype(np.int64), rows_b.astype(np.int64), sep, int((~mutual).sum())


def crossmatch(
    a: pd.DataFrame, b: pd.DataFrame, radius_arcsec: float, names: tuple[str, str] = ("hsc", "legacysurvey")
) -> pd.DataFrame:
    """Mutual-nearest pairs of ``a`` and ``b`` (each with ``object_id, ra, dec``) within ``radius_arcsec``.

    Returns columns ``{name}_row`` (row in each catalogue), ``{name}_object_id``,
    ``ra``, ``dec`` (of ``a``), ``sep_arcsec``; sorted by the first catalogue's row.
    """
    na, nb = names
    rows_a, rows_b, sep, dropped = mutual_matches(a, b, radius_arcsec)
    if rows_a.size == 0:
        raise CrossmatchError(
            f'no {na} object has a {nb} counterpart within {radius_arcsec}" '
            f"({len(a)} {na} and {len(b)} {nb} objects): do the two catalogues cover the same sky?"
        )
    pairs = pd.DataFrame(
        {
            f"{na}_row": rows_a,
            f"{nb}_row": rows_b,
            f"{na}_object_id": a["object_id"].to_numpy()[rows_a],
            f"{nb}_object_id": b["object_id"].to_numpy()[rows_b],
            "ra": a["ra"].to_numpy()[rows_a],
            "dec": a["dec"].to_numpy()[rows_a],
            "sep_arcsec": sep,
        }
    )
    q = np.percentile(sep, [50, 90, 99])
    log.info(
        'crossmatch: %d pairs of %d %s and %d %s within %.2f"; separation median %.3f", 90%% %.3f", '
        '99%% %.3f"; %d nearest matches dropped as not mutual',
        len(pairs),
        len(a),
        na,
        len(b),
        nb,
        radius_arcsec,
        *q,
        dropped,
    )
    return pairs
