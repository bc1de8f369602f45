"""Counterfactuals for every ordered pair of surveys: a matrix of MSEs, and calibration per direction.

With N surveys there are N (N - 1) directions "source -> target": the decoder sees the galaxy
only through the *source* survey (one physics view; the other surveys' views masked, as
training masks a survey that missed the galaxy) and the *target* survey's instrument through
the target anchor's own spatial neighbours, and must draw the galaxy as the target saw it.
The paper's two directions (Fig 6, Fig 9 left) are the 2 x 1 case; on ``sim_three`` this is
the 3 x 2 matrix.

Galaxies: held-out (``split == val``) nway rows that both surveys of a direction saw and no
survey dropped as blank, the first ``experiments.survey_directions.n_galaxies`` of one seeded
permutation (the same seed for every direction, so directions sharing galaxies share them);
each galaxy's starting noise is keyed by (seed, row), as for the pair posterior
(whatsreal.experiments.posterior), so a galaxy's samples do not depend on the batch.

Per direction (``survey_directions.csv``): the mean per-sample MSE against the real target
image in preprocessed units (the paper's Fig 6 number) with a percentile-bootstrap interval
over galaxies, the posterior mean's MSE, and the calibration of Fig 9 left: Z = (real -
sample mean) / sample std per pixel, its mean and std beside the std an exactly calibrated
posterior gives with that many samples (whatsreal.experiments.calibration). On the synthetic
sky, also against the noiseless truth rendered through the target survey and preprocessed like
its images (whatsreal.experiments.truth_images): the posterior mean's MSE, and the real target's
(the noise floor a copy of the data could not beat); NaN on real data.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from whatsreal.data.triplets import TripletDataset
from whatsreal.data.usable import seen_rows, usable_pairs
from whatsreal.experiments.bootstrap import bootstrap_config, bootstrap_counts, percentile_ci
from whatsreal.experiments.calibration import ideal_z_std, pixel_z
from whatsreal.experiments.metrics import mse
from whatsreal.experiments.posterior import sample_posterior
from whatsreal.experiments.truth_images import noiseless_targets
from whatsreal.io import read_table, write_csv
from whatsreal.layout import DatasetLayout
from whatsreal.model.checkpoint import load_trained_model
from whatsreal.plots.surveys import plot_survey_directions
from whatsreal.progress import Progress

__all__ = ["DIRECTION_COLUMNS", "direction_rows", "only_source_view", "run_survey_directions", "sample_direction"]

log = logging.getLogger(__name__)

DIRECTION_COLUMNS = (
    "source",
    "target",
    "n_galaxies",
    "n_samples",
    "mse_samples",
    "mse_samples_ci_lo",
    "mse_samples_ci_hi",
    "mse_posterior_mean",
    "z_mean",
    "z_std",
    "z_std_ideal",
    "n_pixels",
    "mse_posterior_mean_vs_noiseless",
    "mse_observed_vs_noiseless",
)


def direction_rows(
    seen: np.ndarray, split: np.ndarray, usable: np.ndarray, source: int, target: int, n: int, seed: int
) -> np.ndarray:
    """The galaxies of direction ``source -> target`` (survey positions in ``seen``'s columns): held-out,
    usable rows both surveys saw, in the order of one seeded permutation of all rows, the first ``n``."""
    order = np.random.default_rng(seed).permutation(len(seen))
    ok = (split == "val") & usable & seen[:, source] & seen[:, target]
    return order[ok[order]][:n].astype(np.int64)


def only_source_view(batch: dict[str, torch.Tensor], surveys: Sequence[str], target: str, source: str) -> None:
    """Mask (and zero) every physics view of ``batch`` but ``source``'s, in place.

    The physics slots of a ``target``-anchored batch are the other surveys in registry order
    (:class:`whatsreal.data.triplets.TripletDataset`)."""
    others = [s for s in surveys if s != target]
    keep = others.index(source)
    drop = [p for p in range(len(others)) if p != keep]
    batch["physics_mask"][:, drop] = False
    batch["physics"][:, drop] = 0.0


def sample_direction(
    net: torch.nn.Module,
    layout: DatasetLayout,
    surveys: Sequence[str],
    source: str,
    target: str,
    rows: np.ndarray,
    cfg: dict,
    sample_cfg: dict,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """Samples (n, S, C, H, W), the real targets (n, C, H, W) and the source views of ``rows``."""
    anchors = np.full(rows.shape, list(surveys).index(target), dtype=np.int64)
    ds = TripletDataset(layout.root, rows, "spatial", surveys=tuple(surveys), anchors=anchors)
    slot = [s for s in surveys if s != target].index(source)
    bs = int(cfg["batch_size"])
    parts: dict[str, list[np.ndarray]] = {"samples": [], "target": [], "source": []}
    with Progress(len(rows), f"{source} -> {target}", "galaxies", log=log) as shown:
        for start in range(0, len(rows), bs):
            batch = ds.__getitems__(list(range(start, min(start + bs, len(rows)))))
            only_source_view(batch, surveys, target, source)
            parts["samples"].append(
                sample_posterior(
                    net,
                    batch,
                    int(cfg["n_samples"]),
                    int(sample_cfg["steps"]),
                    sample_cfg["method"],
                    int(cfg["seed"]),
                    device,
                )
            )
            parts["target"].append(batch["target"].numpy())
            parts["source"].append(batch["physics"][:, slot].numpy())
            shown.update(len(batch["target"]))
    return {k: np.concatenate(v) for k, v in parts.items()}


def _direction_row(
    source: str,
    target: str,
    drawn: dict[str, np.ndarray],
    bootstrap: tuple[int, int, float],
    clean: np.ndarray | None = None,
) -> dict[str, object]:
    """One row of :data:`DIRECTION_COLUMNS` from a direction's samples; ``clean``: the noiseless
    truth of its galaxies (synthetic sky), else the truth columns are NaN."""
    n_resamples, seed, confidence = bootstrap
    samples, real = drawn["samples"].astype(np.float64), drawn["target"].astype(np.float64)
    per_galaxy = ((samples - real[:, None]) ** 2).mean(axis=(1, 2, 3, 4))
    counts = bootstrap_counts(len(per_galaxy), n_resamples, seed)
    lo, hi = percentile_ci(counts @ per_galaxy / len(per_galaxy), confidence)
    mean = samples.mean(axis=1)  # the posterior mean
    mse_s, mse_m = float(per_galaxy.mean()), mse(mean, real)
    z, dropped = pixel_z(drawn["samples"], drawn["target"])
    s = samples.shape[1]
    log.info(
        "%s -> %s: MSE of samples %.4f [%.4f, %.4f], of the posterior mean %.4f over %d galaxies x %d samples; "
        "Z mean %.3f, std %.3f (exactly calibrated: %.3f; %d pixels with zero sample std left out)",
        *(source, target, mse_s, float(lo), float(hi), mse_m, len(per_galaxy), s),
        *(float(z.mean()), float(z.std()), ideal_z_std(s), dropped),
    )
    return {
        "source": source,
        "target": target,
        "n_galaxies": len(per_galaxy),
        "n_samples": s,
        "mse_samples": mse_s,
        "mse_samples_ci_lo": float(lo),
        "mse_samples_ci_hi": float(hi),
        "mse_posterior_mean": mse_m,
        "z_mean": float(z.mean()),
        "z_std": float(z.std()),
        "z_std_ideal": ideal_z_std(s),
        "n_pixels": int(z.size),
        "mse_posterior_mean_vs_noiseless": np.nan if clean is None else mse(mean, clean),
        "mse_observed_vs_noiseless": np.nan if clean is None else mse(real, clean),
    }


def _noiseless(config: dict, layout: DatasetLayout, target: str, rows: np.ndarray, truth: pd.DataFrame) -> np.ndarray:
    """The noiseless truth of nway ``rows`` as the target survey would have recorded them."""
    meta = read_table(layout.meta(target), ["pair", "object_id", "truth_id"]).set_index("pair").loc[rows]
    return noiseless_targets(
        config, target, meta["object_id"].to_numpy(), meta["truth_id"].to_numpy(), truth, layout.meta(target)
    )


def run_survey_directions(
    config: dict,
    model: str | Path,
    data: DatasetLayout | str | Path,
    surveys: Sequence[str],
    table: str | Path,
    figure: str | Path,
    device: torch.device | str = "cpu",
    truth: str | Path | None = None,
) -> pd.DataFrame:
    """Write ``survey_directions.csv`` and its figure (MSE and calibration matrices, one example per
    direction) for one run trained on N-way groups.

    ``config``: the run's (overlay applied; ``experiments.survey_directions``, ``sample`` and
    ``experiments.bootstrap``); ``data``: the N-way dataset (``DatasetLayout.nway``) or its root;
    ``surveys``: the run's training surveys in the model's order; ``truth``: truth.parquet on the
    synthetic sky (the noiseless-truth columns), None on real data."""
    layout = DatasetLayout.of(data)
    cfg = config["experiments"]["survey_directions"]
    net, _ = load_trained_model(model, config)
    device = torch.device(device)
    net.eval().to(device)
    seen = seen_rows(layout, tuple(surveys))
    split = read_table(layout.split, ["pair", "split"]).sort_values("pair")["split"].astype(str).to_numpy()
    if len(split) != len(seen):
        raise ValueError(f"{layout.split}: {len(split)} rows, the metadata {len(seen)}")
    usable = usable_pairs(layout, tuple(surveys))
    truth_table = read_table(truth, ["truth_id"]) if truth is not None else None
    rows, examples = [], {}
    for source, target in itertools.permutations(surveys, 2):
        chosen = direction_rows(
            seen, split, usable, surveys.index(source), surveys.index(target), int(cfg["n_galaxies"]), int(cfg["seed"])
        )
        if chosen.size == 0:
            log.warning("%s -> %s: no held-out galaxy seen by both surveys; direction left out", source, target)
            continue
        drawn = sample_direction(net, layout, surveys, source, target, chosen, cfg, config["sample"], device)
        clean = None if truth_table is None else _noiseless(config, layout, target, chosen, truth_table)
        rows.append(_direction_row(source, target, drawn, bootstrap_config(config), clean))
        examples[(source, target)] = {k: v[0] for k, v in drawn.items()}
    df = pd.DataFrame(rows, columns=list(DIRECTION_COLUMNS))
    if df.empty:
        raise ValueError(f"{layout.root}: no direction has a held-out galaxy seen by both of its surveys")
    write_csv(df, table)
    plot_survey_directions(df, examples, list(surveys), list(config["preprocess"]["bands"]), figure)
    return df
