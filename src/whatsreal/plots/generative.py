"""Figures of the generative experiments: Fig 6 (counterfactuals), Fig 7 (noise model),
Fig 8 (spatial structure) and Fig 9 left (calibration).

Images are shown as g/r/i colour composites (R = i, G = r, B = g) of the
preprocessed (arcsinh, standardised) pixels with one linear stretch per row,
taken from the row's real image of the target survey, so that a generated
image that is noisier, smoother or brighter than the truth looks it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FormatStrFormatter
from scipy.stats import t as student_t

from whatsreal.io import atomic_path

if TYPE_CHECKING:  # the experiment imports this module: its result types only for annotations
    from whatsreal.experiments.noise_model import ArtifactPanel, SlopeFit, SlopePanel, Traversal

__all__ = [
    "GENERATED_COLOUR",
    "SURVEY_LABEL",
    "TRUTH_COLOUR",
    "colour_image",
    "plot_calibration",
    "plot_counterfactuals",
    "plot_noise_model",
    "plot_spatial_structure",
    "row_stretch",
    "save",
]

SURVEY_LABEL = {"hsc": "HSC", "legacysurvey": "Legacy"}
TRUTH_COLOUR = "#0072B2"  # Okabe-Ito blue
GENERATED_COLOUR = "#E69F00"  # Okabe-Ito orange
DPI = 110


def rgb_bands(bands: list[str] | tuple[str, ...] | None) -> tuple[int, int, int]:
    """Channel indices shown as (R, G, B): i, r, g when present, else the first three reversed."""
    bands = list(bands or ["g", "r", "i", "z"])
    if all(b in bands for b in ("g", "r", "i")):
        return bands.index("i"), bands.index("r"), bands.index("g")
    return 2, 1, 0


def row_stretch(reference: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.7) -> tuple[float, float]:
    """(lo, hi) display limits from a reference image's pixels (all bands together, keeping colour)."""
    finite = reference[np.isfinite(reference)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [lo_pct, hi_pct])
    return float(lo), float(max(hi, lo + 1e-6))


def colour_image(image: np.ndarray, lo: float, hi: float, rgb: tuple[int, int, int] = (2, 1, 0)) -> np.ndarray:
    """(C, H, W) preprocessed image -> (H, W, 3) in [0, 1] with a linear stretch."""
    x = np.stack([image[c] for c in rgb], axis=-1)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _show(ax: plt.Axes, image: np.ndarray | None, lo: float, hi: float, rgb: tuple[int, int, int]) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if image is None:
        ax.set_axis_off()
        return
    ax.imshow(colour_image(image, lo, hi, rgb), origin="lower", interpolation="nearest")


