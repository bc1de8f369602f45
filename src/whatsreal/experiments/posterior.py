"""Posterior samples of held-out anchors: the shared input of Fig 6, 8, 9 and the zero-shot test.

For one direction (named by the anchor = target survey), each held-out pair gets
its triplet with the anchor fixed to that survey: the other survey's view feeds
the physics encoder, the anchor survey's neighbours the instrument encoder, and
the decoder draws ``n_samples`` images from the flow. The anchor image itself
is only stored as ``target``, never encoded. The file's arrays, and the reader every
experiment uses, are in :mod:`whatsreal.experiments.posterior_file`.

Determinism: the starting noise x0 of a galaxy comes from a generator seeded by
(posterior.seed, pair), drawn on the CPU, so a galaxy's samples do not depend on
the batch size, on which other galaxies are sampled, or on the device.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from whatsreal.data.triplets import TripletDataset
from whatsreal.data.usable import usable_pairs
from whatsreal.device import compute_device
from whatsreal.io import write_npz
from whatsreal.layout import DatasetLayout
from whatsreal.model.checkpoint import load_trained_model
from whatsreal.model.samplers import sample
from whatsreal.progress import Progress
from whatsreal.surveys import SURVEY_ORDER

if TYPE_CHECKING:
    from whatsreal.model.flow import FlowMatchingModel

__all__ = [
    "galaxy_noise",
    "heldout_pairs",
    "nfe_per_step",
    "run_posterior_samples",
    "sample_posterior",
    "usable_val_pairs",
]

log = logging.getLogger(__name__)


def nfe_per_step(method: str) -> int:
    """Velocity evaluations per ODE step (Euler 1; Heun and midpoint 2)."""
    return 1 if method == "euler" else 2


def usable_val_pairs(split: pd.DataFrame, usable: np.ndarray | None = None) -> np.ndarray:
    """The held-out (split == val) pairs of a split table, sorted; only ``usable`` ones (per pair,
    :func:`whatsreal.data.usable.usable_pairs`) when given. What every generative experiment
    draws its galaxies from: pairs never seen in training."""
    val = np.sort(split.loc[split["split"] == "val", "pair"].to_numpy(dtype=np.int64))
    return val if usable is None else val[usable[val]]


def heldout_pairs(split_path: str | Path, n: int, seed: int, usable: np.ndarray | None = None) -> np.ndarray:
    """The first ``n`` held-out (split == val) pairs of a seeded permutation (all if fewer).

    The same seed gives the same galaxies in both directions, so the two directions
    can be compared galaxy by galaxy. ``usable`` (per pair, :func:`whatsreal.data.usable.usable_pairs`)
    leaves out pairs with a dropped blank cutout before the draw."""
    split = pd.read_parquet(split_path)
    missing = {"pair", "split"} - set(split.columns)
    if missing:
        raise KeyError(f"{split_path}: missing column(s) {sorted(missing)}")
    val = usable_val_pairs(split, usable)
    if val.size == 0:
        raise ValueError(f"{split_path}: no usable held-out pairs (split == 'val', no dropped blank cutout) to sample")
    return np.random.default_rng(seed).permutation(val)[:n]


def galaxy_noise(seed: int, pair: int, n: int, shape: tuple[int, ...]) -> torch.Tensor:
    """(n, *shape) starting noise of one galaxy, from a CPU generator keyed by (seed, pair)."""
    key = int(np.random.SeedSequence([int(seed), int(pair)]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(key))


@torch.no_grad()
def sample_posterior(
    model: FlowMatchingModel,
    batch: dict[str, torch.Tensor],
    n_samples: int,
    steps: int,
    method: str,
    seed: int,
    device: torch.device,
    x0: torch.Tensor | None = None,
) -> np.ndarray:
    """(B, S, C, H, W) float32 samples for one batch of triplets (``TripletDataset`` layout).

    x0 defaults to :func:`galaxy_noise` per pair; pass ``x0`` of shape (B*S, C, H, W)
    to fix it (the noise-model traversal reuses one x0 across conditionings)."""
    model.eval()
    shape = tuple(batch["target"].shape[1:])
    if x0 is None:
        x0 = torch.cat([galaxy_noise(seed, int(p), n_samples, shape) for p in batch["pair"]])
    use_bf16 = device.type == "cuda"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        cond = model.condition(
            batch["physics"].to(device),
            batch["physics_mask"].to(device),
            batch["instrument"].to(device),
            batch["instrument_mask"].to(device),
        )
        out = sample(model, cond, n_samples, steps, method, x0=x0.to(device))
    return out.float().cpu().numpy()


def _draw(
    net: FlowMatchingModel,
    ds: TripletDataset,
    n: int,
    posterior_cfg: dict,
    sample_cfg: dict,
    device: torch.device,
    direction: str,
) -> dict[str, np.ndarray]:
    """The ``n`` triplets of ``ds`` sampled ``posterior.batch_size`` at a time: their targets,
    physics views, instrument sets and masks, and the (n, S, C, H, W) samples."""
    n_samples, steps, method = int(posterior_cfg["n_samples"]), int(sample_cfg["steps"]), sample_cfg["method"]
    bs = int(posterior_cfg["batch_size"])
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("target", "physics", "instrument", "instrument_mask")}
    samples = []
    with Progress(n, f"posterior {direction}", "galaxies", log=log) as shown:
        for start in range(0, n, bs):
            batch = ds.__getitems__(list(range(start, min(start + bs, n))))
            samples.append(sample_posterior(net, batch, n_samples, steps, method, int(posterior_cfg["seed"]), device))
            parts["target"].append(batch["target"].numpy())
            parts["physics"].append(batch["physics"][:, 0].numpy())
            parts["instrument"].append(batch["instrument"].numpy())
            parts["instrument_mask"].append(batch["instrument_mask"].numpy())
            shown.update(len(batch["target"]))
    return {**{k: np.concatenate(v) for k, v in parts.items()}, "samples": np.concatenate(samples)}


def _log_throughput(
    direction: str,
    n_galaxies: int,
    posterior_cfg: dict,
    sample_cfg: dict,
    elapsed: float,
    device: torch.device,
    mode: str,
) -> None:
    """Images and network evaluations per second: what the sampler costs on this device."""
    n_samples, steps, method = int(posterior_cfg["n_samples"]), int(sample_cfg["steps"]), sample_cfg["method"]
    n_images = n_galaxies * n_samples
    nfe = steps * nfe_per_step(method)
    log.info(
        "%s-anchored: %d galaxies x %d samples = %d images in %.1f s on %s (%.2f images/s; %s %d steps = %d NFE, "
        "%.0f network evaluations/s); neighbours mode '%s'",
        *(direction, n_galaxies, n_samples, n_images, elapsed, device, n_images / elapsed),
        *(method, steps, nfe, n_images * nfe / elapsed, mode),
    )


def run_posterior_samples(
    posterior_cfg: dict,
    sample_cfg: dict,
    model: str | Path,
    data: DatasetLayout | str | Path,
    direction: str,
    out: str | Path,
) -> dict[str, np.ndarray]:
    """Sample held-out anchors of ``direction`` (the anchor survey) and write the contract's npz.

    ``posterior_cfg``: ``experiments.posterior`` (n_galaxies, n_samples, batch_size, seed);
    ``sample_cfg``: ``sample`` (method, steps); ``data``: the dataset (its layout or root)."""
    if direction not in SURVEY_ORDER:
        raise ValueError(f"direction must be one of {SURVEY_ORDER}, got '{direction}'")
    layout = DatasetLayout.of(data)
    net, saved = load_trained_model(model)
    device = compute_device()
    net.to(device).eval()
    mode = saved["neighbours"]["mode"]
    pairs = heldout_pairs(
        layout.split, int(posterior_cfg["n_galaxies"]), int(posterior_cfg["seed"]), usable=usable_pairs(layout.root)
    )
    anchors = np.full(pairs.shape, SURVEY_ORDER.index(direction), dtype=np.int64)
    ds = TripletDataset(layout.root, pairs, mode=mode, anchors=anchors)
    meta = pd.read_parquet(layout.meta(direction), columns=["pair", "object_id"])
    ids = meta.set_index("pair")["object_id"].astype(str)
    t0 = time.perf_counter()
    drawn = _draw(net, ds, len(pairs), posterior_cfg, sample_cfg, device, direction)
    _log_throughput(direction, len(pairs), posterior_cfg, sample_cfg, time.perf_counter() - t0, device, mode)
    result = {
        "pair": pairs.astype(np.int64),
        "object_id": ids.reindex(pairs).to_numpy().astype(str),
        **{k: drawn[k] for k in ("target", "physics", "instrument", "instrument_mask")},
        "samples": drawn["samples"].astype(np.float32),
        "direction": np.array(direction),
    }
    result["instrument_mask"] = result["instrument_mask"].astype(bool)
    write_npz(out, **result)
    return result
