"""Counterfactuals against the noiseless truth (synthetic sky only).

The real target image is itself one noisy draw, so its MSE against a generated
image mixes the model's error with the target's own noise. On the synthetic sky
the simulator can say what the target instrument would have recorded without
noise or artefacts: the same object spec (seeded streams, PSF, pixel scale,
cutout size) rendered again (``whatsreal.sim.noiseless``), then preprocessed
exactly like the data (band selection, clamp, zero-point, crop/resample,
arcsinh, the survey's stored standardisation). Per direction this reports

- the posterior mean vs the noiseless truth (how well the model denoises),
- the observed target vs the noiseless truth (the noise floor a perfect
  denoiser could beat and a copy of the data could not),
- the per-sample MSE vs the noiseless truth (samples carry generated noise).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from whatsreal.data.preprocess import native_band_transform
from whatsreal.data.stages import read_normalisation
from whatsreal.experiments.metrics import mse
from whatsreal.experiments.posterior_file import load_posterior
from whatsreal.experiments.targets import meta_paths_by_survey
from whatsreal.experiments.truth_metrics import TRUTH_COLUMNS, write_truth_table
from whatsreal.layout import DatasetLayout
from whatsreal.sim.noiseless import object_spec, render_object, sky_specs
from whatsreal.sim.render import ObjectSpec
from whatsreal.surveys import Survey, survey_registry

__all__ = ["TRUTH_COLUMNS", "noiseless_targets", "run_truth_counterfactuals"]

log = logging.getLogger(__name__)


def preprocess_noiseless(
    models: np.ndarray, survey: str, preprocess_cfg: dict, norm: dict[str, float], entry: Survey | None = None
) -> np.ndarray:
    """(n, B, S, S) noiseless renders -> (n, C, H, W) in the data's standardised units;
    ``entry``: the survey's registry entry (default: the paired surveys')."""
    x, _ = native_band_transform(survey, preprocess_cfg, entry)(models, np.ones_like(models))
    return ((x - norm["norm_mean"]) / norm["norm_std"]).astype(np.float32)


def _check_spec(spec: ObjectSpec, row: pd.Series, survey: Survey, object_id: str) -> None:
    """The rebuilt spec must describe the object truth.parquet records (same sky, same config)."""
    want = np.array([row[f"{survey.name}_psf_fwhm_{b}"] for b in survey.bands], dtype=float)
    if not np.allclose(spec.psf_fwhm, want, rtol=1e-6, atol=1e-9):
        raise ValueError(
            f"{survey.name} object {object_id}: the simulation config rebuilds PSF FWHM {spec.psf_fwhm}, but "
            f"truth.parquet records {tuple(want)}; is cfg['simulation'] the one that simulated this sky?"
        )


def noiseless_targets(
    cfg: dict, survey: str, object_ids: np.ndarray, truth_ids: np.ndarray, truth: pd.DataFrame, meta_path: str | Path
) -> np.ndarray:
    """(n, C, H, W) noiseless truth of ``object_ids`` in ``survey`` (any registry survey),
    preprocessed like the survey's images."""
    registry = survey_registry(cfg)
    specs = sky_specs(cfg, tuple(registry))[survey]  # every survey at once: cached, the other directions reuse it
    by_id = truth.set_index("truth_id")
    models = []
    for oid, tid in zip(object_ids, truth_ids, strict=True):
        spec, key = object_spec(specs, survey, oid), str(oid)
        if tid is not pd.NA and not pd.isna(tid):
            row = by_id.loc[int(tid)]
            if str(row[f"{survey}_object_id"]) != key:
                raise ValueError(
                    f"truth.parquet: truth_id {tid} has {survey}_object_id {row[f'{survey}_object_id']}, not {key}"
                )
            _check_spec(spec, row, registry[survey], key)
        models.append(render_object(spec, survey, cfg).model)
    norm = read_normalisation(meta_path)
    return preprocess_noiseless(np.stack(models), survey, cfg["preprocess"], norm, registry[survey])


def run_truth_counterfactuals(
    cfg: dict,
    posterior: list[str | Path],
    meta: Mapping[str, str | Path] | DatasetLayout,
    truth: str | Path | None,
    out: str | Path,
) -> pd.DataFrame:
    """tables/truth_counterfactuals.csv (metric, value, note); header only without a truth table.

    ``meta``: each survey's meta file (``{survey: path}``) or the dataset's layout; the target
    survey's gives the truth ids and the standardisation the noiseless truth is preprocessed with.
    """
    meta_paths = meta_paths_by_survey(meta)
    rows: list[dict] = []
    if truth is not None and cfg["dataset"]["source"] == "synthetic":
        truth_df = pd.read_parquet(truth)
        for path in posterior:
            post = load_posterior(path)
            survey = post["direction"]
            meta_path = meta_paths[survey]
            m = pd.read_parquet(meta_path, columns=["pair", "object_id", "truth_id"]).set_index("pair")
            tids = m["truth_id"].reindex(post["pair"]).to_numpy()
            clean = noiseless_targets(cfg, survey, post["object_id"], tids, truth_df, meta_path)
            samples = post["samples"]
            n, s = samples.shape[:2]
            note = (
                f"{n} held-out galaxies, {s} samples each; preprocessed units; "
                f"noiseless truth rendered through {survey}"
            )
            mse_mean = mse(samples.mean(axis=1), clean)
            mse_obs = mse(post["target"], clean)
            mse_samp = float(np.mean([mse(samples[:, j], clean) for j in range(s)]))
            rows += [
                {"metric": f"{survey}_anchored_posterior_mean_mse_vs_noiseless", "value": mse_mean, "note": note},
                {
                    "metric": f"{survey}_anchored_observed_mse_vs_noiseless",
                    "value": mse_obs,
                    "note": f"noise floor: the real target image vs its noiseless truth; {note}",
                },
                {"metric": f"{survey}_anchored_sample_mse_vs_noiseless", "value": mse_samp, "note": note},
            ]
            log.info(
                "%s-anchored vs noiseless truth: posterior mean %.4f, observed target (noise floor) %.4f, "
                "samples %.4f (n=%d)",
                survey,
                mse_mean,
                mse_obs,
                mse_samp,
                n,
            )
    else:
        log.info("no truth table (source %s): writing the header only", cfg["dataset"]["source"])
    return write_truth_table(rows, out, with_ci=False)
