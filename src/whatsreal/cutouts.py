"""Read users' own raw survey cutouts, so a trained model can be pointed at them.

Accepted inputs (:func:`read_cutouts`; the format is recognised from the file's first
bytes, not its name):

(a) **FITS, one image HDU per object**, each ``(B, S, S)``. Coordinates from the header
    keywords ``RA``/``DEC`` (degrees, or sexagesimal strings read as hours/degrees), else
    the world coordinate of the centre pixel of a celestial WCS. The id is ``OBJECTID``,
    ``OBJID`` or ``EXTNAME``, else ``<file name>:<hdu index>``. HDUs without data (an
    empty primary) are skipped, so the multi-object files :mod:`whatsreal.fits_images`
    writes read back.
(b) **FITS cube** ``(n, B, S, S)`` in one image HDU plus a binary table HDU with columns
    ``object_id``, ``ra``, ``dec`` (any case), one row per cutout. An optional image HDU
    named ``IVAR`` of the same shape is read as the inverse variance.
(c) **MMU HDF5 shard**: ``image_array``, ``image_band``, ``object_id``, ``ra``, ``dec``
    and optionally ``image_ivar`` / ``image_mask`` (True = clean; Legacy's shared
    ``(N, S, S)`` mask is repeated for every band).
(d) **a directory** of such files (``*.fits``, ``*.fit``, ``*.fts``, ``*.fits.gz``,
    ``*.fz``, ``*.hdf5``, ``*.h5``; searched recursively so an MMU ``healpix=<N>/`` tree
    works; dot files, e.g. unfinished temporaries, skipped), read in sorted path order
    and concatenated. ``ivar``/``mask`` are kept only if every file has them.

All cutouts read together must have the same set of bands (planes are reordered to the
first cutout's band order) and one square size.

Bands come from the header keyword ``BANDS`` (``"g,r,i,z"``; ``"hsc-g"`` / ``"DES-G"``
forms are accepted too) or per-plane ``BAND1..BANDn`` (an extension inherits them
from the primary header), or from MMU ``image_band`` strings, which must be the
survey's own (``surveys.py`` ``band_strings``) so that a shard of the other survey is
caught. A FITS file that names no bands is assumed to be in the survey's MMU band order
when its plane count equals the survey's band count; otherwise it must name them.
Every cutout must contain g, r, i and z, the bands the model sees.

Every problem is a :class:`CutoutError` with a one-line message naming the file (and
HDU or row) and what to do. Judging the content is left to the consumer: NaN pixels
pass through, and a cutout smaller than the model's crop is not an error here.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from whatsreal.data.catalog import band_letters
from whatsreal.data.mmu import read_images
from whatsreal.surveys import SURVEYS, Survey

__all__ = ["MODEL_BANDS", "CutoutError", "Cutouts", "read_cutouts"]

MODEL_BANDS: tuple[str, ...] = ("g", "r", "i", "z")
"""Bands every cutout must contain: the model is trained on these four."""

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fz")
HDF5_SUFFIXES = (".hdf5", ".h5")
FITS_MAGIC = b"SIMPLE  ="
GZIP_MAGIC = b"\x1f\x8b"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class CutoutError(ValueError):
    """A user's cutout file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Cutouts:
    """Raw cutouts of ``n`` objects, in one survey's native flux units and pixels."""

    images: np.ndarray
    """(n, B, S, S) float32, raw survey flux, bands in :attr:`bands` order."""
    bands: tuple[str, ...]
    """Short band letters, e.g. ('g', 'r', 'i', 'z')."""
    object_id: np.ndarray
    """(n,) str."""
    ra: np.ndarray
    """(n,) float64 degrees (ICRS)."""
    dec: np.ndarray
    """(n,) float64 degrees (ICRS)."""
    ivar: np.ndarray | None
    """(n, B, S, S) float32 inverse variance, or None when the input has none."""
    mask: np.ndarray | None
    """(n, B, S, S) bool, True = clean, or None when the input has none."""
    sources: tuple[str, ...]
    """Where each cutout came from ("file.fits[HDU 3]", "shard.hdf5[row 12]"), so a
    consumer that rejects one can say which."""

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def select(self, index: Sequence[int] | np.ndarray) -> Cutouts:
        """The cutouts at ``index`` (positions), in that order."""
        idx = np.asarray(index, dtype=np.int64)
        return Cutouts(
            images=self.images[idx],
            bands=self.bands,
            object_id=self.object_id[idx],
            ra=self.ra[idx],
            dec=self.dec[idx],
            ivar=None if self.ivar is None else self.ivar[idx],
            mask=None if self.mask is None else self.mask[idx],
            sources=tuple(self.sources[i] for i in idx),
        )

    def nearest(self, ra: float, dec: float, k: int, min_separation_arcsec: float = 1.0) -> Cutouts:
        """The ``k`` cutouts nearest (ra, dec) on the sky, leaving out any within
        ``min_separation_arcsec`` (the galaxy itself): the instrument views for a galaxy
        there, since the model learnt a survey's conditions from spatial neighbours."""
        sep = SkyCoord(self.ra, self.dec, unit="deg").separation(SkyCoord(ra, dec, unit="deg")).arcsec
        order = [i for i in np.argsort(sep, kind="stable") if sep[i] > min_separation_arcsec]
        return self.select(order[:k])


