"""Seed 003's physics-informed convolutional VAE (Gagliano & Villar 2023), one survey's cutouts.

The latent is split in two. Its first ``P`` dimensions *are* physical properties
(redshift, log stellar mass, log sSFR, standardised on the training split): the
encoder's value there is the model's estimate of the property, and the objective
pulls it onto the spectroscopic (real data) or true (synthetic sky) value. The
remaining ``F`` dimensions are free and variational, regularised by a KL divergence
to N(0, 1): they hold whatever the image needs that the properties do not say.
The decoder sees all of them, so the property dimensions must also explain the
image, which is what makes the latent "physics-informed" rather than a regressor
with a side decoder.

The seed's objective has three terms and gives no weights, so the defaults
(``cvae.reconstruction_weight``, ``cvae.beta``, ``cvae.property_weight``) are 1, an
unweighted sum:

- reconstruction: mean squared error per pixel ("how well the decoded image
  matches the original, measured pixel by pixel"); a per-pixel mean keeps the
  weights meaningful whatever the cutout size;
- KL: sum over the free dimensions of KL(N(mu, sigma^2) || N(0, 1)), averaged over
  the batch (closed form ``0.5 (mu^2 + sigma^2 - 1 - log sigma^2)``);
- property: mean squared error between the property dimensions and the
  standardised labels, averaged over the (object, property) entries that have a
  label; an unlabelled entry adds nothing, a batch without any label adds 0.

The property dimensions are deterministic (the decoder is fed the encoder's
value): the seed regularises only the free dimension with the KL term, and a
variance on a supervised dimension with no term to bound it would only drift.

The anomaly score (:func:`anomaly_scores`) follows the seed's use of the latent:
rare objects "cluster in distinctive regions of latent space", so an object is
scored by how far it lies from the known population - the mean distance to its
``k`` nearest reference latents after whitening by the reference covariance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CvaeLoss", "PhysicsCVAE", "anomaly_scores", "build_cvae", "cvae_loss", "gaussian_kl"]


class PhysicsCVAE(nn.Module):
    """Convolutional encoder -> (property values, free means, free log-variances) -> decoder.

    ``channels``: one stride-2 3x3 convolution per entry (the decoder mirrors them,
    upsampling back to the exact sizes the encoder saw, so any image size works). No
    normalisation layers: a per-image normalisation would divide out the total flux, which
    is what stellar mass and redshift are read from.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        n_properties: int,
        free_dims: int,
        channels: tuple[int, ...] = (32, 64, 128, 256),
        hidden: int = 256,
    ) -> None:
        super().__init__()
        if n_properties + free_dims < 1:
            raise ValueError("the CVAE needs at least one latent dimension (cvae.properties or cvae.free_dims)")
        self.in_channels = in_channels
        self.image_size = image_size
        self.n_properties = n_properties
        self.free_dims = free_dims
        self.latent_dim = n_properties + free_dims
        layers: list[nn.Module] = []
        sizes = [image_size]
        c_in = in_channels
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.SiLU()]
            c_in = c
            sizes.append((sizes[-1] + 1) // 2)  # what a stride-2, padding-1, 3x3 convolution gives
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        self._sizes = sizes
        flat = c_in * sizes[-1] ** 2
        self.to_latent = nn.Sequential(
            nn.Linear(flat, hidden), nn.SiLU(), nn.Linear(hidden, n_properties + 2 * free_dims)
        )
        self.from_latent = nn.Sequential(nn.Linear(self.latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, flat))
        self._bottom = (c_in, sizes[-1])
        up: list[nn.Module] = []
        rev = list(channels[::-1])
        for i, c in enumerate(rev):
            c_out = rev[i + 1] if i + 1 < len(rev) else rev[-1]
            up.append(nn.Sequential(nn.Conv2d(c, c_out, 3, padding=1), nn.SiLU()))
        self.up = nn.ModuleList(up)
        self.to_image = nn.Conv2d(rev[-1], in_channels, 3, padding=1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> property values (B, P), free means (B, F), free log-variances (B, F)."""
        h = self.to_latent(self.encoder(x))
        p, f = self.n_properties, self.free_dims
        return h[:, :p], h[:, p : p + f], h[:, p + f :]

    def latent_mean(self, x: torch.Tensor) -> torch.Tensor:
        """(B, P + F): the properties, then the free means - what the embeddings export as ``phys_*``."""
        props, mu, _ = self.encode(x)
        return torch.cat([props, mu], dim=1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, P + F) latent -> (B, C, H, W) image."""
        c, s = self._bottom
        h = self.from_latent(z).view(len(z), c, s, s)
        for block, size in zip(self.up, self._sizes[-2::-1], strict=True):
            h = block(F.interpolate(h, size=(size, size), mode="nearest"))
        return self.to_image(h)

    def forward(
        self, x: torch.Tensor, sample: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction, property values, free means and log-variances.

        ``sample``: decode a draw of the free latent (training, the reparameterisation
        trick); False decodes its mean (validation: the same number for the same weights)."""
        props, mu, logvar = self.encode(x)
        free = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        return self.decode(torch.cat([props, free], dim=1)), props, mu, logvar


def build_cvae(config: dict) -> PhysicsCVAE:
    """The CVAE of a validated config: the image shape from ``preprocess``, the rest from ``cvae``."""
    cfg = config["cvae"]
    return PhysicsCVAE(
        in_channels=len(config["preprocess"]["bands"]),
        image_size=int(config["preprocess"]["size"]),
        n_properties=len(cfg["properties"]),
        free_dims=int(cfg["free_dims"]),
        channels=tuple(cfg["channels"]),
        hidden=int(cfg["hidden"]),
    )


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per element, in closed form."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


@dataclass(frozen=True)
class CvaeLoss:
    """The objective and its three terms (unweighted), each a scalar tensor."""

    total: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    property: torch.Tensor
    n_labelled: int


def cvae_loss(
    x: torch.Tensor,
    reconstruction: torch.Tensor,
    props: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    labels: torch.Tensor,
    reconstruction_weight: float = 1.0,
    beta: float = 1.0,
    property_weight: float = 1.0,
) -> CvaeLoss:
    """The seed's objective (see the module docstring); ``labels`` (B, P) standardised, NaN = no label."""
    rec = F.mse_loss(reconstruction.float(), x.float())
    kl = gaussian_kl(mu.float(), logvar.float()).sum(dim=1).mean() if mu.shape[1] else rec.new_zeros(())
    known = torch.isfinite(labels)
    n = int(known.sum())
    if n:
        prop = (props.float()[known] - labels.float()[known]).pow(2).mean()
    else:
        prop = props.float().sum() * 0.0  # keeps the graph (DDP expects every parameter to get a gradient)
    total = reconstruction_weight * rec + beta * kl + property_weight * prop
    return CvaeLoss(total, rec, kl, prop, n)


def anomaly_scores(latents: np.ndarray, reference: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Mean distance of each latent to its ``k`` nearest reference latents, in whitened units.

    ``reference``: a boolean mask over ``latents`` (the known population, e.g. the training
    split) - a reference object's own zero distance is left out. Whitening by the reference
    covariance makes every latent direction count by its spread, so a free dimension with
    a small scale is not drowned by the properties (a Mahalanobis metric).
    """
    x = np.asarray(latents, dtype=np.float64)
    reference = np.asarray(reference, dtype=bool)
    ref = x[reference]
    if len(ref) < 2:
        raise ValueError(f"the anomaly score needs at least 2 reference latents, got {len(ref)}")
    k = max(1, min(int(k), len(ref) - 1))
    centre = ref.mean(axis=0)
    cov = np.atleast_2d(np.cov(ref, rowvar=False)) + 1e-9 * np.eye(x.shape[1])
    whiten = np.linalg.inv(np.linalg.cholesky(cov)).T  # y = (x - centre) @ whiten has identity covariance
    y = torch.from_numpy((x - centre) @ whiten)
    yref = y[torch.from_numpy(reference)]
    ref_pos = np.cumsum(reference) - 1  # a reference row's position among the reference rows
    out = np.empty(len(x))
    for start in range(0, len(x), chunk):
        d = torch.cdist(y[start : start + chunk], yref)
        rows = np.arange(start, min(start + chunk, len(x)))
        own = reference[rows]
        d[torch.from_numpy(np.flatnonzero(own)), torch.from_numpy(ref_pos[rows[own]])] = torch.inf
        out[rows] = torch.topk(d, k, dim=1, largest=False).values.mean(dim=1).numpy()
    return out
