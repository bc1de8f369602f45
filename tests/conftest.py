"""Shared fixtures: the repository paths and one small simulated sky per test session."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from whatsreal.config import validate_config
from whatsreal.sim.sky import simulate_sky

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"

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
        _merge(cfg.setdefault(section, {}), values)
    return validate_config(cfg, SCHEMA)


def _merge(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


@pytest.fixture(scope="session")
def tiny_sky(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """A small sky simulated once for the session: (config, raw directory)."""
    cfg = tiny_config()
    raw = tmp_path_factory.mktemp("tiny") / "raw"
    report = simulate_sky(cfg, raw, raw / "truth.parquet", threads=1)
    return cfg, raw, report


@pytest.fixture(scope="session")
def tiny_data(tiny_sky, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """The data stages run on the tiny sky: (config, directory with catalogs, pairs, images...)."""
    from whatsreal.data import stages

    cfg, raw, _ = tiny_sky
    out = tmp_path_factory.mktemp("tiny_data")
    for s in ("hsc", "legacysurvey"):
        stages.run_catalog(raw / s, s, cfg, out / f"catalog_{s}.parquet")
    stages.run_crossmatch(
        {s: out / f"catalog_{s}.parquet" for s in ("hsc", "legacysurvey")}, cfg, out / "pairs.parquet"
    )
    stages.run_split(out / "pairs.parquet", cfg, out / "split.parquet")
    for s in ("hsc", "legacysurvey"):
        stages.run_preprocess(
            s,
            out / f"catalog_{s}.parquet",
            out / "pairs.parquet",
            out / "split.parquet",
            cfg,
            out / f"images_{s}.npy",
            out / f"meta_{s}.parquet",
            truth_path=raw / "truth.parquet",
        )
        stages.run_neighbours(
            s, out / "pairs.parquet", out / f"catalog_{s}.parquet", cfg, "spatial", out / f"neighbours_{s}_spatial.npz"
        )
        stages.run_neighbours(
            s,
            out / "pairs.parquet",
            out / f"catalog_{s}.parquet",
            cfg,
            "random",
            out / f"neighbours_{s}_random.npz",
            spatial_path=out / f"neighbours_{s}_spatial.npz",
        )
    return cfg, out
