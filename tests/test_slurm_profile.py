"""profiles/slurm without a cluster: the paper's whole DAG resolves through it (dry run), every
job gets the partition and GPUs the profile means, and the training layout agrees with the
paper config. Running it on real SLURM is tests/slurm/ (``make test-slurm``)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from .conftest import REPO
from .slurm.profile import PROFILE, gpu_rules, load_profile, rule_resources

PAPER = REPO / "config" / "paper.yaml"
GPU_RULES = {
    "train",
    "embed",
    "posterior_samples",
    "noise_model",
    "conditioning_gain",
    "zero_shot",
    "cross_predict",
    "random_init_embeddings",
}


def _paper_overlay(tmp_path):
    """config/paper.yaml with its placeholder MMU paths (refused by design) pointed at
    empty directories, so that the config validates and the DAG can be built."""
    paper = yaml.safe_load(PAPER.read_text())
    for survey in paper["dataset"]["mmu"]:
        (tmp_path / "mmu" / survey).mkdir(parents=True)
        paper["dataset"]["mmu"][survey] = str(tmp_path / "mmu" / survey)
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(paper))
    return path, paper


def _dry_run_jobs(text: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job a dry run prints."""
    jobs = []
    for block in re.split(r"\n(?=rule \w+:\n)", text):
        head = re.match(r"rule (\w+):\n", block)
        resources = re.search(r"^    resources: (.*)$", block, flags=re.M)
        if head and resources:
            jobs.append((head.group(1), dict(re.findall(r"(\w+)=(.*?)(?=, \w+=|$)", resources.group(1)))))
    return jobs


@pytest.mark.slow  # runs Snakemake in a subprocess
def test_dry_run_of_the_paper_dag_through_the_slurm_profile(tmp_path):
    config, _ = _paper_overlay(tmp_path)
    # As a user types it, from the repository root; -d keeps results/ out of the checkout.
    cmd = [sys.executable, "-m", "snakemake", "-n", "--profile", "profiles/slurm", "all", "--configfile", str(config)]
    res = subprocess.run(
        [*cmd, "-d", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    jobs = _dry_run_jobs(res.stdout + res.stderr)
    rules = {rule for rule, _ in jobs}
    # The whole paper: both runs trained and embedded, every figure, the summary.
    assert {"catalog", "crossmatch", "preprocess", "neighbours", "train", "embed", "summary", "all"} <= rules
    assert GPU_RULES <= rules, GPU_RULES - rules
    assert sum(rule == "train" for rule, _ in jobs) == 2

    profile = load_profile()
    cpu_partition = profile["default-resources"]["slurm_partition"]
    for rule, resources in jobs:
        if rule in GPU_RULES:
            want = rule_resources(profile, rule)
            assert resources["slurm_partition"] == want["slurm_partition"] != cpu_partition, rule
            assert resources["gpu"] == str(want["gpu"]) and resources["gpu_model"] == want["gpu_model"], rule
        else:
            assert resources["slurm_partition"] == cpu_partition and "gpu" not in resources, rule
    train = next(resources for rule, resources in jobs if rule == "train")
    assert train["mpi"].startswith("srun ") and train["tasks_per_node"] == "4" and train["nodes"] == "1"
    assert train["slurm_extra"] == "--signal=SIGUSR1@90"


@pytest.mark.slow  # runs Snakemake in a subprocess
def test_profile_names_only_rules_of_the_workflow_and_sends_the_gpu_ones_to_gpus():
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "--list-rules"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    workflow_rules = set(res.stdout.split())
    profile = load_profile()
    named = set(profile.get("set-resources", {})) | set(profile.get("set-threads", {}))
    assert named <= workflow_rules, f"{PROFILE} names rules the workflow does not have: {named - workflow_rules}"
    assert gpu_rules(profile) == GPU_RULES


def test_training_layout_agrees_with_the_paper_config():
    """Lightning needs one srun task per device: the profile's task layout for `train` and
    the paper config's devices must agree, and the srun line repeats the profile's counts
    (the plugin's jobstep clears SLURM_* before it runs, so srun cannot inherit them)."""
    train = rule_resources(load_profile(), "train")
    paper = yaml.safe_load(PAPER.read_text())["train"]
    assert train["tasks_per_node"] == train["gpu"] == paper["devices"]
    assert train["nodes"] == paper["num_nodes"]
    srun = dict(re.findall(r"--([\w-]+)=(\d+)", train["mpi"]))
    assert int(srun["ntasks-per-node"]) == train["tasks_per_node"]
    assert int(srun["cpus-per-task"]) == train["cpus_per_task"]
    assert paper["num_workers"] < train["cpus_per_task"], "a CPU per data loader worker, plus the rank"
