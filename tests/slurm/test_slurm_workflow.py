"""The workflow through profiles/slurm on a real SLURM cluster (one node on localhost).

What is asserted comes from SLURM itself (``scontrol show job`` of every job, finished ones
included, and the job logs SLURM wrote): every job of the DAG from ``preprocess`` on ran as a
SLURM job, on the partition, with the GPUs, task layout, CPUs, memory and time limit the profile
asks for (the stages before it run locally first: default-resource CPU jobs like ``umap``, which
through SLURM cost minutes of the plugin's status polling and show nothing more);
training ran as 4 srun tasks forming one DDP group; and a training job sent SIGUSR1 while it
ran (what ``--signal=SIGUSR1@90`` sends ahead of a time limit) saved ``last.ckpt``, failed,
and Snakemake's retry resumed it at the step it had saved.

The fake H100s are /dev/null: the tiny config trains on CPU (``accelerator: cpu``), with as
many DDP processes as the profile starts tasks.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from whatsreal.train.layout import gpus_per_node

from ..conftest import REPO, TINY, TINY_MODEL
from .cluster import LocalSlurmCluster
from .profile import derive_test_profile, gpu_rules, rule_resources

pytestmark = pytest.mark.slurm

RUN = "main"
MAX_STEPS = 6
CHECKPOINT_EVERY = 1
TIMEOUT_S = 900


def _tiny_config(train_resources: dict) -> dict:
    """The tiny test sky and model, one run, trained on CPU by as many DDP ranks per node,
    on as many nodes, as the profile starts tasks for `train`."""
    return {
        **TINY,
        "model": TINY_MODEL,
        "runs": {RUN: {}},
        "train": {
            "max_steps": MAX_STEPS,
            "batch_size": 2,
            "val_every_steps": 1000,  # none: validation is not what is tested here, and costs a minute
            "checkpoint_every_steps": CHECKPOINT_EVERY,
            "log_every_steps": 1,
            "num_workers": 0,
            "progress_bar": False,
            "accelerator": "cpu",
            "devices": int(train_resources["tasks_per_node"]),
            "num_nodes": int(train_resources.get("nodes", 1)),
        },
        "experiments": {"umap": {"n_pairs": 64, "n_neighbors": 5}},
    }


def _snakemake(workdir: Path, env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    # cwd=workdir: the plugin writes its job logs under the current directory's .snakemake/.
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _planned_jobs(workdir: Path, env: dict[str, str], *args: str) -> list[dict[str, object]]:
    """The jobs a dry run plans, each with its rule, wildcard values, threads and the
    resources Snakemake resolved for it (the rule's own, then the profile's defaults and
    per-rule settings): what its SLURM job must get."""
    # A dry run caps each job's threads at --cores (1 by default); jobs for SLURM are not capped.
    res = _snakemake(workdir, env, "-n", "--cores", "1024", *args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=rule \w+:\n)", res.stdout + res.stderr):
        head = re.match(r"rule (\w+):\n", block)
        if not head:
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, flags=re.M))
        wildcards = re.findall(r"\w+=([^,]+)", fields.get("wildcards", ""))
        resources = dict(re.findall(r"(\w+)=(.*?)(?=, \w+=|$)", fields["resources"]))
        jobs.append(
            {
                "rule": head.group(1),
                "wildcards": "_".join(wildcards),
                "threads": int(fields.get("threads", 1)),
                "resources": resources,
            }
        )
    return jobs


def _rule_of(job: dict[str, str]) -> str:
    """The rule from the comment the plugin gives each job: rule_<name>[_wildcards_<values>]."""
    return job.get("Comment", "").removeprefix("rule_").split("_wildcards_")[0]


def _key_of(job: dict[str, str]) -> tuple[str, str]:
    """(rule, wildcard values joined by '_'), from the plugin's comment."""
    rule, _, wildcards = job.get("Comment", "").removeprefix("rule_").partition("_wildcards_")
    return rule, wildcards


def _megabytes(value: str) -> int:
    number, unit = re.fullmatch(r"([\d.]+)([KMGT])", value).groups()
    return round(float(number) * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[unit])


