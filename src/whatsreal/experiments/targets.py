"""Probe targets (paper appendix A.4, Tables 3-4) and the probe split shared by every probe-style baseline.

The disentanglement claim is tested by regressing *named* quantities from each
representation: physics-related ones (ellipticity, size, redshift, stellar
mass, ...) and instrument ones per survey (PSF size, depth, exposure count,
extinction). Two kinds exist here:

- catalogue targets, read from each survey's meta file (``DatasetLayout.meta``) exactly as the paper
  reads the HSC and Legacy catalogues (band-averaged over the preprocessed
  bands where the paper says "band-averaged");
- spectroscopic targets (when ``aux.provabgs.path`` is set): redshift, stellar
  mass, sSFR, mass-weighted age and metallicity from the PROVABGS catalogue,
  matched to the pairs by :mod:`whatsreal.data.provabgs` (``provabgs.parquet``);
  NaN for the pairs without a DESI spectrum, which those five probes drop
  (the paper's n_spec = 4,666 of 5,469);
- truth targets (synthetic sky only), the simulator's own parameters joined by
  ``truth_id`` - the clean version of the same question, free of catalogue
  measurement noise: physical parameters (redshift, mass, sSFR, size, Sersic n,
  ellipticity, magnitude, colours) and, per survey, one target per independent
  instrument knob (PSF FWHM, sky noise, PSF depth; see ``TRUTH_INSTRUMENT``).

One table holds every target, one row per pair (row i == pair i), NaN where a
value is missing or non-finite; each probe drops the NaN rows of its own target.
The split is a seeded 90/10 permutation of the pairs so the MLP probes and the
cross-predict ResNet are scored on the same held-out galaxies.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from whatsreal.layout import DatasetLayout
from whatsreal.surveys import SURVEY_ORDER, depth_ivar_to_mag

__all__ = [
    "GROUPS",
    "INSTRUMENT_GROUPS",
    "PROVABGS_TARGETS",
    "Target",
    "build_targets",
    "instrument_group",
    "meta_paths_by_survey",
    "probe_split",
    "target_specs_frame",
    "truth_instrument_targets",
]

log = logging.getLogger(__name__)

GROUPS = ("physics", "legacysurvey_instrument", "hsc_instrument")
"""Target groups in the order Table 5 lists them."""
INSTRUMENT_GROUPS = GROUPS[1:]

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
"""Gaussian FWHM / sigma: turns second moments into a PSF FWHM."""


def instrument_group(survey: str) -> str:
    """The Table 5 group of a survey's instrument targets."""
    return f"{survey}_instrument"


@dataclass(frozen=True)
class Target:
    """One regression target: its column name in the target table and how Table 5 shows it."""

    name: str
    label: str
    group: str
    truth: bool


# --------------------------------------------------------------------------- split


