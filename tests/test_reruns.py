"""What reruns when (README "What reruns when"): results follow their inputs and config.

From one finished tiny run: a changed setting reruns exactly the jobs that read it and their
downstream jobs; settings that change no result rerun nothing; rebuilding the random graph
leaves the spatial run alone; a retrain never resumes a stale checkpoint; escaping names are
refused before any job. All in the slow tier but the static check that every rule declares
its settings.
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
import yaml

from whatsreal.layout import DatasetLayout
from whatsreal.provenance import training_fingerprint
from whatsreal.rule_settings import RULE_SETTINGS, rule_settings
from whatsreal.train.run import FINISHED, resume_point, train

from .conftest import REPO, run_snakemake, tiny_model_config

ALL_JOBS = {
    "simulate": 1,
    "sky_figure": 1,
    "catalog": 2,
    "crossmatch": 1,
    "groups": 1,
    "split": 1,
    "preprocess": 2,
    "neighbours": 4,
    "triplet_figure": 2,
    "random_init_embeddings": 1,
    "cross_predict": 1,
    "baseline_probes": 1,
    "baseline_outliers": 1,
    "train": 2,
    "export": 2,
    "embed": 2,
    "umap": 2,
    "outliers": 2,
    "probes": 2,
    "retrieval": 2,
    "conditioning_gain": 2,
    "truth_metrics": 2,
    "posterior_samples": 2,
    "counterfactuals": 1,
    "truth_counterfactuals": 1,
    "spatial_structure": 1,
    "calibration": 1,
    "zero_shot": 1,
    "noise_model": 1,
    "ablation": 1,
    "survey_probes": 2,
    "survey_ablation": 1,
    "comparison": 1,
    "rule_times": 1,
    "summary": 1,
    "effective_config": 1,
    "all": 1,
}
"""Every job of the tiny run: two runs, sampling experiments for `main` only."""

CONFIG_RECORD = {"effective_config": 1, "all": 1}
"""What any config change reruns at least: the results' copy of the config it was built with."""

DATA_STAGES = {"simulate", "sky_figure", "catalog", "crossmatch", "groups", "split", "preprocess", "neighbours"}
BASELINES = {"random_init_embeddings", "cross_predict", "baseline_probes", "baseline_outliers"}
# The per-run jobs downstream of one run's model (random_neighbours gets no sampling experiments).
RN_MODEL_DOWNSTREAM = {
    "train": 1,
    "export": 1,
    "embed": 1,
    "umap": 1,
    "outliers": 1,
    "probes": 1,
    "retrieval": 1,
    "conditioning_gain": 1,
    "truth_metrics": 1,
    "ablation": 1,
    "survey_probes": 1,
    "survey_ablation": 1,  # pairs both runs' per-survey predictions
    "comparison": 1,  # every run's embeddings side by side
    "rule_times": 1,  # the reruns' benchmark TSVs are rewritten
    "summary": 1,
    "all": 1,
}


def _without(jobs: dict[str, int], names: set[str]) -> dict[str, int]:
    return {k: v for k, v in jobs.items() if k not in names}


RERUNS = [
    pytest.param({}, {}, id="nothing-changed"),
    pytest.param(
        {
            "train": {"num_workers": 1, "progress_bar": True, "checkpoint_every_steps": 3, "log_every_steps": 2},
            "preprocess": {"chunk_size": 17},
            "embed": {"batch_size": 5},
        },
        CONFIG_RECORD,  # no result, only the record of the config
        id="result-neutral-settings",
    ),
    pytest.param({"simulation": {"seed": 8}}, ALL_JOBS, id="simulation.seed"),
    pytest.param(
        {"crossmatch": {"radius_arcsec": 0.9}},
        _without(ALL_JOBS, {"simulate", "sky_figure", "catalog"}),
        id="crossmatch.radius_arcsec",
    ),
    pytest.param(
        {"preprocess": {"arcsinh_scale": 9.0}},
        _without(ALL_JOBS, DATA_STAGES - {"preprocess"}),
        id="preprocess.arcsinh_scale",
    ),
    pytest.param(
        {"neighbours": {"random_seed": 3}},
        {"neighbours": 2, "triplet_figure": 1, **RN_MODEL_DOWNSTREAM, **CONFIG_RECORD},
        id="neighbours.random_seed",
    ),
    pytest.param(
        {"train": {"lr": 0.002}},
        _without(ALL_JOBS, DATA_STAGES | BASELINES | {"triplet_figure"}),
        id="train.lr",
    ),
    pytest.param(
        {"runs": {"main": {}, "random_neighbours": {"neighbours": {"mode": "random"}, "train": {"lr": 0.002}}}},
        {**RN_MODEL_DOWNSTREAM, **CONFIG_RECORD},
        id="runs.random_neighbours.train.lr",
    ),
    pytest.param(
        {"experiments": {"retrieval": {"k": 3}}},
        {
            "retrieval": 2,
            "umap": 2,
            "survey_probes": 2,  # its retrieval across surveys counts the top k too
            "survey_ablation": 1,
            "comparison": 1,
            "rule_times": 1,
            "summary": 1,
            **CONFIG_RECORD,
        },
        id="experiments.retrieval.k",
    ),
    pytest.param(
        {"experiments": {"probes": {"epochs": 3}}},
        {
            "probes": 2,
            "baseline_probes": 1,  # the random-init and pixel-floor probes, fitted once for both runs
            "cross_predict": 1,
            "ablation": 1,
            "truth_metrics": 2,
            "rule_times": 1,
            "summary": 1,
            **CONFIG_RECORD,
        },
        id="experiments.probes.epochs",
    ),
]


