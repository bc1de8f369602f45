"""read_cutouts: every accepted input format, and a one-line error naming the file for every bad one.

Inputs are written here with plain astropy / h5py (and data/mmu.py's create_shard), as a
user's own tools would write them, so the reader is tested against the formats, not
against our own writer.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from whatsreal.cutouts import CutoutError, Cutouts, read_cutouts
from whatsreal.data.mmu import create_shard
from whatsreal.surveys import SURVEYS

RNG = np.random.default_rng(3)


def cube(n_bands: int = 4, size: int = 32, n: int | None = None) -> np.ndarray:
    shape = (n_bands, size, size) if n is None else (n, n_bands, size, size)
    return RNG.normal(size=shape).astype(np.float32)


def hdu_with(data: np.ndarray, primary: bool = False, **keys: object) -> fits.PrimaryHDU | fits.ImageHDU:
    hdu = fits.PrimaryHDU(data) if primary else fits.ImageHDU(data)
    for k, v in keys.items():
        hdu.header[k] = v
    return hdu


def tan_header(ra: float, dec: float, size: int, scale_arcsec: float = 0.262) -> fits.Header:
    """A celestial WCS whose reference point is the geometric centre of the cutout."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
    w.wcs.crval = [ra, dec]
    w.wcs.cdelt = [-scale_arcsec / 3600, scale_arcsec / 3600]
    return w.to_header()


def per_object_fits(path: Path, images: list[np.ndarray], coords: list[tuple[float, float]], **keys: object) -> Path:
    hdus: list = [fits.PrimaryHDU()]
    for k, (img, (ra, dec)) in enumerate(zip(images, coords, strict=True)):
        hdus.append(hdu_with(img, RA=ra, DEC=dec, OBJECTID=f"obj{k}", **keys))
    fits.HDUList(hdus).writeto(path)
    return path


def mmu_shard(path: Path, survey: str, n: int = 3, size: int = 32) -> tuple[Path, np.ndarray]:
    spec = SURVEYS[survey]
    ids = np.array([f"id-{k}" for k in range(n)]) if survey == "legacysurvey" else np.arange(n, dtype=np.int64) + 10
    cols = {"object_id": ids, "ra": np.linspace(10, 11, n), "dec": np.linspace(-5, -4, n)}
    images = cube(len(spec.bands), size, n)
    with create_shard(path, spec, cols, size) as f:
        f["image_array"][...] = images
        f["image_ivar"][...] = 2.0
        mask = np.ones(f["image_mask"].shape, dtype=bool)
        mask[:1, ..., 0, 0] = False
        f["image_mask"][...] = mask
    return path, images


# --- accepted formats -----------------------------------------------------------------


def test_fits_one_hdu_per_object_with_ra_dec_keywords(tmp_path: Path) -> None:
    imgs = [cube(), cube()]
    imgs[1][2, 5, 5] = np.nan  # NaNs are the consumer's to judge: they pass through
    path = per_object_fits(tmp_path / "mine.fits", imgs, [(150.1, 2.2), (150.3, 2.4)], BANDS="g,r,i,z")
    got = read_cutouts(path, "legacysurvey")
    assert isinstance(got, Cutouts) and len(got) == 2
    assert got.images.dtype == np.float32 and got.images.shape == (2, 4, 32, 32)
    np.testing.assert_array_equal(got.images, np.stack(imgs))
    assert got.bands == ("g", "r", "i", "z")
    assert list(got.object_id) == ["obj0", "obj1"]
    np.testing.assert_allclose(got.ra, [150.1, 150.3])
    np.testing.assert_allclose(got.dec, [2.2, 2.4])
    assert got.ivar is None and got.mask is None
    assert got.sources == (f"{path}[HDU 1]", f"{path}[HDU 2]")


def test_fits_with_only_a_wcs_takes_the_centre_and_the_survey_band_order(tmp_path: Path) -> None:
    path = tmp_path / "wcs_only.fits"
    fits.HDUList([fits.PrimaryHDU(cube(size=31), header=tan_header(210.5, -1.25, 31))]).writeto(path)
    got = read_cutouts(path, "legacysurvey")
    assert got.ra[0] == pytest.approx(210.5, abs=1e-6) and got.dec[0] == pytest.approx(-1.25, abs=1e-6)
    assert got.bands == SURVEYS["legacysurvey"].bands  # no names, 4 planes = Legacy's MMU order
    assert list(got.object_id) == ["wcs_only.fits:0"]


