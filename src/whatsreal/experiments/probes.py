"""Fig 4 / Table 5 (appendix A.3-A.5): MLP probes of each representation on physics and instrument targets.

The disentanglement claim, made quantitative: an MLP probe trained on our
physics latents should recover physics-related targets and not instrument
ones, and the instrument latents the reverse. References: a frozen
randomly initialised encoder of the same architecture (what the architecture
captures for free), the cross-predict ResNet (instrument information shared
between the surveys, so reachable by the physics encoder legitimately), and
optionally AION-1 embeddings.

Representation per pair (both surveys' embeddings concatenated, HSC first):
physics tokens flattened (2 x 64), instrument tokens mean-pooled (2 x 16),
random-init tokens flattened, AION features. Probe (paper A.3): hidden
[512, 256, 128], LayerNorm, GELU, dropout, Smooth L1 on standardised targets,
AdamW; inputs and targets standardised with the training pairs' statistics;
R^2 on held-out pairs. Which pairs and which split
(:mod:`whatsreal.experiments.probe_design`): the paper's random 90/10 split of
all pairs, or only the pairs held out from encoder training with HEALPix-blocked
k-fold cross-validation (each pair predicted once, out of fold); the primary
design writes Table 5, the other one ``table5_probes_alternative.csv``.

Uncertainty: each R^2 gets a percentile-bootstrap interval over the held-out
pairs, and ``ours_physics - ours_instrument`` a paired one
(:mod:`whatsreal.experiments.bootstrap`); the probes are trained once, only
their fixed test predictions are resampled. The test predictions are written
to ``probe_predictions.npz`` so the ablation can bootstrap the drop between two
runs on the same pairs without retraining.

Run-independent columns are probed once per dataset: the random-init encoder, AION and the
pixel floor do not depend on the trained run, so :func:`run_baseline_probes` (the
``baseline_probes`` rule) writes their held-out predictions under each design, and every
run's :func:`run_probes` reads them (``baseline=``) instead of refitting the same probes with
the same seeds: identical numbers, one fit instead of one per run.

Floor: for instrument targets, the same probe trained on trivial per-band
pixel statistics of the survey's own preprocessed image (outer-pixel robust
std, second-moment size; :func:`pixel_statistics`) - a target that this reads
well is given away by the pixels, and a latent's R^2 on it must be read
against that floor.

Efficiency: there is one probe per (target, representation). Instead of
training ~30 small MLPs one after another, all targets of a representation are
trained at once as an *ensemble of independent MLPs*: weights shaped
(T, in, out), a per-member LayerNorm, a per-member masked loss summed over
members, per-member dropout generators. Parameters are disjoint, the loss is
a sum of per-member terms and AdamW is elementwise, so member t follows
exactly the trajectory of a probe trained alone on target t with the same
initialisation and batches (tests/test_exp_probes.py checks this).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from whatsreal.device import compute_device
from whatsreal.experiments.baselines import CROSS_PREDICT_COLUMNS
from whatsreal.experiments.bootstrap import BootstrapR2, percentile_ci
from whatsreal.experiments.embeddings import (
    SPACES,
    latent_columns,
    paired_latents,
    read_embeddings,
)
from whatsreal.experiments.metrics import r2_or_nan
from whatsreal.experiments.probe_design import DESIGN_COLUMNS, ProbeDesign, ProbeFolds, folds_for, read_probe_sky
from whatsreal.experiments.regressor import masked_smooth_l1, one_cpu_thread
from whatsreal.experiments.targets import GROUPS, Target, build_targets, instrument_group
from whatsreal.experiments.truth_metrics import write_truth_table
from whatsreal.io import read_table, write_csv, write_npz
from whatsreal.layout import DatasetLayout
from whatsreal.progress import Progress
from whatsreal.surveys import SURVEY_ORDER

__all__ = [
    "CI_REPRESENTATIONS",
    "DIFF_COLUMNS",
    "FLOOR",
    "REPRESENTATIONS",
    "RUN_INDEPENDENT",
    "TABLE5_COLUMNS",
    "ProbeEnsemble",
    "ProbeInputs",
    "ProbeResult",
    "fit_probe_ensemble",
    "fold_predictions",
    "load_probe_inputs",
    "member_seed",
    "pixel_statistics",
    "probe_design_result",
    "probe_r2",
    "read_aion",
    "read_baseline_predictions",
    "read_images",
    "read_probe_predictions",
    "run_baseline_probes",
    "run_probes",
    "table5_columns",
    "truth_probe_rows",
    "write_probe_predictions",
]

log = logging.getLogger(__name__)

REPRESENTATIONS = ("ours_physics", "ours_instrument", "random_init", "aion")
"""Table 5 columns of probed representations (aion only when a file is given)."""
TABLE5_COLUMNS = (
    "target",
    "label",
    "group",
    "truth",
    "ours_physics",
    "ours_instrument",
    "random_init",
    "cross_predict",
)
FLOOR = "pixel_floor"
"""Table 5 column: R^2 of trivial per-band pixel statistics of the survey's own image (instrument targets only)."""
CI_REPRESENTATIONS = ("ours_physics", "ours_instrument", "random_init", "aion", FLOOR, "cross_predict")
"""Columns that get ``<rep>_ci_lo``/``<rep>_ci_hi``. The cross-predict interval is copied from the baseline's
file when it has ``ci_lo``/``ci_hi`` columns (it trains its own ResNet; its predictions are not here), else NaN."""
DIFF_COLUMNS = ("diff_phys_minus_inst", "diff_ci_lo", "diff_ci_hi")
"""ours_physics - ours_instrument per target, with its paired-bootstrap interval."""
RUN_INDEPENDENT = ("random_init", "aion", FLOOR)
"""Columns whose probes read nothing of the trained run: fitted once per dataset (:func:`run_baseline_probes`)."""
PRED_PREFIX = "pred_"
NON_FEATURE_COLUMNS = {"object_id", "survey", "pair", "ra", "dec", "split", "healpix"}


