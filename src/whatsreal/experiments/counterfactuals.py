"""Fig 6: counterfactual reconstructions, their MSE, and the generated images as FITS.

The paper's number (0.081 HSC-anchored, 0.197 Legacy-anchored, preprocessed
units) is the MSE of the posterior *samples* against the real target, averaged
over samples and galaxies; the posterior mean's MSE is reported beside it (it is
lower, because averaging removes the generated noise that the real target also
has independently).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from whatsreal.data.preprocess import model_pixel_scale, model_pixels_to_flux
from whatsreal.data.stages import read_normalisation
from whatsreal.experiments.metrics import counterfactual_mse
from whatsreal.experiments.posterior_file import load_posterior
from whatsreal.fits_images import NATIVE_BUNIT, write_image_fits
from whatsreal.io import write_csv
from whatsreal.plots.generative import plot_counterfactuals
from whatsreal.surveys import SURVEY_ORDER

__all__ = ["MSE_COLUMNS", "direction_label", "run_counterfactuals", "write_fits"]

log = logging.getLogger(__name__)

MSE_COLUMNS = ("direction", "n_galaxies", "n_samples", "mse_samples", "mse_posterior_mean")


def direction_label(anchor: str) -> str:
    """'legacysurvey->hsc' for the HSC-anchored direction (the physics view comes from Legacy)."""
    others = [s for s in SURVEY_ORDER if s != anchor]
    return f"{'+'.join(others)}->{anchor}"


def write_fits(
    post: dict[str, np.ndarray], path: str | Path, sample_cfg: dict, preprocess_cfg: dict, meta: str | Path
) -> None:
    """One FITS per direction (whatsreal.fits_images' layout), written atomically: per galaxy
    the posterior mean, its samples (``<id>_SAMPLES``) and the real target (``<id>_TARGET``),
    in the anchor survey's own flux units on the model grid, with a celestial WCS centred on
    the galaxy. ``meta``: the anchor survey's metadata (positions, fitted normalisation)."""
    anchor = post["direction"]
    table = pd.read_parquet(meta, columns=["pair", "object_id", "ra", "dec"]).set_index("pair")
    rows = table.loc[post["pair"]]
    norm = read_normalisation(meta)
    mean, std = float(norm["norm_mean"]), float(norm["norm_std"])
    write_image_fits(
        path,
        model_pixels_to_flux(post["samples"], anchor, preprocess_cfg, mean, std),
        survey=anchor,
        bands=list(preprocess_cfg["bands"]),
        ra=rows["ra"].to_numpy(),
        dec=rows["dec"].to_numpy(),
        object_id=[str(i) for i in post["object_id"]],
        pixel_scale_arcsec=model_pixel_scale(anchor, preprocess_cfg),
        bunit=NATIVE_BUNIT[anchor],
        header_extra={
            "DIRECTN": direction_label(anchor),
            "SAMPLER": str(sample_cfg["method"]),
            "STEPS": int(sample_cfg["steps"]),
        },
        sample_axis=True,
        references=model_pixels_to_flux(post["target"], anchor, preprocess_cfg, mean, std),
    )


def _fits_for(direction: str, fits_paths: list[str | Path], position: int) -> Path:
    """The FITS output named for ``direction`` (``..._{direction}.fits``), else the same position."""
    named = [Path(p) for p in fits_paths if Path(p).stem.endswith(f"_{direction}")]
    if len(named) == 1:
        return named[0]
    if position < len(fits_paths):
        return Path(fits_paths[position])
    raise ValueError(f"no FITS output given for direction '{direction}' (got {list(map(str, fits_paths))})")


def _mse_row(post: dict[str, np.ndarray]) -> dict:
    """The table row (``MSE_COLUMNS``) of one direction."""
    mse_s, mse_m = counterfactual_mse(post["samples"], post["target"])
    n, s = post["samples"].shape[:2]
    log.info(
        "%s-anchored (%s): MSE of samples %.4f, of the posterior mean %.4f over %d galaxies x %d samples",
        *(post["direction"], direction_label(post["direction"]), mse_s, mse_m, n, s),
    )
    return {
        "direction": post["direction"],
        "n_galaxies": n,
        "n_samples": s,
        "mse_samples": mse_s,
        "mse_posterior_mean": mse_m,
    }


def run_counterfactuals(
    counterfactuals_cfg: dict,
    sample_cfg: dict,
    preprocess_cfg: dict,
    posterior: list[str | Path],
    meta: Mapping[str, str | Path],
    figure: str | Path,
    table: str | Path,
    fits: list[str | Path],
) -> pd.DataFrame:
    """Fig 6, tables/counterfactual_mse.csv and one FITS per direction from the posterior npz files.

    ``counterfactuals_cfg``: ``experiments.counterfactuals`` (n_show); ``sample_cfg``: ``sample``
    (recorded in the FITS headers); ``preprocess_cfg``: ``preprocess`` (bands, and the inverse
    that turns model pixels back into flux); ``meta``: ``{survey: metadata file}``."""
    posts = [load_posterior(p) for p in posterior]
    bands = list(preprocess_cfg["bands"])
    rows = []
    for i, post in enumerate(posts):
        rows.append(_mse_row(post))
        write_fits(post, _fits_for(post["direction"], fits, i), sample_cfg, preprocess_cfg, meta[post["direction"]])
    df = pd.DataFrame(rows, columns=list(MSE_COLUMNS))
    write_csv(df, table)
    plot_counterfactuals(posts, int(counterfactuals_cfg["n_show"]), bands, figure)
    return df
