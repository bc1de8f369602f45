"""Progress of long loops (whatsreal.progress): a bar in a terminal, periodic log lines elsewhere,
and the stages that use it say how far they are without changing what they write."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch

import whatsreal.progress as progress_module
from whatsreal.data import stages
from whatsreal.model.embed import encode_images
from whatsreal.model.flow import build_model
from whatsreal.progress import ENV_VAR, Progress, progress, show_bar

from .conftest import tiny_model_config

LOGGER = "whatsreal.test_progress"


class FakeClock:
    """A clock the test moves by hand: periodic lines without waiting."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def no_setting(monkeypatch):
    """Neither the environment nor an earlier test's log_to_file decides the mode."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setattr(progress_module, "step_log", lambda: None)


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_log_mode_writes_a_line_at_most_every_every_s_and_a_final_line(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger=LOGGER)
    with Progress(
        500, "simulate hsc", "stamps", log=logging.getLogger(LOGGER), every_s=30, bar=False, clock=clock
    ) as p:
        for t, n in [(10, 50), (20, 50), (35, 20), (50, 100), (66, 100), (70, 180)]:
            clock.now = 100.0 + t
            p.update(n)
    lines = _lines(caplog)
    assert lines[:2] == [
        "simulate hsc: 120/500 stamps (24%), 35 s elapsed, ~111 s left",
        "simulate hsc: 320/500 stamps (64%), 66 s elapsed, ~37 s left",
    ]
    assert lines[2] == "simulate hsc: 500/500 stamps in 70 s (7.14 stamps/s)"
    assert len(lines) == 3


def test_every_s_zero_logs_every_update_and_unknown_totals_have_no_percentage(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    items = list(progress(iter("abc"), desc="read", unit="files", log=logging.getLogger(LOGGER), every_s=0, bar=False))
    assert items == ["a", "b", "c"]
    lines = _lines(caplog)
    assert lines[0].startswith("read: 1 files, ") and "%" not in lines[0] and "left" not in lines[0]
    assert lines[-1].startswith("read: 3 files in ")
    assert len(lines) == 4


def test_a_failing_loop_says_where_it_stopped(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with pytest.raises(RuntimeError), Progress(10, "embed", "images", log=logging.getLogger(LOGGER), bar=False) as p:
        p.update(4)
        raise RuntimeError("out of memory")
    assert _lines(caplog)[-1].startswith("embed: 4/10 images (40%)") and _lines(caplog)[-1].endswith("(stopped)")


def test_bar_mode_draws_tqdm_on_stderr_and_logs_only_the_final_line(capsys, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    items = list(progress(range(7), desc="preprocess hsc", unit="cutouts", log=logging.getLogger(LOGGER), bar=True))
    assert items == list(range(7))
    err = capsys.readouterr().err
    assert "preprocess hsc" in err and "7/7" in err, err
    assert len(_lines(caplog)) == 1 and _lines(caplog)[0].startswith("preprocess hsc: 7/7 cutouts in ")


def test_bar_only_in_a_terminal_outside_slurm_and_pipeline_steps(monkeypatch, no_setting):
    assert show_bar(Terminal())
    assert not show_bar(io.StringIO()), "not a terminal: log lines"
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    assert not show_bar(Terminal()), "a SLURM job's output is a file"
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setattr(progress_module, "step_log", lambda: "logs/preprocess_hsc.log")
    assert not show_bar(Terminal()), "a Snakemake step's progress belongs in its log file"


def test_whatsreal_progress_overrides_the_choice(monkeypatch, no_setting, capsys):
    monkeypatch.setenv(ENV_VAR, "0")
    assert not show_bar(Terminal())
    monkeypatch.setenv(ENV_VAR, "1")
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    assert show_bar(io.StringIO())
    with Progress(3, "forced", "items") as p:  # bar=None: decided by show_bar
        p.update(3)
    assert "3/3" in capsys.readouterr().err


def test_preprocessing_logs_its_progress_and_writes_the_same_bytes_with_a_bar(tiny_data, tmp_path, monkeypatch, caplog):
    cfg, data = tiny_data
    caplog.set_level(logging.INFO, logger="whatsreal.data.preprocess")
    outputs = {}
    for mode in ("0", "1"):
        monkeypatch.setenv(ENV_VAR, mode)
        out = tmp_path / mode
        out.mkdir()
        stages.run_preprocess(
            "hsc",
            data / "catalog_hsc.parquet",
            data / "pairs.parquet",
            data / "split.parquet",
            cfg["preprocess"],
            out / "images_hsc.npy",
            out / "meta_hsc.parquet",
        )
        outputs[mode] = (out / "images_hsc.npy").read_bytes()
    n = len(np.load(data / "images_hsc.npy", mmap_mode="r"))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("preprocess hsc: ")]
    assert len(lines) == 2 and all(f"{n}/{n} cutouts in " in line for line in lines), lines
    assert outputs["0"] == outputs["1"], "progress must not change the output"


def test_embedding_logs_its_progress_and_gives_the_same_tokens_with_a_bar(monkeypatch, caplog):
    torch.manual_seed(0)
    model = build_model(tiny_model_config())
    images = np.random.default_rng(0).normal(size=(10, 4, 48, 48)).astype(np.float32)
    caplog.set_level(logging.INFO, logger="whatsreal.model.embed")
    tokens = []
    for mode in ("0", "1"):
        monkeypatch.setenv(ENV_VAR, mode)
        tokens.append(encode_images(model, images, 4, torch.device("cpu"), desc="embed hsc"))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("embed hsc: ")]
    assert len(lines) == 2 and all(line.startswith("embed hsc: 10/10 images in ") for line in lines), lines
    for a, b in zip(tokens[0], tokens[1], strict=True):
        np.testing.assert_array_equal(a, b)