def test_fits_ids_band_keywords_and_sexagesimal_coordinates(tmp_path: Path) -> None:
    path = tmp_path / "named.fits"
    primary = fits.PrimaryHDU()
    for j, b in enumerate("zirgy", start=1):  # per-plane names in the primary, inherited by extensions
        primary.header[f"BAND{j}"] = b
    hdus = [
        primary,
        hdu_with(cube(5), RA="10:00:00", DEC="-30:00:00", OBJID=42),
        hdu_with(cube(5), RA=12.0, DEC=3.0, EXTNAME="galaxy-b"),
        hdu_with(cube(5), RA=12.0, DEC=3.0, BANDS="g,r,i,z,y"),  # its own order: follows the first HDU's
    ]
    fits.HDUList(hdus).writeto(path)
    got = read_cutouts(path, "hsc")
    assert got.bands == ("z", "i", "r", "g", "y")
    np.testing.assert_array_equal(got.images[2], hdus[3].data[[3, 2, 1, 0, 4]])
    assert list(got.object_id) == ["42", "galaxy-b", "named.fits:3"]
    assert got.ra[0] == pytest.approx(150.0) and got.dec[0] == pytest.approx(-30.0)


def test_fits_cube_with_table_and_ivar(tmp_path: Path) -> None:
    data, ivar = cube(n=3), np.full((3, 4, 32, 32), 5.0, np.float32)
    table = Table({"OBJECT_ID": ["a", "b", "c"], "RA": [1.0, 2.0, 3.0], "Dec": [-1.0, -2.0, -3.0]})
    path = tmp_path / "cube.fits"
    primary = hdu_with(data, primary=True, BANDS="DES-G DES-R DES-I DES-Z")
    fits.HDUList([primary, fits.BinTableHDU(table), fits.ImageHDU(ivar, name="IVAR")]).writeto(path)
    got = read_cutouts(path, "legacysurvey")
    np.testing.assert_array_equal(got.images, data)
    np.testing.assert_array_equal(got.ivar, ivar)
    assert list(got.object_id) == ["a", "b", "c"] and got.bands == ("g", "r", "i", "z")
    np.testing.assert_allclose(got.dec, [-1.0, -2.0, -3.0])
    assert got.sources[2] == f"{path}[HDU 0][cutout 2]"


@pytest.mark.parametrize("survey", ["legacysurvey", "hsc"])
def test_mmu_shard(tmp_path: Path, survey: str) -> None:
    path, images = mmu_shard(tmp_path / "healpix=1" / "001-of-001.hdf5", survey)
    got = read_cutouts(path, survey)
    nb = len(SURVEYS[survey].bands)
    np.testing.assert_array_equal(got.images, images)
    assert got.bands == SURVEYS[survey].bands
    assert got.ivar is not None and got.ivar.shape == images.shape
    assert got.mask is not None and got.mask.shape == (3, nb, 32, 32) and got.mask.dtype == bool
    assert not got.mask[0, :, 0, 0].any() and got.mask[1].all()  # Legacy's shared mask reaches every band
    assert got.object_id.dtype.kind == "U" and got.sources[1] == f"{path}[row 1]"
    np.testing.assert_allclose(got.ra, np.linspace(10, 11, 3))


def test_directory_concatenates_sorted_files_in_the_first_files_band_order(tmp_path: Path) -> None:
    mmu_shard(tmp_path / "healpix=5" / "001-of-001.hdf5", "legacysurvey", n=2)
    img = cube()
    per_object_fits(tmp_path / "a.fits", [img], [(20.0, 1.0)], BANDS="z,i,r,g")
    (tmp_path / ".a.fits.tmp.fits").write_bytes(b"half written")  # an unfinished temporary: skipped
    got = read_cutouts(tmp_path, "legacysurvey")
    assert len(got) == 3 and got.bands == ("z", "i", "r", "g")
    np.testing.assert_array_equal(got.images[0], img)
    assert got.sources[0].endswith("a.fits[HDU 1]") and got.sources[1].endswith("001-of-001.hdf5[row 0]")
    assert got.ivar is None and got.mask is None  # the FITS file has none, so none overall


# --- bad inputs: one-line CutoutError naming the file ---------------------------------


