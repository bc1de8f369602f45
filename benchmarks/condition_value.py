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
``--run NAME`` applies that run's overlay of the config's ``runs`` first, as its workflow jobs
do: needed for a run whose overlay changes model keys (its checkpoint is refused otherwise).

Usage: python benchmarks/condition_value.py --data results/sim [--config config/config.yaml ...]
       [--run main] [--stamps 60] [--bins 4] [--noise-draws 16] [--seed 0] [--out value.csv]
       [--model results/sim/runs/main/model.ckpt [--times 0.3 0.5 0.7 0.8 0.9 0.95] [--draws 4]]
Cost: two GalSim renders and 2 x noise-draws preprocessings per stamp, then a 199-point t grid:
about a minute for 60 stamps per survey on 2 cores. Synthetic sky only (needs raw/truth.parquet).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from whatsreal.config import SCHEMA_PATH, ConfigError, effective_config, run_config
from whatsreal.experiments.condition_value import (
    FLOOR_TIMES,
    HeldOutStamps,
    floor_lines,
    floor_table,
    held_out_stamps,
    value_table,
)
from whatsreal.io import write_csv
from whatsreal.layout import DatasetLayout
from whatsreal.model.checkpoint import CheckpointError, load_trained_model

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / "results" / "sim", help="a simulated sky's results")
    ap.add_argument("--config", nargs="+", default=[str(REPO / "config" / "config.yaml")])
    ap.add_argument("--stamps", type=int, default=60, help="held-out pairs per survey")
    ap.add_argument("--bins", type=int, default=4, help="equal-probability bins of the training's t")
    ap.add_argument("--noise-draws", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="also write the table here (CSV)")
    ap.add_argument("--model", type=Path, help="also score this trained run's model.ckpt against the known-scene floor")
    ap.add_argument("--times", type=float, nargs="+", default=list(FLOOR_TIMES))
    ap.add_argument("--draws", type=int, default=4, help="x0 draws per stamp and t for --model")
    ap.add_argument(
        "--run",
        help="a run of the config's `runs`: its overlay applies (its t sampling weights the table, and "
        "--model's checkpoint is checked against it), as for that run's jobs in the workflow",
    )
    args = ap.parse_args()

    try:
        cfg = effective_config(args.config)
        if args.run is not None:
            cfg = run_config(cfg, args.run, SCHEMA_PATH)
    except ConfigError as err:
        raise SystemExit(str(err)) from err
    layout = DatasetLayout(args.data)
    try:
        stamps = held_out_stamps(layout, cfg, args.stamps, args.noise_draws, args.seed)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(str(err)) from err
    print_stamps(stamps)
    table = value_table(stamps.terms, cfg["model"]["time_sampling"], args.bins)
    print_values(table)
    if args.out is not None:
        write_csv(table, args.out)
        print(f"wrote {args.out}")
    if args.model is not None:
        try:
            net, _ = load_trained_model(args.model, cfg)
        except CheckpointError as err:  # e.g. a run's model whose overlay changes model keys, without --run
            raise SystemExit(str(err)) from err
        net.eval()
        print(f"{args.model}: loss on the same held-out stamps at fixed t, against the known-scene floor")
        mode = cfg["neighbours"]["mode"]  # the run's instrument views, as it was trained (--run)
        table = floor_table(net, net.condition_batch, layout, stamps, args.times, args.draws, args.seed, mode)
        print("\n".join(floor_lines(table)))


def print_stamps(stamps: HeldOutStamps) -> None:
    """What the stamps are: how many, the sky's spreads, their noise and PSF effect in model units."""
    for survey, terms in stamps.terms.items():
        print(
            f"{survey}: {len(terms)} held-out stamps; one standard deviation over the pairs: PSF FWHM "
            f'{stamps.sd_fwhm[survey]:.3f}", log sky sigma {stamps.sd_log_sigma[survey]:.3f}; median noise per '
            f"pixel {np.median([np.median(t.sp) for t in terms]):.3f} model units; rms PSF effect "
            f"{np.sqrt(np.mean([np.mean(t.d**2) for t in terms])):.4f}",
            flush=True,
        )


def print_values(table: pd.DataFrame) -> None:
    """:func:`value_table` a line per survey and t span, with the PSF/noise ratios."""
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


if __name__ == "__main__":
    main()
