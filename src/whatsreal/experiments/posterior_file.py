"""The posterior-samples file (``posteriors/<direction>.npz``): its arrays and its reader.

Kept apart from :mod:`whatsreal.experiments.posterior`, which draws the samples with the
trained model, so that the experiments that only read them (Fig 6, Fig 8, Fig 9's
calibration, the truth counterfactuals) do not import torch: each is its own Snakemake job,
and a new interpreter importing torch costs seconds of CPU per job. (The zero-shot test
reads them too, but trains a regressor, so it imports torch anyway.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["POSTERIOR_KEYS", "load_posterior"]

POSTERIOR_KEYS = ("pair", "object_id", "target", "physics", "instrument", "instrument_mask", "samples", "direction")
"""The arrays every posterior file holds (``samples``: (n, S, C, H, W); ``target``: (n, C, H, W))."""


def load_posterior(path: str | Path) -> dict[str, np.ndarray]:
    """A posterior npz as plain arrays, checked for the contract's keys and shapes."""
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in POSTERIOR_KEYS if k not in f.files]
        if missing:
            raise KeyError(f"{path}: missing array(s) {missing} (expected {list(POSTERIOR_KEYS)})")
        post = {k: f[k] for k in POSTERIOR_KEYS}
    n = len(post["pair"])
    if (
        post["samples"].ndim != 5
        or post["samples"].shape[0] != n
        or post["target"].shape != post["samples"].shape[:1] + post["samples"].shape[2:]
    ):
        raise ValueError(
            f"{path}: samples {post['samples'].shape} and target {post['target'].shape} do not match "
            "(n, S, C, H, W) and (n, C, H, W)"
        )
    post["direction"] = str(post["direction"])
    return post
