"""PROVABGS spectroscopic targets (paper appendix A.4, Table 5) from the Multimodal Universe catalogue.

The paper's redshift, stellar mass, sSFR, mass-weighted age and metallicity come
from the PROVABGS posterior catalogue (Hahn et al. 2023), not from the images, and
are known only for the galaxies DESI took a spectrum of (4,666 of its 5,469 pairs).
This module reads that catalogue as MMU ships it, matches it to the pairs and
gives one row per pair, NaN where a pair has no spectrum; each probe then drops
the NaN rows of its own target only.

Layout (MultimodalUniverse/MultimodalUniverse, ``scripts/desi_provabgs/
build_parent_sample.py`` and the dataset loader ``desi_provabgs.py`` beside it;
earlier versions under ``scripts/provabgs/``). The builder reads the DESI EDR
value-added catalogue ``BGS_ANY_full.provabgs.sv3.v0.hdf5``, keeps the rows with a
best fit (``PROVABGS_LOGMSTAR_BF > 0`` and positive g, r, z magnitudes), evaluates
the PROVABGS SED model at the best-fit parameters, and writes
``<root>/healpix=<N>/001-of-001.h5`` (nside 16, nested; note ``.h5``, not the
``.hdf5`` of the image datasets), one top-level dataset per column:

- ``object_id`` (int64, = DESI ``TARGETID``), ``ra``, ``dec`` (float64, degrees),
  ``healpix`` (int64); every VAC column but RA/DEC keeps its upper-case name;
- ``Z_HP``: Redrock spectroscopic redshift; ``ZERR``: its error;
- ``PROVABGS_LOGMSTAR_BF``: best-fit log10 stellar mass (Msun); the loader exposes it
  as ``LOG_MSTAR``; ``PROVABGS_LOGMSTAR`` (N, 100): posterior samples of it;
- ``AVG_SFR``: average star-formation rate (Msun/yr, linear) of the best fit;
- ``TAGE_MW``: mass-weighted stellar age (Gyr); ``Z_MW``: mass-weighted stellar
  metallicity (mass fraction, linear);
- ``PROVABGS_MCMC`` (N, 100, 13), ``PROVABGS_THETA_BF`` (N, 13): SED-model parameters
  (not read here), ``MAG_*``, ``TSNR2_BGS``, weights.
Older builds of the same dataset named two of them ``SFR`` and ``t_ageMW``; the
reader accepts those names too.

What the reader makes of them (the project's names):

- ``z`` = ``Z_HP``, ``z_err`` = ``ZERR``;
- ``log_mstar`` = ``PROVABGS_LOGMSTAR_BF`` (or ``LOG_MSTAR``), ``log_mstar_err`` = half
  the 16-84 % range of the ``PROVABGS_LOGMSTAR`` posterior samples;
- ``log_ssfr`` = log10(``AVG_SFR``) - ``log_mstar`` (1/yr): the paper's sSFR,
  log(SFR / M*). MMU's AstroCLIP benchmark script instead subtracts the natural log
  of ``Z_MW``; that is not an sSFR and is not followed here;
- ``t_age`` = ``TAGE_MW`` (Gyr); ``log_z_met`` = log10(``Z_MW``).
MMU ships SFR, age and metallicity at the best fit only (their posteriors would
need the PROVABGS SED model run on every MCMC sample), so ``log_ssfr_err``,
``t_age_err`` and ``log_z_met_err`` are NaN. A value that is not finite, or not
positive where a logarithm or an age needs it, is missing (NaN).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from scipy.special import ndtri

from whatsreal.data.crossmatch import CrossmatchError, crossmatch
from whatsreal.data.mmu import MMUFormatError, list_shards
from whatsreal.io import atomic_path
from whatsreal.sim.geometry import healpix_of

__all__ = [
    "CONFIG_KEY",
    "PAIR_COLUMNS",
    "SHARD_NAME",
    "TARGETS",
    "ProvabgsError",
    "match_to_pairs",
    "read_provabgs",
    "write_provabgs_shards",
]

log = logging.getLogger(__name__)

CONFIG_KEY = "aux.provabgs.path"
"""The config key naming the catalogue's directory; every error names it."""
SHARD_NAME = "001-of-001.h5"
SUFFIXES = (".h5", ".hdf5")
TARGETS = ("z", "log_mstar", "log_ssfr", "t_age", "log_z_met")
"""The five spectroscopic targets of Table 5, each with a ``<name>_err`` column."""
PAIR_COLUMNS = ("pair", "provabgs_object_id", "sep_arcsec", *(c for t in TARGETS for c in (t, f"{t}_err")))
"""Columns of ``provabgs.parquet`` (one row per pair, in pair order)."""

