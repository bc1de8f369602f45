"""Does the trained decoder use both halves of its conditioning? The conditioning gain with CIs.

The training log (metrics.csv) has ``val/gain_{half}_{survey}`` at every
validation, one draw of (x0, t, partner) per pair: the history. This experiment
measures the final model carefully: every held-out (val) pair, anchored in each
survey in turn, gets ``experiments.conditioning_gain.draws`` independent draws;
a pair's gain is the mean over its draws, and the 95 % interval is a percentile
bootstrap over pairs (the pairs, not the draws, are the independent units).
The method works when both gains are positive with intervals excluding 0; a
decoder that ignores its instrument tokens shows gain_instrument ~ 0.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from whatsreal.data.triplets import TripletDataset
from whatsreal.data.usable import seen_rows, usable_pairs
from whatsreal.device import compute_device
from whatsreal.experiments.bootstrap import bootstrap_config, bootstrap_counts, percentile_ci
from whatsreal.experiments.conditioning_sensitivity import (
    SENSITIVITY_BY_TIME_COLUMNS,
    SENSITIVITY_COLUMNS,
    sensitivity_by_time,
    sensitivity_table,
    swap_differences,
)
from whatsreal.experiments.posterior import usable_val_pairs
from whatsreal.io import read_table, write_csv
from whatsreal.layout import DatasetLayout
from whatsreal.methods import triplet_data
from whatsreal.model.checkpoint import load_trained_model
from whatsreal.model.conditioning_gain import HALVES, average_swaps, conditioning_swaps
from whatsreal.plots.conditioning_gain import plot_conditioning_gain
from whatsreal.surveys import SURVEY_ORDER, training_surveys
from whatsreal.truth import meta_truth_ids

__all__ = [
    "GAIN_COLUMNS",
    "SWAP_COLUMNS",
    "gain_table",
    "measure_gains",
    "partner_batches",
    "run_conditioning_gain",
    "truth_ids_by_row",
    "val_pairs",
]

log = logging.getLogger(__name__)

GAIN_COLUMNS = ("survey", "half", "gain", "ci_lo", "ci_hi", "n_pairs", "draws", "loss_true")
SWAP_COLUMNS = ("survey", "half", "draw", "pair", "partner", "t", "gain")
"""One row per scored swap: anchor survey, the half swapped, the draw, the anchor's row (pair) and
the row whose half it was given (partner), the flow time t of the draw (0: noise, 1: image), and
that swap's gain."""


def val_pairs(split_path: str | Path, usable: np.ndarray | None = None) -> np.ndarray:
    """The held-out pairs (split == val), sorted: never seen in training; only ``usable`` ones
    (per pair, :func:`whatsreal.data.usable.usable_pairs`) when given, as validation does."""
    split = pd.read_parquet(split_path, columns=["pair", "split"])
    pairs = usable_val_pairs(split, usable)
    if pairs.size < 2:
        raise ValueError(f"{split_path}: {pairs.size} validation pair(s); the gain needs at least 2 to swap")
    return pairs


def gain_table(
    per_pair: dict[tuple[str, str], np.ndarray],
    loss_true: dict[str, float],
    draws: int,
    n_resamples: int,
    seed: int,
    confidence: float,
) -> pd.DataFrame:
    """One row per (survey, half): the mean per-pair gain and its percentile-bootstrap interval."""
    rows = []
    for (survey, half), gains in per_pair.items():
        g = gains[np.isfinite(gains)]
        counts = bootstrap_counts(g.size, n_resamples, seed)
        reps = counts @ g / max(g.size, 1)
        lo, hi = percentile_ci(reps, confidence) if g.size else (np.nan, np.nan)
        rows.append(
            {
                "survey": survey,
                "half": half,
                "gain": float(g.mean()) if g.size else np.nan,
                "ci_lo": float(lo),
                "ci_hi": float(hi),
                "n_pairs": int(g.size),
                "draws": draws,
                "loss_true": loss_true[survey],
            }
        )
    return pd.DataFrame(rows, columns=list(GAIN_COLUMNS))