def read_cutouts(path: str | Path, survey: str) -> Cutouts:
    """Read a FITS file, an MMU HDF5 shard or a directory of them (see the module docstring)."""
    if survey not in SURVEYS:
        raise CutoutError(f"{path}: unknown survey '{survey}'; use one of {', '.join(SURVEYS)}")
    spec = SURVEYS[survey]
    path = Path(path)
    if path.is_dir():
        files = _files_in(path)
        parts = [_read_file(f, spec) for f in files]
        return _concatenate(parts)
    if not path.exists():
        raise CutoutError(f"{path}: no such file or directory; give a FITS file, an MMU HDF5 shard or a directory")
    return _read_file(path, spec)


def _files_in(directory: Path) -> list[Path]:
    """Cutout files under ``directory`` (recursively, sorted); hidden files are skipped
    because atomic writers leave their temporaries as dot files."""
    suffixes = FITS_SUFFIXES + HDF5_SUFFIXES
    files = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
        and p.name.lower().endswith(suffixes)
    )
    if not files:
        raise CutoutError(
            f"{directory}: directory holds no cutout files ({', '.join(suffixes)}); point at a file or a folder of them"
        )
    return files


def _read_file(path: Path, spec: Survey) -> Cutouts:
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(FITS_MAGIC))
    except OSError as err:
        raise CutoutError(f"{path}: cannot be read ({err.strerror}); check the path and its permissions") from None
    if not head:
        raise CutoutError(f"{path}: file is empty (0 bytes); re-export or re-download it")
    if head.startswith(HDF5_MAGIC):
        return _read_hdf5(path, spec)
    if head.startswith(FITS_MAGIC) or head.startswith(GZIP_MAGIC):
        return _read_fits(path, spec)
    raise CutoutError(f"{path}: neither a FITS nor an HDF5 file; give FITS cutouts or an MMU HDF5 shard")


# --- FITS -----------------------------------------------------------------------------


