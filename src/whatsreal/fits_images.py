"""Write generated and counterfactual images as FITS files that ds9 and astropy open.

Layout written by :func:`write_image_fits` (every image HDU carries the full header
below, so any one HDU stands alone, e.g. in ``CCDData.read(path, hdu=...)``):

- **one object, no samples** (``images`` (B, H, W)): the primary HDU holds the image.
- **one object with samples** (``sample_axis=True``, ``images`` (n, B, H, W)): the primary
  HDU holds the mean over samples (the posterior mean), (B, H, W); an image extension
  ``EXTNAME='SAMPLES'`` holds all samples, (n, B, H, W), with the same celestial WCS and
  a fourth axis ``SAMPLE``. The mean comes first so that viewers and ``CCDData.read(path)``
  show the best single estimate.
- **several objects** (``images`` (m, B, H, W), or (m, n, B, H, W) with samples; ``ra``,
  ``dec``, ``object_id`` sequences of length m): an empty primary HDU with the shared
  keywords (``SURVEY``, ``BANDS``, ``BUNIT``, ``NOBJECT``, provenance), then one image HDU
  per object with ``EXTNAME`` = its object id (the mean when there are samples), followed
  with samples by ``EXTNAME`` = ``<object id>_SAMPLES``. ``CCDData.read(path)`` then
  opens the first object (astropy picks the first HDU with data).

Header of each image HDU: a TAN WCS centred on the object (``CRPIX`` at the geometric
image centre, i.e. ((W+1)/2, (H+1)/2) in FITS' 1-based pixels, ``CDELT1`` negative so RA
increases to the east, ICRS); a linear third axis ``CTYPE3='BAND'`` whose pixel k
(1-based) is the band in keyword ``BANDk``, plus ``BANDS='g,r,i,z'``; ``BUNIT``;
``OBJECTID``, ``SURVEY``, ``RA``/``DEC`` (degrees), ``PIXSCALE`` (arcsec/pixel);
``MAGZERO`` (AB magnitude of one image unit) when ``BUNIT`` is a flux unit; ``NSAMPLE``
with samples; then the caller's provenance (``header_extra``), long strings as CONTINUE
cards; and ``CHECKSUM``/``DATASUM``. These files read back with
:func:`whatsreal.cutouts.read_cutouts` (files without samples).

Units: ``BUNIT`` must parse with ``astropy.units.Unit`` because ``CCDData.read`` parses
it. :data:`NATIVE_BUNIT` gives each survey's raw flux unit. Legacy: ``'nanomaggy'``
(astropy's ``u.nanomaggy``, and the Legacy Survey's own BUNIT; AB zero-point 22.5).
HSC: ``'57.54747181826293 nJy'``. HSC coadds have zero-point 27, so one unit is
3631 Jy * 10**(-0.4 * 27) = 57.547 nJy (3631 Jy = AB zero, as in astropy's maggy);
astropy has no named unit for that, and a scaled nJy parses in any astropy without
registering anything (a ``u.def_unit`` would only help processes that registered it
too). Neither string is in the FITS standard's unit list, so other readers show it
verbatim; ``MAGZERO`` states the calibration for them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS

from whatsreal.io import atomic_path
from whatsreal.surveys import SURVEYS

__all__ = ["NATIVE_BUNIT", "celestial_wcs", "magzero_of", "write_image_fits"]

NATIVE_BUNIT: dict[str, str] = {
    "legacysurvey": "nanomaggy",
    "hsc": "57.54747181826293 nJy",
}
"""``BUNIT`` of each survey's raw flux (what ``to_flux`` returns): one image unit is the
flux of an AB magnitude equal to the survey's zero-point (22.5 and 27)."""

