"""What a swapped PSF or sky noise changes in the preprocessed pixels (issue 10's stretch check)."""

from __future__ import annotations

import numpy as np
import pytest

from whatsreal.experiments.pixel_change import PIXEL_CHANGE_COLUMNS, condition_swap_change

from .conftest import tiny_config


def test_a_softer_stretch_weighs_the_psf_more_against_the_noise():
    cfg = tiny_config()
    table = condition_swap_change(cfg, [0.01, 1.0], n_anchors=12, seed=0)
    assert list(table.columns) == PIXEL_CHANGE_COLUMNS
    assert set(table.survey) == {"hsc", "legacysurvey"} and (table.n_anchors == 12).all()
    values = table[["psf_change", "noise_change", "psf_over_noise"]].to_numpy()
    assert np.isfinite(values).all() and (values > 0).all()
    ratio = table.pivot(index="survey", columns="softening", values="psf_over_noise")
    # Near-linear pixels (softening 1 nanomaggy) no longer compress the galaxy cores where the
    # PSF shows, while the background noise was in the linear part all along.
    assert (ratio[1.0] > 2 * ratio[0.01]).all()
    # The same anchors, noise field and partners at each softening: the draw is seeded.
    again = condition_swap_change(cfg, [0.01], n_anchors=12, seed=0)
    first = table[table.softening == 0.01].reset_index(drop=True)
    assert np.allclose(again[["psf_change", "noise_change"]], first[["psf_change", "noise_change"]])


def test_bad_requests_are_refused():
    cfg = tiny_config()
    with pytest.raises(ValueError, match="softenings must be positive"):
        condition_swap_change(cfg, [0.0])
    with pytest.raises(ValueError, match="softenings must be positive"):
        condition_swap_change(cfg, [])
    with pytest.raises(ValueError, match="n_anchors must be at least 2"):
        condition_swap_change(cfg, [0.01], n_anchors=1)


def test_the_script_prints_and_writes_the_table(tmp_path):
    import pandas as pd
    import yaml

    from .conftest import REPO, TINY, run_script

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "change.csv"
    script = [REPO / "benchmarks" / "condition_pixel_change.py", "--anchors", "6", "--config"]
    script += [str(REPO / "config" / "config.yaml"), str(cfg)]
    cmd = [*script, "--softenings", "0.01", "1", "--out", str(out)]
    res = run_script(*cmd)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "tiny: 6 anchors per survey, config softening 0.01" in res.stdout
    assert len(pd.read_csv(out)) == 4
    bad = run_script(*script, "--softenings", "0")
    assert bad.returncode == 2 and "softenings must be positive numbers, got [0.0]" in bad.stderr
