"""Training as a run: resumption, checkpoints from other configs, truncated files, NaN loss, hardware."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from whatsreal.config import run_config
from whatsreal.model.checkpoint import CheckpointError, load_trained_model
from whatsreal.train.module import FlowMatchingModule, NonFiniteLossError
from whatsreal.train.run import TrainingSetupError, resolve_hardware, train

from .conftest import SCHEMA, tiny_model_config


def _cfg(**train_overrides):
    return run_config(tiny_model_config(**train_overrides), "main", SCHEMA)


def _metrics(run_dir):
    m = pd.read_csv(run_dir / "metrics.csv")
    return m.dropna(subset=["lr"]).set_index("step")["lr"]


@pytest.mark.slow  # trains the tiny model in-process
def test_killed_training_resumes_at_the_same_step_with_the_same_lr(tiny_data, tmp_path, monkeypatch):
    _, data = tiny_data
    cfg = _cfg()
    reference = tmp_path / "reference"
    train(cfg, data, reference, reference / "model.ckpt")

    interrupted = tmp_path / "interrupted"
    original = FlowMatchingModule.training_step

    def dies_at_step_6(self, batch, batch_idx):
        if self.global_step == 6:
            raise RuntimeError("SIGTERM: time limit")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(FlowMatchingModule, "training_step", dies_at_step_6)
    with pytest.raises(RuntimeError, match="time limit"):
        train(cfg, data, interrupted, interrupted / "model.ckpt")
    last = interrupted / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4
    monkeypatch.setattr(FlowMatchingModule, "training_step", original)
    train(cfg, data, interrupted, interrupted / "model.ckpt")  # the retry finds last.ckpt

    final = torch.load(interrupted / "model.ckpt", weights_only=True)
    assert final["global_step"] == cfg["train"]["max_steps"]
    ref_lr, res_lr = _metrics(reference), _metrics(interrupted)
    assert list(res_lr.index) == list(ref_lr.index), "history from before the restart is kept"
    for step in res_lr.index:
        assert res_lr[step] == pytest.approx(ref_lr[step]), f"LR at step {step}"
    assert ref_lr.iloc[-1] < ref_lr.iloc[0], "cosine decay over the run, in steps"
    _, saved = load_trained_model(interrupted / "model.ckpt", cfg)
    assert saved["model"] == cfg["model"]


@pytest.mark.slow  # trains the tiny model in-process
def test_another_config_retrains_from_scratch_and_loading_refuses_it(tiny_data, tmp_path, caplog):
    """A job for the same run with another model config never continues the old checkpoint:
    it trains from step 0 (old checkpoints moved aside), and loading the new model with the
    old config is refused, naming the keys."""
    _, data = tiny_data
    cfg = _cfg(max_steps=4)
    run_dir = tmp_path / "run"
    train(cfg, data, run_dir, run_dir / "model.ckpt")
    other = _cfg(max_steps=4)
    other["model"]["encoder"]["token_dim"] = 8
    other["model"]["unet"]["layers_per_block"] = 2
    with caplog.at_level("WARNING"):
        train(other, data, run_dir, run_dir / "model.ckpt")
    assert "training from step 0, not resuming" in caplog.text
    assert len(list((run_dir / "stale").glob("*/checkpoints/last.ckpt"))) == 1
    with pytest.raises(CheckpointError, match=r"model\.encoder\.token_dim .*model\.unet\.layers_per_block"):
        load_trained_model(run_dir / "model.ckpt", cfg)


@pytest.mark.slow  # trains the tiny model in-process
def test_truncated_checkpoint_is_set_aside_and_training_starts_over(tiny_data, tmp_path, caplog):
    _, data = tiny_data
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 truncated")
    with caplog.at_level("WARNING"):
        train(_cfg(max_steps=2), data, tmp_path / "run", tmp_path / "run" / "model.ckpt")
    assert "is not a readable checkpoint" in caplog.text
    assert list((tmp_path / "run" / "stale").glob("*/checkpoints/last.ckpt"))
    assert (tmp_path / "run" / "model.ckpt").exists()


@pytest.mark.slow  # trains the tiny model in-process
def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    _, data = tiny_data
    cfg = _cfg(max_steps=8, checkpoint_every_steps=2)
    original = FlowMatchingModule._step

    def nan_at_step_5(self, batch, stage, cond=None):
        loss = original(self, batch, stage, cond)
        return loss * float("nan") if stage == "train" and self.global_step == 5 else loss

    monkeypatch.setattr(FlowMatchingModule, "_step", nan_at_step_5)
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss at step 5 \(batch \d+, pairs \["):
        train(cfg, data, run_dir, run_dir / "model.ckpt")
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    assert not (run_dir / "model.ckpt").exists()


def test_gpu_request_without_gpu_is_a_clear_message(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = _cfg(accelerator="gpu")
    with pytest.raises(TrainingSetupError, match=r"no CUDA GPU; set train\.accelerator: cpu"):
        resolve_hardware(cfg["train"])
    assert resolve_hardware(_cfg(accelerator="auto")["train"]) == ("cpu", 1, "32-true")


def test_run_overlays_are_validated():
    from whatsreal.config import ConfigError

    base = tiny_model_config()
    base["runs"] = {
        "main": {},
        "bad": {"neighbours": {"mdoe": "random"}},
        "random_neighbours": {"neighbours": {"mode": "random"}},
    }
    assert run_config(base, "random_neighbours", SCHEMA)["neighbours"]["mode"] == "random"
    with pytest.raises(ConfigError, match=r"(?s)runs\.bad: .*neighbours\.mdoe: unknown key"):
        run_config(base, "bad", SCHEMA)
    with pytest.raises(ConfigError, match="no run named 'nope'"):
        run_config(base, "nope", SCHEMA)
