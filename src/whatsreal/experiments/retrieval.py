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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from whatsreal.experiments.embeddings import SPACES, latent_columns, read_embeddings
from whatsreal.experiments.metrics import neighbours_excluding
from whatsreal.io import read_table, write_csv
from whatsreal.layout import DatasetLayout
from whatsreal.surveys import SURVEY_ORDER

__all__ = [
    "RETRIEVAL_COLUMNS",
    "LensStrip",
    "NeighbourPanel",
    "QueryStrips",
    "RetrievalFigure",
    "RetrievalInputs",
    "RetrievalScores",
    "counterpart_rows",
    "lens_neighbour_fraction",
    "lens_pairs",
    "load_retrieval",
    "retrieval_figure",
    "retrieval_metrics",
    "retrieval_scores",
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


# --------------------------------------------------------------------------- load


@dataclass(frozen=True)
class RetrievalInputs:
    """Fig 5's inputs, checked: what :func:`retrieval_scores` and :func:`retrieval_figure` read."""

    emb: pd.DataFrame
    """embeddings.parquet with a fresh 0..n-1 index: a row number is a neighbour index."""
    latents: dict[str, np.ndarray]
    """Space -> (rows, d) float32 latents, row-aligned with :attr:`emb`."""
    queries: np.ndarray
    """Rows queried: held-out (``split == val``) rows whose pair has a view in the other survey."""
    is_lens: np.ndarray
    """Per HSC row of :attr:`emb` (in row order): whether its pair is a known lens."""
    lens_source: str | None
    """How the lenses were found (truth class or catalogue match); None without a lens file."""
    images: dict[str, np.ndarray]
    """Survey -> the preprocessed images (memory-mapped; row i is pair i), for the figure."""

    @property
    def survey(self) -> np.ndarray:
        return self.emb["survey"].to_numpy()

    @property
    def hsc_rows(self) -> np.ndarray:
        """The HSC rows of :attr:`emb`: the lens search's index (:attr:`is_lens` is aligned with them)."""
        return np.flatnonzero(self.survey == "hsc")


def load_retrieval(
    embeddings: str | Path,
    data: DatasetLayout | str | Path,
    lenses: str | Path | None,
    radius_arcsec: float,
) -> RetrievalInputs:
    """Read and check Fig 5's inputs; ``lenses`` (truth.parquet or a lens catalogue) may be None.

    The images are opened here, before anything is written, so a missing file fails the
    stage without leaving a table behind.
    """
    layout = DatasetLayout.of(data)
    emb = read_embeddings(embeddings)
    if "split" not in emb.columns:
        raise ValueError(f"{embeddings}: missing column(s) split")
    emb = emb.reset_index(drop=True)
    queries = np.flatnonzero((emb["split"].astype(str) == "val").to_numpy() & (counterpart_rows(emb) >= 0))
    if queries.size == 0:
        raise ValueError(f"{embeddings}: no held-out (split == 'val') row with a counterpart to query")
    latents = {s: emb[latent_columns(emb, p, embeddings)].to_numpy(dtype=np.float32) for s, p in SPACES.items()}
    hsc_pairs = emb["pair"].to_numpy()[emb["survey"].to_numpy() == "hsc"]
    if lenses is None:
        lens_set, lens_source = np.empty(0, dtype=np.int64), None
    else:
        lens_set = lens_pairs(lenses, layout.meta("hsc"), radius_arcsec)
        lens_source = "truth class lens" if Path(lenses).suffix == ".parquet" else "lens catalogue match"
    return RetrievalInputs(
        emb=emb,
        latents=latents,
        queries=queries,
        is_lens=np.isin(hsc_pairs, lens_set),
        lens_source=lens_source,
        images=_open_images(layout),
    )


def _open_images(layout: DatasetLayout) -> dict[str, np.ndarray]:
    out = {}
    for s in SURVEY_ORDER:
        path = layout.images(s)
        if not path.exists():
            raise FileNotFoundError(f"{path}: file not found (images of the retrieval figure)")
        out[s] = np.load(path, mmap_mode="r")
    return out


# --------------------------------------------------------------------------- compute


@dataclass(frozen=True)
class RetrievalScores:
    """tables/retrieval.csv and the lens searches behind its lens rows (the figure shows one)."""

    table: pd.DataFrame
    """``metric, value, note`` rows (:data:`RETRIEVAL_COLUMNS`)."""
    lens_note: str
    """What the lens rows are over, or why there are none."""
    lens_neighbours: dict[str, np.ndarray]
    """Space -> (lenses, n_show) positions among the HSC rows: each lens's nearest other HSC rows."""
    lens_fraction: dict[str, np.ndarray]
    """Space -> per lens, the fraction of lenses among those neighbours."""

    @property
    def metric(self) -> dict[str, float]:
        """The table as ``{metric: value}``."""
        return dict(zip(self.table["metric"], self.table["value"], strict=True))


def retrieval_scores(inputs: RetrievalInputs, k: int, n_show: int) -> RetrievalScores:
    """Counterpart retrieval per space, its chance levels, and the lens-neighbour enrichment."""
    emb, queries = inputs.emb, inputs.queries
    n = len(emb)
    rows: list[dict] = []
    t0 = time.perf_counter()
    for space in SPACES:
        m = retrieval_metrics(inputs.latents[space], emb, queries, k)
        rows += _space_rows(space, m, k, f"{len(queries)} held-out queries (HSC and Legacy) against {n - 1} rows")
        log.info(
            "retrieval %s: top-1 %.3f, top-%d %.3f, other survey in top-%d %.3f",
            space,
            m["top1"],
            k,
            m["topk"],
            k,
            m["other_survey"],
        )
    rows += _chance_rows(inputs.survey, queries, k)

    # Rare-object query: known lenses, searched among HSC images in physics space.
    is_lens, n_hsc = inputs.is_lens, len(inputs.hsc_rows)
    n_lens = int(is_lens.sum())
    base = (n_lens - 1) / (n_hsc - 1) if n_lens and n_hsc > 1 else float("nan")
    lens_note = _lens_note(inputs.lens_source, n_lens, n_hsc, n_show)
    lens_nbrs, lens_frac = {}, {}
    for space in SPACES:
        lens_nbrs[space], lens_frac[space] = lens_neighbour_fraction(
            inputs.latents[space][inputs.hsc_rows], is_lens, n_show
        )
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
            "note": f"chance that another HSC object is a lens ({n_lens} lenses of {n_hsc} HSC objects)",
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
    table = pd.DataFrame(rows, columns=list(RETRIEVAL_COLUMNS))
    return RetrievalScores(table=table, lens_note=lens_note, lens_neighbours=lens_nbrs, lens_fraction=lens_frac)


def _space_rows(space: str, m: dict[str, float], k: int, queried: str) -> list[dict]:
    """The table rows of one space's :func:`retrieval_metrics`; ``queried`` says what was queried against what."""
    what = f"{queried}, {space} space"
    rows = [
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
    return rows + [
        {
            "metric": f"{space}_top1_counterpart_{s}_query",
            "value": m[f"top1_{s}"],
            "note": f"top-1 counterpart rate for {s} queries only",
        }
        for s in SURVEY_ORDER
    ]


def _chance_rows(survey: np.ndarray, queries: np.ndarray, k: int) -> list[dict]:
    """What random neighbours would score, for the same queries against the same table."""
    n = len(survey)
    counts = pd.Series(survey).value_counts()
    other_share = float(np.mean((n - counts.reindex(survey[queries]).to_numpy()) / (n - 1)))
    return [
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


def _lens_note(source: str | None, n_lens: int, n_hsc: int, n_show: int) -> str:
    if source is None:
        return "no lens catalogue given"
    if n_lens == 0:
        return f"no known lens among the {n_hsc} HSC objects ({source})"
    return f"mean over {n_lens} lens queries ({source}), {n_show} nearest HSC rows"


# --------------------------------------------------------------------------- figure


@dataclass(frozen=True)
class NeighbourPanel:
    """One neighbour in a strip of Fig 5."""

    image: np.ndarray
    """Its preprocessed (g, r, i, z) cutout."""
    survey: str
    rank: int
    """1 = nearest."""
    dist: float
    """L2 distance to the query in the strip's space."""
    counterpart: bool = False
    """Whether it is the query's own view in the other survey."""
    lens: bool | None = None
    """Whether it is a known lens (lens strip only)."""


@dataclass(frozen=True)
class QueryStrips:
    """An HSC query and its nearest neighbours in each space (Fig 5's top rows)."""

    image: np.ndarray
    pair: int
    object_id: str
    partner_rank: dict[str, int]
    """Space -> the 1-based rank of the query's counterpart among all rows."""
    strips: dict[str, list[NeighbourPanel]]
    """Space -> the nearest neighbours, nearest first."""


@dataclass(frozen=True)
class LensStrip:
    """A known lens and its nearest HSC neighbours in physics space (Fig 5's bottom row)."""

    image: np.ndarray
    pair: int
    fraction: float
    """Fraction of lenses among the neighbours shown."""
    neighbours: list[NeighbourPanel]


@dataclass(frozen=True)
class RetrievalFigure:
    """Everything Fig 5 draws."""

    query: QueryStrips
    lens: LensStrip | None
    """None when there is no known lens; :attr:`lens_note` then says why."""
    metric: dict[str, float]
    """tables/retrieval.csv as ``{metric: value}`` (quoted beside the strips)."""
    k: int
    n_show: int
    lens_note: str


def retrieval_figure(
    inputs: RetrievalInputs, scores: RetrievalScores, k: int, n_show: int, seed: int
) -> RetrievalFigure:
    """Fig 5's content: a seeded held-out HSC query in both spaces, and a seeded lens query in physics space."""
    rng = np.random.default_rng(seed)
    queries, survey = inputs.queries, inputs.survey
    hsc_queries = queries[survey[queries] == "hsc"]
    query = int(rng.choice(hsc_queries)) if hsc_queries.size else int(queries[0])
    n_lens = int(inputs.is_lens.sum())
    lens = _lens_strip(inputs, scores, int(rng.integers(n_lens))) if n_lens else None
    return RetrievalFigure(
        query=_query_strips(inputs, query, n_show),
        lens=lens,
        metric=scores.metric,
        k=k,
        n_show=n_show,
        lens_note=scores.lens_note,
    )


def _query_strips(inputs: RetrievalInputs, query: int, n_show: int) -> QueryStrips:
    """Row ``query``'s ``n_show`` nearest rows per space, and where its counterpart ranks."""
    survey, pairs, x = inputs.survey, inputs.emb["pair"].to_numpy(), inputs.latents
    partner = counterpart_rows(inputs.emb)

    def panel(row: int, rank: int, space: str) -> NeighbourPanel:
        return NeighbourPanel(
            image=np.asarray(inputs.images[survey[row]][pairs[row]]),
            survey=survey[row],
            rank=rank,
            dist=float(np.linalg.norm(x[space][row] - x[space][query])),
            counterpart=bool(row == partner[query]),
        )

    strips, partner_rank = {}, {}
    for space in SPACES:
        nb = neighbours_excluding(x[space], np.array([query]), n_show)[0]
        strips[space] = [panel(int(r), j + 1, space) for j, r in enumerate(nb)]
        dist = np.linalg.norm(x[space] - x[space][query], axis=1)
        dist[query] = -np.inf  # counted as closer, so the count below is the 1-based rank
        partner_rank[space] = int((dist < dist[partner[query]]).sum())
    return QueryStrips(
        image=np.asarray(inputs.images["hsc"][pairs[query]]),
        pair=int(pairs[query]),
        object_id=inputs.emb["object_id"].iloc[query],
        partner_rank=partner_rank,
        strips=strips,
    )


def _lens_strip(inputs: RetrievalInputs, scores: RetrievalScores, pick: int) -> LensStrip:
    """The ``pick``-th lens (in HSC row order) and its physics-space neighbours of :class:`RetrievalScores`."""
    hsc_rows, is_lens = inputs.hsc_rows, inputs.is_lens
    hsc_pairs = inputs.emb["pair"].to_numpy()[hsc_rows]
    phys, images = inputs.latents["physics"], inputs.images["hsc"]
    q_hsc = int(np.flatnonzero(is_lens)[pick])
    neighbours = [
        NeighbourPanel(
            image=np.asarray(images[hsc_pairs[r]]),
            survey="hsc",
            rank=j + 1,
            dist=float(np.linalg.norm(phys[hsc_rows[r]] - phys[hsc_rows[q_hsc]])),
            lens=bool(is_lens[r]),
        )
        for j, r in enumerate(scores.lens_neighbours["physics"][pick])
    ]
    return LensStrip(
        image=np.asarray(images[hsc_pairs[q_hsc]]),
        pair=int(hsc_pairs[q_hsc]),
        fraction=float(scores.lens_fraction["physics"][pick]),
        neighbours=neighbours,
    )


# --------------------------------------------------------------------------- stage


def run_retrieval(
    retrieval_cfg: dict,
    embeddings: str | Path,
    data: DatasetLayout | str | Path,
    lenses: str | Path | None,
    figure: str | Path,
    table: str | Path,
    *,
    radius_arcsec: float,
) -> pd.DataFrame:
    """Write Fig 5 and tables/retrieval.csv (``metric, value, note``); return the table.

    ``retrieval_cfg`` is ``experiments.retrieval`` (k, n_show, seed); ``radius_arcsec``
    (``crossmatch.radius_arcsec``) matches a lens catalogue to the HSC positions.
    """
    from whatsreal.plots.retrieval import plot_retrieval

    k, n_show, seed = int(retrieval_cfg["k"]), int(retrieval_cfg["n_show"]), int(retrieval_cfg["seed"])
    inputs = load_retrieval(embeddings, data, lenses, radius_arcsec)
    scores = retrieval_scores(inputs, k, n_show)
    write_csv(scores.table, table)
    plot_retrieval(retrieval_figure(inputs, scores, k, n_show, seed), figure)
    return scores.table
