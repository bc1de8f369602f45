"""A look at the simulated sky: matched cutouts and the observing-condition maps.

It reads the MMU shards through the same reader the pipeline uses, so a broken
file shows up here first.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from astropy.visualization import make_lupton_rgb

from whatsreal.data.mmu import read_catalog, read_images
from whatsreal.io import atomic_path
from whatsreal.surveys import SURVEYS

__all__ = ["choose_pairs", "pair_stretch", "plot_sky", "rgb_cutout", "surface_brightness"]

RGB_BANDS = ("i", "r", "g")
"""Bands shown as red, green, blue."""


def surface_brightness(image: np.ndarray, survey: str) -> np.ndarray:
    """Cutout in nanomaggies per square arcsecond: the unit in which HSC and Legacy
    pixels of the same sky agree despite different zero-points and pixel sizes."""
    s = SURVEYS[survey]
    return np.nan_to_num(image) * 10 ** (-0.4 * (s.zero_point - 22.5)) / s.pixel_scale**2


def rgb_cutout(image: np.ndarray, survey: str, stretch: float, q: float = 8.0) -> np.ndarray:
    """Arcsinh (Lupton) colour image of one (B, S, S) cutout in surface-brightness
    units, so a pair drawn with one ``stretch`` is directly comparable."""
    s = SURVEYS[survey]
    sb = surface_brightness(image, survey)
    return make_lupton_rgb(*(sb[s.band_index(b)] for b in RGB_BANDS), stretch=stretch, Q=q)


def pair_stretch(images: list[np.ndarray], surveys: list[str]) -> float:
    """One stretch for all views of a galaxy: a fraction of the brightest r-band surface brightness."""
    peak = max(
        float(np.percentile(surface_brightness(img, s)[SURVEYS[s].band_index("r")], 99.5))
        for img, s in zip(images, surveys, strict=True)
    )
    return max(peak / 3.0, 1e-6)


def choose_pairs(truth: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Galaxies seen by both surveys: every lens and merger first (up to half the
    grid), then the rest spread evenly in brightness."""
    both = truth[truth["in_hsc"] & truth["in_legacysurvey"]]
    rng = np.random.default_rng(seed)
    rare = both[both["galaxy_class"].astype(str) != "normal"]
    rare = rare.iloc[rng.permutation(len(rare))[: n // 2]]
    normal = both[both["galaxy_class"].astype(str) == "normal"].sort_values("mag_r")
    picks = np.linspace(0, len(normal) - 1, max(n - len(rare), 0)).round().astype(int) if len(normal) else []
    return pd.concat([rare, normal.iloc[np.unique(picks)]]).head(n)


def _images_for(raw_dir: Path, survey: str, ids: list, catalog: pd.DataFrame) -> list[np.ndarray]:
    key = catalog["object_id"].astype(str)
    out = []
    for oid in ids:
        row = catalog[key == str(oid)].iloc[0]
        out.append(read_images(raw_dir / survey / row["file"], [row["row"]])["image_array"][0])
    return out


def plot_sky(raw_dir: str | Path, truth_path: str | Path, out_png: str | Path, n_pairs: int = 8, seed: int = 0) -> None:
    """Write the sky overview figure to ``out_png`` (atomically)."""
    raw_dir = Path(raw_dir)
    truth = pd.read_parquet(truth_path)
    cats = {s: read_catalog(raw_dir / s, columns=["object_id", "ra", "dec"]) for s in SURVEYS}
    pairs = choose_pairs(truth, n_pairs, seed)
    n = len(pairs)
    fig = plt.figure(figsize=(2.0 * max(n, 5), 9.5))
    grid = fig.add_gridspec(3, 1, height_ratios=[1, 1, 1.5], hspace=0.35)
    top = grid[0:2].subgridspec(2, max(n, 1), wspace=0.05, hspace=0.25)
    images = {s: _images_for(raw_dir, s, pairs[f"{s}_object_id"].tolist(), cats[s]) for s in SURVEYS}
    stretches = [pair_stretch([images[s][j] for s in SURVEYS], list(SURVEYS)) for j in range(n)]
    for srow, survey in enumerate(SURVEYS):
        sv = SURVEYS[survey]
        for j, (img, (_, row)) in enumerate(zip(images[survey], pairs.iterrows(), strict=True)):
            ax = fig.add_subplot(top[srow, j])
            half = img.shape[-1] * sv.pixel_scale / 2
            ax.imshow(rgb_cutout(img, survey, stretches[j]), origin="lower", extent=(-half, half, -half, half))
            ax.set_xticks([])
            ax.set_yticks([])
            if srow == 0:
                ax.set_title(f"{row['galaxy_class']}  r={row['mag_r']:.1f}\nz={row['redshift']:.2f}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f'{survey}\n{2 * half:.1f}" field', fontsize=9)
    maps = grid[2].subgridspec(1, 5, wspace=0.45)
    panels = [
        ("hsc", "hsc_psf_fwhm_r", 'HSC PSF FWHM r ["]'),
        ("legacysurvey", "legacysurvey_psf_fwhm_r", 'Legacy PSF FWHM r ["]'),
        ("hsc", "hsc_psfdepth_mag_r", "HSC 5σ PSF depth r [mag]"),
        ("legacysurvey", "legacysurvey_psfdepth_mag_r", "Legacy 5σ PSF depth r [mag]"),
        (None, "ebv", "E(B-V) (shared) [mag]"),
    ]
    for k, (survey, col, title) in enumerate(panels):
        ax = fig.add_subplot(maps[0, k])
        sel = truth[f"in_{survey}"] if survey else truth["in_hsc"] | truth["in_legacysurvey"]
        ra_col = f"{survey}_ra" if survey else "ra"
        dec_col = f"{survey}_dec" if survey else "dec"
        sub = truth[sel]
        sc = ax.scatter(sub[ra_col], sub[dec_col], c=sub[col], s=3, cmap="viridis", rasterized=True)
        ax.invert_xaxis()
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("RA [deg]", fontsize=8)
        if k == 0:
            ax.set_ylabel("Dec [deg]", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_aspect(1 / np.cos(np.radians(truth["dec"].mean())))
        fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
    counts = {s: int(truth[f"in_{s}"].sum()) for s in SURVEYS}
    both = int((truth["in_hsc"] & truth["in_legacysurvey"]).sum())
    fig.suptitle(
        f"Synthetic sky: {counts['hsc']} HSC, {counts['legacysurvey']} Legacy objects, {both} in both "
        "(top: matched cutouts, arcsinh g/r/i colour; bottom: observing conditions)",
        fontsize=11,
    )
    _save(fig, Path(out_png))


def _save(fig: plt.Figure, path: Path) -> None:
    try:
        with atomic_path(path, ".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
