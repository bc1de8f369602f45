"""Reading profiles/slurm/config.yaml as Snakemake does, and the test cluster's variant of it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from ..conftest import REPO

__all__ = ["PROFILE", "derive_test_profile", "gpu_rules", "load_profile", "partitions", "rule_resources"]

PROFILE = REPO / "profiles" / "slurm" / "config.yaml"


def load_profile(path: Path = PROFILE) -> dict[str, Any]:
    """The profile as a mapping (YAML anchors resolved)."""
    return yaml.safe_load(path.read_text())


def _evaluated(value: Any) -> Any:
    """A resource as Snakemake evaluates it: ``"'srun -c 8'"`` is the string ``srun -c 8``."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def rule_resources(profile: dict[str, Any], rule: str) -> dict[str, Any]:
    """What the profile asks for one rule: its default resources overlaid with the rule's own."""
    merged = {**profile.get("default-resources", {}), **profile.get("set-resources", {}).get(rule, {})}
    return {key: _evaluated(value) for key, value in merged.items()}


def gpu_rules(profile: dict[str, Any]) -> set[str]:
    """Rules the profile sends to GPUs."""
    return {rule for rule, res in profile.get("set-resources", {}).items() if res.get("gpu") or res.get("gres")}


def partitions(profile: dict[str, Any]) -> list[str]:
    """Every partition the profile names, the default (CPU) one first."""
    names = [profile["default-resources"]["slurm_partition"]]
    names += [res["slurm_partition"] for res in profile.get("set-resources", {}).values() if "slurm_partition" in res]
    return list(dict.fromkeys(names))


def derive_test_profile(dst: Path, source: Path = PROFILE) -> dict[str, Any]:
    """Write ``dst/config.yaml``: the real profile, changed only where a one-node test
    cluster without an accounting database needs it, and return it.

    - no ``slurm_account``: without slurmdbd there is nothing to validate an account against;
    - ``slurm-status-command: squeue``: ``sacct`` fails without slurmdbd and the plugin would
      then wait forever; the cluster keeps finished jobs visible (long ``MinJobAge``);
    - the first status check after 1 s instead of 40 (tiny jobs), a short latency wait;
    - every SLURM job log kept: the assertions read them;
    - one thread per training rank: Snakemake sets OMP_NUM_THREADS to a job's threads, and
      the test machine has a couple of cores for all four ranks (what SLURM is asked for,
      ``cpus_per_task``, is unchanged).

    Partitions, GPUs, task layout, ``mpi``, CPUs, memory, run times and ``slurm_extra`` stay
    as the profile has them: the test cluster is built to satisfy them.
    """
    profile = copy.deepcopy(load_profile(source))
    profile["default-resources"].pop("slurm_account", None)
    for res in profile.get("set-resources", {}).values():
        res.pop("slurm_account", None)
    profile["slurm-status-command"] = "squeue"
    profile["slurm-init-seconds-before-status-checks"] = 1
    profile["slurm-keep-successful-logs"] = True
    profile["latency-wait"] = 5
    profile.setdefault("set-threads", {})["train"] = 1
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return profile
