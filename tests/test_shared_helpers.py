"""The helpers several stages share: checked table reads, atomic CSV writes, kNN without self,
R^2 over finite labels, the RGB of a cutout in any band order, and the probe folds by config."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from whatsreal.experiments.metrics import neighbours_excluding, r2_or_nan
from whatsreal.experiments.probe_design import design_folds, resolve_design
from whatsreal.io import read_table, write_csv
from whatsreal.plots.sky import pair_stretch, rgb_cutout
from whatsreal.surveys import SURVEYS

from .conftest import tiny_config


@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_read_table_reads_either_format_and_names_missing_columns(tmp_path, name):
    df = pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]})
    path = tmp_path / name
    if name.endswith(".csv"):
        write_csv(df, path)
    else:
        df.to_parquet(path)
    pd.testing.assert_frame_equal(read_table(path, ["a", "b"]), df)
    with pytest.raises(ValueError, match=rf"{re.escape(name)}: missing column\(s\) c, d"):
        read_table(path, ["a", "c", "d"])
    with pytest.raises(FileNotFoundError, match=r"nope\.csv: file not found"):
        read_table(tmp_path / "nope.csv", ["a"])


def test_write_csv_leaves_no_file_when_writing_fails(tmp_path):
    class Broken(pd.DataFrame):
        def to_csv(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_csv(Broken({"a": [1]}), tmp_path / "out.csv")
    assert list(tmp_path.iterdir()) == []  # neither the final name nor a temporary sibling


def test_neighbours_excluding_never_returns_the_query_even_behind_duplicates():
    x = np.array([[0.0], [0.0], [0.0], [5.0], [5.1]])  # rows 0-2 identical: the query may not sort first
    nbrs = neighbours_excluding(x, np.arange(len(x)), 2)
    assert nbrs.shape == (5, 2)
    assert not (nbrs == np.arange(5)[:, None]).any()
    assert set(nbrs[0]) == {1, 2} and nbrs[3, 0] == 4
    assert neighbours_excluding(x, np.array([4]), 10).shape == (1, 4)  # k capped at the other rows


def test_r2_or_nan_uses_finite_labels_only():
    y = np.array([1.0, 2.0, np.nan, 4.0])
    assert r2_or_nan(y, y) == 1.0
    assert np.isnan(r2_or_nan(np.array([3.0, 3.0, np.nan]), np.array([1.0, 2.0, 3.0])))  # constant truth
    assert np.isnan(r2_or_nan(np.array([1.0, np.nan]), np.array([1.0, 2.0])))  # one finite label


def test_rgb_of_a_reordered_band_axis_matches_the_survey_order():
    rng = np.random.default_rng(0)
    image = rng.gamma(1.0, size=(5, 16, 16)).astype(np.float32)
    stretch = pair_stretch([image], ["hsc"])
    want = rgb_cutout(image, "hsc", stretch)
    order = [2, 0, 1]  # i, g, r: a shard whose band axis is not the survey's g, r, i, z, y
    bands = [SURVEYS["hsc"].bands[k] for k in order]
    assert pair_stretch([image[order]], ["hsc"], bands) == stretch
    np.testing.assert_array_equal(rgb_cutout(image[order], "hsc", stretch, bands=bands), want)
    with pytest.raises(ValueError):  # no g band to show
        rgb_cutout(image[[1, 2]], "hsc", stretch, bands=["r", "i"])


def test_design_folds_follow_the_config_and_its_alternative():
    probes = {"pairs": "held_out", "split": "healpix", "healpix_nside": 1, "n_folds": 2}
    cfg = tiny_config(experiments={"probes": probes})
    rng = np.random.default_rng(1)
    n = 40
    sky = pd.DataFrame(
        {
            "pair": np.arange(n),
            "split": np.where(np.arange(n) % 4 == 0, "val", "train"),
            "ra": rng.uniform(0, 360, n),
            "dec": rng.uniform(-60, 60, n),
        }
    )
    primary, other = design_folds(cfg, sky), design_folds(cfg, sky, alternative=True)
    assert primary.design == resolve_design(cfg)
    assert (primary.design.pairs, primary.design.split) == ("held_out", "healpix")
    assert (other.design.pairs, other.design.split) == ("all", "random")
    assert set(primary.scored) <= set(np.flatnonzero(sky["split"] == "val"))
