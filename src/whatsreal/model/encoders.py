"""Image -> token encoders (paper A.1): a timm backbone whose pooling/classifier is
replaced by a 1x1 convolution to ``token_dim`` channels on the final feature map,
read as a set of tokens (ResNet-18 on 48x48 inputs: a 2x2 map, so 4 tokens of 16)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["TokenEncoder", "create_timm_model"]


def create_timm_model(name: str, in_chans: int, options: Mapping[str, Any] | None = None, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name)``, untrained, with ``model.encoder.options`` as extra keyword
    arguments: the encoders and the image baselines (whatsreal.experiments.regressor) build
    the same architecture here. An option the model's constructor does not take is a
    ``ValueError`` that names the config key."""
    import timm  # here, not at the top: modules that only name these do not load timm (seconds)

    try:
        return timm.create_model(name, pretrained=False, in_chans=in_chans, **kwargs, **dict(options or {}))
    except TypeError as err:
        raise ValueError(f"model.encoder.options {dict(options or {})} do not fit timm model {name!r}: {err}") from err


class TokenEncoder(nn.Module):
    """(B, C, H, W) images -> (B, tokens, token_dim)."""

    def __init__(self, name: str, in_chans: int, tokens: int, token_dim: int, options: dict | None = None) -> None:
        super().__init__()
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise ValueError(f"model.encoder.tokens must be a square number, got {tokens}")
        self.backbone = create_timm_model(name, in_chans, options, num_classes=0, global_pool="")
        self.side = side
        self.project = nn.Conv2d(self.backbone.num_features, token_dim, kernel_size=1)
        self.tokens = tokens
        self.token_dim = token_dim

    @classmethod
    def from_config(cls, encoder_cfg: dict, in_chans: int) -> TokenEncoder:
        """The encoder ``model.encoder`` describes: one place reads the keys, so every
        method (flow, contrastive, single latent, the random-init baseline) builds the same one."""
        return cls(
            encoder_cfg["name"],
            in_chans,
            int(encoder_cfg["tokens"]),
            int(encoder_cfg["token_dim"]),
            dict(encoder_cfg.get("options") or {}),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        fmap = self.backbone.forward_features(images)
        if fmap.shape[-2:] != (self.side, self.side):
            fmap = nn.functional.adaptive_avg_pool2d(fmap, self.side)
        return self.project(fmap).flatten(2).transpose(1, 2)  # (B, side*side, token_dim)
