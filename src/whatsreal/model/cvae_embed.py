"""Embedding export of a trained CVAE (``method: cvae``), in the embeddings.parquet contract.

Rows as for every method: one per object and survey, in pair order, HSC first, with
``object_id, pair, survey, ra, dec, split``. ``phys_*`` is the latent mean (the property
dimensions in standardised units, then the free means); there is no instrument latent,
so no ``inst_*``. The CVAE is trained on ``cvae.survey`` only, but every survey's cutouts
are encoded, so the pair-level experiments (retrieval, probes on both views) can run and
show what a one-survey model makes of the other survey.

Extra columns, which :func:`whatsreal.experiments.embeddings.read_embeddings` ignores
(it selects ``phys_<digits>``/``inst_<digits>``):

- ``cvae_pred_<property>``: the property read off the latent, in its own units;
- ``cvae_anomaly``: the seed's latent-space anomaly score
  (:func:`whatsreal.model.cvae.anomaly_scores`), against that survey's training-split,
  usable objects, with ``cvae.anomaly_neighbours`` neighbours.

The tokens file holds ``<survey>_physics`` (N, 1, P + F), the same latent means, and
``<survey>_free_logvar`` (N, F), the free dimensions' posterior log-variances.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from whatsreal.data.usable import usable_pairs
from whatsreal.experiments.embeddings import ANOMALY_COLUMN
from whatsreal.io import write_npz, write_parquet
from whatsreal.layout import DatasetLayout
from whatsreal.model.checkpoint import read_checkpoint, trained_model
from whatsreal.model.cvae import PhysicsCVAE, anomaly_scores
from whatsreal.model.embed import identifier_columns
from whatsreal.progress import Progress
from whatsreal.surveys import SURVEY_ORDER

__all__ = ["ANOMALY_COLUMN", "PREDICTION_PREFIX", "encode_cvae", "export_cvae_embeddings"]

log = logging.getLogger(__name__)

PREDICTION_PREFIX = "cvae_pred_"


@torch.no_grad()
def encode_cvae(
    model: PhysicsCVAE, images: np.ndarray, batch_size: int, device: torch.device, desc: str = "embed"
) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, H, W) images -> latent means (N, P + F) and free log-variances (N, F), float32."""
    model.eval()
    means, logvars = [], []
    with Progress(len(images), desc, "images", log=log) as shown:
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.array(images[start : start + batch_size], dtype=np.float32)).to(device)
            props, mu, logvar = model.encode(x)
            means.append(torch.cat([props, mu], dim=1).float().cpu().numpy())
            logvars.append(logvar.float().cpu().numpy())
            shown.update(len(x))
    return np.concatenate(means), np.concatenate(logvars)


def export_cvae_embeddings(
    checkpoint: str | Path,
    data: DatasetLayout | str | Path,
    out: str | Path,
    tokens_out: str | Path,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> pd.DataFrame:
    """Write ``out`` (the contract's rows and columns, plus predictions and anomaly scores) and
    ``tokens_out`` for the CVAE checkpoint ``checkpoint`` on the dataset ``data``."""
    data = DatasetLayout.of(data)
    device = torch.device(device)
    ckpt = read_checkpoint(checkpoint)
    model, config = trained_model(ckpt)
    model = model.to(device)
    # The training split's label standardisation: the CVAE module's buffers (whatsreal.train.cvae).
    label_mean, label_std = (ckpt["state_dict"][k].cpu().numpy() for k in ("label_mean", "label_std"))
    properties = list(config["cvae"]["properties"])
    usable = usable_pairs(data)
    frames, tokens = [], {}
    t0 = time.perf_counter()
    for survey in SURVEY_ORDER:
        images = np.load(data.images(survey), mmap_mode="r")
        meta = pd.read_parquet(data.meta(survey), columns=["pair", "split", "object_id", "ra", "dec"])
        latent, logvar = encode_cvae(model, images, batch_size, device, desc=f"embed {survey}")
        tokens[f"{survey}_physics"] = latent[:, None, :]
        tokens[f"{survey}_free_logvar"] = logvar
        pairs = meta["pair"].to_numpy(dtype=np.int64)
        reference = (meta["split"].to_numpy() == "train") & usable[pairs]
        df = identifier_columns(meta, survey)
        predicted = latent[:, : len(properties)].astype(np.float64) * label_std + label_mean
        extra = {f"{PREDICTION_PREFIX}{p}": predicted[:, j] for j, p in enumerate(properties)}
        extra[ANOMALY_COLUMN] = anomaly_scores(latent, reference, config["cvae"]["anomaly_neighbours"])
        df = pd.concat(
            [
                df,
                pd.DataFrame(latent, columns=[f"phys_{i}" for i in range(latent.shape[1])]),
                pd.DataFrame(extra),
            ],
            axis=1,
        )
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    write_npz(tokens_out, **tokens)
    write_parquet(table, out)
    elapsed = time.perf_counter() - t0
    log.info("CVAE: embedded %d images in %.1f s on %s", len(table), elapsed, device)
    return table
