"""A look at the simulated sky: matched cutouts, the observing-condition maps, and the
conditions' distributions against the published survey numbers.

It reads the MMU shards through the same reader the pipeline uses, so a broken
file shows up here first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from astropy.visualization import make_lupton_rgb
from matplotlib.gridspec import SubplotSpec

from whatsreal.data.mmu import read_catalog, read_images
from whatsreal.io import atomic_path
from whatsreal.surveys import SURVEYS

__all__ = [
    "REFERENCE_DEPTH",
    "REFERENCE_SEEING",
    "choose_pairs",
    "pair_stretch",
    "plot_sky",
    "rgb_cutout",
    "surface_brightness",
]

RGB_BANDS = ("i", "r", "g")
"""Bands shown as red, green, blue."""
REFERENCE_SEEING = {
    "hsc": ("i", 0.6, (0.4, 1.0), 'published i: ~0.6" (0.4-1.0")\nAihara+2022 (PDR3)'),
    "legacysurvey": ("r", 1.3, (1.0, 2.0), 'published r: ~1.3" (1.0-2.0")\nDey+2019 (DECam)'),
}
"""Published seeing per survey: (band, median, (low, high) of the bulk of the distribution, source).
Literature values drawn against the configured sky, so a changed config shows how far it strays."""
REFERENCE_DEPTH = {
    "hsc": ({"g": 26.6, "r": 26.2, "i": 26.0, "z": 25.3, "y": 24.5}, "PDR3 Wide medians\nAihara+2022"),
    "legacysurvey": ({"g": 24.7, "r": 23.9, "z": 23.0}, "DECaLS goals g, r, z\nDey+2019"),
}
"""Published median 5-sigma point-source depths per band, with their source (~, see config/README.md)."""
BAND_COLOURS = {"g": "tab:blue", "r": "tab:green", "i": "tab:orange", "z": "tab:red", "y": "tab:brown"}


def surface_brightness(image: np.ndarray, survey: str) -> np.ndarray:
    """Cutout in nanomaggies per square arcsecond: the unit in which HSC and Legacy
    pixels of the same sky agree despite different zero-points and pixel sizes."""
    s = SURVEYS[survey]
    return np.nan_to_num(image) * 10 ** (-0.4 * (s.zero_point - 22.5)) / s.pixel_scale**2


def rgb_cutout(
    image: np.ndarray, survey: str, stretch: float, q: float = 8.0, bands: Sequence[str] | None = None
) -> np.ndarray:
    """Arcsinh (Lupton) colour image of one (B, S, S) cutout in surface-brightness
    units, so a pair drawn with one ``stretch`` is directly comparable.

    ``bands`` names the image's band axis (default: the survey's own order); it
    must hold g, r and i. Raw shards and figures of other experiments use it.
    """
    letters = list(SURVEYS[survey].bands if bands is None else bands)
    sb = surface_brightness(image, survey)
    return make_lupton_rgb(*(sb[letters.index(b)] for b in RGB_BANDS), stretch=stretch, Q=q)


def pair_stretch(images: list[np.ndarray], surveys: list[str], bands: Sequence[str] | None = None) -> float:
    """One stretch for all views of a galaxy: a fraction of the brightest r-band surface brightness.

    ``bands`` names the images' band axis (default: each survey's own order)."""
    peak = max(
        float(np.percentile(surface_brightness(img, s)[_r_position(s, bands)], 99.5))
        for img, s in zip(images, surveys, strict=True)
    )
    return max(peak / 3.0, 1e-6)


def _r_position(survey: str, bands: Sequence[str] | None) -> int:
    return list(SURVEYS[survey].bands if bands is None else bands).index("r")


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


def _images_for(root: Path, ids: list, catalog: pd.DataFrame) -> list[np.ndarray]:
    key = catalog["object_id"].astype(str)
    out = []
    for oid in ids:
        row = catalog[key == str(oid)].iloc[0]
        out.append(read_images(root / row["file"], [row["row"]])["image_array"][0])
    return out


def _condition_maps(fig: plt.Figure, cell: Any, truth: pd.DataFrame) -> None:
    """Middle row: seeing and depth of both surveys and the shared extinction across the footprint."""
    maps = cell.subgridspec(1, 5, wspace=0.45)
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


def plot_sky(
    raw: Mapping[str, str | Path] | str | Path,
    truth_path: str | Path,
    out_png: str | Path,
    n_pairs: int = 8,
    seed: int = 0,
) -> None:
    """Write the sky overview figure to ``out_png`` (atomically).

    ``raw``: each survey's MMU root (``{survey: directory}``), or their common parent in the
    MMU layout (``<raw>/<survey>/healpix=*/``)."""
    roots = {s: Path(raw[s]) for s in SURVEYS} if isinstance(raw, Mapping) else {s: Path(raw) / s for s in SURVEYS}
    truth = pd.read_parquet(truth_path)
    cats = {s: read_catalog(roots[s], columns=["object_id", "ra", "dec"]) for s in SURVEYS}
    pairs = choose_pairs(truth, n_pairs, seed)
    n = len(pairs)
    fig = plt.figure(figsize=(2.0 * max(n, 6), 13.0))
    grid = fig.add_gridspec(4, 1, height_ratios=[1, 1, 1.5, 1.5], hspace=0.65)
    top = grid[0:2].subgridspec(2, max(n, 1), wspace=0.05, hspace=0.25)
    images = {s: _images_for(roots[s], pairs[f"{s}_object_id"].tolist(), cats[s]) for s in SURVEYS}
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
    _condition_maps(fig, grid[2], truth)
    _condition_histograms(fig, grid[3], truth)
    counts = {s: int(truth[f"in_{s}"].sum()) for s in SURVEYS}
    both = int((truth["in_hsc"] & truth["in_legacysurvey"]).sum())
    fig.suptitle(
        f"Synthetic sky: {counts['hsc']} HSC, {counts['legacysurvey']} Legacy objects, {both} in both "
        "(top: matched cutouts, arcsinh g/r/i colour; middle: observing-condition maps; bottom: per-object "
        "distributions, published medians dashed, published ranges shaded)",
        fontsize=11,
    )
    _save(fig, Path(out_png))


def _spread(values: np.ndarray) -> str:
    p5, p50, p95 = np.percentile(values, [5, 50, 95])
    return f"median {p50:.3g}, 5-95% x{p95 / p5:.2f}"


def _condition_histograms(fig: plt.Figure, cell: SubplotSpec, truth: pd.DataFrame) -> None:
    """Per survey: per-object PSF FWHM, sky sigma and PSF depth per band, against the published numbers."""
    panels = cell.subgridspec(1, 6, wspace=0.5)
    for j, survey in enumerate(SURVEYS):
        t = truth[truth[f"in_{survey}"]]
        bands = SURVEYS[survey].bands
        ref_band, ref_median, (lo, hi), ref_label = REFERENCE_SEEING[survey]
        ax = fig.add_subplot(panels[0, 3 * j])
        for b in bands:
            ax.hist(t[f"{survey}_psf_fwhm_{b}"], bins=40, histtype="step", color=BAND_COLOURS[b], label=b)
        ax.axvspan(lo, hi, color=BAND_COLOURS[ref_band], alpha=0.12)
        ax.axvline(ref_median, color=BAND_COLOURS[ref_band], ls="--", lw=1.2)
        spread = _spread(t[f"{survey}_psf_fwhm_{ref_band}"].to_numpy())
        ax.set_title(f'{survey} PSF FWHM ["]\nours {ref_band}: {spread}\n{ref_label}', fontsize=7)
        ax.legend(fontsize=6, frameon=False)
        ax = fig.add_subplot(panels[0, 3 * j + 1])
        for b in bands:
            v = t[f"{survey}_sky_sigma_{b}"].to_numpy()
            ax.hist(np.log10(v / np.median(v)), bins=40, histtype="step", color=BAND_COLOURS[b])
        spread = _spread(t[f"{survey}_sky_sigma_{ref_band}"].to_numpy())
        ax.set_title(f"{survey} log10 sky sigma / median\nours {ref_band}: {spread}", fontsize=7)
        ax = fig.add_subplot(panels[0, 3 * j + 2])
        depths, depth_label = REFERENCE_DEPTH[survey]
        for b in bands:
            ax.hist(t[f"{survey}_psfdepth_mag_{b}"], bins=40, histtype="step", color=BAND_COLOURS[b])
            if b in depths:
                ax.axvline(depths[b], color=BAND_COLOURS[b], ls="--", lw=1.2)
        ax.set_title(f"{survey} 5σ PSF depth [mag]\npublished (dashed): {depth_label}", fontsize=7)
    for ax in fig.axes[-6:]:
        ax.tick_params(labelsize=6)
        ax.set_yticks([])


def _save(fig: plt.Figure, path: Path) -> None:
    try:
        with atomic_path(path, ".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
