"""Fig 3 / appendix A.7: outliers as the least likely HSC embeddings under a normalising flow per latent space.

A naive representation ranks instrument artefacts (saturated stars, stripes,
noisy patches) as its strongest anomalies, because they are the rarest thing
in the pixels. With physics and instrument separated, each space should have
its own outliers: rare *objects* (mergers, lenses) in physics space, rare
*observing conditions* in instrument space. To test that, a zuko Neural Spline
Flow is fitted to the HSC embeddings of each space (ours: physics 64-D and
instrument 16-D; a baseline: AION-1 if the user supplies it, else the frozen
randomly initialised encoder) and every HSC object is ranked by -log p.

The baseline's flow reads nothing of the trained run, so it is fitted once per dataset
(:func:`run_baseline_outliers`, the ``baseline_outliers`` rule) and every run reads its
scores (``baseline_scores=``): the same -log p as a per-run fit with the same seed, once.

On the synthetic sky the truth says which objects are mergers/lenses and which
HSC cutouts carry a pathology, so the claim becomes two numbers per space:
the fraction of rare classes and of pathologies among the top outliers,
against their base rates.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from whatsreal.data.preprocess import band_positions, read_cutouts
from whatsreal.device import compute_device
from whatsreal.experiments.embeddings import SPACES, latent_columns, read_embeddings
from whatsreal.experiments.truth_metrics import write_truth_table
from whatsreal.io import read_table, write_csv, write_parquet
from whatsreal.truth import PATHOLOGIES, RARE_CLASSES, hsc_truth

__all__ = [
    "OUTLIER_COLUMNS",
    "SCORE_COLUMNS",
    "OutlierFigure",
    "OutlierInputs",
    "OutlierPanel",
    "OutlierResult",
    "OutlierSpace",
    "fit_flow",
    "flow_nll",
    "load_outliers",
    "outlier_cutouts",
    "outlier_figure",
    "outlier_scores",
    "raw_locations",
    "read_baseline",
    "read_baseline_scores",
    "run_baseline_outliers",
    "run_outliers",
    "score_outliers",
    "truth_precision_rows",
    "write_outliers",
]

log = logging.getLogger(__name__)

OUTLIER_COLUMNS = ("space", "rank", "pair", "object_id", "nll")
SCORE_COLUMNS = ("space", "pair", "object_id", "nll")
"""``outlier_scores.parquet``: every scored HSC object's -log p in every space (the comparison ranks them)."""
NON_FEATURE_COLUMNS = {"object_id", "survey", "pair", "ra", "dec", "split", "healpix"}
"""Identifier columns of an AION-style embeddings file; every other numeric column is a feature."""


# --------------------------------------------------------------------------- flow


