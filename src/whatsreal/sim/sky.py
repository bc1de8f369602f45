"""Simulate the whole sky: population, conditions, catalogues, rendered MMU shards, truth.

Determinism: every random stream is keyed by (seed, stream id[, object]), so the
result does not depend on the number of worker processes or on chunking; files
are written without timestamps, so the same config gives byte-identical output.

Atomicity: each survey's shards are written into a temporary sibling directory
and renamed into place only when complete; truth.parquet is written to a
temporary file and renamed. A failed or interrupted run leaves no partial
output under the final names.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from whatsreal.data.mmu import create_shard, shard_path
from whatsreal.data.neighbours import spatial_neighbours
from whatsreal.io import atomic_path
from whatsreal.layout import DatasetLayout
from whatsreal.parallel import ordered_map
from whatsreal.progress import Progress
from whatsreal.sim.catalog import hsc_catalog, legacysurvey_catalog, measured_fluxes, object_nea
from whatsreal.sim.fields import SmoothField
from whatsreal.sim.geometry import Patch, healpix_of
from whatsreal.sim.instrument import SurveyConditions
from whatsreal.sim.population import COMPANION_COLUMNS, LENS_GEOMETRY_COLUMNS, draw_population
from whatsreal.sim.render import ObjectSpec, band_fluxes, lensed_source_image, render_stamp
from whatsreal.sim.scene import STREAM_FAINT, STREAM_STARS, Background, stamp_contents
from whatsreal.surveys import SURVEYS, Survey, survey_registry
from whatsreal.truth import PATHOLOGIES, pathology_column

__all__ = [
    "Observation",
    "SimulationError",
    "Sky",
    "SkyReport",
    "SparseSkyWarning",
    "SurveyPlan",
    "build_background",
    "build_population",
    "ebv_field",
    "observe_survey",
    "plan_survey",
    "simulate_sky",
    "stars_path",
    "survey_conditions",
]

log = logging.getLogger(__name__)

NEIGHBOUR_RADIUS_ARCMIN = 3.0
NEIGHBOUR_K = 5
SPARSE_WARN_FRACTION = 0.9
"""Warn when fewer than this fraction of a survey's objects have K neighbours within the radius."""
STREAMS = {
    "population": 1,
    "ebv": 2,
    "conditions": 3,
    "catalog": 4,
    "pathologies": 5,
    "ids": 6,
    "render": 7,
    "stars": STREAM_STARS,
    "faint": STREAM_FAINT,
}
LENS_MAGNIFICATION_FIELD_ARCSEC = 12.0
LENS_MAGNIFICATION_PIXEL_ARCSEC = 0.03
"""Grid on which a lens's total magnification is measured for the catalogue fluxes: wide
enough for Einstein radii up to ~2.5" and fine enough for 0.1" sources."""


class SimulationError(RuntimeError):
    """The configured sky cannot be produced (the message says which key to change)."""


class SparseSkyWarning(UserWarning):
    """Too few same-survey neighbours within 3' for the instrument encoder's context."""


class Observation(NamedTuple):
    """One survey's view of the population: the objects its footprint and cut select."""

    truth: pd.DataFrame
    """Per-object truth of the observation (astrometric offsets, observed magnitudes), indexed by population row."""
    cat: pd.DataFrame
    """The survey catalogue of the selected objects (``object_id`` comes with the plan)."""
    cond: dict[str, np.ndarray]
    """Observing conditions at each selected object."""


@dataclass
class SurveyPlan:
    """One survey's selected objects in render (file) order, with everything needed to draw them.

    Built by :func:`plan_survey` (through :meth:`Sky.plans`) for both :func:`simulate_sky` and
    :mod:`whatsreal.sim.noiseless`, so the noiseless truth is drawn from the very specs
    the stored cutouts were."""

    obs: pd.DataFrame
    """Per-object truth of the observation (astrometric offsets, observed magnitudes)."""
    cat: pd.DataFrame
    """The survey catalogue, ``object_id`` included."""
    cond: dict[str, np.ndarray]
    flags: pd.DataFrame
    """Labelled artefacts per object."""
    specs: list[ObjectSpec]
    contents: pd.DataFrame
    """What else each stamp holds: n_neighbours, n_faint, n_stars, star_mag_r."""


