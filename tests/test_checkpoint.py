"""A trained model loaded for inference without Lightning (whatsreal.model.checkpoint): the jobs
that sample, export or read a run's outputs never import it (nor timm, unless they build an
encoder), and the network they load is the one the training module holds, with the same
weights and outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import whatsreal
from whatsreal.config import validate_config
from whatsreal.methods import METHODS, build_module
from whatsreal.model.checkpoint import CheckpointError, load_trained_model
from whatsreal.model.embed import encode_spaces

from .conftest import SCHEMA, TINY_MODEL, save_untrained_checkpoint, tiny_config, tiny_model_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

INFERENCE_MODULES = (
    "whatsreal.model.checkpoint",
    "whatsreal.methods",
    "whatsreal.export",
    "whatsreal.model.cvae_embed",
    "whatsreal.experiments.posterior",
    "whatsreal.experiments.conditioning_gain",
    "whatsreal.experiments.noise_model",
    "whatsreal.experiments.calibration",
    "whatsreal.experiments.counterfactuals",
    "whatsreal.experiments.spectra",
    "whatsreal.experiments.truth_images",
    "whatsreal.experiments.zero_shot",
    "whatsreal.experiments.probes",
    "whatsreal.experiments.baselines",
    "whatsreal.plots.triplets",
)
"""Modules of the jobs that load a trained model or only read what one wrote (workflow/scripts)."""

HEAVY = ("lightning", "timm", "diffusers")
"""Seconds of import each, for every such job: training (Lightning) and building a network (timm, diffusers) only."""


def test_inference_jobs_import_no_lightning_and_load_a_checkpoint_without_it(tmp_path):
    ckpt = save_untrained_checkpoint(tiny_model_config(), tmp_path)
    code = f"""
import importlib, sys
for name in {INFERENCE_MODULES!r}:
    importlib.import_module(name)
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
from whatsreal.model.checkpoint import load_trained_model
net, _ = load_trained_model({ckpt!r})
print(type(net).__name__, "lightning" in sys.modules)
"""
    # A fresh interpreter: this one has imported Lightning already. The same package as here.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(whatsreal.__file__).parents[1]), *sys.path])}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    imported, loaded = res.stdout.strip().splitlines()[-2:]
    assert imported == "[]", f"importing the inference jobs' modules imported {imported}"
    assert loaded == "FlowMatchingModel False", loaded


def _config(method: str) -> dict:
    cfg = tiny_config(model=TINY_MODEL, cvae={"channels": [4, 8], "hidden": 16})
    cfg["method"] = method
    return validate_config(cfg, SCHEMA)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_the_network_loaded_without_lightning_is_the_trained_module_s(method, tmp_path):
    cfg = _config(method)
    torch.manual_seed(0)
    module = build_module(cfg, {"data": {}})  # the LightningModule train() builds
    with torch.no_grad():  # weights that no fresh build of the network has
        for p in module.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "model.ckpt"
    # What Lightning's save_checkpoint stores (besides the optimiser and loop state).
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(), "global_step": 3}, path)

    torch.manual_seed(1)
    net, saved = load_trained_model(path, cfg)
    trained = module.model
    assert saved == cfg and type(net) is type(trained)
    theirs = trained.state_dict()
    assert list(net.state_dict()) == list(theirs)
    assert all(torch.equal(v, theirs[k]) for k, v in net.state_dict().items())

    net.eval(), trained.eval()
    c, s = len(cfg["preprocess"]["bands"]), cfg["preprocess"]["size"]
    x = torch.randn(3, c, s, s, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        if method == "cvae":
            for a, b in zip(net.encode(x), trained.encode(x), strict=True):
                assert torch.equal(a, b)
            return
        spaces = METHODS[method].spaces
        ours, reference = (encode_spaces(m, x.numpy(), 2, torch.device("cpu"), spaces=spaces) for m in (net, trained))
        for space in spaces:
            np.testing.assert_array_equal(ours[space], reference[space])
        if method == "flow_matching":
            real = torch.ones(3, 1, dtype=torch.bool)
            views = (x[:, None], real, x.flip(0)[:, None], real)  # physics and instrument views, masks
            t = torch.full((3,), 0.3)
            v = [m.velocity(x, t, m.condition(*views)) for m in (net, trained)]
            assert torch.equal(v[0], v[1])


def test_a_checkpoint_of_another_config_or_no_checkpoint_is_refused(tmp_path):
    cfg = tiny_model_config()
    path = save_untrained_checkpoint(cfg, tmp_path)
    other = tiny_model_config()
    other["model"]["encoder"]["token_dim"] = 8
    with pytest.raises(CheckpointError, match=r"mismatched keys: model\.encoder\.token_dim \(16 vs 8\)"):
        load_trained_model(path, other)
    (tmp_path / "truncated.ckpt").write_bytes(Path(path).read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_trained_model(tmp_path / "truncated.ckpt")


def _rewrite_stored_config(path: str, edit) -> None:
    """Edit the config stored in the checkpoint at ``path`` in place, as an older (or newer)
    whatsreal would have written it."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    edit(ckpt["hyper_parameters"]["config"])
    torch.save(ckpt, path)


def test_a_checkpoint_from_before_a_config_key_existed_loads_with_the_key_s_default(tmp_path):
    cfg = tiny_model_config()
    assert cfg["model"]["time_sampling"]["distribution"] == "uniform"  # the schema default: trained with it
    path = save_untrained_checkpoint(cfg, tmp_path)
    reference, _ = load_trained_model(path)
    # An older whatsreal had no `model.time_sampling`: the network builder reads it, so without
    # the schema's defaults this checkpoint would fail with a bare KeyError.
    _rewrite_stored_config(path, lambda c: c["model"].pop("time_sampling"))
    net, saved = load_trained_model(path, cfg)  # and it matches the current config at the default
    assert saved["model"]["time_sampling"] == cfg["model"]["time_sampling"]
    for (name, a), (_, b) in zip(net.state_dict().items(), reference.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # A config that now sets the key otherwise is not what that model was trained with.
    other = tiny_model_config()
    other["model"]["time_sampling"] = {"distribution": "logit_normal", "loc": 1.0, "scale": 1.0}
    with pytest.raises(CheckpointError, match=r"model\.time_sampling\.distribution \('uniform' vs 'logit_normal'\)"):
        load_trained_model(path, other)


def test_a_checkpoint_whose_stored_config_this_version_cannot_read_names_the_key(tmp_path):
    path = save_untrained_checkpoint(tiny_model_config(), tmp_path)
    _rewrite_stored_config(path, lambda c: c["model"]["unet"].update(dropped_option=True))
    unreadable = r"model\.ckpt: its stored config cannot be read .*model\.unet\.dropped_option"
    with pytest.raises(CheckpointError, match=unreadable):
        load_trained_model(path)