def _read_fits(path: Path, spec: Survey) -> Cutouts:
    """Formats (a) and (b). Data are loaded inside the ``open`` so a truncated file fails
    here, with its name, rather than later in the consumer."""
    try:
        with warnings.catch_warnings():
            # astropy warns (and then raises on access) for truncated files; we report once.
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                hdus = [(k, hdu.header.copy(), _load(hdu)) for k, hdu in enumerate(hdul)]
    except (OSError, ValueError, TypeError, IndexError) as err:
        raise CutoutError(f"{path}: not a readable FITS file ({err}); re-export or re-download it") from None
    primary = hdus[0][1]
    tables = [(k, h, d) for k, h, d in hdus if isinstance(d, fits.FITS_rec)]
    images = [(k, h, d) for k, h, d in hdus if isinstance(d, np.ndarray) and not isinstance(d, fits.FITS_rec)]
    images = [(k, h, d) for k, h, d in images if d.size]
    if not images:
        raise CutoutError(f"{path}: file holds no image data; expected one (B, S, S) image HDU per object")
    cubes = [(k, h, d) for k, h, d in images if d.ndim == 4 and h.get("EXTNAME", "").upper() != "IVAR"]
    if cubes:
        return _read_fits_cube(path, spec, primary, cubes, images, tables)
    return _read_fits_per_object(path, spec, primary, images)


def _load(hdu: fits.hdu.base.ExtensionHDU | fits.PrimaryHDU) -> np.ndarray | None:
    """An HDU's data: a table as ``FITS_rec``, an image as an array, anything else None."""
    if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
        data = hdu.data
        return None if data is None else np.asarray(data)
    if isinstance(hdu, fits.BinTableHDU):
        return hdu.data
    return None


def _read_fits_per_object(path: Path, spec: Survey, primary: fits.Header, images: list) -> Cutouts:
    size = None
    arrays, ids, ras, decs, sources = [], [], [], [], []
    bands: tuple[str, ...] | None = None
    for k, header, data in images:
        where = f"{path}[HDU {k}]"
        if data.ndim != 3:
            raise CutoutError(
                f"{where}: image has shape {data.shape}; each object needs one (B, S, S) HDU (B bands), "
                "or put all objects in one (n, B, S, S) cube with an object_id/ra/dec table"
            )
        size = _check_square(where, data.shape[-2:], size, first=sources[0] if sources else None)
        these = _fits_bands(where, header, primary, data.shape[0], spec)
        if bands is None:
            bands = these
        elif set(these) != set(bands):
            raise CutoutError(
                f"{where}: bands {','.join(these)} differ from {sources[0]}'s {','.join(bands)}; "
                "give all HDUs the same bands"
            )
        ra, dec = _fits_coordinates(where, header, data.shape[-1])
        # Same bands in another order: planes follow the first HDU's order, as across files.
        arrays.append(np.asarray(data[[these.index(b) for b in bands]], dtype=np.float32))
        ids.append(_fits_object_id(header, path, k))
        ras.append(ra)
        decs.append(dec)
        sources.append(where)
    assert bands is not None
    return Cutouts(
        images=np.stack(arrays),
        bands=bands,
        object_id=np.array(ids, dtype=str),
        ra=np.array(ras, dtype=np.float64),
        dec=np.array(decs, dtype=np.float64),
        ivar=None,
        mask=None,
        sources=tuple(sources),
    )


def _read_fits_cube(path: Path, spec: Survey, primary: fits.Header, cubes: list, images: list, tables: list) -> Cutouts:
    k, header, data = cubes[0]
    where = f"{path}[HDU {k}]"
    if len(cubes) > 1:
        raise CutoutError(f"{path}: {len(cubes)} (n, B, S, S) cubes (HDUs {[c[0] for c in cubes]}); give one per file")
    _check_square(where, data.shape[-2:], None)
    n = data.shape[0]
    bands = _fits_bands(where, header, primary, data.shape[1], spec)
    if not tables:
        raise CutoutError(
            f"{where}: no coordinates; a (n, B, S, S) cube needs a binary table HDU with object_id, ra, dec columns"
        )
    tk, _, table = tables[0]
    columns = {name.lower(): name for name in table.columns.names}
    missing = [c for c in ("object_id", "ra", "dec") if c not in columns]
    if missing:
        what = "no coordinates" if {"ra", "dec"} & set(missing) else "no object ids"
        raise CutoutError(
            f"{path}[HDU {tk}]: table lacks column(s) {', '.join(missing)} ({what}); "
            f"it has {', '.join(table.columns.names)}"
        )
    if len(table) != n:
        raise CutoutError(f"{path}[HDU {tk}]: table has {len(table)} rows but the cube HDU {k} holds {n} cutouts")
    ra = np.asarray(table[columns["ra"]], dtype=np.float64)
    dec = np.asarray(table[columns["dec"]], dtype=np.float64)
    for row in range(n):
        _check_coordinates(f"{path}[HDU {tk} row {row}]", ra[row], dec[row])
    ivar = None
    for ik, iheader, idata in images:
        if iheader.get("EXTNAME", "").upper() == "IVAR":
            if idata.shape != data.shape:
                raise CutoutError(f"{path}[HDU {ik}]: IVAR has shape {idata.shape}, the cube {data.shape}")
            ivar = np.asarray(idata, dtype=np.float32)
    return Cutouts(
        images=np.asarray(data, dtype=np.float32),
        bands=bands,
        object_id=_as_str(np.asarray(table[columns["object_id"]])),
        ra=ra,
        dec=dec,
        ivar=ivar,
        mask=None,
        sources=tuple(f"{where}[cutout {row}]" for row in range(n)),
    )