@dataclass
class SkyReport:
    n_population: int
    n_selected: dict[str, int]
    n_overlap: int
    neighbour_fraction: dict[str, float]
    stamps: int
    render_seconds: float


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def neighbour_fraction(
    ra: np.ndarray, dec: np.ndarray, k: int = NEIGHBOUR_K, radius_arcmin: float = NEIGHBOUR_RADIUS_ARCMIN
) -> float:
    """Fraction of objects with at least ``k`` others within ``radius_arcmin``: the same
    neighbour search the data stages run (``whatsreal.data.neighbours``)."""
    if len(ra) == 0:
        return 0.0
    index, _ = spatial_neighbours(np.asarray(ra), np.asarray(dec), k, radius_arcmin)
    return float(np.mean((index >= 0).all(axis=1)))


def _observe(
    survey: Survey,
    survey_cfg: dict,
    sim: dict,
    patch: Patch,
    pop: pd.DataFrame,
    ebv: np.ndarray,
    cond_obj: SurveyConditions,
    code: int,
) -> Observation:
    """Measure the population through one survey and apply its footprint and cut.

    ``code`` keys the survey's random streams (its registry position). Returns (truth columns
    for selected objects, catalogue, conditions)."""
    seed = sim["seed"]
    rng = _rng(seed, STREAMS["catalog"], code)
    n = len(pop)
    jitter = rng.normal(0.0, sim["astrometric_jitter_arcsec"], size=(n, 2))
    x_obs = pop["x_arcmin"].to_numpy() + jitter[:, 0] / 60
    y_obs = pop["y_arcmin"].to_numpy() + jitter[:, 1] / 60
    cond = cond_obj.at(x_obs, y_obs)
    bands = survey.bands
    mags = np.column_stack([pop[f"mag_{b}"].to_numpy() for b in bands])
    mags = mags + np.outer(ebv, survey.extinction_coeff)
    true_flux = _total_flux(pop, mags, survey)
    nea = object_nea(pop["half_light_radius_arcsec"].to_numpy(), cond["psf_fwhm"], survey.pixel_scale)
    flux, err = measured_fluxes(true_flux, cond["sky_sigma"], nea, rng)
    sel_band = survey_cfg["selection"]["band"]
    if sel_band not in bands:
        raise SimulationError(
            f"simulation.surveys.{survey.name}.selection.band: '{sel_band}' is not a "
            f"{survey.name} band ({', '.join(bands)})"
        )
    k = survey.band_index(sel_band)
    with np.errstate(invalid="ignore", divide="ignore"):
        mag_sel = np.where(flux[:, k] > 0, survey.zero_point - 2.5 * np.log10(flux[:, k]), np.inf)
    fp = survey_cfg["footprint"]
    inside = patch.in_fraction_box(x_obs, y_obs, fp["ra_min"], fp["ra_max"], fp["dec_min"], fp["dec_max"])
    keep = inside & (mag_sel < survey_cfg["selection"]["mag_max"])
    idx = np.flatnonzero(keep)
    sub = pop.iloc[idx]
    cond = {key: v[idx] for key, v in cond.items()}
    ra, dec = patch.to_radec(x_obs[idx], y_obs[idx])
    if survey.format == "hsc":
        cat = hsc_catalog(survey, sub, cond, ebv[idx], flux[idx], err[idx], rng)
    else:
        cat = legacysurvey_catalog(survey, sub, cond, ebv[idx], flux[idx], err[idx], ra, dec, rng)
    cat.insert(0, "ra", ra)
    cat.insert(1, "dec", dec)
    cat["healpix"] = healpix_of(ra, dec)
    truth = pd.DataFrame(index=sub.index)
    truth["offset_x_arcsec"] = jitter[idx, 0]
    truth["offset_y_arcsec"] = jitter[idx, 1]
    truth["mags"] = list(mags[idx])
    return Observation(truth, cat, cond)