def member_seed(seed: int, key: int) -> int:
    """A member's own seed from (probe seed, target index): its init and dropout never depend on the others."""
    return int(np.random.SeedSequence([int(seed), int(key)]).generate_state(1, dtype=np.uint64)[0] >> 1)


# --------------------------------------------------------------------------- the ensemble


class ProbeEnsemble(nn.Module):
    """T independent MLPs ``in -> hidden... -> 1`` (Linear, LayerNorm, GELU, dropout per hidden layer).

    ``forward(x)`` takes the shared (B, in) input and returns (B, T). Member t is
    initialised from ``member_seeds[t]`` alone (nn.Linear's default uniform
    +-1/sqrt(fan_in); LayerNorm weight 1, bias 0), and its dropout masks come
    from its own generator, so it is the same network whatever the other members are.
    """

    def __init__(self, member_seeds: Sequence[int], d_in: int, hidden: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.member_seeds = [int(s) for s in member_seeds]
        self.dropout = float(dropout)
        sizes = [int(d_in), *[int(h) for h in hidden], 1]
        gens = [torch.Generator().manual_seed(s) for s in self.member_seeds]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            bound = 1.0 / math.sqrt(fan_in)
            w = torch.stack([(torch.rand(fan_in, fan_out, generator=g) * 2 - 1) * bound for g in gens])
            b = torch.stack([(torch.rand(fan_out, generator=g) * 2 - 1) * bound for g in gens])
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        n = len(self.member_seeds)
        self.ln_weights = nn.ParameterList([nn.Parameter(torch.ones(n, h)) for h in sizes[1:-1]])
        self.ln_biases = nn.ParameterList([nn.Parameter(torch.zeros(n, h)) for h in sizes[1:-1]])
        self._dropout_gens: list[torch.Generator] | None = None

    def reset_dropout(self, dev: torch.device) -> None:
        """Per-member dropout generators on ``dev``, seeded from each member's seed."""
        self._dropout_gens = [torch.Generator(device=dev).manual_seed(s + 1) for s in self.member_seeds]

    def _drop(self, h: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropout == 0.0:
            return h
        if self._dropout_gens is None:
            self.reset_dropout(h.device)
        keep = 1.0 - self.dropout
        mask = torch.empty_like(h)
        for member, gen in zip(mask, self._dropout_gens, strict=True):
            member.bernoulli_(keep, generator=gen)  # each member's own stream, written in place
        return h * mask / keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.einsum("bi,tio->tbo", x, self.weights[0]) + self.biases[0][:, None, :]
        for layer in range(len(self.weights) - 1):
            if layer > 0:
                h = torch.baddbmm(self.biases[layer][:, None, :], h, self.weights[layer])
            h = nn.functional.layer_norm(h, h.shape[-1:])
            h = h * self.ln_weights[layer][:, None, :] + self.ln_biases[layer][:, None, :]
            h = self._drop(nn.functional.gelu(h))
        out = torch.baddbmm(self.biases[-1][:, None, :], h, self.weights[-1])  # (T, B, 1)
        return out[..., 0].transpose(0, 1)


def fit_probe_ensemble(
    x: np.ndarray, y: np.ndarray, probes_cfg: dict, member_seeds: Sequence[int], dev: torch.device | None = None
) -> ProbeEnsemble:
    """Train the ensemble on standardised inputs ``x`` (N, d) and standardised targets ``y`` (N, T; NaN = no label).

    Batches come from a permutation seeded by ``probes_cfg['seed']`` each epoch, the
    same for every member; a member's loss is its mean Smooth L1 over the
    batch rows that have its label.
    """
    dev = dev or compute_device()
    if dev.type == "cpu":
        with one_cpu_thread():
            return _fit(x, y, probes_cfg, member_seeds, dev)
    return _fit(x, y, probes_cfg, member_seeds, dev)


def _fit(
    x: np.ndarray, y: np.ndarray, probes_cfg: dict, member_seeds: Sequence[int], dev: torch.device
) -> ProbeEnsemble:
    model = ProbeEnsemble(member_seeds, x.shape[1], probes_cfg["hidden"], probes_cfg["dropout"]).to(dev)
    model.reset_dropout(dev)
    opt = torch.optim.AdamW(
        model.parameters(), lr=float(probes_cfg["lr"]), weight_decay=float(probes_cfg["weight_decay"]), foreach=True
    )
    xt = torch.as_tensor(x, dtype=torch.float32, device=dev)
    mask = torch.as_tensor(np.isfinite(y), device=dev)
    yt = torch.as_tensor(np.nan_to_num(y, nan=0.0), dtype=torch.float32, device=dev)
    gen = torch.Generator().manual_seed(int(probes_cfg["seed"]))
    batch = int(probes_cfg["batch_size"])
    model.train()
    for _ in range(int(probes_cfg["epochs"])):
        perm = torch.randperm(len(xt), generator=gen).to(dev)
        for start in range(0, len(perm), batch):
            idx = perm[start : start + batch]
            loss = masked_smooth_l1(model(xt[idx]), yt[idx], mask[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    return model


@torch.no_grad()
def _predict(model: ProbeEnsemble, x: np.ndarray, dev: torch.device, batch: int = 4096) -> np.ndarray:
    with one_cpu_thread() if dev.type == "cpu" else contextlib.nullcontext():
        out = [
            model(torch.as_tensor(x[s : s + batch], dtype=torch.float32, device=dev)).cpu().numpy()
            for s in range(0, len(x), batch)
        ]
    return np.concatenate(out) if out else np.empty((0, len(model.member_seeds)), np.float32)


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Column-wise standardisation with the training rows' NaN-aware mean/std (std 0 -> 1)."""
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(train, axis=0)
        std = np.nanstd(train, axis=0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    return [(a - mean) / std for a in (train, *others)]


def probe_r2(
    x: np.ndarray,
    y: np.ndarray,
    test: np.ndarray,
    probes_cfg: dict,
    keys: Sequence[int] | None = None,
    train: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """R^2 per target column of ``y`` on the ``test`` rows, and the test predictions (in target units).

    The predictions are (n_test, T) over *every* test row in pair order, NaN where
    a row could not be predicted, so predictions of different representations line
    up row by row (what the paired bootstrap needs). Rows of ``x`` with a non-finite
    feature are left out of both splits (a representation that lacks some pairs,
    e.g. AION, or an anchor without neighbours). Targets with fewer than 2
    training labels or a constant training value get NaN. ``keys`` name the
    members for seeding (default: column index). ``train`` (a mask over rows)
    restricts the training rows; by default every row not in ``test`` trains.
    """
    x, y, test = np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(test, bool)
    train = ~test if train is None else np.asarray(train, bool)
    if (train & test).any():
        raise ValueError(f"probe_r2: {int((train & test).sum())} row(s) are in both the training and the test rows")
    keys = list(range(y.shape[1])) if keys is None else list(keys)
    rows_ok = np.isfinite(x).all(axis=1)
    train_rows, test_rows = np.flatnonzero(train & rows_ok), np.flatnonzero(test & rows_ok)
    y = np.where(np.isfinite(y), y, np.nan)
    ytr = y[train_rows]
    n_lab = np.isfinite(ytr).sum(axis=0)
    with np.errstate(invalid="ignore"):
        spread = np.nanstd(np.where(n_lab > 0, ytr, 0.0), axis=0)
    trainable = (n_lab >= 2) & (spread > 0)
    r2 = np.full(y.shape[1], np.nan)
    pred = np.full((int(test.sum()), y.shape[1]), np.nan)  # every test row; NaN where x is not finite
    cols = np.flatnonzero(trainable)
    if cols.size == 0 or test_rows.size == 0:
        return r2, pred
    xtr, xte = _standardise(x[train_rows], x[test_rows])
    mean = np.nanmean(ytr[:, cols], axis=0)
    std = np.nanstd(ytr[:, cols], axis=0)
    dev = compute_device()
    model = fit_probe_ensemble(
        xtr.astype(np.float32),
        (ytr[:, cols] - mean) / std,
        probes_cfg,
        [member_seed(probes_cfg["seed"], keys[c]) for c in cols],
        dev,
    )
    p = _predict(model, xte.astype(np.float32), dev) * std + mean
    where = np.flatnonzero(rows_ok[np.flatnonzero(test)])  # positions of the usable rows among all test rows
    pred[np.ix_(where, cols)] = p
    for j, c in enumerate(cols):
        r2[c] = r2_or_nan(y[test_rows, c], p[:, j])
    return r2, pred


def fold_predictions(
    x: np.ndarray,
    y: np.ndarray,
    folds: ProbeFolds,
    probes_cfg: dict,
    keys: Sequence[int] | None = None,
    shown: Progress | None = None,
) -> np.ndarray:
    """(n_scored, T) held-out predictions of every scored pair (``folds.scored`` order), one probe per fold.

    Each pair is predicted by the probe of the fold that held it out (trained on
    that fold's training rows only), so R^2 is scored once over all scored pairs;
    with one fold (the random split) this is :func:`probe_r2`'s prediction. Each
    finished fold counts one on ``shown`` (the caller's progress, whatsreal.progress).
    """
    scored = folds.scored
    pred = np.full((len(scored), np.asarray(y).shape[1]), np.nan)
    for train_rows, test_rows in folds.folds:
        _, p = probe_r2(x, y, folds.mask(test_rows), probes_cfg, keys, train=folds.mask(train_rows))
        pred[np.searchsorted(scored, test_rows)] = p
        if shown is not None:
            shown.update(1)
    return pred


# --------------------------------------------------------------------------- representations


def _pair_features(emb: pd.DataFrame, prefix: str, pairs: np.ndarray, source: str | Path) -> np.ndarray:
    """(n, 2d): the HSC and the Legacy latents of each pair side by side."""
    both = paired_latents(emb, prefix, pairs, source)
    n = len(pairs)
    return np.concatenate([both[:n], both[n:]], axis=1)


def read_aion(path: str | Path, emb: pd.DataFrame, pairs: np.ndarray) -> np.ndarray:
    """(n, 2d) AION features per pair (HSC then Legacy), matched by (survey, object_id); NaN rows where absent."""
    df = read_table(path, ["object_id", "survey"])
    cols = [c for c in df.columns if c not in NON_FEATURE_COLUMNS and pd.api.types.is_numeric_dtype(df[c])]
    if not cols:
        raise ValueError(f"{path}: no numeric feature columns besides {', '.join(sorted(NON_FEATURE_COLUMNS))}")
    blocks = []
    for survey in SURVEY_ORDER:
        sub = df[df["survey"].astype(str) == survey]
        ids = sub["object_id"].astype(str)
        if ids.duplicated().any():
            raise ValueError(f"{path}: duplicate {survey} object_id {ids[ids.duplicated()].iloc[0]}")
        feats = pd.DataFrame(sub[cols].to_numpy(np.float64), index=ids.to_numpy())
        want = emb[emb["survey"] == survey].set_index("pair").loc[pairs, "object_id"].astype(str)
        blocks.append(feats.reindex(want.to_numpy()).to_numpy())
    out = np.concatenate(blocks, axis=1)
    found = np.isfinite(out).all(axis=1)
    if not found.any():
        raise ValueError(f"{path}: no pair has AION features for both surveys (matched by survey and object_id)")
    if not found.all():
        log.warning(
            "%s: %d of %d pairs lack AION features in a survey; probed without them", path, (~found).sum(), len(found)
        )
    return out


def _representations(
    embeddings: str | Path | None, random_init: str | Path | None, aion: str | Path | None, n_pairs: int
) -> dict[str, np.ndarray]:
    """Each representation's (n_pairs, d) features: the run's two latents (``embeddings``), the
    random-init encoder's and AION's, each left out when its file is None. AION is matched to
    the pairs through whichever embeddings file is given (both list every pair's object_id)."""
    pairs = np.arange(n_pairs)
    reps = {}
    ids = None
    if embeddings is not None:
        ids = emb = read_embeddings(embeddings)
        reps["ours_physics"] = _pair_features(emb, SPACES["physics"], pairs, embeddings)
        reps["ours_instrument"] = _pair_features(emb, SPACES["instrument"], pairs, embeddings)
    if random_init is not None:
        rnd = read_embeddings(random_init, spaces=("physics",))
        latent_columns(rnd, SPACES["physics"], random_init)
        reps["random_init"] = _pair_features(rnd, SPACES["physics"], pairs, random_init)
        ids = rnd if ids is None else ids
    if aion:
        if ids is None:
            raise ValueError("AION features are matched to pairs through an embeddings file; none was given")
        reps["aion"] = read_aion(aion, ids, pairs)
    return reps


def _cross_predict_r2(
    path: str | Path, specs: Sequence[Target], folds: ProbeFolds | None = None
) -> dict[str, tuple[float, float, float]]:
    """``{target: (r2, ci_lo, ci_hi)}`` of the cross-predict baseline; the interval is NaN unless the file has one.

    With ``folds``, a file that records its design (``probe_pairs``, ``probe_split``)
    must have been scored on the same design, else its R^2 would not belong in the table.
    """
    df = read_table(path, CROSS_PREDICT_COLUMNS)
    if folds is not None and {"probe_pairs", "probe_split"} <= set(df.columns) and len(df):
        got = (str(df["probe_pairs"].iloc[0]), str(df["probe_split"].iloc[0]))
        want = (folds.design.pairs, folds.design.split)
        if got != want:
            raise ValueError(
                f"{path}: cross-predict scored with pairs={got[0]}, split={got[1]} but the probes use "
                f"pairs={want[0]}, split={want[1]}; rerun the cross_predict rule with the same experiments.probes"
            )
    nan = pd.Series(np.nan, index=df.index)
    values = zip(
        df["r2"].astype(float), df.get("ci_lo", nan).astype(float), df.get("ci_hi", nan).astype(float), strict=True
    )
    known = dict(zip(df["target"].astype(str), values, strict=True))
    wanted = [t.name for t in specs if t.group != "physics"]
    missing = [t for t in wanted if t not in known]
    if missing:
        log.warning("%s: no cross-predict R^2 for %s (NaN in Table 5)", path, ", ".join(missing))
    return {t: known.get(t, (np.nan, np.nan, np.nan)) for t in wanted}


# --------------------------------------------------------------------------- pixel floor


def pixel_statistics(images: np.ndarray, chunk: int = 512) -> np.ndarray:
    """(N, 2C) trivial per-band statistics of preprocessed images: the floor a probe must beat.

    Per band: the robust standard deviation (1.4826 x MAD) of the outer pixels
    (farther than 0.4 of the stamp size from the centre), which reads the sky
    noise off the image; and the second-moment radius sqrt((Ixx + Iyy) / 2) of the
    background-subtracted positive flux within a quarter stamp of the centre, which
    grows with the PSF (and with the galaxy). A target this predicts well is read
    off pixels trivially, so a latent's R^2 on it says little about disentanglement.
    """
    n, c, h, w = images.shape
    yy, xx = np.mgrid[:h, :w]
    r2 = (yy - (h - 1) / 2.0) ** 2 + (xx - (w - 1) / 2.0) ** 2
    outer = r2 > (0.4 * min(h, w)) ** 2
    inner = r2 < (0.25 * min(h, w)) ** 2
    out = np.empty((n, 2 * c), dtype=np.float64)
    for start in range(0, n, chunk):
        block = np.asarray(images[start : start + chunk], dtype=np.float64)
        edge = block[:, :, outer]
        bg = np.median(edge, axis=2)
        out[start : start + len(block), :c] = 1.4826 * np.median(np.abs(edge - bg[..., None]), axis=2)
        flux = np.clip(block[:, :, inner] - bg[..., None], 0.0, None)
        total = flux.sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            size = np.sqrt((flux * r2[inner]).sum(axis=2) / (2.0 * total))
        out[start : start + len(block), c:] = np.where(total > 0, size, np.nan)
    return out


def _survey_pixel_statistics(images: dict[str, np.ndarray], n_pairs: int) -> dict[str, np.ndarray]:
    """:func:`pixel_statistics` of each survey's images, computed once for every probe design."""
    out = {}
    for survey, arr in images.items():
        if len(arr) != n_pairs:
            raise ValueError(f"{survey} images: {len(arr)} images but {n_pairs} pairs")
        t0 = time.perf_counter()
        out[survey] = pixel_statistics(arr)
        log.info("pixel statistics %s: %.1f s", survey, time.perf_counter() - t0)
    return out


def _floor_columns(stats: dict[str, np.ndarray], specs: Sequence[Target]) -> dict[str, list[int]]:
    """The target columns of each survey's pixel floor: its instrument targets, for the surveys with statistics."""
    out = {}
    for survey in SURVEY_ORDER:
        cols = [j for j, t in enumerate(specs) if t.group == instrument_group(survey)]
        if cols and survey in stats:
            out[survey] = cols
    return out


def _pixel_floor_predictions(
    stats: dict[str, np.ndarray],
    y: np.ndarray,
    specs: Sequence[Target],
    folds: ProbeFolds,
    probes_cfg: dict,
    shown: Progress | None = None,
) -> np.ndarray:
    """Held-out predictions of every instrument target from its own survey's pixel statistics (NaN elsewhere)."""
    pred = np.full((len(folds.scored), len(specs)), np.nan)
    for survey, cols in _floor_columns(stats, specs).items():
        t0 = time.perf_counter()
        pred[:, cols] = fold_predictions(stats[survey], y[:, cols], folds, probes_cfg, keys=cols, shown=shown)
        log.info("pixel floor %s: %d targets in %.1f s", survey, len(cols), time.perf_counter() - t0)
    return pred


# --------------------------------------------------------------------------- truth summary


def _clipped_mean(values: pd.Series) -> float:
    v = values.dropna().clip(lower=0.0)
    return float(v.mean()) if len(v) else float("nan")


def _clipped_mean_replicates(replicates: np.ndarray) -> np.ndarray:
    """(B,) mean over targets of each resample's R^2 clipped at 0 (NaN targets left out)."""
    if replicates.shape[1] == 0:
        return np.full(replicates.shape[0], np.nan)
    clipped = np.clip(replicates, 0.0, None)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(clipped, axis=1)


def _ci_row(metric: str, value: float, replicates: np.ndarray | None, confidence: float, note: str) -> dict:
    lo, hi = percentile_ci(replicates, confidence) if replicates is not None else (np.nan, np.nan)
    return {"metric": metric, "value": float(value), "ci_lo": float(lo), "ci_hi": float(hi), "note": note}


@dataclass(frozen=True)
class _Replicates:
    """The bootstrap replicates of each representation, looked up by target name (None: no interval)."""

    boot: BootstrapR2 | None
    columns: Sequence[str]

    @property
    def confidence(self) -> float:
        return self.boot.confidence if self.boot is not None else 0.95

    def of(self, rep: str, targets: Sequence[str]) -> np.ndarray | None:
        """(B, len(targets)) replicates of ``rep`` on ``targets``; None when one of them has none."""
        col_of = {name: j for j, name in enumerate(self.columns)}
        if self.boot is None or rep not in self.boot.replicates or any(t not in col_of for t in targets):
            return None
        return self.boot.replicates[rep][:, [col_of[t] for t in targets]]

    def one(self, rep: str, target: str) -> np.ndarray | None:
        """(B,) replicates of ``rep`` on one target, or None."""
        rr = self.of(rep, [target])
        return None if rr is None else rr[:, 0]


def truth_probe_rows(
    result: pd.DataFrame, reps: Sequence[str], boot: BootstrapR2 | None = None, columns: Sequence[str] = ()
) -> list[dict]:
    """``metric, value, ci_lo, ci_hi, note`` rows of the truth targets: R^2, differences, floors and summaries.

    ``boot`` holds the bootstrap replicates of each representation, one column
    per target named in ``columns`` (the order of ``y``); without it the CIs are
    NaN. Means clip R^2 at 0 (a probe worse than the mean carries no
    information; a large negative value must not dominate an average), per
    resample too, so the means' intervals are those of the same statistic.
    """
    truth = result[result["truth"].astype(bool)]
    if truth.empty:
        return []
    replicates = _Replicates(boot, columns)
    rows: list[dict] = []
    for _, r in truth.iterrows():
        rows += _truth_target_rows(r, reps, replicates)
    phys = truth[truth["group"] == "physics"]
    inst = truth[truth["group"] != "physics"]
    means = {rep: _truth_means(rep, phys, inst, replicates) for rep in reps}
    for rep, mean in means.items():
        rows += _truth_mean_rows(rep, mean, len(phys), len(inst), replicates.confidence)
    if "ours_physics" in means and "ours_instrument" in means:
        rows.append(_disentanglement_score_row(means["ours_physics"], means["ours_instrument"], replicates.confidence))
    return rows


def _truth_target_rows(r: pd.Series, reps: Sequence[str], replicates: _Replicates) -> list[dict]:
    """One truth target's rows: each representation's R^2, physics - instrument, and the pixel floor."""
    t, conf = r["target"], replicates.confidence
    rows = []
    for rep in reps:
        note = f"{r['label']} ({r['group']}): probe R^2 of {rep}, n_test={r['n_test']}"
        rows.append(_ci_row(f"r2_{t}_{rep}", r[rep], replicates.one(rep, t), conf, note))
    if "ours_physics" in reps and "ours_instrument" in reps:
        a, b = replicates.one("ours_physics", t), replicates.one("ours_instrument", t)
        rows.append(
            _ci_row(
                f"diff_phys_minus_inst_{t}",
                r["ours_physics"] - r["ours_instrument"],
                None if a is None or b is None else a - b,
                conf,
                f"{r['label']}: physics-latent minus instrument-latent R^2 (paired bootstrap)",
            )
        )
    if r["group"] != "physics" and np.isfinite(r.get(FLOOR, np.nan)):
        note = f"{r['label']}: R^2 of trivial pixel statistics (outer-pixel robust std, moment size) - the floor"
        rows.append(_ci_row(f"r2_floor_{t}", r[FLOOR], replicates.one(FLOOR, t), conf, note))
    return rows


@dataclass(frozen=True)
class _TruthMeans:
    """One representation's mean R^2 (clipped at 0) over the true physics and instrument targets, with replicates."""

    physics: float
    instrument: float
    physics_replicates: np.ndarray | None
    instrument_replicates: np.ndarray | None


def _truth_means(rep: str, phys: pd.DataFrame, inst: pd.DataFrame, replicates: _Replicates) -> _TruthMeans:
    rp, ri = replicates.of(rep, list(phys["target"])), replicates.of(rep, list(inst["target"]))
    return _TruthMeans(
        _clipped_mean(phys[rep]),
        _clipped_mean(inst[rep]),
        None if rp is None else _clipped_mean_replicates(rp),
        None if ri is None else _clipped_mean_replicates(ri),
    )


def _truth_mean_rows(rep: str, mean: _TruthMeans, n_phys: int, n_inst: int, conf: float) -> list[dict]:
    """A representation's mean physics and instrument R^2 and their gap."""
    mp, mi = mean.physics_replicates, mean.instrument_replicates
    return [
        _ci_row(
            f"r2_truth_physics_mean_{rep}",
            mean.physics,
            mp,
            conf,
            f"mean probe R^2 (clipped at 0) of {rep} over {n_phys} true physical parameters",
        ),
        _ci_row(
            f"r2_truth_instrument_mean_{rep}",
            mean.instrument,
            mi,
            conf,
            f"mean probe R^2 (clipped at 0) of {rep} over {n_inst} true instrument parameters",
        ),
        _ci_row(
            f"disentanglement_gap_{rep}",
            mean.physics - mean.instrument,
            None if mp is None or mi is None else mp - mi,
            conf,
            f"{rep}: mean true-physics minus mean true-instrument R^2 (+ physics-like)",
        ),
    ]


def _disentanglement_score_row(p: _TruthMeans, i: _TruthMeans, conf: float) -> dict:
    """Mean of the physics latent's and the instrument latent's gaps, each in its own direction."""
    pp, pi, ip, ii = p.physics_replicates, p.instrument_replicates, i.physics_replicates, i.instrument_replicates
    score_reps = None
    if all(v is not None for v in (pp, pi, ip, ii)):
        score_reps = 0.5 * ((pp - pi) + (ii - ip))
    return _ci_row(
        "disentanglement_score_ours",
        0.5 * ((p.physics - p.instrument) + (i.instrument - i.physics)),
        score_reps,
        conf,
        "mean of the physics latent's (physics - instrument) and the instrument latent's "
        "(instrument - physics) R^2 gaps; 1 = perfect, 0 = none",
    )


# --------------------------------------------------------------------------- predictions file


def write_probe_predictions(
    path: str | Path, pairs: np.ndarray, names: Sequence[str], y: np.ndarray, preds: dict[str, np.ndarray]
) -> None:
    """``probe_predictions.npz``: the test pairs, target names, labels and every representation's predictions.

    The ablation reads two runs' files to bootstrap the drop from one run to the
    other *paired* on the same test pairs, without retraining a probe.
    """
    arrays = {"pair": np.asarray(pairs, np.int64), "target": np.asarray(list(names), dtype=str), "y": y}
    arrays |= {f"{PRED_PREFIX}{rep}": np.asarray(p, np.float64) for rep, p in preds.items()}
    write_npz(path, **arrays)


def read_baseline_predictions(path: str | Path, inputs: ProbeInputs, folds: ProbeFolds) -> dict[str, np.ndarray]:
    """The run-independent columns' held-out predictions of :func:`run_baseline_probes`, checked
    against the run's own design: the same scored pairs in the same order, the same targets and
    the same labels. A mismatch (a file from another design, sky or config) is an error naming
    the file, never a silently misaligned column."""
    pairs, names, y, preds = read_probe_predictions(path)
    rerun = "rerun the baseline_probes rule with the run's experiments.probes"
    if not np.array_equal(pairs, folds.scored):
        raise ValueError(
            f"{path}: scored {len(pairs)} pairs, but the design {folds.design.label!r} scores "
            f"{len(folds.scored)} (or others, or in another order); {rerun}"
        )
    if names != inputs.names:
        raise ValueError(f"{path}: targets {names} differ from the run's {inputs.names}; {rerun}")
    if not np.allclose(y, inputs.y[folds.scored], equal_nan=True, rtol=0, atol=0):
        raise ValueError(f"{path}: labels differ from the run's for the same pairs and targets; {rerun}")
    unknown = sorted(set(preds) - set(RUN_INDEPENDENT))
    if unknown:
        raise ValueError(
            f"{path}: holds {unknown}, which depend on a trained run; expected only {list(RUN_INDEPENDENT)}"
        )
    return preds


def read_probe_predictions(path: str | Path) -> tuple[np.ndarray, list[str], np.ndarray, dict[str, np.ndarray]]:
    """``(pairs, target names, labels (n, T), {representation: predictions (n, T)})`` of a predictions file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("pair", "target", "y") if k not in f.files]
        if missing:
            raise ValueError(f"{path}: missing array(s) {', '.join(missing)}")
        preds = {k.removeprefix(PRED_PREFIX): f[k] for k in f.files if k.startswith(PRED_PREFIX)}
        return f["pair"], [str(t) for t in f["target"]], f["y"], preds


# --------------------------------------------------------------------------- entry point


def read_images(images: Mapping[str, str | Path] | None) -> dict[str, np.ndarray]:
    """``{survey: memory-mapped images}`` of the caller's ``{survey: images path}`` (none: no pixel floor)."""
    out = {}
    for s, p in (images or {}).items():
        p = Path(p)
        if not p.exists():
            raise FileNotFoundError(f"{p}: file not found")
        out[s] = np.load(p, mmap_mode="r")
    return out


def table5_columns(reps: Sequence[str]) -> list[str]:
    """Table 5's columns for the probed representations ``reps`` (``aion`` only when probed)."""
    ci_reps = [r for r in CI_REPRESENTATIONS if r in reps or r in (FLOOR, "cross_predict")]
    return [
        *TABLE5_COLUMNS,
        *(["aion"] if "aion" in reps else []),
        FLOOR,
        *[f"{r}_{end}" for r in ci_reps for end in ("ci_lo", "ci_hi")],
        *DIFF_COLUMNS,
        "n_train",
        "n_test",
        *DESIGN_COLUMNS,
    ]


@dataclass(frozen=True)
class ProbeInputs:
    """What every probe design reads, loaded once: targets, representations, the pairs' sky and pixel statistics."""

    specs: list[Target]
    y: np.ndarray
    """(n_pairs, T) target values in pair order, NaN where missing."""
    reps: dict[str, np.ndarray]
    """Representation name -> (n_pairs, d) features."""
    sky: pd.DataFrame
    """``pair, split, ra, dec`` of every pair (what the designs split)."""
    pixel_stats: dict[str, np.ndarray]
    """Survey -> :func:`pixel_statistics` of its images (empty without images: no floor)."""

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.specs]

    @property
    def n_pairs(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class ProbeResult:
    """Table 5 of one design, its bootstrap (whose replicates feed the truth summary) and held-out predictions."""

    folds: ProbeFolds
    table: pd.DataFrame
    boot: BootstrapR2
    preds: dict[str, np.ndarray]
    """Representation -> (n_scored, T) held-out predictions, rows in ``folds.scored`` order."""


def load_probe_inputs(
    bands: Sequence[str],
    embeddings: str | Path | None,
    random_init: str | Path | None,
    meta: Mapping[str, str | Path] | DatasetLayout,
    truth: str | Path | None,
    aion: str | Path | None = None,
    images: Mapping[str, str | Path] | None = None,
    provabgs: str | Path | None = None,
) -> ProbeInputs:
    """Targets of every pair, every representation, the pairs' sky and the pixel statistics (see :func:`run_probes`).

    A None ``embeddings`` or ``random_init`` leaves that representation out (the run-independent
    probes have no run; a run reading them from :func:`run_baseline_probes` needs no random-init file)."""
    targets, specs = build_targets(meta, truth, bands, provabgs)
    n = len(targets)
    reps = _representations(embeddings, random_init, aion, n)
    sky = read_probe_sky(meta)
    pixel_stats = _survey_pixel_statistics(read_images(images), n)
    y = targets[[t.name for t in specs]].to_numpy(np.float64)
    return ProbeInputs(specs, y, reps, sky, pixel_stats)


def _design_predictions(
    inputs: ProbeInputs, folds: ProbeFolds, probes_cfg: dict, baseline: Mapping[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Held-out predictions of every representation and of the pixel floor, one probe per fold.

    ``baseline``: run-independent columns' predictions already made on these folds
    (:func:`read_baseline_predictions`); they are used as they are, not refitted. One
    progress count over all fits (an ensemble fit covers every target at once), not one per
    fit: a design's few dozen fits read better as one bar than as dozens."""
    baseline = dict(baseline or {})
    fitted = {name: x for name, x in inputs.reps.items() if name not in baseline}
    floor = FLOOR not in baseline
    n_floor = len(_floor_columns(inputs.pixel_stats, inputs.specs)) if floor else 0
    preds = {}
    with Progress(
        (len(fitted) + n_floor) * len(folds.folds), f"probes ({folds.design.label})", "probe fits", log=log
    ) as shown:
        for name, x in fitted.items():
            t1 = time.perf_counter()
            preds[name] = fold_predictions(x, inputs.y, folds, probes_cfg, shown=shown)
            log.info(
                "probes %s (%d features, %d targets; %s): %.1f s",
                name,
                x.shape[1],
                len(inputs.specs),
                folds.design.label,
                time.perf_counter() - t1,
            )
        if floor:
            preds[FLOOR] = _pixel_floor_predictions(
                inputs.pixel_stats, inputs.y, inputs.specs, folds, probes_cfg, shown
            )
    order = [*REPRESENTATIONS, FLOOR]
    return {name: p for name, p in sorted((preds | baseline).items(), key=lambda kv: order.index(kv[0]))}


def probe_design_result(
    inputs: ProbeInputs,
    folds: ProbeFolds,
    cross: dict[str, tuple[float, float, float]],
    probes_cfg: dict,
    bootstrap: tuple[int, int, float],
    baseline: Mapping[str, np.ndarray] | None = None,
) -> ProbeResult:
    """Table 5 of one design: every representation probed on ``folds``, with bootstrap CIs over the scored pairs.

    ``cross``: the cross-predict baseline's ``{target: (r2, ci_lo, ci_hi)}`` of this design;
    ``bootstrap``: ``(n_resamples, seed, confidence)``; ``baseline``: run-independent columns'
    held-out predictions on these folds, used instead of fitting them (:func:`_design_predictions`).
    """
    n_boot, boot_seed, confidence = bootstrap
    preds = _design_predictions(inputs, folds, probes_cfg, baseline)
    boot = BootstrapR2.for_rows(len(folds.scored), n_boot, boot_seed, confidence)
    y_test = inputs.y[folds.scored]
    for name, p in preds.items():
        boot.add(name, y_test, p)
        if name != FLOOR:
            log.info(
                "probes %s R^2 (%s): %s",
                name,
                folds.design.label,
                ", ".join(f"{t.name}={v:.2f}" for t, v in zip(inputs.specs, boot.point[name], strict=True)),
            )
    table = _table5(inputs, folds, boot, list(preds), cross)
    return ProbeResult(folds, table, boot, preds)


def _table5(
    inputs: ProbeInputs,
    folds: ProbeFolds,
    boot: BootstrapR2,
    names: Sequence[str],
    cross: dict[str, tuple[float, float, float]],
) -> pd.DataFrame:
    """Table 5's rows (one per target, in :data:`GROUPS` order, truth targets last) from the bootstrap."""
    cis = {name: boot.ci(name) for name in names}
    diff, diff_lo, diff_hi = boot.diff("ours_physics", "ours_instrument")
    n_train = folds.training_counts(inputs.y)
    y_test = inputs.y[folds.scored]
    rows = []
    for j, t in enumerate(inputs.specs):
        row = {"target": t.name, "label": t.label, "group": t.group, "truth": t.truth}
        for name in names:
            row[name] = boot.point[name][j]
        row["cross_predict"], row["cross_predict_ci_lo"], row["cross_predict_ci_hi"] = cross.get(
            t.name, (np.nan, np.nan, np.nan)
        )
        for name, (lo, hi) in cis.items():
            row[f"{name}_ci_lo"], row[f"{name}_ci_hi"] = lo[j], hi[j]
        row["diff_phys_minus_inst"], row["diff_ci_lo"], row["diff_ci_hi"] = diff[j], diff_lo[j], diff_hi[j]
        row["n_train"] = int(n_train[j])
        row["n_test"] = int(np.isfinite(y_test[:, j]).sum())
        rows.append(row | folds.design_columns())
    result = pd.DataFrame(rows, columns=table5_columns(list(names)))
    order = {g: i for i, g in enumerate(GROUPS)}
    result = result.sort_values(
        ["truth", "group"], key=lambda s: s.map(order) if s.name == "group" else s, kind="stable"
    )
    return result.reset_index(drop=True)


def _write_result(inputs: ProbeInputs, result: ProbeResult, table: str | Path, predictions: str | Path | None) -> None:
    """Table 5 and, when asked, the held-out predictions (for the ablation's paired drops)."""
    write_csv(result.table, table)
    if predictions is not None:
        scored = result.folds.scored
        write_probe_predictions(predictions, scored, inputs.names, inputs.y[scored], result.preds)


def _write_truth_and_figure(
    inputs: ProbeInputs, result: ProbeResult, with_truth: bool, truth_table: str | Path, figure: str | Path
) -> None:
    """The primary design's truth summary (header only without truth targets) and Fig 4."""
    from whatsreal.plots.probes import plot_probes

    rep_names = [r for r in REPRESENTATIONS if r in result.preds]
    truth_rows = truth_probe_rows(result.table, rep_names, result.boot, inputs.names) if with_truth else []
    write_truth_table(truth_rows, truth_table, with_ci=True)
    plot_probes(result.table, rep_names, figure)


def _run_alternative(
    inputs: ProbeInputs,
    folds: ProbeFolds,
    probes_cfg: dict,
    bootstrap: tuple[int, int, float],
    cross_predict: str | Path | None,
    table: str | Path,
    predictions: str | Path | None,
    baseline: str | Path | None,
) -> ProbeResult:
    """Table 5 under the alternative design (no figure, no truth summary: those show the primary one)."""
    t1 = time.perf_counter()
    log.info("probes, alternative: %s, %d pairs scored of %d", folds.design.label, len(folds.scored), inputs.n_pairs)
    cross = _cross_predict_r2(cross_predict, inputs.specs, folds) if cross_predict else {}
    known = read_baseline_predictions(baseline, inputs, folds) if baseline else None
    result = probe_design_result(inputs, folds, cross, probes_cfg, bootstrap, known)
    _write_result(inputs, result, table, predictions)
    log.info("probes, alternative (%s): %.1f s", folds.design.label, time.perf_counter() - t1)
    return result


def run_probes(
    probes_cfg: dict,
    design: ProbeDesign,
    bands: Sequence[str],
    bootstrap: tuple[int, int, float],
    embeddings: str | Path,
    random_init: str | Path | None,
    cross_predict: str | Path,
    meta: Mapping[str, str | Path] | DatasetLayout,
    truth: str | Path | None,
    aion: str | Path | None,
    figure: str | Path,
    table: str | Path,
    truth_table: str | Path,
    images: Mapping[str, str | Path] | None = None,
    predictions: str | Path | None = None,
    provabgs: str | Path | None = None,
    alternative_table: str | Path | None = None,
    alternative_cross_predict: str | Path | None = None,
    alternative_predictions: str | Path | None = None,
    baseline: str | Path | None = None,
    alternative_baseline: str | Path | None = None,
) -> pd.DataFrame:
    """Probe every representation on every target; write Table 5 with bootstrap CIs, the truth summary and Fig 4.

    ``probes_cfg``: ``experiments.probes``; ``design``: its resolved design
    (:func:`~whatsreal.experiments.probe_design.resolve_design`, recorded in the table's
    ``probe_pairs``/``probe_split``/``probe_folds``); ``bands``: ``preprocess.bands``;
    ``bootstrap``: ``(n_resamples, seed, confidence)``. ``meta``: each survey's meta file
    (``{survey: path}``) or the dataset's layout. ``images`` (``{survey: images path}``)
    add the pixel-floor column; ``predictions`` receives the held-out predictions for the
    ablation; ``provabgs`` (``provabgs.parquet``) adds the five spectroscopic rows, each probed
    on the pairs with a label only (its ``n_train``/``n_test`` say how many);
    ``alternative_table`` receives Table 5 under the alternative design (with
    ``alternative_cross_predict``, the cross-predict baseline's file of that design;
    ``alternative_predictions``, its held-out predictions for the alternative ablation).
    ``baseline`` / ``alternative_baseline``: :func:`run_baseline_probes`' files for the two
    designs; their columns (random init, AION, pixel floor) are read, not refitted, and the
    files that would feed them (``random_init``, ``aion``, ``images``) may then be None.
    """
    t0 = time.perf_counter()
    inputs = load_probe_inputs(bands, embeddings, random_init, meta, truth, aion, images, provabgs)
    folds = folds_for(design, probes_cfg, inputs.sky)
    log.info("probes: %s, %d pairs scored of %d", folds.design.label, len(folds.scored), inputs.n_pairs)
    cross = _cross_predict_r2(cross_predict, inputs.specs, folds)
    known = read_baseline_predictions(baseline, inputs, folds) if baseline else None
    result = probe_design_result(inputs, folds, cross, probes_cfg, bootstrap, known)
    _write_result(inputs, result, table, predictions)
    _write_truth_and_figure(inputs, result, truth is not None, truth_table, figure)
    log.info("probes (%s): %.1f s", folds.design.label, time.perf_counter() - t0)
    if alternative_table is not None:
        other = folds_for(design, probes_cfg, inputs.sky, alternative=True)
        _run_alternative(
            inputs,
            other,
            probes_cfg,
            bootstrap,
            alternative_cross_predict,
            alternative_table,
            alternative_predictions,
            alternative_baseline,
        )
    log.info(
        "probes: %d targets x %d representations in %.1f s (%d bootstrap resamples)",
        len(inputs.specs),
        len(result.preds),
        time.perf_counter() - t0,
        bootstrap[0],
    )
    return result.table


def run_baseline_probes(
    probes_cfg: dict,
    design: ProbeDesign,
    bands: Sequence[str],
    random_init: str | Path,
    meta: Mapping[str, str | Path] | DatasetLayout,
    truth: str | Path | None,
    aion: str | Path | None,
    images: Mapping[str, str | Path] | None,
    predictions: str | Path,
    alternative_predictions: str | Path,
    provabgs: str | Path | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """The run-independent columns of Table 5 (:data:`RUN_INDEPENDENT`), probed once per dataset
    under both designs: ``predictions`` (the primary design) and ``alternative_predictions``, in
    ``probe_predictions.npz``'s format, which every run's :func:`run_probes` reads as ``baseline``.

    The probes, folds and seeds are those :func:`run_probes` would use, so a run's table is the
    same to the bit whether it fits these columns itself or reads them here. Returns
    ``{design label: {column: predictions}}``."""
    t0 = time.perf_counter()
    inputs = load_probe_inputs(bands, None, random_init, meta, truth, aion, images, provabgs)
    out = {}
    for path, alternative in ((predictions, False), (alternative_predictions, True)):
        folds = folds_for(design, probes_cfg, inputs.sky, alternative=alternative)
        preds = _design_predictions(inputs, folds, probes_cfg)
        scored = folds.scored
        write_probe_predictions(path, scored, inputs.names, inputs.y[scored], preds)
        out[folds.design.label] = preds
        log.info("baseline probes (%s): %s on %d scored pairs", folds.design.label, ", ".join(preds), len(scored))
    log.info("baseline probes: %d targets, both designs in %.1f s", len(inputs.specs), time.perf_counter() - t0)
    return out