def _minutes(limit: str) -> int:
    days, _, clock = limit.rpartition("-")
    h, m, s = (int(x) for x in clock.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (s > 0)


def _srun_exit_codes(log: str) -> dict[int, int]:
    """Task -> exit code, from srun's "srun: error: <node>: tasks 0,2-3: Exited with exit code N"."""
    codes = {}
    for ranges, code in re.findall(r"srun: error: \S+: tasks? ([\d,-]+): Exited with exit code (\d+)", log):
        for part in ranges.split(","):
            first, _, last = part.partition("-")
            codes.update(dict.fromkeys(range(int(first), int(last or first) + 1), int(code)))
    return codes


class _TimeLimitWarning(threading.Thread):
    """Sends SIGUSR1 to the running training job's steps once it has written a checkpoint:
    what SLURM sends 90 s before the time limit under the profile's --signal=SIGUSR1@90."""

    def __init__(self, cluster: LocalSlurmCluster, last_ckpt: Path, timeout_s: float) -> None:
        super().__init__(daemon=True)
        self.cluster, self.last_ckpt, self.timeout_s = cluster, last_ckpt, timeout_s
        self.signalled_job: str | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            deadline = time.monotonic() + self.timeout_s
            while not self.done.is_set() and time.monotonic() < deadline:
                if self.last_ckpt.exists():
                    running = [j for j in self.cluster.jobs() if _rule_of(j) == "train" and j["JobState"] == "RUNNING"]
                    if running:
                        # No --batch/--full: like --signal without B:, only the job's steps
                        # (the srun-started training ranks) get it, not the batch shell.
                        self.cluster.run("scancel", "--signal=USR1", running[0]["JobId"])
                        self.signalled_job = running[0]["JobId"]
                        return
                time.sleep(0.2)
        except BaseException as err:  # reported by the test, not lost in the thread
            self.error = err


def _check_job(job: dict[str, str], planned: dict) -> None:
    """One SLURM job against what Snakemake asked for it under the profile."""
    want, where = planned["resources"], f"rule {planned['rule']} {planned['wildcards']}, SLURM job {job['JobId']}"
    assert job["Partition"] == want["slurm_partition"], where
    assert _megabytes(job["MinMemoryNode"]) == int(want["mem_mb"]), where
    assert _minutes(job["TimeLimit"]) == int(want["runtime"]), where
    assert int(job["CPUs/Task"]) == int(want.get("cpus_per_task", planned["threads"])), where
    if "gpu" in want:  # per job
        assert job.get("TresPerJob") == f"gres:gpu:{want['gpu_model']}:{want['gpu']}", where
    else:
        assert job.get("TresPerJob", "(null)") == "(null)", where
    if "gres" in want:  # per node
        assert job.get("TresPerNode") == f"gres:{want['gres']}", where
    if "tasks_per_node" in want:
        nodes = int(want.get("nodes", 1))
        assert int(job["NumNodes"]) == nodes, where
        assert job["NtasksPerN:B:S:C"].split(":")[0] == want["tasks_per_node"], where
        assert int(job["NumTasks"]) == nodes * int(want["tasks_per_node"]), where


def test_workflow_runs_as_slurm_jobs_with_the_profiles_resources_and_training_resumes(
    slurm_cluster: LocalSlurmCluster, tmp_path: Path
) -> None:
    profile_dir = tmp_path / "profile"
    profile = derive_test_profile(profile_dir)
    train_res = rule_resources(profile, "train")
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = workdir / "tiny.yaml"
    config.write_text(yaml.safe_dump(_tiny_config(train_res)))
    results = workdir / "results" / TINY["dataset"]["name"]
    run_dir = results / "runs" / RUN
    targets = [
        run_dir / "embeddings.parquet",
        results / "baselines" / "random_init_embeddings.parquet",
        run_dir / "figures" / "fig2_umap.png",
    ]
    args = ["--profile", str(profile_dir), *(str(t.relative_to(workdir)) for t in targets), "--configfile", str(config)]
    env = slurm_cluster.env
    # The data stages up to the split and the neighbour graphs, locally (module docstring).
    local = [*args[2:], "--cores", "2", "--until", "split", "neighbours"]
    res = _snakemake(workdir, env, *local, timeout=TIMEOUT_S)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    planned = _planned_jobs(workdir, env, *args)
    rules = Counter(job["rule"] for job in planned)
    assert rules["train"] == 1 and rules["embed"] == 1 and rules["random_init_embeddings"] == 1, rules
    assert rules["preprocess"] == 2 and not {"simulate", "split", "neighbours"} & set(rules), rules

    warning = _TimeLimitWarning(slurm_cluster, run_dir / "checkpoints" / "last.ckpt", TIMEOUT_S)
    warning.start()
    started = time.monotonic()
    res = _snakemake(workdir, env, *args, "--verbose", timeout=TIMEOUT_S)  # --verbose: the plugin logs each sbatch call
    elapsed = time.monotonic() - started
    warning.done.set()
    warning.join(timeout=10)
    # The workflow's jobs (the plugin comments each with its rule): not other tests' srun jobs.
    jobs = sorted(
        (j for j in slurm_cluster.jobs() if j.get("Comment", "").startswith("rule_")), key=lambda j: int(j["JobId"])
    )
    print(f"\nworkflow through SLURM: {elapsed:.0f} s for {len(planned)} planned jobs; SLURM jobs:")
    for j in jobs:
        print(f"  {j['JobId']:>3} {j.get('Comment', ''):45} {j['JobState']:10} {j['StartTime']} .. {j['EndTime']}")
    assert res.returncode == 0, res.stderr[-6000:] + "\n" + slurm_cluster.log_tails()
    assert warning.error is None, warning.error
    assert warning.signalled_job is not None, "training finished before it could be signalled"

    # -- every planned job ran as one SLURM job with what was asked; training once more ----
    by_key: dict[tuple[str, str], list[dict[str, str]]] = {}
    for job in jobs:
        by_key.setdefault(_key_of(job), []).append(job)
    assert sorted(by_key) == sorted((p["rule"], p["wildcards"]) for p in planned), "SLURM jobs vs planned jobs"
    for p in planned:
        ran = by_key[(p["rule"], p["wildcards"])]
        states = sorted(j["JobState"] for j in ran)
        assert states == (["COMPLETED", "FAILED"] if p["rule"] == "train" else ["COMPLETED"]), (p["rule"], states)
        for job in ran:
            _check_job(job, p)
    # ... which are the profile's own settings, for the GPU rules in particular.
    for rule in gpu_rules(profile) & set(rules):
        want = rule_resources(profile, rule)
        for job in (j for j in jobs if _rule_of(j) == rule):
            assert job["Partition"] == want["slurm_partition"], rule
            if "gres" in want:  # train: GPUs per node, on every node
                assert job["TresPerNode"] == f"gres:{want['gres']}", rule
            else:
                assert job["TresPerJob"] == f"gres:gpu:{want['gpu_model']}:{want['gpu']}", rule
    for job in (j for j in jobs if _rule_of(j) not in gpu_rules(profile)):
        assert job["Partition"] == profile["default-resources"]["slurm_partition"], job["Comment"]

    # -- training: DDP over the srun tasks, interrupted, resumed at the saved step ---------
    train_jobs = by_key[("train", RUN)]
    failed = next(j for j in train_jobs if j["JobState"] == "FAILED")
    final = next(j for j in train_jobs if j["JobState"] == "COMPLETED")
    assert failed["JobId"] == warning.signalled_job
    slurm_logs = workdir / ".snakemake" / "slurm_logs" / "rule_train" / RUN
    first_log = (slurm_logs / f"{failed['JobId']}.log").read_text()
    final_log = (slurm_logs / f"{final['JobId']}.log").read_text()
    # The job's own exit code is Snakemake's; srun reports the training step's: 75, the
    # status of a run stopped by a signal after saving (EXIT_INTERRUPTED), not a crash.
    world = int(train_res.get("nodes", 1)) * int(train_res["tasks_per_node"])
    assert _srun_exit_codes(first_log) == dict.fromkeys(range(world), 75), first_log[-3000:]
    stop = re.search(r"training interrupted by SIGUSR1 at step (\d+); saved (\S+)\.", first_log)
    assert stop, first_log[-3000:]
    step = int(stop.group(1))
    assert CHECKPOINT_EVERY <= step < MAX_STEPS
    assert f"resuming from {stop.group(2)} at step {step}" in final_log, final_log[-3000:]
    for log in (first_log, final_log):
        for rank in range(world):
            assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/{world}" in log, f"rank {rank} of {world} missing"
    assert torch.load(run_dir / "model.ckpt", weights_only=True)["global_step"] == MAX_STEPS
    lr = pd.read_csv(run_dir / "metrics.csv").dropna(subset=["lr"])
    assert sorted(lr["step"]) == list(range(MAX_STEPS)), "every step once: before the signal, then after"

    # -- and the targets are there ----------------------------------------------------------
    embeddings = pd.read_parquet(run_dir / "embeddings.parquet")
    assert len(embeddings) == 2 * len(pd.read_parquet(results / "pairs.parquet"))
    assert len(pd.read_parquet(results / "baselines" / "random_init_embeddings.parquet")) > 0
    assert (run_dir / "figures" / "fig2_umap.png").read_bytes()[:4] == b"\x89PNG"

    # -- the sbatch line of a 1-node and of a 2-node training job ----------------------------
    one_node = _sbatch_calls(res.stderr, "train")
    assert len(one_node) == 2, "the first training job and its retry"
    for call in one_node:
        _check_train_sbatch(call, train_res, nodes=1)
    # Two nodes: same per-node request, nodes: 2 (profile) and train.num_nodes: 2 (config).
    # The one-node test cluster cannot run it: SLURM accepts the plugin's sbatch line and
    # keeps the job pending (PartitionConfig), and its record shows how it read the request.
    two_nodes = tmp_path / "profile_2_nodes"
    profile2 = derive_test_profile(two_nodes)
    profile2["set-resources"]["train"]["nodes"] = 2
    (two_nodes / "config.yaml").write_text(yaml.safe_dump(profile2, sort_keys=False))
    config2 = workdir / "tiny_2_nodes.yaml"
    config2.write_text(yaml.safe_dump(_tiny_config({**train_res, "nodes": 2})))
    model = str((run_dir / "model.ckpt").relative_to(workdir))
    args2 = ["--profile", str(two_nodes), "--configfile", str(config2), "--forcerun", "train", "--retries", "0"]
    err = tmp_path / "two_nodes.err"
    cmd2 = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args2, "--verbose", model]
    with open(err, "w") as stream:
        proc = subprocess.Popen(cmd2, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=stream)
    pending: list[dict[str, str]] = []
    try:
        deadline = time.monotonic() + 180
        while not pending and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
            pending = [j for j in slurm_cluster.jobs() if _rule_of(j) == "train" and j["JobState"] == "PENDING"]
    finally:
        for job in pending:  # Snakemake then sees its job fail, and stops (no retries)
            slurm_cluster.run("scancel", job["JobId"])
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert len(pending) == 1, err.read_text()[-4000:]
    job = pending[0]
    assert job["NumNodes"].split("-")[0] == "2" and job["NumTasks"] == str(2 * int(train_res["tasks_per_node"])), job
    assert job["NtasksPerN:B:S:C"].split(":")[0] == str(train_res["tasks_per_node"]), job
    assert job["TresPerNode"] == f"gres:{train_res['gres']}" and job.get("TresPerJob", "(null)") == "(null)", job
    assert job["Reason"] == "PartitionConfig", job  # the one node of the test cluster is not two
    two_node = _sbatch_calls(err.read_text(), "train")
    assert len(two_node) == 1, err.read_text()[-4000:]
    _check_train_sbatch(two_node[0], train_res, nodes=2)


def _sbatch_calls(log: str, rule: str) -> list[str]:
    """The sbatch command lines the plugin logged (``--verbose``) for ``rule``'s jobs."""
    return [c for c in re.findall(r"sbatch call: (sbatch .*)", log) if f"rule_{rule}" in c]


def _check_train_sbatch(call: str, train_res: dict, nodes: int) -> None:
    """GPUs per node (--gres), one task per GPU on each node, on ``nodes`` nodes; no per-job
    GPU count (--gpus), which multi-node training would have to share."""
    flags = call.split()
    per_node = gpus_per_node(train_res)
    assert f"--nodes={nodes}" in flags, call
    assert f"--gres={train_res['gres']}" in flags and per_node == int(train_res["tasks_per_node"]), call
    assert f"--ntasks-per-node={per_node}" in flags, call
    assert not [f for f in flags if f.startswith(("--gpus", "--ntasks="))], call
