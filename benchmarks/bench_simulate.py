"""Benchmark the synthetic sky: stamps rendered per second and the default sky's wall time.

Prints medians over repeats. Usage:
    python benchmarks/bench_simulate.py [--repeats 3] [--threads 2] [--sizes 64 160]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from whatsreal.config import SCHEMA_PATH, load_config
from whatsreal.sim.render import ObjectSpec, render_stamp
from whatsreal.sim.sky import simulate_sky
from whatsreal.surveys import SURVEYS

REPO = Path(__file__).resolve().parents[1]


def _specs(survey: str, n: int, rng: np.random.Generator) -> list[ObjectSpec]:
    nb = len(SURVEYS[survey].bands)
    base_fwhm = 0.7 if survey == "hsc" else 1.3
    return [
        ObjectSpec(
            seed=(0, k),
            mags=tuple(rng.uniform(18, 22.5, nb)),
            galaxy_class="normal",
            half_light_radius=float(rng.uniform(0.2, 1.5)),
            sersic_n=float(np.round(rng.uniform(0.5, 4.5), 1)),
            e1=float(rng.uniform(-0.3, 0.3)),
            e2=float(rng.uniform(-0.3, 0.3)),
            offset_arcsec=(0.0, 0.0),
            psf_fwhm=tuple(base_fwhm * rng.uniform(0.9, 1.1, nb)),
            psf_g=(0.0, 0.0),
            sky_sigma=(0.05,) * nb,
        )
        for k in range(n)
    ]


def bench_stamps(size: int, n: int, repeats: int) -> dict[str, float]:
    """Single-process stamps (one object in one band) per second, per survey."""
    out = {}
    for survey in SURVEYS:
        sv = SURVEYS[survey]
        specs = _specs(survey, n, np.random.default_rng(1))
        render_stamp(specs[0], sv, size, 3.5)  # warm the PSF tables and Sersic caches
        rates = []
        for _ in range(repeats):
            t = time.perf_counter()
            for s in specs:
                render_stamp(s, sv, size, 3.5)
            rates.append(n * len(sv.bands) / (time.perf_counter() - t))
        out[survey] = statistics.median(rates)
    return out


def bench_default_sky(threads: int, repeats: int) -> tuple[float, int]:
    cfg = load_config(REPO / "config" / "config.yaml", SCHEMA_PATH)
    times, stamps = [], 0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            report = simulate_sky(cfg, Path(tmp) / "raw", Path(tmp) / "raw" / "truth.parquet", threads=threads)
            times.append(time.perf_counter() - t)
            stamps = report.stamps
    return statistics.median(times), stamps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 160])
    parser.add_argument("--objects", type=int, default=150)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; repeats={args.repeats} (medians)")
    for size in args.sizes:
        for survey, rate in bench_stamps(size, args.objects, args.repeats).items():
            print(f"stamps/s  single process  {survey:13s} {size:4d}x{size:<4d} {rate:8.0f}")
    wall, stamps = bench_default_sky(args.threads, args.repeats)
    print(
        f"default sky (config/config.yaml): {wall:.1f} s wall with {args.threads} processes, "
        f"{stamps} stamps -> {stamps / wall:.0f} stamps/s end to end"
    )


if __name__ == "__main__":
    main()