def _fits_bands(where: str, header: fits.Header, primary: fits.Header, planes: int, spec: Survey) -> tuple[str, ...]:
    """Band letters for ``planes`` image planes: BANDS, else BAND1..n, else the survey's order."""
    named: list[str] | None = None
    for h in (header, primary):
        if "BANDS" in h:
            named = [b for b in re.split(r"[,\s]+", str(h["BANDS"]).strip()) if b]
            break
        if "BAND1" in h:
            named = []
            while f"BAND{len(named) + 1}" in h:
                named.append(str(h[f"BAND{len(named) + 1}"]).strip())
            break
    if named is None:
        if planes != len(spec.bands):
            raise CutoutError(
                f"{where}: {planes} image planes but no band names; add a header keyword BANDS = 'g,r,i,z' "
                f"(or BAND1..BAND{planes}), or give the {len(spec.bands)} {spec.name} bands {','.join(spec.bands)}"
            )
        return _check_bands(where, list(spec.bands), spec)
    if len(named) != planes:
        raise CutoutError(
            f"{where}: header names {len(named)} bands ({','.join(named)}), the image has {planes} planes; "
            "name one band per plane"
        )
    return _check_bands(where, band_letters(np.array(named)), spec)


def _check_bands(where: str, letters: list[str], spec: Survey) -> tuple[str, ...]:
    unknown = [b for b in letters if b not in spec.bands]
    if unknown:
        raise CutoutError(f"{where}: band(s) {', '.join(unknown)} are not {spec.name} bands ({', '.join(spec.bands)})")
    if len(set(letters)) != len(letters):
        raise CutoutError(f"{where}: a band is named twice ({','.join(letters)})")
    missing = [b for b in MODEL_BANDS if b not in letters]
    if missing:
        raise CutoutError(
            f"{where}: band(s) {', '.join(missing)} missing (has {','.join(letters)}); the model needs g, r, i, z"
        )
    return tuple(letters)


def _fits_coordinates(where: str, header: fits.Header, size: int) -> tuple[float, float]:
    """RA/DEC keywords if present, else the world coordinate of the cutout centre."""
    if "RA" in header and "DEC" in header:
        ra, dec = header["RA"], header["DEC"]
        try:
            ra, dec = float(ra), float(dec)
        except ValueError:  # sexagesimal strings, e.g. '10:00:28.6' '+02:12:21'
            try:
                coord = SkyCoord(str(ra), str(dec), unit=(u.hourangle, u.deg))
            except ValueError:
                raise CutoutError(f"{where}: RA/DEC keywords ({ra!r}, {dec!r}) unreadable; give degrees") from None
            ra, dec = coord.ra.deg, coord.dec.deg
        _check_coordinates(where, ra, dec)
        return float(ra), float(dec)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header)
    except (ValueError, KeyError, MemoryError) as err:
        raise CutoutError(f"{where}: no coordinates (no RA/DEC keywords, unreadable WCS: {err})") from None
    if not wcs.has_celestial:
        raise CutoutError(
            f"{where}: no coordinates; add RA and DEC header keywords (degrees) or a celestial WCS (RA---TAN ...)"
        )
    centre = (size - 1) / 2  # 0-based pixel at the geometric centre of the cutout
    coord = wcs.celestial.pixel_to_world(centre, centre).icrs
    ra, dec = float(coord.ra.deg), float(coord.dec.deg)
    _check_coordinates(where, ra, dec)
    return ra, dec


