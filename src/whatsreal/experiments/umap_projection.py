"""Fig 2: UMAP projections of the physics and instrument latents of the same pairs in both surveys.

The paper's claim is visual: in physics space HSC and Legacy overlap and a galaxy's
two views land close together; in instrument space the surveys separate. The
figure is therefore accompanied by two numbers per space that say the same thing
without eyes: how often a view's other-survey counterpart is among its k nearest
neighbours, and how well a k-NN vote recovers the survey of a point (0.5 = the
surveys are mixed, 1.0 = cleanly separated). Both are measured in the 2-D
projection (what the figure shows) and in the latent space itself (what the
projection may distort).
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from whatsreal.experiments.embeddings import SPACES, paired_latents, read_embeddings
from whatsreal.experiments.metrics import neighbours_excluding
from whatsreal.surveys import SURVEY_ORDER

__all__ = [
    "UmapProjection",
    "UmapSpace",
    "cache_umap_compilation",
    "counterpart_in_knn",
    "run_umap",
    "survey_knn_accuracy",
    "umap_2d",
    "umap_space",
]

log = logging.getLogger(__name__)


def counterpart_in_knn(x: np.ndarray, k: int) -> float:
    """Fraction of rows whose other-survey view (row i <-> i + n) is among their k nearest neighbours."""
    n = len(x) // 2
    nbrs = neighbours_excluding(x, np.arange(len(x)), k)
    partner = np.r_[np.arange(n, 2 * n), np.arange(n)]
    return float((nbrs == partner[:, None]).any(axis=1).mean())


def survey_knn_accuracy(x: np.ndarray, k: int) -> float:
    """Leave-one-out k-NN vote for the survey of each row (first half HSC, second Legacy).

    0.5 means the surveys are indistinguishable locally, 1.0 cleanly separated;
    ties count as half right.
    """
    n = len(x) // 2
    label = np.r_[np.zeros(n), np.ones(n)]
    nbrs = neighbours_excluding(x, np.arange(len(x)), k)
    vote = label[nbrs].mean(axis=1)
    right = np.where(vote == 0.5, 0.5, (vote > 0.5) == label.astype(bool))
    return float(right.mean())


@functools.cache
def cache_umap_compilation() -> int:
    """Have numba keep umap-learn's compiled functions on disk, so a new process loads them.

    umap-learn compiles its fuzzy-set and layout code with numba on first use in a process
    and does not ask numba to cache it. Every Fig 2 job is a new process, so each one paid
    the whole compilation again: about 10 s on a 2-core machine, most of a small run's UMAP
    job (benchmarks/RESULTS.md, "The tiny workflow's jobs"). This switches on numba's own
    on-disk cache (what ``cache=True`` does) for umap's module-level compiled functions;
    numba keeps it in umap's ``__pycache__``, or under ``NUMBA_CACHE_DIR`` when that is set,
    or in the user's cache directory when the package is read-only, and checks it against
    the source before loading. A function numba can find no writable place for stays
    uncached: the cache only saves time. Returns how many functions cache; once per process.
    """
    import umap.layouts
    import umap.umap_
    import umap.utils
    from numba.core.dispatcher import Dispatcher

    cached = 0
    for module in (umap.layouts, umap.umap_, umap.utils):
        for name, fn in vars(module).items():
            if not isinstance(fn, Dispatcher):
                continue
            try:
                fn.enable_caching()
            except RuntimeError as err:  # numba: "cannot cache function ...: no locator available"
                log.warning("numba cannot cache %s.%s (%s): it compiles in every process", module.__name__, name, err)
            else:
                cached += 1
    return cached


def umap_2d(x: np.ndarray, n_neighbors: int, min_dist: float, seed: int) -> np.ndarray:
    """A seeded 2-D UMAP of ``x``.

    The exact k-NN graph comes from scikit-learn and is handed to umap-learn as
    ``precomputed_knn``: this is what umap does itself below 4096 points, and it
    skips compiling pynndescent (~20 s of numba JIT on a 2-core machine). What umap itself
    compiles is kept on disk between processes (:func:`cache_umap_compilation`).
    """
    import umap  # numba compilation on import: only when the experiment runs

    cache_umap_compilation()
    n_neighbors = min(n_neighbors, len(x) - 1)
    dist, idx = NearestNeighbors(n_neighbors=n_neighbors).fit(x).kneighbors(x)
    reducer = umap.UMAP(
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        n_components=2,
        random_state=seed,
        precomputed_knn=(idx, dist, None),
    )
    with warnings.catch_warnings():
        # Both are expected: a seed makes umap single-threaded, and we never call .transform.
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        return np.asarray(reducer.fit_transform(x), dtype=np.float32)


def _choose_pairs(emb: pd.DataFrame, n_pairs: int, seed: int) -> np.ndarray:
    """Pairs with a row in both surveys; a seeded subset of ``n_pairs`` if there are more."""
    both = None
    for survey in SURVEY_ORDER:
        have = set(emb.loc[emb["survey"] == survey, "pair"].tolist())
        both = have if both is None else both & have
    pairs = np.array(sorted(both), dtype=np.int64)
    if len(pairs) > n_pairs:
        pairs = np.sort(np.random.default_rng(seed).choice(pairs, size=n_pairs, replace=False))
    return pairs


@dataclass(frozen=True)
class UmapSpace:
    """One latent space of Fig 2: its projection and the numbers printed above it."""

    coords: np.ndarray
    """(2n, 2) UMAP coordinates: the HSC rows of the chosen pairs, then their Legacy rows."""
    dim: int
    """The latent space's dimension."""
    counterpart_knn_2d: float
    """:func:`counterpart_in_knn` in the projection."""
    counterpart_knn_latent: float
    """:func:`counterpart_in_knn` in the latent space."""
    survey_acc_2d: float
    """:func:`survey_knn_accuracy` in the projection."""
    survey_acc_latent: float
    """:func:`survey_knn_accuracy` in the latent space."""


