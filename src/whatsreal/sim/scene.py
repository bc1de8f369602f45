"""Everything else that falls in a cutout: field stars, faint galaxies and catalogued neighbours.

Real cutouts are not one galaxy on blank noise. Every stamp also holds whatever
else the sky has there, seen through the same PSF and noise: other galaxies of the
population (catalogued or not), galaxies fainter than either survey's selection,
and Milky Way stars. Stars are the cleanest tracers of the PSF and faint galaxies
of the depth, which is what the instrument encoder should read.

- **Stars** (high Galactic latitude; the default patch sits at b ~ -45 deg): number
  counts N(<m) proportional to 10**(``count_slope`` m), ~0.15 dex/mag, between
  ``mag_min`` and ``mag_max`` in r, with ``density_per_arcmin2`` ~1 per arcmin^2 in that
  range: the order of magnitude of the Bahcall & Soneira (1980, ApJS 44, 73) model
  counts and of the star counts in deep high-latitude fields (~0.15 dex/mag is the
  halo-dominated faint slope; all ~). Stars brighter than ``mag_min`` would saturate
  the HSC coadds; they enter only as the flagged ``saturated_star`` artefact. Colours
  follow a schematic stellar locus (Covey et al. 2007, AJ 134, 2398, ~): blue halo
  turn-off stars (g-r ~0.45) and M dwarfs (g-r ~1.35, r-i 0.6-1.6).
- **Faint galaxies**: the population model stops at ``population.mag_max_render``;
  below it, galaxies with counts dN/dm = ``counts_per_arcmin2_per_mag`` at r = 24
  times 10**(``count_slope`` (r - 24)) down to ``mag_max``. Defaults ~10 per arcmin^2
  per mag at r = 24 and slope 0.3 (the faint optical counts compiled by Metcalfe et
  al. 2001, MNRAS 323, 795, and McCracken et al. 2001, A&A 376, 756: slope ~0.3-0.33
  for 20 < I_AB < 24; ~). They are exponential disks of half-light radius ~0.3" at
  r = 24, smaller when fainter, with blue star-forming colours (~).

Both are generated cell by cell (cells of :data:`CELL_ARCMIN`, each from its own
random stream keyed by the seed and the cell), only where a stamp needs them, so
the same source appears in both surveys' cutouts, memory stays bounded for any
patch, and the result does not depend on the order in which stamps are built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from whatsreal.sim.geometry import Patch
from whatsreal.sim.population import COMPANION_COLUMNS, LENS_GEOMETRY_COLUMNS
from whatsreal.sim.render import Galaxy, Star
from whatsreal.surveys import Survey

__all__ = ["CELL_ARCMIN", "Background", "StampContents", "stamp_contents", "star_magnitudes"]

CELL_ARCMIN = 1.0
"""Side of the cells in which stars and faint galaxies are generated (a partition, not a scale of the sky)."""
FAINT_REFERENCE_MAG = 24.0
"""r magnitude at which ``faint_galaxies.counts_per_arcmin2_per_mag`` is quoted."""
STREAM_STARS = 8
STREAM_FAINT = 9


def _power_law_mags(n: int, lo: float, hi: float, slope: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitudes in [lo, hi) with dN/dm proportional to 10**(slope m) (inverse CDF)."""
    if slope == 0:
        return rng.uniform(lo, hi, n)
    a, b = 10 ** (slope * lo), 10 ** (slope * hi)
    return np.log10(a + rng.uniform(size=n) * (b - a)) / slope