def _check_coordinates(where: str, ra: float, dec: float) -> None:
    if not (np.isfinite(ra) and np.isfinite(dec) and 0 <= ra <= 360 and -90 <= dec <= 90):
        raise CutoutError(f"{where}: no usable coordinates (ra={ra}, dec={dec}); give RA in [0, 360], Dec in [-90, 90]")


def _fits_object_id(header: fits.Header, path: Path, k: int) -> str:
    for key in ("OBJECTID", "OBJID", "EXTNAME"):
        if key in header and str(header[key]).strip():
            return str(header[key]).strip()
    return f"{path.name}:{k}"


def _check_square(where: str, shape: Sequence[int], size: int | None, first: str | None = None) -> int:
    h, w = int(shape[0]), int(shape[1])
    if h != w:
        raise CutoutError(f"{where}: cutout is {h}x{w} pixels, not square; cut square cutouts centred on the object")
    if size is not None and h != size:
        raise CutoutError(f"{where}: cutout is {h}x{h} pixels but {first} is {size}x{size}; give every cutout one size")
    return h


# --- MMU HDF5 -------------------------------------------------------------------------


def _read_hdf5(path: Path, spec: Survey) -> Cutouts:
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise CutoutError(f"{path}: not a readable HDF5 file ({err}); re-download the shard") from None
    with f:
        if "image_array" not in f:
            raise CutoutError(f"{path}: no 'image_array' dataset; this is not an MMU image shard")
        if "ra" not in f or "dec" not in f:
            raise CutoutError(f"{path}: no coordinates (datasets 'ra'/'dec' missing); use an MMU image shard")
        if "object_id" not in f or "image_band" not in f:
            lacking = [k for k in ("object_id", "image_band") if k not in f]
            raise CutoutError(f"{path}: dataset(s) {', '.join(lacking)} missing; this is not an MMU image shard")
        shape = f["image_array"].shape
        n = shape[0]
        if n == 0:
            raise CutoutError(f"{path}: shard is empty (0 cutouts)")
        if len(shape) != 4:
            raise CutoutError(f"{path}: 'image_array' has shape {shape}, expected (N, B, S, S)")
        _check_square(f"{path}['image_array']", shape[-2:], None)
        for name in ("object_id", "ra", "dec", "image_band"):
            if f[name].shape[0] != n:
                raise CutoutError(f"{path}: '{name}' has {f[name].shape[0]} rows, 'image_array' has {n}")
        try:
            band_rows = f["image_band"][()]
            object_id = _as_str(f["object_id"][()])
            ra = np.asarray(f["ra"][()], dtype=np.float64)
            dec = np.asarray(f["dec"][()], dtype=np.float64)
            present = [name for name in ("image_array", "image_ivar", "image_mask") if name in f]
            shapes = {name: f[name].shape for name in present}
        except OSError as err:
            raise CutoutError(f"{path}: HDF5 file is damaged ({err}); re-download the shard") from None
    bands = _mmu_bands(path, band_rows, shape[1], spec)
    for row in range(n):
        _check_coordinates(f"{path}[row {row}]", ra[row], dec[row])
    try:
        arrays = read_images(path, np.arange(n), present)
    except OSError as err:
        raise CutoutError(f"{path}: HDF5 file is damaged ({err}); re-download the shard") from None
    ivar = arrays.get("image_ivar")
    if ivar is not None and ivar.shape != shape:
        raise CutoutError(f"{path}: 'image_ivar' has shape {ivar.shape}, 'image_array' {shape}")
    mask = arrays.get("image_mask")
    if mask is not None:
        if mask.shape == (n, *shape[2:]):  # Legacy: one mask shared by every band
            mask = np.repeat(mask[:, None], shape[1], axis=1)
        if mask.shape != shape:
            raise CutoutError(f"{path}: 'image_mask' has shape {shapes['image_mask']}, 'image_array' {shape}")
        mask = mask.astype(bool)
    return Cutouts(
        images=np.asarray(arrays["image_array"], dtype=np.float32),
        bands=bands,
        object_id=object_id,
        ra=ra,
        dec=dec,
        ivar=None if ivar is None else np.asarray(ivar, dtype=np.float32),
        mask=mask,
        sources=tuple(f"{path}[row {row}]" for row in range(n)),
    )


