"""Embedding export: physics and instrument tokens for every paired object in both surveys.

Each object is encoded on its own image: the physics encoder gives 4x16 tokens
(flattened to 64), the instrument encoder 4x16 tokens (mean-pooled to 16). Rows:
one per object and survey, in pair order, HSC first. The full token arrays go to
a second file (the layout's ``embeddings_tokens.npz``), row-aligned per survey.

Any model with a ``physics_encoder`` and an ``instrument_encoder`` (the flow-matching
model, the contrastive dual encoder: whatsreal.methods) is exported the same way; a
single-latent model has only a ``physics_encoder`` and is exported with
``spaces=("physics",)``: ``phys_*`` columns and ``<survey>_physics`` tokens only, like the
random-init baseline's file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from whatsreal.io import write_npz, write_parquet
from whatsreal.layout import DatasetLayout
from whatsreal.progress import Progress
from whatsreal.surveys import SURVEY_ORDER

if TYPE_CHECKING:
    from whatsreal.model.flow import FlowMatchingModel

__all__ = ["ENCODERS", "encode_images", "encode_spaces", "export_embeddings", "identifier_columns"]

log = logging.getLogger(__name__)


ENCODERS: dict[str, str] = {"physics": "physics_encoder", "instrument": "instrument_encoder"}
"""Latent space -> the model attribute that encodes it."""


@torch.no_grad()
def encode_spaces(
    model: nn.Module,
    images: np.ndarray,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    desc: str = "embed",
    spaces: tuple[str, ...] = tuple(ENCODERS),
) -> dict[str, np.ndarray]:
    """(N, C, H, W) images -> {space: (N, T, D) float32 tokens} for each of ``spaces``."""
    model.eval()
    encoders = {space: getattr(model, ENCODERS[space]) for space in spaces}
    out: dict[str, list[np.ndarray]] = {space: [] for space in spaces}
    with Progress(len(images), desc, "images", log=log) as shown:
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.array(images[start : start + batch_size], dtype=np.float32)).to(device)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                for space, encoder in encoders.items():
                    out[space].append(encoder(x).float().cpu().numpy())
            shown.update(len(x))
    return {space: np.concatenate(parts) for space, parts in out.items()}


def encode_images(
    model: FlowMatchingModel,
    images: np.ndarray,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    desc: str = "embed",
) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, H, W) images -> physics tokens (N, T, D) and instrument tokens (N, T, D), float32.

    ``desc`` names the images in the progress shown per batch (whatsreal.progress)."""
    tokens = encode_spaces(model, images, batch_size, device, dtype, desc)
    return tokens["physics"], tokens["instrument"]


def identifier_columns(meta: pd.DataFrame, survey: str) -> pd.DataFrame:
    """The identifier columns every embeddings.parquet starts with, from a survey's metadata rows."""
    return pd.DataFrame(
        {
            "object_id": meta["object_id"].astype(str),
            "pair": meta["pair"],
            "survey": survey,
            "ra": meta["ra"],
            "dec": meta["dec"],
            "split": meta["split"],
        }
    )


def export_embeddings(
    model: FlowMatchingModel,
    data: DatasetLayout | str | Path,
    out: str | Path,
    tokens_out: str | Path,
    batch_size: int,
    device: torch.device | str = "cpu",
    spaces: tuple[str, ...] = tuple(ENCODERS),
) -> pd.DataFrame:
    """Write ``out`` (one row per object and survey, mean-pooled latents) and ``tokens_out``
    (every token, ``<survey>_physics``/``<survey>_instrument`` arrays) for the dataset ``data``.

    ``spaces``: the latent spaces the model has (physics always; instrument unless it is a
    single-latent model)."""
    if "physics" not in spaces or not set(spaces) <= set(ENCODERS):
        raise ValueError(f"spaces must include 'physics' and be among {tuple(ENCODERS)}, got {spaces}")
    data = DatasetLayout.of(data)
    device = torch.device(device)
    model = model.to(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    frames, tokens = [], {}
    t0 = time.perf_counter()
    n_total = 0
    for survey in SURVEY_ORDER:
        images = np.load(data.images(survey), mmap_mode="r")
        meta = pd.read_parquet(data.meta(survey), columns=["pair", "split", "object_id", "ra", "dec"])
        encoded = encode_spaces(model, images, batch_size, device, dtype, desc=f"embed {survey}", spaces=spaces)
        n_total += len(images)
        for space, toks in encoded.items():
            tokens[f"{survey}_{space}"] = toks
        flat = encoded["physics"].reshape(len(images), -1)
        df = identifier_columns(meta, survey)
        latents = [pd.DataFrame(flat, columns=[f"phys_{i}" for i in range(flat.shape[1])])]
        if "instrument" in encoded:
            pooled = encoded["instrument"].mean(axis=1)
            latents.append(pd.DataFrame(pooled, columns=[f"inst_{i}" for i in range(pooled.shape[1])]))
        df = pd.concat([df, *latents], axis=1)
        frames.append(df)
    elapsed = time.perf_counter() - t0
    table = pd.concat(frames, ignore_index=True)
    write_npz(tokens_out, **tokens)
    write_parquet(table, out)
    log.info("embedded %d images in %.1f s (%.0f galaxies/s on %s)", n_total, elapsed, n_total / elapsed, device)
    return table
