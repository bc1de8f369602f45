"""How much one survey's observing conditions predict the other's on a simulated sky; what physics latents carry of it.

The physics encoder of one survey conditions the reconstruction of the *other* survey's anchor,
so it is rewarded for carrying its own survey's conditions (PSF FWHM, sky noise, PSF depth)
whenever they predict the other survey's; and with random neighbours that is the decoder's only
way to the anchor's conditions. This script measures that alignment on a sky
(``whatsreal.experiments.condition_alignment``) and prints, per ordered pair of surveys (source
-> target survey) and target condition, out-of-fold R^2 over every pair with a bootstrap 95 %
interval:

- ``true conditions (ridge)``, ``(boosted trees)``: from the source survey's true per-band
  conditions, linear and not (the alignment; on a small patch the conditions together say where
  a galaxy lies, which only the trees can use);
- ``<run> physics latent``: from the run's physics latent of the source survey's image, on the
  target survey's conditions and, below them, on the source survey's own (the leakage that the
  probe tables compare with the instrument latent).

Truth only: it needs the sky's ``raw/truth.parquet``. The probes' settings (folds, ridge alphas,
bootstrap) are the config's ``experiments.survey_probes`` and ``experiments.bootstrap``.

Usage: python benchmarks/condition_alignment.py --data results/sim [--runs main random_neighbours]
       [--config config/config.yaml ...] [--out alignment.csv]
Cost: the boosted trees take most of it (benchmarks/RESULTS.md, "Why the HSC PSF is won on one
sky and not another"); each run's rows are ridges on its exported embeddings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from whatsreal.config import effective_config
from whatsreal.experiments.bootstrap import bootstrap_config
from whatsreal.experiments.condition_alignment import alignment_table, per_band_conditions
from whatsreal.experiments.embeddings import latents_by_survey, read_embeddings, run_embedding_paths
from whatsreal.experiments.targets import build_targets
from whatsreal.io import write_csv
from whatsreal.layout import DatasetLayout
from whatsreal.surveys import SURVEY_ORDER

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / "results" / "sim", help="a dataset's results directory")
    ap.add_argument("--runs", nargs="*", help="runs under <data>/runs (default: every run with embeddings.parquet)")
    ap.add_argument("--config", nargs="+", default=[str(REPO / "config" / "config.yaml")])
    ap.add_argument("--out", type=Path, help="also write the table to this CSV")
    args = ap.parse_args(argv)

    cfg = effective_config(args.config)
    layout = DatasetLayout(args.data)
    if not layout.truth.exists():
        raise SystemExit(f"{layout.truth}: file not found (condition alignment needs a simulated sky's truth)")
    bands = cfg["preprocess"]["bands"]
    table, _ = build_targets(layout, layout.truth, bands)
    truth = pd.read_parquet(layout.truth)
    truth_id = pd.read_parquet(layout.meta("hsc"), columns=["truth_id"])["truth_id"].to_numpy(np.int64)
    conditions = {s: per_band_conditions(truth, truth_id, s, bands) for s in SURVEY_ORDER}
    try:
        paths = run_embedding_paths(layout, args.runs)
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from None
    pairs = table.index.to_numpy()
    latents = {
        run: latents_by_survey(read_embeddings(path, spaces=("physics",)), "phys_", pairs, path)
        for run, path in paths.items()
    }
    probes = cfg["experiments"]["survey_probes"]
    n_resamples, seed, confidence = bootstrap_config(cfg)
    out = alignment_table(
        table, conditions, latents, probes["n_folds"], probes["alphas"], probes["seed"], seed, n_resamples, confidence
    )
    print(f"{args.data}: {len(table)} pairs; out-of-fold R^2 (ridge unless marked) [{confidence:.0%} interval]")
    for (source, rep), block in out.groupby(["source", "representation"], sort=False):
        what = rep.replace("conditions", "true conditions")
        for r in block.itertuples():
            print(f"  {source:12s} {what:32s} -> {r.target:22s} {r.r2:+.3f} [{r.ci_lo:+.3f}, {r.ci_hi:+.3f}]")
    if args.out is not None:
        write_csv(out, args.out)
    return out


if __name__ == "__main__":
    main()