ID_COLUMNS = {"object_id": ("object_id", "TARGETID"), "ra": ("ra", "RA"), "dec": ("dec", "DEC")}
VALUE_COLUMNS = {
    "z": ("Z_HP",),
    "log_mstar": ("PROVABGS_LOGMSTAR_BF", "LOG_MSTAR"),
    "sfr": ("AVG_SFR", "SFR"),
    "t_age": ("TAGE_MW", "t_ageMW"),
    "z_met": ("Z_MW",),
}
"""Quantity -> the MMU dataset names that hold it, preferred first (later: older builds' names)."""
Z_ERR = "ZERR"
LOG_MSTAR_SAMPLES = "PROVABGS_LOGMSTAR"
FIX = (
    f"set {CONFIG_KEY} to the directory of MMU's desi_provabgs datafiles "
    f"(healpix=<N>/{SHARD_NAME}), or to null to probe without the spectroscopic targets"
)


class ProvabgsError(ValueError):
    """The configured PROVABGS catalogue is missing or unusable; the message names the file, the key and the fix."""


# --------------------------------------------------------------------------- reading


def _first_present(f: h5py.File, names: Sequence[str]) -> str | None:
    return next((n for n in names if n in f), None)


def _column(f: h5py.File, path: Path, names: Sequence[str], what: str, n: int) -> np.ndarray:
    name = _first_present(f, names)
    if name is None:
        raise ProvabgsError(f"{path}: no dataset {' or '.join(repr(x) for x in names)} (needed for {what}); {FIX}")
    values = f[name][()]
    if values.shape[:1] != (n,):
        raise ProvabgsError(f"{path}: dataset '{name}' has shape {values.shape}, expected {n} rows; {FIX}")
    return values


def _positive_or_nan(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.isfinite(x) & (x > 0), x, np.nan)


def _log10_or_nan(x: np.ndarray) -> np.ndarray:
    x = _positive_or_nan(x)
    with np.errstate(invalid="ignore"):
        return np.log10(x)


def _sample_half_width(samples: np.ndarray) -> np.ndarray:
    """Half the 16-84 % range of each row's posterior samples (NaN where fewer than 2 are finite)."""
    s = np.asarray(samples, dtype=np.float64)
    s = np.where(np.isfinite(s), s, np.nan)
    enough = np.isfinite(s).sum(axis=1) >= 2
    out = np.full(len(s), np.nan)
    if enough.any():
        lo, hi = np.nanpercentile(s[enough], [16.0, 84.0], axis=1)
        out[enough] = 0.5 * (hi - lo)
    return out


