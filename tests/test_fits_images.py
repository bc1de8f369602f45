"""write_image_fits: files that astropy (CCDData, WCS) reads with the right sky position,
scale and unit, one layout per case, and nothing half-written when writing fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from whatsreal.cutouts import read_cutouts
from whatsreal.fits_images import NATIVE_BUNIT, celestial_wcs, magzero_of, write_image_fits
from whatsreal.surveys import SURVEYS

RNG = np.random.default_rng(5)
MODEL_SCALE = 31 * 0.262 / 48  # Legacy's 31 pixels resampled onto the model's 48
BANDS = ("g", "r", "i", "z")


def write(path: Path, images: np.ndarray, **kw: object) -> None:
    args: dict[str, object] = {
        "survey": "legacysurvey",
        "bands": BANDS,
        "ra": 150.25,
        "dec": 2.5,
        "object_id": "0001m002-123",
        "pixel_scale_arcsec": MODEL_SCALE,
        "bunit": NATIVE_BUNIT["legacysurvey"],
    }
    args.update(kw)
    write_image_fits(path, images, **args)  # type: ignore[arg-type]


def assert_sky(header: fits.Header, ra: float, dec: float, size: int, scale: float) -> None:
    """Centre pixel at (ra, dec), pixel scale as given, RA growing to the east (left)."""
    wcs = WCS(header)
    assert wcs.has_celestial
    cel = wcs.celestial
    c = (size - 1) / 2
    centre = cel.pixel_to_world(c, c)
    assert centre.ra.deg == pytest.approx(ra, abs=1e-6) and centre.dec.deg == pytest.approx(dec, abs=1e-6)
    np.testing.assert_allclose(proj_plane_pixel_scales(cel) * 3600, [scale, scale], rtol=1e-9)
    assert cel.pixel_to_world(c - 1, c).ra.deg > ra  # one pixel left is east
    assert cel.pixel_to_world(c, c + 1).dec.deg > dec  # one pixel up is north


def test_one_object_opens_in_ccddata_with_wcs_unit_and_keywords(tmp_path: Path) -> None:
    img = RNG.normal(size=(4, 48, 48)).astype(np.float32)
    path = tmp_path / "cf.fits"
    write(path, img)
    ccd = CCDData.read(path)
    np.testing.assert_array_equal(ccd.data, img)
    assert ccd.unit == u.nanomaggy
    header = fits.getheader(path)
    assert_sky(header, 150.25, 2.5, 48, MODEL_SCALE)
    assert header["BUNIT"] == "nanomaggy" and header["OBJECTID"] == "0001m002-123"
    assert header["BANDS"] == "g,r,i,z" and [header[f"BAND{k}"] for k in range(1, 5)] == list(BANDS)
    assert header["SURVEY"] == "legacysurvey" and header["CTYPE3"] == "BAND" and header["CDELT1"] < 0
    assert header["MAGZERO"] == pytest.approx(22.5)
    with fits.open(path, checksum=True) as hdul:
        assert hdul[0].verify_checksum() == 1


def test_native_units_parse_and_carry_each_surveys_zero_point(tmp_path: Path) -> None:
    for survey, spec in SURVEYS.items():
        assert magzero_of(NATIVE_BUNIT[survey]) == pytest.approx(spec.zero_point, abs=1e-9)
    assert magzero_of("adu") is None  # not a flux: no MAGZERO written
    path = tmp_path / "hsc.fits"
    write(path, np.ones((5, 48, 48)), survey="hsc", bands="grizy", bunit=NATIVE_BUNIT["hsc"], pixel_scale_arcsec=0.168)
    ccd = CCDData.read(path)
    one_unit = (1 * ccd.unit).to(u.nJy)
    assert one_unit.value == pytest.approx(3631e9 * 10 ** (-0.4 * 27), rel=1e-12)
    assert_sky(fits.getheader(path), 150.25, 2.5, 48, 0.168)


def test_samples_layout_mean_first_then_samples_with_the_same_sky(tmp_path: Path) -> None:
    samples = RNG.normal(size=(6, 4, 48, 48)).astype(np.float32)
    path = tmp_path / "generated.fits"
    extra = {"model": "runs/paper/model.ckpt", "sampler": "euler", "steps": 250, "seed": 11, "commit": "c" * 40}
    write(path, samples, sample_axis=True, header_extra=extra)
    mean = CCDData.read(path)
    np.testing.assert_allclose(mean.data, samples.mean(axis=0), rtol=1e-6)
    draws = CCDData.read(path, hdu="SAMPLES")
    np.testing.assert_array_equal(draws.data, samples)
    assert draws.unit == u.nanomaggy
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "SAMPLES"]
        assert hdul[0].header["NSAMPLE"] == 6 and hdul[1].header["CTYPE4"] == "SAMPLE"
        for hdu in hdul:
            assert_sky(hdu.header, 150.25, 2.5, 48, MODEL_SCALE)
            assert hdu.header["SEED"] == 11 and hdu.header["STEPS"] == 250 and hdu.header["COMMIT"] == "c" * 40


def test_several_objects_one_hdu_each_named_by_id_and_read_back(tmp_path: Path) -> None:
    imgs = RNG.normal(size=(3, 4, 48, 48)).astype(np.float32)
    ids, ras, decs = ["0001m002-1", "0001m002-2", "7"], [359.99, 0.01, 45.0], [-30.0, 0.0, 89.0]
    path = tmp_path / "batch.fits"
    write(path, imgs, object_id=ids, ra=ras, dec=decs)
    with fits.open(path) as hdul:
        assert hdul[0].data is None and hdul[0].header["NOBJECT"] == 3
        assert [h.header["EXTNAME"] for h in hdul[1:]] == ids  # case kept
        for hdu, ra, dec in zip(hdul[1:], ras, decs, strict=True):
            assert_sky(hdu.header, ra, dec, 48, MODEL_SCALE)
    np.testing.assert_array_equal(CCDData.read(path, hdu="0001m002-2").data, imgs[1])
    np.testing.assert_array_equal(CCDData.read(path).data, imgs[0])  # the first HDU with data
    back = read_cutouts(path, "legacysurvey")  # our own outputs are valid inputs
    assert list(back.object_id) == ids and back.bands == BANDS
    np.testing.assert_allclose(back.ra, ras) and np.testing.assert_allclose(back.dec, decs)


def test_several_objects_with_samples(tmp_path: Path) -> None:
    samples = RNG.normal(size=(2, 3, 4, 48, 48)).astype(np.float32)
    path = tmp_path / "batch_samples.fits"
    write(path, samples, object_id=["a", "b"], ra=[1.0, 2.0], dec=[3.0, 4.0], sample_axis=True)
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "a", "a_SAMPLES", "b", "b_SAMPLES"]
    np.testing.assert_array_equal(CCDData.read(path, hdu="b_SAMPLES").data, samples[1])
    assert_sky(fits.getheader(path, "b_SAMPLES"), 2.0, 4.0, 48, MODEL_SCALE)


def test_long_provenance_uses_continue_cards(tmp_path: Path) -> None:
    long = "/scratch/some/very/long/path/" * 8
    path = tmp_path / "long.fits"
    write(path, np.zeros((4, 48, 48)), header_extra={"model": long, "flag": True, "gain": 0.5})
    header = fits.getheader(path)
    assert header["MODEL"] == long and header["FLAG"] is True and header["GAIN"] == 0.5
    assert "CONTINUE" in repr(header)


def test_celestial_wcs_shapes() -> None:
    assert celestial_wcs(10.0, 20.0, 0.168, 48).naxis == 2
    cube = celestial_wcs(10.0, 20.0, 0.168, 48, n_bands=4)
    assert cube.naxis == 3 and cube.has_celestial and cube.wcs.ctype[2] == "BAND"
    assert_sky(cube.to_header(), 10.0, 20.0, 48, 0.168)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"header_extra": {"git_commit": "abc"}}, "'git_commit' is not a FITS keyword"),
        ({"header_extra": {"bad key": 1}}, "'bad key' is not a FITS keyword"),
        ({"header_extra": {"BUNIT": "adu"}}, "'BUNIT' is written by write_image_fits"),
        ({"header_extra": {"CRVAL1": 0.0}}, "'CRVAL1' is written by write_image_fits"),
        ({"header_extra": {"note": "caf\u00e9"}}, "header_extra\\['note'\\] has non-ASCII"),
        ({"header_extra": {"cfg": {"a": 1}}}, "header_extra\\['cfg'\\] is a dict"),
        ({"bunit": "furlongs per fortnight"}, "does not parse as an astropy unit"),
        ({"bands": ("g", "r", "i")}, "3 band names"),
        ({"object_id": ["a", "b"]}, "2 object_id"),
    ],
)
def test_bad_arguments_leave_the_old_file_untouched(tmp_path: Path, kw: dict, match: str) -> None:
    path = tmp_path / "out.fits"
    path.write_bytes(b"previous result")
    with pytest.raises(ValueError, match=match):
        write(path, np.zeros((4, 48, 48)), **kw)
    assert path.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fits"]


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.fits"
    path.write_bytes(b"previous result")

    def half_write(self: fits.HDUList, name: str, **kw: object) -> None:
        Path(name).write_bytes(b"SIMPLE  =  half")
        raise OSError("disk full")

    monkeypatch.setattr(fits.HDUList, "writeto", half_write)
    with pytest.raises(OSError, match="disk full"):
        write(path, np.zeros((4, 48, 48)))
    assert path.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fits"]