AB_ZERO_FLUX = 3631.0 * u.Jy
_KEYWORD = re.compile(r"^[A-Z0-9_-]{1,8}$")
_RESERVED = re.compile(
    r"^(SIMPLE|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|XTENSION|EXTNAME|EXTVER|BSCALE|BZERO|BLANK|END|"
    r"CHECKSUM|DATASUM|CONTINUE|COMMENT|HISTORY|WCSAXES|CTYPE\d+|CRPIX\d+|CRVAL\d+|CDELT\d+|CUNIT\d+|"
    r"CD\d+_\d+|PC\d+_\d+|CROTA\d+|LONPOLE|LATPOLE|RADESYS|EQUINOX|MJDREF|"
    r"BUNIT|OBJECTID|SURVEY|BANDS|BAND\d+|RA|DEC|PIXSCALE|MAGZERO|NSAMPLE|NOBJECT|CONTENT)$"
)
"""Keywords this module writes itself (or FITS structure needs): provenance may not override them."""


def celestial_wcs(ra: float, dec: float, pixel_scale_arcsec: float, size: int, n_bands: int | None = None) -> WCS:
    """A TAN WCS for a ``size`` x ``size`` image centred on (ra, dec), north up, east left.

    With ``n_bands`` a third, linear ``BAND`` axis is added (pixel k = the k-th band,
    1-based) so the WCS describes a (B, H, W) cube and still ``has_celestial``.
    """
    return _wcs(ra, dec, pixel_scale_arcsec, size, extra=(("BAND", n_bands),) if n_bands is not None else ())


def _wcs(ra: float, dec: float, pixel_scale_arcsec: float, size: int, extra: Sequence[tuple[str, int]]) -> WCS:
    if not (np.isfinite(ra) and np.isfinite(dec) and -90 <= dec <= 90):
        raise ValueError(f"cannot centre a WCS on ra={ra}, dec={dec}")
    if not pixel_scale_arcsec > 0:
        raise ValueError(f"pixel scale must be positive, got {pixel_scale_arcsec}")
    wcs = WCS(naxis=2 + len(extra))
    centre = (size + 1) / 2  # FITS pixels are 1-based: the geometric centre of 1..size
    scale = pixel_scale_arcsec / 3600.0
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN", *(name for name, _ in extra)]
    wcs.wcs.cunit = ["deg", "deg", *("" for _ in extra)]
    wcs.wcs.crpix = [centre, centre, *(1.0 for _ in extra)]
    wcs.wcs.crval = [float(ra) % 360.0, float(dec), *(1.0 for _ in extra)]
    wcs.wcs.cdelt = [-scale, scale, *(1.0 for _ in extra)]  # RA grows to the east = left
    wcs.wcs.radesys = "ICRS"
    wcs.pixel_shape = (size, size, *(n for _, n in extra))
    return wcs


def magzero_of(bunit: str) -> float | None:
    """AB magnitude of one ``bunit`` of flux, or None when ``bunit`` is not a flux unit.

    Derived from the unit rather than from the survey, so it stays right whatever the
    caller converted the images to ('nanomaggy' -> 22.5, '57.547... nJy' -> 27.0).
    """
    unit = u.Unit(bunit)
    try:
        jy = unit.to(u.Jy, equivalencies=u.zero_point_flux(AB_ZERO_FLUX))
    except u.UnitConversionError:
        return None
    return float(-2.5 * np.log10(jy / AB_ZERO_FLUX.value))


@dataclass(frozen=True)
class _Objects:
    """Checked inputs of :func:`write_image_fits`: m objects' images and their identities."""

    stack: np.ndarray
    """(m, B, H, W), or (m, n, B, H, W) with samples."""
    several: bool
    ids: list[str]
    ras: np.ndarray
    decs: np.ndarray
    bands: list[str]
    refs: np.ndarray | None