def _read_shard(path: Path) -> pd.DataFrame:
    """One shard's targets in the project's names (see the module docstring for the mapping)."""
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ProvabgsError(f"{path}: not a readable HDF5 file ({err}); {FIX}") from err
    with f:
        id_name = _first_present(f, ID_COLUMNS["object_id"])
        if id_name is None:
            raise ProvabgsError(f"{path}: no dataset 'object_id' or 'TARGETID' (the PROVABGS object id); {FIX}")
        n = f[id_name].shape[0]
        ids = _column(f, path, ID_COLUMNS["object_id"], "the PROVABGS object id", n)
        try:  # DESI TARGETIDs: int64 in MMU's files, decimal strings in its Hugging Face loader
            ids = np.asarray(ids).astype(np.int64)
        except (TypeError, ValueError) as err:
            raise ProvabgsError(f"{path}: dataset '{id_name}' is not an integer DESI TARGETID ({err}); {FIX}") from err
        out = {
            "object_id": ids,
            "ra": _column(f, path, ID_COLUMNS["ra"], "the crossmatch", n).astype(np.float64),
            "dec": _column(f, path, ID_COLUMNS["dec"], "the crossmatch", n).astype(np.float64),
        }
        raw = {q: _column(f, path, names, f"PROVABGS target from '{q}'", n) for q, names in VALUE_COLUMNS.items()}
        z = np.asarray(raw["z"], dtype=np.float64)
        out["z"] = np.where(np.isfinite(z) & (z >= 0), z, np.nan)
        out["z_err"] = _positive_or_nan(_column(f, path, (Z_ERR,), "z_err", n)) if Z_ERR in f else np.full(n, np.nan)
        log_mstar = _positive_or_nan(raw["log_mstar"])  # MMU's builder: a log mass <= 0 means no fit
        out["log_mstar"] = log_mstar
        if LOG_MSTAR_SAMPLES in f and f[LOG_MSTAR_SAMPLES].ndim == 2:
            out["log_mstar_err"] = _sample_half_width(_column(f, path, (LOG_MSTAR_SAMPLES,), "log_mstar_err", n))
        else:
            out["log_mstar_err"] = np.full(n, np.nan)
        out["log_ssfr"] = _log10_or_nan(raw["sfr"]) - log_mstar
        out["log_ssfr_err"] = np.full(n, np.nan)
        out["t_age"] = _positive_or_nan(raw["t_age"])
        out["t_age_err"] = np.full(n, np.nan)
        out["log_z_met"] = _log10_or_nan(raw["z_met"])
        out["log_z_met_err"] = np.full(n, np.nan)
    return pd.DataFrame(out)


def read_provabgs(root: str | Path) -> pd.DataFrame:
    """Every shard under ``root`` as one table: ``object_id, ra, dec, healpix, file`` and the targets with errors.

    Raises :class:`ProvabgsError` naming the directory or file, ``aux.provabgs.path`` and
    the fix when the directory is missing, holds no shard, or a shard lacks a column.
    """
    root = Path(root)
    if not root.is_dir():
        raise ProvabgsError(f"{CONFIG_KEY}: directory '{root}' does not exist; {FIX}")
    try:
        shards = list_shards(root, SUFFIXES)
    except MMUFormatError as err:
        raise ProvabgsError(f"{CONFIG_KEY}: {err}; {FIX}") from err
    frames = []
    for hp, path in shards:
        df = _read_shard(path)
        df.insert(3, "healpix", np.int64(hp))
        df.insert(4, "file", str(path.relative_to(root)))
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    placed = np.isfinite(table["ra"].to_numpy()) & np.isfinite(table["dec"].to_numpy())
    if not placed.all():
        log.warning("PROVABGS %s: %d objects without finite ra/dec left out (cannot be matched)", root, (~placed).sum())
        table = table[placed].reset_index(drop=True)
    dup = table["object_id"].duplicated()
    if dup.any():
        first = table.loc[dup.idxmax()]
        raise ProvabgsError(
            f"{root / first['file']}: object_id {first['object_id']} appears in more than one row of "
            f"{CONFIG_KEY}; the catalogue must list each DESI target once"
        )
    counts = ", ".join(f"{t} {int(table[t].notna().sum())}" for t in TARGETS)
    log.info("PROVABGS %s: %d objects in %d shards; finite values: %s", root, len(table), len(shards), counts)
    return table


# --------------------------------------------------------------------------- matching to the pairs


