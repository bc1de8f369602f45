"""Fig 7: the instrument encoder + decoder as a data-driven noise model.

SNR traversal: one bright, clean held-out galaxy's Legacy image feeds the
physics encoder and the decoder draws it as HSC once per percentile from the
same starting noise x0; only the instrument conditioning changes: the k HSC
images whose SNR is nearest the 5th ... 95th percentile of the HSC SNR
distribution. SNR of a cutout = mean over pixels of flux * sqrt(ivar) (flux /
flux error) over the central ``preprocess.crop.hsc`` pixels the model sees, bad
pixels left out, averaged over the model's bands; computed from the raw cutouts
(catalogue file/row). The claim is made measurable: the output's background
noise (robust std of adjacent-pixel differences farther than a third of the
stamp from the centre, averaged over bands, preprocessed units) should fall, and
its SNR proxy (central 4-pixel-radius mean above the background, over that
noise) rise, with the conditioning SNR: Spearman rho of both.

Artefact removal: an HSC image with a pathology (synthetic sky: the truth flags;
real data: the largest fraction of masked / ivar-0 / non-finite pixels in the
central crop) goes through the *physics* encoder and random clean HSC images (no
bad pixel in the central crop) through the instrument encoder, a combination
never seen in training. On the synthetic sky the input and the output are both
compared with the noiseless truth (MSE in preprocessed units).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from whatsreal.data.mmu import read_images
from whatsreal.data.preprocess import _band_positions, iter_rows_by_file, read_cutouts
from whatsreal.experiments.posterior import galaxy_noise, sample_posterior
from whatsreal.io import atomic_path
from whatsreal.plots.generative import plot_noise_model
from whatsreal.surveys import SURVEY_ORDER
from whatsreal.train.run import load_model

__all__ = ["NOISE_COLUMNS", "background_noise", "cutout_snr", "output_snr", "run_noise_model", "survey_snr"]

log = logging.getLogger(__name__)

NOISE_COLUMNS = ("kind", "percentile", "conditioning_snr", "output_snr", "pair", "object_id", "note")
PATHOLOGIES = ("saturated_star", "stripe", "high_noise")


def cutout_snr(
    image: np.ndarray, ivar: np.ndarray, crop: int, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(n, B, S, S) raw cutouts -> per object (SNR averaged over bands, fraction of bad pixels).

    Per band: mean over the central ``crop`` x ``crop`` valid pixels of flux * sqrt(ivar).
    Bad = non-finite, ivar <= 0, or (when given) False in the MMU mask (True = clean;
    (n, B, S, S) or one (n, S, S) mask for all bands)."""
    s = image.shape[-1]
    lo = max((s - crop) // 2, 0)
    x = image[..., lo : lo + crop, lo : lo + crop].astype(np.float64)
    w = ivar[..., lo : lo + crop, lo : lo + crop].astype(np.float64)
    good = np.isfinite(x) & np.isfinite(w) & (w > 0)
    if mask is not None:
        m = mask[..., lo : lo + crop, lo : lo + crop].astype(bool)
        good &= m if m.ndim == good.ndim else m[:, None]
    pix = np.where(good, x * np.sqrt(np.where(good, w, 0.0)), 0.0)
    per_band = pix.sum(axis=(-2, -1)) / np.maximum(good.sum(axis=(-2, -1)), 1)
    return per_band.mean(axis=1), 1.0 - good.mean(axis=(1, 2, 3))


def survey_snr(catalog: pd.DataFrame, survey: str, bands: list[str], crop: int, chunk: int = 256) -> pd.DataFrame:
    """SNR and bad-pixel fraction of every catalogue row given (columns object_id, file, row)."""
    missing = {"object_id", "file", "row"} - set(catalog.columns)
    if missing:
        raise KeyError(f"catalogue is missing column(s) {sorted(missing)}")
    files = catalog["file"].astype(str).to_numpy()
    rows = catalog["row"].to_numpy(dtype=np.int64)
    snr = np.empty(len(catalog))
    bad = np.empty(len(catalog))
    for path, shard_rows, positions in iter_rows_by_file(files, rows, chunk):
        idx = _band_positions(path, survey, bands)
        mask = None
        if path.endswith(".parquet"):  # the crossmatched shards carry no mask
            image, ivar = read_cutouts(path, shard_rows, survey)
        else:
            got = read_images(path, shard_rows, ("image_array", "image_ivar", "image_mask"))
            image, ivar, mask = got["image_array"], got["image_ivar"], got["image_mask"]
            if mask.ndim == image.ndim:
                mask = mask[:, idx]
        snr[positions], bad[positions] = cutout_snr(image[:, idx], ivar[:, idx], crop, mask)
    return pd.DataFrame({"object_id": catalog["object_id"].astype(str).to_numpy(), "snr": snr, "bad_fraction": bad})


def background_noise(image: np.ndarray) -> float:
    """Robust noise std of a (C, H, W) image, per band averaged over bands: 1.4826 x MAD / sqrt(2)
    of the differences of horizontally adjacent pixels beyond a third of the stamp from the
    centre. Differencing cancels the smooth light of the galaxy's wings and of neighbours,
    so the estimate follows the pixel noise, not the galaxy's size."""
    h, w = image.shape[-2:]
    yy, xx = np.mgrid[:h, :w]
    outer = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) > min(h, w) / 3
    both = outer[:, 1:] & outer[:, :-1]
    diff = (image[:, :, 1:] - image[:, :, :-1])[:, both]
    mad = np.median(np.abs(diff - np.median(diff, axis=1, keepdims=True)), axis=1)
    return float((1.4826 * mad / np.sqrt(2)).mean())