def star_magnitudes(r: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """grizy of stars of r magnitude ``r`` along a schematic high-latitude stellar locus."""
    n = r.size
    m_dwarf = rng.uniform(size=n) < 0.35
    g_r = np.where(m_dwarf, np.clip(rng.normal(1.35, 0.1, n), 1.1, 1.6), np.clip(rng.normal(0.45, 0.12, n), 0.2, 1.0))
    r_i = np.where(m_dwarf, rng.uniform(0.6, 1.6, n), 0.38 * g_r - 0.03 + rng.normal(0, 0.03, n))
    i_z = 0.48 * r_i + rng.normal(0, 0.03, n)
    z_y = 0.25 * i_z + 0.02 + rng.normal(0, 0.03, n)
    mags = {"g": r + g_r, "r": r, "i": r - r_i}
    mags["z"] = mags["i"] - i_z
    mags["y"] = mags["z"] - z_y
    return mags


def _truncated_rayleigh(sigma: float, n: int, rng: np.random.Generator, cap: float = 0.8) -> np.ndarray:
    e = rng.rayleigh(sigma, size=n)
    while np.any(bad := e > cap):
        e[bad] = rng.rayleigh(sigma, size=int(bad.sum()))
    return e


@dataclass
class Background:
    """Stars and faint galaxies of the patch, generated per cell on demand (deterministic per cell)."""

    sim: dict
    """The validated ``simulation`` config section."""
    patch: Patch
    ebv: Callable[[np.ndarray, np.ndarray], np.ndarray]
    """E(B-V) at patch offsets (arcmin): the sky's one dust foreground."""
    _cells: Callable[[str, int, int], dict[str, np.ndarray]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.nx = int(np.ceil(self.patch.width_arcmin / CELL_ARCMIN))
        self.ny = int(np.ceil(self.patch.height_arcmin / CELL_ARCMIN))
        # Stamps are built in sky order, so consecutive ones reuse cells; bounded for any patch.
        self._cells = lru_cache(maxsize=8192)(self._generate)

    def _generate(self, kind: str, i: int, j: int) -> dict[str, np.ndarray]:
        """The sources of one kind in cell (i, j): positions (arcmin offsets), r-band-led grizy, shapes."""
        seed = self.sim["seed"]
        x0 = -self.patch.width_arcmin / 2 + i * CELL_ARCMIN
        y0 = -self.patch.height_arcmin / 2 + j * CELL_ARCMIN
        w = min(CELL_ARCMIN, self.patch.width_arcmin / 2 - x0)
        h = min(CELL_ARCMIN, self.patch.height_arcmin / 2 - y0)
        if kind == "stars":
            cfg = self.sim["stars"]
            rng = np.random.default_rng([seed, STREAM_STARS, i, j])
            n = rng.poisson(cfg["density_per_arcmin2"] * w * h)
            r = _power_law_mags(n, cfg["mag_min"], cfg["mag_max"], cfg["count_slope"], rng)
            out = {f"mag_{b}": m for b, m in star_magnitudes(r, rng).items()}
        else:
            cfg = self.sim["faint_galaxies"]
            rng = np.random.default_rng([seed, STREAM_FAINT, i, j])
            lo, hi, slope = self.sim["population"]["mag_max_render"], cfg["mag_max"], cfg["count_slope"]
            per_mag = cfg["counts_per_arcmin2_per_mag"]
            # dN/dm = per_mag 10**(slope (m - 24)), integrated over [lo, hi).
            total = per_mag * (10 ** (slope * (hi - FAINT_REFERENCE_MAG)) - 10 ** (slope * (lo - FAINT_REFERENCE_MAG)))
            total = total / (slope * np.log(10)) if slope else per_mag * (hi - lo)
            n = rng.poisson(max(total, 0.0) * w * h) if hi > lo else 0
            r = _power_law_mags(n, lo, hi, slope, rng)
            colours = rng.normal([0.45, 0.3, 0.15, 0.05], [0.2, 0.15, 0.12, 0.1], size=(n, 4))
            mags = {"g": r + colours[:, 0], "r": r, "i": r - colours[:, 1]}
            mags["z"] = mags["i"] - colours[:, 2]
            mags["y"] = mags["z"] - colours[:, 3]
            out = {f"mag_{b}": m for b, m in mags.items()}
            log_re = np.log10(cfg["half_light_radius_arcsec"]) - 0.08 * (r - FAINT_REFERENCE_MAG)
            out["half_light_radius"] = np.clip(10 ** (log_re + rng.normal(0, 0.15, n)), 0.05, 1.5)
            emag = _truncated_rayleigh(self.sim["population"]["ellipticity_sigma"], n, rng)
            phi = rng.uniform(0, np.pi, n)
            out["e1"], out["e2"] = emag * np.cos(2 * phi), emag * np.sin(2 * phi)
        out["x"] = x0 + rng.uniform(0, w, n)
        out["y"] = y0 + rng.uniform(0, h, n)
        out["ebv"] = self.ebv(out["x"], out["y"]) if n else np.zeros(0)
        return out

    def in_box(self, kind: str, x0: float, x1: float, y0: float, y1: float) -> dict[str, np.ndarray]:
        """All sources of ``kind`` ('stars' or 'faint') whose cells meet the box (arcmin offsets)."""
        i0 = max(int(np.floor((x0 + self.patch.width_arcmin / 2) / CELL_ARCMIN)), 0)
        i1 = min(int(np.floor((x1 + self.patch.width_arcmin / 2) / CELL_ARCMIN)), self.nx - 1)
        j0 = max(int(np.floor((y0 + self.patch.height_arcmin / 2) / CELL_ARCMIN)), 0)
        j1 = min(int(np.floor((y1 + self.patch.height_arcmin / 2) / CELL_ARCMIN)), self.ny - 1)
        parts = [self._cells(kind, i, j) for i in range(i0, i1 + 1) for j in range(j0, j1 + 1)]
        if not parts:
            return {}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def all_stars(self) -> pd.DataFrame:
        """Every star of the patch (positions as arcmin offsets, intrinsic grizy, E(B-V))."""
        cells = [self._generate("stars", i, j) for i in range(self.nx) for j in range(self.ny)]
        return pd.DataFrame({k: np.concatenate([c[k] for c in cells]) for k in cells[0]})


@dataclass
class StampContents:
    """What each stamp of one survey holds besides its anchor, and counts for the truth table."""

    neighbours: list[tuple[Galaxy, ...]]
    stars: list[tuple[Star, ...]]
    counts: pd.DataFrame
    """n_neighbours, n_faint, n_stars (centres inside the stamp) and the brightest star's r."""


def _box_distance(dx: np.ndarray, dy: np.ndarray, half: float) -> np.ndarray:
    """Distance (arcsec) from the stamp's edge, 0 inside it."""
    return np.maximum(np.maximum(np.abs(dx) - half, np.abs(dy) - half), 0.0)


def _survey_mags(table: pd.DataFrame | dict, survey: Survey, idx: np.ndarray) -> np.ndarray:
    """(n, B) observed magnitudes in the survey's bands, Galactic extinction included."""
    mags = np.column_stack([np.asarray(table[f"mag_{b}"])[idx] for b in survey.bands])
    return mags + np.outer(np.asarray(table["ebv"])[idx], survey.extinction_coeff)


@dataclass
class _PopulationScene:
    """The population's columns a stamp's neighbours are drawn from, in one survey's bands."""

    x: np.ndarray
    y: np.ndarray
    re: np.ndarray
    mags: np.ndarray
    classes: np.ndarray
    companion: np.ndarray
    lens: np.ndarray
    sersic: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    source_mags: np.ndarray

    @classmethod
    def of(cls, pop: pd.DataFrame, survey: Survey, source_mags: np.ndarray) -> _PopulationScene:
        return cls(
            pop["x_arcmin"].to_numpy(),
            pop["y_arcmin"].to_numpy(),
            pop["half_light_radius_arcsec"].to_numpy(),
            _survey_mags(pop, survey, np.arange(len(pop))),
            pop["galaxy_class"].astype(str).to_numpy(),
            pop[list(COMPANION_COLUMNS)].to_numpy(),
            pop[list(LENS_GEOMETRY_COLUMNS)].to_numpy(),
            *(pop[c].to_numpy() for c in ("sersic_n", "e1", "e2")),
            source_mags,
        )

    def galaxy(self, j: int, ox: float, oy: float) -> Galaxy:
        """Population galaxy ``j`` at offset (ox, oy) arcsec from a stamp's centre."""
        is_merger, is_lens = self.classes[j] == "merger", self.classes[j] == "lens"
        return Galaxy(
            mags=tuple(map(float, self.mags[j])),
            offset_arcsec=(float(ox), float(oy)),
            half_light_radius=float(self.re[j]),
            sersic_n=float(self.sersic[j]),
            e1=float(self.e1[j]),
            e2=float(self.e2[j]),
            companion=tuple(map(float, self.companion[j])) if is_merger else None,
            lens=tuple(map(float, self.lens[j])) if is_lens else None,
            source_mags=tuple(map(float, self.source_mags[j])) if is_lens else None,
        )


def stamp_contents(
    survey: Survey,
    sim: dict,
    centres: tuple[np.ndarray, np.ndarray],
    anchors: np.ndarray,
    pop: pd.DataFrame,
    source_mags: np.ndarray,
    background: Background,
) -> StampContents:
    """The other sources in each stamp of ``survey``, as offsets from the stamp centre.

    ``centres`` are the stamps' centres (arcmin offsets: the measured positions),
    ``anchors`` the population row of each stamp's own galaxy (left out),
    ``source_mags`` the lensed sources' magnitudes in the survey's bands for every
    population row (NaN for non-lenses). A population galaxy or star is kept if it lies
    within ``scene_margin_arcsec`` of the stamp's edge (plus three half-light radii for a
    galaxy), so light that spills in from outside is there too; a faint galaxy (below
    the noise, compact) if it lies within one half-light radius of the stamp.
    """
    half = sim["cutout_size"] * survey.pixel_scale / 2  # arcsec
    margin = sim["scene_margin_arcsec"]
    cx, cy = (np.asarray(c, dtype=float) for c in centres)
    scene = _PopulationScene.of(pop, survey, source_mags)
    tree = cKDTree(np.column_stack([scene.x, scene.y]))
    reach = (np.sqrt(2) * half + margin + 3 * scene.re.max(initial=0.0)) / 60
    candidates = tree.query_ball_point(np.column_stack([cx, cy]), reach)

    neighbours: list[tuple[Galaxy, ...]] = []
    stars: list[tuple[Star, ...]] = []
    counts = np.zeros((len(cx), 3), dtype=np.int32)
    brightest = np.full(len(cx), np.nan)
    for k, (x, y) in enumerate(zip(cx, cy, strict=True)):
        idx = np.array(sorted(candidates[k]), dtype=np.int64)
        gals, counts[k, 0] = _population_neighbours(scene, idx[idx != anchors[k]], x, y, half, margin)
        faint, counts[k, 1] = _faint_galaxies(background, survey, x, y, half)
        neighbours.append((*gals, *faint))
        these, counts[k, 2], brightest[k] = _stars(background, survey, x, y, half, margin)
        stars.append(these)
    table = pd.DataFrame(
        {"n_neighbours": counts[:, 0], "n_faint": counts[:, 1], "n_stars": counts[:, 2], "star_mag_r": brightest}
    )
    return StampContents(neighbours, stars, table)


def _population_neighbours(
    scene: _PopulationScene, idx: np.ndarray, x: float, y: float, half: float, margin: float
) -> tuple[list[Galaxy], int]:
    """The candidate population galaxies ``idx`` whose light reaches the stamp centred at (x, y),
    and how many of them are centred inside it."""
    dx, dy = (scene.x[idx] - x) * 60, (scene.y[idx] - y) * 60
    d = _box_distance(dx, dy, half)
    keep = d <= margin + 3 * scene.re[idx]
    gals = [scene.galaxy(j, ox, oy) for j, ox, oy in zip(idx[keep], dx[keep], dy[keep], strict=True)]
    return gals, int((d[keep] == 0).sum())


def _faint_galaxies(
    background: Background, survey: Survey, x: float, y: float, half: float
) -> tuple[list[Galaxy], int]:
    """The faint galaxies on the stamp centred at (x, y), and how many are centred inside it."""
    box = (half + 1.5) / 60  # faint galaxies are at most 1.5" in half-light radius
    faint = background.in_box("faint", x - box, x + box, y - box, y + box)
    if not (faint and faint["x"].size):
        return [], 0
    fdx, fdy = (faint["x"] - x) * 60, (faint["y"] - y) * 60
    fd = _box_distance(fdx, fdy, half)
    # Faint galaxies are compact and below the noise: only those on the stamp contribute.
    fkeep = np.flatnonzero(fd <= faint["half_light_radius"])
    fmags = _survey_mags(faint, survey, fkeep)
    gals = [
        Galaxy(
            mags=tuple(map(float, m)),
            offset_arcsec=(float(fdx[j]), float(fdy[j])),
            half_light_radius=float(faint["half_light_radius"][j]),
            sersic_n=1.0,
            e1=float(faint["e1"][j]),
            e2=float(faint["e2"][j]),
        )
        for m, j in zip(fmags, fkeep, strict=True)
    ]
    return gals, int((fd[fkeep] == 0).sum())


def _stars(
    background: Background, survey: Survey, x: float, y: float, half: float, margin: float
) -> tuple[tuple[Star, ...], int, float]:
    """The field stars within ``margin`` of the stamp centred at (x, y), how many are centred
    inside it and the brightest of those's r magnitude (NaN when none)."""
    sbox = (half + margin) / 60
    st = background.in_box("stars", x - sbox, x + sbox, y - sbox, y + sbox)
    if not (st and st["x"].size):
        return (), 0, np.nan
    sdx, sdy = (st["x"] - x) * 60, (st["y"] - y) * 60
    sd = _box_distance(sdx, sdy, half)
    skeep = np.flatnonzero(sd <= margin)
    smags = _survey_mags(st, survey, skeep)
    these = tuple(
        Star(mags=tuple(map(float, m)), offset_arcsec=(float(sdx[j]), float(sdy[j])))
        for m, j in zip(smags, skeep, strict=True)
    )
    inside = skeep[sd[skeep] == 0]
    return these, inside.size, float(st["mag_r"][inside].min()) if inside.size else np.nan
