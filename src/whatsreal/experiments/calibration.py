"""Fig 9 left: pixel-wise calibration of the posterior samples.

Z = (x - mean(x_hat)) / std(x_hat) per pixel, with the mean and the unbiased
(ddof=1) std over a galaxy's S samples and x the real target pixel. If the
posterior were exact, Z would still not be N(0, 1) with finitely many samples:
x - mean is N(0, sigma^2 (1 + 1/S)) and the sample std makes it Student-t with
S-1 degrees of freedom, so std(Z) = sqrt((1 + 1/S) (S-1)/(S-3)) (1.05 for the
paper's 32 samples, 1.25 for 8). That reference is written beside the measured
std (``z_std_ideal``) so a number "slightly above 1" can be read correctly.
Pixels whose samples are all identical (std 0) have no Z and are left out (counted).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from whatsreal.experiments.posterior_file import load_posterior
from whatsreal.io import write_csv
from whatsreal.plots.generative import plot_calibration

__all__ = ["CALIBRATION_COLUMNS", "ideal_z_std", "pixel_z", "run_calibration"]

log = logging.getLogger(__name__)

CALIBRATION_COLUMNS = ("direction", "n_pixels", "z_mean", "z_std")


def ideal_z_std(n_samples: int) -> float:
    """std(Z) of an exactly calibrated Gaussian posterior estimated from ``n_samples`` samples."""
    s = int(n_samples)
    if s <= 3:
        return float("inf")
    return float(np.sqrt((1 + 1 / s) * (s - 1) / (s - 3)))


def pixel_z(samples: np.ndarray, target: np.ndarray, chunk: int = 32) -> tuple[np.ndarray, int]:
    """Flattened Z of every pixel with a non-zero sample std, and the number left out.

    ``samples`` (n, S, ...), ``target`` (n, ...); galaxies processed ``chunk`` at a time."""
    if samples.shape[1] < 2:
        raise ValueError(f"calibration needs at least 2 samples per galaxy, got {samples.shape[1]}")
    zs, dropped = [], 0
    for start in range(0, len(target), chunk):
        s = samples[start : start + chunk].astype(np.float64)
        t = target[start : start + chunk].astype(np.float64)
        mean = s.mean(axis=1)
        std = s.std(axis=1, ddof=1)
        ok = std > 0
        dropped += int((~ok).sum())
        zs.append(((t - mean)[ok] / std[ok]).ravel())
    return np.concatenate(zs), dropped


def run_calibration(posterior: list[str | Path], figure: str | Path, table: str | Path) -> pd.DataFrame:
    """Fig 9 left and tables/calibration.csv (contract columns, then n_samples and z_std_ideal)."""
    rows, zs = [], {}
    for path in posterior:
        post = load_posterior(path)
        z, dropped = pixel_z(post["samples"], post["target"])
        s = post["samples"].shape[1]
        direction = post["direction"]
        zs[direction] = z
        rows.append(
            {
                "direction": direction,
                "n_pixels": int(z.size),
                "z_mean": float(z.mean()),
                "z_std": float(z.std()),
                "n_samples": s,
                "z_std_ideal": ideal_z_std(s),
            }
        )
        log.info(
            "%s-anchored: Z mean %.3f, std %.3f over %d pixels (%d with zero sample std left out); "
            "an exactly calibrated posterior gives std %.3f with %d samples",
            direction,
            rows[-1]["z_mean"],
            rows[-1]["z_std"],
            z.size,
            dropped,
            rows[-1]["z_std_ideal"],
            s,
        )
    df = pd.DataFrame(rows)
    write_csv(df, table)
    plot_calibration(zs, df, figure)
    return df
