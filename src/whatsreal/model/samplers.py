"""ODE samplers for the learned flow: dx/dt = v(x, t, c) from t=0 (noise) to t=1 (image).

Euler (the paper: 250 steps), Heun (2nd order, 2 evaluations per step) and
midpoint (2nd order). One API draws n posterior samples per conditioning set,
batched, from a seeded generator, so a fixed x0 can be reused across conditionings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from whatsreal.model.flow import Conditioning, FlowMatchingModel

__all__ = ["METHODS", "integrate", "sample"]

METHODS = ("euler", "heun", "midpoint")


@torch.no_grad()
def integrate(model: FlowMatchingModel, x0: torch.Tensor, cond: Conditioning, steps: int, method: str) -> torch.Tensor:
    """Integrate from x0 at t=0 to t=1 with ``steps`` uniform steps."""
    if method not in METHODS:
        raise ValueError(f"sample.method must be one of {METHODS}, got '{method}'")
    x = x0
    ts = torch.linspace(0.0, 1.0, steps + 1, device=x0.device, dtype=x0.dtype)
    for i in range(steps):
        t, h = ts[i], ts[i + 1] - ts[i]
        v = model.velocity(x, t, cond)
        if method == "euler":
            x = x + h * v
        elif method == "midpoint":
            x = x + h * model.velocity(x + 0.5 * h * v, t + 0.5 * h, cond)
        else:  # heun
            x_pred = x + h * v
            x = x + 0.5 * h * (v + model.velocity(x_pred, ts[i + 1], cond))
    return x


@torch.no_grad()
def sample(
    model: FlowMatchingModel,
    cond: Conditioning,
    n: int,
    steps: int,
    method: str = "euler",
    generator: torch.Generator | None = None,
    x0: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, n, C, H, W) posterior samples: n per conditioning set, integrated in one batch."""
    b = cond.tokens.shape[0]
    unet = model.unet
    shape = (b * n, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    if x0 is None:
        x0 = torch.randn(shape, generator=generator, device=cond.tokens.device)
    elif tuple(x0.shape) != shape:
        raise ValueError(f"x0 has shape {tuple(x0.shape)}, expected {shape}")
    out = integrate(model, x0, cond.repeat(n), steps, method)
    return out.unflatten(0, (b, n))
