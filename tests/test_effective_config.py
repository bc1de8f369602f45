"""One effective config: the workflow runs the schema defaults plus exactly the files named
with --configfile (config/config.yaml only when none is named), `python -m whatsreal.config
show` prints the same thing, and config/paper.yaml carries every value the paper states."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from whatsreal.config import DEMO_CONFIG, config_value, effective_config, path_problems
from whatsreal.experiments.probe_design import resolve_design

from .conftest import REPO, run_snakemake
from .slurm.profile import load_profile

PAPER = REPO / "config" / "paper.yaml"

# Every hyper-parameter the paper states, with where it says so (seed 000). A value the
# paper run silently took from somewhere else (the demo file, a changed default) fails here.
PAPER_VALUES: dict[str, object] = {
    # Table 1 (A.1): data dimensions and architecture.
    "preprocess.size": 48,
    "preprocess.bands": ["g", "r", "i", "z"],  # 4 input and conditioning channels
    "model.encoder.name": "resnet18",
    "model.encoder.tokens": 4,  # 2 x 2 feature map = 4 tokens
    "model.encoder.token_dim": 16,  # = cross-attention dimension 16
    "model.encoder.options": {},  # timm's ResNet-18 as defined, not the demo's half-width one
    "model.unet.block_out_channels": [128, 256, 512, 512],  # base 128, multipliers (1, 2, 4, 4)
    "model.unet.layers_per_block": 2,
    "model.unet.attention_head_dim": 8,
    "model.unet.down_block_types": ["CrossAttnDownBlock2D"] * 4,
    "model.unet.up_block_types": ["CrossAttnUpBlock2D"] * 4,
    "model.unet.global_conditioning": False,  # conditioning through cross-attention only
    # Table 2 (A.2): optimisation, flow matching, training details.
    "train.lr": 1.0e-4,
    "train.warmup_steps": 0,  # CosineAnnealingLR from the first step
    "train.batch_size": 64,
    "train.max_steps": 75000,
    "train.devices": 4,
    "train.num_nodes": 1,
    "train.accelerator": "gpu",
    "train.precision": "bf16-mixed",
    "train.val_every_steps": 1000,
    "split.val_fraction": 0.05,  # 95 % / 5 %
    "model.time_sampling.distribution": "uniform",  # x_t = (1 - t) x0 + t x1
    "sample.steps": 250,
    "sample.method": "euler",
    # Sec. 3 "Data Triplets": five nearest same-survey neighbours within 3 arcmin.
    "neighbours.k": 5,
    "neighbours.radius_arcmin": 3.0,
    "neighbours.mode": "spatial",
    "runs.random_neighbours.neighbours.mode": "random",  # A.5 ablation
    # Sec. 4, Fig 2: 8,192 pairs in the UMAP.
    "experiments.umap.n_pairs": 8192,
    # A.3/A.4: the MLP probe and its random 90 / 10 split.
    "experiments.probes.hidden": [512, 256, 128],
    "experiments.probes.dropout": 0.2,
    "experiments.probes.test_fraction": 0.1,
    # A.6: 32 posterior samples per anchor.
    "experiments.posterior.n_samples": 32,
    # Sec. 4 zero-shot transfer: ResNet-18 trained on 25,000 HSC images.
    "experiments.zero_shot.n_train": 25000,
    # A.7, Table 6: the outlier flow.
    "experiments.outliers.transforms": 6,
    "experiments.outliers.hidden": [64, 64],
    "experiments.outliers.lr": 1.0e-3,
    "experiments.outliers.batch_size": 512,
    "experiments.outliers.epochs": 50,
    "experiments.outliers.train_fraction": 0.8,
    "experiments.outliers.seed": 42,
    # Our own paper-scale choices that the demo cuts (the issue that found the leak lists them).
    "experiments.probes.epochs": 100,
    "experiments.baselines.epochs": 30,
    "experiments.posterior.n_galaxies": 256,
}


def _flat(config: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(config, dict):
        return {prefix: config}
    out: dict[str, object] = {}
    for key, value in config.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else key))
    return out


@pytest.mark.parametrize("key", sorted(PAPER_VALUES))
def test_the_paper_config_states_every_paper_value(key):
    config = effective_config([PAPER], check_paths=False)
    assert config_value(config, key) == PAPER_VALUES[key]


def test_a_named_file_is_not_layered_over_the_demo():
    """The leak the issue found: the paper run took the demo's cut-down experiments."""
    demo, paper = effective_config([]), effective_config([PAPER], check_paths=False)
    assert demo == effective_config([DEMO_CONFIG])
    assert demo["experiments"]["umap"]["n_pairs"] == 2048 and paper["experiments"]["umap"]["n_pairs"] == 8192
    assert demo["model"]["encoder"]["name"] == "resnet10t"
    # sim_large alone is the paper's model on a large sky, not the demo's model.
    large = effective_config([REPO / "config" / "sim_large.yaml"])
    assert large["model"]["unet"]["block_out_channels"] == [128, 256, 512, 512]
    assert large["dataset"]["source"] == "synthetic" and large["simulation"]["cutout_size"] == 160


