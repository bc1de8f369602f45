"""The local SLURM cluster fixture: started once per session, only when asked for.

The tests here install Debian packages and start daemons as root, so they run only with
``WHATSREAL_SLURM_TESTS=1`` (``make test-slurm``, which CI runs after ``make test``);
otherwise they are skipped with that hint.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from whatsreal.train.layout import gpus_per_node

from .cluster import LocalSlurmCluster, NodeSpec, SlurmUnavailable
from .profile import load_profile, partitions, rule_resources

OPT_IN = "WHATSREAL_SLURM_TESTS"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(OPT_IN) == "1":
        return
    skip = pytest.mark.skip(reason=f"needs a local SLURM cluster (root, apt): set {OPT_IN}=1 or run `make test-slurm`")
    for item in items:
        if "slurm" in item.keywords:
            item.add_marker(skip)


def _node_for(profile: dict) -> NodeSpec:
    """A node that can run every job of the profile: the profile's GPU model, and at least
    the GPUs, CPUs and memory of its largest request."""
    rules = ["*", *profile.get("set-resources", {})]
    res = [rule_resources(profile, r) for r in rules]
    cpus = max((r.get("tasks_per_node", 1) * r.get("cpus_per_task", 1) for r in res), default=1)
    cpus = max([cpus, *profile.get("set-threads", {}).values()])
    gpus = max((gpus_per_node(r) or 0 for r in res), default=0)
    models = {r["gpu_model"] for r in res if r.get("gpu_model")}
    models |= {str(r["gres"]).split(":")[1] for r in res if str(r.get("gres", "")).count(":") == 2}
    if len(models) > 1:
        raise ValueError(f"the profile names several GPU models {sorted(models)}; the test node has one")
    mem = max(int(r.get("mem_mb", 0)) for r in res)
    model = models.pop() if models else "h100"
    return NodeSpec(cpus=max(cpus, 8), memory_mb=max(mem, 16_000), gpus=max(gpus, 1), gpu_model=model)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurmCluster]:
    """A running one-node cluster whose partitions and node fit profiles/slurm."""
    profile = load_profile()
    cluster = LocalSlurmCluster(tmp_path_factory.mktemp("slurm"), partitions(profile), _node_for(profile))
    try:
        cluster.start()
    except SlurmUnavailable as err:
        pytest.fail(f"could not start the local SLURM cluster: {err}")
    try:
        yield cluster
    finally:
        cluster.stop()