def _total_flux(pop: pd.DataFrame, mags: np.ndarray, survey: Survey) -> np.ndarray:
    """True flux of everything in the stamp: companion and magnified lensed source included."""
    flux = band_fluxes(mags, survey.zero_point)
    comp = pop["comp_flux_ratio"].to_numpy()
    merger = np.isfinite(comp)
    if merger.any():
        shift = pop["comp_color_shift"].to_numpy()[merger]
        bands = np.arange(len(survey.bands)) - 1.5
        flux[merger] *= 1 + comp[merger, None] * 10 ** (-0.4 * shift[:, None] * bands[None, :])
    lens = np.isfinite(pop["src_magnification"].to_numpy())
    if lens.any():
        src = band_fluxes(_source_mags(pop[lens], survey), survey.zero_point)
        flux[lens] += src * pop.loc[lens, "src_magnification"].to_numpy()[:, None]
    return flux


def _source_mags(rows: pd.DataFrame, survey: Survey) -> np.ndarray:
    """Blue background-source magnitudes per survey band (extinction included)."""
    r = rows["src_mag_r"].to_numpy()
    gr = rows["src_g_r"].to_numpy()
    per_band = {"g": r + gr, "r": r, "i": r - 0.1, "z": r - 0.15, "y": r - 0.2}
    ext = np.outer(rows["ebv"].to_numpy(), survey.extinction_coeff)
    return np.column_stack([per_band[b] for b in survey.bands]) + ext


def _specs(
    survey: Survey,
    sim: dict,
    crop: int,
    pop: pd.DataFrame,
    obs: pd.DataFrame,
    cond: dict,
    flags: pd.DataFrame,
    background: Background,
    code: int,
) -> tuple[list[ObjectSpec], pd.DataFrame]:
    """Render specs of the selected objects (in ``obs`` order), with their stamps' other sources."""
    seed = sim["seed"]
    rows = pop.loc[obs.index]
    all_src_mags = _source_mags(pop, survey)
    src_mags = all_src_mags[pop.index.get_indexer(obs.index)]
    centres = (
        rows["x_arcmin"].to_numpy() + obs["offset_x_arcsec"].to_numpy() / 60,
        rows["y_arcmin"].to_numpy() + obs["offset_y_arcsec"].to_numpy() / 60,
    )
    contents = stamp_contents(survey, sim, centres, pop.index.get_indexer(obs.index), pop, all_src_mags, background)
    specs = []
    for j, (tid, row) in enumerate(rows.iterrows()):
        companion = lens = source = None
        if row["galaxy_class"] == "merger":
            companion = tuple(float(row[c]) for c in COMPANION_COLUMNS)
        elif row["galaxy_class"] == "lens":
            lens = tuple(float(row[c]) for c in LENS_GEOMETRY_COLUMNS)
            source = tuple(map(float, src_mags[j]))
        specs.append(
            ObjectSpec(
                seed=(seed, STREAMS["render"], code, int(tid)),
                mags=tuple(map(float, obs.at[tid, "mags"])),
                galaxy_class=str(row["galaxy_class"]),
                half_light_radius=float(row["half_light_radius_arcsec"]),
                sersic_n=float(row["sersic_n"]),
                e1=float(row["e1"]),
                e2=float(row["e2"]),
                # The stamp is centred on the measured position, so the galaxy sits at -jitter.
                offset_arcsec=(-float(obs.at[tid, "offset_x_arcsec"]), -float(obs.at[tid, "offset_y_arcsec"])),
                psf_fwhm=tuple(map(float, cond["psf_fwhm"][j])),
                psf_g=(float(cond["psf_g1"][j]), float(cond["psf_g2"][j])),
                sky_sigma=tuple(map(float, cond["sky_sigma"][j])),
                companion=companion,
                lens=lens,
                source_mags=source,
                saturated_star=bool(flags.at[tid, "saturated_star"]),
                stripe=bool(flags.at[tid, "stripe"]),
                high_noise=bool(flags.at[tid, "high_noise"]),
                high_noise_factor=float(sim["pathologies"]["high_noise_factor"]),
                neighbours=contents.neighbours[j],
                stars=contents.stars[j],
                artefact_box=int(crop),
            )
        )
    return specs, contents.counts.set_axis(obs.index)


