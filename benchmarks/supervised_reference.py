"""How well a supervised ResNet reads a survey's observing conditions from the images the model trains on.

The probe tables ask whether the instrument latent reads PSF FWHM, sky noise and depth better than
the physics latent, and give a pixel floor (an MLP on two trivial statistics per band). This script
adds the other reference: a ResNet of the encoders' architecture (``model.encoder``), trained from
scratch *with the truth labels* (which the instrument encoder never sees) to predict one survey's
true conditions from one anchor image (``images_{survey}.npy``). Targets are the probe tables' truth
targets (``true_{hsc,legacy}_*``, band-averaged over ``preprocess.bands``). It is a reference, not an
upper bound: on PSF FWHM the probes' pixel floor beats it (benchmarks/RESULTS.md, "PSF FWHM").

Printed per survey and target, R^2 of out-of-fold predictions over all pairs with a bootstrap 95 %
interval (the probes' bootstrap), for:

- ``own image``: the network's prediction from the anchor's image;
- ``neighbour mean``: the mean of its predictions for the anchor's spatial neighbours
  (``neighbours_{survey}_spatial.npz``), the route the paper's instrument encoder must take;
- ``neighbour truth``: the mean of the neighbours' *true* values, i.e. how much of the anchor's
  condition the sky's spatial correlation carries;
- ``--train-fractions``: the first fold refitted on fractions of its training images and scored on
  the same held-out images: a curve that rises with data says the reading is limited by the number
  of galaxies.

Usage: python benchmarks/supervised_reference.py --data results/sim [--config config/config.yaml ...]
       [--epochs 20] [--folds 2] [--train-fractions 0.25 0.5]
Cost: one ResNet per fold and survey (about 100 s per 600 training images and 20 epochs on one core).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from whatsreal.config import effective_config
from whatsreal.experiments.bootstrap import bootstrap_counts, percentile_ci, r2_point, r2_replicates
from whatsreal.experiments.neighbour_probe import neighbour_mean
from whatsreal.experiments.regressor import train_image_regressor
from whatsreal.experiments.targets import build_targets, truth_instrument_targets
from whatsreal.layout import DatasetLayout
from whatsreal.surveys import SURVEY_ORDER

REPO = Path(__file__).resolve().parents[1]


def interval(y: np.ndarray, pred: np.ndarray, counts: np.ndarray) -> str:
    """``R^2 [lo, hi]`` over the rows where both are finite."""
    ok = np.isfinite(y) & np.isfinite(pred)
    point = float(r2_point(y[ok], pred[ok]))
    lo, hi = percentile_ci(r2_replicates(y[ok], pred[ok], counts[:, ok]), 0.95)
    return f"{point:6.3f} [{float(lo):.3f}, {float(hi):.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / "results" / "sim", help="a dataset's results directory")
    ap.add_argument("--config", nargs="+", default=[str(REPO / "config" / "config.yaml")])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--train-fractions", type=float, nargs="*", default=[])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    cfg = effective_config(args.config)
    layout = DatasetLayout(args.data)
    table, _ = build_targets(layout, layout.truth, cfg["preprocess"]["bands"])
    bcfg = {**cfg["experiments"]["baselines"], "epochs": args.epochs, "batch_size": 64, "seed": args.seed}
    rng = np.random.default_rng(args.seed)
    fold = rng.integers(0, args.folds, len(table))
    counts = None
    print(
        f"{args.data}: {len(table)} pairs, {args.folds}-fold out-of-fold, {args.epochs} epochs, "
        f"encoder {cfg['model']['encoder']['name']} {cfg['model']['encoder'].get('options') or ''}"
    )
    for survey in SURVEY_ORDER:
        names = truth_instrument_targets(survey)
        y = table[names].to_numpy(dtype=np.float64)
        images = np.load(layout.images(survey), mmap_mode="r")
        pred = np.full_like(y, np.nan)
        curve: dict[float, np.ndarray] = {}
        for f in range(args.folds):
            train_rows = np.flatnonzero(fold != f)
            held_out = fold == f
            reg = train_image_regressor(images, y, train_rows, bcfg, cfg["model"]["encoder"], names, tag=survey)
            pred[held_out] = reg.predict(images[np.flatnonzero(held_out)])
            if f == 0:
                for frac in args.train_fractions:
                    sub = rng.choice(train_rows, size=max(2, int(frac * len(train_rows))), replace=False)
                    small = train_image_regressor(images, y, sub, bcfg, cfg["model"]["encoder"], names, tag=survey)
                    curve[frac] = small.predict(images[np.flatnonzero(held_out)])
        if counts is None:
            counts = bootstrap_counts(len(table), 1000, args.seed)
        index = np.load(layout.neighbours(survey, "spatial"))["index"]
        nb_pred, nb_true = neighbour_mean(pred, index), neighbour_mean(y, index)
        for j, name in enumerate(names):
            print(
                f"{survey:12s} {name:24s} own image {interval(y[:, j], pred[:, j], counts)}   "
                f"neighbour mean {interval(y[:, j], nb_pred[:, j], counts)}   "
                f"neighbour truth {interval(y[:, j], nb_true[:, j], counts)}"
            )
        if curve:
            held = np.flatnonzero(fold == 0)
            sub_counts = bootstrap_counts(len(held), 1000, args.seed)
            n_full = int((fold != 0).sum())
            for frac, p in [*sorted(curve.items()), (1.0, pred[held])]:
                cells = "   ".join(
                    f"{n.split('_', 2)[2]} {interval(y[held, j], p[:, j], sub_counts)}" for j, n in enumerate(names)
                )
                print(f"{survey:12s} fold 0, {int(frac * n_full):5d} training images: {cells}")


if __name__ == "__main__":
    main()