def probe_split(n_pairs: int, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask over pairs, True = held-out test pair (``round(test_fraction * n)``, at least 1).

    Deterministic in (n_pairs, test_fraction, seed); shared by the MLP probes and the
    cross-predict baseline so every R^2 of Table 5 is measured on the same galaxies.
    """
    n_pairs = int(n_pairs)
    if n_pairs < 2:
        raise ValueError(f"probe_split needs at least 2 pairs, got {n_pairs}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"experiments.probes.test_fraction must be in (0, 1), got {test_fraction}")
    n_test = int(np.clip(round(test_fraction * n_pairs), 1, n_pairs - 1))
    mask = np.zeros(n_pairs, dtype=bool)
    mask[np.random.default_rng(int(seed)).permutation(n_pairs)[:n_test]] = True
    return mask


# --------------------------------------------------------------------------- input files


def meta_paths_by_survey(meta: Mapping[str, str | Path] | DatasetLayout) -> dict[str, Path]:
    """``{survey: meta path}`` of every survey, from the caller's mapping or a dataset's layout.

    The caller names each survey's file (a rule lists them in SURVEY_ORDER; its script zips
    them with the surveys), so nothing here guesses a survey from a file name.
    """
    if isinstance(meta, DatasetLayout):
        return {s: meta.meta(s) for s in SURVEY_ORDER}
    out = {s: Path(p) for s, p in meta.items()}
    missing = [s for s in SURVEY_ORDER if s not in out]
    if missing:
        raise ValueError(f"no meta file for survey(s) {', '.join(missing)} among {list(out.values())}")
    return out


class _Columns:
    """A table with its source file, so every missing column is reported with the file it was expected in."""

    def __init__(self, df: pd.DataFrame, source: str | Path) -> None:
        self.df = df
        self.source = str(source)

    def get(self, column: str, target: str) -> np.ndarray:
        if column not in self.df.columns:
            raise KeyError(f"{self.source}: missing column '{column}' (needed for probe target '{target}')")
        return pd.to_numeric(self.df[column], errors="coerce").to_numpy(dtype=np.float64)

    def band_mean(self, template: str, bands: Sequence[str], target: str, fn: Callable | None = None) -> np.ndarray:
        """Mean over bands of ``template.format(b=band)`` (optionally transformed first).

        Bands without a finite value (e.g. no Legacy i-band coverage: depth 0) are
        left out of that object's mean; NaN only when no band has a value.
        """
        cols = [self.get(template.format(b=b, B=b.upper()), target) for b in bands]
        return _band_average([fn(c) if fn else c for c in cols])


def _band_average(per_band: Sequence[np.ndarray]) -> np.ndarray:
    """Mean over the bands with a finite value; NaN where none has one."""
    stack = _finite(np.stack(per_band))
    n = np.isfinite(stack).sum(axis=0)
    total = np.where(np.isfinite(stack), stack, 0.0).sum(axis=0)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.isfinite(x), x, np.nan)


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return _finite(num / den)


def _depth_mag(ivar: np.ndarray) -> np.ndarray:
    """Legacy depth inverse variance -> 5-sigma depth in mag (NaN where ivar <= 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _finite(np.where(ivar > 0, depth_ivar_to_mag(np.where(ivar > 0, ivar, 1.0)), np.nan))


# --------------------------------------------------------------------------- catalogue targets


def _catalogue_targets(hsc: _Columns, legacy: _Columns, bands: Sequence[str]) -> list[tuple[Target, np.ndarray]]:
    """Table 3/4 targets the MMU catalogues carry; band averages over the preprocessed ``bands``.

    In Table 5's order: the shapes and sizes (physics), then Legacy's instrument
    columns, then HSC's.
    """
    return [
        *_shape_targets(hsc, legacy),
        *_legacy_instrument_targets(legacy, bands),
        *_hsc_instrument_targets(hsc, bands),
    ]


def _shape_targets(hsc: _Columns, legacy: _Columns) -> list[tuple[Target, np.ndarray]]:
    """Ellipticity and size of both catalogues (physics targets)."""
    # HSC ellipticity and size from the i-band SDSS-style second moments (distortion convention).
    ixx = hsc.get("i_sdssshape_shape11", "hsc_e1")
    iyy = hsc.get("i_sdssshape_shape22", "hsc_e1")
    ixy = hsc.get("i_sdssshape_shape12", "hsc_e2")
    trace = ixx + iyy
    with np.errstate(invalid="ignore"):
        radius = _finite(np.sqrt(np.where(trace > 0, trace / 2.0, np.nan)))
    return [
        (Target("hsc_e1", "e1 (HSC sdssshape i)", "physics", False), _safe_ratio(ixx - iyy, trace)),
        (Target("hsc_e2", "e2 (HSC sdssshape i)", "physics", False), _safe_ratio(2.0 * ixy, trace)),
        (Target("hsc_size", "moment radius (HSC i, arcsec)", "physics", False), radius),
        # Legacy Tractor shape.
        (Target("legacy_e1", "e1 (Legacy Tractor)", "physics", False), _finite(legacy.get("SHAPE_E1", "legacy_e1"))),
        (Target("legacy_e2", "e2 (Legacy Tractor)", "physics", False), _finite(legacy.get("SHAPE_E2", "legacy_e2"))),
        (
            Target("legacy_size", "half-light radius (Legacy, arcsec)", "physics", False),
            _finite(legacy.get("SHAPE_R", "legacy_size")),
        ),
    ]


def _legacy_instrument_targets(legacy: _Columns, bands: Sequence[str]) -> list[tuple[Target, np.ndarray]]:
    """Legacy instrument (Table 4), band-averaged; depths converted from inverse variance to mag."""
    lg = instrument_group("legacysurvey")
    band_txt = "".join(bands)
    return [
        (
            Target("legacy_galdepth", f"galaxy depth ({band_txt}, mag)", lg, False),
            _finite(legacy.band_mean("GALDEPTH_{B}", bands, "legacy_galdepth", _depth_mag)),
        ),
        (
            Target("legacy_psfdepth", f"PSF depth ({band_txt}, mag)", lg, False),
            _finite(legacy.band_mean("PSFDEPTH_{B}", bands, "legacy_psfdepth", _depth_mag)),
        ),
        (
            Target("legacy_psfsize", f"PSF size ({band_txt}, arcsec)", lg, False),
            _finite(legacy.band_mean("PSFSIZE_{B}", bands, "legacy_psfsize")),
        ),
        (Target("legacy_ebv", "extinction E(B-V)", lg, False), _finite(legacy.get("EBV", "legacy_ebv"))),
        (
            Target("legacy_nobs", f"# observations ({band_txt})", lg, False),
            _finite(legacy.band_mean("NOBS_{B}", bands, "legacy_nobs")),
        ),
    ]


def _hsc_instrument_targets(hsc: _Columns, bands: Sequence[str]) -> list[tuple[Target, np.ndarray]]:
    """HSC instrument: extinction a_b and the PSF FWHM from the coadd PSF model's second moments."""
    hg = instrument_group("hsc")
    band_txt = "".join(bands)
    extinction = _finite(hsc.band_mean("a_{b}", bands, "hsc_a"))
    psf = [
        hsc.get(f"{b}_sdssshape_psf_shape11", "hsc_psfsize") + hsc.get(f"{b}_sdssshape_psf_shape22", "hsc_psfsize")
        for b in bands
    ]
    with np.errstate(invalid="ignore"):
        fwhm = _band_average([FWHM_PER_SIGMA * np.sqrt(np.where(t > 0, t / 2.0, np.nan)) for t in psf])
    return [
        (Target("hsc_a", f"extinction a ({band_txt}, mag)", hg, False), extinction),
        (Target("hsc_psfsize", f"PSF size ({band_txt}, arcsec)", hg, False), _finite(fwhm)),
    ]


# --------------------------------------------------------------------------- spectroscopic targets

PROVABGS_TARGETS = (
    ("z", "redshift z (DESI spectrum)"),
    ("log_mstar", "log M* (PROVABGS)"),
    ("log_ssfr", "sSFR log(SFR/M*) (PROVABGS, 1/yr)"),
    ("t_age", "t_age mass-weighted (PROVABGS, Gyr)"),
    ("log_z_met", "log Z_Met mass-weighted (PROVABGS)"),
)
"""provabgs.parquet column -> Table 5 label; the target is named ``provabgs_<column>``."""


def _provabgs_targets(path: str | Path, n_pairs: int) -> list[tuple[Target, np.ndarray]]:
    """The five spectroscopic targets per pair from ``provabgs.parquet`` (NaN where a pair has no spectrum)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: file not found (rule provabgs_targets writes it when aux.provabgs.path is set)"
        )
    df = pd.read_parquet(path)
    if "pair" not in df.columns:
        raise KeyError(f"{path}: missing column 'pair'")
    if not np.array_equal(df["pair"].to_numpy(dtype=np.int64), np.arange(n_pairs)):
        raise ValueError(
            f"{path}: {len(df)} rows with 'pair' not 0..{n_pairs - 1}; it must list the {n_pairs} pairs of the "
            "meta files in order (rerun rule provabgs_targets)"
        )
    table = _Columns(df, path)
    return [
        (Target(f"provabgs_{col}", label, "physics", False), _finite(table.get(col, f"provabgs_{col}")))
        for col, label in PROVABGS_TARGETS
    ]


# --------------------------------------------------------------------------- truth targets

TRUTH_PHYSICS = (
    ("redshift", "true redshift"),
    ("log_mstar", "true log M*"),
    ("log_ssfr", "true sSFR (log)"),
    ("half_light_radius_arcsec", "true half-light radius (arcsec)"),
    ("sersic_n", "true Sersic n"),
    ("e1", "true intrinsic e1"),
    ("e2", "true intrinsic e2"),
)
"""truth.parquet column -> label of the simulator's physical parameters probed (Table 3 analogues)."""

TRUTH_MAGNITUDE = "mag_{b}"
"""truth.parquet per-band true magnitude: gives the band-averaged magnitude and adjacent-band colours."""

TRUTH_INSTRUMENT = (
    ("psf_fwhm", "true PSF FWHM"),
    ("sky_sigma", "true sky noise"),
    ("psfdepth_mag", "true PSF depth"),
)
"""``{survey}_{quantity}_{band}`` quantities of truth.parquet, band-averaged (Table 4 analogues).

One target per physical knob of the simulated instrument: seeing (PSF FWHM), sky
noise, and depth (which combines the two). Galaxy depth and the exposure count
are left out on purpose: in the simulator they are functions of the same
numbers (galaxy depth of sky noise and seeing like PSF depth; sky noise of the
exposure count), so listing them would count one quantity several times in the
instrument means and in the disentanglement verdicts.
"""


def _truth_targets(
    truth_path: str | Path, truth_ids: np.ndarray, bands: Sequence[str]
) -> list[tuple[Target, np.ndarray]]:
    """Simulator parameters of each pair's galaxy (NaN where a pair has no truth_id)."""
    truth = pd.read_parquet(truth_path)
    if "truth_id" not in truth.columns:
        raise KeyError(f"{truth_path}: missing column 'truth_id'")
    if truth["truth_id"].duplicated().any():
        raise ValueError(f"{truth_path}: duplicate truth_id values")
    index = pd.Index(truth["truth_id"].astype(np.int64))
    pos = index.get_indexer(pd.Series(truth_ids).fillna(-1).astype(np.int64))
    found = pos >= 0
    if not found.any():
        raise ValueError(f"{truth_path}: none of the meta truth_id values is in this table")
    table = _Columns(truth, truth_path)
    band_txt = "".join(bands)

    def aligned(values: np.ndarray) -> np.ndarray:
        out = np.full(len(truth_ids), np.nan)
        out[found] = values[pos[found]]
        return _finite(out)

    out: list[tuple[Target, np.ndarray]] = []
    for col, label in TRUTH_PHYSICS:
        out.append((Target(f"true_{col}", label, "physics", True), aligned(table.get(col, f"true_{col}"))))
    # Brightness and colour: physical, and not functions of the parameters above.
    mags = {b: table.get(TRUTH_MAGNITUDE.format(b=b), "true_mag") for b in bands}
    out.append(
        (
            Target("true_mag", f"true magnitude ({band_txt} mean)", "physics", True),
            aligned(_band_average(list(mags.values()))),
        )
    )
    for a, b in itertools.pairwise(bands):
        out.append((Target(f"true_{a}_{b}", f"true colour {a}-{b}", "physics", True), aligned(mags[a] - mags[b])))
    for survey in SURVEY_ORDER:
        short = "hsc" if survey == "hsc" else "legacy"
        where = "HSC" if survey == "hsc" else "Legacy"
        for quantity, label in TRUTH_INSTRUMENT:
            name = f"true_{short}_{quantity}"
            values = table.band_mean(f"{survey}_{quantity}_{{b}}", bands, name)
            target = Target(name, f"{label} ({where}, {band_txt})", instrument_group(survey), True)
            out.append((target, aligned(values)))
    return out


def truth_instrument_targets(survey: str) -> list[str]:
    """Names of a survey's truth instrument targets (PSF FWHM, sky noise, depth), in table order."""
    short = "hsc" if survey == "hsc" else "legacy"
    return [f"true_{short}_{quantity}" for quantity, _ in TRUTH_INSTRUMENT]


# --------------------------------------------------------------------------- table


def build_targets(
    meta: Mapping[str, str | Path] | DatasetLayout,
    truth: str | Path | None,
    bands: Sequence[str],
    provabgs: str | Path | None = None,
) -> tuple[pd.DataFrame, list[Target]]:
    """The target table (one row per pair, in pair order) and the target specs, catalogue first.

    ``meta``: each survey's meta file (``{survey: path}``), or the dataset's layout.
    Both meta files must list the same pairs 0..N-1 (row i == pair i, as
    preprocessing writes them). With ``provabgs`` (``provabgs.parquet``) the five
    spectroscopic targets follow the catalogue ones. With ``truth`` the
    simulator's parameters are joined through the HSC meta ``truth_id``.
    """
    paths = meta_paths_by_survey(meta)
    frames = {}
    for survey, path in paths.items():
        if not path.exists():
            raise FileNotFoundError(f"{path}: file not found")
        df = pd.read_parquet(path)
        if "pair" not in df.columns:
            raise KeyError(f"{path}: missing column 'pair'")
        pair = df["pair"].to_numpy(dtype=np.int64)
        if not np.array_equal(pair, np.arange(len(df))):
            raise ValueError(f"{path}: column 'pair' must be 0..N-1 in row order (row i == pair i)")
        frames[survey] = df
    n = {s: len(df) for s, df in frames.items()}
    if len(set(n.values())) != 1:
        raise ValueError(f"meta files have different numbers of pairs: {n}")
    hsc = _Columns(frames["hsc"], paths["hsc"])
    legacy = _Columns(frames["legacysurvey"], paths["legacysurvey"])
    entries = _catalogue_targets(hsc, legacy, bands)
    if provabgs is not None:
        entries += _provabgs_targets(provabgs, n["hsc"])
    if truth is not None:
        if "truth_id" not in frames["hsc"].columns:
            raise KeyError(f"{paths['hsc']}: missing column 'truth_id' (needed to join {truth})")
        entries += _truth_targets(truth, frames["hsc"]["truth_id"].to_numpy(), bands)
    specs = [t for t, _ in entries]
    table = pd.DataFrame({t.name: v for t, v in entries}, index=pd.RangeIndex(n["hsc"], name="pair"))
    for t in specs:
        n_ok = int(table[t.name].notna().sum())
        if n_ok < len(table):
            log.info("target %s: %d of %d pairs have a finite value", t.name, n_ok, len(table))
    return table, specs


def target_specs_frame(specs: Sequence[Target]) -> pd.DataFrame:
    """The specs as a frame (target, label, group, truth) in table order."""
    rows = [asdict(t) for t in specs]
    return pd.DataFrame(rows).rename(columns={"name": "target"})
