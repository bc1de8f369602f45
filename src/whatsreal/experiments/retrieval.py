"""Fig 5: L2 nearest-neighbour retrieval in physics space and in instrument space.

If physics and instrument are disentangled, a galaxy's nearest physics neighbour
should be its own view in the other survey, whichever survey asked, and its
physics neighbours should come from both surveys; in instrument space the
neighbours should come from the query's own survey (similar observing
conditions) and the counterpart should be nowhere near. Rare objects should
cluster in physics space: the neighbours of a known strong lens should be
enriched in lenses over the base rate.

Numbers are measured over the held-out pairs (``split == val``), each pair
queried once from its HSC and once from its Legacy embedding, against the whole
table (both surveys, all splits) minus the query row itself.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from whatsreal.experiments.embeddings import SPACES, latent_columns, read_embeddings
from whatsreal.experiments.metrics import neighbours_excluding
from whatsreal.io import read_table, write_csv
from whatsreal.surveys import SURVEY_ORDER

__all__ = [
    "RETRIEVAL_COLUMNS",
    "counterpart_rows",
    "lens_neighbour_fraction",
    "lens_pairs",
    "retrieval_metrics",
    "run_retrieval",
]

log = logging.getLogger(__name__)

RETRIEVAL_COLUMNS = ("metric", "value", "note")


def counterpart_rows(emb: pd.DataFrame) -> np.ndarray:
    """Per embeddings row: the row of the same pair in the other survey (-1 if there is none)."""
    key = pd.Series(np.arange(len(emb)), index=pd.MultiIndex.from_arrays([emb["survey"], emb["pair"]]))
    other = emb["survey"].map({SURVEY_ORDER[0]: SURVEY_ORDER[1], SURVEY_ORDER[1]: SURVEY_ORDER[0]})
    found = key.reindex(pd.MultiIndex.from_arrays([other, emb["pair"]]))
    return found.fillna(-1).to_numpy(dtype=np.int64)


def retrieval_metrics(x: np.ndarray, emb: pd.DataFrame, queries: np.ndarray, k: int) -> dict[str, float]:
    """Top-1 / top-k counterpart rates and the other-survey share of the top k, for ``queries`` (row indices)."""
    partner = counterpart_rows(emb)
    nbrs = neighbours_excluding(x, queries, k)
    hit = nbrs == partner[queries][:, None]
    survey = emb["survey"].to_numpy()
    other = survey[nbrs] != survey[queries][:, None]
    out = {
        "top1": float(hit[:, 0].mean()),
        "topk": float(hit.any(axis=1).mean()),
        "other_survey": float(other.mean()),
    }
    for s in SURVEY_ORDER:
        from_s = survey[queries] == s
        out[f"top1_{s}"] = float(hit[from_s, 0].mean()) if from_s.any() else float("nan")
    return out


def lens_pairs(lenses: str | Path, meta_hsc: str | Path, radius_arcsec: float) -> np.ndarray:
    """HSC pairs that are known lenses.

    Synthetic sky: ``lenses`` is truth.parquet and a lens is ``galaxy_class ==
    'lens'``, joined through meta_hsc's ``truth_id``. Real data: ``lenses`` is the
    aux catalogue (``ra, dec`` in degrees), matched to the HSC positions within
    ``radius_arcsec``.
    """
    lenses = Path(lenses)
    if not lenses.exists():
        raise FileNotFoundError(f"{lenses}: file not found")
    table = pd.read_parquet(lenses) if lenses.suffix == ".parquet" else pd.read_csv(lenses)
    if "galaxy_class" in table.columns:
        meta = read_table(meta_hsc, ["pair", "truth_id"])
        if "truth_id" not in table.columns:
            raise ValueError(f"{lenses}: missing column(s) truth_id")
        lens_ids = table.loc[table["galaxy_class"].astype(str) == "lens", "truth_id"].to_numpy()
        return np.sort(meta.loc[meta["truth_id"].isin(lens_ids), "pair"].to_numpy(dtype=np.int64))
    missing = [c for c in ("ra", "dec") if c not in table.columns]
    if missing:
        raise ValueError(f"{lenses}: missing column(s) {', '.join(missing)} (a lens catalogue needs ra, dec in deg)")
    meta = read_table(meta_hsc, ["pair", "ra", "dec"])
    if table.empty or meta.empty:
        return np.empty(0, dtype=np.int64)
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    lens_pos = SkyCoord(table["ra"].to_numpy(float) * u.deg, table["dec"].to_numpy(float) * u.deg)
    hsc_pos = SkyCoord(meta["ra"].to_numpy(float) * u.deg, meta["dec"].to_numpy(float) * u.deg)
    idx, sep, _ = lens_pos.match_to_catalog_sky(hsc_pos)
    close = sep.arcsec < radius_arcsec
    return np.unique(meta["pair"].to_numpy(dtype=np.int64)[idx[close]])


def lens_neighbour_fraction(x_hsc: np.ndarray, is_lens: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """For every lens row of ``x_hsc``: its ``n`` nearest other HSC rows and the fraction of lenses among them."""
    queries = np.flatnonzero(is_lens)
    if queries.size == 0 or len(x_hsc) < 2:
        return np.empty((0, n), dtype=np.int64), np.empty(0)
    nbrs = neighbours_excluding(x_hsc, queries, n)
    return nbrs, is_lens[nbrs].mean(axis=1)


def _images(data_dir: Path) -> dict[str, np.ndarray]:
    out = {}
    for s in SURVEY_ORDER:
        path = data_dir / f"images_{s}.npy"
        if not path.exists():
            raise FileNotFoundError(f"{path}: file not found (images of the retrieval figure)")
        out[s] = np.load(path, mmap_mode="r")
    return out


def run_retrieval(
    cfg: dict,
    embeddings: str | Path,
    data_dir: str | Path,
    lenses: str | Path | None,
    figure: str | Path,
    table: str | Path,
) -> pd.DataFrame:
    """Write Fig 5 and tables/retrieval.csv (``metric, value, note``)."""
    from whatsreal.plots.retrieval import plot_retrieval

    rcfg = cfg["experiments"]["retrieval"]
    k, n_show, seed = int(rcfg["k"]), int(rcfg["n_show"]), int(rcfg["seed"])
    data_dir = Path(data_dir)
    emb = read_embeddings(embeddings)
    if "split" not in emb.columns:
        raise ValueError(f"{embeddings}: missing column(s) split")
    emb = emb.reset_index(drop=True)
    queries = np.flatnonzero((emb["split"].astype(str) == "val").to_numpy() & (counterpart_rows(emb) >= 0))
    if queries.size == 0:
        raise ValueError(f"{embeddings}: no held-out (split == 'val') row with a counterpart to query")
    n = len(emb)
    survey = emb["survey"].to_numpy()
    x = {s: emb[latent_columns(emb, p, embeddings)].to_numpy(dtype=np.float32) for s, p in SPACES.items()}
    rows: list[dict] = []
    t0 = time.perf_counter()
    for space in SPACES:
        m = retrieval_metrics(x[space], emb, queries, k)
        what = f"{len(queries)} held-out queries (HSC and Legacy) against {n - 1} rows, {space} space"
        rows += [
            {
                "metric": f"{space}_top1_counterpart",
                "value": m["top1"],
                "note": f"other-survey view is the nearest neighbour; {what}",
            },
            {
                "metric": f"{space}_top{k}_counterpart",
                "value": m["topk"],
                "note": f"other-survey view among the {k} nearest; {what}",
            },
            {
                "metric": f"{space}_top{k}_other_survey",
                "value": m["other_survey"],
                "note": f"share of the {k} nearest from the other survey; {what}",
            },
        ]
        rows += [
            {
                "metric": f"{space}_top1_counterpart_{s}_query",
                "value": m[f"top1_{s}"],
                "note": f"top-1 counterpart rate for {s} queries only",
            }
            for s in SURVEY_ORDER
        ]
        log.info(
            "retrieval %s: top-1 %.3f, top-%d %.3f, other survey in top-%d %.3f",
            space,
            m["top1"],
            k,
            m["topk"],
            k,
            m["other_survey"],
        )
    counts = pd.Series(survey).value_counts()
    other_share = float(np.mean((n - counts.reindex(survey[queries]).to_numpy()) / (n - 1)))
    rows += [
        {"metric": "chance_top1_counterpart", "value": 1.0 / (n - 1), "note": "a random neighbour is the counterpart"},
        {
            "metric": f"chance_top{k}_counterpart",
            "value": min(k, n - 1) / (n - 1),
            "note": f"the counterpart among {k} random rows",
        },
        {
            "metric": f"chance_top{k}_other_survey",
            "value": other_share,
            "note": "share of other-survey rows in the table (random neighbours)",
        },
    ]

    # Rare-object query: known lenses, searched among HSC images in physics space.
    hsc_rows = np.flatnonzero(survey == "hsc")
    hsc_pairs = emb["pair"].to_numpy()[hsc_rows]
    lens_set = (
        lens_pairs(lenses, data_dir / "meta_hsc.parquet", float(cfg["crossmatch"]["radius_arcsec"]))
        if lenses is not None
        else np.empty(0, dtype=np.int64)
    )
    is_lens = np.isin(hsc_pairs, lens_set)
    n_lens = int(is_lens.sum())
    base = (n_lens - 1) / (len(hsc_rows) - 1) if n_lens and len(hsc_rows) > 1 else float("nan")
    src = "truth class lens" if lenses is not None and Path(lenses).suffix == ".parquet" else "lens catalogue match"
    if lenses is None:
        lens_note = "no lens catalogue given"
    elif n_lens == 0:
        lens_note = f"no known lens among the {len(hsc_rows)} HSC objects ({src})"
    else:
        lens_note = f"mean over {n_lens} lens queries ({src}), {n_show} nearest HSC rows"
    lens_nbrs, lens_frac = {}, {}
    for space in SPACES:
        lens_nbrs[space], lens_frac[space] = lens_neighbour_fraction(x[space][hsc_rows], is_lens, n_show)
        rows.append(
            {
                "metric": f"lens_fraction_top{n_show}_{space}",
                "value": float(lens_frac[space].mean()) if n_lens else float("nan"),
                "note": f"lenses among the {n_show} nearest HSC neighbours of a lens, {space} space; {lens_note}",
            }
        )
    rows += [
        {"metric": "lens_queries", "value": float(n_lens), "note": lens_note},
        {
            "metric": "lens_base_rate",
            "value": base,
            "note": f"chance that another HSC object is a lens ({n_lens} lenses of {len(hsc_rows)} HSC objects)",
        },
    ]
    log.info(
        "retrieval metrics in %.1f s; lens queries %d, lens fraction in physics top-%d %s (base rate %s)",
        time.perf_counter() - t0,
        n_lens,
        n_show,
        f"{lens_frac['physics'].mean():.3f}" if n_lens else "n/a",
        f"{base:.4f}" if n_lens else "n/a",
    )
    result = pd.DataFrame(rows, columns=list(RETRIEVAL_COLUMNS))
    write_csv(result, table)

    # Figure: one held-out HSC query in both spaces, and one lens query in physics space (HSC only).
    rng = np.random.default_rng(seed)
    hsc_queries = queries[survey[queries] == "hsc"]
    query = int(rng.choice(hsc_queries)) if hsc_queries.size else int(queries[0])
    partner = counterpart_rows(emb)
    images = _images(data_dir)
    pairs = emb["pair"].to_numpy()

    def card(row: int, rank: int, space: str) -> dict:
        s = survey[row]
        return {
            "image": np.asarray(images[s][pairs[row]]),
            "survey": s,
            "rank": rank,
            "counterpart": bool(row == partner[query]),
            "lens": None,
            "dist": float(np.linalg.norm(x[space][row] - x[space][query])),
        }

    strips, partner_rank = {}, {}
    for space in SPACES:
        nb = neighbours_excluding(x[space], np.array([query]), n_show)[0]
        strips[space] = [card(int(r), j + 1, space) for j, r in enumerate(nb)]
        dist = np.linalg.norm(x[space] - x[space][query], axis=1)
        dist[query] = -np.inf  # counted as closer, so the count below is the 1-based rank
        partner_rank[space] = int((dist < dist[partner[query]]).sum())
    metric = dict(zip(result["metric"], result["value"], strict=True))
    lens_strip, lens_query = None, None
    if n_lens:
        pick = int(rng.integers(n_lens))
        q_hsc = int(np.flatnonzero(is_lens)[pick])
        lens_query = {"image": np.asarray(images["hsc"][hsc_pairs[q_hsc]]), "pair": int(hsc_pairs[q_hsc])}
        lens_strip = [
            {
                "image": np.asarray(images["hsc"][hsc_pairs[r]]),
                "survey": "hsc",
                "rank": j + 1,
                "counterpart": False,
                "lens": bool(is_lens[r]),
                "dist": float(np.linalg.norm(x["physics"][hsc_rows[r]] - x["physics"][hsc_rows[q_hsc]])),
            }
            for j, r in enumerate(lens_nbrs["physics"][pick])
        ]
        lens_query["fraction"] = float(lens_frac["physics"][pick])
    plot_retrieval(
        query={
            "image": np.asarray(images["hsc"][pairs[query]]),
            "pair": int(pairs[query]),
            "object_id": emb["object_id"].iloc[query],
            "partner_rank": partner_rank,
        },
        strips=strips,
        lens_query=lens_query,
        lens_strip=lens_strip,
        metric=metric,
        k=k,
        n_show=n_show,
        lens_note=lens_note,
        out=figure,
    )
    return result