@dataclass(frozen=True)
class UmapProjection:
    """Fig 2's content: both spaces' projections of the same pairs, and the pairs marked in both."""

    spaces: dict[str, UmapSpace]
    marked: np.ndarray
    """Positions (0..n-1) of the pairs drawn with a marker in every panel."""
    k: int
    """The k of the k-NN numbers (the retrieval figure's top-k)."""


def umap_space(x: np.ndarray, umap_cfg: dict, k: int) -> UmapSpace:
    """Project one space's paired latents ``x`` (see :func:`paired_latents`) and score the 2-D and the latent kNN."""
    y = umap_2d(x, int(umap_cfg["n_neighbors"]), float(umap_cfg["min_dist"]), int(umap_cfg["seed"]))
    return UmapSpace(
        coords=y,
        dim=x.shape[1],
        counterpart_knn_2d=counterpart_in_knn(y, k),
        counterpart_knn_latent=counterpart_in_knn(x, k),
        survey_acc_2d=survey_knn_accuracy(y, k),
        survey_acc_latent=survey_knn_accuracy(x, k),
    )


def run_umap(umap_cfg: dict, embeddings: str | Path, figure: str | Path, *, k: int) -> UmapProjection:
    """Write Fig 2 to ``figure``; return (and log) the projections and the per-space disentanglement numbers.

    ``umap_cfg`` is ``experiments.umap``; ``k`` is ``experiments.retrieval.k``, so the
    k-NN numbers here and the retrieval figure's top-k speak of the same neighbourhood.
    """
    from whatsreal.plots.latents import plot_umap

    emb = read_embeddings(embeddings)
    pairs = _choose_pairs(emb, int(umap_cfg["n_pairs"]), int(umap_cfg["seed"]))
    if len(pairs) < 3:
        raise ValueError(f"{embeddings}: {len(pairs)} pair(s) with both surveys; UMAP needs at least 3")
    n_marked = min(int(umap_cfg["n_marked"]), len(pairs))
    marked = np.random.default_rng(int(umap_cfg["seed"]) + 1).choice(len(pairs), size=n_marked, replace=False)
    spaces = {}
    for space, prefix in SPACES.items():
        x = paired_latents(emb, prefix, pairs, embeddings)
        t0 = time.perf_counter()
        m = spaces[space] = umap_space(x, umap_cfg, k)
        log.info(
            "UMAP %s (%d-D, %d pairs x 2 surveys) in %.1f s: counterpart in %d-NN %.3f (2-D) / %.3f (latent); "
            "survey %d-NN accuracy %.3f (2-D) / %.3f (latent)",
            space,
            x.shape[1],
            len(pairs),
            time.perf_counter() - t0,
            k,
            m.counterpart_knn_2d,
            m.counterpart_knn_latent,
            k,
            m.survey_acc_2d,
            m.survey_acc_latent,
        )
    projection = UmapProjection(spaces=spaces, marked=marked, k=k)
    plot_umap(projection, figure)
    return projection