def write_image_fits(
    path: str | Path,
    images: np.ndarray,
    *,
    survey: str,
    bands: Sequence[str],
    ra: float | Sequence[float] | np.ndarray,
    dec: float | Sequence[float] | np.ndarray,
    object_id: str | int | Sequence[str | int] | np.ndarray,
    pixel_scale_arcsec: float,
    bunit: str,
    header_extra: Mapping[str, object] = {},
    sample_axis: bool = False,
    references: np.ndarray | None = None,
) -> None:
    """Write images of one or several objects as FITS (layout in the module docstring).

    ``images``: (B, H, W) for one object, (m, B, H, W) for m objects; with
    ``sample_axis`` one more leading axis of samples per object, (n, B, H, W) or
    (m, n, B, H, W). ``ra``/``dec``/``object_id`` are scalars for one object, sequences
    for several. ``references``: optionally, per object a real image (B, H, W) to compare
    with, written after the object's HDUs as ``TARGET`` (one object) or ``<id>_TARGET``,
    same WCS. Everything is checked and the HDUs built before anything touches ``path``,
    and the file is written to a temporary sibling then renamed, so a failure leaves any
    previous file at ``path`` as it was.
    """
    if survey not in SURVEYS:
        raise ValueError(f"unknown survey '{survey}': use one of {', '.join(SURVEYS)}")
    objects = _checked_objects(images, bands, ra, dec, object_id, sample_axis, references)
    try:
        u.Unit(bunit)
    except ValueError as err:
        raise ValueError(
            f"BUNIT {bunit!r} does not parse as an astropy unit, so CCDData could not read it: {err}"
        ) from None
    common = _common_cards(survey, objects.bands, bunit, _checked_extra(header_extra))
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = []
    if objects.several:
        primary = fits.PrimaryHDU()
        m = len(objects.ids)
        primary.header.extend([*common[:4], ("NOBJECT", m, "objects in this file, one HDU each"), *common[4:]])
        hdus.append(primary)
    for k in range(len(objects.ids)):
        hdus += _object_hdus(objects, k, pixel_scale_arcsec, common, sample_axis)
    hdul = fits.HDUList(hdus)
    hdul.verify("exception")
    with atomic_path(path, ".fits") as tmp:
        hdul.writeto(tmp, overwrite=True, checksum=True)


def _checked_objects(
    images: np.ndarray,
    bands: Sequence[str],
    ra: float | Sequence[float] | np.ndarray,
    dec: float | Sequence[float] | np.ndarray,
    object_id: str | int | Sequence[str | int] | np.ndarray,
    sample_axis: bool,
    references: np.ndarray | None,
) -> _Objects:
    """The images as a stack of objects, with every shape and identity checked."""
    images = np.asarray(images)
    per_object = 4 if sample_axis else 3
    if images.ndim not in (per_object, per_object + 1):
        raise ValueError(
            f"images have shape {images.shape}; expected {'(n, B, H, W)' if sample_axis else '(B, H, W)'} for one "
            f"object or one more leading axis for several (sample_axis={sample_axis})"
        )
    several = images.ndim == per_object + 1
    stack = images if several else images[None]
    m = stack.shape[0]
    ids = [str(v) for v in np.atleast_1d(np.asarray(object_id))]
    ras = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    decs = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    if not (len(ids) == len(ras) == len(decs) == m):
        raise ValueError(f"{m} object(s) of images but {len(ids)} object_id, {len(ras)} ra, {len(decs)} dec")
    if several and len(set(ids)) != m:
        raise ValueError("object ids must be unique: each names an HDU (EXTNAME)")
    names = [str(b) for b in bands]
    nb, h, w = stack.shape[-3:]
    if len(names) != nb:
        raise ValueError(f"{len(names)} band names ({','.join(names)}) for {nb} image planes")
    if h != w:
        raise ValueError(f"images are {h}x{w} pixels; the WCS assumes square cutouts")
    refs = None
    if references is not None:
        refs = np.asarray(references, dtype=np.float32)
        refs = refs if several else refs[None]
        if refs.shape != (m, nb, h, w):
            raise ValueError(f"references have shape {refs.shape}; expected {(m, nb, h, w)} (one image per object)")
    return _Objects(stack, several, ids, ras, decs, names, refs)