def test_the_fast_sampler_overlay_changes_only_the_paper_runs_sampler():
    """config/fast_sampler.yaml is one switch: over the paper config it sets the sampler the demo
    uses (benchmarks/sampler_study.py's choice) and nothing else; without it the paper keeps Euler-250."""
    paper = effective_config([PAPER], check_paths=False)
    fast = effective_config([PAPER, REPO / "config" / "fast_sampler.yaml"], check_paths=False)
    assert (paper["sample"]["method"], paper["sample"]["steps"]) == ("euler", 250)
    assert fast["sample"] == effective_config([])["sample"]
    assert (fast["sample"]["method"], fast["sample"]["steps"]) == ("midpoint", 8)
    assert {k: v for k, v in fast.items() if k != "sample"} == {k: v for k, v in paper.items() if k != "sample"}


@pytest.mark.parametrize("source", ["mmu", "crossmatched_parquet"])
def test_real_data_probes_default_to_held_out_pairs_in_healpix_blocks(source):
    """Issue 12.4: on real data the probes never see pairs the encoders trained on."""
    config = effective_config([PAPER], check_paths=False)
    config["dataset"]["source"] = source
    design = resolve_design(config)
    assert (design.pairs, design.split) == ("held_out", "healpix")
    assert (resolve_design(effective_config([])).pairs, resolve_design(effective_config([])).split) == ("all", "random")


def test_the_paper_placeholders_are_path_problems_not_schema_errors():
    config = effective_config([PAPER], check_paths=False)
    problems = list(path_problems(config))
    assert len(problems) == 2 and all(p.startswith("dataset.mmu.") for p in problems)
    with pytest.raises(ValueError, match=r"dataset\.mmu\.hsc: directory '/path/to"):
        effective_config([PAPER])


def test_the_slurm_profile_sets_no_config():
    """A profile may carry `configfile`/`config`; ours must not, so `show` (which never reads
    the profile) stays what a run through the profile uses."""
    profile = load_profile()
    assert not {"configfile", "configfiles", "config"} & set(profile)


def _mmu_overlay(tmp_path: Path) -> Path:
    dirs = {}
    for survey in ("hsc", "legacysurvey"):
        dirs[survey] = str(tmp_path / "mmu" / survey)
        Path(dirs[survey]).mkdir(parents=True)
    path = tmp_path / "mmu_dirs.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"mmu": dirs}}))
    return path


CASES = {
    "demo": [],
    "demo_named": [DEMO_CONFIG],
    "paper": [PAPER, "MMU"],
    "sim_large": [REPO / "config" / "sim_large.yaml"],
    "sim_science": [DEMO_CONFIG, REPO / "config" / "sim_science.yaml"],
    "sim_three": [DEMO_CONFIG, REPO / "config" / "sim_three.yaml"],
}


@pytest.mark.slow  # runs Snakemake in a subprocess
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_snakefile_and_show_agree_key_by_key(case, tmp_path):
    """What the workflow wrote (its effective_config rule, run by Snakemake itself) equals
    what `show` prints for the same --configfile list, key by key."""
    files = [_mmu_overlay(tmp_path) if f == "MMU" else Path(f) for f in CASES[case]]
    shown = effective_config(files)
    target = f"results/{shown['dataset']['name']}/effective_config.yaml"
    args = [target, "--cores", "1"] + (["--configfile", *map(str, files)] if files else [])
    res = run_snakemake(tmp_path, *args, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    written = yaml.safe_load((tmp_path / target).read_text())
    flat_written, flat_shown = _flat(written), _flat(shown)
    assert set(flat_written) == set(flat_shown)
    differing = {k: (flat_written[k], flat_shown[k]) for k in flat_shown if flat_written[k] != flat_shown[k]}
    assert not differing
