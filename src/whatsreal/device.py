"""The torch device that computation outside Lightning training runs on: one rule, one place.

Embedding export, the experiments and the image baselines run wherever Snakemake
placed their job, so they take the GPU when the node has one and the CPU
otherwise; results do not depend on the choice beyond floating-point detail.
Training is different: Lightning is told its accelerator through
``train.accelerator`` (:func:`whatsreal.train.run.resolve_hardware`), which can
also demand a GPU and fail clearly where there is none.
"""

from __future__ import annotations

import torch

__all__ = ["compute_device"]


def compute_device() -> torch.device:
    """CUDA when this machine has a usable GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
