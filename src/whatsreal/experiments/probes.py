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
R^2 on the held-out pairs of :func:`~whatsreal.experiments.targets.probe_split`.

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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from whatsreal.experiments.baselines import CROSS_PREDICT_COLUMNS, r2_or_nan
from whatsreal.experiments.regressor import device, masked_smooth_l1, one_cpu_thread
from whatsreal.experiments.targets import GROUPS, Target, build_targets, probe_split
from whatsreal.experiments.truth_metrics import write_truth_table
from whatsreal.experiments.umap_projection import (
    SPACES,
    latent_columns,
    paired_latents,
    read_embeddings,
    read_parquet_columns,
)
from whatsreal.io import atomic_path
from whatsreal.surveys import SURVEY_ORDER

__all__ = [
    "REPRESENTATIONS",
    "TABLE5_COLUMNS",
    "ProbeEnsemble",
    "fit_probe_ensemble",
    "member_seed",
    "probe_r2",
    "read_aion",
    "run_probes",
    "truth_probe_rows",
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
    x: np.ndarray, y: np.ndarray, pcfg: dict, member_seeds: Sequence[int], dev: torch.device | None = None
) -> ProbeEnsemble:
    """Train the ensemble on standardised inputs ``x`` (N, d) and standardised targets ``y`` (N, T; NaN = no label).

    Batches come from a permutation seeded by ``pcfg['seed']`` each epoch, the
    same for every member; a member's loss is its mean Smooth L1 over the
    batch rows that have its label.
    """
    dev = dev or device()
    if dev.type == "cpu":
        with one_cpu_thread():
            return _fit(x, y, pcfg, member_seeds, dev)
    return _fit(x, y, pcfg, member_seeds, dev)


def _fit(x: np.ndarray, y: np.ndarray, pcfg: dict, member_seeds: Sequence[int], dev: torch.device) -> ProbeEnsemble:
    model = ProbeEnsemble(member_seeds, x.shape[1], pcfg["hidden"], pcfg["dropout"]).to(dev)
    model.reset_dropout(dev)
    opt = torch.optim.AdamW(
        model.parameters(), lr=float(pcfg["lr"]), weight_decay=float(pcfg["weight_decay"]), foreach=True
    )
    xt = torch.as_tensor(x, dtype=torch.float32, device=dev)
    mask = torch.as_tensor(np.isfinite(y), device=dev)
    yt = torch.as_tensor(np.nan_to_num(y, nan=0.0), dtype=torch.float32, device=dev)
    gen = torch.Generator().manual_seed(int(pcfg["seed"]))
    batch = int(pcfg["batch_size"])
    model.train()
    for _ in range(int(pcfg["epochs"])):
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
    x: np.ndarray, y: np.ndarray, test: np.ndarray, pcfg: dict, keys: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """R^2 per target column of ``y`` on the ``test`` rows, and the test predictions (in target units).

    Rows of ``x`` with a non-finite feature are left out of both splits (a
    representation that lacks some pairs, e.g. AION). Targets with fewer than 2
    training labels or a constant training value get NaN. ``keys`` name the
    members for seeding (default: column index).
    """
    x, y, test = np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(test, bool)
    keys = list(range(y.shape[1])) if keys is None else list(keys)
    rows_ok = np.isfinite(x).all(axis=1)
    train_rows, test_rows = np.flatnonzero(~test & rows_ok), np.flatnonzero(test & rows_ok)
    y = np.where(np.isfinite(y), y, np.nan)
    ytr = y[train_rows]
    n_lab = np.isfinite(ytr).sum(axis=0)
    with np.errstate(invalid="ignore"):
        spread = np.nanstd(np.where(n_lab > 0, ytr, 0.0), axis=0)
    trainable = (n_lab >= 2) & (spread > 0)
    r2 = np.full(y.shape[1], np.nan)
    pred = np.full((len(test_rows), y.shape[1]), np.nan)
    cols = np.flatnonzero(trainable)
    if cols.size == 0 or test_rows.size == 0:
        return r2, pred
    xtr, xte = _standardise(x[train_rows], x[test_rows])
    mean = np.nanmean(ytr[:, cols], axis=0)
    std = np.nanstd(ytr[:, cols], axis=0)
    dev = device()
    model = fit_probe_ensemble(
        xtr.astype(np.float32),
        (ytr[:, cols] - mean) / std,
        pcfg,
        [member_seed(pcfg["seed"], keys[c]) for c in cols],
        dev,
    )
    p = _predict(model, xte.astype(np.float32), dev) * std + mean
    pred[:, cols] = p
    for j, c in enumerate(cols):
        r2[c] = r2_or_nan(y[test_rows, c], p[:, j])
    return r2, pred