def fit_flow(x: np.ndarray, ocfg: dict, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, list[float]]:
    """Maximum-likelihood NSF on ``x`` (already standardised); returns the best state by mean epoch NLL.

    Initialisation and batch order come from ``ocfg['seed']`` only, so the same
    rows give the same flow (on the same device and torch build).
    """
    import zuko

    seed = int(ocfg["seed"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        flow = zuko.flows.NSF(
            features=x.shape[1],
            context=0,
            transforms=int(ocfg["transforms"]),
            hidden_features=[int(h) for h in ocfg["hidden"]],
        )
    flow = flow.to(device)
    data = torch.as_tensor(x, dtype=torch.float32, device=device)
    opt = torch.optim.Adam(flow.parameters(), lr=float(ocfg["lr"]))
    gen = torch.Generator().manual_seed(seed)
    batch = int(ocfg["batch_size"])
    best, best_state, history = math.inf, None, []
    for epoch in range(int(ocfg["epochs"])):
        perm = torch.randperm(len(data), generator=gen).to(device)
        total = 0.0
        flow.train()
        for start in range(0, len(data), batch):
            xb = data[perm[start : start + batch]]
            loss = -flow().log_prob(xb).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(xb)
        mean = total / len(data)
        history.append(mean)
        if not math.isfinite(mean):
            log.warning("flow NLL became %s at epoch %d; keeping the best earlier state", mean, epoch + 1)
            break
        if mean < best:
            best = mean
            best_state = {k: v.detach().clone() for k, v in flow.state_dict().items()}
    if best_state is None:
        raise RuntimeError("normalising flow training diverged in its first epoch (non-finite NLL)")
    flow.load_state_dict(best_state)
    flow.eval()
    return flow, history


@torch.no_grad()
def flow_nll(flow: torch.nn.Module, x: np.ndarray, device: torch.device | str = "cpu", batch: int = 8192) -> np.ndarray:
    """-log p(x) per row under the fitted flow."""
    out = []
    for start in range(0, len(x), batch):
        xb = torch.as_tensor(x[start : start + batch], dtype=torch.float32, device=device)
        out.append(-flow().log_prob(xb).double().cpu().numpy())
    return np.concatenate(out) if out else np.empty(0)


def outlier_scores(x: np.ndarray, ocfg: dict, device: torch.device | str = "cpu") -> tuple[np.ndarray, dict]:
    """Fit on a seeded ``train_fraction`` of the rows, score every row; returns (nll, info).

    Features are standardised with the training rows' mean and std first: the
    spaces (and AION) differ in scale by orders of magnitude, and the spline
    flow works on a bounded interval.
    """
    n = len(x)
    if n < 2:
        raise ValueError(f"need at least 2 rows to fit an outlier flow, got {n}")
    perm = np.random.default_rng(int(ocfg["seed"])).permutation(n)
    n_train = min(max(1, round(float(ocfg["train_fraction"]) * n)), n)
    train = np.sort(perm[:n_train])
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[~(std > 0)] = 1.0
    z = ((x - mean) / std).astype(np.float32)
    t0 = time.perf_counter()
    flow, history = fit_flow(z[train], ocfg, device)
    nll = flow_nll(flow, z, device)
    info = {
        "n_train": int(n_train),
        "n_scored": int(n),
        "best_epoch": int(np.nanargmin(history)) + 1,
        "best_train_nll": float(np.nanmin(history)),
        "seconds": time.perf_counter() - t0,
    }
    return nll, info


# --------------------------------------------------------------------------- inputs


def read_baseline(path: str | Path, hsc_ids: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """The baseline space for the HSC objects ``hsc_ids``: (name, features of the rows found, their positions).

    A file with ``phys_*`` columns (random_init_embeddings.parquet, the frozen
    random-init encoder) uses those; anything else is an AION-style file
    (``object_id, survey`` + numeric features). The space is named after the
    file: ``aion`` or ``random_init`` if its name says so, else its stem.
    """
    path = Path(path)
    df = read_table(path, ["object_id", "survey"])
    stem = path.stem.lower()
    name = "aion" if "aion" in stem else "random_init" if "random_init" in stem else path.stem
    if any(c.startswith(SPACES["physics"]) for c in df.columns):
        cols = latent_columns(df, SPACES["physics"], path)
    else:
        cols = [c for c in df.columns if c not in NON_FEATURE_COLUMNS and pd.api.types.is_numeric_dtype(df[c])]
        if not cols:
            raise ValueError(f"{path}: no numeric feature columns besides {', '.join(sorted(NON_FEATURE_COLUMNS))}")
    hsc = df[df["survey"].astype(str) == "hsc"]
    ids = hsc["object_id"].astype(str)
    if ids.duplicated().any():
        raise ValueError(f"{path}: duplicate HSC object_id {ids[ids.duplicated()].iloc[0]}")
    lookup = pd.Series(np.arange(len(hsc)), index=ids.to_numpy())
    found = lookup.reindex(hsc_ids.astype(str))
    pos = np.flatnonzero(found.notna().to_numpy())
    if pos.size == 0:
        raise ValueError(f"{path}: none of the {len(hsc_ids)} HSC object_ids of the embeddings is in this file")
    if pos.size < len(hsc_ids):
        log.warning(
            "%s: %d of %d HSC objects have no baseline embedding; scored without them",
            path,
            len(hsc_ids) - pos.size,
            len(hsc_ids),
        )
    feats = hsc[cols].to_numpy(dtype=np.float32)[found.to_numpy()[pos].astype(np.int64)]
    if not np.isfinite(feats).all():
        raise ValueError(f"{path}: non-finite values in the feature columns")
    return name, feats, pos


BASELINE_SCORE_COLUMNS = (*SCORE_COLUMNS, "dim")
"""``baselines/outlier_scores.parquet``: the baseline space's -log p per HSC object, and its dimension."""


def read_baseline_scores(path: str | Path, hsc_ids: np.ndarray) -> tuple[str, OutlierSpace]:
    """The baseline space of :func:`run_baseline_outliers`' file, placed on a run's HSC rows
    (``hsc_ids``, the run's embeddings' order). Every scored object must be one of the run's (a file
    from another sky is an error naming it); run objects the file lacks stay unscored in that
    space, as they do when the baseline has no features for them."""
    df = read_table(path, BASELINE_SCORE_COLUMNS)
    names = df["space"].astype(str).unique()
    if len(names) != 1:
        raise ValueError(f"{path}: expected one baseline space, found {sorted(names)}")
    lookup = pd.Series(np.arange(len(hsc_ids)), index=pd.Index(hsc_ids.astype(str)))
    ids = df["object_id"].astype(str)
    rows = lookup.reindex(ids.to_numpy())
    if rows.isna().any():
        raise ValueError(
            f"{path}: object_id {ids[rows.isna().to_numpy()].iloc[0]} is not among the run's HSC objects; "
            "rerun the baseline_outliers rule for this dataset"
        )
    nll = df["nll"].to_numpy(np.float64)
    if not np.isfinite(nll).all():
        raise ValueError(f"{path}: non-finite -log p")
    space = OutlierSpace(None, rows.to_numpy(np.int64), nll=nll, dim=int(df["dim"].iloc[0]))
    return str(names[0]), space


def run_baseline_outliers(
    outliers_cfg: dict, baseline: str | Path, meta: str | Path, scores: str | Path
) -> pd.DataFrame:
    """Fit the baseline space's flow once per dataset and write every HSC object's -log p
    (``scores``, :data:`BASELINE_SCORE_COLUMNS`), which every run's :func:`run_outliers` reads.

    The objects are meta_hsc's in pair order, the order of a run's embeddings, so the flow sees
    the same rows in the same order, with the same seed, as a run fitting it itself would."""
    m = read_table(meta, ["pair", "object_id"]).sort_values("pair", kind="stable")
    ids = m["object_id"].astype(str).to_numpy()
    if len(ids) < 2:
        raise ValueError(f"{meta}: {len(ids)} HSC row(s); the outlier flow needs at least 2")
    device = compute_device()
    name, feats, pos = read_baseline(baseline, ids)
    nll, info = outlier_scores(feats, outliers_cfg, device)
    _log_fit(name, feats.shape[1], info, device)
    out = pd.DataFrame(
        {
            "space": name,
            "pair": m["pair"].to_numpy(np.int64)[pos],
            "object_id": ids[pos],
            "nll": nll.astype(np.float64),
            "dim": np.int64(feats.shape[1]),
        }
    )
    write_parquet(out, scores)
    return out


# --------------------------------------------------------------------------- metrics


def _auc(score: np.ndarray, positive: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, score))


def truth_precision_rows(
    nll: dict[str, np.ndarray], rare: dict[str, np.ndarray], pathological: dict[str, np.ndarray], top: int
) -> list[dict]:
    """``metric, value, note`` rows: rare-class and pathology fractions among the top ``top`` and the top 1%
    of each space's -log p, the ROC AUC of -log p for each, and the base rates of the first space's rows."""
    rows = []
    first = next(iter(nll))
    n_all = len(rare[first])
    rows.append(
        {
            "metric": "base_rate_rare",
            "value": float(rare[first].mean()),
            "note": f"fraction of mergers/lenses among all {n_all} HSC objects",
        }
    )
    rows.append(
        {
            "metric": "base_rate_pathology",
            "value": float(pathological[first].mean()),
            "note": f"fraction of HSC cutouts with a pathology ({', '.join(PATHOLOGIES)}), n={n_all}",
        }
    )
    for space, score in nll.items():
        order = np.argsort(-score, kind="stable")
        n = len(score)
        one_pct = max(1, math.ceil(0.01 * n))
        for label, m in ((f"top{top}", min(top, n)), ("top1pct", one_pct)):
            sel = order[:m]
            rows.append(
                {
                    "metric": f"{space}_{label}_rare",
                    "value": float(rare[space][sel].mean()),
                    "note": f"mergers/lenses among the {m} least likely of {n} ({space} flow)",
                }
            )
            rows.append(
                {
                    "metric": f"{space}_{label}_pathology",
                    "value": float(pathological[space][sel].mean()),
                    "note": f"HSC pathologies among the {m} least likely of {n} ({space} flow)",
                }
            )
        rows.append(
            {
                "metric": f"{space}_auc_rare",
                "value": _auc(score, rare[space]),
                "note": f"ROC AUC of -log p for mergers/lenses ({int(rare[space].sum())} of {n}); 0.5 = chance",
            }
        )
        rows.append(
            {
                "metric": f"{space}_auc_pathology",
                "value": _auc(score, pathological[space]),
                "note": f"ROC AUC of -log p for pathologies ({int(pathological[space].sum())} of {n})",
            }
        )
    return rows


# --------------------------------------------------------------------------- cutouts


def _raw_rgb(path: str, row: int) -> np.ndarray:
    """The wide raw HSC cutout as a Lupton arcsinh g/r/i colour image, stretched on its own r band."""
    from whatsreal.plots.sky import pair_stretch, rgb_cutout

    bands = ("g", "r", "i")  # the shard's band order may differ from the survey's: pick by name
    image = read_cutouts(path, np.array([row]), "hsc")[0][0][band_positions(path, "hsc", list(bands))]
    return rgb_cutout(image, "hsc", pair_stretch([image], ["hsc"], bands), bands=bands)


def _preprocessed_rgb(image: np.ndarray) -> np.ndarray:
    """A 48x48 preprocessed cutout (bands g, r, i, z; already arcsinh-scaled) as i/r/g colour, stretched alone."""
    from whatsreal.plots.latents import irg_image

    lo, hi = np.percentile(image[:3], [1, 99.5])
    return irg_image(image, lo, max(hi - lo, 1e-6))


def raw_locations(catalog: str | Path) -> dict[str, tuple[str, int]]:
    """object_id -> (raw shard, row) from catalog_hsc.parquet's ``file`` and ``row`` columns."""
    cat = read_table(catalog, ["object_id", "file", "row"])
    files, rows = cat["file"].astype(str).tolist(), cat["row"].astype(np.int64).tolist()
    return dict(zip(cat["object_id"].astype(str), zip(files, rows, strict=True), strict=True))


def outlier_cutouts(
    where: dict[str, tuple[str, int]], images: np.ndarray, object_ids: list[str], pairs: list[int]
) -> list[tuple]:
    """(rgb, source) per object: the raw wide cutout if its shard is readable, else the preprocessed
    ``images[pair]`` (images_hsc.npy)."""
    arr = images
    out, failures = [], []
    for oid, pair in zip(object_ids, pairs, strict=True):
        try:
            path, row = where[str(oid)]
            rgb = _raw_rgb(path, int(row))
            out.append((rgb, f"raw {rgb.shape[0]}px"))
        except Exception as err:  # a missing shard, an unreadable file: fall back, but say so
            failures.append(f"{oid}: {type(err).__name__}: {err}")
            out.append((_preprocessed_rgb(np.asarray(arr[int(pair)])), f"preprocessed {arr.shape[-1]}px"))
    if failures:
        log.warning(
            "%d outlier cutout(s) shown from images_hsc.npy instead of the raw shard (first: %s)",
            len(failures),
            failures[0],
        )
    return out


# --------------------------------------------------------------------------- experiment


@dataclass(frozen=True)
class OutlierSpace:
    """One space's HSC features and the rows of :attr:`OutlierInputs.hsc` they belong to."""

    features: np.ndarray | None
    """(n, d) features to fit a flow on; None when :attr:`nll` is already known."""
    rows: np.ndarray
    """Positions among the HSC rows (a baseline file may lack some objects)."""
    nll: np.ndarray | None = None
    """-log p per row, when a flow fitted elsewhere scored them (:func:`read_baseline_scores`)."""
    dim: int = 0
    """The feature dimension (the figure's label), when there are no features here."""

    @property
    def n_features(self) -> int:
        return self.features.shape[1] if self.features is not None else self.dim


@dataclass(frozen=True)
class OutlierInputs:
    """Fig 3's inputs, checked: what :func:`score_outliers` and :func:`outlier_figure` read."""

    hsc: pd.DataFrame
    """The HSC rows of embeddings.parquet, with a fresh 0..n-1 index."""
    spaces: dict[str, OutlierSpace]
    """Ours (physics, instrument) then the baseline, named as :func:`read_baseline` names it."""
    labels: pd.DataFrame | None
    """:func:`hsc_truth` per HSC row, or None on real data."""
    raw: dict[str, tuple[str, int]]
    """object_id -> (raw shard, row) (:func:`raw_locations`), for the wide cutouts."""
    images: np.ndarray
    """images_hsc.npy, memory-mapped: the fallback cutouts."""


def load_outliers(
    embeddings: str | Path,
    baseline: str | Path | None,
    catalog: str | Path,
    meta: str | Path,
    images: str | Path,
    truth: str | Path | None,
    baseline_scores: str | Path | None = None,
) -> OutlierInputs:
    """Read and check Fig 3's inputs (``truth`` is None on real data). The baseline space comes
    from ``baseline_scores`` (:func:`run_baseline_outliers`' file) when given, else its flow is
    fitted here on ``baseline``'s features."""
    emb = read_embeddings(embeddings)
    hsc = emb[emb["survey"] == "hsc"].reset_index(drop=True)
    if len(hsc) < 2:
        raise ValueError(f"{embeddings}: {len(hsc)} HSC row(s); the outlier flow needs at least 2")
    spaces = {
        space: OutlierSpace(
            hsc[latent_columns(hsc, prefix, embeddings)].to_numpy(dtype=np.float32), np.arange(len(hsc))
        )
        for space, prefix in SPACES.items()
    }
    if baseline_scores is not None:
        name, space = read_baseline_scores(baseline_scores, hsc["object_id"].to_numpy())
        spaces[name] = space
    elif baseline is not None:
        name, feats, pos = read_baseline(baseline, hsc["object_id"].to_numpy())
        spaces[name] = OutlierSpace(feats, pos)
    else:
        raise ValueError("load_outliers needs a baseline: its embeddings file or its scores file")
    labels = hsc_truth(meta, truth, hsc["pair"].to_numpy()) if truth is not None else None
    raw = raw_locations(catalog)
    if not Path(images).exists():
        raise FileNotFoundError(f"{images}: file not found")
    preprocessed = np.load(images, mmap_mode="r")
    if len(preprocessed) <= int(hsc["pair"].max()):
        raise ValueError(f"{images}: {len(preprocessed)} rows, but the embeddings have pair {int(hsc['pair'].max())}")
    return OutlierInputs(hsc=hsc, spaces=spaces, labels=labels, raw=raw, images=preprocessed)


@dataclass(frozen=True)
class OutlierResult:
    """tables/outliers.csv and the truth metrics behind truth_outliers.csv."""

    table: pd.DataFrame
    """The top outliers per space (:data:`OUTLIER_COLUMNS`, plus ``class, pathology`` with truth)."""
    truth_rows: list[dict]
    """``metric, value, note`` rows of :func:`truth_precision_rows`; empty without truth."""
    dims: dict[str, int]
    """Space -> feature dimension."""
    scores: pd.DataFrame
    """Every scored object's -log p per space (:data:`SCORE_COLUMNS`)."""

    @property
    def metric(self) -> dict[str, float]:
        """The truth rows as ``{metric: value}``."""
        return {r["metric"]: r["value"] for r in self.truth_rows}


def score_outliers(inputs: OutlierInputs, outliers_cfg: dict, device: torch.device | str = "cpu") -> OutlierResult:
    """One flow per space; each space's ``outliers_cfg['top']`` least likely HSC objects and, with truth,
    the rare-class and pathology precision of every space's -log p."""
    top = int(outliers_cfg["top"])
    labels = inputs.labels
    frames, scores, nll_of, rare_of, patho_of, dims = [], [], {}, {}, {}, {}
    for space, sp in inputs.spaces.items():
        dims[space] = sp.n_features
        if sp.nll is not None:
            nll = sp.nll
            log.info(
                "outlier flow %s (%d-D): %d objects' -log p read, fitted once per dataset", space, dims[space], len(nll)
            )
        else:
            nll, info = outlier_scores(sp.features, outliers_cfg, device)
            _log_fit(space, dims[space], info, device)
        frames.append(_top_outliers(inputs, space, nll, sp.rows, top))
        scores.append(_object_scores(inputs, space, nll, sp.rows))
        if labels is not None:
            nll_of[space] = nll
            rare_of[space] = labels["rare"].to_numpy()[sp.rows]
            patho_of[space] = labels["pathological"].to_numpy()[sp.rows]
    truth_rows = truth_precision_rows(nll_of, rare_of, patho_of, top) if labels is not None else []
    return OutlierResult(
        table=pd.concat(frames, ignore_index=True),
        truth_rows=truth_rows,
        dims=dims,
        scores=pd.concat(scores, ignore_index=True),
    )


def _log_fit(space: str, dim: int, info: dict, device: torch.device | str) -> None:
    log.info(
        "outlier flow %s (%d-D): %d train / %d scored, best epoch %d (train NLL %.3f), %.1f s on %s",
        space,
        dim,
        info["n_train"],
        info["n_scored"],
        info["best_epoch"],
        info["best_train_nll"],
        info["seconds"],
        device,
    )


def _object_scores(inputs: OutlierInputs, space: str, nll: np.ndarray, rows: np.ndarray) -> pd.DataFrame:
    """One space's -log p of every object it scored, in the order of the HSC embedding rows."""
    return pd.DataFrame(
        {
            "space": space,
            "pair": inputs.hsc["pair"].to_numpy()[rows],
            "object_id": inputs.hsc["object_id"].to_numpy()[rows],
            "nll": nll.astype(np.float64),
        }
    )


def _top_outliers(inputs: OutlierInputs, space: str, nll: np.ndarray, rows: np.ndarray, top: int) -> pd.DataFrame:
    """One space's ``top`` least likely objects, most unlikely first (with their truth labels if known)."""
    order = np.argsort(-nll, kind="stable")[:top]
    sel = rows[order]
    frame = pd.DataFrame(
        {
            "space": space,
            "rank": np.arange(1, len(order) + 1),
            "pair": inputs.hsc["pair"].to_numpy()[sel],
            "object_id": inputs.hsc["object_id"].to_numpy()[sel],
            "nll": nll[order],
        }
    )
    if inputs.labels is not None:
        frame["class"] = inputs.labels["class"].to_numpy()[sel]
        frame["pathology"] = inputs.labels["pathology"].to_numpy()[sel]
    return frame


def write_outliers(
    result: OutlierResult, table: str | Path, truth_table: str | Path, scores: str | Path | None = None
) -> None:
    """tables/outliers.csv, truth_outliers.csv (empty, with its header, without truth) and, when given, the
    per-object ``scores`` (outlier_scores.parquet); the truth rows logged."""
    write_csv(result.table, table)
    if scores is not None:
        write_parquet(result.scores, scores)
    write_truth_table(result.truth_rows, truth_table)
    for r in result.truth_rows:
        log.info("truth %s = %.3f (%s)", r["metric"], r["value"], r["note"])


@dataclass(frozen=True)
class OutlierPanel:
    """One outlier's cutout in Fig 3."""

    rgb: np.ndarray
    text: str
    """Its rank and -log p, and with truth what it is."""
    flag: str | None
    """``pathology``, ``rare`` or None: the frame colour (:data:`whatsreal.plots.outliers.FLAG_COLOURS`)."""
    source: str
    """Which cutout is shown: the raw shard's or the preprocessed one, with its size."""


@dataclass(frozen=True)
class OutlierFigure:
    """Everything Fig 3 draws: one block of panels per space, in rank order."""

    panels: dict[str, list[OutlierPanel]]
    """Space label -> its outliers' panels."""
    subtitles: dict[str, str]
    """Space label -> its truth precision (with truth only)."""
    title: str


def _space_label(name: str, dim: int) -> str:
    labels = {
        "physics": "ours: physics",
        "instrument": "ours: instrument",
        "random_init": "random-init encoder",
        "aion": "AION-1",
    }
    return f"{labels.get(name, name)} ({dim}-D)"


def outlier_figure(inputs: OutlierInputs, result: OutlierResult, top: int) -> OutlierFigure:
    """Fig 3's content: every listed outlier's cutout (raw if its shard is readable), labelled by space."""
    has_truth = inputs.labels is not None
    table = result.table
    cutouts = outlier_cutouts(inputs.raw, inputs.images, table["object_id"].tolist(), table["pair"].tolist())
    panels: dict[str, list[OutlierPanel]] = {}
    for (_, row), (rgb, source) in zip(table.iterrows(), cutouts, strict=True):
        text = f"#{row['rank']}  -log p={row['nll']:.0f}"
        flag = None
        if has_truth:
            what = [c for c in (row["class"],) if c != "normal"] + [
                p for p in row["pathology"].split("+") if p != "none"
            ]
            text += "\n" + (", ".join(what) if what else "normal, clean")
            flag = "pathology" if row["pathology"] != "none" else "rare" if row["class"] in RARE_CLASSES else None
        label = _space_label(row["space"], result.dims[row["space"]])
        panels.setdefault(label, []).append(OutlierPanel(rgb=rgb, text=text, flag=flag, source=source))
    metric = result.metric
    subtitles = {}
    title = f"Fig 3: the {top} least likely HSC objects under a normalising flow per latent space"
    if has_truth:
        for space in inputs.spaces:
            subtitles[_space_label(space, result.dims[space])] = (
                f"top {top}: {metric[f'{space}_top{top}_rare']:.0%} merger/lens, "
                f"{metric[f'{space}_top{top}_pathology']:.0%} pathology"
            )
        title += (
            f" (base rates: {metric['base_rate_rare']:.1%} merger/lens, {metric['base_rate_pathology']:.1%} pathology)"
        )
    return OutlierFigure(panels=panels, subtitles=subtitles, title=title)


def run_outliers(
    outliers_cfg: dict,
    embeddings: str | Path,
    baseline: str | Path,
    catalog: str | Path,
    meta: str | Path,
    images: str | Path,
    truth: str | Path | None,
    figure: str | Path,
    table: str | Path,
    truth_table: str | Path,
    scores: str | Path | None = None,
    baseline_scores: str | Path | None = None,
) -> pd.DataFrame:
    """Fit one flow per space on the HSC embeddings, write Fig 3, tables/outliers.csv, the truth metrics
    and (when given) every object's score, which the methods comparison ranks beside the other methods'.

    ``outliers_cfg`` is ``experiments.outliers`` (the flow, its seed and ``top``). With
    ``baseline_scores`` (:func:`run_baseline_outliers`' file) the baseline space is read, not
    fitted, and ``baseline`` may be None.
    """
    from whatsreal.plots.outliers import plot_outliers

    device = compute_device()
    inputs = load_outliers(embeddings, baseline, catalog, meta, images, truth, baseline_scores)
    result = score_outliers(inputs, outliers_cfg, device)
    write_outliers(result, table, truth_table, scores)
    plot_outliers(outlier_figure(inputs, result, int(outliers_cfg["top"])), figure)
    return result.table
