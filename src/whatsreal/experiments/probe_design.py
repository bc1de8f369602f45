"""Which pairs the probes use and how they are split: the probe *design* of Table 5, the ablation and cross-predict.

Two questions decide whether a probe R^2 measures what a representation
carries or what the probe memorised:

- *Which pairs.* The encoders were trained on the ``train`` split
  (``split.parquet``). Probing those same pairs scores latents of galaxies the
  encoder has fitted; ``pairs: held_out`` probes only the ``val`` pairs, which
  the encoders never saw.
- *How they are split.* Observing conditions (PSF, depth, extinction) are
  smooth on the sky, so with a random split a test galaxy usually has training
  neighbours with nearly the same conditions, and a flexible probe can reach a
  high R^2 by recognising the *place* rather than reading the property.
  ``split: healpix`` groups the pairs into HEALPix pixels (nested, ``nside``)
  and runs k-fold cross-validation with whole pixels held out
  (:class:`sklearn.model_selection.GroupKFold`): each pair is predicted once,
  by the fold that did not train on its pixel, and R^2 is scored once over the
  out-of-fold predictions. K-fold rather than one 90/10 split because the
  held-out sample is small (5 % of the pairs): every held-out pair is scored.
  ``split: random`` keeps the paper's seeded random 90/10 split (A.4).

``auto`` (the default of both keys) resolves by ``dataset.source``: on real
data (``mmu``, ``crossmatched_parquet``) ``held_out`` + ``healpix``; on the synthetic sky the paper's
protocol, ``all`` + ``random``. Whatever the primary design is, the probes also
report the *alternative* one (:func:`alternative_design`), so every run shows
both the paper's protocol and the held-out, spatially blocked check.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
from astropy_healpix import HEALPix
from sklearn.model_selection import GroupKFold

from whatsreal.experiments.targets import meta_paths_by_survey, probe_split
from whatsreal.io import read_table
from whatsreal.layout import DatasetLayout

__all__ = [
    "DESIGN_COLUMNS",
    "PAIRS_CHOICES",
    "SPLIT_CHOICES",
    "ProbeDesign",
    "ProbeFolds",
    "alternative_design",
    "design_folds",
    "folds_for",
    "healpix_blocks",
    "probe_folds",
    "read_probe_sky",
    "resolve_design",
]

log = logging.getLogger(__name__)

PAIRS_CHOICES = ("all", "held_out")
SPLIT_CHOICES = ("random", "healpix")
DESIGN_COLUMNS = ("probe_pairs", "probe_split", "probe_folds")
"""Columns that record the design in every table it produced (Table 5, cross-predict, ablation)."""
SKY_COLUMNS = ("pair", "split", "ra", "dec")


@dataclass(frozen=True)
class ProbeDesign:
    """Resolved design: ``pairs`` in PAIRS_CHOICES, ``split`` in SPLIT_CHOICES, healpix ``nside`` and ``n_folds``."""

    pairs: str
    split: str
    nside: int
    n_folds: int

    @property
    def label(self) -> str:
        """A short human-readable name, e.g. ``held_out pairs, healpix folds (nside 256, 5 folds)``."""
        if self.split == "healpix":
            return f"{self.pairs} pairs, healpix-blocked {self.n_folds}-fold CV (nside {self.nside})"
        return f"{self.pairs} pairs, random split"


def resolve_design(cfg: dict) -> ProbeDesign:
    """The primary probe design of ``cfg``: ``auto`` -> held_out + healpix on real data (``mmu`` or
    ``crossmatched_parquet``), all + random on the synthetic sky."""
    probes_cfg = cfg["experiments"]["probes"]
    real = cfg["dataset"]["source"] != "synthetic"
    pairs = str(probes_cfg.get("pairs", "auto"))
    split = str(probes_cfg.get("split", "auto"))
    if pairs == "auto":
        pairs = "held_out" if real else "all"
    if split == "auto":
        split = "healpix" if real else "random"
    if pairs not in PAIRS_CHOICES:
        raise ValueError(f"experiments.probes.pairs: '{pairs}' is not one of auto, {', '.join(PAIRS_CHOICES)}")
    if split not in SPLIT_CHOICES:
        raise ValueError(f"experiments.probes.split: '{split}' is not one of auto, {', '.join(SPLIT_CHOICES)}")
    return ProbeDesign(pairs, split, int(probes_cfg.get("healpix_nside", 256)), int(probes_cfg.get("n_folds", 5)))


def alternative_design(design: ProbeDesign) -> ProbeDesign:
    """The other reported design: the paper's (all + random) after held_out + healpix, else held_out + healpix."""
    if (design.pairs, design.split) == ("held_out", "healpix"):
        return ProbeDesign("all", "random", design.nside, design.n_folds)
    return ProbeDesign("held_out", "healpix", design.nside, design.n_folds)


def design_folds(cfg: dict, sky: pd.DataFrame, alternative: bool = False) -> ProbeFolds:
    """The folds of ``cfg``'s probe design (or, with ``alternative``, of the other reported design)
    over ``sky``, with the configured ``test_fraction`` and ``seed``: :func:`folds_for` of
    :func:`resolve_design`."""
    return folds_for(resolve_design(cfg), cfg["experiments"]["probes"], sky, alternative)


def folds_for(design: ProbeDesign, probes_cfg: dict, sky: pd.DataFrame, alternative: bool = False) -> ProbeFolds:
    """The folds of ``design`` (or, with ``alternative``, of the other reported design) over ``sky``,
    with ``experiments.probes``' ``test_fraction`` and ``seed``.

    Table 5 and the cross-predict baseline must score exactly the same pairs, so
    both take their folds from here."""
    if alternative:
        design = alternative_design(design)
    return probe_folds(design, sky, float(probes_cfg["test_fraction"]), int(probes_cfg["seed"]))


