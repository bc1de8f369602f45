"""Fig 2 (UMAP): the disentanglement numbers on planted latents, marked pairs, and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from whatsreal.experiments.embeddings import paired_latents
from whatsreal.experiments.umap_projection import counterpart_in_knn, run_umap, survey_knn_accuracy, umap_2d
from whatsreal.plots import latents

from .conftest import tiny_config


def _embeddings(n: int, seed: int = 0) -> pd.DataFrame:
    """Planted disentanglement: physics identical in both surveys (up to 1e-3), instrument = survey offset."""
    rng = np.random.default_rng(seed)
    phys = rng.normal(size=(n, 8)) * 3
    frames = []
    for s, survey in enumerate(("hsc", "legacysurvey")):
        df = pd.DataFrame(
            {
                "object_id": [f"{survey}-{i}" for i in range(n)],
                "pair": np.arange(n),
                "survey": survey,
                "split": np.where(np.arange(n) % 5 == 0, "val", "train"),
            }
        )
        p = phys + rng.normal(scale=1e-3, size=phys.shape)
        inst = rng.normal(size=(n, 4)) + 10.0 * s
        df = pd.concat(
            [
                df,
                pd.DataFrame(p, columns=[f"phys_{j}" for j in range(8)]),
                pd.DataFrame(inst, columns=[f"inst_{j}" for j in range(4)]),
            ],
            axis=1,
        )
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _run(cfg: dict, path, figure):
    experiments_cfg = cfg["experiments"]
    return run_umap(experiments_cfg["umap"], path, figure, k=int(experiments_cfg["retrieval"]["k"]))


def test_metrics_separate_a_shared_space_from_a_survey_space():
    emb = _embeddings(60)
    pairs = np.arange(60)
    phys = paired_latents(emb, "phys_", pairs, "x")
    inst = paired_latents(emb, "inst_", pairs, "x")
    assert counterpart_in_knn(phys, 1) == 1.0  # the counterpart is the nearest other row
    assert survey_knn_accuracy(phys, 1) == 0.0  # ... which is always from the other survey
    assert survey_knn_accuracy(inst, 10) == 1.0
    assert counterpart_in_knn(inst, 10) < 0.5
    shuffled = np.concatenate([phys[:60], phys[60:][np.random.default_rng(1).permutation(60)]])
    assert counterpart_in_knn(shuffled, 1) < 0.2


@pytest.mark.slow  # UMAP's first call compiles with numba (9 s on the shared 2-core machine)
def test_umap_runs_on_tiny_inputs_and_marks_pairs(tmp_path, monkeypatch):
    path = tmp_path / "embeddings.parquet"
    _embeddings(50).to_parquet(path)
    cfg = tiny_config(experiments={"umap": {"n_pairs": 40, "n_neighbors": 8, "n_marked": 4, "seed": 3}})
    seen = {}
    real_plot = latents.plot_umap

    def spy(projection, out):
        seen.update(projection=projection)
        real_plot(projection, out)

    monkeypatch.setattr(latents, "plot_umap", spy)
    result = _run(cfg, path, tmp_path / "fig2.png")
    assert (tmp_path / "fig2.png").stat().st_size > 10_000
    assert seen["projection"] is result and result.k == cfg["experiments"]["retrieval"]["k"]
    assert {s: m.dim for s, m in result.spaces.items()} == {"physics": 8, "instrument": 4}
    for m in result.spaces.values():
        assert m.coords.shape == (80, 2) and np.isfinite(m.coords).all()  # n_pairs of the 50 pairs, both surveys
    marked = np.asarray(result.marked)
    assert len(set(marked.tolist())) == 4 and marked.max() < 40
    physics, instrument = result.spaces["physics"], result.spaces["instrument"]
    assert physics.counterpart_knn_latent == 1.0
    assert physics.counterpart_knn_2d > 0.8  # UMAP keeps the planted duplicates together
    assert instrument.survey_acc_2d == 1.0
    assert physics.survey_acc_latent < 0.6
    # Seeded: a second run gives the same projection.
    monkeypatch.setattr(latents, "plot_umap", lambda projection, out: None)
    again = _run(cfg, path, tmp_path / "fig2b.png")
    np.testing.assert_allclose(again.spaces["physics"].coords, physics.coords)


@pytest.mark.slow  # compiles umap where no earlier process has (about 10 s)
def test_what_umap_compiles_is_on_disk_for_the_next_process():
    """Each Fig 2 job is a new process: what one compiles (or loads) must be in numba's cache
    for the next, which here is a new dispatcher of the same function, as umap defines it."""
    import numba
    import umap.layouts

    umap_2d(np.random.default_rng(0).normal(size=(60, 6)), 8, 0.1, 0)
    fn = umap.layouts._nb_optimize_layout_euclidean_single_epoch
    assert len(fn.signatures) == 1
    # numba's NullCache (no cache=True) has no path; a cache on disk has one.
    assert fn._cache.cache_path is not None
    later = numba.njit(fn.py_func, fastmath=True, parallel=False)
    later.enable_caching()
    later.compile(fn.signatures[0])
    assert sum(later.stats.cache_hits.values()) == 1 and not later.stats.cache_misses


def test_a_function_numba_cannot_cache_is_named_and_left_compiling(monkeypatch, caplog):
    import umap.layouts
    from numba.core.dispatcher import Dispatcher

    from whatsreal.experiments import umap_projection

    def no_locator():
        raise RuntimeError("cannot cache function: no locator available")

    fn = umap.layouts._nb_optimize_layout_euclidean_single_epoch
    calls = []
    monkeypatch.setattr(Dispatcher, "enable_caching", lambda self: calls.append(self))  # no cache written
    monkeypatch.setattr(fn, "enable_caching", no_locator, raising=False)  # this one function: a read-only place
    cached = umap_projection.cache_umap_compilation.__wrapped__()  # once per process: call the function itself
    assert cached == len(calls) > 0 and fn not in calls
    assert "cannot cache umap.layouts._nb_optimize_layout_euclidean_single_epoch" in caplog.text


def test_missing_latent_column_names_file_and_column(tmp_path):
    path = tmp_path / "embeddings.parquet"
    emb = _embeddings(10)
    emb.drop(columns=[c for c in emb.columns if c.startswith("inst_")]).to_parquet(path)
    with pytest.raises(ValueError, match=r"embeddings\.parquet: missing column\(s\) inst_0"):
        _run(tiny_config(), path, tmp_path / "fig.png")
    emb.drop(columns=["survey"]).to_parquet(path)
    with pytest.raises(ValueError, match=r"embeddings\.parquet: missing column\(s\) survey"):
        _run(tiny_config(), path, tmp_path / "fig.png")
    assert not (tmp_path / "fig.png").exists()
