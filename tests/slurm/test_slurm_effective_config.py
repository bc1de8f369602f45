"""The paper config through profiles/slurm on the real (local) cluster: the config the
workflow runs with is what `python -m whatsreal.config show` prints for the same files.

The workflow writes its effective config (`results/<name>/effective_config.yaml`, a local
rule, so it runs on the submitting host as a user's would) from the very `config` object
every rule of the DAG reads; comparing it with `show` proves that nothing between the command
line and the rules (the profile, the Snakefile, config/config.yaml) adds or changes a value.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from whatsreal.config import effective_config

from ..conftest import REPO
from .cluster import LocalSlurmCluster
from .profile import derive_test_profile

pytestmark = pytest.mark.slurm


def test_the_paper_run_through_the_profile_uses_what_show_prints(
    slurm_cluster: LocalSlurmCluster, tmp_path: Path
) -> None:
    profile_dir = tmp_path / "profile"
    derive_test_profile(profile_dir)
    dirs = {s: tmp_path / "mmu" / s for s in ("hsc", "legacysurvey")}
    for d in dirs.values():
        d.mkdir(parents=True)
    overlay = tmp_path / "mmu_dirs.yaml"
    overlay.write_text(yaml.safe_dump({"dataset": {"mmu": {s: str(d) for s, d in dirs.items()}}}))
    files = [REPO / "config" / "paper.yaml", overlay]
    target = "results/paper/effective_config.yaml"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--profile", str(profile_dir), target]
    res = subprocess.run(
        [*cmd, "--configfile", *map(str, files)],
        cwd=tmp_path,
        env=slurm_cluster.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    written = yaml.safe_load((tmp_path / target).read_text())
    assert written == effective_config(files)
    # The values the issue found leaking from the demo into the paper run.
    assert written["experiments"]["umap"]["n_pairs"] == 8192
    assert written["experiments"]["probes"]["hidden"] == [512, 256, 128]
    assert written["experiments"]["posterior"]["n_samples"] == 32