def _planned_jobs(result) -> dict[str, int]:
    """The dry run's job-stats table as {rule: count} ({} for "Nothing to be done")."""
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1]
    jobs = {}
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m.group(1) != "total":
            jobs[m.group(1)] = int(m.group(2))
    return jobs


@pytest.mark.slow  # runs Snakemake in a subprocess on the finished tiny run
@pytest.mark.parametrize(("overlay", "expected"), RERUNS)
def test_one_changed_setting_reruns_exactly_what_reads_it(finished_tiny_run, tmp_path, overlay, expected):
    workdir, cfg, _ = finished_tiny_run
    extra = tmp_path / "change.yaml"
    extra.write_text(yaml.safe_dump(overlay))
    res = run_snakemake(workdir, "all", "-n", "--cores", "2", "--configfile", str(cfg), str(extra))
    assert _planned_jobs(res) == expected


@pytest.mark.slow  # runs Snakemake in a subprocess on the finished tiny run
def test_rebuilding_the_random_graph_leaves_the_spatial_run_alone(finished_tiny_run, tmp_path):
    """New random graphs (other content, so Snakemake's input checksums differ too) retrain
    random_neighbours only; the files are restored afterwards for the other tests."""
    workdir, cfg, _ = finished_tiny_run
    graphs = sorted((workdir / "results" / "tiny").glob("neighbours_*_random.npz"))
    assert len(graphs) == 2
    backup = tmp_path / "backup"
    backup.mkdir()
    for p in graphs:
        shutil.copy2(p, backup / p.name)
    try:
        for p in graphs:
            with np.load(p) as npz:
                arrays = {k: npz[k] for k in npz.files}
            arrays = {k: np.roll(v, 1, axis=0) for k, v in arrays.items()}  # another graph, same shape
            np.savez(p, **arrays)
        jobs = _planned_jobs(run_snakemake(workdir, "all", "-n", "--cores", "2", "--configfile", str(cfg)))
    finally:
        for p in graphs:
            shutil.copy2(backup / p.name, p)
    assert jobs == {"triplet_figure": 1, **RN_MODEL_DOWNSTREAM}
    assert jobs["train"] == 1 and jobs["embed"] == 1  # random_neighbours' only: main is not retrained
    after = _planned_jobs(run_snakemake(workdir, "all", "-n", "--cores", "2", "--configfile", str(cfg)))
    assert after == {}, "restoring the graphs must leave the run up to date"


@pytest.mark.slow  # runs Snakemake in a subprocess on the finished tiny run
def test_forcerun_train_retrains_from_step_zero(finished_tiny_run, tmp_path):
    """`--forcerun train` after a finished training starts over; the old checkpoints are kept aside."""
    workdir, cfg, _ = finished_tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy, symlinks=True)
    run_dir = copy / "results" / "tiny" / "runs" / "main"
    model = run_dir / "model.ckpt"
    target = str(model.relative_to(copy))
    res = run_snakemake(copy, target, "--forcerun", "train", "--cores", "2", "--configfile", str(cfg))
    assert res.returncode == 0, res.stderr[-3000:]
    log = (copy / "results" / "tiny" / "logs" / "train_main.log").read_text()
    assert "training from step 0, not resuming" in log and "finished (step 4)" in log
    assert "resuming from" not in log
    stale = list((run_dir / "stale").glob("*/checkpoints/last.ckpt"))
    assert len(stale) == 1  # the old training, moved aside, not deleted
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert metrics["step"].min() == 0 and metrics["step"].max() <= 4
    assert torch.load(model, map_location="cpu", weights_only=True)["global_step"] == 4
    # The previous attempt's log is kept beside the new one.
    assert (copy / "results" / "tiny" / "logs" / "train_main.log.1").exists()


@pytest.fixture(scope="module")
def trained_tiny(tiny_data, tmp_path_factory):
    """A 4-step training of the tiny model on a private copy of the tiny data: (config, data, run dir)."""
    _, data = tiny_data
    own = tmp_path_factory.mktemp("retrain_data")
    for p in DatasetLayout(data).run_data_files("spatial"):
        shutil.copy2(p, own / p.name)
    cfg = tiny_model_config(max_steps=4, checkpoint_every_steps=2, val_every_steps=2)
    run_dir = tmp_path_factory.mktemp("retrain_run")
    torch.set_num_threads(1)
    train(cfg, own, run_dir, run_dir / "model.ckpt")
    return cfg, own, run_dir