# --------------------------------------------------------------------------- representations


def _pair_features(emb: pd.DataFrame, prefix: str, pairs: np.ndarray, source: str | Path) -> np.ndarray:
    """(n, 2d): the HSC and the Legacy latents of each pair side by side."""
    both = paired_latents(emb, prefix, pairs, source)
    n = len(pairs)
    return np.concatenate([both[:n], both[n:]], axis=1)


def read_aion(path: str | Path, emb: pd.DataFrame, pairs: np.ndarray) -> np.ndarray:
    """(n, 2d) AION features per pair (HSC then Legacy), matched by (survey, object_id); NaN rows where absent."""
    df = read_parquet_columns(path, ["object_id", "survey"])
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
    embeddings: str | Path, random_init: str | Path, aion: str | Path | None, n_pairs: int
) -> dict[str, np.ndarray]:
    emb = read_embeddings(embeddings)
    pairs = np.arange(n_pairs)
    reps = {
        "ours_physics": _pair_features(emb, SPACES["physics"], pairs, embeddings),
        "ours_instrument": _pair_features(emb, SPACES["instrument"], pairs, embeddings),
    }
    rnd = read_embeddings(random_init, spaces=("physics",))
    latent_columns(rnd, SPACES["physics"], random_init)
    reps["random_init"] = _pair_features(rnd, SPACES["physics"], pairs, random_init)
    if aion:
        reps["aion"] = read_aion(aion, emb, pairs)
    return reps


def _cross_predict_r2(path: str | Path, specs: Sequence[Target]) -> dict[str, float]:
    df = _read_csv(path, CROSS_PREDICT_COLUMNS)
    known = dict(zip(df["target"].astype(str), df["r2"].astype(float), strict=True))
    wanted = [t.name for t in specs if t.group != "physics"]
    missing = [t for t in wanted if t not in known]
    if missing:
        log.warning("%s: no cross-predict R^2 for %s (NaN in Table 5)", path, ", ".join(missing))
    return {t: known.get(t, float("nan")) for t in wanted}


