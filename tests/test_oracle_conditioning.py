"""benchmarks/oracle_conditioning.py: its device-resident batches are the pipeline's triplets
(anchor image and the other survey's view of one pair), and the script runs end to end on a
CPU with either batch source, so the one-call GPU check (benchmarks/gpu_session.sh, part 5)
never rots."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
import torch
import yaml

from whatsreal.layout import DatasetLayout
from whatsreal.surveys import SURVEY_ORDER

from .conftest import REPO, TINY, TINY_MODEL, run_script

SCRIPT = REPO / "benchmarks" / "oracle_conditioning.py"


@pytest.fixture
def oracle_data(tiny_sky, tiny_data, tmp_path):
    """The tiny dataset with its truth table where the layout reads it (``raw/truth.parquet``),
    by links: the session's dataset is shared and left as it is."""
    _, raw, _ = tiny_sky
    _, data = tiny_data
    root = tmp_path / "data"
    root.mkdir()
    for f in data.iterdir():
        (root / f.name).symlink_to(f)
    layout = DatasetLayout(root)
    layout.truth.parent.mkdir(exist_ok=True)
    layout.truth.symlink_to(raw / "truth.parquet")
    return root


def _script():
    spec = importlib.util.spec_from_file_location("oracle_conditioning", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resident_batches_hold_each_pair_s_anchor_image_and_its_other_survey_view(tiny_data):
    _, data = tiny_data
    layout = DatasetLayout(data)
    oracle = _script()
    pairs = oracle.training_pairs(layout)
    batches = oracle.ResidentBatches(layout, pairs, torch.device("cpu"))
    images = {s: np.load(layout.images(s)) for s in SURVEY_ORDER}
    batch = batches.draw(16)
    assert batch["pair"].unique().numel() == 16, "pairs are drawn without replacement"
    assert set(batch["pair"].tolist()) <= set(pairs.tolist())
    assert set(batch["anchor"].tolist()) == {0, 1}, "both surveys anchor (16 draws)"
    for i in range(16):
        p, a = int(batch["pair"][i]), int(batch["anchor"][i])
        np.testing.assert_array_equal(batch["target"][i].numpy(), images[SURVEY_ORDER[a]][p])
        np.testing.assert_array_equal(batch["physics"][i, 0].numpy(), images[SURVEY_ORDER[1 - a]][p])
    assert batch["physics_mask"].all()


@pytest.mark.slow  # the script end to end, twice: trains and scores a tiny model
@pytest.mark.parametrize(
    "budget", [["--steps", "3", "--no-resident", "--floor", "2"], ["--seconds", "1", "--resident"]]
)
def test_the_oracle_trains_to_a_budget_and_scores_swaps_on_a_cpu(oracle_data, tmp_path, budget):
    data = oracle_data
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "model": TINY_MODEL, "train": {"batch_size": 8}}))
    cmd = [SCRIPT, "--data", data, "--config", cfg, "--device", "cpu"]
    res = run_script(*cmd, *budget, "--draws", "1", "--partners", "2", "--save", tmp_path / "oracle.pt")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    trained = re.search(r"trained (\d+) steps of batch 8 on cpu in \d+ s \((\S+) batches\)", out)
    assert trained, out
    if budget[0] == "--steps":
        assert trained.groups() == ("3", "dataset"), out
    else:
        sized = re.search(r"steps/s at batch 8 on cpu: (\d+) steps for 1 s", out)
        assert sized and trained.groups() == (sized.group(1), "device-resident"), out
    rows = re.findall(r"^(hsc|legacysurvey)\s+(log sky noise|PSF FWHM)\s+gain per sd of mismatch [+-]\d", out, re.M)
    assert len(rows) == 4, out
    floor = re.findall(r"^(hsc|legacysurvey)\s+t (\S+): loss \d\S*, known-scene floor \d", out, re.M)
    if "--floor" in budget:  # the model against a decoder that knows the scene, on 2 stamps per survey
        assert len(floor) == 2 * 6 and {s for s, _ in floor} == set(SURVEY_ORDER), out
    else:
        assert not floor, out
    assert (tmp_path / "oracle.pt").stat().st_size > 0
