"""Shared fixtures: the repository paths and one small simulated sky per test session."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import os
import runpy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from whatsreal.config import SCHEMA_PATH, validate_config
from whatsreal.sim.sky import SkyReport, simulate_sky

REPO = Path(__file__).resolve().parents[1]
SCHEMA = SCHEMA_PATH  # the schema the package ships and the workflow validates with

TINY = {
    "dataset": {"name": "tiny"},
    "simulation": {
        "seed": 7,
        "footprint": {"width_arcmin": 24.0, "height_arcmin": 24.0},
        "cutout_size": 48,
        "chunk_size": 32,
        # Enough rare objects and artefacts in a small sky to exercise every code path.
        "class_fractions": {"merger": 0.03, "lens": 0.03},
        "pathologies": {"saturated_star": 0.03, "stripe": 0.03, "high_noise": 0.03},
    },
}


def tiny_config(**overrides: dict) -> dict:
    """The tiny test sky's config, validated, with nested ``overrides`` merged in."""
    cfg = copy.deepcopy(TINY)
    for section, values in overrides.items():
        # Copied: merging would otherwise alias shared dicts such as TINY_MODEL, and a test
        # that edits its config (or validation filling defaults) would change them for all.
        merge_into(cfg.setdefault(section, {}), copy.deepcopy(values))
    return validate_config(cfg, SCHEMA)