def _fingerprint(cfg: dict, data: Path) -> dict:
    return training_fingerprint(
        rule_settings(cfg, "train"), DatasetLayout(data).run_data_files(cfg["neighbours"]["mode"])
    )


@pytest.mark.slow  # trains the tiny model (the trained_tiny fixture)
def test_resume_only_an_interrupted_training_of_the_same_settings_and_data(trained_tiny, tmp_path, caplog):
    cfg, data, trained = trained_tiny
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    assert (run_dir / "checkpoints" / FINISHED).exists()
    # The same training, interrupted (no finished marker): it resumes.
    (run_dir / "checkpoints" / FINISHED).unlink()
    assert resume_point(run_dir, _fingerprint(cfg, data), move_stale=False) == run_dir / "checkpoints" / "last.ckpt"
    # Another learning rate: starts over, saying why, and moves the old checkpoints aside.
    other = tiny_model_config(max_steps=4, checkpoint_every_steps=2, val_every_steps=2, lr=0.003)
    with caplog.at_level("WARNING"):
        assert resume_point(run_dir, _fingerprint(other, data)) is None
    assert "train.lr" in caplog.text and "training from step 0" in caplog.text
    assert not (run_dir / "checkpoints").exists()
    assert len(list((run_dir / "stale").glob("*/checkpoints/last.ckpt"))) == 1


@pytest.mark.slow  # trains the tiny model (the trained_tiny fixture)
def test_a_regenerated_split_starts_training_over(trained_tiny, tmp_path, caplog):
    cfg, data, trained = trained_tiny
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    (run_dir / "checkpoints" / FINISHED).unlink()
    own = tmp_path / "data"
    shutil.copytree(data, own)
    split = pd.read_parquet(own / "split.parquet")
    split["split"] = split["split"].sample(frac=1.0, random_state=1).to_numpy()  # another split, same size
    split.to_parquet(own / "split.parquet", index=False)
    with caplog.at_level("WARNING"):
        assert resume_point(run_dir, _fingerprint(cfg, own)) is None
    assert "data file split.parquet changed" in caplog.text


@pytest.mark.slow  # trains the tiny model (the trained_tiny fixture)
def test_a_retrain_with_a_new_learning_rate_runs_from_step_zero(trained_tiny, tmp_path, caplog):
    """Through train(): an interrupted run restarted with another LR trains all its steps anew."""
    _, data, trained = trained_tiny
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    (run_dir / "checkpoints" / FINISHED).unlink()
    other = tiny_model_config(max_steps=4, checkpoint_every_steps=2, val_every_steps=2, lr=0.003)
    with caplog.at_level("INFO"):
        train(other, data, run_dir, run_dir / "model.ckpt")
    assert "settings changed: train.lr" in caplog.text and "resuming from" not in caplog.text
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert metrics["step"].min() == 0
    ckpt = torch.load(run_dir / "model.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["config"]["train"]["lr"] == 0.003 and ckpt["global_step"] == 4
    assert json.loads((run_dir / "checkpoints" / FINISHED).read_text())["step"] == 4


@pytest.mark.slow  # runs Snakemake in a subprocess
@pytest.mark.parametrize(
    "overlay",
    [
        {"runs": {"../../escape_run": {}}},
        {"runs": {"main/../../x": {}}},
        {"dataset": {"name": ".."}},
        {"dataset": {"name": "a/b"}},
        {"runs": {"main": {"train": {"lrr": 0.1}}}},
    ],
    ids=["run-dotdot", "run-separator", "dataset-dotdot", "dataset-separator", "typo-in-overlay"],
)
def test_escaping_names_and_bad_overlays_are_refused_before_any_job(tmp_path, overlay):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(overlay))
    res = run_snakemake(tmp_path, "all", "--cores", "1", "--configfile", str(cfg))
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "invalid configuration" in out and ("runs" in out or "dataset.name" in out)
    assert "rule simulate" not in out
    assert not (tmp_path / "results").exists()
    assert not (tmp_path.parent / "escape_run").exists()


def test_every_rule_declares_its_settings():
    """A new rule without a settings entry (or a rule that forgets the param) would never rerun
    on a config change: every `rule` in the workflow passes `settings`."""
    rules = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=\s*rule \w+:)", smk.read_text()):
            m = re.match(r"\s*rule (\w+):", block)
            if m:
                rules[m.group(1)] = block
    assert len(rules) > 25
    for name, block in rules.items():
        assert "settings=" in block, f"rule {name} passes no settings param"
        if name not in ("neighbours", "nway_neighbours"):  # one entry per mode
            assert name in RULE_SETTINGS, name
    assert {"neighbours_spatial", "neighbours_random"} <= set(RULE_SETTINGS)
    assert {"nway_neighbours_spatial", "nway_neighbours_random"} <= set(RULE_SETTINGS)
