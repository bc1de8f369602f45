"""Does a SLURM profile's resource request for rule ``train`` fit the training config?

Lightning's DDP on SLURM needs one ``srun`` task per device on every node:
``tasks_per_node`` = GPUs per node = ``train.devices`` and ``nodes`` = ``train.num_nodes``.
The profile (profiles/slurm/config.yaml) and the config are edited separately, so they can
disagree; a disagreement found only inside the job costs a wait in the GPU queue and gives
Lightning's own, vaguer error (or, with too few GPUs per node, silently shares GPUs between
ranks). :func:`check_train_layout` runs when the workflow starts (workflow/rules/common.smk)
and names the key to change.

GPUs must be asked for *per node*: the plugin (snakemake-executor-plugin-slurm 2.x) turns
``gres: gpu:<model>:<n>`` into ``sbatch --gres=gpu:<model>:<n>``, which is per node, but
``gpu: <n>`` (with ``gpu_model``) into ``--gpus=<model>:<n>``, which is for the whole job: on
2 nodes ``gpu: 4`` gives 4 GPUs to 8 ranks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["LAYOUT_RESOURCES", "LayoutError", "check_train_layout", "gpus_per_node"]

PROFILE = "profiles/slurm/config.yaml"
_LAYOUT_KEYS = ("gres", "gpu", "nodes", "tasks_per_node", "mpi")
LAYOUT_RESOURCES = (*_LAYOUT_KEYS, "cpus_per_task")
"""The resources of rule ``train`` that :func:`check_train_layout` reads."""


class LayoutError(ValueError):
    """The profile's request for rule ``train`` and the training config disagree; the message
    names the keys and the fix."""


def gpus_per_node(resources: Mapping[str, Any]) -> int | None:
    """GPUs per node that ``resources`` (one rule's, as the profile sets them) ask for; None
    for none. A ``gpu`` count is per job, so it is per node only on one node."""
    gres = str(resources.get("gres") or "")
    for part in filter(None, (p.strip() for p in gres.split(","))):
        fields = part.split(":")
        if fields[0] == "gpu":
            count = fields[-1] if len(fields) > 1 else "1"
            if not count.isdigit():
                raise LayoutError(
                    f"set-resources: train: gres is {gres!r}; write the GPUs per node as gpu:<model>:<n> or "
                    f"gpu:<n> ({PROFILE})"
                )
            return int(count)
    gpu = resources.get("gpu")
    if gpu in (None, "", 0):
        return None
    nodes = int(resources.get("nodes") or 1)
    if nodes > 1:
        raise LayoutError(
            f"set-resources: train asks for gpu: {gpu} on {nodes} nodes, which the SLURM plugin requests as "
            f"--gpus={gpu} for the whole job, not per node. Ask per node instead: replace gpu/gpu_model with "
            f"gres: gpu:<model>:<GPUs per node> ({PROFILE})"
        )
    return int(gpu)


def _srun_counts(mpi: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"--(ntasks-per-node|cpus-per-task)[= ](\d+)", mpi)}


def check_train_layout(resources: Mapping[str, Any], train_configs: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise :class:`LayoutError` unless the profile's resources for rule ``train`` start one
    task per device on ``train.num_nodes`` nodes for every run.

    ``resources``: rule ``train``'s resources from the profile (empty without one: nothing to
    check, the local run starts its device processes itself). ``train_configs``: run name ->
    that run's ``train`` section (its overlay applied).
    """
    if not any(key in resources for key in _LAYOUT_KEYS):
        return
    nodes = int(resources.get("nodes") or 1)
    per_node = gpus_per_node(resources)
    tasks = resources.get("tasks_per_node")
    tasks = int(tasks) if tasks not in (None, "") else None
    mpi = str(resources.get("mpi") or "")
    if per_node is not None and tasks is not None and tasks != per_node:
        raise LayoutError(
            f"set-resources: train asks for {per_node} GPU(s) per node but tasks_per_node: {tasks}; Lightning "
            f"needs one task per GPU: make tasks_per_node (and --ntasks-per-node in `mpi`) {per_node} ({PROFILE})"
        )
    if mpi:
        srun = _srun_counts(mpi)
        for flag, key in (("ntasks-per-node", "tasks_per_node"), ("cpus-per-task", "cpus_per_task")):
            want = resources.get(key)
            if flag in srun and want not in (None, "") and srun[flag] != int(want):
                raise LayoutError(
                    f"set-resources: train: mpi runs srun --{flag}={srun[flag]} but {key} is {want}: the job step "
                    f"cannot inherit them, so the srun line repeats {key}; make them equal ({PROFILE})"
                )
    per_node_tasks = tasks if tasks is not None else per_node
    for run, tcfg in train_configs.items():
        of_run = "" if len(train_configs) == 1 else f" (run {run!r})"
        if tcfg["num_nodes"] != nodes:
            raise LayoutError(
                f"train.num_nodes{of_run} is {tcfg['num_nodes']} but the SLURM profile's "
                f"set-resources: train: nodes is {nodes}; make them equal (train.num_nodes in your config, "
                f"or nodes in {PROFILE})"
            )
        devices = tcfg["devices"]
        if isinstance(devices, int) and per_node_tasks is not None and devices != per_node_tasks:
            what = f"{per_node} GPU(s) per node" if per_node is not None else f"tasks_per_node: {tasks}"
            raise LayoutError(
                f"train.devices{of_run} is {devices} but the SLURM profile's set-resources: train asks for {what}; "
                f"Lightning needs train.devices = GPUs per node = tasks_per_node. Set train.devices: "
                f"{per_node_tasks} in your config, or make gres gpu:<model>:{devices}, tasks_per_node and the srun "
                f"line's --ntasks-per-node {devices} in {PROFILE}"
            )
