"""N-way matching (whatsreal.data.groups): groups equal the truth, conflicts are dropped by
the closest-evidence rule, and two surveys give exactly pairs.parquet."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from whatsreal.data.crossmatch import CrossmatchError, crossmatch
from whatsreal.data.groups import group_catalogues, groups_from_pairs

ARCSEC = 1.0 / 3600.0


def _catalogue(ids: list[str], ra: list[float], dec: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"object_id": ids, "ra": ra, "dec": dec})


def _three_survey_sky(seed: int = 0) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Galaxies on a grid 20" apart, each seen by a random non-empty subset of three surveys with
    0.1" astrometric scatter; every catalogue shuffled. Returns (catalogues, truth: one row per
    galaxy with its object id in each survey or None)."""
    rng = np.random.default_rng(seed)
    n = 300
    ra0 = 30.0 + 20 * ARCSEC * (np.arange(n) % 20)
    dec0 = 20 * ARCSEC * (np.arange(n) // 20)
    names = ("a", "b", "c")
    seen = rng.random((n, 3)) < 0.6
    seen[~seen.any(axis=1), 0] = True
    cats, truth = {}, {"galaxy": np.arange(n)}
    for j, name in enumerate(names):
        rows = np.flatnonzero(seen[:, j])
        order = rng.permutation(rows)
        ids = [f"{name}{g}" for g in order]
        cats[name] = _catalogue(
            ids,
            list(ra0[order] + rng.normal(0, 0.1, order.size) * ARCSEC),
            list(dec0[order] + rng.normal(0, 0.1, order.size) * ARCSEC),
        )
        truth[name] = [f"{name}{g}" if seen[g, j] else None for g in range(n)]
    return cats, pd.DataFrame(truth)


def _as_sets(groups: pd.DataFrame, names: tuple[str, ...]) -> set[tuple]:
    return {tuple(row[f"{n}_object_id"] or None for n in names) for _, row in groups.iterrows()}


def test_groups_equal_the_truth_on_a_three_survey_sky():
    cats, truth = _three_survey_sky()
    result = group_catalogues(cats, radius_arcsec=1.0)
    groups = result.groups
    names = ("a", "b", "c")
    expected = {tuple(None if pd.isna(v) else v for v in r) for r in truth[list(names)].itertuples(index=False)}
    assert _as_sets(groups, names) == expected
    assert len(groups) == len(truth)
    # Galaxies seen by exactly two surveys exist, in every combination, and so do singles.
    combos = {tuple(row) for row in (groups[[f"{n}_row" for n in names]].to_numpy() >= 0)}
    assert {(True, True, False), (True, False, True), (False, True, True), (True, False, False)} <= combos
    assert result.conflicts.empty
    for n in names:
        seen = groups[f"{n}_row"].to_numpy()
        assert sorted(seen[seen >= 0].tolist()) == list(range(len(cats[n])))  # every object exactly once
        ok = seen >= 0
        assert (cats[n]["object_id"].to_numpy()[seen[ok]] == groups.loc[ok, f"{n}_object_id"].to_numpy()).all()
    assert (groups["n_surveys"] == (groups[[f"{n}_row" for n in names]] >= 0).sum(axis=1)).all()
    assert (groups.loc[groups["n_surveys"] == 1, "max_sep_arcsec"] == 0).all()
    assert groups.loc[groups["n_surveys"] > 1, "max_sep_arcsec"].between(0, 1).all()


def test_a_conflicting_chain_is_broken_at_its_widest_match():
    # Along one line: a0 at 0", b0 at 0.1", c0 at 0.36", a1 at 0.6". The mutual matches are
    # a0 - b0 (0.10"), c0 - a1 (0.24") and b0 - c0 (0.26"); all three together would put a0 and
    # a1 in one group. The widest of them, b0 - c0, is dropped and reported.
    a = _catalogue(["a0", "a1"], [10.0, 10.0 + 0.6 * ARCSEC], [0.0, 0.0])
    b = _catalogue(["b0"], [10.0 + 0.1 * ARCSEC], [0.0])
    c = _catalogue(["c0"], [10.0 + 0.36 * ARCSEC], [0.0])
    result = group_catalogues({"a": a, "b": b, "c": c}, radius_arcsec=1.0)
    assert _as_sets(result.groups, ("a", "b", "c")) == {("a0", "b0", None), ("a1", None, "c0")}
    (conflict,) = result.conflicts.itertuples(index=False)
    assert (conflict.survey_a, conflict.row_a, conflict.survey_b, conflict.row_b) == ("b", 0, "c", 0)
    assert conflict.sep_arcsec == pytest.approx(0.26, rel=1e-3)
    assert conflict.clash == "a"
    assert result.groups["max_sep_arcsec"].round(3).tolist() == [0.1, 0.24]


def test_grouping_does_not_depend_on_catalogue_order():
    cats, _ = _three_survey_sky(seed=3)
    first = group_catalogues(cats, 1.0).groups
    shuffled = {n: c.sample(frac=1.0, random_state=1).reset_index(drop=True) for n, c in cats.items()}
    second = group_catalogues(shuffled, 1.0).groups
    assert _as_sets(first, tuple(cats)) == _as_sets(second, tuple(cats))


def test_two_surveys_give_exactly_the_pairs():
    cats, _ = _three_survey_sky(seed=5)
    two = {"hsc": cats["a"], "legacysurvey": cats["b"]}
    pairs = crossmatch(two["hsc"], two["legacysurvey"], 1.0)
    groups = group_catalogues(two, 1.0).groups
    both = groups[groups["n_surveys"] == 2].reset_index(drop=True)
    for col in ("hsc_row", "legacysurvey_row", "ra", "dec"):
        np.testing.assert_array_equal(both[col].to_numpy(), pairs[col].to_numpy())
    np.testing.assert_allclose(both["max_sep_arcsec"], pairs["sep_arcsec"])
    from_pairs = groups_from_pairs(pairs, ("hsc", "legacysurvey"))
    pd.testing.assert_frame_equal(from_pairs, both.astype(from_pairs.dtypes.to_dict()))


def test_the_groups_of_a_pre_matched_source_are_its_pairs(tmp_path):
    from whatsreal.data.stages import run_groups_from_pairs

    cats, _ = _three_survey_sky(seed=6)
    pairs = crossmatch(cats["a"], cats["b"], 1.0)
    pairs.to_parquet(tmp_path / "pairs.parquet")
    groups = run_groups_from_pairs(tmp_path / "pairs.parquet", tmp_path / "groups.parquet")
    assert len(groups) == len(pairs) and (groups["n_surveys"] == 2).all()
    np.testing.assert_array_equal(groups["legacysurvey_row"], pairs["legacysurvey_row"])
    pairs.drop(columns="sep_arcsec").to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"bad\.parquet: missing column\(s\) sep_arcsec"):
        run_groups_from_pairs(tmp_path / "bad.parquet", tmp_path / "groups2.parquet")
    assert not (tmp_path / "groups2.parquet").exists()


