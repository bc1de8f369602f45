"""Instrument vs physics latent on a simulated sky's instrument truth: ridge, and a probe chosen per latent.

The probe tables read latents with a ridge; the paper's Table 5 with MLPs. This script prints,
per run, survey and instrument target (PSF FWHM, sky noise, PSF depth; band means), out-of-fold
R^2 over every pair of each latent and the lead, instrument minus physics, with paired bootstrap
95 % intervals, twice: with the ridge of the probe tables, and with a probe chosen per latent
and outer fold among that ridge and MLPs of several penalties by inner cross-validation
(``whatsreal.experiments.probe_selection``). The columns ``picks`` say which candidate each
outer fold chose.

Truth only: it needs the sky's ``raw/truth.parquet`` and each run's exported embeddings. Folds,
ridge alphas and bootstrap are the config's ``experiments.survey_probes`` and
``experiments.bootstrap``; the MLP candidates are this script's options.

Usage: python benchmarks/probe_selection.py --data results/sim_science [--runs main]
       [--config config/config.yaml config/sim_science.yaml] [--targets psf_fwhm]
       [--mlp-penalties 0.01 0.1 1] [--mlp-hidden 256 128] [--inner-folds 3]
       [--inner-max-rows N] [--out csv]
Cost: ~1 min per run and target on the demo sky's 1,089 pairs on one core (benchmarks/RESULTS.md,
"The PSF lead under a probe chosen per latent"); the MLP fits scale with the pairs. On large
skies, ``--inner-max-rows`` makes each outer fold's choice on a random subset of its training
rows (the chosen probe is still refit on all of them).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from whatsreal.config import effective_config
from whatsreal.experiments.bootstrap import bootstrap_config
from whatsreal.experiments.embeddings import SPACES, latents_by_survey, read_embeddings, run_embedding_paths
from whatsreal.experiments.probe_selection import ProbeCandidates, selection_table
from whatsreal.experiments.targets import TRUTH_INSTRUMENT, build_targets
from whatsreal.io import write_csv
from whatsreal.layout import DatasetLayout
from whatsreal.surveys import SURVEY_ORDER

REPO = Path(__file__).resolve().parents[1]
QUANTITIES = [q for q, _ in TRUTH_INSTRUMENT]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / "results" / "sim", help="a dataset's results directory")
    ap.add_argument(
        "--runs",
        nargs="*",
        help="runs under <data>/runs (default: every run with exported embeddings that has both latents;"
        " single-latent methods such as cvae are skipped)",
    )
    ap.add_argument("--config", nargs="+", default=[str(REPO / "config" / "config.yaml")])
    ap.add_argument("--targets", nargs="+", choices=QUANTITIES, default=QUANTITIES)
    ap.add_argument("--mlp-penalties", nargs="+", type=float, default=[0.01, 0.1, 1.0])
    ap.add_argument("--mlp-hidden", nargs="+", type=int, default=[256, 128])
    ap.add_argument("--inner-folds", type=int, default=3)
    ap.add_argument(
        "--inner-max-rows",
        type=int,
        help="choose each outer fold's probe on at most this many of its training rows (default: all);"
        " a small subset leans the choice towards the ridge",
    )
    ap.add_argument("--out", type=Path, help="also write the table (a `run` column first) to this CSV")
    args = ap.parse_args(argv)

    cfg = effective_config(args.config)
    probes = cfg["experiments"]["survey_probes"]
    try:  # ProbeCandidates checks --inner-folds and --inner-max-rows
        candidates = ProbeCandidates(
            alphas=probes["alphas"],
            mlp_penalties=args.mlp_penalties,
            mlp_hidden=args.mlp_hidden,
            inner_folds=args.inner_folds,
            seed=probes["seed"],
            inner_max_rows=args.inner_max_rows,
        )
    except ValueError as err:
        ap.error(str(err))
    layout = DatasetLayout(args.data)
    if not layout.truth.exists():
        raise SystemExit(f"{layout.truth}: file not found (the truth of a simulated sky is needed)")
    table, _ = build_targets(layout, layout.truth, cfg["preprocess"]["bands"])
    pairs = table.index.to_numpy()
    try:
        paths = run_embedding_paths(layout, args.runs)
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from None
    bootstrap = bootstrap_config(cfg)
    print(
        f"{args.data}: {len(pairs)} pairs; out-of-fold R^2 [{bootstrap[2]:.0%} interval];"
        f" candidates {candidates.names()}"
        + (f", chosen on <= {candidates.inner_max_rows} rows per outer fold" if candidates.inner_max_rows else "")
    )
    tables = []
    for run, path in paths.items():
        try:
            emb = read_embeddings(path, spaces=("physics", "instrument"))
        except ValueError as err:
            if args.runs is not None:  # asked for by name: say why it cannot be read
                raise SystemExit(str(err)) from None
            print(f"run '{run}' skipped: it has no two latents to compare ({err})")
            continue
        spaces = {space: latents_by_survey(emb, prefix, pairs, path) for space, prefix in SPACES.items()}
        latents = {s: {space: by[s] for space, by in spaces.items()} for s in SURVEY_ORDER}
        start = time.perf_counter()
        out = selection_table(table, latents, candidates, probes["n_folds"], probes["seed"], bootstrap, args.targets)
        print(f"run '{run}' ({time.perf_counter() - start:.0f} s): physics / instrument R^2, lead instrument - physics")
        for r in out.itertuples():
            print(
                f"  {r.target:22s} {r.probe:8s} {r.r2_physics:+.3f} / {r.r2_instrument:+.3f}"
                f"  lead {r.lead:+.3f} [{r.lead_ci_lo:+.3f}, {r.lead_ci_hi:+.3f}]"
                + (
                    f"  picks: physics {r.picks_physics}; instrument {r.picks_instrument}"
                    if r.probe == "selected"
                    else ""
                )
            )
        tables.append(out.assign(run=run))
    result = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if args.out is not None and not result.empty:
        write_csv(result[["run", *[c for c in result.columns if c != "run"]]], args.out)
    return result


if __name__ == "__main__":
    main()