def output_snr(image: np.ndarray, radius: float = 4.0) -> float:
    """SNR proxy of a (C, H, W) image: central mean above the background median over the noise."""
    h, w = image.shape[-2:]
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    outer = r > min(h, w) / 3
    centre = image[:, r <= radius].mean(axis=1) - np.median(image[:, outer], axis=1)
    noise = background_noise(image)
    return float(centre.mean() / noise) if noise > 0 else float("inf")


def _pool(
    data_dir: Path, catalog: str | Path, truth: str | Path | None, cfg: dict, max_objects: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Paired HSC objects with their SNR, bad-pixel fraction, split and (synthetic) pathology flags.

    At most ``max_objects`` (a seeded random subset) are read from the raw cutouts."""
    meta = pd.read_parquet(data_dir / "meta_hsc.parquet")
    cols = ["pair", "split", "object_id"] + (["truth_id"] if "truth_id" in meta.columns else [])
    meta = meta[cols].copy()
    meta["object_id"] = meta["object_id"].astype(str)
    if len(meta) > max_objects:
        meta = meta.iloc[np.sort(rng.choice(len(meta), max_objects, replace=False))]
    cat = pd.read_parquet(catalog, columns=["object_id", "file", "row"])
    cat["object_id"] = cat["object_id"].astype(str)
    cat = cat.drop_duplicates("object_id").set_index("object_id")
    absent = ~meta["object_id"].isin(cat.index)
    if absent.any():
        raise KeyError(f"{catalog}: {int(absent.sum())} HSC object ids of meta_hsc.parquet are not in the catalogue")
    rows = cat.loc[meta["object_id"]].reset_index()
    pcfg = cfg["preprocess"]
    snr = survey_snr(rows, "hsc", list(pcfg["bands"]), int(pcfg["crop"]["hsc"]))
    pool = meta.reset_index(drop=True).assign(snr=snr["snr"].to_numpy(), bad_fraction=snr["bad_fraction"].to_numpy())
    pool["pathology"] = ""
    if truth is not None and "truth_id" in pool.columns:
        t = pd.read_parquet(truth, columns=["truth_id", *[f"{s}_{p}" for s in SURVEY_ORDER for p in PATHOLOGIES]])
        t = t.set_index("truth_id")
        tid = pool["truth_id"].astype("Int64")
        for p in PATHOLOGIES:
            flag = t[f"hsc_{p}"].reindex(tid.fillna(-1).astype(int)).fillna(False).to_numpy(dtype=bool)
            pool.loc[flag & (pool["pathology"] == ""), "pathology"] = p
        legacy_bad = np.zeros(len(pool), dtype=bool)
        for p in PATHOLOGIES:
            legacy_bad |= t[f"legacysurvey_{p}"].reindex(tid.fillna(-1).astype(int)).fillna(False).to_numpy(dtype=bool)
        pool["legacy_pathology"] = legacy_bad
    else:
        pool["legacy_pathology"] = False
    return pool


def _choose_target(pool: pd.DataFrame, legacy: np.ndarray, quantile: float = 0.9) -> int:
    """Row of ``pool``: a bright, clean held-out galaxy, deterministically: the one whose
    central Legacy brightness is nearest the ``quantile`` of the candidates (bright enough
    to show structure, not the single largest object in the sample)."""
    cand = pool[(pool["pathology"] == "") & ~pool["legacy_pathology"] & (pool["bad_fraction"] == 0)]
    val = cand[cand["split"] == "val"]
    cand = val if len(val) else cand
    if cand.empty:
        raise ValueError("no clean paired HSC object to reconstruct in the SNR traversal")
    h, w = legacy.shape[-2:]
    centre = np.array([legacy[p][:, h // 2 - 4 : h // 2 + 4, w // 2 - 4 : w // 2 + 4].mean() for p in cand["pair"]])
    return int(cand.index[int(np.argmin(np.abs(centre - np.quantile(centre, quantile))))])


def _choose_artifacts(pool: pd.DataFrame, n: int, synthetic: bool, rng: np.random.Generator) -> list[int]:
    """Rows of ``pool`` with a pathology: one per kind in turn (synthetic), else the most masked."""
    if synthetic:
        by_kind = {p: list(pool.index[pool["pathology"] == p]) for p in PATHOLOGIES}
        for rows in by_kind.values():
            val_first = sorted(rows, key=lambda r: (pool.at[r, "split"] != "val", r))
            rows[:] = val_first
        picked: list[int] = []
        while len(picked) < n and any(by_kind.values()):
            for p in PATHOLOGIES:
                if by_kind[p] and len(picked) < n:
                    picked.append(by_kind[p].pop(0))
        return picked
    bad = pool[pool["bad_fraction"] > 0].sort_values("bad_fraction", ascending=False, kind="stable")
    return list(bad.index[:n])


def _batch(physics: np.ndarray, instrument: np.ndarray, pairs: np.ndarray) -> dict[str, torch.Tensor]:
    """A TripletDataset-style batch: physics (B, C, H, W) -> one view each, instrument (B, k, C, H, W)."""
    b = len(physics)
    return {
        "target": torch.zeros((b, *physics.shape[1:])),
        "physics": torch.from_numpy(np.ascontiguousarray(physics[:, None], dtype=np.float32)),
        "physics_mask": torch.ones((b, 1), dtype=torch.bool),
        "instrument": torch.from_numpy(np.ascontiguousarray(instrument, dtype=np.float32)),
        "instrument_mask": torch.ones(instrument.shape[:2], dtype=torch.bool),
        "pair": torch.from_numpy(np.array(pairs, dtype=np.int64)),
    }


def run_noise_model(
    cfg: dict,
    model: str | Path,
    data_dir: str | Path,
    catalog: str | Path,
    truth: str | Path | None,
    figure: str | Path,
    table: str | Path,
    max_objects: int = 4096,
) -> pd.DataFrame:
    """Fig 7 and tables/noise_model.csv. ``max_objects`` caps how many raw HSC cutouts are
    read for the SNR distribution (a seeded random subset of the paired objects)."""
    data_dir = Path(data_dir)
    ncfg = cfg["experiments"]["noise_model"]
    seed = int(ncfg["seed"])
    rng = np.random.default_rng(seed)
    scfg = cfg["sample"]
    module, saved = load_model(model)
    net = module.model.eval()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net.to(device)
    k = int(saved["neighbours"]["k"])
    hsc = np.load(data_dir / "images_hsc.npy", mmap_mode="r")
    legacy = np.load(data_dir / "images_legacysurvey.npy", mmap_mode="r")
    synthetic = truth is not None
    pool = _pool(data_dir, catalog, truth, cfg, max_objects, rng)
    clean = pool[(pool["pathology"] == "") & (pool["bad_fraction"] == 0)]
    if len(clean) < k + 1:
        raise ValueError(f"only {len(clean)} clean HSC cutouts; need at least {k + 1} for the conditioning sets")
    shape = hsc.shape[1:]

    # SNR traversal.
    t_row = _choose_target(pool, legacy)
    t_pair, t_id = int(pool.at[t_row, "pair"]), str(pool.at[t_row, "object_id"])
    cond_pool = clean[clean["pair"] != t_pair]
    percentiles = [float(p) for p in ncfg["percentiles"]]
    snr_all = pool["snr"].to_numpy()
    cond_sets, cond_snr = [], []
    for p in percentiles:
        level = np.percentile(snr_all, p)
        nearest = np.argsort(np.abs(cond_pool["snr"].to_numpy() - level), kind="stable")[:k]
        chosen = cond_pool.iloc[nearest]
        cond_sets.append(np.stack([hsc[q] for q in chosen["pair"]]))
        cond_snr.append(float(chosen["snr"].mean()))
    conditioning = np.stack(cond_sets)
    n_lev = len(percentiles)
    physics = np.repeat(np.asarray(legacy[t_pair])[None], n_lev, axis=0)
    x0 = galaxy_noise(seed, t_pair, 1, shape).repeat(n_lev, 1, 1, 1)
    outputs = sample_posterior(
        net,
        _batch(physics, conditioning, np.full(n_lev, t_pair)),
        1,
        int(scfg["steps"]),
        scfg["method"],
        seed,
        device,
        x0=x0,
    )[:, 0]
    noise = np.array([background_noise(o) for o in outputs])
    osnr = np.array([output_snr(o) for o in outputs])
    rho_snr = float(spearmanr(cond_snr, osnr).statistic) if n_lev > 1 else float("nan")
    rho_noise = float(spearmanr(cond_snr, noise).statistic) if n_lev > 1 else float("nan")
    truth_img = np.asarray(hsc[t_pair])
    log.info(
        "SNR traversal of pair %d (HSC %s): conditioning SNR %s -> output noise %s, output SNR %s; Spearman rho "
        "(conditioning SNR, output SNR) %.2f, (conditioning SNR, output noise) %.2f; real HSC image noise %.4f",
        t_pair,
        t_id,
        np.round(cond_snr, 3).tolist(),
        np.round(noise, 4).tolist(),
        np.round(osnr, 2).tolist(),
        rho_snr,
        rho_noise,
        background_noise(truth_img),
    )
    summary = (
        f"Spearman rho(conditioning SNR, output SNR) = {rho_snr:.2f}, rho(conditioning SNR, output noise) = "
        f"{rho_noise:.2f} over {n_lev} levels"
    )
    rows = [
        {
            "kind": "snr_traversal",
            "percentile": p,
            "conditioning_snr": s,
            "output_snr": o,
            "pair": t_pair,
            "object_id": t_id,
            "note": f"output noise {n:.4f} (preprocessed units); {summary}",
        }
        for p, s, o, n in zip(percentiles, cond_snr, osnr, noise, strict=True)
    ]
    rows.append(
        {
            "kind": "snr_traversal",
            "percentile": float("nan"),
            "conditioning_snr": float(pool.at[t_row, "snr"]),
            "output_snr": output_snr(truth_img),
            "pair": t_pair,
            "object_id": t_id,
            "note": "reference: the real HSC image of this galaxy (its own SNR); "
            f"noise {background_noise(truth_img):.4f}",
        }
    )

    # Artefact removal.
    art_rows = _choose_artifacts(pool, int(ncfg["n_artifacts"]), synthetic, rng)
    artifacts = []
    if not art_rows:
        log.warning("no HSC cutout with a pathology found; the artefact-removal panel is empty")
    else:
        pairs = pool.loc[art_rows, "pair"].to_numpy(dtype=np.int64)
        inputs = np.stack([hsc[p] for p in pairs])
        views, view_snr = [], []
        for p in pairs:
            others = clean[clean["pair"] != p]
            chosen = others.iloc[np.sort(rng.choice(len(others), k, replace=False))]
            views.append(np.stack([hsc[q] for q in chosen["pair"]]))
            view_snr.append(float(chosen["snr"].mean()))
        views = np.stack(views)
        recon = sample_posterior(
            net, _batch(inputs, views, pairs), 1, int(scfg["steps"]), scfg["method"], seed, device
        )[:, 0]
        noiseless = _noiseless_hsc(cfg, data_dir, pool.loc[art_rows], truth) if synthetic else None
        for j, r in enumerate(art_rows):
            label = pool.at[r, "pathology"] or f"{pool.at[r, 'bad_fraction']:.1%} bad pixels"
            note = f"pathology: {label}; split {pool.at[r, 'split']}"
            clean_j = None
            if noiseless is not None:
                clean_j = noiseless[j]
                mse_in = float(((inputs[j] - clean_j) ** 2).mean())
                mse_out = float(((recon[j] - clean_j) ** 2).mean())
                note += f"; MSE vs noiseless truth: input {mse_in:.4f}, reconstruction {mse_out:.4f}"
            log.info("artefact removal, pair %d: %s", pairs[j], note)
            rows.append(
                {
                    "kind": "artifact_removal",
                    "percentile": float("nan"),
                    "conditioning_snr": view_snr[j],
                    "output_snr": output_snr(recon[j]),
                    "pair": int(pairs[j]),
                    "object_id": str(pool.at[r, "object_id"]),
                    "note": note,
                }
            )
            artifacts.append(
                {
                    "input": inputs[j],
                    "output": recon[j],
                    "instrument": views[j],
                    "clean": clean_j,
                    "label": label,
                    "pair": int(pairs[j]),
                }
            )

    df = pd.DataFrame(rows, columns=list(NOISE_COLUMNS))
    with atomic_path(table, ".csv") as tmp:
        df.to_csv(tmp, index=False)
    traversal = {
        "physics": physics[0],
        "truth": truth_img,
        "truth_noise": background_noise(truth_img),
        "outputs": outputs,
        "conditioning": conditioning,
        "percentiles": percentiles,
        "conditioning_snr": cond_snr,
        "output_noise": noise,
        "rho": rho_noise,
        "label": f"pair {t_pair}",
    }
    plot_noise_model(traversal, artifacts, list(cfg["preprocess"]["bands"]), figure)
    return df


def _noiseless_hsc(cfg: dict, data_dir: Path, rows: pd.DataFrame, truth: str | Path) -> np.ndarray:
    """The noiseless HSC truth of ``rows`` (pool rows), preprocessed like the data."""
    from whatsreal.experiments.truth_images import noiseless_targets

    truth_df = pd.read_parquet(truth)
    tids = rows["truth_id"].to_numpy() if "truth_id" in rows.columns else np.full(len(rows), pd.NA)
    return noiseless_targets(cfg, "hsc", rows["object_id"].to_numpy(), tids, truth_df, data_dir / "meta_hsc.parquet")
