"""Neighbour graphs and the crossmatch against brute force and against the sky's truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from whatsreal.data.crossmatch import CrossmatchError, crossmatch
from whatsreal.data.neighbours import count_histogram, random_neighbours, spatial_neighbours


def _great_circle_arcmin(ra1, dec1, ra2, dec2):
    """Haversine distance, written independently of the code under test."""
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(h))) * 60


def _brute_force(ra, dec, k, radius):
    d = _great_circle_arcmin(ra[:, None], dec[:, None], ra[None, :], dec[None, :])
    np.fill_diagonal(d, np.inf)
    out = np.full((len(ra), k), -1)
    for i in range(len(ra)):
        order = np.argsort(d[i], kind="stable")
        near = [j for j in order[:k] if d[i, j] < radius]
        out[i, : len(near)] = near
    return out, d


def _catalog(kind: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if kind == "north_pole":  # a cap within 0.3 deg of the pole: RA spans everything
        dec = 90 - rng.uniform(0, 0.3, n)
        ra = rng.uniform(0, 360, n)
    elif kind == "south_pole":
        dec = -90 + rng.uniform(0, 0.3, n)
        ra = rng.uniform(0, 360, n)
    elif kind == "ra_wrap":  # straddles RA 0/360
        ra = np.mod(rng.uniform(-0.3, 0.3, n), 360)
        dec = rng.uniform(-0.3, 0.3, n)
    else:  # sparse field with a dense clump: objects with 0 and with k neighbours within the radius
        half = n // 2
        ra = np.r_[rng.uniform(10, 12, half), rng.uniform(11, 11.1, n - half)]
        dec = np.r_[rng.uniform(-1, 1, half), rng.uniform(0, 0.1, n - half)]
    return ra, dec


@pytest.mark.parametrize("kind", ["north_pole", "south_pole", "ra_wrap", "sparse"])
def test_spatial_neighbours_equal_brute_force(kind):
    rng = np.random.default_rng(["north_pole", "south_pole", "ra_wrap", "sparse"].index(kind))
    ra, dec = _catalog(kind, 600, rng)
    index, sep = spatial_neighbours(ra, dec, k=5, radius_arcmin=3.0)
    expected, d = _brute_force(ra, dec, 5, 3.0)
    np.testing.assert_array_equal(index, expected)
    valid = index >= 0
    rows = np.nonzero(valid)[0]
    np.testing.assert_allclose(sep[valid], d[rows, index[valid]], rtol=1e-5, atol=1e-6)
    assert np.isnan(sep[~valid]).all()
    assert not (index == np.arange(len(ra))[:, None]).any(), "an object is never its own neighbour"
    counts = count_histogram(index)
    if kind == "sparse":
        assert counts[0] > 0 and counts[5] > 0, counts


def test_duplicate_positions_do_not_hide_the_object_itself():
    ra = np.array([10.0, 10.0, 10.0, 10.01])
    dec = np.array([0.0, 0.0, 0.0, 0.0])
    index, _ = spatial_neighbours(ra, dec, k=2, radius_arcmin=3.0)
    for i in range(4):
        assert i not in index[i]
        assert (index[i] >= 0).all()


def test_fewer_objects_than_k():
    index, sep = spatial_neighbours(np.array([1.0, 1.001]), np.array([0.0, 0.0]), k=5, radius_arcmin=3.0)
    np.testing.assert_array_equal(index, [[1, -1, -1, -1, -1], [0, -1, -1, -1, -1]])
    assert np.isnan(sep[:, 1:]).all()


def test_random_neighbours_match_counts_and_exclude_self():
    rng = np.random.default_rng(3)
    ra, dec = _catalog("sparse", 500, rng)
    spatial, _ = spatial_neighbours(ra, dec, 5, 3.0)
    counts = (spatial >= 0).sum(axis=1)
    index, sep = random_neighbours(ra, dec, counts, 5, np.random.default_rng(0))
    np.testing.assert_array_equal((index >= 0).sum(axis=1), counts)
    for i, row in enumerate(index):
        real = row[row >= 0]
        assert i not in real and len(set(real)) == len(real)
    # Random neighbours are far on average; spatial ones are within 3'.
    assert np.nanmedian(sep) > 10


def test_crossmatch_is_one_to_one_mutual_nearest():
    a = pd.DataFrame({"object_id": [1, 2, 3], "ra": [10.0, 10.0 + 0.3 / 3600, 20.0], "dec": [0.0, 0.0, 0.0]})
    b = pd.DataFrame({"object_id": ["x", "y"], "ra": [10.0 + 0.1 / 3600, 30.0], "dec": [0.0, 0.0]})
    pairs = crossmatch(a, b, radius_arcsec=1.0)
    # Both a[0] and a[1] have b[0] as nearest; only the mutual one (a[0]) is kept.
    assert pairs[["hsc_row", "legacysurvey_row"]].values.tolist() == [[0, 0]]
    assert pairs["sep_arcsec"].iloc[0] == pytest.approx(0.1, rel=1e-3)
    assert pairs["legacysurvey_object_id"].iloc[0] == "x"


def test_crossmatch_with_no_overlap_is_an_error():
    a = pd.DataFrame({"object_id": [1], "ra": [10.0], "dec": [0.0]})
    b = pd.DataFrame({"object_id": [2], "ra": [50.0], "dec": [0.0]})
    with pytest.raises(CrossmatchError, match=r"no hsc object has a legacysurvey counterpart within 1\.0"):
        crossmatch(a, b, 1.0)


def test_crossmatch_finds_exactly_the_truth_pairs(tiny_data, tiny_sky):
    _, raw, _ = tiny_sky
    _, out = tiny_data
    pairs = pd.read_parquet(out / "pairs.parquet")
    truth = pd.read_parquet(raw / "truth.parquet")
    both = truth[truth["in_hsc"] & truth["in_legacysurvey"]]
    expected = set(zip(both["hsc_object_id"].astype(str), both["legacysurvey_object_id"].astype(str), strict=True))
    found = set(zip(pairs["hsc_object_id"].astype(str), pairs["legacysurvey_object_id"].astype(str), strict=True))
    assert found == expected
    assert pairs["hsc_row"].is_unique and pairs["legacysurvey_row"].is_unique
