"""Use a trained model on your own galaxies: ``whatsreal.load(path)`` and what it returns.

::

    import whatsreal
    model = whatsreal.load("results/sim/runs/main/model")          # an exported model directory
    x = model.preprocess(cutouts, "legacysurvey")                     # raw flux (n, bands, S, S) -> model pixels
    emb = model.embed(x, "legacysurvey")                              # physics and instrument tokens
    views = model.preprocess(neighbour_cutouts, "hsc")                # other HSC galaxies near the target
    samples = model.counterfactual(x[0], "legacysurvey", "hsc", instrument_views=views, n=16)
    flux = model.to_flux(samples, "hsc")                              # back to HSC's own flux units

Images on the model's side ("model pixels") are what the pipeline trains on: bands g, r, i, z
clamped, on the reference zero-point, cropped (HSC) or resampled (Legacy) to the model grid,
arcsinh-stretched and standardised with the normalisation fitted on the training pairs, all
read from the model directory's ``config.json`` (:mod:`whatsreal.export`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from whatsreal.cutouts import Cutouts
from whatsreal.data.preprocess import band_transform, model_pixels_to_flux
from whatsreal.device import compute_device
from whatsreal.export import ModelFormatError, read_model_config
from whatsreal.layout import ModelLayout
from whatsreal.model.embed import encode_images
from whatsreal.model.flow import FlowMatchingModel
from whatsreal.model.samplers import METHODS, sample
from whatsreal.progress import Progress
from whatsreal.surveys import SURVEYS

__all__ = ["Embeddings", "InputError", "WhatsrealModel", "load"]

log = logging.getLogger(__name__)


class InputError(ValueError):
    """Images or arguments the model cannot take; the message says what was expected."""


@dataclass(frozen=True)
class Embeddings:
    """Both latents of n images: (n, tokens, token_dim) each."""

    physics: np.ndarray
    instrument: np.ndarray

    def table(
        self,
        survey: str,
        object_id: Sequence[str] | None = None,
        ra: Sequence[float] | None = None,
        dec: Sequence[float] | None = None,
    ) -> pd.DataFrame:
        """The pipeline's embeddings layout: ``phys_*`` the flattened physics tokens,
        ``inst_*`` the mean of the instrument tokens, one row per image."""
        n = len(self.physics)
        flat = self.physics.reshape(n, -1)
        pooled = self.instrument.mean(axis=1)
        ids = [str(i) for i in object_id] if object_id is not None else [str(i) for i in range(n)]
        head = pd.DataFrame(
            {
                "object_id": ids,
                "ra": np.asarray(ra, dtype=np.float64) if ra is not None else np.full(n, np.nan),
                "dec": np.asarray(dec, dtype=np.float64) if dec is not None else np.full(n, np.nan),
                "survey": survey,
            }
        )
        phys = pd.DataFrame(flat, columns=[f"phys_{i}" for i in range(flat.shape[1])])
        inst = pd.DataFrame(pooled, columns=[f"inst_{i}" for i in range(pooled.shape[1])])
        return pd.concat([head, phys, inst], axis=1)


class WhatsrealModel:
    """A trained model with its preprocessing: raw cutouts in, latents and counterfactuals out."""

    def __init__(self, net: FlowMatchingModel, config: dict[str, Any], path: Path, device: torch.device) -> None:
        self.net = net.to(device).eval()
        self.config = config
        self.path = path
        self.device = device
        pre = config["preprocess"]
        self.bands: tuple[str, ...] = tuple(pre["bands"])
        self.size = int(pre["size"])
        self.surveys: tuple[str, ...] = tuple(config["surveys"])
        self._transforms = {s: band_transform(s, pre) for s in self.surveys}

    # ------------------------------------------------------------------ description
    @property
    def provenance(self) -> dict[str, Any]:
        """What the model was trained on and with (run, dataset, steps, data fingerprints, code)."""
        return self.config["provenance"]

    def pixel_scale(self, survey: str) -> float:
        """Arcseconds per pixel of the model grid for ``survey`` (Legacy's is resampled)."""
        return float(self.config["surveys"][self._survey(survey)]["pixel_scale_arcsec"])

    def flux_unit(self, survey: str) -> str:
        return str(self.config["surveys"][self._survey(survey)]["flux_unit"])

    def info(self) -> dict[str, Any]:
        """A summary for people: the model, its inputs and where it came from."""
        model = self.config["model"]
        n_params = sum(p.numel() for p in self.net.parameters())
        return {
            "path": str(self.path),
            "encoder": model["encoder"],
            "unet_channels": model["unet"]["block_out_channels"],
            "parameters": n_params,
            "bands": list(self.bands),
            "image_size": self.size,
            "surveys": {
                s: {k: v[k] for k in ("pixel_scale_arcsec", "flux_unit")} for s, v in self.config["surveys"].items()
            },
            "normalisation": self.config["normalisation"],
            "sampler": self.config["sample"],
            "provenance": {k: v for k, v in self.provenance.items() if k != "data_files"},
            "data_files": self.provenance.get("data_files", {}),
        }

    def __repr__(self) -> str:
        p = self.provenance
        return (
            f"WhatsrealModel({self.path}, run={p.get('run')!r}, dataset={p.get('dataset')!r}, steps={p.get('steps')})"
        )

    # ------------------------------------------------------------------ pixels
    def _survey(self, survey: str) -> str:
        if survey not in self.config["surveys"]:
            raise InputError(f"unknown survey '{survey}'; this model knows {list(self.config['surveys'])}")
        return survey

    def _norm(self, survey: str) -> tuple[float, float]:
        n = self.config["normalisation"][survey]
        return float(n["mean"]), float(n["std"])

    def preprocess(
        self,
        cutouts: np.ndarray | Cutouts,
        survey: str,
        *,
        bands: Sequence[str] | None = None,
        ivar: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> np.ndarray:
        """(n, B, S, S) raw cutouts in ``survey``'s native flux -> (n, 4, size, size) model pixels.

        ``bands``: the cutouts' band letters in order (default: the survey's MMU order when B
        matches it, e.g. HSC g,r,i,z,y); ``ivar``/``mask`` (True = clean) mark pixels to zero,
        as preprocessing does; NaN/inf pixels are zeroed too. A cutout smaller than the crop,
        a missing band or a band with no valid pixel in the crop raises :class:`InputError`.
        """
        survey = self._survey(survey)
        sources: Sequence[str] | None = None
        if isinstance(cutouts, Cutouts):
            bands, ivar, mask, images = cutouts.bands, cutouts.ivar, cutouts.mask, cutouts.images
            sources = cutouts.sources
        else:
            images = np.asarray(cutouts)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
            raise InputError(f"cutouts must be (n, bands, S, S) square images, got shape {images.shape}")
        picked = self._band_index(images.shape[1], survey, bands)
        transform = self._transforms[survey]
        if images.shape[-1] < transform.crop:
            raise InputError(
                f"{survey} cutouts are {images.shape[-1]} pixels, smaller than the model's {transform.crop}-pixel "
                f'crop ({transform.crop * SURVEYS[survey].pixel_scale:.1f}"); cut larger stamps'
            )
        images = images[:, picked].astype(np.float32)
        weights = np.ones_like(images) if ivar is None else np.asarray(ivar)[:, picked].astype(np.float32)
        if mask is not None:
            weights = np.where(np.asarray(mask)[:, picked], weights, 0.0)
        blank = transform.blank_bands(images, weights)
        if blank.any():
            i, b = np.argwhere(blank)[0]
            where = sources[i] if sources else f"cutout {i}"
            raise InputError(
                f"{where}: band {self.bands[b]} has no valid pixel (finite, ivar > 0, non-zero) in the "
                f"central {transform.crop} pixels ({int(blank.any(axis=1).sum())} cutout(s) like this); drop them"
            )
        bad = ~np.isfinite(images)
        if bad.any():
            first = int(np.flatnonzero(bad.any(axis=(1, 2, 3)))[0])
            log.warning(
                "%s: %d NaN/inf pixel(s) in %d %s cutout(s) set to 0, as preprocessing does (first: %s)",
                survey,
                int(bad.sum()),
                int(bad.any(axis=(1, 2, 3)).sum()),
                survey,
                sources[first] if sources else f"cutout {first}",
            )
        x, _ = transform(images, weights)
        mean, std = self._norm(survey)
        return ((x - mean) / std).astype(np.float32)

    def _band_index(self, n_bands: int, survey: str, bands: Sequence[str] | None) -> list[int]:
        if bands is None:
            native = SURVEYS[survey].bands
            if n_bands == len(native):
                bands = native
            elif n_bands == len(self.bands):
                bands = self.bands
            else:
                raise InputError(
                    f"{n_bands} bands given for {survey}, expected {len(native)} ({','.join(native)}) or "
                    f"{len(self.bands)} ({','.join(self.bands)}); pass bands=[...] to name them"
                )
        bands = [str(b) for b in bands]
        if len(bands) != n_bands:
            raise InputError(f"bands={bands} names {len(bands)} bands but the cutouts have {n_bands}")
        missing = [b for b in self.bands if b not in bands]
        if missing:
            raise InputError(f"the model needs bands {list(self.bands)}; missing {missing} in {bands}")
        return [bands.index(b) for b in self.bands]

    def to_flux(self, x: np.ndarray | torch.Tensor, survey: str) -> np.ndarray:
        """Model pixels -> ``survey``'s native flux on the model grid (the inverse of
        :meth:`preprocess` inside the clamp range; HSC: the crop itself, Legacy: the
        resampled grid of :meth:`pixel_scale`)."""
        survey = self._survey(survey)
        if isinstance(x, torch.Tensor):
            x = x.detach().float().cpu().numpy()
        mean, std = self._norm(survey)
        return model_pixels_to_flux(x, survey, self.config["preprocess"], mean, std)

    # ------------------------------------------------------------------ model
    def _check_model_pixels(self, images: np.ndarray, what: str) -> np.ndarray:
        images = np.array(images, dtype=np.float32)  # a copy: memory maps are read-only, torch wants writable
        want = (len(self.bands), self.size, self.size)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[1:] != want:
            raise InputError(
                f"{what}: expected model pixels (n, {want[0]}, {want[1]}, {want[2]}), got {images.shape}; "
                "run model.preprocess(cutouts, survey) first"
            )
        if not np.isfinite(images).all():
            raise InputError(f"{what}: non-finite model pixels; preprocess zeroes NaN input, so these were edited")
        return images

    def embed(self, images: np.ndarray, survey: str, *, batch_size: int = 64) -> Embeddings:
        """Physics and instrument tokens of preprocessed ``images`` of ``survey``."""
        self._survey(survey)
        images = self._check_model_pixels(images, "images")
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        phys, inst = encode_images(self.net, images, batch_size, self.device, dtype, desc=f"embed {survey}")
        return Embeddings(phys, inst)

    @torch.no_grad()
    def counterfactual(
        self,
        image: np.ndarray,
        from_survey: str,
        to_survey: str,
        *,
        instrument_views: np.ndarray,
        n: int = 32,
        steps: int | None = None,
        method: str | None = None,
        seed: int = 0,
        batch_size: int = 32,
    ) -> np.ndarray:
        """``n`` posterior samples (n, 4, size, size) of the galaxy in ``image`` (model pixels,
        as ``from_survey`` saw it) as ``to_survey`` would see it under the conditions its
        ``instrument_views`` show (model pixels of other ``to_survey`` galaxies, nearby on the
        sky: the model learnt the instrument from spatial neighbours). ``steps``/``method``
        default to the sampler the model was trained for; ``seed`` fixes the draws."""
        self._survey(from_survey)
        self._survey(to_survey)
        target = self._check_model_pixels(image, "image")
        if len(target) != 1:
            raise InputError(f"image: one galaxy at a time, got {len(target)}; loop over them")
        views = self._check_model_pixels(instrument_views, "instrument_views")
        k = int(self.config.get("neighbours", {}).get("k", len(views)))
        if len(views) > k:
            log.warning("%d instrument views given; the model was trained with at most %d", len(views), k)
        if from_survey == to_survey:
            log.warning(
                "from and to are both %s: the model was trained with the physics view from the other survey", to_survey
            )
        steps = int(steps if steps is not None else self.config["sample"]["steps"])
        method = method if method is not None else self.config["sample"]["method"]
        if method not in METHODS:
            raise InputError(f"method must be one of {METHODS}, got '{method}'")
        if n < 1 or steps < 1:
            raise InputError(f"n and steps must be at least 1, got n={n}, steps={steps}")
        dev = self.device
        physics = torch.from_numpy(target)[None].to(dev)  # (1, 1, C, H, W)
        inst = torch.from_numpy(views)[None].to(dev)  # (1, k, C, H, W)
        cond = self.net.condition(
            physics,
            torch.ones(1, 1, dtype=torch.bool, device=dev),
            inst,
            torch.ones(1, len(views), dtype=torch.bool, device=dev),
        )
        # x0 drawn on the CPU from the seed, so the same seed gives the same samples on any device.
        x0 = torch.randn((n, *target.shape[1:]), generator=torch.Generator().manual_seed(int(seed)))
        out = []
        with Progress(n, f"counterfactual {from_survey}->{to_survey}", "samples", log=log) as shown:
            for start in range(0, n, batch_size):
                chunk = x0[start : start + batch_size].to(dev)
                out.append(sample(self.net, cond, len(chunk), steps, method, x0=chunk)[0].float().cpu())
                shown.update(len(chunk))
        return torch.cat(out).numpy()


def load(path: str | Path, device: str | torch.device | None = None) -> WhatsrealModel:
    """The model in an exported directory (``whatsreal export``; a run's ``model/`` folder).

    ``device``: ``"cpu"``, ``"cuda"``...; default the GPU when there is one. Raises
    :class:`whatsreal.export.ModelFormatError` naming the file for anything that is not a
    model directory of this whatsreal's format.
    """
    layout = ModelLayout(Path(path))
    config = read_model_config(layout.root)
    pre = config["preprocess"]
    net = FlowMatchingModel(config["model"], channels=len(pre["bands"]), size=int(pre["size"]))
    try:
        weights = load_file(layout.weights)
    except Exception as err:  # safetensors raises its own error types for a damaged file
        raise ModelFormatError(f"{layout.weights}: not a readable safetensors file ({err}); export again") from None
    missing, unexpected = net.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ModelFormatError(
            f"{layout.weights}: weights do not fit the model in {layout.config} "
            f"(missing {missing[:3]}..., unexpected {unexpected[:3]}...); export the model again"
        )
    dev = torch.device(device) if device is not None else compute_device()
    return WhatsrealModel(net, config, layout.root, dev)