def _expect(path: Path | str, survey: str, *fragments: str) -> None:
    with pytest.raises(CutoutError) as info:
        read_cutouts(path, survey)
    msg = str(info.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, msg


def test_no_coordinates(tmp_path: Path) -> None:
    bare = tmp_path / "bare.fits"
    fits.HDUList([fits.PrimaryHDU(cube())]).writeto(bare)
    _expect(bare, "legacysurvey", "bare.fits[HDU 0]", "no coordinates", "RA and DEC")
    lone = tmp_path / "lone_cube.fits"
    fits.HDUList([fits.PrimaryHDU(cube(n=2))]).writeto(lone)
    _expect(lone, "legacysurvey", "lone_cube.fits[HDU 0]", "no coordinates", "object_id, ra, dec")
    no_dec = tmp_path / "no_dec.fits"
    table = fits.BinTableHDU(Table({"object_id": ["a", "b"], "ra": [1.0, 2.0]}))
    fits.HDUList([fits.PrimaryHDU(cube(n=2)), table]).writeto(no_dec)
    _expect(no_dec, "legacysurvey", "no_dec.fits[HDU 1]", "dec", "no coordinates")
    bad = per_object_fits(tmp_path / "bad_dec.fits", [cube()], [(10.0, 95.0)])
    _expect(bad, "legacysurvey", "bad_dec.fits[HDU 1]", "Dec in [-90, 90]")
    shard, _ = mmu_shard(tmp_path / "s" / "001-of-001.hdf5", "legacysurvey")
    with h5py.File(shard, "a") as f:
        del f["ra"]
    _expect(shard, "legacysurvey", "001-of-001.hdf5", "no coordinates")


def test_wrong_or_missing_bands(tmp_path: Path) -> None:
    three = per_object_fits(tmp_path / "three.fits", [cube(4)], [(1.0, 1.0)], BANDS="g,r,i")
    _expect(three, "legacysurvey", "three.fits[HDU 1]", "names 3 bands", "4 planes", "one band per plane")
    unnamed = per_object_fits(tmp_path / "unnamed.fits", [cube(3)], [(1.0, 1.0)])
    _expect(unnamed, "legacysurvey", "unnamed.fits[HDU 1]", "no band names", "BANDS")
    no_g = per_object_fits(tmp_path / "no_g.fits", [cube(4)], [(1.0, 1.0)], BANDS="r,i,z,y")
    _expect(no_g, "hsc", "no_g.fits[HDU 1]", "band(s) g missing", "g, r, i, z")
    foreign = per_object_fits(tmp_path / "foreign.fits", [cube(4)], [(1.0, 1.0)], BANDS="u,g,r,i")
    _expect(foreign, "legacysurvey", "foreign.fits[HDU 1]", "u are not legacysurvey bands")
    shard, _ = mmu_shard(tmp_path / "healpix=2" / "001-of-001.hdf5", "hsc")
    _expect(shard, "legacysurvey", "001-of-001.hdf5", "hsc-g", "other survey")


def test_non_square_and_mismatched_sizes(tmp_path: Path) -> None:
    oblong = per_object_fits(tmp_path / "oblong.fits", [RNG.normal(size=(4, 32, 30))], [(1.0, 1.0)])
    _expect(oblong, "legacysurvey", "oblong.fits[HDU 1]", "32x30", "not square")
    mixed = per_object_fits(tmp_path / "mixed.fits", [cube(size=32), cube(size=40)], [(1.0, 1.0), (2.0, 2.0)])
    _expect(mixed, "legacysurvey", "mixed.fits[HDU 2]", "40x40", "mixed.fits[HDU 1] is 32x32")
    two = tmp_path / "two.fits"
    hdus = [hdu_with(cube(4), primary=True, RA=1.0, DEC=1.0, BANDS="g,r,i,z")]
    fits.HDUList([*hdus, hdu_with(cube(5), RA=1.0, DEC=1.0, BANDS="g,r,i,z,y")]).writeto(two)
    _expect(two, "hsc", "two.fits[HDU 1]", "differ from", "two.fits[HDU 0]'s g,r,i,z")
    folder = tmp_path / "folder"
    folder.mkdir()
    per_object_fits(folder / "a.fits", [cube(size=32)], [(1.0, 1.0)])
    per_object_fits(folder / "b.fits", [cube(size=48)], [(1.0, 1.0)])
    _expect(folder, "legacysurvey", "b.fits[HDU 1]", "48x48", "a.fits[HDU 1] is 32x32")
    bands = tmp_path / "bands"
    bands.mkdir()
    per_object_fits(bands / "a.fits", [cube(4)], [(1.0, 1.0)], BANDS="g,r,i,z")
    per_object_fits(bands / "b.fits", [cube(5)], [(1.0, 1.0)], BANDS="g,r,i,z,y")
    _expect(bands, "hsc", "b.fits[HDU 1]", "differ from", "same bands")


def test_empty_inputs(tmp_path: Path) -> None:
    zero = tmp_path / "zero.fits"
    zero.touch()
    _expect(zero, "hsc", "zero.fits", "empty (0 bytes)")
    header_only = tmp_path / "header_only.fits"
    fits.PrimaryHDU().writeto(header_only)
    _expect(header_only, "hsc", "header_only.fits", "no image data")
    shard, _ = mmu_shard(tmp_path / "e" / "001-of-001.hdf5", "hsc", n=0)
    _expect(shard, "hsc", "001-of-001.hdf5", "empty (0 cutouts)")
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    _expect(nothing, "hsc", "nothing", "no cutout files")


def test_unreadable_files_missing_paths_and_unknown_survey(tmp_path: Path) -> None:
    text = tmp_path / "notes.fits"
    text.write_text("these are not pixels\n")
    _expect(text, "hsc", "notes.fits", "neither a FITS nor an HDF5 file")
    good = per_object_fits(tmp_path / "good.fits", [cube(size=64)], [(1.0, 1.0)], BANDS="g,r,i,z")
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(good.read_bytes()[: 2880 * 3])
    _expect(truncated, "hsc", "truncated.fits", "not a readable FITS file")
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    _expect(broken, "hsc", "broken.hdf5", "not a readable HDF5 file")
    _expect(tmp_path / "absent.fits", "hsc", "absent.fits", "no such file")
    _expect(good, "euclid", "good.fits: unknown survey 'euclid'", "hsc, legacysurvey")
