"""What a swapped PSF or sky noise changes in a simulated stamp's model pixels, per arcsinh softening.

For random anchors of each survey of a simulated sky, the noiseless scene is rendered through
its own PSF and through another anchor's, and one noise field is drawn at its own sky sigma and
at the other anchor's; all go through the survey's preprocessing at each ``--softenings`` value
(``preprocess.arcsinh_softening``; the config's own is 0.01). Printed per survey and softening:
the mean squared change of the preprocessed pixels from each swap, in units of the preprocessed
stamps' variance, and the PSF's over the noise's (``whatsreal.experiments.pixel_change``).
Why: whether the stretch is what keeps the PSF out of the decoder's loss (benchmarks/RESULTS.md,
"Does the arcsinh stretch hide the PSF from the loss?").

Nothing is read from disk: the sky is rebuilt from the config, as the simulator built it.

Usage: python benchmarks/condition_pixel_change.py [--config config/config.yaml ...]
       [--softenings 0.003 0.01 0.03 0.1 0.3 1 10] [--anchors 120] [--seed 0] [--out csv]
Cost: ~1 min for the demo sky at the defaults on one core (the renders; the stretches are quick).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from whatsreal.config import effective_config
from whatsreal.experiments.pixel_change import condition_swap_change
from whatsreal.io import write_csv

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", nargs="+", default=[str(REPO / "config" / "config.yaml")])
    ap.add_argument("--softenings", nargs="+", type=float, default=[0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 10.0])
    ap.add_argument("--anchors", type=int, default=120, help="random anchors per survey")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="also write the table to this CSV")
    args = ap.parse_args(argv)
    cfg = effective_config(args.config)
    if cfg["dataset"]["source"] != "synthetic":
        raise SystemExit(f"dataset.source is '{cfg['dataset']['source']}': this needs the synthetic sky")
    start = time.perf_counter()
    try:  # condition_swap_change checks --softenings and --anchors before any rendering
        table = condition_swap_change(cfg, args.softenings, args.anchors, args.seed)
    except ValueError as err:
        ap.error(str(err))
    print(
        f"{cfg['dataset']['name']}: {args.anchors} anchors per survey, config softening"
        f" {cfg['preprocess']['arcsinh_softening']:g} ({time.perf_counter() - start:.0f} s)."
        " Mean squared change of the preprocessed pixels / their variance:"
    )
    for r in table.itertuples():
        print(
            f"  {r.survey:13s} softening {r.softening:<6g} PSF swap {r.psf_change:.2e}"
            f"  sky-noise swap {r.noise_change:.2e}  PSF / noise {r.psf_over_noise:.3f}"
        )
    if args.out is not None:
        write_csv(table, args.out)
    return table


if __name__ == "__main__":
    main()
