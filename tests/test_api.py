"""A trained model on your own galaxies: export, ``whatsreal.load``, the API and the command.

An untrained tiny model stands in for a trained one: what is tested is that the exported
directory reproduces the pipeline exactly (same preprocessing, same embeddings), that the
decoder loads alone with diffusers, that FITS outputs open in astropy with a celestial WCS,
and that bad input stops with one line naming the file.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.wcs import WCS

import whatsreal
from whatsreal.api import InputError
from whatsreal.cli import main
from whatsreal.data.mmu import read_images
from whatsreal.export import ModelFormatError, export_model
from whatsreal.layout import DatasetLayout, ModelLayout
from whatsreal.model.checkpoint import load_trained_model
from whatsreal.model.embed import export_embeddings
from whatsreal.surveys import SURVEY_ORDER, SURVEYS

from .conftest import REPO, save_untrained_checkpoint, tiny_model_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def exported(tiny_data, tmp_path_factory) -> tuple[Path, DatasetLayout, Path]:
    """(model directory, the tiny dataset's layout, the checkpoint it was exported from)."""
    _, data_dir = tiny_data
    data = DatasetLayout(data_dir)
    work = tmp_path_factory.mktemp("export")
    cfg = tiny_model_config()
    # The model samples with its own sampler (the README example passes no steps): a few
    # midpoint steps, not the schema's Euler-250, keep that example to seconds on a CPU.
    cfg["sample"] = {**cfg["sample"], "method": "midpoint", "steps": 4}
    ckpt = save_untrained_checkpoint(cfg, work)
    out = export_model(ckpt, {s: data.meta(s) for s in SURVEY_ORDER}, work / "model", run="main")
    return out.root, data, Path(ckpt)


def _raw(data: DatasetLayout, survey: str, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Raw cutouts and ivar of ``pairs`` from the MMU shards, and their metadata rows."""
    cat = pd.read_parquet(data.catalog(survey))
    rows = pd.read_parquet(data.pairs)[f"{survey}_row"].to_numpy()[pairs]
    images, ivars = [], []
    for r in rows:
        got = read_images(cat.loc[r, "file"], [int(cat.loc[r, "row"])], ("image_array", "image_ivar"))
        images.append(got["image_array"][0])
        ivars.append(got["image_ivar"][0])
    return np.stack(images), np.stack(ivars), cat.iloc[rows].reset_index(drop=True)


def test_the_directory_holds_safetensors_json_and_a_diffusers_unet(exported):
    root, _, ckpt = exported
    layout = ModelLayout(root)
    cfg = json.loads(layout.config.read_text())
    assert cfg["format"] == "whatsreal-model" and cfg["provenance"]["run"] == "main"
    assert set(cfg["normalisation"]) == set(SURVEY_ORDER) and cfg["normalisation"]["hsc"]["std"] > 0
    assert cfg["surveys"]["legacysurvey"]["pixel_scale_arcsec"] == pytest.approx(31 * 0.262 / 48)
    assert not list(root.rglob("*.ckpt")) and not list(root.rglob("*.pt")) and not list(root.rglob("*.bin"))
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet")
    net, _ = load_trained_model(ckpt)
    for (name, a), b in zip(unet.state_dict().items(), net.unet.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_loaded_model_embeds_exactly_as_the_pipeline(exported, tmp_path):
    root, data, ckpt = exported
    model = whatsreal.load(root, device="cpu")
    net, _ = load_trained_model(ckpt)
    pipeline = export_embeddings(net, data, tmp_path / "e.parquet", tmp_path / "t.npz", batch_size=16)
    for survey in SURVEY_ORDER:
        images = np.load(data.images(survey), mmap_mode="r")[:12]
        ours = model.embed(images, survey).table(survey)
        theirs = pipeline[pipeline["survey"] == survey].iloc[:12]
        for prefix in ("phys_", "inst_"):
            np.testing.assert_allclose(
                ours.filter(like=prefix).to_numpy(), theirs.filter(like=prefix).to_numpy(), rtol=1e-5, atol=1e-6
            )


def test_a_model_exported_before_a_config_key_existed_loads_with_its_default(exported, tmp_path):
    root, data, _ = exported
    older = tmp_path / "older_model"
    shutil.copytree(root, older)
    cfg = json.loads((older / "config.json").read_text())
    assert cfg["model"]["time_sampling"]["distribution"] == "uniform"  # the schema default
    for section in (cfg["model"], cfg["training_config"]["model"]):
        del section["time_sampling"]  # an older whatsreal had no such key
    (older / "config.json").write_text(json.dumps(cfg))
    images = np.load(data.images("hsc"), mmap_mode="r")[:4]
    ours = whatsreal.load(older, device="cpu")
    assert ours.config["model"]["time_sampling"]["distribution"] == "uniform"
    np.testing.assert_array_equal(
        ours.embed(images, "hsc").table("hsc").filter(like="phys_").to_numpy(),
        whatsreal.load(root, device="cpu").embed(images, "hsc").table("hsc").filter(like="phys_").to_numpy(),
    )
    # A key this version does not know: one line naming config.json and the key.
    cfg["training_config"]["model"]["unet"]["dropped_option"] = 1
    (older / "config.json").write_text(json.dumps(cfg))
    unreadable = r"config\.json: its training config cannot be read .*model\.unet\.dropped_option"
    with pytest.raises(ModelFormatError, match=unreadable):
        whatsreal.load(older, device="cpu")


def test_preprocess_of_raw_cutouts_reproduces_the_pipeline_images(exported):
    root, data, _ = exported
    model = whatsreal.load(root, device="cpu")
    pairs = np.arange(10)
    for survey in SURVEY_ORDER:
        raw, ivar, _ = _raw(data, survey, pairs)
        got = model.preprocess(raw, survey, ivar=ivar)
        want = np.load(data.images(survey), mmap_mode="r")[pairs]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_to_flux_inverts_preprocess_for_hsc_inside_the_clamp_range(exported):
    root, data, _ = exported
    model = whatsreal.load(root, device="cpu")
    raw, _, _ = _raw(data, "hsc", np.arange(6))
    x = raw[:, :4]  # g, r, i, z of HSC's five bands
    back = model.to_flux(model.preprocess(raw, "hsc"), "hsc")
    crop = model.config["preprocess"]["crop"]["hsc"]
    start = (x.shape[-1] - crop) // 2
    want = x[:, :, start : start + crop, start : start + crop]
    clamp = np.asarray(model.config["preprocess"]["clamp"]["hsc"])[None, :, None, None]
    inside = np.abs(want) < clamp
    assert inside.mean() > 0.99
    np.testing.assert_allclose(back[inside], want[inside], rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_counterfactual_samples_are_seeded_and_shaped(exported):
    root, data, _ = exported
    model = whatsreal.load(root, device="cpu")
    legacy = np.load(data.images("legacysurvey"), mmap_mode="r")
    hsc = np.load(data.images("hsc"), mmap_mode="r")
    a = model.counterfactual(legacy[0], "legacysurvey", "hsc", instrument_views=hsc[1:4], n=3, steps=2)
    b = model.counterfactual(legacy[0], "legacysurvey", "hsc", instrument_views=hsc[1:4], n=3, steps=2, batch_size=2)
    assert a.shape == (3, 4, 48, 48) and np.isfinite(a).all()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # batching does not change the draws
    assert not np.allclose(a[0], a[1])
    with pytest.raises(InputError, match=r"model\.preprocess"):
        model.counterfactual(np.zeros((5, 160, 160)), "legacysurvey", "hsc", instrument_views=hsc[1:4], n=1)


def _write_cutout_fits(path: Path, images: np.ndarray, meta: pd.DataFrame, survey: str, **header) -> None:
    """One image HDU per object, as an astronomer's astropy script would write it."""
    hdus = [fits.PrimaryHDU()]
    for img, (_, row) in zip(images, meta.iterrows(), strict=True):
        hdu = fits.ImageHDU(img.astype(np.float32))
        hdu.header["OBJECTID"] = str(row["object_id"])
        hdu.header["RA"] = float(row["ra"])
        hdu.header["DEC"] = float(row["dec"])
        hdu.header["BANDS"] = ",".join(SURVEYS[survey].bands)
        for k, v in header.items():
            hdu.header[k] = v
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(path)


def test_cli_embed_on_a_fits_file_matches_the_pipeline(exported, tmp_path):
    root, data, ckpt = exported
    net, _ = load_trained_model(ckpt)
    pipeline = export_embeddings(net, data, tmp_path / "e.parquet", tmp_path / "t.npz", batch_size=16)
    pairs = np.arange(3, 9)
    raw, _, meta = _raw(data, "hsc", pairs)
    src = tmp_path / "my_cutouts.fits"
    _write_cutout_fits(src, raw, meta, "hsc")
    out = tmp_path / "emb.parquet"
    assert main(["embed", str(root), str(src), "--survey", "hsc", "-o", str(out)]) == 0
    got = pd.read_parquet(out)
    assert list(got.columns[:4]) == ["object_id", "ra", "dec", "survey"]
    want = pipeline[pipeline["survey"] == "hsc"].set_index("object_id").loc[got["object_id"]]
    np.testing.assert_allclose(got["ra"], want["ra"])
    for prefix in ("phys_", "inst_"):
        np.testing.assert_allclose(got.filter(like=prefix).to_numpy(), want.filter(like=prefix).to_numpy(), atol=1e-5)


def test_cli_generate_writes_fits_that_astropy_opens_with_a_celestial_wcs(exported, tmp_path):
    root, data, _ = exported
    raw_l, _, meta_l = _raw(data, "legacysurvey", np.arange(1))
    raw_h, _, meta_h = _raw(data, "hsc", np.arange(1, 4))
    galaxy, views = tmp_path / "galaxy.fits", tmp_path / "views.fits"
    _write_cutout_fits(galaxy, raw_l, meta_l, "legacysurvey")
    _write_cutout_fits(views, raw_h, meta_h, "hsc")
    out = tmp_path / "cf.fits"
    args = ["generate", str(root), "--galaxy", str(galaxy), "--from", "legacysurvey", "--to", "hsc"]
    assert main([*args, "--neighbours", str(views), "-n", "2", "--steps", "2", "-o", str(out)]) == 0
    mean = CCDData.read(out)
    samples = CCDData.read(out, hdu="SAMPLES")
    assert mean.data.shape == (4, 48, 48) and samples.data.shape == (2, 4, 48, 48)
    assert mean.unit.is_equivalent("Jy")
    w = WCS(fits.getheader(out))
    assert w.has_celestial
    centre = w.celestial.pixel_to_world(23.5, 23.5)
    assert centre.ra.deg == pytest.approx(meta_l.loc[0, "ra"], abs=1e-6)
    assert abs(w.celestial.proj_plane_pixel_scales()[0].to_value("arcsec") - 0.168) < 1e-6
    header = fits.getheader(out)
    assert header["OBJECTID"] == str(meta_l.loc[0, "object_id"]) and header["FROMSURV"] == "legacysurvey"


def _run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err.strip()


def test_bad_input_gets_one_line_naming_the_file(exported, tmp_path, capsys):
    root, data, _ = exported
    raw, _, meta = _raw(data, "hsc", np.arange(2))
    # A model directory written by another format version.
    other = tmp_path / "other_model"
    shutil.copytree(root, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["format_version"] = 99
    (other / "config.json").write_text(json.dumps(cfg))
    good = tmp_path / "good.fits"
    _write_cutout_fits(good, raw, meta, "hsc")
    code, err = _run_cli(["embed", str(other), str(good), "--survey", "hsc", "-o", str(tmp_path / "e.parquet")], capsys)
    assert code == 2 and "config.json" in err and "version 99" in err and "export" in err and "\n" not in err
    with pytest.raises(ModelFormatError, match="not a model directory"):
        whatsreal.load(tmp_path / "nowhere")
    # No coordinates.
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(raw[0])])
    hdul.writeto(tmp_path / "nocoords.fits")
    out = tmp_path / "e.parquet"
    embed = ["embed", str(root)]
    code, err = _run_cli([*embed, str(tmp_path / "nocoords.fits"), "--survey", "hsc", "-o", str(out)], capsys)
    assert code == 2 and "nocoords.fits" in err and "\n" not in err
    # Wrong band count.
    _write_cutout_fits(tmp_path / "bands.fits", raw[:, :3], meta, "hsc", BANDS="g,r,i")
    code, err = _run_cli(["embed", str(root), str(tmp_path / "bands.fits"), "--survey", "hsc", "-o", str(out)], capsys)
    assert code == 2 and "bands.fits" in err and re.search(r"\bz\b", err)
    # Cutouts smaller than the crop.
    _write_cutout_fits(tmp_path / "small.fits", raw[:, :, :40, :40], meta, "hsc")
    code, err = _run_cli(["embed", str(root), str(tmp_path / "small.fits"), "--survey", "hsc", "-o", str(out)], capsys)
    assert code == 2 and "crop" in err and "larger" in err
    assert not out.exists(), "nothing written on bad input"
    # A band without one valid pixel names the file and HDU; scattered NaNs are zeroed with a warning.
    blank = raw.copy()
    blank[1, 2] = np.nan
    _write_cutout_fits(tmp_path / "nan.fits", blank, meta, "hsc")
    code, err = _run_cli(["embed", str(root), str(tmp_path / "nan.fits"), "--survey", "hsc", "-o", str(out)], capsys)
    assert code == 2 and "nan.fits" in err and "band i" in err
    spotty = raw.copy()
    spotty[0, 0, 70:75, 70:75] = np.nan
    _write_cutout_fits(tmp_path / "spotty.fits", spotty, meta, "hsc")
    assert main(["embed", str(root), str(tmp_path / "spotty.fits"), "--survey", "hsc", "-o", str(out)]) == 0
    assert len(pd.read_parquet(out)) == 2


def test_info_and_help(exported, capsys):
    root, _, _ = exported
    assert main(["info", str(root)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["provenance"]["run"] == "main" and info["bands"] == ["g", "r", "i", "z"]
    for command in ("export", "info", "embed", "generate"):
        with pytest.raises(SystemExit) as stop:
            main([command, "--help"])
        assert stop.value.code == 0
        assert command in capsys.readouterr().out


def readme_example() -> str:
    """The README's Python example (the block after the marker comment)."""
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- api-example: tests/test_api.py runs this block -->", 1)[1]
    return block.split("```python", 1)[1].split("```", 1)[0]


@pytest.mark.slow  # embeds the whole tiny sky and samples with the model's own sampler
def test_the_readme_example_runs_as_written(exported, tiny_sky, monkeypatch, tmp_path):
    """In a folder laid out as after `make run` (results/sim with the run's model directory and the sky)."""
    root, _, _ = exported
    _, raw, _ = tiny_sky
    sim = DatasetLayout(tmp_path / "results" / "sim")
    shutil.copytree(root, sim.run("main").export.root)
    for survey in SURVEY_ORDER:
        shutil.copytree(raw / survey, sim.raw(survey))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    assert namespace["flux"].shape[1:] == (4, 48, 48)
    assert {"phys_0", "inst_0", "object_id"} <= set(namespace["table"].columns)
