"""Known strong lenses for the rare-object retrieval query (paper Fig. 5), via astroquery.

By default a published catalogue is fetched from VizieR (``aux.lens_catalog.vizier``,
Huang et al. 2021, DESI Legacy Imaging Surveys lens candidates, J/ApJ/909/27); a
local file (``aux.lens_catalog.local``: CSV, FITS or VOTable with RA/Dec columns)
can be used instead, which is the only way on machines without internet. The
result is a small CSV with ``ra, dec`` (deg, ICRS) plus the catalogue's columns.
On the synthetic sky the truth table's ``lens`` class plays this role.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.table import Table

from whatsreal.io import write_csv

__all__ = ["LensCatalogError", "fetch_lens_catalog", "normalise_lens_table"]

log = logging.getLogger(__name__)
RA_NAMES = ("_RAJ2000", "RAJ2000", "RA_ICRS", "RAdeg", "ra", "RA")
DEC_NAMES = ("_DEJ2000", "DEJ2000", "DE_ICRS", "DEdeg", "dec", "DEC", "Dec")


class LensCatalogError(RuntimeError):
    """The lens catalogue could not be obtained; the message says which file to provide."""


def _column(table: pd.DataFrame, names: tuple[str, ...], what: str, source: str) -> np.ndarray:
    for name in names:
        if name in table.columns:
            return table[name].to_numpy(dtype=float)
    raise LensCatalogError(f"{source}: no {what} column (looked for {', '.join(names)})")


def normalise_lens_table(table: Table | pd.DataFrame, source: str) -> pd.DataFrame:
    """``ra``, ``dec`` in degrees first, then every other column; rows without a position dropped."""
    df = table.to_pandas() if isinstance(table, Table) else table.copy()
    ra = _column(df, RA_NAMES, "RA", source)
    dec = _column(df, DEC_NAMES, "Dec", source)
    ok = np.isfinite(ra) & np.isfinite(dec)
    if not ok.any():
        raise LensCatalogError(f"{source}: no row has a finite position")
    rest = df.drop(columns=[c for c in ("ra", "dec") if c in df.columns])
    out = pd.concat([pd.DataFrame({"ra": ra, "dec": dec}), rest.reset_index(drop=True)], axis=1)[ok]
    return out.reset_index(drop=True)


def fetch_lens_catalog(vizier_id: str | None, local: str | Path | None, out: str | Path) -> pd.DataFrame:
    """Write the lens catalogue to ``out`` (CSV) from ``local`` if given, else from VizieR."""
    out = Path(out)
    if local:
        path = Path(local)
        if not path.exists():
            raise LensCatalogError(f"aux.lens_catalog.local: '{path}' does not exist")
        fmt = "ascii.csv" if path.suffix.lower() == ".csv" else None
        df = normalise_lens_table(Table.read(path, format=fmt), str(path))
        source = str(path)
    else:
        if not vizier_id:
            raise LensCatalogError("aux.lens_catalog: set either 'vizier' (a VizieR catalogue id) or 'local'")
        df = _from_vizier(vizier_id, out)
        source = f"VizieR {vizier_id}"
    write_csv(df, out)
    log.info("lens catalogue: %d lenses from %s -> %s", len(df), source, out)
    return df


def _from_vizier(vizier_id: str, out: Path) -> pd.DataFrame:
    from astroquery.vizier import Vizier

    hint = (
        f"download the catalogue elsewhere (e.g. VizieR {vizier_id} as CSV or VOTable with RA/Dec columns), "
        f"put it on this machine and set aux.lens_catalog.local to its path (it is then copied to {out})"
    )
    try:
        tables = Vizier(columns=["_RAJ2000", "_DEJ2000", "*"], row_limit=-1).get_catalogs(vizier_id)
    except Exception as err:  # requests' connection errors, timeouts, HTTP errors
        raise LensCatalogError(
            f"could not fetch {vizier_id} from VizieR ({type(err).__name__}: {err}); {hint}"
        ) from None
    if len(tables) == 0:
        raise LensCatalogError(f"VizieR returned no table for {vizier_id}; {hint}")
    frames = [normalise_lens_table(t, f"VizieR {vizier_id}") for t in tables]
    return pd.concat(frames, ignore_index=True)
