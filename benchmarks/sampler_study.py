"""Fast sampling at equal quality (issue 17): the fewest network evaluations whose counterfactuals
match Euler-250's.

For a trained run, draws ``--n-samples`` posterior samples of ``--n-galaxies`` held-out galaxies
per direction from the same starting noise with Euler-250 (the paper's sampler) and with every
candidate, and prints per direction and candidate: evaluations per sample, seconds, the
counterfactual MSE of the samples and of the posterior mean, and the calibration z std, each
with its relative difference to Euler-250. The last line names the candidate with the fewest
evaluations within ``--tolerance`` (2 %) on all three in both directions
(whatsreal.experiments.sampler_study).

``--quick`` (2 galaxies, 4 samples, Euler-8 as the reference and two cheap candidates) runs the
whole script on a CPU in the test suite; its numbers mean nothing.

Usage: python benchmarks/sampler_study.py --model results/sim/runs/main/model.ckpt --data results/sim
       [--n-galaxies 32] [--n-samples 8] [--candidates heun-3 heun-5 ...] [--csv out.csv] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from whatsreal.data.usable import usable_pairs
from whatsreal.device import compute_device
from whatsreal.experiments.posterior import heldout_pairs
from whatsreal.experiments.sampler_study import fastest_within, parse_candidates, run_sampler_study
from whatsreal.io import write_csv
from whatsreal.layout import DatasetLayout
from whatsreal.model.checkpoint import load_trained_model
from whatsreal.surveys import SURVEY_ORDER

DEFAULT_CANDIDATES = [
    *(f"heun-{n}" for n in (2, 3, 4, 5, 6, 8, 10, 12, 25)),
    *(f"midpoint-{n}" for n in (3, 5, 8, 12, 25)),
    *(f"euler-{n}" for n in (10, 25, 50, 100)),
    "dopri5-1e-2",
    "dopri5-1e-3",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="a trained run's model.ckpt")
    ap.add_argument("--data", type=Path, required=True, help="its dataset, results/{dataset}")
    ap.add_argument("--n-galaxies", type=int, default=32, help="held-out galaxies per direction")
    ap.add_argument("--n-samples", type=int, default=8, help="posterior samples per galaxy")
    ap.add_argument("--reference", default="euler-250")
    ap.add_argument("--candidates", nargs="+", default=DEFAULT_CANDIDATES)
    ap.add_argument("--tolerance", type=float, default=0.02, help="largest relative difference to the reference")
    ap.add_argument("--seed", type=int, default=0, help="picks the galaxies and keys their starting noise")
    ap.add_argument("--csv", type=Path, help="write the full table here")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, so the test suite runs it on a CPU")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.quick:
        args.n_galaxies, args.n_samples = 2, 4
        args.reference, args.candidates = "euler-8", ["heun-2", "midpoint-2"]
    reference = parse_candidates([args.reference])[0]
    candidates = parse_candidates(args.candidates)

    device = compute_device()
    layout = DatasetLayout.of(args.data)
    net, saved = load_trained_model(args.model)
    pairs = heldout_pairs(layout.split, args.n_galaxies, args.seed, usable=usable_pairs(layout.root))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device {name}; torch {torch.__version__}; model {args.model}; {len(pairs)} held-out galaxies x "
        f"{args.n_samples} samples per direction; reference {reference.name}; tolerance {args.tolerance:.0%}"
    )
    start = time.perf_counter()
    table = run_sampler_study(
        net,
        str(layout.root),
        pairs,
        SURVEY_ORDER,
        SURVEY_ORDER,
        saved["neighbours"]["mode"],
        args.n_samples,
        candidates,
        reference,
        args.seed,
        device,
    )
    print(
        f"{'direction':13s} {'candidate':13s} {'NFE':>5s} {'seconds':>8s} {'MSE samples':>16s} "
        f"{'MSE post. mean':>16s} {'z std':>15s}"
    )
    for row in table.itertuples():
        print(
            f"{row.direction:13s} {row.candidate:13s} {row.nfe:5d} {row.seconds:8.2f} "
            f"{row.mse_samples:8.5f} ({100 * row.rel_mse_samples:+5.1f}%) "
            f"{row.mse_posterior_mean:8.5f} ({100 * row.rel_mse_posterior_mean:+5.1f}%) "
            f"{row.z_std:7.4f} ({100 * row.rel_z_std:+5.1f}%)"
        )
    if args.csv:
        write_csv(table, args.csv)
    best = fastest_within(table, reference.name, args.tolerance)
    ref_nfe = int(table.loc[table["candidate"] == reference.name, "nfe"].max())
    if best is None:
        print(f"no candidate within {args.tolerance:.0%} of {reference.name} in every direction")
    else:
        print(
            f"fastest within {args.tolerance:.0%} of {reference.name}: {best.name}, {int(best['nfe'])} evaluations "
            f"({ref_nfe / best['nfe']:.1f}x fewer than {ref_nfe}); worst relative difference {best['worst']:.2%}"
        )
    print(f"study took {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