def _render_chunk(survey: Survey, specs: list[ObjectSpec], size: int, beta: float) -> tuple[np.ndarray, ...]:
    stamps = [render_stamp(s, survey, size, beta) for s in specs]
    image = np.stack([s.image for s in stamps])
    ivar = np.stack([s.ivar for s in stamps])
    mask = np.stack([s.mask for s in stamps])
    if not survey.mask_per_band:
        mask = mask.all(axis=1)
    return image, ivar, mask


def _write_survey(
    survey: Survey,
    cat: pd.DataFrame,
    psf_fwhm: np.ndarray,
    specs: list[ObjectSpec],
    out_dir: Path,
    size: int,
    beta: float,
    chunk: int,
    threads: int,
) -> None:
    """Render all objects of one survey into its shards under ``out_dir`` (a temporary directory).

    ``cat`` is sorted by healpix, so a chunk's objects occupy consecutive rows of at
    most a few shards; chunks are rendered in parallel and written in order.
    """
    files = {}
    hp_of = cat["healpix"].to_numpy()
    local_row = np.zeros(len(cat), dtype=np.int64)
    try:
        for hp in np.unique(hp_of):
            sel = np.flatnonzero(hp_of == hp)
            columns = {c: cat[c].to_numpy()[sel] for c in cat.columns}
            columns["image_psf_fwhm"] = psf_fwhm[sel].astype(np.float32)
            files[hp] = create_shard(shard_path(out_dir, hp), survey, columns, size)
            local_row[sel] = np.arange(sel.size)
        starts = range(0, len(cat), chunk)
        jobs = ((survey, specs[start : start + chunk], size, beta) for start in starts)
        n_bands = len(survey.bands)
        # Counted as chunks come back in order: the workers and their random draws are untouched.
        with Progress(len(cat) * n_bands, f"simulate {survey.name}", "stamps", log=log) as shown:
            for start, (image, ivar, mask) in zip(starts, ordered_map(_render_chunk, jobs, threads), strict=True):
                idx = np.arange(start, start + image.shape[0])
                for hp in np.unique(hp_of[idx]):
                    part = np.flatnonzero(hp_of[idx] == hp)
                    lo, hi = local_row[idx[part[0]]], local_row[idx[part[-1]]] + 1
                    f = files[hp]
                    f["image_array"][lo:hi] = image[part]
                    f["image_ivar"][lo:hi] = ivar[part]
                    f["image_mask"][lo:hi] = mask[part]
                shown.update(image.shape[0] * n_bands)
    finally:
        for f in files.values():
            f.close()


def _assign_ids(survey: Survey, cat: pd.DataFrame, survey_cfg: dict, rng: np.random.Generator) -> np.ndarray:
    """Ids in the survey's format: hsc int64 with the configured base, legacysurvey '<brick>-<objid>'."""
    if survey.format == "hsc":
        return survey_cfg["object_id_base"] + np.sort(rng.choice(10**11, size=len(cat), replace=False)).astype(np.int64)
    ids = np.char.add(np.char.add(cat["BRICKNAME"].to_numpy().astype("S8"), b"-"), cat["OBJID"].to_numpy().astype("S7"))
    return ids.astype("S16")


def _replace_dir(tmp: Path, final: Path) -> None:
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary output directory
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def ebv_field(sim: dict, patch: Patch) -> SmoothField:
    """The sky's Galactic E(B-V) foreground (before its mean and amplitude), from its seeded stream."""
    return SmoothField(
        patch.width_arcmin,
        patch.height_arcmin,
        sim["ebv"]["correlation_arcmin"],
        sim["fields"]["grid_arcmin"],
        _rng(sim["seed"], STREAMS["ebv"]),
    )