def match_to_pairs(ra: np.ndarray, dec: np.ndarray, catalogue: pd.DataFrame, radius_arcsec: float) -> pd.DataFrame:
    """One row per pair (columns :data:`PAIR_COLUMNS`): its PROVABGS counterpart's targets, NaN where none.

    ``ra, dec``: the pairs' positions in pair order. The match is the pairs' own
    rule (:func:`whatsreal.data.crossmatch.crossmatch`): mutual nearest neighbours
    within ``radius_arcsec``, so no spectrum is given to two pairs. No pair matched
    at all means the catalogue covers other sky: an error, not a table of NaN.
    """
    n = len(ra)
    pairs = pd.DataFrame({"object_id": np.arange(n, dtype=np.int64), "ra": ra, "dec": dec})
    try:
        matched = crossmatch(pairs, catalogue[["object_id", "ra", "dec"]], radius_arcsec, ("pair", "provabgs"))
    except CrossmatchError as err:
        raise ProvabgsError(f"{CONFIG_KEY}: {err}; {FIX}") from err
    out = pd.DataFrame({"pair": np.arange(n, dtype=np.int64)})
    out["provabgs_object_id"] = pd.array([pd.NA] * n, dtype="Int64")
    out["sep_arcsec"] = np.nan
    rows, src = matched["pair_row"].to_numpy(), matched["provabgs_row"].to_numpy()
    out.loc[rows, "provabgs_object_id"] = catalogue["object_id"].to_numpy()[src]
    out.loc[rows, "sep_arcsec"] = matched["sep_arcsec"].to_numpy()
    for col in PAIR_COLUMNS[3:]:
        values = np.full(n, np.nan)
        values[rows] = catalogue[col].to_numpy(dtype=np.float64)[src]
        out[col] = values
    counts = ", ".join(f"{t} {int(out[t].notna().sum())}" for t in TARGETS)
    log.info(
        'PROVABGS: %d of %d pairs have a spectrum within %.2f"; pairs with a label per target: %s',
        len(rows),
        n,
        radius_arcsec,
        counts,
    )
    return out[list(PAIR_COLUMNS)]


# --------------------------------------------------------------------------- writing (tests, demos)


def write_provabgs_shards(root: str | Path, table: pd.DataFrame, n_samples: int = 100) -> list[Path]:
    """Write ``table`` in MMU's PROVABGS layout: ``<root>/healpix=<N>/001-of-001.h5`` per healpix.

    ``table``: ``object_id, ra, dec`` and the project's ``z, z_err, log_mstar,
    log_mstar_err, log_ssfr, t_age, log_z_met``; each is turned back into the MMU
    column the reader reads (``AVG_SFR = 10**(log_ssfr + log_mstar)``, ``Z_MW =
    10**log_z_met``). ``PROVABGS_LOGMSTAR`` holds ``n_samples`` posterior samples at
    the normal quantiles of ``log_mstar +- log_mstar_err``, so their 16-84 % half
    width is the error given. Only the columns the reader needs are written. Each
    shard is written to a temporary file and renamed, so none is left half-written.
    """
    root = Path(root)
    hp = healpix_of(table["ra"].to_numpy(), table["dec"].to_numpy())
    quantiles = ndtri((np.arange(n_samples) + 0.5) / n_samples)
    written = []
    for index in np.unique(hp):
        sub = table[hp == index]
        log_mstar = sub["log_mstar"].to_numpy(np.float64)
        columns = {
            "object_id": sub["object_id"].to_numpy(np.int64),
            "TARGETID": sub["object_id"].to_numpy(np.int64),
            "ra": sub["ra"].to_numpy(np.float64),
            "dec": sub["dec"].to_numpy(np.float64),
            "healpix": np.full(len(sub), index, dtype=np.int64),
            "Z_HP": sub["z"].to_numpy(np.float64),
            "ZERR": sub["z_err"].to_numpy(np.float64),
            "PROVABGS_LOGMSTAR_BF": log_mstar,
            LOG_MSTAR_SAMPLES: log_mstar[:, None] + sub["log_mstar_err"].to_numpy(np.float64)[:, None] * quantiles,
            "AVG_SFR": 10.0 ** (sub["log_ssfr"].to_numpy(np.float64) + log_mstar),
            "TAGE_MW": sub["t_age"].to_numpy(np.float64),
            "Z_MW": 10.0 ** sub["log_z_met"].to_numpy(np.float64),
        }
        path = root / f"healpix={int(index)}" / SHARD_NAME
        with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
            for name, values in columns.items():
                f.create_dataset(name, data=values, track_times=False)
        written.append(path)
    return written
