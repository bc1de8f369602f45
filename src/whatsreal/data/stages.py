"""The data stages as the workflow runs them: read inputs, call the logic, write outputs atomically.

Each function is one Snakemake rule's body, so it can be run and tested without Snakemake.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from whatsreal.data.catalog import build_catalog
from whatsreal.data.crossmatch import crossmatch
from whatsreal.data.crossmatched import read_crossmatched_catalogs
from whatsreal.data.groups import group_catalogues, groups_from_pairs
from whatsreal.data.neighbours import count_histogram, random_neighbours, spatial_neighbours
from whatsreal.data.preprocess import blank_band_labels, log_blank_cutouts, preprocess_survey
from whatsreal.data.provabgs import match_to_pairs, read_provabgs
from whatsreal.data.split import make_split
from whatsreal.io import read_table, write_npz, write_parquet
from whatsreal.surveys import SURVEY_ORDER, SURVEYS, Survey

__all__ = [
    "read_normalisation",
    "run_catalog",
    "run_crossmatch",
    "run_crossmatched_catalogs",
    "run_groups",
    "run_groups_from_pairs",
    "run_neighbours",
    "run_preprocess",
    "run_provabgs_targets",
    "run_split",
]

log = logging.getLogger(__name__)


def _to_arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Bytes columns (Legacy ids, brick names) become str so parquet stores them as text."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object and len(out) and isinstance(out[c].iloc[0], bytes):
            out[c] = out[c].str.decode("utf-8")
    return out


def run_catalog(
    root: str | Path, survey: str, preprocess_cfg: dict, out: str | Path, registry: Mapping[str, Survey] = SURVEYS
) -> pd.DataFrame:
    """``catalog_<survey>.parquet`` from one survey's MMU shards (``preprocess_cfg``: the crop and
    bands every cutout must allow; ``registry``: the config's survey registry, whose bands the files
    must hold)."""
    cat = _to_arrow_safe(build_catalog(root, survey, preprocess_cfg, registry))
    write_parquet(cat, out)
    log.info("%s: %d objects in %d shards under %s", survey, len(cat), cat["file"].nunique(), root)
    return cat


def run_crossmatched_catalogs(path: str | Path, outputs: dict[str, str | Path], pairs_out: str | Path) -> pd.DataFrame:
    """Source ``crossmatched_parquet``: catalogues and pairs straight from the pre-matched shards."""
    cats, pairs = read_crossmatched_catalogs(path, SURVEY_ORDER)
    for s in SURVEY_ORDER:
        write_parquet(_to_arrow_safe(cats[s]), outputs[s])
    write_parquet(_to_arrow_safe(pairs), pairs_out)
    log.info("crossmatched parquet %s: %d pairs in %d shards", path, len(pairs), cats["hsc"]["file"].nunique())
    return pairs


def run_crossmatch(catalogs: dict[str, str | Path], radius_arcsec: float, out: str | Path) -> pd.DataFrame:
    """The pairs: mutual nearest neighbours of the two catalogues within ``crossmatch.radius_arcsec``."""
    cats = {s: pd.read_parquet(catalogs[s], columns=["object_id", "ra", "dec"]) for s in SURVEY_ORDER}
    pairs = crossmatch(cats["hsc"], cats["legacysurvey"], radius_arcsec, SURVEY_ORDER)
    write_parquet(pairs, out)
    return pairs


def run_groups(catalogs: dict[str, str | Path], radius_arcsec: float, out: str | Path) -> pd.DataFrame:
    """``groups.parquet``: every survey's catalogue merged by N-way matching (:mod:`whatsreal.data.groups`),
    pairwise mutual matches within ``crossmatch.radius_arcsec``; conflicts are logged."""
    cats = {s: read_table(path, ["object_id", "ra", "dec"]) for s, path in catalogs.items()}
    groups = group_catalogues(cats, radius_arcsec).groups
    write_parquet(groups, out)
    return groups


def run_groups_from_pairs(pairs_path: str | Path, out: str | Path) -> pd.DataFrame:
    """``groups.parquet`` of a pre-matched source (``crossmatched_parquet``): the pairs as two-survey groups."""
    columns = [f"{s}_{c}" for s in SURVEY_ORDER for c in ("row", "object_id")] + ["ra", "dec", "sep_arcsec"]
    pairs = read_table(pairs_path, columns)
    groups = groups_from_pairs(pairs, SURVEY_ORDER)
    write_parquet(groups, out)
    log.info("groups: %d two-survey groups from %s", len(groups), pairs_path)
    return groups


def run_provabgs_targets(
    root: str | Path, pairs_path: str | Path, legacy_catalog: str | Path, radius_arcsec: float, out: str | Path
) -> pd.DataFrame:
    """``provabgs.parquet``: each pair's PROVABGS spectroscopic targets (NaN where DESI took no spectrum).

    Matched at the pair's Legacy Survey position: DESI targets were selected from
    Legacy Surveys imaging, so their RA/Dec are the Legacy catalogue's, and the
    HSC-Legacy offset never eats into the ``crossmatch.radius_arcsec`` budget.
    """
    rows = pd.read_parquet(pairs_path, columns=["legacysurvey_row"])["legacysurvey_row"].to_numpy()
    cat = pd.read_parquet(legacy_catalog, columns=["ra", "dec"])
    if len(rows) and rows.max() >= len(cat):
        raise ValueError(f"{pairs_path}: legacysurvey_row {rows.max()} beyond the {len(cat)} rows of {legacy_catalog}")
    table = match_to_pairs(cat["ra"].to_numpy()[rows], cat["dec"].to_numpy()[rows], read_provabgs(root), radius_arcsec)
    write_parquet(table, out)
    return table


def run_split(pairs_path: str | Path, split_cfg: dict, out: str | Path) -> pd.DataFrame:
    """The seeded train/val split by pair (``split_cfg``: ``split.val_fraction``, ``split.seed``)."""
    n = len(pd.read_parquet(pairs_path, columns=["sep_arcsec"]))
    split = make_split(n, split_cfg["val_fraction"], split_cfg["seed"])
    write_parquet(split, out)
    log.info("split: %d train, %d val pairs", (split["split"] == "train").sum(), (split["split"] == "val").sum())
    return split


def run_nway_rows(
    groups_path: str | Path,
    pairs_path: str | Path,
    split_path: str | Path,
    split_cfg: dict,
    out_rows: str | Path,
    out_split: str | Path,
) -> pd.DataFrame:
    """The N-way training rows (``nway/pairs.parquet``) and their split (``nway/split.parquet``).

    The rows are the galaxies of ``groups.parquet`` seen by two or more surveys, with their
    ``{survey}_row`` (-1 where unseen). A galaxy whose HSC and Legacy objects form a pair of
    ``pairs.parquet`` keeps that pair's split, so a galaxy held out of the two-survey
    experiments is held out of N-way training too; the others are split afresh with
    ``split.val_fraction`` (seed ``split.seed`` + 1).
    """
    groups = read_table(groups_path, ["n_surveys", "hsc_row", "legacysurvey_row"])
    rows = groups[groups["n_surveys"] >= 2].reset_index(drop=True)
    if len(rows) < 2:
        raise ValueError(f"{groups_path}: {len(rows)} galaxies seen by two or more surveys; at least 2 are needed")
    pairs = read_table(pairs_path, ["hsc_row", "legacysurvey_row"])[["hsc_row", "legacysurvey_row"]]
    pair_split = read_table(split_path, ["split"])["split"].to_numpy()
    keys = ["hsc_row", "legacysurvey_row"]
    pair = rows[keys].merge(pairs.assign(pair=np.arange(len(pairs))), on=keys, how="left")["pair"].to_numpy(float)
    fresh = make_split(len(rows), split_cfg["val_fraction"], split_cfg["seed"] + 1)["split"].to_numpy()
    split = np.where(np.isfinite(pair), pair_split[np.nan_to_num(pair, nan=0).astype(np.int64)], fresh)
    out = pd.DataFrame({"pair": np.arange(len(rows), dtype=np.int64), "split": split})
    write_parquet(rows, out_rows)
    write_parquet(out, out_split)
    log.info(
        "N-way rows: %d galaxies seen by 2+ surveys (%d as a pair of pairs.parquet); %d train, %d val",
        len(rows),
        int(np.isfinite(pair).sum()),
        int((split == "train").sum()),
        int((split == "val").sum()),
    )
    return rows


def run_preprocess(
    survey: str,
    catalog_path: str | Path,
    pairs_path: str | Path,
    split_path: str | Path,
    preprocess_cfg: dict,
    out_npy: str | Path,
    out_meta: str | Path,
    truth_path: str | Path | None = None,
    workers: int = 1,
    zero_point: float | None = None,
) -> dict[str, float]:
    """Preprocess one survey's cutouts of every pair into ``out_npy`` and write ``out_meta``.

    ``out_meta`` is one row per pair: the catalogue row, the split, the truth id on the
    synthetic sky, and ``blank_bands`` (the bands with no valid pixel inside the crop, ""
    when fine) and ``blank_dropped`` (blank and ``preprocess.blank_cutouts`` is ``drop``:
    the pair is left out, see :func:`whatsreal.data.usable.usable_pairs`).

    N-way rows (``nway/pairs.parquet``, :func:`run_nway_rows`) hold -1 where this survey did not
    see the galaxy: its image row stays zeros and ``out_meta`` gets ``seen`` (False there, with
    an empty ``object_id``), which the triplet loader masks. ``zero_point``: the survey's
    registry zero point (default: the paired surveys').
    """
    catalog = pd.read_parquet(catalog_path)
    pairs = pd.read_parquet(pairs_path)
    split = pd.read_parquet(split_path)
    if len(split) != len(pairs):
        raise ValueError(f"{split_path}: {len(split)} rows but {pairs_path} has {len(pairs)} pairs")
    rows = pairs[f"{survey}_row"].to_numpy()
    train = (split["split"] == "train").to_numpy()
    info = preprocess_survey(survey, catalog, rows, train, preprocess_cfg, out_npy, workers, zero_point)
    seen = rows >= 0
    meta = catalog.iloc[np.where(seen, rows, 0)].drop(columns=["file", "row"]).reset_index(drop=True)
    if not seen.all():
        meta = meta[["object_id", "ra", "dec"]].copy()
        meta["object_id"] = np.where(seen, meta["object_id"].astype(str), "")
        meta.loc[~seen, ["ra", "dec"]] = np.nan
    meta.insert(0, "pair", np.arange(len(pairs), dtype=np.int64))
    meta.insert(1, "split", split["split"].to_numpy())
    if not seen.all():
        meta.insert(2, "seen", seen)
    if truth_path is not None:  # synthetic sky: link each object to its truth row
        truth = pd.read_parquet(truth_path, columns=["truth_id", f"{survey}_object_id"])
        key = truth.dropna().astype({f"{survey}_object_id": str}).set_index(f"{survey}_object_id")["truth_id"]
        meta.insert(2, "truth_id", meta["object_id"].astype(str).map(key).astype("Int64"))
    labels = blank_band_labels(info.pop("blank"), preprocess_cfg["bands"])
    meta["blank_bands"] = labels.astype(str)
    meta["blank_dropped"] = (labels != "") & (preprocess_cfg["blank_cutouts"] == "drop")
    info["blank_cutouts"] = log_blank_cutouts(
        survey,
        meta["object_id"].to_numpy(),
        labels,
        preprocess_cfg["blank_cutouts"],
        int(preprocess_cfg["crop"][survey]),
    )
    norm = {k: info[k] for k in ("norm_mean", "norm_std", "bad_pixels", "blank_cutouts")}
    write_parquet(meta, out_meta, metadata={"whatsreal_normalisation": json.dumps(norm)})
    return info


def read_normalisation(meta_path: str | Path) -> dict[str, float]:
    """The standardisation (mean, std) fitted by preprocessing, from a survey's metadata file
    (``DatasetLayout.meta``)."""
    import pyarrow.parquet as pq

    md = pq.read_schema(meta_path).metadata or {}
    if b"whatsreal_normalisation" not in md:
        raise KeyError(f"{meta_path}: no whatsreal_normalisation metadata (not written by preprocess?)")
    return json.loads(md[b"whatsreal_normalisation"])


def run_neighbours(
    survey: str,
    pairs_path: str | Path,
    catalog_path: str | Path,
    neighbours_cfg: dict,
    mode: str,
    out: str | Path,
    spatial_path: str | Path | None = None,
) -> np.ndarray:
    """Neighbour graph over the paired objects of ``survey`` (indices are pair/image rows).

    N-way rows of -1 (galaxies this survey did not see) have no neighbours and are nobody's."""
    pairs = pd.read_parquet(pairs_path, columns=[f"{survey}_row"])
    cat = pd.read_parquet(catalog_path, columns=["ra", "dec"])
    all_rows = pairs[f"{survey}_row"].to_numpy()
    seen = np.flatnonzero(all_rows >= 0)
    rows = all_rows[seen]
    ra, dec = cat["ra"].to_numpy()[rows], cat["dec"].to_numpy()[rows]
    if mode == "spatial":
        index, sep = spatial_neighbours(ra, dec, neighbours_cfg["k"], neighbours_cfg["radius_arcmin"])
    elif mode == "random":
        if spatial_path is None:
            raise ValueError("random neighbours need the spatial graph's per-object counts")
        counts = (np.load(spatial_path)["index"] >= 0).sum(axis=1)[seen]
        stream = SURVEY_ORDER.index(survey) if survey in SURVEY_ORDER else zlib.crc32(survey.encode())
        rng = np.random.default_rng([neighbours_cfg["random_seed"], stream])
        index, sep = random_neighbours(ra, dec, counts, neighbours_cfg["k"], rng)
    else:
        raise ValueError(f"unknown neighbour mode '{mode}' (spatial or random)")
    hist = count_histogram(index)  # over the objects this survey saw
    if seen.size < all_rows.size:  # back to N-way rows
        full = np.full((all_rows.size, index.shape[1]), -1, dtype=index.dtype)
        full[seen] = np.where(index >= 0, seen[np.maximum(index, 0)], -1)
        full_sep = np.full((all_rows.size, sep.shape[1]), np.nan, dtype=sep.dtype)
        full_sep[seen] = sep
        index, sep = full, full_sep
    write_npz(out, index=index, sep_arcmin=sep)
    log.info(
        "%s %s neighbours: objects with 0..%d neighbours: %s; median separation %.2f'",
        survey,
        mode,
        neighbours_cfg["k"],
        hist,
        float(np.nanmedian(sep)) if np.isfinite(sep).any() else float("nan"),
    )
    return index