def _mmu_bands(path: Path, band_rows: np.ndarray, planes: int, spec: Survey) -> tuple[str, ...]:
    """Band letters from MMU ``image_band`` strings, which must be this survey's."""
    first = [b.decode() if isinstance(b, bytes) else str(b) for b in np.atleast_1d(band_rows[0])]
    for row in range(1, len(band_rows)):
        these = [b.decode() if isinstance(b, bytes) else str(b) for b in np.atleast_1d(band_rows[row])]
        if these != first:
            raise CutoutError(f"{path}[row {row}]: image_band {these} differs from row 0's {first}")
    if len(first) != planes:
        raise CutoutError(f"{path}: image_band names {len(first)} bands but 'image_array' has {planes} planes")
    known = [s.lower() for s in spec.band_strings]
    foreign = [s for s in first if s.lower() not in known]
    if foreign:
        raise CutoutError(
            f"{path}: image_band {', '.join(foreign)} are not {spec.name} bands ({', '.join(spec.band_strings)}); "
            "is this shard from the other survey?"
        )
    return _check_bands(str(path), [spec.bands[known.index(s.lower())] for s in first], spec)


def _as_str(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind == "S":
        return np.char.strip(np.char.decode(values, "utf-8"))
    return np.char.strip(values.astype(str))


# --- directories ----------------------------------------------------------------------


def _concatenate(parts: list[Cutouts]) -> Cutouts:
    """One :class:`Cutouts` from several files: same band set (reordered to the first
    file's), same size. ivar/mask are kept only when every file has them, since a
    partial noise map cannot be told apart from a clean one later."""
    first = parts[0]
    images, ivars, masks = [], [], []
    for part in parts:
        if set(part.bands) != set(first.bands):
            raise CutoutError(
                f"{part.sources[0]}: bands {','.join(part.bands)} differ from {first.sources[0]}'s "
                f"{','.join(first.bands)}; give every file the same bands"
            )
        if part.images.shape[-1] != first.images.shape[-1]:
            s, s0 = part.images.shape[-1], first.images.shape[-1]
            raise CutoutError(
                f"{part.sources[0]}: cutouts are {s}x{s} pixels but {first.sources[0]} is {s0}x{s0}; "
                "give every file one cutout size"
            )
        order = [part.bands.index(b) for b in first.bands]
        images.append(part.images[:, order])
        ivars.append(None if part.ivar is None else part.ivar[:, order])
        masks.append(None if part.mask is None else part.mask[:, order])
    return Cutouts(
        images=np.concatenate(images),
        bands=first.bands,
        object_id=np.concatenate([p.object_id for p in parts]),
        ra=np.concatenate([p.ra for p in parts]),
        dec=np.concatenate([p.dec for p in parts]),
        ivar=None if any(v is None for v in ivars) else np.concatenate(ivars),
        mask=None if any(m is None for m in masks) else np.concatenate(masks),
        sources=tuple(s for p in parts for s in p.sources),
    )
