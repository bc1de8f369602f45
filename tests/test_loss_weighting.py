"""Per-pixel loss weights from the physics views (model.loss_weighting): where they go, that they
keep the loss's scale and its minimiser, that every conditioning of one sample shares them, and
that a bad setting names its key."""

from __future__ import annotations

import copy

import pytest
import torch

from whatsreal.config import ConfigError, validate_config
from whatsreal.model.flow import Conditioning, build_model
from whatsreal.model.loss_weighting import check_loss_weighting, physics_light_weights, pixel_weights

from .conftest import SCHEMA, tiny_model_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LIGHT = {"kind": "physics_light", "strength": 20.0, "smoothing_px": 3}


def _blob_views(b: int = 3, v: int = 2, size: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Physics views with one bright source per sample at a known, per-sample position, on a
    noisy background with an offset (preprocessed images are not zero-mean)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    views = 0.05 * torch.randn(b, v, 2, size, size, generator=g) - 0.3
    for i in range(b):
        cy, cx = 5 + 6 * i, 18 - 5 * i
        views[i] += 2.0 * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0)
    return views, torch.ones(b, v, dtype=torch.bool)


def test_weights_peak_on_the_physics_light_and_average_to_one():
    views, mask = _blob_views()
    w = physics_light_weights(views, mask, 20.0, 3)
    assert w.shape == (3, 1, 24, 24)
    assert torch.allclose(w.mean((2, 3)), torch.ones(3, 1), atol=1e-5)
    assert (w > 0).all()
    for i in range(3):
        peak = divmod(int(w[i, 0].argmax()), 24)
        assert abs(peak[0] - (5 + 6 * i)) <= 1 and abs(peak[1] - (18 - 5 * i)) <= 1
        # Far from the source the weight is the floor: (1 + strength) times below the peak.
        assert w[i, 0].max() / w[i, 0].min() == pytest.approx(21.0, rel=1e-4)


def test_padded_views_are_ignored_and_no_view_means_uniform_weights():
    views, mask = _blob_views(b=2, v=2)
    moved = views.clone()
    moved[:, 1] = views[:, 1].flip(-1)  # a different second view...
    mask_one = mask.clone()
    mask_one[:, 1] = False  # ...that is padding
    first_only = physics_light_weights(views[:, :1], mask[:, :1], 20.0, 3)
    assert torch.allclose(physics_light_weights(moved, mask_one, 20.0, 3), first_only)
    none = torch.zeros_like(mask)
    assert torch.allclose(physics_light_weights(views, none, 20.0, 3), torch.ones(2, 1, 24, 24))
    assert torch.allclose(physics_light_weights(views, mask, 0.0, 3), torch.ones(2, 1, 24, 24))


def test_weighting_keeps_the_per_pixel_minimiser():
    """For one conditioning, the weights are the same whatever the anchor's noise, so each
    pixel's weighted squared error over noise draws is minimised by the plain mean: the
    weighted mean sum(w y) / sum(w). Weights made from the anchor's own pixels would move it."""
    g = torch.Generator().manual_seed(1)
    views, mask = _blob_views(b=1)
    target = 0.7 + torch.randn(20000, 1, 24, 24, generator=g)  # noise draws of one anchor
    w = physics_light_weights(views, mask, 20.0, 3).expand_as(target)
    best = (w * target).sum(0) / w.sum(0)
    assert torch.allclose(best, target.mean(0), atol=1e-5)
    own = 1.0 + 20.0 * target.clamp_min(0.0)  # a weight from the anchor's noisy pixels
    biased = (own * target).sum(0) / own.sum(0)
    assert (biased - target.mean(0)).min() > 0.3


def test_none_gives_no_weights_and_bad_settings_name_their_key():
    views, mask = _blob_views()
    assert pixel_weights({"kind": "none", "strength": 10.0, "smoothing_px": 5}, views, mask) is None
    with pytest.raises(ValueError, match=r"model\.loss_weighting\.smoothing_px"):
        check_loss_weighting({**LIGHT, "smoothing_px": 4})
    with pytest.raises(ValueError, match=r"model\.loss_weighting\.kind"):
        check_loss_weighting({**LIGHT, "kind": "galaxy"})
    with pytest.raises(ValueError, match=r"\(B, V, C, H, W\)"):
        physics_light_weights(views[:, 0], mask, 10.0, 3)
    cfg = tiny_model_config()
    bad = copy.deepcopy(cfg)
    bad["model"]["loss_weighting"] = {"kind": "galaxy_light"}
    with pytest.raises(ConfigError, match=r"model\.loss_weighting\.kind"):
        validate_config(bad, SCHEMA)
    bad["model"]["loss_weighting"] = {"kind": "physics_light", "smoothing_px": 6}
    with pytest.raises(ValueError, match="smoothing_px"):
        build_model(validate_config(bad, SCHEMA))


def test_the_model_weights_its_loss_and_every_conditioning_of_a_sample_shares_the_weights():
    torch.manual_seed(0)
    plain_cfg = tiny_model_config()
    assert plain_cfg["model"]["loss_weighting"]["kind"] == "none"  # the paper's loss by default
    cfg = tiny_model_config()
    cfg["model"]["loss_weighting"] = dict(LIGHT)
    model = build_model(cfg).eval()
    plain = build_model(plain_cfg).eval()
    plain.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(0)
    physics = torch.randn(4, 1, 4, 48, 48, generator=g)
    physics[:, :, :, 20:28, 20:28] += 3.0
    pm = torch.ones(4, 1, dtype=torch.bool)
    inst = torch.randn(4, 3, 4, 48, 48, generator=g)
    im = torch.ones(4, 3, dtype=torch.bool)
    x1 = torch.randn(4, 4, 48, 48, generator=g)
    x0 = torch.randn(4, 4, 48, 48, generator=g)
    t = torch.full((4,), 0.7)
    with torch.no_grad():
        cond = model.condition(physics, pm, inst, im)
        bare = plain.condition(physics, pm, inst, im)
        assert bare.pixel_weight is None
        assert cond.pixel_weight.shape == (4, 1, 48, 48)
        assert torch.equal(cond.tokens, bare.tokens)
        _, per_w = model.loss(x1, cond, x0=x0, t=t)
        _, per_u = plain.loss(x1, bare, x0=x0, t=t)
        v = model.velocity((1 - 0.7) * x0 + 0.7 * x1, t, cond)
        expect = (((v - (x1 - x0)) ** 2) * cond.pixel_weight).flatten(1).mean(1)
        assert torch.allclose(per_w, expect, rtol=1e-5)
        assert not torch.allclose(per_w, per_u)
        # A swapped half keeps the sample's own weights (a gain compares conditionings on one loss).
        swapped = cond.with_half_from("physics", torch.tensor([1, 2, 3, 0]))
        assert torch.equal(swapped.pixel_weight, cond.pixel_weight)
        assert torch.equal(cond.repeat(2).pixel_weight, cond.pixel_weight.repeat_interleave(2, 0))
        ones = Conditioning(bare.tokens, bare.mask, bare.n_physics, torch.ones(4, 1, 48, 48))
        assert torch.allclose(plain.loss(x1, ones, x0=x0, t=t)[1], per_u)
