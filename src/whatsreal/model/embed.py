"""Embedding export: physics and instrument tokens for every paired object in both surveys.

Each object is encoded on its own image: the physics encoder gives 4x16 tokens
(flattened to 64), the instrument encoder 4x16 tokens (mean-pooled to 16). Rows:
one per object and survey, in pair order, HSC first. The full token arrays go to
a second file (the layout's ``embeddings_tokens.npz``), row-aligned per survey.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from whatsreal.io import write_npz, write_parquet
from whatsreal.layout import DatasetLayout
from whatsreal.model.flow import FlowMatchingModel
from whatsreal.progress import Progress
from whatsreal.surveys import SURVEY_ORDER

__all__ = ["encode_images", "export_embeddings"]

log = logging.getLogger(__name__)


@torch.no_grad()
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
    model.eval()
    phys, inst = [], []
    with Progress(len(images), desc, "images", log=log) as shown:
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.array(images[start : start + batch_size], dtype=np.float32)).to(device)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                phys.append(model.physics_encoder(x).float().cpu().numpy())
                inst.append(model.instrument_encoder(x).float().cpu().numpy())
            shown.update(len(x))
    return np.concatenate(phys), np.concatenate(inst)


def export_embeddings(
    model: FlowMatchingModel,
    data: DatasetLayout | str | Path,
    out: str | Path,
    tokens_out: str | Path,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> pd.DataFrame:
    """Write ``out`` (one row per object and survey, mean-pooled latents) and ``tokens_out``
    (every token, ``<survey>_physics``/``<survey>_instrument`` arrays) for the dataset ``data``."""
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
        phys, inst = encode_images(model, images, batch_size, device, dtype, desc=f"embed {survey}")
        n_total += len(images)
        tokens[f"{survey}_physics"] = phys
        tokens[f"{survey}_instrument"] = inst
        flat = phys.reshape(len(phys), -1)
        pooled = inst.mean(axis=1)
        df = pd.DataFrame(
            {
                "object_id": meta["object_id"].astype(str),
                "pair": meta["pair"],
                "survey": survey,
                "ra": meta["ra"],
                "dec": meta["dec"],
                "split": meta["split"],
            }
        )
        df = pd.concat(
            [
                df,
                pd.DataFrame(flat, columns=[f"phys_{i}" for i in range(flat.shape[1])]),
                pd.DataFrame(pooled, columns=[f"inst_{i}" for i in range(pooled.shape[1])]),
            ],
            axis=1,
        )
        frames.append(df)
    elapsed = time.perf_counter() - t0
    table = pd.concat(frames, ignore_index=True)
    write_npz(tokens_out, **tokens)
    write_parquet(table, out)
    log.info("embedded %d images in %.1f s (%.0f galaxies/s on %s)", n_total, elapsed, n_total / elapsed, device)
    return table