def partner_batches(n: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """``0..n-1`` in one seeded order, cut into batches of ``batch_size``; a lone last row (no
    partner to swap with) joins the batch before it. Every row is in exactly one batch."""
    order = np.random.default_rng(seed).permutation(n)
    chunks = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(chunks) > 1 and len(chunks[-1]) < 2:
        last = chunks.pop()
        chunks[-1] = np.concatenate([chunks[-1], last])
    return chunks


@torch.no_grad()
def measure_gains(
    model,
    data: DatasetLayout | str | Path,
    pairs: np.ndarray,
    draws: int,
    seed: int,
    batch_size: int,
    surveys: tuple[str, ...] = SURVEY_ORDER,
) -> tuple[dict[tuple[str, str], np.ndarray], dict[str, float], pd.DataFrame]:
    """Per-pair gains for each anchor survey and half, the mean true-conditioning loss, and every
    scored swap (:data:`SWAP_COLUMNS`: who got whose half, and the gain of that one draw).

    Each survey is scored as the anchor of the held-out rows it saw (every pair; with N-way
    data, ``seen`` in its metadata), with the physics views of the other surveys that saw the
    galaxy: its own views, as in training. A row's gains are NaN for a survey that missed it.
    Rows are shuffled (seeded) into batches of ``batch_size``; a row's partners are drawn from
    its batch, i.e. from a random subset of the other held-out rows anchored in that survey."""
    device = next(model.parameters()).device
    root = DatasetLayout.of(data).root
    seen = seen_rows(root, surveys)
    per_pair: dict[tuple[str, str], np.ndarray] = {}
    loss_true: dict[str, float] = {}
    records: list[pd.DataFrame] = []
    for a, survey in enumerate(surveys):
        mine = np.flatnonzero(seen[pairs, a])  # positions in `pairs`
        out = {half: np.full(len(pairs), np.nan) for half in HALVES}
        if mine.size < 2:
            log.warning("%s anchors %d held-out row(s): no partner to swap, no gain", survey, mine.size)
            loss_true[survey] = np.nan
            for half in HALVES:
                per_pair[(survey, half)] = out[half]
            continue
        chunks = partner_batches(mine.size, batch_size, seed)
        ds = TripletDataset(root, pairs[mine], "spatial", surveys=surveys, anchors=np.full(mine.size, a))
        gen = torch.Generator().manual_seed(int(seed) * 7919 + a)
        base_sum = 0.0
        for rows in chunks:
            batch = {k: v.to(device) for k, v in ds.__getitems__(rows.tolist()).items()}
            cond = model.condition_batch(batch)
            swaps = conditioning_swaps(model, batch["target"], cond, batch["anchor"], gen, draws=draws)
            gains = average_swaps(swaps, len(rows), draws)
            for half in HALVES:
                out[half][mine[rows]] = gains[half].numpy()
            base_sum += float(gains["loss"].sum())
            anchor_rows = pairs[mine[rows]]
            for sw in swaps:
                moved = (sw.partner != torch.arange(len(rows))).numpy()  # a partner-less row keeps itself
                records.append(
                    pd.DataFrame(
                        {
                            "survey": survey,
                            "half": sw.half,
                            "draw": sw.draw,
                            "pair": anchor_rows[moved],
                            "partner": anchor_rows[sw.partner.numpy()][moved],
                            "t": sw.t.numpy()[moved],
                            "gain": sw.gain.numpy()[moved],
                        }
                    )
                )
        loss_true[survey] = base_sum / mine.size
        for half in HALVES:
            per_pair[(survey, half)] = out[half]
    swaps_df = pd.concat(records, ignore_index=True) if records else pd.DataFrame(columns=list(SWAP_COLUMNS))
    return per_pair, loss_true, swaps_df


def truth_ids_by_row(layout: DatasetLayout, surveys: tuple[str, ...]) -> dict[str, pd.Series]:
    """Per survey: truth_id indexed by row (pair), from the survey's metadata (-1 where none)."""
    out = {}
    for survey in surveys:
        meta = read_table(layout.meta(survey), ["pair", "truth_id"])
        out[survey] = pd.Series(meta_truth_ids(meta), index=meta["pair"].to_numpy(np.int64))
    return out


def run_conditioning_gain(
    config: dict,
    model: str | Path,
    data: DatasetLayout | str | Path,
    metrics: str | Path,
    figure: str | Path,
    table: str | Path,
    truth: str | Path | None = None,
    sensitivity: str | Path | None = None,
    sensitivity_by_t: str | Path | None = None,
) -> pd.DataFrame:
    """Write ``tables/conditioning_gain.csv`` and the gain-vs-step figure for one trained run,
    and with ``sensitivity`` ``tables/conditioning_sensitivity.csv``: what in each swapped half the
    loss responds to (whatsreal.experiments.conditioning_sensitivity), measured against ``truth``
    (truth.parquet; None on real data, where the table gets its header only), and with
    ``sensitivity_by_t`` the same regression within ``experiments.conditioning_gain.t_bins`` bins
    of flow time (:func:`whatsreal.experiments.conditioning_sensitivity.sensitivity_by_time`).

    ``config``: the run's (its overlay on the rest, :func:`whatsreal.config.run_config`), since the
    checkpoint is checked against its model and preprocess sections
    (:func:`whatsreal.model.checkpoint.load_trained_model`), and the interval uses ``experiments.bootstrap``.
    ``data``: the dataset (its layout or root); a run trained on N-way groups (``train.data: groups``)
    is scored on the N-way rows (``nway/``), every registry survey as the anchor of the galaxies it saw."""
    layout = triplet_data(config, DatasetLayout.of(data))
    surveys = training_surveys(config)
    conditioning_gain_cfg = config["experiments"]["conditioning_gain"]
    draws = conditioning_gain_cfg["draws"]
    net, _ = load_trained_model(model, config)
    net.eval().to(compute_device())
    pairs = val_pairs(layout.split, usable=usable_pairs(layout.root, surveys))
    per_pair, loss_true, swaps = measure_gains(
        net, layout.root, pairs, draws, conditioning_gain_cfg["seed"], conditioning_gain_cfg["batch_size"], surveys
    )
    n_resamples, seed, confidence = bootstrap_config(config)
    df = gain_table(per_pair, loss_true, draws, n_resamples, seed, confidence)
    for r in df.itertuples():
        log.info("gain %s %s: %.4f [%.4f, %.4f] over %d pairs", r.survey, r.half, r.gain, r.ci_lo, r.ci_hi, r.n_pairs)
    sens = pd.DataFrame(columns=list(SENSITIVITY_COLUMNS))
    by_t = pd.DataFrame(columns=list(SENSITIVITY_BY_TIME_COLUMNS))
    differences = None
    if truth is not None:
        differences = swap_differences(
            swaps, pd.read_parquet(truth), truth_ids_by_row(layout, surveys), config["preprocess"]["bands"]
        )
        sens = sensitivity_table(differences, n_resamples, seed, confidence)
        for r in sens.itertuples():
            what = f"{r.survey} {r.half}, {r.property}"
            log.info("sensitivity %s: %.4f [%.4f, %.4f] per sd, %d swaps", what, r.slope, r.ci_lo, r.ci_hi, r.n_swaps)
    if differences is not None and sensitivity_by_t is not None:
        by_t = sensitivity_by_time(differences, conditioning_gain_cfg["t_bins"], n_resamples, seed, confidence)
        for r in by_t.itertuples():
            what = f"{r.survey} {r.half}, {r.property}, t {r.t_lo:.2f}-{r.t_hi:.2f}"
            slope = f"{r.slope:.4f} [{r.ci_lo:.4f}, {r.ci_hi:.4f}]"
            log.info("sensitivity %s: %s per sd, mean gain %.4f", what, slope, r.mean_gain)
    history = pd.read_csv(metrics)
    plot_conditioning_gain(history, df, figure, sensitivity=sens, differences=differences)
    if sensitivity is not None:
        write_csv(sens, sensitivity)
    if sensitivity_by_t is not None:
        write_csv(by_t, sensitivity_by_t)
    write_csv(df, table)
    return df
