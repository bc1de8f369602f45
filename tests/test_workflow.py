"""The Snakemake workflow as a user runs it: the DAG resolves, bad configs stop it, the demo runs."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections import Counter

import pandas as pd
import pytest
import yaml

from whatsreal.data.usable import usable_pairs
from whatsreal.rule_times import read_rule_times

from .conftest import REPO, SNAKEMAKE
from .conftest import run_snakemake as _snakemake

VENV = ".venv"
"""The Makefile's VENV, named on the make command line so that a VENV in the environment changes nothing."""


def dry_run_jobs(output: str) -> Counter[str]:
    """How many jobs of each rule a dry run plans, from its ``rule NAME:`` / ``localrule NAME:``
    job headers: exact rule names, where a substring test would also match paths
    (``results/.../catalog_hsc.parquet`` contains "catalog") and the summary's rule lists."""
    jobs = Counter(re.findall(r"^(?:local)?rule (\w+):$", output, flags=re.M))
    assert jobs, "no job headers in the dry run's output:\n" + output[-3000:]
    return jobs


@pytest.mark.slow  # runs Snakemake in a subprocess
def test_dry_run_of_all_resolves_the_default_dag(tmp_path):
    res = _snakemake(tmp_path, "-n", "--cores", "2", "all")
    assert res.returncode == 0, res.stderr
    jobs = dry_run_jobs(res.stdout + res.stderr)
    assert {"simulate", "sky_figure", "crossmatch", "groups", "split", "train", "embed", "all"} <= set(jobs), jobs
    assert jobs["catalog"] == jobs["preprocess"] == 2, jobs  # one per survey
    assert jobs["neighbours"] >= 2, jobs


@pytest.mark.slow  # runs Snakemake in a subprocess
def test_dry_run_of_the_demo_s_method_runs_resolves(tmp_path):
    """The demo lists a run of every method (whatsreal.methods) beside the paper's two: all trained and
    embedded; no export or sampling experiments for those without a flow-matching decoder; the
    experiments that read ``inst_*`` for the contrastive dual encoder only."""
    res = _snakemake(tmp_path, "all", "-n", "--cores", "1", "--configfile", str(REPO / "config" / "config.yaml"))
    assert res.returncode == 0, res.stderr
    jobs = dry_run_jobs(res.stdout + res.stderr)
    runs = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["runs"]
    assert sorted(r.get("method", "flow_matching") for r in runs.values()) == [
        "contrastive",
        "cvae",
        "flow_matching",
        "flow_matching",
        "single_latent",
    ]
    assert jobs["train"] == jobs["embed"] == 5, jobs
    assert jobs["export"] == jobs["conditioning_gain"] == 2, jobs  # the flow-matching runs
    assert jobs["probes"] == jobs["umap"] == jobs["retrieval"] == jobs["outliers"] == 3, jobs  # and contrastive
    assert jobs["posterior_samples"] == 2, jobs  # main, both directions
    assert jobs["comparison"] == 1, jobs


@pytest.mark.slow  # runs Snakemake in a subprocess
def test_dry_run_for_real_mmu_data_and_crossmatched_parquet(tmp_path, tiny_sky):
    """`all` on real-data sources: the catalogues come from the user's files, plus the lens catalogue."""
    _, raw, _ = tiny_sky
    mmu = tmp_path / "mmu.yaml"
    mmu.write_text(
        yaml.safe_dump(
            {
                "dataset": {
                    "name": "real",
                    "source": "mmu",
                    "mmu": {"hsc": str(raw / "hsc"), "legacysurvey": str(raw / "legacysurvey")},
                }
            }
        )
    )
    res = _snakemake(tmp_path, "all", "-n", "--cores", "1", "--configfile", str(mmu))
    assert res.returncode == 0, res.stderr
    jobs = dry_run_jobs(res.stdout + res.stderr)
    assert "simulate" not in jobs and {"catalog", "lens_catalog", "neighbours"} <= set(jobs), jobs
    shard = tmp_path / "xm"
    shard.mkdir()
    xm = tmp_path / "xm.yaml"
    xm.write_text(
        yaml.safe_dump(
            {"dataset": {"name": "xm", "source": "crossmatched_parquet", "crossmatched_parquet": str(shard)}}
        )
    )
    res = _snakemake(tmp_path, "all", "-n", "--cores", "1", "--configfile", str(xm))
    assert res.returncode == 0, res.stderr
    jobs = dry_run_jobs(res.stdout + res.stderr)
    assert "crossmatched_catalogs" in jobs and "crossmatch" not in jobs, jobs
    assert "groups" in jobs, jobs  # from the pre-matched pairs