def _ebv_at(sim: dict, field: SmoothField, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.clip(sim["ebv"]["mean"] + sim["ebv"]["sigma"] * field(x, y), 0, None)


def build_population(sim: dict) -> tuple[Patch, pd.DataFrame]:
    """The patch and its galaxies with E(B-V) and lens magnifications, from the seed alone.

    A step of :meth:`Sky.build`, which both :func:`simulate_sky` and :mod:`whatsreal.sim.noiseless`
    use: the latter must rebuild the very same objects to render their noiseless truth.
    """
    seed = sim["seed"]
    patch = Patch.from_config(sim["footprint"])

    pop = draw_population(patch, sim, _rng(seed, STREAMS["population"]))
    if len(pop) == 0:
        raise SimulationError(
            "simulation.density_per_arcmin2 / footprint: the patch holds no galaxy "
            f"brighter than population.mag_max_render={sim['population']['mag_max_render']}"
        )
    pop["ebv"] = _ebv_at(sim, ebv_field(sim, patch), pop["x_arcmin"], pop["y_arcmin"])
    pop["src_magnification"] = np.nan
    for tid in np.flatnonzero((pop["galaxy_class"] == "lens").to_numpy()):
        geometry = tuple(float(pop.iloc[tid][c]) for c in LENS_GEOMETRY_COLUMNS)
        _, mu = lensed_source_image(geometry, LENS_MAGNIFICATION_FIELD_ARCSEC, LENS_MAGNIFICATION_PIXEL_ARCSEC)
        pop.iloc[tid, pop.columns.get_loc("src_magnification")] = mu
    return patch, pop


def build_background(sim: dict, patch: Patch) -> Background:
    """The patch's field stars and faint galaxies (generated lazily, cell by cell), behind the same dust."""
    field = ebv_field(sim, patch)
    return Background(sim, patch, lambda x, y: _ebv_at(sim, field, x, y))


def _footprint_region(patch: Patch, fp: dict) -> tuple[float, float, float, float]:
    """The survey footprint (fractions of the patch) as an (x0, x1, y0, y1) box in arcmin offsets."""
    w, h = patch.width_arcmin, patch.height_arcmin
    return (fp["ra_min"] - 0.5) * w, (fp["ra_max"] - 0.5) * w, (fp["dec_min"] - 0.5) * h, (fp["dec_max"] - 0.5) * h


def stream_code(registry: Mapping[str, Survey], name: str) -> int:
    """The number that keys a survey's random streams: its registry position (HSC 0, Legacy 1,
    added surveys after them), so a survey's sky does not change when another is added."""
    if name not in registry:
        raise SimulationError(f"surveys.{name}: not in the survey registry ({', '.join(registry)})")
    return list(registry).index(name)


def survey_conditions(sim: dict, patch: Patch, name: str, registry: Mapping[str, Survey] = SURVEYS) -> SurveyConditions:
    """One survey's observing conditions over the patch, drawn from their seeded stream."""
    survey_cfg = sim["surveys"][name]
    try:
        return SurveyConditions(
            registry[name],
            survey_cfg,
            patch.width_arcmin,
            patch.height_arcmin,
            sim["fields"],
            _rng(sim["seed"], STREAMS["conditions"], stream_code(registry, name)),
            region=_footprint_region(patch, survey_cfg["footprint"]),
        )
    except ValueError as err:
        raise SimulationError(str(err)) from None


def observe_survey(
    sim: dict, patch: Patch, pop: pd.DataFrame, name: str, registry: Mapping[str, Survey] = SURVEYS
) -> Observation:
    """One survey's observing conditions drawn from its seeded stream, then its selection.

    A step of :meth:`Sky.build`, so :func:`simulate_sky` and :mod:`whatsreal.sim.noiseless` see
    the same objects under the same conditions.
    """
    conditions = survey_conditions(sim, patch, name, registry)
    code = stream_code(registry, name)
    return _observe(registry[name], sim["surveys"][name], sim, patch, pop, pop["ebv"].to_numpy(), conditions, code)


def plan_survey(
    sim: dict,
    crop: int,
    pop: pd.DataFrame,
    background: Background,
    name: str,
    observed: Observation,
    registry: Mapping[str, Survey] = SURVEYS,
) -> SurveyPlan:
    """Artefact flags, object ids, file order and render specs of one survey's selected objects.

    ``crop`` is the survey's preprocessing crop (``preprocess.crop.<survey>``): labelled artefacts
    are placed inside it. A step of :meth:`Sky.plans`.
    """
    seed = sim["seed"]
    survey = registry[name]
    code = stream_code(registry, name)
    obs, cat, cond = observed
    cat = cat.copy()
    prng = _rng(seed, STREAMS["pathologies"], code)
    rates = sim["pathologies"]
    flags = pd.DataFrame(
        {k: prng.uniform(size=len(obs)) < rates[k] for k in PATHOLOGIES},
        index=obs.index,
    )
    cat["object_id"] = _assign_ids(survey, cat, sim["surveys"][name], _rng(seed, STREAMS["ids"], code))
    if survey.format == "legacysurvey":
        cat["MASKBITS"] = np.where(flags["saturated_star"].to_numpy(), 2, 0).astype(np.int16)  # BRIGHT
    order = np.lexsort((cat["ra"].to_numpy(), cat["healpix"].to_numpy()))
    obs, cat, flags = obs.iloc[order], cat.iloc[order], flags.iloc[order]
    cond = {k: v[order] for k, v in cond.items()}
    specs, contents = _specs(survey, sim, crop, pop, obs, cond, flags, background, code)
    return SurveyPlan(obs, cat, cond, flags, specs, contents)


def stars_path(truth_path: str | Path) -> Path:
    """Where a standalone :func:`simulate_sky` call lists the field stars when not told: beside
    the truth table, as in the results layout (``DatasetLayout.stars``)."""
    return Path(truth_path).with_name(DatasetLayout(Path()).stars.name)


def _stars_table(background: Background, patch: Patch) -> pd.DataFrame:
    """Every field star: ICRS position, intrinsic grizy (before extinction) and E(B-V)."""
    stars = background.all_stars()
    ra, dec = patch.to_radec(stars["x"].to_numpy(), stars["y"].to_numpy())
    out = pd.DataFrame({"ra": ra, "dec": dec})
    for c in stars.columns:
        if c.startswith("mag_") or c == "ebv":
            out[c] = stars[c].to_numpy()
    return out


@dataclass
class Sky:
    """The sky before any file: its patch, galaxies, background and every survey's selection.

    :meth:`build` makes it from the config alone (each step from its own seeded stream) and
    :meth:`plans` gives each survey's render plan. :func:`simulate_sky` renders those plans
    and :mod:`whatsreal.sim.noiseless` rebuilds the same specs from them, so the two follow
    one sequence of steps and cannot drift apart.
    """

    sim: dict
    """The validated ``simulation`` config section."""
    crops: dict[str, int]
    """``preprocess.crop``: labelled artefacts are placed inside what the model sees."""
    patch: Patch
    pop: pd.DataFrame
    background: Background
    observed: dict[str, Observation]
    """Per survey, in survey order: its selected objects (never empty), catalogue and conditions."""
    registry: dict[str, Survey]
    """The whole survey registry (whose order keys each survey's random streams)."""

    @classmethod
    def build(
        cls,
        sim: dict,
        crops: dict[str, int],
        registry: Mapping[str, Survey] = SURVEYS,
        surveys: tuple[str, ...] | None = None,
    ) -> Sky:
        """Population, background and the observation of each of ``surveys`` (default: every
        registry survey); raises :class:`SimulationError` when a survey selects no galaxy (the
        message says which keys to change)."""
        patch, pop = build_population(sim)
        background = build_background(sim, patch)
        observed = {}
        for name in tuple(registry) if surveys is None else surveys:
            observed[name] = observe_survey(sim, patch, pop, name, registry)
            if len(observed[name].cat) == 0:
                sel = sim["surveys"][name]["selection"]
                raise SimulationError(
                    f"simulation.surveys.{name}.selection: no galaxy passes {sel['band']} < {sel['mag_max']} "
                    f"inside the {name} footprint (of {len(pop)} simulated); raise mag_max, density or the footprint"
                )
        return cls(sim, dict(crops), patch, pop, background, observed, dict(registry))

    def plans(self) -> Iterator[tuple[str, SurveyPlan]]:
        """(survey, plan) in survey order, one at a time (a plan holds every stamp's spec)."""
        for name, observed in self.observed.items():
            crop = self.crops[name]
            yield name, plan_survey(self.sim, crop, self.pop, self.background, name, observed, self.registry)


@dataclass
class _RenderedSky:
    """What :func:`simulate_sky` publishes once everything is complete."""

    staged: dict[str, Path]
    """Per survey, the temporary directory holding its finished shards."""
    truth: pd.DataFrame
    stars: pd.DataFrame
    stamps: int
    render_seconds: float


def simulate_sky(
    cfg: dict, raw_dir: str | Path, truth_path: str | Path, threads: int = 1, stars: str | Path | None = None
) -> SkyReport:
    """Simulate the configured sky into ``raw_dir/{survey}/healpix=*/`` (the MMU layout),
    ``truth_path`` and ``stars`` (every field star; default :func:`stars_path`).

    ``cfg`` is the validated pipeline config (its ``preprocess.crop`` places the labelled
    artefacts inside what the model sees). Raises :class:`SimulationError` when the
    configuration yields no usable sky; warns (:class:`SparseSkyWarning`) when too few
    objects have 5 same-survey neighbours within 3 arcmin.
    """
    raw_dir = Path(raw_dir)
    sky = Sky.build(cfg["simulation"], cfg["preprocess"]["crop"], survey_registry(cfg))
    in_both = _overlap(sky)
    fractions = _neighbour_fractions(sky)
    raw_dir.mkdir(parents=True, exist_ok=True)
    rendered = _render_sky(sky, raw_dir, threads)
    _publish(rendered, raw_dir, Path(truth_path), Path(stars) if stars is not None else stars_path(truth_path))
    report = SkyReport(
        len(sky.pop),
        {s: len(obs.cat) for s, obs in sky.observed.items()},
        len(in_both),
        fractions,
        rendered.stamps,
        rendered.render_seconds,
    )
    log.info("simulated %d galaxies; selected %s; %d in both", len(sky.pop), report.n_selected, len(in_both))
    return report


def _overlap(sky: Sky) -> pd.Index:
    """The galaxies both paired surveys select (the pairs to be); raises when there is none, or
    when a further survey shares no galaxy with any other (it could never be matched)."""
    in_both = sky.observed["hsc"].truth.index.intersection(sky.observed["legacysurvey"].truth.index)
    if len(in_both) == 0:
        raise SimulationError(
            "simulation.surveys: no galaxy is selected by both surveys; "
            "widen the footprints' overlap or the selection cuts"
        )
    for name, obs in sky.observed.items():
        if name in ("hsc", "legacysurvey"):
            continue
        others = [o.truth.index for n, o in sky.observed.items() if n != name]
        if not any(len(obs.truth.index.intersection(other)) for other in others):
            raise SimulationError(
                f"simulation.surveys.{name}: no galaxy it selects is selected by any other survey; "
                "widen its footprint's overlap with the others or its selection cut"
            )
    return in_both


def _neighbour_fractions(sky: Sky) -> dict[str, float]:
    """Per survey, the fraction of objects with enough neighbours for the instrument encoder;
    warns (:class:`SparseSkyWarning`, attributed to :func:`simulate_sky`'s caller) when too few."""
    fractions = {}
    for name, (obs, cat, _) in sky.observed.items():
        frac = neighbour_fraction(cat["ra"].to_numpy(), cat["dec"].to_numpy())
        fractions[name] = frac
        if frac < SPARSE_WARN_FRACTION:
            area = sky.patch.area_arcmin2
            warnings.warn(
                f"{name}: only {frac:.1%} of {len(obs)} objects have {NEIGHBOUR_K} same-survey neighbours within "
                f"{NEIGHBOUR_RADIUS_ARCMIN}' (density {len(obs) / area:.2f}/arcmin^2 over the patch; about "
                f"{NEIGHBOUR_K / (np.pi * NEIGHBOUR_RADIUS_ARCMIN**2) * 2:.2f}/arcmin^2 is needed); raise "
                "simulation.density_per_arcmin2 or loosen the selection",
                SparseSkyWarning,
                stacklevel=3,
            )
    return fractions


def _render_sky(sky: Sky, raw_dir: Path, threads: int) -> _RenderedSky:
    """Render every survey's shards into temporary directories under ``raw_dir`` and build the
    truth and star tables in memory; on any failure the temporary directories are removed."""
    sim = sky.sim
    truth = sky.pop.copy()
    stamps = 0
    staged: dict[str, Path] = {}
    t0 = time.perf_counter()
    try:
        for name, plan in sky.plans():
            survey = sky.registry[name]
            staged[name] = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=raw_dir))
            _write_survey(
                survey,
                plan.cat.reset_index(drop=True),
                plan.cond["psf_fwhm"],
                plan.specs,
                staged[name],
                sim["cutout_size"],
                sim["surveys"][name]["psf_beta"],
                sim["chunk_size"],
                threads,
            )
            stamps += len(plan.specs) * len(survey.bands)
            truth = _add_truth(truth, name, survey, plan)
        render_seconds = time.perf_counter() - t0
        detected = truth[[f"in_{s}" for s in sky.observed]].any(axis=1)
        truth = truth[detected].drop(columns=["x_arcmin", "y_arcmin"]).reset_index(drop=True)
        stars = _stars_table(sky.background, sky.patch)
    except BaseException:
        for tmp in staged.values():
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _RenderedSky(staged, truth, stars, stamps, render_seconds)