def test_a_survey_that_overlaps_no_other_is_named():
    cats, _ = _three_survey_sky()
    far = cats["c"].assign(ra=cats["c"]["ra"] + 40.0)
    with pytest.raises(CrossmatchError, match=r"surveys\.c: no object matches any other survey's"):
        group_catalogues({"a": cats["a"], "b": cats["b"], "c": far}, 1.0)


def test_one_survey_is_not_enough():
    cats, _ = _three_survey_sky()
    with pytest.raises(ValueError, match="at least two surveys"):
        group_catalogues({"a": cats["a"]}, 1.0)


def test_groups_of_the_simulated_sky_equal_its_truth(tiny_data, tiny_sky, tmp_path):
    """The groups stage on the tiny sky's catalogues: every galaxy either survey saw, once, with
    the truth's ids; the two-survey groups are pairs.parquet, row for row."""
    from whatsreal.data.stages import run_groups

    _, raw, _ = tiny_sky
    cfg, out = tiny_data
    names = ("hsc", "legacysurvey")
    groups = run_groups(
        {s: out / f"catalog_{s}.parquet" for s in names}, cfg["crossmatch"]["radius_arcsec"], tmp_path / "g.parquet"
    )
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "g.parquet"), groups)
    truth = pd.read_parquet(raw / "truth.parquet")
    seen = truth[truth["in_hsc"] | truth["in_legacysurvey"]]
    expected = {
        tuple(str(row[f"{s}_object_id"]) if row[f"in_{s}"] else None for s in names) for _, row in seen.iterrows()
    }
    assert _as_sets(groups, names) == expected
    assert len(groups) == len(seen)
    pairs = pd.read_parquet(out / "pairs.parquet")
    both = groups[groups["n_surveys"] == 2].reset_index(drop=True)
    np.testing.assert_array_equal(both["hsc_row"], pairs["hsc_row"])
    np.testing.assert_array_equal(both["legacysurvey_row"], pairs["legacysurvey_row"])
