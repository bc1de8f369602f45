"""Per-pixel weights of the flow-matching loss, made from the conditioning's physics views.

Why: the plain loss is a mean over every pixel of the anchor stamp, and a stamp is mostly
background. Knowing the sky noise changes the optimal velocity on every pixel; knowing the
PSF changes it only where the galaxy's light is, a few per cent of the pixels. On the
synthetic sky the loss therefore pays 20-60 times less for the PSF than for the sky noise,
even when the true PSF is handed to the decoder (benchmarks/RESULTS.md, "What the decoder
uses"), and an encoder trained only through that loss has little reason to read it.

``model.loss_weighting.kind: physics_light`` puts more weight where the galaxy (and any
neighbour or star in the stamp) is, as seen in the *physics* views: the other survey's
images of the same sky, which preprocessing puts on the anchor's pixel grid. Per sample:

1. the mean of the valid physics views, summed over bands, minus its median (the
   preprocessed background level);
2. a ``smoothing_px`` box mean (``count_include_pad=False``), clipped at 0, divided by its
   maximum: ``m`` in [0, 1];
3. ``w = 1 + strength * m``, divided by its mean over the stamp, so a stamp's weights
   average to 1 and the loss keeps its scale (and the configured learning rate its meaning).

The weights are a function of the conditioning only, never of the anchor's own pixels. For a
weight that depends only on what the model is conditioned on, the weighted squared error has
the same minimiser as the unweighted one (the conditional mean velocity, pixel by pixel): the
objective's answer is unchanged, only how a finite model spends its capacity moves towards
the galaxy. A weight made from the anchor's own noisy pixels would pull the optimum towards
upward noise fluctuations. ``kind: none`` (the paper; every weight 1) leaves the loss as
published.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["KINDS", "check_loss_weighting", "physics_light_weights", "pixel_weights"]

KINDS = ("none", "physics_light")
"""The schema's ``model.loss_weighting.kind`` values."""


def physics_light_weights(
    physics: torch.Tensor, physics_mask: torch.Tensor, strength: float, smoothing_px: int
) -> torch.Tensor:
    """(B, V, C, H, W) physics views and their (B, V) mask -> (B, 1, H, W) weights with mean 1
    per sample (module docstring). A sample with no valid view gets uniform weights."""
    if physics.ndim != 5:
        raise ValueError(f"physics views must be (B, V, C, H, W), got shape {tuple(physics.shape)}")
    check_loss_weighting({"kind": "physics_light", "strength": strength, "smoothing_px": smoothing_px})
    valid = physics_mask.to(physics.dtype)[:, :, None, None, None]
    mean_view = (physics * valid).sum(1) / valid.sum(1).clamp_min(1.0)  # (B, C, H, W)
    light = mean_view.sum(1, keepdim=True)
    light = light - light.flatten(1).median(1).values[:, None, None, None]
    light = F.avg_pool2d(light, smoothing_px, stride=1, padding=smoothing_px // 2, count_include_pad=False)
    light = light.clamp_min(0.0)
    peak = light.amax((2, 3), keepdim=True)
    m = torch.where(peak > 0, light / peak.clamp_min(torch.finfo(light.dtype).tiny), torch.zeros_like(light))
    w = 1.0 + strength * m
    return w / w.mean((2, 3), keepdim=True)


def check_loss_weighting(cfg: dict) -> None:
    """Raise, naming the key, for what the schema cannot say: an even smoothing box has no centre
    pixel and would shift the weights by half a pixel."""
    if cfg["kind"] not in KINDS:
        raise ValueError(f"model.loss_weighting.kind must be one of {KINDS}, got {cfg['kind']!r}")
    k = int(cfg["smoothing_px"])
    if k < 1 or k % 2 == 0:
        raise ValueError(f"model.loss_weighting.smoothing_px must be an odd integer >= 1, got {k}")
    if float(cfg["strength"]) < 0:
        raise ValueError(f"model.loss_weighting.strength must be >= 0, got {cfg['strength']}")


def pixel_weights(cfg: dict, physics: torch.Tensor, physics_mask: torch.Tensor) -> torch.Tensor | None:
    """The weights ``model.loss_weighting`` (``cfg``) asks for, or None for the unweighted loss."""
    check_loss_weighting(cfg)
    if cfg["kind"] == "none":
        return None
    return physics_light_weights(physics, physics_mask, float(cfg["strength"]), int(cfg["smoothing_px"]))
