"""What the flow-matching loss pays for knowing the sky noise and the PSF, on a simulated sky.

The trained decoders, the oracle handed the true PSF included, use the sky noise of their
conditioning and not its PSF (benchmarks/RESULTS.md, "What the decoder uses"). This script asks
whether the loss pays for the PSF at all on this sky. For ``--stamps`` pairs per survey it
renders the anchor's stamp as the simulator did, through the data's preprocessing, and computes
(whatsreal.experiments.condition_value), per pixel and averaged over the stamp as the loss is:

- ``mismatch``: the loss increase of a decoder that knows the noiseless scene and is told a
  condition one standard deviation (over the sky's pairs) off: what a swap in rule
  ``conditioning_gain`` measures, for a decoder that trusts its tokens;
- ``value``: what a decoder that knows the scene but also reads x_t saves by being told the
  condition, against knowing only the sky's spread of it (Bayes, Gaussian per pixel).

Rows: all t weighted by the config's ``model.time_sampling`` (what training pays), then
``--bins`` equal-probability bins of it (as ``tables/conditioning_sensitivity_by_t.csv`` bins
the swaps). PSF/noise ratios near 1 mean the loss pays for both; the trained models' slopes give
1/20-1/60.

``--model`` also scores a trained run's model on the same stamps (its own conditioning, as
anchored in their survey) at the fixed flow times ``--times``, beside the known-scene floor
(whatsreal.experiments.condition_value.known_scene_loss): its excess over the floor is what it
does not know of the scene, to hold against the PSF's mismatch cost at the same t.

The stamps are held-out pairs (split ``val``, usable), so a model never trained on them.

Usage: python benchmarks/condition_value.py --data results/sim [--config config/config.yaml ...]
       [--stamps 60] [--bins 4] [--noise-draws 16] [--seed 0] [--out value.csv]
       [--model results/sim/runs/main/model.ckpt [--times 0.3 0.5 0.7 0.8 0.9 0.95] [--draws 4]]
Cost: two GalSim renders and 2 x noise-draws preprocessings per stamp, then a 199-point t grid:
about a minute for 60 stamps per survey on 2 cores. Synthetic sky only (needs raw/truth.parquet).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from whatsreal.config import effective_config
from whatsreal.data.stages import read_normalisation
from whatsreal.data.triplets import TripletDataset
from whatsreal.data.usable import usable_pairs
from whatsreal.experiments.condition_value import (
    StampTerms,
    known_scene_loss,
    losses_at_times,
    mismatch_costs,
    stamp_terms,
    value_table,
)
from whatsreal.experiments.conditioning_gain import val_pairs
from whatsreal.io import read_table, write_csv
from whatsreal.layout import DatasetLayout
from whatsreal.model.checkpoint import load_trained_model
from whatsreal.sim.noiseless import sky_specs
from whatsreal.surveys import SURVEY_ORDER, Survey

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / "results" / "sim", help="a simulated sky's results")
    ap.add_argument("--config", nargs="+", default=[str(REPO / "config" / "config.yaml")])
    ap.add_argument("--stamps", type=int, default=60, help="pairs per survey")
    ap.add_argument("--bins", type=int, default=4, help="equal-probability bins of the training's t")
    ap.add_argument("--noise-draws", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="also write the table here (CSV)")
    ap.add_argument("--model", type=Path, help="also score this trained run's model.ckpt against the known-scene floor")
    ap.add_argument("--times", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.8, 0.9, 0.95])
    ap.add_argument("--draws", type=int, default=4, help="x0 draws per stamp and t for --model")
    args = ap.parse_args()
    if args.stamps < 1:
        ap.error(f"--stamps must be at least 1, got {args.stamps}")

    cfg = effective_config(args.config)
    layout = DatasetLayout(args.data)
    if not layout.truth.exists():
        raise SystemExit(f"{layout.truth}: no truth table; the value of a condition needs a simulated sky")
    truth = pd.read_parquet(layout.truth).set_index("truth_id")
    specs = sky_specs(cfg)
    bands = cfg["preprocess"]["bands"]
    sim = cfg["simulation"]
    rng = np.random.default_rng(args.seed)
    held_out = val_pairs(layout.split, usable=usable_pairs(layout.root, SURVEY_ORDER))
    terms, stamp_pairs = {}, {}
    for survey in SURVEY_ORDER:
        meta = read_table(layout.meta(survey), ["pair", "truth_id", "object_id"])
        meta = meta[meta["truth_id"] >= 0]
        rows = truth.loc[meta["truth_id"].to_numpy()]
        sd_fwhm = float(rows[[f"{survey}_psf_fwhm_{b}" for b in bands]].mean(axis=1).std())
        sd_log_sigma = float(np.log(rows[[f"{survey}_sky_sigma_{b}" for b in bands]].mean(axis=1)).std())
        entry = Survey.from_entry(survey, cfg["surveys"][survey])
        norm = read_normalisation(layout.meta(survey))
        candidates = meta[meta["pair"].isin(held_out)]
        chosen = candidates.iloc[np.sort(rng.choice(len(candidates), min(args.stamps, len(candidates)), replace=False))]
        stamp_pairs[survey] = chosen["pair"].to_numpy()
        ids = chosen["object_id"].to_numpy()
        keys = ids.astype(str) if ids.dtype.kind in "SUO" else ids.astype(np.int64).astype(str)
        terms[survey] = [
            stamp_terms(
                specs[survey][key],
                entry,
                sim["cutout_size"],
                sim["surveys"][survey]["psf_beta"],
                cfg["preprocess"],
                norm,
                sd_fwhm,
                sd_log_sigma,
                rng,
                args.noise_draws,
            )
            for key in keys
        ]
        print(
            f"{survey}: {len(keys)} stamps; one standard deviation over its {len(meta)} pairs: PSF FWHM "
            f'{sd_fwhm:.3f}", log sky sigma {sd_log_sigma:.3f}; median noise per pixel '
            f"{np.median([np.median(t.sp) for t in terms[survey]]):.3f} model units; rms PSF effect "
            f"{np.sqrt(np.mean([np.mean(t.d**2) for t in terms[survey]])):.4f}",
            flush=True,
        )
    table = value_table(terms, cfg["model"]["time_sampling"], args.bins)
    wide = table.pivot_table(
        index=["survey", "t_lo", "t_hi"], columns="condition", values=["mismatch_cost", "value_of_knowing"]
    )
    for (survey, lo, hi), r in wide.iterrows():
        m_n, m_p = r[("mismatch_cost", "sky noise")], r[("mismatch_cost", "PSF FWHM")]
        v_n, v_p = r[("value_of_knowing", "sky noise")], r[("value_of_knowing", "PSF FWHM")]
        print(
            f"{survey:13s} t {lo:.2f}-{hi:.2f}  mismatch: noise {m_n:.5f} PSF {m_p:.5f} (PSF/noise {m_p / m_n:5.2f})"
            f"  value: noise {v_n:.2e} PSF {v_p:.2e} (PSF/noise {v_p / v_n:5.2f})"
        )
    if args.out is not None:
        write_csv(table, args.out)
        print(f"wrote {args.out}")
    if args.model is not None:
        score_model(args.model, cfg, layout, terms, stamp_pairs, args.times, args.draws, args.seed)


def score_model(
    path: Path,
    cfg: dict,
    layout: DatasetLayout,
    terms: dict[str, list[StampTerms]],
    pairs: dict[str, np.ndarray],
    times: list[float],
    draws: int,
    seed: int,
) -> None:
    """Print the model's mean loss on each survey's stamps at each t beside the known-scene floor
    and the two conditions' mismatch costs there."""
    net, _ = load_trained_model(path, cfg)
    net.eval()
    print(f"{path}: loss on the same held-out stamps at fixed t, against the known-scene floor")
    for a, survey in enumerate(SURVEY_ORDER):
        ds = TripletDataset(layout.root, pairs[survey], "spatial", anchors=np.full(len(pairs[survey]), a))
        batch = ds.__getitems__(list(range(len(ds))))
        with torch.no_grad():
            cond = net.condition_batch(batch)
        losses = losses_at_times(net, cond, batch["target"], times, draws, seed).mean(1)
        for t, loss in zip(times, losses, strict=True):
            floor = float(np.mean([known_scene_loss(t, s) for s in terms[survey]]))
            noise, psf = np.mean([mismatch_costs(t, s) for s in terms[survey]], axis=0)
            print(
                f"{survey:13s} t {t:.2f}: loss {loss:.4f}, known-scene floor {floor:.4f}, excess {loss - floor:.4f}"
                f"  (1-sd mismatch cost: noise {noise:.4f}, PSF {psf:.4f})"
            )


if __name__ == "__main__":
    main()
