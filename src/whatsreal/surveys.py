"""The survey registry: each instrument's file format and photometric facts.

Every survey the pipeline reads or simulates is an entry of the config's ``surveys``
registry (config/README.md, "surveys"): its MMU file layout (``format``), band names and
the strings its files write, pixel scale, zero point, the extinction coefficients that turn
E(B-V) into per-band extinction, and how it stores masks. Observing *conditions* (seeing,
depth, exposure counts) are simulation settings and live under ``simulation.surveys``.

:data:`SURVEYS` is the registry of the schema defaults, HSC and Legacy; training and the
experiments pair those two (:data:`SURVEY_ORDER`). The simulator, the catalogue stage and
the N-way matching (``groups.parquet``) take every survey of a config's registry
(:func:`survey_registry`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml
from numpy.typing import ArrayLike

__all__ = [
    "CATALOGUE_BANDS",
    "FORMATS",
    "HEALPIX_NSIDE",
    "SURVEYS",
    "SURVEY_ORDER",
    "Survey",
    "depth_ivar_to_mag",
    "entry_problems",
    "mag_to_depth_ivar",
    "survey_registry",
    "training_surveys",
]

HEALPIX_NSIDE = 16
"""MMU shards every dataset by nested healpix at this nside."""

FORMATS = ("hsc", "legacysurvey")
"""The MMU layouts a registry entry can follow (``surveys.<name>.format``)."""
CATALOGUE_BANDS = {"hsc": "i", "legacysurvey": "z"}
"""The band each catalogue format takes its shape noise from (whatsreal.sim.catalog)."""


def entry_problems(name: str, entry: Mapping[str, Any]) -> list[str]:
    """What makes a registry entry (``surveys.<name>``) inconsistent in itself, one line per
    problem naming its key: the config check lists them all, :meth:`Survey.from_entry` raises
    the first."""
    bands = list(entry["bands"])
    problems = [
        f"surveys.{name}.{key}: {len(entry[key])} entries for the {len(bands)} bands ({', '.join(bands)})"
        for key in ("band_strings", "extinction_coeff")
        if len(entry[key]) != len(bands)
    ]
    if entry["format"] not in FORMATS:
        problems.append(f"surveys.{name}.format: '{entry['format']}' is not one of {', '.join(FORMATS)}")
    elif CATALOGUE_BANDS[entry["format"]] not in bands:
        problems.append(
            f"surveys.{name}.bands: the {entry['format']} catalogue format measures shapes in band "
            f"'{CATALOGUE_BANDS[entry['format']]}', which is not one of {', '.join(bands)}"
        )
    return problems


@dataclass(frozen=True)
class Survey:
    """One survey's registry entry."""

    name: str
    bands: tuple[str, ...]
    """Short band names in file order, e.g. ('g', 'r', 'i', 'z', 'y')."""
    band_strings: tuple[str, ...]
    """The exact strings MMU writes into ``image_band``."""
    pixel_scale: float
    """Arcseconds per pixel."""
    zero_point: float
    """Magnitude of one image unit of flux (AB)."""
    extinction_coeff: tuple[float, ...]
    """R_b = A_b / E(B-V) per band (Schlafly & Finkbeiner 2011 style coefficients)."""
    mask_per_band: bool
    """HSC stores one mask per band; Legacy one mask shared by all bands."""
    format: str = "hsc"
    """Which MMU layout its files and catalogue columns follow (one of :data:`FORMATS`)."""

    def band_index(self, band: str) -> int:
        """Position of a short band name in this survey's arrays."""
        return self.bands.index(band)

    @classmethod
    def from_entry(cls, name: str, entry: Mapping[str, Any]) -> Survey:
        """The survey a registry entry (``surveys.<name>``, schema-validated) describes; an
        inconsistent entry (:func:`entry_problems`) is a ``ValueError`` naming the key."""
        problems = entry_problems(name, entry)
        if problems:
            raise ValueError(problems[0])
        return cls(
            name=name,
            bands=tuple(entry["bands"]),
            band_strings=tuple(entry["band_strings"]),
            pixel_scale=float(entry["pixel_scale"]),
            zero_point=float(entry["zero_point"]),
            extinction_coeff=tuple(float(c) for c in entry["extinction_coeff"]),
            mask_per_band=bool(entry["mask_per_band"]),
            format=str(entry["format"]),
        )


def survey_registry(cfg: Mapping[str, Any]) -> dict[str, Survey]:
    """The registry of a validated config (its ``surveys`` section): the paired surveys
    (:data:`SURVEY_ORDER`) first, then the others in configured order. The order fixes each
    survey's random streams in the simulator, so adding a survey changes no other survey's sky."""
    entries = cfg["surveys"]
    names = [s for s in SURVEY_ORDER if s in entries] + [s for s in entries if s not in SURVEY_ORDER]
    return {name: Survey.from_entry(name, entries[name]) for name in names}


HSC_CATALOG_ZERO_POINT = 31.4
"""HSC PDR3 catalogue fluxes (``*_cmodel_flux``) are in nJy, i.e. zero-point 31.4."""


def mag_to_depth_ivar(mag: ArrayLike, zero_point: float = 22.5) -> np.ndarray:
    """Legacy sweeps store PSFDEPTH/GALDEPTH as the inverse variance (1/nanomaggy^2)
    of a 5-sigma detection at ``mag``; this converts a depth in mag to that unit."""
    sigma = 10 ** (-0.4 * (np.asarray(mag, dtype=float) - zero_point)) / 5.0
    return 1.0 / sigma**2


def depth_ivar_to_mag(ivar: ArrayLike, zero_point: float = 22.5) -> np.ndarray:
    """Inverse of :func:`mag_to_depth_ivar`, elementwise."""
    return zero_point - 2.5 * np.log10(5.0 / np.sqrt(np.asarray(ivar, dtype=float)))


SURVEY_ORDER: tuple[str, ...] = ("hsc", "legacysurvey")
"""The two surveys that training and the experiments pair, in the order wherever they are indexed
(anchor codes, file lists): HSC = 0, Legacy = 1. Always the first two entries of a registry."""


def training_surveys(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """The surveys a run trains on: every registry survey with ``train.data: groups``, else the
    paired two. Their order indexes the batches' ``anchor``."""
    if cfg["train"].get("data", "pairs") == "groups":  # a checkpoint from before N-way data has none
        return tuple(survey_registry(cfg))
    return SURVEY_ORDER


def _schema_registry() -> dict[str, Survey]:
    """The registry's schema defaults: the one place HSC's and Legacy's facts are written."""
    from whatsreal.config import SCHEMA_PATH  # here: the config module loads jsonschema, which this one needs only now

    entries = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))["properties"]["surveys"]["properties"]
    return survey_registry({"surveys": {name: sub["default"] for name, sub in entries.items()}})


SURVEYS: dict[str, Survey] = _schema_registry()
"""HSC and Legacy as the schema's registry defaults describe them."""