def _strip(
    fig: plt.Figure, cell: object, images: np.ndarray, lo: float, hi: float, rgb: tuple[int, int, int]
) -> list[plt.Axes]:
    """Small thumbnails of ``images`` (k, C, H, W) in two rows inside one gridspec cell."""
    k = len(images)
    cols = max(1, (k + 1) // 2)
    grid = cell.subgridspec(2 if k > 1 else 1, cols, wspace=0.04, hspace=0.04)
    axes = []
    for m in range(k):
        ax = fig.add_subplot(grid[m // cols, m % cols])
        _show(ax, images[m], lo, hi, rgb)
        axes.append(ax)
    return axes


def save(fig: plt.Figure, path: str | Path) -> None:
    """Save atomically at the project's figure resolution and close."""
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def _counterfactual_row(
    fig: plt.Figure, gs: object, i: int, post: dict[str, np.ndarray], n_nb: int, rgb: tuple[int, int, int]
) -> None:
    """Galaxy ``i`` of one direction: physics input, neighbours, truth, two samples, mean."""
    anchor = post["direction"]
    other = next(s for s in SURVEY_LABEL if s != anchor)
    target = post["target"][i]
    lo, hi = row_stretch(target)
    plo, phi = row_stretch(post["physics"][i])
    ax = fig.add_subplot(gs[i, 0])
    _show(ax, post["physics"][i], plo, phi, rgb)
    ax.set_ylabel(f"{SURVEY_LABEL[other]}→{SURVEY_LABEL[anchor]}\npair {int(post['pair'][i])}", fontsize=8)
    if i == 0:
        ax.set_title(f"physics input\n({SURVEY_LABEL[other]} view)", fontsize=8)
    for j in range(n_nb):
        ax = fig.add_subplot(gs[i, 1 + j])
        real = j < post["instrument"].shape[1] and bool(post["instrument_mask"][i, j])
        _show(ax, post["instrument"][i, j] if real else None, lo, hi, rgb)
        if i == 0 and j == n_nb // 2:
            ax.set_title(f"instrument inputs\n({SURVEY_LABEL[anchor]} neighbours)", fontsize=8)
    samples = post["samples"][i]
    mean = samples.mean(axis=0)
    mse_mean = float(((mean - target) ** 2).mean())
    panels = [
        (target, f"ground truth\n({SURVEY_LABEL[anchor]})"),
        (samples[0], "posterior\nsample 1"),
        (samples[min(1, len(samples) - 1)], "posterior\nsample 2"),
        (mean, f"posterior mean\n({len(samples)} samples)"),
    ]
    for j, (img, title) in enumerate(panels):
        ax = fig.add_subplot(gs[i, 1 + n_nb + j])
        _show(ax, img, lo, hi, rgb)
        if i == 0:
            ax.set_title(title, fontsize=8)
        if j == 3:
            ax.text(0.03, 0.04, f"MSE {mse_mean:.3f}", transform=ax.transAxes, color="white", fontsize=7, va="bottom")


def plot_counterfactuals(
    posteriors: list[dict[str, np.ndarray]], n_show: int, bands: list[str] | None, path: str | Path
) -> None:
    """Fig 6: per direction, ``n_show`` galaxies: physics input, up to 5 instrument neighbours
    (small), ground truth, two posterior samples, posterior mean.

    ``posteriors``: per direction the arrays of the posterior npz contract
    (:func:`whatsreal.experiments.posterior_file.load_posterior`)."""
    rgb = rgb_bands(bands)
    n_nb = min(max(p["instrument"].shape[1] for p in posteriors), 5)
    shown = [min(n_show, len(p["pair"])) for p in posteriors]
    widths = [1.0] + [0.5] * n_nb + [1.0] * 4
    height = 1.75 * sum(shown) + 0.75 * len(posteriors)
    fig = plt.figure(figsize=(1.6 * sum(widths) + 0.8, height))
    outer = fig.add_gridspec(len(posteriors), 1, height_ratios=shown, hspace=0.5 / max(shown), top=1 - 0.7 / height)
    for d, p in enumerate(posteriors):
        gs = outer[d].subgridspec(shown[d], len(widths), width_ratios=widths, wspace=0.05, hspace=0.08)
        for i in range(shown[d]):
            _counterfactual_row(fig, gs, i, p, n_nb, rgb)
    fig.suptitle(
        "Fig 6 — counterfactual cross-instrument reconstructions of held-out galaxies "
        "(g/r/i composite of preprocessed pixels; one stretch per row)",
        fontsize=10,
        y=1 - 0.15 / height,
    )
    save(fig, path)


AXIS_LABEL = {"sky_sigma": "sky σ", "psf_fwhm": "PSF FWHM"}
STAT_LABEL = {"sky_sigma": "background noise σ", "psf_fwhm": "source size (adaptive-moment σ, px)"}


def _fit_line(ax: plt.Axes, x: np.ndarray, y: np.ndarray, slope: float, **style: object) -> None:
    """Draw a log-log line of ``slope`` through the geometric mean of the finite positive points."""
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if not ok.any() or not np.isfinite(slope):
        return
    lx, ly = np.log(x[ok]), np.log(y[ok])
    grid = np.linspace(lx.min(), lx.max(), 20)
    ax.plot(np.exp(grid), np.exp(ly.mean() + slope * (grid - lx.mean())), **style)


def _ci_text(fit: SlopeFit) -> str:
    if not np.isfinite(fit.slope):
        return "n/a"
    if np.isfinite(fit.ci_lo):
        return f"{fit.slope:.2f} [{fit.ci_lo:.2f}, {fit.ci_hi:.2f}]"
    return f"{fit.slope:.2f}"


def _scatter_panel(ax: plt.Axes, panel: SlopePanel) -> None:
    """Output statistic vs the conditioning set's true value, per galaxy, with the real-image reference."""
    ax.scatter(panel.real_x, panel.real_y, s=4, color=TRUTH_COLOUR, alpha=0.35, lw=0)
    for g in np.unique(panel.groups):
        sel = panel.groups == g
        order = np.argsort(panel.x[sel])
        ax.plot(panel.x[sel][order], panel.y[sel][order], "-o", color=GENERATED_COLOUR, alpha=0.35, lw=0.6, ms=2)
    _fit_line(ax, panel.real_x, panel.real_y, panel.real_fit.slope, color=TRUTH_COLOUR, lw=1.6, ls="--")
    _fit_line(ax, panel.x, panel.y, panel.fit.slope, color="#B35806", lw=2.0)
    ax.plot([], [], "-o", color=GENERATED_COLOUR, ms=3, label=f"generated, {panel.fit.n_groups} galaxies")
    ax.plot([], [], color="#B35806", lw=2.0, label=f"slope {_ci_text(panel.fit)}")
    ax.plot([], [], "o--", color=TRUTH_COLOUR, ms=3, label=f"real images: slope {_ci_text(panel.real_fit)}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers: the range is a factor of a few, not decades
        axis.set_major_formatter(FormatStrFormatter("%.3g"))
        axis.set_minor_formatter(FormatStrFormatter("%.3g"))
    other = next(s for s in SURVEY_LABEL if s != panel.direction)
    ax.set_title(
        f"{SURVEY_LABEL[other]}→{SURVEY_LABEL[panel.direction]}: {STAT_LABEL[panel.axis].split(' (')[0]}",
        fontsize=8,
    )
    ax.set_xlabel(f"conditioning set's true {AXIS_LABEL[panel.axis]} (members' mean)", fontsize=7)
    ax.set_ylabel(STAT_LABEL[panel.axis] + " (preprocessed)", fontsize=7)
    ax.tick_params(labelsize=6, which="both")
    ax.legend(fontsize=6, frameon=False, loc="best")


def _traversal_rows(
    fig: plt.Figure, cell: object, traversal: Traversal, n_cols: int, rgb: tuple[int, int, int]
) -> None:
    """Fig 7 top: per axis, the physics input, the real image and the output of every set,
    each above thumbnails of its set's images."""
    rows = traversal.rows
    n_rows = max(len(rows), 1)
    top = cell.subgridspec(2 * n_rows, n_cols, height_ratios=[1.0, 0.55] * n_rows, wspace=0.06, hspace=0.4)
    lo, hi = row_stretch(traversal.truth)
    plo, phi = row_stretch(traversal.physics)
    anchor, other = SURVEY_LABEL[traversal.direction], SURVEY_LABEL[traversal.other]
    for r, row in enumerate(rows):
        stat_name = "noise σ" if row.axis == "sky_sigma" else "size"
        ax = fig.add_subplot(top[2 * r, 0])
        _show(ax, traversal.physics, plo, phi, rgb)
        ax.set_title(f"physics input\n({other} view)", fontsize=8)
        ax.set_ylabel(f"{traversal.label}\n{AXIS_LABEL[row.axis]} sets", fontsize=8)
        ax = fig.add_subplot(top[2 * r, 1])
        _show(ax, traversal.truth, lo, hi, rgb)
        real_stat = traversal.truth_noise if row.axis == "sky_sigma" else traversal.truth_size
        ax.set_title(f"real {anchor} image\n{stat_name} {real_stat:.3f}", fontsize=8)
        for j in range(len(row.outputs)):
            ax = fig.add_subplot(top[2 * r, 2 + j])
            _show(ax, row.outputs[j], lo, hi, rgb)
            ax.set_title(
                f"P{row.percentiles[j]:g} {AXIS_LABEL[row.axis]} {row.values[j]:.3g}\n"
                f"output {stat_name} {row.statistic[j]:.3f}",
                fontsize=7,
            )
            n = int(row.n_members[j])
            thumbs = _strip(fig, top[2 * r + 1, 2 + j], row.conditioning[j][:n], lo, hi, rgb)
            if j == 0:
                thumbs[0].set_title(f"its {n} neighbour-set images", fontsize=7, loc="left")


def _artifact_rows(
    fig: plt.Figure, cell: object, artifacts: list[ArtifactPanel], n_cols: int, rgb: tuple[int, int, int]
) -> None:
    """Fig 7 bottom: per example the corrupted input, the reconstruction, the noiseless truth
    (when known) and the clean images the instrument encoder read."""
    bottom = cell.subgridspec(max(len(artifacts), 1), n_cols, wspace=0.06, hspace=0.3)
    for r, art in enumerate(artifacts):
        alo, ahi = row_stretch(art.clean if art.clean is not None else art.output)
        panels = [(art.input, f"physics input: HSC\n{art.label}"), (art.output, "reconstruction")]
        if art.clean is not None:
            panels.append((art.clean, "noiseless truth\n(simulator)"))
        for j, (img, title) in enumerate(panels):
            ax = fig.add_subplot(bottom[r, j])
            _show(ax, img, alo, ahi, rgb)
            ax.set_title(title, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"pair {art.pair}", fontsize=8)
        axes = _strip(fig, bottom[r, len(panels) : len(panels) + 2], art.instrument, alo, ahi, rgb)
        axes[len(axes) // 2 if len(axes) < 3 else 1].set_title("instrument inputs: random clean HSC images", fontsize=8)


def plot_noise_model(
    traversal: Traversal,
    scatter: list[SlopePanel],
    artifacts: list[ArtifactPanel],
    bands: list[str] | None,
    path: str | Path,
) -> None:
    """Fig 7: conditioning traversals of one galaxy (top), slope panels (middle), artefact removal (bottom)."""
    rgb = rgb_bands(bands)
    n_out = max((len(r.outputs) for r in traversal.rows), default=0)
    has_clean = any(a.clean is not None for a in artifacts)
    n_cols = max(n_out + 2, 5 + int(has_clean), 2 * len(scatter))
    n_art = len(artifacts)
    n_rows = max(len(traversal.rows), 1)
    height = 1.95 * 1.55 * n_rows + 3.4 + 1.95 * max(n_art, 1)
    fig = plt.figure(figsize=(1.9 * n_cols, height + 0.9))
    outer = fig.add_gridspec(
        3, 1, height_ratios=[1.55 * n_rows, 1.75, max(n_art, 1)], hspace=0.3, top=height / (height + 0.9), bottom=0.02
    )
    _traversal_rows(fig, outer[0], traversal, n_cols, rgb)
    mid = outer[1].subgridspec(1, max(len(scatter), 1), wspace=0.35)
    for c, panel in enumerate(scatter):
        _scatter_panel(fig.add_subplot(mid[0, c]), panel)
    _artifact_rows(fig, outer[2], artifacts, n_cols, rgb)
    anchor, other = SURVEY_LABEL[traversal.direction], SURVEY_LABEL[traversal.other]
    fig.suptitle(
        f"Fig 7 — data-driven noise model. Top: one {other} galaxy generated as {anchor} from a fixed x0, the "
        "instrument encoder conditioned on real spatial neighbour sets\nat percentiles of the true sky σ and PSF "
        "FWHM. Middle: log-log slopes over all galaxies against the real images' slope. Bottom: artefact-corrupted "
        "HSC images through the physics encoder.",
        fontsize=9,
        y=0.995,
    )
    save(fig, path)


def plot_spatial_structure(table: pd.DataFrame, path: str | Path) -> None:
    """Fig 8: per direction and band, the radial power spectrum and the autocorrelation,
    truth vs the posterior samples' mean with its 1-sigma band."""
    directions = list(dict.fromkeys(table["direction"]))
    bands = list(dict.fromkeys(table["band"]))
    fig, axes = plt.subplots(
        2 * len(directions), len(bands), figsize=(2.8 * len(bands), 2.5 * 2 * len(directions)), squeeze=False
    )
    for d, direction in enumerate(directions):
        for stat_i, stat in enumerate(("psd", "acf")):
            for b, band in enumerate(bands):
                ax = axes[2 * d + stat_i, b]
                sub = table[(table["direction"] == direction) & (table["band"] == band) & (table["statistic"] == stat)]
                x = sub["scale"].to_numpy()
                m, s = sub["posterior_mean"].to_numpy(), sub["posterior_std"].to_numpy()
                ax.plot(x, sub["truth"], color=TRUTH_COLOUR, lw=1.5, label="ground truth")
                ax.plot(x, m, color=GENERATED_COLOUR, ls="--", lw=1.5, label="posterior samples (mean)")
                ax.fill_between(x, m - s, m + s, color=GENERATED_COLOUR, alpha=0.3, lw=0, label="±1σ across samples")
                if stat == "psd":
                    ax.set_yscale("log")
                    ax.set_xlabel("spatial frequency [cycles / pixel]", fontsize=7)
                    ax.set_ylabel("power", fontsize=7)
                else:
                    ax.axhline(0, color="0.6", lw=0.5)
                    ax.set_xlabel("lag [pixels]", fontsize=7)
                    ax.set_ylabel("autocorrelation", fontsize=7)
                anchor = direction
                other = next(s_ for s_ in SURVEY_LABEL if s_ != anchor)
                ax.set_title(f"{SURVEY_LABEL[other]}→{SURVEY_LABEL[anchor]}, {band} band: {stat.upper()}", fontsize=8)
                ax.tick_params(labelsize=6)
                if d == 0 and stat_i == 0 and b == 0:
                    ax.legend(fontsize=6, frameon=False)
    fig.suptitle(
        "Fig 8 — spatial structure: radially averaged power spectrum and autocorrelation, "
        "ground truth vs generated (mean over galaxies)",
        fontsize=10,
    )
    fig.tight_layout()
    save(fig, path)


def plot_calibration(z_by_direction: dict[str, np.ndarray], stats: pd.DataFrame, path: str | Path) -> None:
    """Fig 9 left: histogram of the pixel-wise Z per direction against N(0, 1)."""
    fig, ax = plt.subplots(figsize=(6.0, 4.6))
    grid = np.linspace(-6, 6, 481)
    styles = {"hsc": ("#D55E00", "-"), "legacysurvey": ("#009E73", "--")}
    for direction, z in z_by_direction.items():
        row = stats[stats["direction"] == direction].iloc[0]
        colour, ls = styles.get(direction, ("#CC79A7", "-"))
        other = next(s for s in SURVEY_LABEL if s != direction)
        outside = float(np.mean(np.abs(z) > 6))
        ax.hist(
            z,
            bins=120,
            range=(-6, 6),
            density=True,
            histtype="step",
            color=colour,
            ls=ls,
            lw=1.5,
            label=f"{SURVEY_LABEL[other]}→{SURVEY_LABEL[direction]}: std {row['z_std']:.2f}, "
            f"mean {row['z_mean']:+.2f} ({outside:.2%} beyond ±6)",
        )
    ax.plot(grid, np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), color="k", lw=1, label="N(0, 1)")
    n_s = int(stats["n_samples"].iloc[0]) if "n_samples" in stats else 0
    if n_s > 3:  # what an exactly calibrated posterior gives with n_s samples: a scaled Student t
        a = np.sqrt(1 + 1 / n_s)
        ax.plot(
            grid, student_t.pdf(grid / a, n_s - 1) / a, color="0.5", lw=1, ls=":", label=f"calibrated, {n_s} samples"
        )
    ax.set_yscale("log")
    ax.set_ylim(1e-5, 1)
    ax.set_xlim(-6, 6)
    ax.set_xlabel("Z = (truth − posterior mean) / posterior std")
    ax.set_ylabel("density")
    ideal = f"\n(a calibrated posterior gives std {stats['z_std_ideal'].iloc[0]:.2f} with {n_s} samples)" if n_s else ""
    ax.set_title(f"Fig 9 — pixel-wise Z of the real target under the posterior samples{ideal}", fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.tight_layout()
    save(fig, path)
