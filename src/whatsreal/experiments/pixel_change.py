"""How much a swapped observing condition changes a stamp's model pixels, on the synthetic sky.

Why this is measured: the instrument encoder learns a condition only if the decoder's loss pays
for it, and on the demo sky it pays for the sky noise and hardly for the PSF
(benchmarks/RESULTS.md, "An oracle: the decoder handed the true conditions"). One candidate
reason is the preprocessing's arcsinh stretch, ``arcsinh(x / softening) * softening * scale``:
with the AION softening of 0.01 (nanomaggies on the Legacy zero point) the background noise
sits in its linear part while galaxy cores, where the PSF shows, are compressed. This module
puts a number on that, before any training: for anchors of the simulated sky it renders the
noiseless scene twice, through its own PSF and through another random anchor's (same survey),
and draws one noise field at its own sky sigma and at that other anchor's; both versions go
through the survey's preprocessing at each softening asked for. Per softening it reports the
mean squared change of the preprocessed pixels from the PSF swap and from the sky-noise swap
(both in units of the preprocessed images' variance, so the stretch's overall scale cancels) and
their ratio. Labelled artefacts are left out of both renders; neighbours, faint galaxies and
stars stay, as in the stored cutouts.

It says what changes in the pixels, not what the flow-matching loss pays for: the decoder also
sees the noisy image it denoises, and what it can read there, a conditioning token need not
tell it (the oracle benchmark measures that).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from whatsreal.data.preprocess import native_band_transform
from whatsreal.sim.noiseless import render_object, sky_specs
from whatsreal.surveys import SURVEY_ORDER, Survey

__all__ = ["PIXEL_CHANGE_COLUMNS", "condition_swap_change"]

PIXEL_CHANGE_COLUMNS = ["survey", "softening", "n_anchors", "psf_change", "noise_change", "psf_over_noise"]


def _swap_renders(
    cfg: dict, survey: str, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(own model, model through a partner's PSF, own sigma, partner's sigma, unit noise), each
    (n, B, S, S) but the sigmas (n, B, 1, 1), for ``n`` random anchors of ``survey``."""
    specs = list(sky_specs(cfg, (survey,))[survey].values())
    if len(specs) < 2:
        raise ValueError(f"survey '{survey}': the sky has {len(specs)} objects, at least 2 are needed for a swap")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(specs), min(n, len(specs)), replace=False)
    partner = np.roll(pick, 1)  # a derangement of the picked anchors: nobody keeps its own conditions
    own, swapped, sigma, sigma_partner = [], [], [], []
    for i, j in zip(pick, partner, strict=True):
        clean = replace(specs[i], saturated_star=False, stripe=False, high_noise=False)
        own.append(render_object(clean, survey, cfg).model)
        psf = replace(clean, psf_fwhm=specs[j].psf_fwhm, psf_g=specs[j].psf_g)
        swapped.append(render_object(psf, survey, cfg).model)
        sigma.append(specs[i].sky_sigma)
        sigma_partner.append(specs[j].sky_sigma)
    own_a, swapped_a = np.stack(own).astype(np.float64), np.stack(swapped).astype(np.float64)
    sigma_a = np.asarray(sigma, dtype=np.float64)[:, :, None, None]
    partner_a = np.asarray(sigma_partner, dtype=np.float64)[:, :, None, None]
    return own_a, swapped_a, sigma_a, partner_a, rng.standard_normal(own_a.shape)


def condition_swap_change(
    cfg: dict,
    softenings: Sequence[float],
    n_anchors: int = 120,
    seed: int = 0,
    surveys: Sequence[str] = SURVEY_ORDER,
) -> pd.DataFrame:
    """Rows :data:`PIXEL_CHANGE_COLUMNS`: per survey and arcsinh softening, the mean squared
    change of the preprocessed pixels when an anchor's PSF (``psf_change``) or sky sigma
    (``noise_change``) is replaced by another anchor's, over ``n_anchors`` random anchors, in
    units of the variance of the preprocessed noisy stamps; ``psf_over_noise`` is their ratio.

    ``cfg``: the validated config of the sky (its ``simulation``, ``surveys`` and
    ``preprocess``); every other preprocessing setting is the config's own.
    """
    if not softenings or min(softenings) <= 0:
        raise ValueError(f"softenings must be positive numbers, got {list(softenings)}")
    if n_anchors < 2:
        raise ValueError(f"n_anchors must be at least 2 (each is swapped with another), got {n_anchors}")
    rows = []
    for survey in surveys:
        own, swapped, sigma, sigma_partner, z = _swap_renders(cfg, survey, n_anchors, seed)
        ivar = np.ones(own.shape, dtype=np.float32)
        entry = Survey.from_entry(survey, cfg["surveys"][survey])
        for softening in softenings:
            prep = copy.deepcopy(cfg["preprocess"])
            prep["arcsinh_softening"] = float(softening)
            transform = native_band_transform(survey, prep, entry)
            noisy, psf_swapped, noise_swapped = (
                transform(x.astype(np.float32), ivar)[0].astype(np.float64)
                for x in (own + sigma * z, swapped + sigma * z, own + sigma_partner * z)
            )
            var = noisy.var()
            psf = float(((psf_swapped - noisy) ** 2).mean() / var)
            noise = float(((noise_swapped - noisy) ** 2).mean() / var)
            rows.append(
                {
                    "survey": survey,
                    "softening": float(softening),
                    "n_anchors": len(own),
                    "psf_change": psf,
                    "noise_change": noise,
                    "psf_over_noise": psf / noise,
                }
            )
    return pd.DataFrame(rows, columns=PIXEL_CHANGE_COLUMNS)