def _read_csv(path: str | Path, columns: Sequence[str]) -> pd.DataFrame:
    """A CSV with the given columns, or an error naming the file and what is missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    df = pd.read_csv(path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    return df


# --------------------------------------------------------------------------- truth summary


def _clipped_mean(values: pd.Series) -> float:
    v = values.dropna().clip(lower=0.0)
    return float(v.mean()) if len(v) else float("nan")


def truth_probe_rows(result: pd.DataFrame, reps: Sequence[str]) -> list[dict]:
    """``metric, value, note`` rows of the truth targets: per-target R^2 and disentanglement summaries.

    Means clip R^2 at 0 (a probe worse than the mean carries no information; a
    large negative value must not dominate an average).
    """
    truth = result[result["truth"]]
    if truth.empty:
        return []
    rows: list[dict] = []
    for _, r in truth.iterrows():
        for rep in reps:
            rows.append(
                {
                    "metric": f"r2_{r['target']}_{rep}",
                    "value": r[rep],
                    "note": f"{r['label']} ({r['group']}): probe R^2 of {rep}, n_test={r['n_test']}",
                }
            )
    phys = truth[truth["group"] == "physics"]
    inst = truth[truth["group"] != "physics"]
    means = {}
    for rep in reps:
        means[rep] = (_clipped_mean(phys[rep]), _clipped_mean(inst[rep]))
        rows.append(
            {
                "metric": f"r2_truth_physics_mean_{rep}",
                "value": means[rep][0],
                "note": f"mean probe R^2 (clipped at 0) of {rep} over {len(phys)} true physical parameters",
            }
        )
        rows.append(
            {
                "metric": f"r2_truth_instrument_mean_{rep}",
                "value": means[rep][1],
                "note": f"mean probe R^2 (clipped at 0) of {rep} over {len(inst)} true instrument parameters",
            }
        )
        rows.append(
            {
                "metric": f"disentanglement_gap_{rep}",
                "value": means[rep][0] - means[rep][1],
                "note": f"{rep}: mean true-physics minus mean true-instrument R^2 (+ physics-like)",
            }
        )
    if "ours_physics" in means and "ours_instrument" in means:
        p, i = means["ours_physics"], means["ours_instrument"]
        rows.append(
            {
                "metric": "disentanglement_score_ours",
                "value": 0.5 * ((p[0] - p[1]) + (i[1] - i[0])),
                "note": "mean of the physics latent's (physics - instrument) and the instrument latent's "
                "(instrument - physics) R^2 gaps; 1 = perfect, 0 = none",
            }
        )
    return rows


# --------------------------------------------------------------------------- entry point


def run_probes(
    cfg: dict,
    embeddings: str | Path,
    random_init: str | Path,
    cross_predict: str | Path,
    meta: Sequence[str | Path],
    truth: str | Path | None,
    aion: str | Path | None,
    figure: str | Path,
    table: str | Path,
    truth_table: str | Path,
) -> pd.DataFrame:
    """Probe every representation on every target; write Table 5, the truth summary and Fig 4."""
    from whatsreal.plots.probes import plot_probes

    pcfg = cfg["experiments"]["probes"]
    t0 = time.perf_counter()
    targets, specs = build_targets(meta, truth, cfg["preprocess"]["bands"])
    n = len(targets)
    reps = _representations(embeddings, random_init, aion, n)
    test = probe_split(n, float(pcfg["test_fraction"]), int(pcfg["seed"]))
    y = targets[[t.name for t in specs]].to_numpy(np.float64)
    scores = {}
    for name, x in reps.items():
        t1 = time.perf_counter()
        scores[name], _ = probe_r2(x, y, test, pcfg)
        log.info(
            "probes %s (%d features, %d targets): %.1f s; R^2 %s",
            name,
            x.shape[1],
            len(specs),
            time.perf_counter() - t1,
            ", ".join(f"{t.name}={v:.2f}" for t, v in zip(specs, scores[name], strict=True)),
        )
    cross = _cross_predict_r2(cross_predict, specs)
    rows = []
    for j, t in enumerate(specs):
        row = {"target": t.name, "label": t.label, "group": t.group, "truth": t.truth}
        for name in ("ours_physics", "ours_instrument", "random_init"):
            row[name] = scores[name][j]
        row["cross_predict"] = cross.get(t.name, float("nan"))
        if "aion" in scores:
            row["aion"] = scores["aion"][j]
        row["n_train"] = int(np.isfinite(y[~test, j]).sum())
        row["n_test"] = int(np.isfinite(y[test, j]).sum())
        rows.append(row)
    columns = [*TABLE5_COLUMNS, *(["aion"] if "aion" in scores else []), "n_train", "n_test"]
    result = pd.DataFrame(rows, columns=columns)
    order = {g: i for i, g in enumerate(GROUPS)}
    result = result.sort_values(
        ["truth", "group"], key=lambda s: s.map(order) if s.name == "group" else s, kind="stable"
    )
    result = result.reset_index(drop=True)
    with atomic_path(table) as tmp:
        result.to_csv(tmp, index=False)
    rep_names = [r for r in REPRESENTATIONS if r in scores]
    write_truth_table(truth_probe_rows(result, rep_names) if truth is not None else [], truth_table)
    plot_probes(result, rep_names, figure)
    log.info("probes: %d targets x %d representations in %.1f s", len(specs), len(reps), time.perf_counter() - t0)
    return result