def healpix_blocks(ra: np.ndarray, dec: np.ndarray, nside: int) -> np.ndarray:
    """Nested HEALPix pixel index of each position (degrees) at ``nside``: the sky blocks of the blocked folds."""
    hp = HEALPix(nside=int(nside), order="nested")
    lon = np.asarray(ra, dtype=np.float64) * u.deg
    lat = np.asarray(dec, dtype=np.float64) * u.deg
    return np.asarray(hp.lonlat_to_healpix(lon, lat), dtype=np.int64)


@dataclass(frozen=True)
class ProbeFolds:
    """The (train rows, test rows) of each fold over pair indices ``0..n_pairs-1`` and the design behind them.

    Test rows of different folds are disjoint; ``scored`` (their sorted union) are
    the pairs that get exactly one held-out prediction.
    """

    design: ProbeDesign
    n_pairs: int
    folds: tuple[tuple[np.ndarray, np.ndarray], ...]

    @property
    def scored(self) -> np.ndarray:
        """Sorted pair indices with a held-out prediction."""
        return np.sort(np.concatenate([test for _, test in self.folds]))

    def mask(self, rows: np.ndarray) -> np.ndarray:
        """Boolean mask over pairs, True at ``rows``."""
        out = np.zeros(self.n_pairs, dtype=bool)
        out[rows] = True
        return out

    def training_counts(self, y: np.ndarray) -> np.ndarray:
        """(T,) labelled training pairs per target column of ``y``, mean over folds (rounded): ``n_train``."""
        finite = np.isfinite(np.asarray(y, np.float64))
        return np.rint(np.mean([finite[train].sum(axis=0) for train, _ in self.folds], axis=0)).astype(int)

    def design_columns(self) -> dict[str, object]:
        """``probe_pairs, probe_split, probe_folds`` values recorded in the output tables."""
        return {"probe_pairs": self.design.pairs, "probe_split": self.design.split, "probe_folds": len(self.folds)}


def read_probe_sky(meta: Mapping[str, str | Path] | DatasetLayout) -> pd.DataFrame:
    """``pair, split, ra, dec`` of every pair from the HSC meta file (row i == pair i, as build_targets requires)."""
    path = meta_paths_by_survey(meta)["hsc"]
    df = read_table(path, SKY_COLUMNS)
    if not np.array_equal(df["pair"].to_numpy(dtype=np.int64), np.arange(len(df))):
        raise ValueError(f"{path}: column 'pair' must be 0..N-1 in row order (row i == pair i)")
    bad = sorted(set(df["split"].astype(str)) - {"train", "val"})
    if bad:
        raise ValueError(f"{path}: column 'split' has value(s) {bad}; expected 'train' / 'val' from split.parquet")
    return df[list(SKY_COLUMNS)].reset_index(drop=True)


def probe_folds(design: ProbeDesign, sky: pd.DataFrame, test_fraction: float, seed: int) -> ProbeFolds:
    """The folds of ``design`` over the pairs of ``sky`` (``pair, split, ra, dec``; row i == pair i).

    ``held_out`` keeps only the ``val`` pairs (never seen by the encoders);
    ``random`` is one seeded ``test_fraction`` split of the kept pairs (the
    paper's protocol; with ``all`` pairs exactly :func:`probe_split`, so older
    tables stay comparable); ``healpix`` is a GroupKFold over the kept pairs
    with the nested HEALPix pixel at ``design.nside`` as group, so no pixel is
    on both sides of any fold. A small sky with fewer pixels than
    ``design.n_folds`` gets one fold per pixel (a warning; ``probe_folds`` in
    the tables says how many) rather than failing, since the alternative design
    runs on every sky whether or not the user chose it; fewer than 2 pixels is
    an error.
    """
    n = len(sky)
    used = np.ones(n, dtype=bool) if design.pairs == "all" else sky["split"].astype(str).to_numpy() == "val"
    rows = np.flatnonzero(used)
    what = "pairs" if design.pairs == "all" else "held-out (val) pairs"
    if len(rows) < 2:
        raise ValueError(
            f"experiments.probes.pairs={design.pairs}: only {len(rows)} {what}; the probes need at least 2 "
            "(raise split.val_fraction, or set experiments.probes.pairs: all)"
        )
    if design.split == "random":
        test = rows[probe_split(len(rows), test_fraction, seed)]
        folds = ((np.setdiff1d(rows, test), np.sort(test)),)
        return ProbeFolds(design, n, folds)
    blocks = healpix_blocks(sky["ra"].to_numpy()[rows], sky["dec"].to_numpy()[rows], design.nside)
    n_blocks = len(np.unique(blocks))
    if n_blocks < 2:
        raise ValueError(
            f"experiments.probes: the {len(rows)} {what} fall in {n_blocks} healpix pixel at "
            f"healpix_nside={design.nside}; blocked folds need at least 2: raise healpix_nside (smaller blocks)"
        )
    n_folds = min(design.n_folds, n_blocks)
    if n_folds < design.n_folds:
        log.warning(
            "experiments.probes: the %d %s fall in %d healpix pixels at healpix_nside=%d, fewer than n_folds=%d: "
            "%d folds (one pixel each; recorded as probe_folds). Raise healpix_nside for more blocks",
            len(rows),
            what,
            n_blocks,
            design.nside,
            design.n_folds,
            n_folds,
        )
    kfold = GroupKFold(n_splits=n_folds)
    folds = tuple((rows[np.sort(tr)], rows[np.sort(te)]) for tr, te in kfold.split(np.zeros(len(rows)), groups=blocks))
    return ProbeFolds(design, n, folds)