@pytest.mark.slow  # runs Snakemake in a subprocess
def test_lint_is_clean():
    res = subprocess.run([*SNAKEMAKE, "--lint", "--cores", "1"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.slow  # runs Snakemake in a subprocess
@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"simulation": {"cutuot_size": 48}}, "simulation.cutuot_size: unknown key"),
        ({"dataset": {"source": "sdss"}}, "dataset.source"),
        ({"dataset": {"source": "mmu"}}, "dataset.mmu.hsc: required"),
    ],
)
def test_bad_config_stops_the_workflow_naming_the_key(tmp_path, config, named):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(config))
    res = _snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(cfg))
    assert res.returncode != 0
    assert named in res.stdout + res.stderr


@pytest.mark.slow
def test_demo_pipeline_runs_end_to_end(finished_tiny_run, tmp_path):
    """The same `all` target as `make run`, on the tiny sky: MMU shards, truth and the figure.
    The reruns at the end work on a copy: the finished run is shared with test_reruns, whose
    dry runs must see it as `snakemake all` left it, whichever file runs first."""
    workdir, cfg, _ = finished_tiny_run
    out = workdir / "results" / "tiny"
    assert list((out / "raw" / "hsc").glob("healpix=*/001-of-001.hdf5"))
    assert list((out / "raw" / "legacysurvey").glob("healpix=*/001-of-001.hdf5"))
    png = out / "raw" / "sky.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000
    for name in (
        "pairs.parquet",
        "split.parquet",
        "images_hsc.npy",
        "images_legacysurvey.npy",
        "meta_hsc.parquet",
        "neighbours_legacysurvey_random.npz",
    ):
        assert (out / name).exists(), name
    for run in ("main", "random_neighbours"):
        emb = pd.read_parquet(out / "runs" / run / "embeddings.parquet")
        assert len(emb) == 2 * len(pd.read_parquet(out / "pairs.parquet"))
        assert (out / "runs" / run / "metrics.csv").exists()
    main = out / "runs" / "main"
    figures = [
        f"fig{n}.png"
        for n in (
            "2_umap",
            "3_outliers",
            "4_probes",
            "5_retrieval",
            "6_counterfactuals",
            "7_noise_model",
            "8_spatial_structure",
            "9_calibration",
            "9_zero_shot",
        )
    ]
    for name in figures:
        assert (main / "figures" / name).read_bytes()[:4] == b"\x89PNG", name
    assert (out / "runs" / "random_neighbours" / "figures" / "ablation_neighbours.png").exists()
    assert not (out / "runs" / "random_neighbours" / "figures" / "fig6_counterfactuals.png").exists()
    # The pair runs' linear probes over every pair, and the ablation read from them.
    probes = pd.read_csv(main / "tables" / "survey_probes.csv")
    assert set(probes["survey"]) == {"hsc", "legacysurvey"} and (probes["n"] == usable_pairs(out).sum()).all()
    drops = pd.read_csv(out / "runs" / "random_neighbours" / "tables" / "survey_ablation.csv")
    assert set(drops["survey"]) == {"hsc", "legacysurvey"} and drops["drop"].notna().all()
    truth = pd.read_csv(main / "tables" / "truth_metrics.csv")
    assert {"probes", "outliers", "counterfactuals"} <= set(truth["experiment"])
    assert list((main / "fits").glob("counterfactuals_*.fits"))
    summary = (out / "summary.md").read_text()
    assert "Table 5 probes" in summary and "counterfactual MSE" in summary
    # Every benchmark TSV the heavy jobs wrote is collected, each job measured.
    times = read_rule_times(out / "rule_times.csv")
    written = sorted(str(p.relative_to(workdir)) for p in (out / "benchmarks").glob("*.tsv"))
    assert sorted(times["benchmark"]) == written
    assert {"simulate", "preprocess", "train", "embed", "posterior_samples", "probes", "noise_model"} <= set(
        times["rule"]
    )
    assert len(times.query("rule == 'train'")) == 2 and len(times.query("rule == 'posterior_samples'")) == 2
    assert times["seconds"].notna().all() and (times["seconds"] > 0).all()
    assert times["seconds"].is_monotonic_decreasing
    assert "## Rule times (Snakemake benchmarks)" in summary and "| train | 2 |" in summary
    # Rerunning one figure reuses the checkpoint and samples: nothing is retrained or re-sampled.
    work = tmp_path / "copy"
    shutil.copytree(workdir, work, symlinks=True)  # copy2: the mtimes Snakemake compares are kept
    out, png, cfg = work / "results" / "tiny", work / png.relative_to(workdir), work / cfg.relative_to(workdir)
    main = out / "runs" / "main"
    fig6 = main / "figures" / "fig6_counterfactuals.png"
    fig6.unlink()
    res = _snakemake(work, str(fig6.relative_to(work)), "--cores", "1", "--configfile", str(cfg))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "rule train" not in res.stdout + res.stderr and "rule posterior_samples" not in res.stdout + res.stderr
    assert fig6.exists()
    # The HTML report of everything built.
    report = out / "report.html"
    res = _snakemake(work, "all", "--cores", "1", "--configfile", str(cfg), "--report", str(report))
    assert res.returncode == 0, res.stderr[-3000:]
    assert report.stat().st_size > 100_000
    log = (out / "logs" / "simulate.log").read_text()
    assert "stamps rendered" in log and "neighbours within 3'" in log
    # Rerunning one figure does not re-simulate.
    png.unlink()
    res = _snakemake(work, str(png.relative_to(work)), "--cores", "1", "--configfile", str(cfg))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "rule simulate" not in res.stdout + res.stderr
    assert png.exists()


