"""profiles/slurm without a cluster: the paper's whole DAG resolves through it (dry run), every
job gets the partition and GPUs the profile means, and the training layout agrees with the
paper config. Running it on real SLURM is tests/slurm/ (``make test-slurm``)."""

from __future__ import annotations

import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string
from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

from whatsreal.train.layout import LayoutError, check_train_layout, gpus_per_node

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
NWAY_GPU_RULES = {"survey_probes", "survey_directions"}
"""GPU rules of runs trained on N-way groups (config/sim_three.yaml); the paper's runs train on pairs."""


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
    # The whole paper: every run of paper.yaml (the paper's two, the seeds' three methods) trained and
    # embedded, every figure, the summary.
    assert {"catalog", "crossmatch", "preprocess", "neighbours", "train", "embed", "summary", "all"} <= rules
    assert GPU_RULES <= rules, GPU_RULES - rules
    paper_runs = yaml.safe_load(PAPER.read_text())["runs"]
    assert len(paper_runs) == 5
    assert sum(rule == "train" for rule, _ in jobs) == len(paper_runs)

    profile = load_profile()
    cpu_partition = profile["default-resources"]["slurm_partition"]
    for rule, resources in jobs:
        if rule in GPU_RULES | NWAY_GPU_RULES:
            want = rule_resources(profile, rule)
            assert resources["slurm_partition"] == want["slurm_partition"] != cpu_partition, rule
            if "gres" in want:  # per node (train)
                assert resources["gres"] == want["gres"] and "gpu" not in resources, rule
            else:
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
    assert gpu_rules(profile) == GPU_RULES | NWAY_GPU_RULES


def test_training_layout_agrees_with_the_paper_config():
    """Lightning needs one srun task per device: the profile's task layout for `train` and
    the paper config's devices must agree, and the srun line repeats the profile's counts
    (the plugin's jobstep clears SLURM_* before it runs, so srun cannot inherit them)."""
    train = rule_resources(load_profile(), "train")
    paper = yaml.safe_load(PAPER.read_text())["train"]
    assert train["tasks_per_node"] == gpus_per_node(train) == paper["devices"]
    assert "gpu" not in train, "GPUs per node (gres), not per job (gpu): see test_sbatch_line_for_1_and_2_nodes"
    assert train["nodes"] == paper["num_nodes"]
    srun = dict(re.findall(r"--([\w-]+)=(\d+)", train["mpi"]))
    assert int(srun["ntasks-per-node"]) == train["tasks_per_node"]
    assert int(srun["cpus-per-task"]) == train["cpus_per_task"]
    assert paper["num_workers"] < train["cpus_per_task"], "a CPU per data loader worker, plus the rank"


class _Resources(dict):
    """A job's resources as the plugin reads them: ``.get(name)`` and ``.name``."""

    def __getattr__(self, name: str) -> object:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _sbatch_line(resources: dict, threads: int) -> str:
    """The sbatch command line snakemake-executor-plugin-slurm builds for a job with these
    resources (its own command builder, as its executor calls it; account and partition are
    the strings its executor passes)."""
    job = SimpleNamespace(name="train", threads=threads, resources=_Resources(resources))
    validate_slurm_extra(job)
    params = {
        "run_uuid": "uuid",
        "slurm_logfile": "train.log",
        "comment_str": "rule_train_wildcards_main",
        "account": "",
        "partition": f"-p {resources['slurm_partition']}",
        "workdir": "/work",
    }
    return get_submit_command(job, params) + set_gres_string(job)


@pytest.mark.parametrize("nodes", [1, 2])
def test_sbatch_line_for_1_and_2_nodes(nodes):
    """Multi-node training gets every GPU: 4 per node, one task per GPU, on each of the nodes
    (the multi-node recipe: nodes in the profile, train.num_nodes in the config)."""
    profile = load_profile()
    train = {**rule_resources(profile, "train"), "nodes": nodes}
    threads = profile["set-threads"]["train"]
    line = _sbatch_line(train, threads)
    flags = line.split()
    per_node = gpus_per_node(train)
    assert f"--nodes={nodes}" in flags, line
    assert f"--gres=gpu:{train['gres'].split(':')[1]}:{per_node}" in flags, line
    assert f"--ntasks-per-node={per_node}" in flags, line
    assert f"--cpus-per-task={train['cpus_per_task']}" in flags, line
    assert not [f for f in flags if f.startswith(("--gpus", "--ntasks=", "--ntasks-per-gpu"))], line
    assert "--signal=SIGUSR1@90" in flags
    # ... and the workflow accepts it with the matching config, and no other.
    check_train_layout(train, {"main": {"devices": per_node, "num_nodes": nodes}})
    with pytest.raises(LayoutError, match=r"train\.num_nodes"):
        check_train_layout(train, {"main": {"devices": per_node, "num_nodes": 3 - nodes}})


@pytest.mark.parametrize(
    ("change", "train_cfg", "message"),
    [
        ({}, {"devices": 2, "num_nodes": 1}, r"train.devices is 2 .* 4 GPU\(s\) per node.*Set train.devices: 4"),
        ({"tasks_per_node": 2}, {"devices": 4, "num_nodes": 1}, r"4 GPU\(s\) per node but tasks_per_node: 2"),
        ({"nodes": 2}, {"devices": 4, "num_nodes": 1}, r"train.num_nodes is 1 .* nodes is 2"),
        (
            {"gres": None, "gpu": 4, "gpu_model": "h100", "nodes": 2},
            {"devices": 4, "num_nodes": 2},
            r"--gpus=4 for the whole job.*gres: gpu:<model>",
        ),
        ({"mpi": "srun --ntasks-per-node=2 --cpus-per-task=8"}, {"devices": 4, "num_nodes": 1}, r"mpi runs srun"),
    ],
)
def test_layout_mismatch_names_the_key_and_the_fix(change, train_cfg, message):
    train = {k: v for k, v in {**rule_resources(load_profile(), "train"), **change}.items() if v is not None}
    with pytest.raises(LayoutError, match=message):
        check_train_layout(train, {"main": train_cfg})


def test_nothing_to_check_without_a_profile():
    check_train_layout({"mem_mb": 1000}, {"main": {"devices": 2, "num_nodes": 1}})


@pytest.mark.slow  # runs Snakemake in a subprocess
def test_workflow_stops_at_start_when_profile_and_train_devices_disagree(tmp_path):
    """The check runs when the workflow starts, before any job, from the profile's values."""
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump({"train": {"devices": 2}}))
    res = subprocess.run(
        [*_SNAKEMAKE, "-n", "--profile", "profiles/slurm", "--configfile", str(config), "-d", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert re.search(r"LayoutError.*\n.*train.devices( \(run '\w+'\))? is 2 .* Set train.devices: 4", out), out[-3000:]


_SNAKEMAKE = [sys.executable, "-m", "snakemake"]