def _publish(rendered: _RenderedSky, raw_dir: Path, truth_path: Path, stars: Path) -> None:
    """Replace the previous outputs: called only when every shard is complete on disk."""
    try:
        with (
            atomic_path(truth_path, ".parquet") as tmp_truth,
            atomic_path(stars, ".parquet") as tmp_stars,
        ):
            rendered.truth.to_parquet(tmp_truth, index=False)
            rendered.stars.to_parquet(tmp_stars, index=False)
            for name, tmp in rendered.staged.items():
                _replace_dir(tmp, raw_dir / name)
    finally:
        for tmp in rendered.staged.values():
            shutil.rmtree(tmp, ignore_errors=True)


def _add_truth(truth: pd.DataFrame, name: str, survey: Survey, plan: SurveyPlan) -> pd.DataFrame:
    """``truth`` with one survey's columns appended (built apart and joined once, so a registry
    of many surveys does not fragment the frame): membership, id, position, conditions,
    artefact flags, stamp contents."""
    obs, cat, cond, flags = plan.obs, plan.cat, plan.cond, plan.flags
    idx = obs.index
    cols: dict[str, pd.Series] = {}

    def column(values: np.ndarray, fill: object, dtype: object = None) -> pd.Series:
        col = pd.Series(fill, index=truth.index, dtype=dtype)
        col.loc[idx] = values
        return col

    cols[f"in_{name}"] = column(True, False)
    ids = cat["object_id"].to_numpy()
    if ids.dtype.kind == "S":
        cols[f"{name}_object_id"] = column(ids.astype(str), pd.NA, "string")
    else:
        cols[f"{name}_object_id"] = column(ids, pd.NA, "Int64")
    for c in ("ra", "dec", "healpix"):
        cols[f"{name}_{c}"] = column(cat[c].to_numpy(), np.nan)
    for k, b in enumerate(survey.bands):
        for q in ("psf_fwhm", "sky_sigma", "psfdepth_mag", "galdepth_mag", "nobs"):
            cols[f"{name}_{q}_{b}"] = column(cond[q][:, k], np.nan)
    for q in ("psf_g1", "psf_g2"):
        cols[f"{name}_{q}"] = column(cond[q], np.nan)
    for q in PATHOLOGIES:
        cols[pathology_column(name, q)] = column(flags[q].to_numpy(), False)
    for q in plan.contents.columns:
        cols[f"{name}_{q}"] = column(plan.contents[q].to_numpy(), np.nan)
    return pd.concat([truth, pd.DataFrame(cols)], axis=1)
