"""The simulator writes exactly the Multimodal Universe layout, and the reader reads it."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from whatsreal.data.mmu import MMUFormatError, list_shards, read_catalog, read_images
from whatsreal.sim.geometry import healpix_of
from whatsreal.surveys import SURVEYS

S = 48  # the tiny sky's cutout size

HSC_COLUMNS = (
    {"object_id", "ra", "dec", "healpix", "tract", "patch"}
    | {
        f"{b}_{c}"
        for b in "grizy"
        for c in (
            "cmodel_mag",
            "cmodel_magerr",
            "cmodel_flux",
            "cmodel_fluxerr",
            "extendedness_value",
            "sdssshape_shape11",
            "sdssshape_shape22",
            "sdssshape_shape12",
            "sdssshape_psf_shape11",
            "sdssshape_psf_shape22",
            "sdssshape_psf_shape12",
        )
    }
    | {f"a_{b}" for b in "grizy"}
)
LEGACY_COLUMNS = {
    "object_id",
    "ra",
    "dec",
    "healpix",
    "RA",
    "DEC",
    "EBV",
    "TYPE",
    "BRICKNAME",
    "OBJID",
    "SHAPE_R",
    "SHAPE_E1",
    "SHAPE_E2",
    "MASKBITS",
} | {
    f"{q}_{b}"
    for b in "GRIZ"
    for q in ("FLUX", "FLUX_IVAR", "PSFSIZE", "PSFDEPTH", "GALDEPTH", "NOBS", "MW_TRANSMISSION")
}
IMAGE = {"image_array", "image_ivar", "image_mask", "image_band", "image_psf_fwhm", "image_scale"}


@pytest.mark.parametrize(("survey", "columns"), [("hsc", HSC_COLUMNS), ("legacysurvey", LEGACY_COLUMNS)])
def test_shards_follow_mmu_schema(tiny_sky, survey, columns):
    _, raw, _ = tiny_sky
    sv = SURVEYS[survey]
    nb = len(sv.bands)
    shards = list_shards(raw / survey)
    assert len(shards) >= 1
    for hp, path in shards:
        assert path.name == "001-of-001.hdf5" and path.parent.name == f"healpix={hp}"
        with h5py.File(path, "r") as f:
            assert columns | IMAGE <= set(f.keys()), f"missing: {sorted(columns | IMAGE - set(f.keys()))}"
            n = f["object_id"].shape[0]
            assert f["image_array"].shape == (n, nb, S, S) and f["image_array"].dtype == np.float32
            assert f["image_ivar"].shape == (n, nb, S, S) and f["image_ivar"].dtype == np.float32
            mask_shape = (n, nb, S, S) if survey == "hsc" else (n, S, S)
            assert f["image_mask"].shape == mask_shape and f["image_mask"].dtype == np.bool_
            assert f["image_band"].shape == (n, nb)
            assert f["image_band"].dtype == h5py.string_dtype("utf-8", 5)
            assert [b.decode() for b in f["image_band"][0]] == list(sv.band_strings)
            assert f["image_psf_fwhm"].shape == (n, nb) and f["image_psf_fwhm"].dtype == np.float32
            np.testing.assert_allclose(f["image_scale"][()], sv.pixel_scale)
            assert f["ra"].dtype == np.float64 and f["dec"].dtype == np.float64
            if survey == "hsc":
                assert f["object_id"].dtype == np.int64
                # MMU derives image_psf_fwhm from the PSF moments: 2.355 * det(M)^(1/4).
                for k, b in enumerate(sv.bands):
                    m11, m22, m12 = (f[f"{b}_sdssshape_psf_shape{c}"][()] for c in ("11", "22", "12"))
                    derived = 2.355 * (m11 * m22 - m12**2) ** 0.25
                    np.testing.assert_allclose(derived, f["image_psf_fwhm"][:, k], rtol=2e-3)
            else:
                assert f["object_id"].dtype == h5py.string_dtype("utf-8", 16)
                ids = f["object_id"][()].astype(str)
                expected = [f"{b.decode()}-{o}" for b, o in zip(f["BRICKNAME"][()], f["OBJID"][()], strict=True)]
                assert list(ids) == expected
                np.testing.assert_allclose(f["image_psf_fwhm"][:, 1], f["PSFSIZE_R"][()])
            # Each object is in the healpix its file claims (nside 16, nested).
            assert (healpix_of(f["ra"][()], f["dec"][()]) == hp).all()
            assert (f["healpix"][()] == hp).all()
            ivar = f["image_ivar"][: min(n, 5)]
            assert np.isfinite(f["image_array"][: min(n, 5)]).all() and (ivar >= 0).all()


def test_object_ids_differ_between_surveys_and_overlap_is_strict(tiny_sky):
    _, raw, _ = tiny_sky
    truth = pd.read_parquet(raw / "truth.parquet")
    hsc, ls = truth["in_hsc"], truth["in_legacysurvey"]
    both = hsc & ls
    assert 0 < both.sum() < hsc.sum() and both.sum() < ls.sum(), "the overlap is a strict subset of both"
    h_ids = set(truth.loc[hsc, "hsc_object_id"].astype(str))
    l_ids = set(truth.loc[ls, "legacysurvey_object_id"].astype(str))
    assert not h_ids & l_ids
    # Positions carry independent astrometric jitter of about the configured size.
    sep = (
        np.hypot(
            (truth.loc[both, "hsc_ra"] - truth.loc[both, "legacysurvey_ra"])
            * np.cos(np.radians(truth.loc[both, "dec"])),
            truth.loc[both, "hsc_dec"] - truth.loc[both, "legacysurvey_dec"],
        )
        * 3600
    )
    assert 0.01 < np.median(sep) < 0.2


def test_reader_round_trip(tiny_sky):
    _, raw, _ = tiny_sky
    cat = read_catalog(raw / "hsc")
    truth = pd.read_parquet(raw / "truth.parquet")
    assert len(cat) == int(truth["in_hsc"].sum())
    assert {"file", "row", "healpix", "image_psf_fwhm_0"} <= set(cat.columns)
    assert cat["object_id"].is_unique
    # Read rows out of order and repeated: the reader returns them as asked.
    first = cat.iloc[0]
    grp = cat[cat["file"] == first["file"]]
    rows = grp["row"].to_numpy()[[2, 0, 2, 1]]
    got = read_images(raw / "hsc" / first["file"], rows, ("image_array", "image_mask"))
    with h5py.File(raw / "hsc" / first["file"], "r") as f:
        np.testing.assert_array_equal(got["image_array"], f["image_array"][()][rows])
        np.testing.assert_array_equal(got["image_mask"], f["image_mask"][()][rows])
    with pytest.raises(IndexError, match="out of range"):
        read_images(raw / "hsc" / first["file"], [len(grp) + 5])


def test_reader_rejects_non_mmu_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_shards(tmp_path / "nope")
    (tmp_path / "healpix=3").mkdir()
    with pytest.raises(MMUFormatError, match="no healpix"):
        list_shards(tmp_path)
    with h5py.File(tmp_path / "healpix=3" / "001-of-001.hdf5", "w") as f:
        f["ra"] = np.zeros(3)
    with pytest.raises(MMUFormatError, match="missing dataset 'object_id'"):
        read_catalog(tmp_path)
