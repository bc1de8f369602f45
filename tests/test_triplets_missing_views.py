"""The triplet loader on galaxies seen by some of three surveys: anchors only where a survey saw
the galaxy, physics views masked where it did not, neighbours only among a survey's own
galaxies, and with every galaxy seen exactly the two-survey loader's draws."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from whatsreal.data.triplets import TripletDataset
from whatsreal.layout import DatasetLayout
from whatsreal.model.flow import build_model

from .conftest import tiny_model_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SURVEYS = ("a", "b", "c")
N, K, SIDE = 40, 3, 48


def _seen_pattern() -> np.ndarray:
    """Every row seen by two or three of the surveys, each combination present."""
    combos = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=bool)
    return combos[np.arange(N) % 4]


def _toy_layout(root, seen: np.ndarray | None, surveys=SURVEYS) -> DatasetLayout:
    """Images whose pixels say (survey, row): value 1000 * (survey + 1) + row; each survey's
    metadata (with ``seen`` when given) and a neighbour graph pointing at the next K rows,
    unseen ones included (the loader must drop those)."""
    layout = DatasetLayout(root)
    root.mkdir(parents=True, exist_ok=True)
    for j, s in enumerate(surveys):
        img = np.broadcast_to((1000.0 * (j + 1) + np.arange(N))[:, None, None, None], (N, 4, SIDE, SIDE))
        np.save(layout.images(s), img.astype(np.float32))
        meta = pd.DataFrame({"pair": np.arange(N)})
        if seen is not None:
            meta["seen"] = seen[:, j]
        meta.to_parquet(layout.meta(s))
        index = (np.arange(N)[:, None] + np.arange(1, K + 1)[None, :]) % N
        np.savez(layout.neighbours(s, "spatial"), index=index, sep_arcmin=np.ones((N, K)))
    return layout


def _ids(images: torch.Tensor) -> np.ndarray:
    """The (survey, row) code of each image (its first pixel)."""
    return images[..., 0, 0, 0].numpy().astype(int)


def test_views_follow_which_survey_saw_each_galaxy(tmp_path):
    seen = _seen_pattern()
    layout = _toy_layout(tmp_path / "d", seen)
    ds = TripletDataset(layout, np.arange(N), surveys=SURVEYS)
    np.testing.assert_array_equal(ds.seen, seen)  # read from the metadata's ``seen`` column
    torch.manual_seed(0)
    counts = np.zeros((N, 3))
    for _ in range(60):
        batch = ds.__getitems__(list(range(N)))
        anchor = batch["anchor"].numpy()
        assert seen[np.arange(N), anchor].all(), "anchored only in a survey that saw the galaxy"
        counts[np.arange(N), anchor] += 1
        np.testing.assert_array_equal(_ids(batch["target"]), 1000 * (anchor + 1) + np.arange(N))
        for i in range(N):
            others = [j for j in range(3) if j != anchor[i]]
            np.testing.assert_array_equal(batch["physics_mask"][i].numpy(), seen[i, others])
            for p, j in enumerate(others):
                expected = 1000 * (j + 1) + i if seen[i, j] else 0
                assert _ids(batch["physics"][i, p]) == expected
            nbr = _ids(batch["instrument"][i])[batch["instrument_mask"][i].numpy()]
            rows = nbr - 1000 * (anchor[i] + 1)
            assert seen[rows, anchor[i]].all(), "a survey's neighbours are galaxies it saw"
            assert rows.size == seen[(i + np.arange(1, K + 1)) % N, anchor[i]].sum()
    # Uniform among the surveys that saw each galaxy: 60 draws, 1/3 or 1/2 each.
    share = counts / 60
    expected = np.where(seen, 1 / seen.sum(axis=1, keepdims=True), 0)
    assert np.abs(share - expected).max() < 0.25
    assert np.abs(share.mean(axis=0) - expected.mean(axis=0)).max() < 0.05


def test_fixed_anchors_must_be_seen_and_rows_need_two_surveys(tmp_path):
    seen = _seen_pattern()
    layout = _toy_layout(tmp_path / "d", seen)
    with pytest.raises(ValueError, match=r"anchors: row 1 is anchored in c, which did not see it"):
        TripletDataset(layout, np.array([0, 1]), surveys=SURVEYS, anchors=np.array([2, 2]))
    only_one = seen.copy()
    only_one[5] = [True, False, False]
    with pytest.raises(ValueError, match=r"rows \[5\] \(1 in all\) are seen by fewer than two surveys"):
        TripletDataset(layout, np.arange(N), surveys=SURVEYS, seen=only_one)
    seeded = TripletDataset(layout, np.arange(N), surveys=SURVEYS, anchor_seed=4)
    assert seen[np.arange(N), seeded._fixed].all()


def test_with_every_galaxy_seen_the_draws_are_the_two_survey_loaders(tmp_path):
    """No ``seen`` column: every row seen, and anchors are exactly ``torch.randint`` /
    ``default_rng(seed).integers`` as before N-way data, so two-survey training is unchanged."""
    layout = _toy_layout(tmp_path / "d", None, surveys=("hsc", "legacysurvey"))
    ds = TripletDataset(layout, np.arange(N))
    torch.manual_seed(3)
    batch = ds.__getitems__(list(range(N)))
    torch.manual_seed(3)
    np.testing.assert_array_equal(batch["anchor"].numpy(), torch.randint(2, (N,)).numpy())
    assert batch["physics_mask"].all() and batch["physics"].shape[1] == 1
    seeded = TripletDataset(layout, np.arange(N), anchor_seed=9)
    np.testing.assert_array_equal(seeded._fixed, np.random.default_rng(9).integers(0, 2, size=N))


def test_one_training_step_on_three_surveys_ignores_the_missing_views(tmp_path):
    """A training step of the flow on a three-survey batch: the loss is finite and trains, and
    what sits in a masked (unseen) physics view changes nothing."""
    seen = _seen_pattern()
    layout = _toy_layout(tmp_path / "d", seen)
    ds = TripletDataset(layout, np.arange(8), surveys=SURVEYS, anchors=np.array([0, 0, 0, 1, 0, 1, 2, 1]))
    batch = ds.__getitems__(list(range(8)))
    assert not batch["physics_mask"].all()
    scale = {k: v / 1000.0 if v.is_floating_point() else v for k, v in batch.items()}
    torch.manual_seed(0)
    model = build_model(tiny_model_config())
    model.eval()

    def loss(b: dict) -> torch.Tensor:
        return model.loss(b["target"], model.condition_batch(b), generator=torch.Generator().manual_seed(0))[0]

    before = loss(scale)
    junk = dict(scale)
    junk["physics"] = scale["physics"].clone()
    hidden = ~scale["physics_mask"]
    junk["physics"][hidden] = 50 * torch.randn_like(junk["physics"][hidden])
    torch.testing.assert_close(loss(junk), before, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(before)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    opt.zero_grad()
    loss(scale).backward()
    grads = [p.grad for p in model.physics_encoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    opt.step()