def merge_into(dst: dict, src: dict) -> None:
    """Merge ``src`` into ``dst`` in place, recursively for nested mappings (test configs)."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge_into(dst[k], v)
        else:
            dst[k] = v


def shared_root(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The temporary directory every pytest-xdist worker of this session sees (popen-gw<N>/'s
    parent), or the session's own without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def build_once(root: Path, name: str, build: Callable[[], dict]) -> dict:
    """``build()``'s JSON record, built once per test session whatever the number of workers:
    the first worker to ask builds it under a file lock, the others wait for it and read it.
    Nothing is recorded when ``build`` raises, so each asker sees the failure."""
    from filelock import FileLock

    record = root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if not record.exists():
            record.write_text(json.dumps(build()))
    return json.loads(record.read_text())


@pytest.fixture(scope="session")
def tiny_sky(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> tuple[dict, Path, SkyReport]:
    """A small sky simulated once per test session, shared by the workers: (config, raw
    directory, the simulation's report). Tests must not change its files.

    Rendered with a process per core: the other workers wait for it rather than each
    simulating its own (the same sky whatever the worker count: tests/test_simulate.py)."""
    cfg = tiny_config()
    root = shared_root(tmp_path_factory, worker_id)
    raw = root / "tiny_sky" / "raw"
    cores = len(os.sched_getaffinity(0))
    report = build_once(
        root, "tiny_sky", lambda: dataclasses.asdict(simulate_sky(cfg, raw, raw / "truth.parquet", threads=cores))
    )
    return cfg, raw, SkyReport(**report)


@pytest.fixture(scope="session")
def tiny_data(tiny_sky, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """The data stages run on the tiny sky: (config, directory with catalogs, pairs, images...)."""
    from whatsreal.data import stages

    cfg, raw, _ = tiny_sky
    out = tmp_path_factory.mktemp("tiny_data")
    for s in ("hsc", "legacysurvey"):
        stages.run_catalog(raw / s, s, cfg["preprocess"], out / f"catalog_{s}.parquet")
    stages.run_crossmatch(
        {s: out / f"catalog_{s}.parquet" for s in ("hsc", "legacysurvey")},
        cfg["crossmatch"]["radius_arcsec"],
        out / "pairs.parquet",
    )
    stages.run_split(out / "pairs.parquet", cfg["split"], out / "split.parquet")
    for s in ("hsc", "legacysurvey"):
        stages.run_preprocess(
            s,
            out / f"catalog_{s}.parquet",
            out / "pairs.parquet",
            out / "split.parquet",
            cfg["preprocess"],
            out / f"images_{s}.npy",
            out / f"meta_{s}.parquet",
            truth_path=raw / "truth.parquet",
        )
        stages.run_neighbours(
            s,
            out / "pairs.parquet",
            out / f"catalog_{s}.parquet",
            cfg["neighbours"],
            "spatial",
            out / f"neighbours_{s}_spatial.npz",
        )
        stages.run_neighbours(
            s,
            out / "pairs.parquet",
            out / f"catalog_{s}.parquet",
            cfg["neighbours"],
            "random",
            out / f"neighbours_{s}_random.npz",
            spatial_path=out / f"neighbours_{s}_spatial.npz",
        )
    return cfg, out


TINY_MODEL = {
    # timm's own test ResNet (0.37 M parameters against resnet10t's 4.9 M): the same timm
    # features/BatchNorm code path, checkpoints of a few MB and training steps several times faster.
    "encoder": {"name": "test_resnet", "tokens": 4, "token_dim": 16},
    "unet": {
        "block_out_channels": [16, 32],
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": 8,
        "norm_num_groups": 8,
    },
}
"""A model small enough to train in seconds on a CPU, with every code path of the real one."""


def tiny_model_config(**train: object) -> dict:
    """The tiny sky's config with the tiny model and a short CPU training schedule."""
    t = {
        "max_steps": 8,
        "batch_size": 8,
        "val_every_steps": 4,
        "checkpoint_every_steps": 4,
        "num_workers": 0,
        "accelerator": "cpu",
        "progress_bar": False,
        "log_every_steps": 1,
        **train,
    }
    return tiny_config(model=TINY_MODEL, train=t)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from two threads, and on a shared 2-core machine two-thread
    OpenMP regions stall whenever the other core is busy; restored afterwards. Modules opt
    in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def save_untrained_checkpoint(cfg: dict, directory: Path) -> str:
    """A tiny untrained model saved the way Lightning saves one (loadable with weights_only)."""
    from whatsreal.train.module import FlowMatchingModule

    torch.manual_seed(0)
    module = FlowMatchingModule(cfg)
    path = directory / "model.ckpt"
    torch.save({"hyper_parameters": {"config": module.config}, "state_dict": module.state_dict()}, path)
    return str(path)


def run_script(path: Path, *args: str) -> subprocess.CompletedProcess:
    """``python path args...`` run in this process, as ``subprocess.run(..., capture_output=True,
    text=True)`` would report it: the return code (SystemExit's, 0 when the script ends), and
    what it printed to stdout and stderr.

    Why in-process: a benchmark script's own interpreter would import torch, diffusers and the
    package again, 8-11 s of CPU each time on the 2-core machines, for nine calls in the suite.
    The script still runs as ``__main__`` with its own ``sys.argv``; torch's thread count,
    which the scripts may set, is restored afterwards. Any other exception propagates."""
    out, err = io.StringIO(), io.StringIO()
    argv, threads = sys.argv, torch.get_num_threads()
    sys.argv = [str(path), *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(path), run_name="__main__")
    except SystemExit as stop:
        if isinstance(stop.code, str):  # SystemExit("message"): printed to stderr, status 1
            err.write(stop.code + "\n")
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    finally:
        sys.argv = argv
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess([sys.executable, str(path), *args], code, out.getvalue(), err.getvalue())


SNAKEMAKE = [sys.executable, "-m", "snakemake"]

TINY_WORKFLOW = {
    # The ablated run also changes a model key, so every job that checks a checkpoint against
    # its run's config (the conditioning gain) is exercised on a run overlay, not the top level.
    "runs": {
        "main": {},
        "random_neighbours": {"neighbours": {"mode": "random"}, "model": {"unet": {"attention_head_dim": 4}}},
    },
    "train": {
        "max_steps": 4,
        "batch_size": 8,
        "val_every_steps": 2,
        "checkpoint_every_steps": 2,
        "log_every_steps": 1,
        "num_workers": 0,
        "progress_bar": False,
    },
    "sample": {"method": "euler", "steps": 2},
    "experiments": {  # every experiment, at toy size: this tests the wiring, not the science
        "umap": {"n_pairs": 64},
        "outliers": {"epochs": 2, "batch_size": 64},
        "probes": {"epochs": 2, "hidden": [16]},
        "baselines": {"epochs": 1},
        "posterior": {"n_galaxies": 3, "n_samples": 4, "batch_size": 3},
        "counterfactuals": {"n_show": 2},
        "noise_model": {"n_artifacts": 1, "n_galaxies": 2, "max_sets": 100, "n_reference": 50, "n_bootstrap": 100},
        "conditioning_gain": {"draws": 1},
        "bootstrap": {"n_resamples": 100},
    },
}
"""The workflow config of the finished tiny run (over TINY and TINY_MODEL)."""


def run_snakemake(workdir: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    """The repository's workflow, run in ``workdir`` as a user would (``snakemake ...``)."""
    return subprocess.run(
        [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def finished_tiny_run(
    tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """``snakemake all`` run once on the tiny sky with the tiny model: (workdir, config file,
    the completed process). Tests that change files in it must work on a copy.

    Once per test session, not per xdist worker: the tests that use it are grouped on one
    worker (:func:`pytest_collection_modifyitems`), and should a worker without the group ask
    for it anyway, a file lock in the workers' common temporary directory makes it wait for
    the first run and reuse it instead of running the workflow (minutes) again."""
    root = shared_root(tmp_path_factory, worker_id)
    workdir = root / "finished_tiny_run"
    cfg = workdir / "tiny.yaml"

    def run() -> dict:
        workdir.mkdir(exist_ok=True)
        cfg.write_text(yaml.safe_dump({**TINY, "model": TINY_MODEL, **TINY_WORKFLOW}))
        res = run_snakemake(workdir, "all", "--cores", "2", "--configfile", str(cfg))
        return {"args": res.args, "returncode": res.returncode, "stdout": res.stdout, "stderr": res.stderr}

    res = subprocess.CompletedProcess(**build_once(root, "finished_tiny_run", run))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return workdir, cfg, res


SHARED_FIXTURES = ("finished_tiny_run", "four_survey_sky")
"""Fixtures that take a minute or more to build: the finished tiny workflow (session) and
tests/test_survey_registry.py's four-survey sky (module)."""


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs ``-n auto --dist loadgroup``), every test that
    needs one of the :data:`SHARED_FIXTURES` goes to one worker, so it is built once (a
    module-scoped fixture is otherwise built again on every worker that runs one of its
    tests); the other tests are shared out as they come."""
    for item in items:
        used = getattr(item, "fixturenames", ())
        group = next((name for name in SHARED_FIXTURES if name in used), None)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_configure(config: pytest.Config) -> None:
    """Give each pytest-xdist worker its share of the cores, for itself and the processes it starts.

    Torch's OpenMP threads spin while they wait for each other. With two workers on two
    cores, each running torch with a thread per core, every parallel region waited on a
    descheduled thread: two ``bench_gpu.py --quick`` runs side by side took 230 s with two
    threads each, 41 s with one each (54 s with two passive threads). So a worker runs torch
    with ``cores // workers`` threads and exports that as ``OMP_NUM_THREADS`` to its
    subprocesses, unless the caller set it; and the subprocesses' threads wait passively,
    since Snakemake gives a two-thread rule two threads whatever the other worker does.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    share = max(1, len(os.sched_getaffinity(0)) // workers)
    os.environ.setdefault("OMP_NUM_THREADS", str(share))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