def _object_hdus(
    objects: _Objects, k: int, pixel_scale_arcsec: float, common: list[tuple], sample_axis: bool
) -> list[fits.PrimaryHDU | fits.ImageHDU]:
    """Object k's HDUs: its image (or posterior mean), its samples, its reference image."""
    oid, ra, dec, several = objects.ids[k], objects.ras[k], objects.decs[k], objects.several
    cube = np.asarray(objects.stack[k], dtype=np.float32)
    nb, size = cube.shape[-3], cube.shape[-1]
    header = _object_header(oid, ra, dec, pixel_scale_arcsec, size, nb, common)
    header["CONTENT"] = (f"mean of {cube.shape[0]} samples" if sample_axis else "image", "what the data array holds")
    if sample_axis:
        header["NSAMPLE"] = (cube.shape[0], "samples in the SAMPLES HDU")
    mean = cube.mean(axis=0) if sample_axis else cube
    if several:
        # Set in the header, not via ``name=``, which would upper-case the id.
        header["EXTNAME"] = (oid, "object id")
        out: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.ImageHDU(mean, header=header)]
    else:
        out = [fits.PrimaryHDU(mean, header=header)]
    if sample_axis:
        sheader = _object_header(oid, ra, dec, pixel_scale_arcsec, size, nb, common, n_samples=cube.shape[0])
        sheader["CONTENT"] = ("posterior samples", "what the data array holds")
        sheader["NSAMPLE"] = (cube.shape[0], "samples along axis 4 (the first numpy axis)")
        sheader["EXTNAME"] = (f"{oid}_SAMPLES" if several else "SAMPLES", "samples of OBJECTID")
        out.append(fits.ImageHDU(cube, header=sheader))
    if objects.refs is not None:
        rheader = _object_header(oid, ra, dec, pixel_scale_arcsec, size, nb, common)
        rheader["CONTENT"] = ("real image", "what the data array holds: the observed target")
        rheader["EXTNAME"] = (f"{oid}_TARGET" if several else "TARGET", "real image of OBJECTID")
        out.append(fits.ImageHDU(objects.refs[k], header=rheader))
    return out


def _checked_extra(header_extra: Mapping[str, object]) -> list[tuple[str, Any]]:
    """Provenance cards, checked up front so a bad key fails before any file is touched."""
    out = []
    for key, value in header_extra.items():
        name = str(key).upper()
        if not _KEYWORD.match(name):
            raise ValueError(
                f"header_extra key {key!r} is not a FITS keyword: use at most 8 characters from A-Z, 0-9, '_', '-'"
            )
        if _RESERVED.match(name):
            raise ValueError(f"header_extra key {key!r} is written by write_image_fits itself; choose another name")
        if isinstance(value, np.generic):
            value = value.item()
        if value is not None and not isinstance(value, (str, bool, int, float)):
            raise ValueError(
                f"header_extra[{key!r}] is a {type(value).__name__}; FITS values are str, int, float, bool"
            )
        if isinstance(value, float) and not np.isfinite(value):
            raise ValueError(f"header_extra[{key!r}] = {value} cannot be stored in a FITS header")
        if isinstance(value, str) and not (value.isascii() and value.isprintable()):
            raise ValueError(f"header_extra[{key!r}] has non-ASCII or control characters, which FITS cannot hold")
        out.append((name, value))
    return out


def _common_cards(survey: str, bands: list[str], bunit: str, extra: list[tuple[str, Any]]) -> list[tuple]:
    """Cards every HDU carries; the first four are the file-level description."""
    cards: list[tuple] = [
        ("SURVEY", survey, "survey whose instrument these images show"),
        ("BANDS", ",".join(bands), "band of each plane along axis 3"),
        ("BUNIT", bunit, "pixel unit (astropy.units string)"),
    ]
    magzero = magzero_of(bunit)
    cards.append(
        ("MAGZERO", magzero, "AB mag of one BUNIT of flux") if magzero is not None else ("COMMENT", "BUNIT not flux")
    )
    cards += [(f"BAND{k}", b, f"band of plane {k}") for k, b in enumerate(bands, start=1)]
    return cards + extra


def _object_header(
    object_id: str,
    ra: float,
    dec: float,
    pixel_scale_arcsec: float,
    size: int,
    n_bands: int,
    common: list[tuple],
    n_samples: int | None = None,
) -> fits.Header:
    extra = [("BAND", n_bands)] + ([("SAMPLE", n_samples)] if n_samples is not None else [])
    header = _wcs(ra, dec, pixel_scale_arcsec, size, extra).to_header()
    header["OBJECTID"] = (object_id, "object identifier")
    header["RA"] = (float(ra) % 360.0, "[deg] ICRS, image centre")
    header["DEC"] = (float(dec), "[deg] ICRS, image centre")
    header["PIXSCALE"] = (float(pixel_scale_arcsec), "[arcsec/pixel]")
    header.extend(common)
    return header