def _make_dry_run(target: str, program: str) -> list[list[str]]:
    """The ``program`` commands ``make TARGET`` would run (``make -n``), as argument lists."""
    res = subprocess.run(["make", "-n", f"VENV={VENV}", target], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stdout.splitlines() if line.split(maxsplit=1)[:1] == [f"{VENV}/bin/{program}"]]
    return [shlex.split(line.rstrip("\\")) for line in lines]  # a recipe's continued line ends in a backslash


def test_makefile_exposes_the_readme_commands():
    assert any(cmd[1:3] == ["all", "--cores"] for cmd in _make_dry_run("run", "snakemake"))
    # `make test` runs both tiers, `make test-fast` deselects exactly the slow one.
    pytest_runs = {t: _make_dry_run(t, "pytest") for t in ("test", "test-fast")}
    assert len(pytest_runs["test"]) == 1 and "-m" not in pytest_runs["test"][0], pytest_runs
    fast = pytest_runs["test-fast"]
    assert len(fast) == 1 and fast[0][1:3] == ["-m", "not slow"], pytest_runs
    # Both share out their tests over processes, with the finished tiny run's tests on one (loadgroup).
    assert all("--dist" in run[0] and "loadgroup" in run[0] for run in pytest_runs.values()), pytest_runs
    readme = (REPO / "README.md").read_text()
    assert all(f"make {t}" in readme for t in ("run", "test", "test-fast"))
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.M), "CI runs the whole suite, both tiers"


@pytest.mark.slow  # runs Snakemake in a subprocess
def test_a_failing_step_leaves_its_traceback_in_its_log(tmp_path):
    """A data step that fails on bad input: its log (the file Snakemake points at) holds the
    traceback and the error naming the file, not just stderr."""
    for survey in ("hsc", "legacysurvey"):
        shard = tmp_path / "mmu" / survey / "healpix=1" / "001-of-001.hdf5"
        shard.parent.mkdir(parents=True)
        shard.write_bytes(b"not an HDF5 file")
    cfg = tmp_path / "mmu.yaml"
    mmu = {s: str(tmp_path / "mmu" / s) for s in ("hsc", "legacysurvey")}
    cfg.write_text(yaml.safe_dump({"dataset": {"name": "broken", "source": "mmu", "mmu": mmu}}))
    res = _snakemake(tmp_path, "results/broken/catalog_hsc.parquet", "--cores", "1", "--configfile", str(cfg))
    assert res.returncode != 0
    log = (tmp_path / "results" / "broken" / "logs" / "catalog_hsc.log").read_text()
    assert "Traceback (most recent call last)" in log
    assert "001-of-001.hdf5" in log.split("Traceback", 1)[1]
